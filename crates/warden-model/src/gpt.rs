//! A small byte-level GPT decoder whose parameters are named by architectural region.
//!
//! Every operation here is built from candle's basic differentiable ops. Candle's fused kernels
//! (`candle_nn::LayerNorm`, `ops::softmax_last_dim`, rotary embeddings, sdpa) have no backward pass
//! and silently drop gradients, so layer norm, softmax, attention and the loss are spelled out;
//! `tests::every_variable_gets_a_finite_nonzero_gradient` pins this.
//!
//! Training and decoding run the same forward pass (`Pass`); decoding ([`GptDecoder`]) only reads
//! detached parameters and keeps every layer's keys and values, so a new token costs one forward
//! over that token (see the decoder module for the cost and the sliding-window rule). Decoding
//! keeps the same basic ops rather than fused kernels so cached and trained numerics agree.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use sha2::{Digest as _, Sha256};

use crate::ModelError;

mod decoder;
pub use decoder::{slide_keep, GptDecoder};

/// Byte-level vocabulary: every byte is a token, so the model needs no tokenizer file.
pub const VOCAB: usize = 256;

/// Model shape. `width` must be divisible by `heads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub layers: usize,
    pub width: usize,
    pub heads: usize,
    pub context: usize,
}

impl ModelConfig {
    pub fn validate(&self) -> Result<(), ModelError> {
        for (field, value, min) in [
            ("model.layers", self.layers, 1),
            ("model.width", self.width, 1),
            ("model.heads", self.heads, 1),
            ("model.context", self.context, 2),
        ] {
            if value < min {
                return Err(ModelError::Config {
                    field: field.to_string(),
                    reason: format!("must be at least {min} (got {value})"),
                });
            }
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(ModelError::Config {
                field: "model.heads".to_string(),
                reason: format!(
                    "must divide model.width (width {} is not divisible by {} heads)",
                    self.width, self.heads
                ),
            });
        }
        Ok(())
    }

    /// Every parameter name with its shape, in the canonical (sorted) order.
    pub fn parameter_shapes(&self) -> BTreeMap<String, Vec<usize>> {
        let d = self.width;
        let mut shapes = BTreeMap::new();
        shapes.insert("embed.token".to_string(), vec![VOCAB, d]);
        shapes.insert("embed.position".to_string(), vec![self.context, d]);
        for i in 0..self.layers {
            for norm in ["norm1", "norm2"] {
                shapes.insert(format!("layer{i}.{norm}.gain"), vec![d]);
                shapes.insert(format!("layer{i}.{norm}.bias"), vec![d]);
            }
            for w in ["wq", "wk", "wv", "wo"] {
                shapes.insert(format!("layer{i}.attn.{w}"), vec![d, d]);
            }
            shapes.insert(format!("layer{i}.ffn.w1"), vec![d, 4 * d]);
            shapes.insert(format!("layer{i}.ffn.b1"), vec![4 * d]);
            shapes.insert(format!("layer{i}.ffn.w2"), vec![4 * d, d]);
            shapes.insert(format!("layer{i}.ffn.b2"), vec![d]);
        }
        shapes.insert("final_norm.gain".to_string(), vec![d]);
        shapes.insert("final_norm.bias".to_string(), vec![d]);
        shapes.insert("head.weight".to_string(), vec![d, VOCAB]);
        shapes.insert("head.bias".to_string(), vec![VOCAB]);
        shapes
    }

    /// The regions in the order the data flows through them (embedding first, head last).
    pub fn regions(&self) -> Vec<String> {
        let mut regions = vec!["embed".to_string()];
        for i in 0..self.layers {
            for part in ["norm1", "attn", "norm2", "ffn"] {
                regions.push(format!("layer{i}.{part}"));
            }
        }
        regions.push("final_norm".to_string());
        regions.push("head".to_string());
        regions
    }

    /// Where a routed pass may stop the gradient for a depth admitted to `admitted` regions:
    /// the data flows through nothing trainable for that depth before its earliest admitted
    /// region, so backward need not go further (see [`GradientStop`]).
    pub fn gradient_stop(&self, admitted: &[String]) -> GradientStop {
        let order = self.regions();
        let first = admitted
            .iter()
            .filter_map(|r| order.iter().position(|o| o == r))
            .min();
        match first {
            None | Some(0) => GradientStop::None,
            Some(k) if k > 4 * self.layers => GradientStop::BeforeFinalNorm,
            Some(k) => GradientStop::BeforeLayer((k - 1) / 4),
        }
    }

    pub fn n_parameters(&self) -> usize {
        self.parameter_shapes()
            .values()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }
}

/// Where the residual stream is detached in a routed forward pass. Gradient routing only reads
/// the gradients of a depth's admitted regions; stopping the gradient just before the earliest
/// of them leaves those gradients unchanged and skips the backward pass through everything
/// earlier (for a `shallow` depth: all layers and the embedding). Regions between the stop and
/// a later admitted region may receive gradients; the trainer never reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradientStop {
    /// Full backward (the depth may update the embedding).
    None,
    /// Detach the residual stream entering layer `i`.
    BeforeLayer(usize),
    /// Detach the residual stream entering the final norm.
    BeforeFinalNorm,
}

/// The region a parameter belongs to: its name without the last component
/// (`layer0.attn.wq` → `layer0.attn`, `head.weight` → `head`).
pub fn region_of(parameter: &str) -> &str {
    parameter.rsplit_once('.').map_or(parameter, |(r, _)| r)
}

/// SHA-256 over every parameter in name order: name, NUL, shape (u64 LE each), f32 LE values.
/// The one encoder of the parameter digest that training records and manifests name.
pub fn parameter_digest(tensors: &BTreeMap<String, Tensor>) -> Result<[u8; 32], ModelError> {
    let mut hasher = Sha256::new();
    for (name, tensor) in tensors {
        hasher.update(name.as_bytes());
        hasher.update([0u8]);
        for d in tensor.dims() {
            hasher.update((*d as u64).to_le_bytes());
        }
        let values = tensor.flatten_all()?.to_vec1::<f32>()?;
        let mut buf = Vec::with_capacity(values.len() * 4);
        for v in values {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        hasher.update(&buf);
    }
    Ok(hasher.finalize().into())
}

/// Standard normal draws from a seeded stream (Box–Muller), so initialization is reproducible
/// bit for bit on every machine (candle's own `randn` uses an unseeded thread RNG).
fn normal(rng: &mut ChaCha20Rng, n: usize, std: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.gen::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        out.push((r * theta.cos()) as f32 * std);
        if out.len() < n {
            out.push((r * theta.sin()) as f32 * std);
        }
    }
    out
}

/// The model: its configuration and one candle `Var` per named parameter.
pub struct Gpt {
    pub config: ModelConfig,
    vars: BTreeMap<String, Var>,
    causal_mask: Tensor,
}

impl Gpt {
    /// A freshly initialized model; the same seed gives bit-identical parameters.
    pub fn new(config: &ModelConfig, seed: u64) -> Result<Gpt, ModelError> {
        config.validate()?;
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let residual_std = 0.02 / ((2 * config.layers) as f32).sqrt();
        let mut vars = BTreeMap::new();
        for (name, shape) in config.parameter_shapes() {
            let n: usize = shape.iter().product();
            let data = if name.ends_with(".gain") {
                vec![1.0f32; n]
            } else if name.ends_with(".bias") || name.ends_with(".b1") || name.ends_with(".b2") {
                vec![0.0f32; n]
            } else if name.ends_with(".wo") || name.ends_with(".w2") {
                normal(&mut rng, n, residual_std)
            } else {
                normal(&mut rng, n, 0.02)
            };
            let tensor = Tensor::from_vec(data, shape.as_slice(), &Device::Cpu)?;
            vars.insert(name, Var::from_tensor(&tensor)?);
        }
        Gpt::from_vars(config, vars)
    }

    /// A model over existing parameters (from a checkpoint); names and shapes must match `config`.
    pub fn from_tensors(
        config: &ModelConfig,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<Gpt, ModelError> {
        config.validate()?;
        let mut vars = BTreeMap::new();
        for (name, shape) in config.parameter_shapes() {
            let tensor = tensors
                .get(&name)
                .ok_or_else(|| ModelError::Parameters(format!("parameter {name} is missing")))?;
            if tensor.dims() != shape.as_slice() || tensor.dtype() != DType::F32 {
                return Err(ModelError::Parameters(format!(
                    "parameter {name} has shape {:?} {:?}, expected {shape:?} f32",
                    tensor.dims(),
                    tensor.dtype()
                )));
            }
            vars.insert(name, Var::from_tensor(tensor)?);
        }
        Gpt::from_vars(config, vars)
    }

    fn from_vars(config: &ModelConfig, vars: BTreeMap<String, Var>) -> Result<Gpt, ModelError> {
        let t = config.context;
        let mask: Vec<f32> = (0..t * t)
            .map(|k| if k % t > k / t { -1e9 } else { 0.0 })
            .collect();
        Ok(Gpt {
            config: config.clone(),
            vars,
            causal_mask: Tensor::from_vec(mask, (t, t), &Device::Cpu)?,
        })
    }

    pub fn vars(&self) -> &BTreeMap<String, Var> {
        &self.vars
    }

    /// A deep copy of the current parameter values (later updates do not show through).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(k, v)| {
                let t = v.as_tensor();
                (k.clone(), t.copy().unwrap_or_else(|_| t.clone()))
            })
            .collect()
    }

    /// SHA-256 parameter-state digest (see [`parameter_digest`]).
    pub fn digest(&self) -> Result<[u8; 32], ModelError> {
        let handles: BTreeMap<String, Tensor> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        parameter_digest(&handles)
    }

    /// Replaces every parameter's value (rollback to a checkpoint).
    pub fn load(&self, tensors: &BTreeMap<String, Tensor>) -> Result<(), ModelError> {
        for (name, var) in &self.vars {
            let value = tensors
                .get(name)
                .ok_or_else(|| ModelError::Parameters(format!("parameter {name} is missing")))?;
            var.set(value)?;
        }
        Ok(())
    }

    /// Logits `[batch, time, 256]` for token ids `[batch, time]` (u32, time ≤ context).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor, ModelError> {
        self.forward_routed(ids, GradientStop::None)
    }

    /// [`Gpt::forward`] with the residual stream detached at `stop` (same values, fewer
    /// gradients: see [`GradientStop`]).
    pub fn forward_routed(&self, ids: &Tensor, stop: GradientStop) -> Result<Tensor, ModelError> {
        let pass = Pass {
            config: &self.config,
            weights: &self.vars,
            causal_mask: &self.causal_mask,
        };
        pass.run(ids, stop, None, false)
    }
    /// Mean next-byte cross-entropy per sequence, `[batch]`: `inputs`/`targets` are `[batch, time]`
    /// u32, `mask` is `[batch, time]` f32 (1 where the target is a real byte, 0 for padding).
    pub fn per_sample_loss(
        &self,
        inputs: &Tensor,
        targets: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor, ModelError> {
        mean_over(&self.token_nll(inputs, targets)?, mask, mask)
    }

    /// Next-byte negative log-likelihood per position, `[batch, time]`.
    pub fn token_nll(&self, inputs: &Tensor, targets: &Tensor) -> Result<Tensor, ModelError> {
        self.token_nll_routed(inputs, targets, GradientStop::None)
    }

    /// [`Gpt::token_nll`] over a routed forward pass.
    pub fn token_nll_routed(
        &self,
        inputs: &Tensor,
        targets: &Tensor,
        stop: GradientStop,
    ) -> Result<Tensor, ModelError> {
        let logits = self.forward_routed(inputs, stop)?;
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let shifted = logits.broadcast_sub(&max)?;
        let log_sum = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let log_probs = shifted.broadcast_sub(&log_sum)?;
        let picked = log_probs
            .gather(&targets.unsqueeze(2)?.contiguous()?, 2)?
            .squeeze(2)?;
        Ok(picked.neg()?)
    }
}

/// Where a forward pass reads its parameters: the trainable `Var`s (training) or detached
/// tensors sharing their storage (decoding, which must not build a gradient graph).
trait Weights {
    fn weight(&self, name: &str) -> Result<&Tensor, ModelError>;
}

impl Weights for BTreeMap<String, Var> {
    fn weight(&self, name: &str) -> Result<&Tensor, ModelError> {
        self.get(name)
            .map(|v| v.as_tensor())
            .ok_or_else(|| ModelError::Invalid(format!("no parameter {name}")))
    }
}

impl Weights for BTreeMap<String, Tensor> {
    fn weight(&self, name: &str) -> Result<&Tensor, ModelError> {
        self.get(name)
            .ok_or_else(|| ModelError::Invalid(format!("no parameter {name}")))
    }
}

/// One layer's cached keys and values, `[batch, heads, cached positions, head width]`.
struct LayerKv {
    keys: Tensor,
    values: Tensor,
}

/// The network, once: training ([`Gpt::forward_routed`]) and decoding ([`GptDecoder`]) both run
/// this, so the decoder cannot drift from what was trained.
struct Pass<'a, W: Weights> {
    config: &'a ModelConfig,
    weights: &'a W,
    causal_mask: &'a Tensor,
}

impl<W: Weights> Pass<'_, W> {
    fn layer_norm(&self, x: &Tensor, prefix: &str) -> Result<Tensor, ModelError> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let variance = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(variance + 1e-5)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(self.weights.weight(&format!("{prefix}.gain"))?)?
            .broadcast_add(self.weights.weight(&format!("{prefix}.bias"))?)?)
    }

    /// Logits for `ids` `[batch, time]`. With `cache`, the ids continue the cached positions:
    /// they take the positions after them, attend to the cached keys and values as well as to
    /// each other, and their own keys and values are appended to the cache. With `last_only`,
    /// only the last position's logits are computed (`[batch, 1, 256]`; every position is
    /// normalized on its own, so this is the same row).
    fn run(
        &self,
        ids: &Tensor,
        stop: GradientStop,
        mut cache: Option<&mut Vec<LayerKv>>,
        last_only: bool,
    ) -> Result<Tensor, ModelError> {
        let (b, t) = ids.dims2()?;
        if t == 0 {
            return Err(ModelError::Invalid(
                "a forward pass needs at least one token".into(),
            ));
        }
        let past = match &cache {
            Some(layers) => layers.first().map_or(Ok(0), |kv| kv.keys.dim(2))?,
            None => 0,
        };
        if past + t > self.config.context {
            return Err(ModelError::Invalid(format!(
                "sequence of {} tokens exceeds context {}",
                past + t,
                self.config.context
            )));
        }
        let d = self.config.width;
        let heads = self.config.heads;
        let dh = d / heads;
        let tokens = self
            .weights
            .weight("embed.token")?
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, d))?;
        let positions = self.weights.weight("embed.position")?.narrow(0, past, t)?;
        let mut h = tokens.broadcast_add(&positions)?;
        // Query row `past + j` may see keys `0..=past + j`.
        let mask = self
            .causal_mask
            .narrow(0, past, t)?
            .narrow(1, 0, past + t)?;
        let scale = 1.0 / (dh as f64).sqrt();
        for i in 0..self.config.layers {
            if stop == GradientStop::BeforeLayer(i) {
                h = h.detach();
            }
            let a = self.layer_norm(&h, &format!("layer{i}.norm1"))?;
            let split = |w: &str| -> Result<Tensor, ModelError> {
                Ok(
                    a.broadcast_matmul(self.weights.weight(&format!("layer{i}.attn.{w}"))?)?
                        .reshape((b, t, heads, dh))?
                        .transpose(1, 2)?
                        .contiguous()?,
                )
            };
            let (q, mut k, mut v) = (split("wq")?, split("wk")?, split("wv")?);
            if let Some(layers) = cache.as_deref_mut() {
                if let Some(kv) = layers.get_mut(i) {
                    k = Tensor::cat(&[&kv.keys, &k], 2)?;
                    v = Tensor::cat(&[&kv.values, &v], 2)?;
                    kv.keys = k.clone();
                    kv.values = v.clone();
                } else {
                    layers.push(LayerKv {
                        keys: k.clone(),
                        values: v.clone(),
                    });
                }
            }
            let scores =
                (q.matmul(&k.transpose(2, 3)?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            // Softmax from basic ops; the max is detached (it only stabilizes, the result does not
            // depend on it), so no gradient flows through the max selection.
            let max = scores.max_keepdim(D::Minus1)?.detach();
            let exp = scores.broadcast_sub(&max)?.exp()?;
            let probs = exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)?;
            let y = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, d))?
                .broadcast_matmul(self.weights.weight(&format!("layer{i}.attn.wo"))?)?;
            h = (h + y)?;
            let f = self.layer_norm(&h, &format!("layer{i}.norm2"))?;
            let f = f
                .broadcast_matmul(self.weights.weight(&format!("layer{i}.ffn.w1"))?)?
                .broadcast_add(self.weights.weight(&format!("layer{i}.ffn.b1"))?)?;
            // GELU, sigmoid approximation x·σ(1.702x), from basic ops.
            let gate = ((f.affine(-1.702, 0.0)?.exp()? + 1.0)?).recip()?;
            let f = (f * gate)?
                .broadcast_matmul(self.weights.weight(&format!("layer{i}.ffn.w2"))?)?
                .broadcast_add(self.weights.weight(&format!("layer{i}.ffn.b2"))?)?;
            h = (h + f)?;
        }
        if stop == GradientStop::BeforeFinalNorm {
            h = h.detach();
        }
        if last_only {
            h = h.narrow(1, t - 1, 1)?;
        }
        let h = self.layer_norm(&h, "final_norm")?;
        Ok(h.broadcast_matmul(self.weights.weight("head.weight")?)?
            .broadcast_add(self.weights.weight("head.bias")?)?)
    }
}

/// Per-sample mean of `nll` weighted by `weights`, divided by the number of real positions in
/// `mask` (so a masked-out span lowers a sample's contribution instead of re-weighting the rest).
pub fn mean_over(nll: &Tensor, mask: &Tensor, weights: &Tensor) -> Result<Tensor, ModelError> {
    let total = (nll * weights)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1.0, f64::MAX)?;
    Ok(total.div(&counts)?)
}

/// A batch of byte sequences turned into model inputs.
pub struct Encoded {
    pub inputs: Tensor,
    pub targets: Tensor,
    pub mask: Tensor,
    pub n_tokens: usize,
}

/// Encodes windows of bytes (each at most `context + 1` long) as inputs/targets padded to the
/// longest window in the batch.
pub fn encode(windows: &[&[u8]], context: usize) -> Result<Encoded, ModelError> {
    let t = windows
        .iter()
        .map(|w| w.len().saturating_sub(1).min(context))
        .max()
        .unwrap_or(1)
        .max(1);
    let b = windows.len();
    let mut inputs = vec![0u32; b * t];
    let mut targets = vec![0u32; b * t];
    let mut mask = vec![0f32; b * t];
    let mut n_tokens = 0;
    for (row, window) in windows.iter().enumerate() {
        let n = window.len().saturating_sub(1).min(t);
        for j in 0..n {
            inputs[row * t + j] = u32::from(window[j]);
            targets[row * t + j] = u32::from(window[j + 1]);
            mask[row * t + j] = 1.0;
        }
        n_tokens += n;
    }
    Ok(Encoded {
        inputs: Tensor::from_vec(inputs, (b, t), &Device::Cpu)?,
        targets: Tensor::from_vec(targets, (b, t), &Device::Cpu)?,
        mask: Tensor::from_vec(mask, (b, t), &Device::Cpu)?,
        n_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny() -> ModelConfig {
        ModelConfig {
            layers: 2,
            width: 16,
            heads: 2,
            context: 12,
        }
    }

    #[test]
    fn every_variable_gets_a_finite_nonzero_gradient() {
        let model = Gpt::new(&tiny(), 1).unwrap();
        let text: Vec<u8> = (0..13u8).map(|k| b'a' + k).collect();
        let other = b"the quick brown".to_vec();
        let batch = encode(&[&text, &other[..13]], 12).unwrap();
        let loss = model
            .per_sample_loss(&batch.inputs, &batch.targets, &batch.mask)
            .unwrap()
            .mean_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        assert_eq!(model.vars().len(), 6 + 2 * 12);
        for (name, var) in model.vars() {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name} received no gradient"));
            let values = grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(values.iter().all(|v| v.is_finite()), "{name}: non-finite");
            let norm: f32 = values.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!(norm > 0.0, "{name}: zero gradient");
        }
    }

    /// Routing stops the backward pass before a depth's earliest admitted region: the admitted
    /// regions' gradients are bit-identical to a full pass, and nothing before the stop gets one.
    #[test]
    fn a_routed_pass_gives_the_admitted_regions_the_same_gradients() {
        let config = tiny();
        let model = Gpt::new(&config, 5).unwrap();
        let batch = encode(&[b"routing keeps gradients", b"exactly where allowed"], 12).unwrap();
        let grads_with = |stop| {
            let nll = model
                .token_nll_routed(&batch.inputs, &batch.targets, stop)
                .unwrap();
            mean_over(&nll, &batch.mask, &batch.mask)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let full = grads_with(GradientStop::None);
        let shallow = vec!["head".to_string(), "final_norm".to_string()];
        let layer1 = vec!["layer1.ffn".to_string(), "head".to_string()];
        assert_eq!(
            config.gradient_stop(&shallow),
            GradientStop::BeforeFinalNorm
        );
        assert_eq!(config.gradient_stop(&layer1), GradientStop::BeforeLayer(1));
        assert_eq!(
            config.gradient_stop(&["embed".to_string(), "head".to_string()]),
            GradientStop::None
        );
        for admitted in [shallow, layer1] {
            let stop = config.gradient_stop(&admitted);
            let routed = grads_with(stop);
            for (name, var) in model.vars() {
                let region = region_of(name).to_string();
                let got = routed.get(var.as_tensor());
                if admitted.contains(&region) {
                    let a = full
                        .get(var.as_tensor())
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap();
                    let b = got
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap();
                    assert_eq!(
                        a, b,
                        "{name}: admitted region's gradient changed under {stop:?}"
                    );
                } else if region == "embed"
                    || (stop == GradientStop::BeforeLayer(1) && name.starts_with("layer0."))
                {
                    assert!(
                        got.is_none(),
                        "{name}: received a gradient before the stop {stop:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn same_seed_same_parameters_and_loss_is_near_uniform_at_init() {
        let a = Gpt::new(&tiny(), 9).unwrap();
        let b = Gpt::new(&tiny(), 9).unwrap();
        let c = Gpt::new(&tiny(), 10).unwrap();
        let flat = |m: &Gpt| -> Vec<f32> {
            m.vars()
                .values()
                .flat_map(|v| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect()
        };
        assert_eq!(flat(&a), flat(&b));
        assert_ne!(flat(&a), flat(&c));
        let batch = encode(&[b"hello world, again"], 12).unwrap();
        let loss = a
            .per_sample_loss(&batch.inputs, &batch.targets, &batch.mask)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[0];
        assert!((loss - (256f32).ln()).abs() < 0.1, "loss {loss}");
    }

    #[test]
    fn padding_does_not_change_a_sample_loss() {
        let model = Gpt::new(&tiny(), 3).unwrap();
        let alone = encode(&[b"short one"], 12).unwrap();
        let padded = encode(&[b"short one", b"a much longer window"], 12).unwrap();
        let l1 = model
            .per_sample_loss(&alone.inputs, &alone.targets, &alone.mask)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let l2 = model
            .per_sample_loss(&padded.inputs, &padded.targets, &padded.mask)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!((l1[0] - l2[0]).abs() < 1e-5, "{l1:?} vs {l2:?}");
    }

    #[test]
    fn region_names_follow_the_architecture() {
        assert_eq!(region_of("layer3.attn.wq"), "layer3.attn");
        assert_eq!(region_of("head.weight"), "head");
        assert_eq!(region_of("embed.token"), "embed");
        let config = tiny();
        for name in config.parameter_shapes().keys() {
            assert!(
                config.regions().iter().any(|r| r == region_of(name)),
                "{name}"
            );
        }
    }
}
