//! Incremental decoding of the byte-level GPT with a KV cache: the [`LanguageModel`] the governed
//! decode loop drives for Warden's own model.
//!
//! # Cost
//! [`LanguageModel::start`] runs one forward over the prompt's window and keeps every layer's keys
//! and values. Each [`LanguageModel::step`] then runs one forward over the single new token: per
//! layer the four `width × width` attention projections and the `width × 4·width` feed-forward
//! for one position, plus attention of that one query over the `n` cached positions (`O(n ·
//! width)`, and appending to the cache copies it once, also `O(n · width)`), then the head for one
//! position. A re-run of the context would instead cost all of that for every one of the `n`
//! positions.
//!
//! # The sliding window
//! The network has learned position embeddings for `context` positions only, so a sequence can
//! never hold more than `context` tokens at once. The rule (the uncached reference in the tests
//! applies the same one):
//! - `start(prompt)`: the window is the prompt, or its last `context` tokens if it is longer;
//! - `step(token)`: if the window holds fewer than `context` tokens, the token is appended at the
//!   next position (one incremental forward); otherwise the window becomes the last
//!   [`slide_keep`]`(context)` = `context / 2` tokens of the window plus the new token, the cache
//!   is cleared and that window is re-prefilled in one forward with positions restarting at 0.
//!
//! So a re-prefill of `context / 2` tokens happens once every `context - context / 2` steps:
//! amortised, about one extra token-forward per step, and the model always sees at least
//! `context / 2` tokens of history after a slide.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use super::{Gpt, GradientStop, LayerKv, ModelConfig, Pass, VOCAB};
use crate::{LanguageModel, ModelError};

/// Tokens a slide keeps from a full window of `context` tokens, the new token included.
pub fn slide_keep(context: usize) -> usize {
    (context / 2).max(1)
}

/// Refuses an id outside the byte vocabulary (before anything in the sequence changes).
fn check_tokens(ids: &[u32]) -> Result<(), ModelError> {
    match ids.iter().find(|&&id| id as usize >= VOCAB) {
        Some(bad) => Err(ModelError::Invalid(format!(
            "token id {bad} is outside the byte vocabulary (0..{VOCAB})"
        ))),
        None => Ok(()),
    }
}

/// The text of each byte token: token `b` is the one byte `b`.
static BYTE_TOKENS: [u8; VOCAB] = {
    let mut bytes = [0u8; VOCAB];
    let mut b = 0;
    while b < VOCAB {
        bytes[b] = b as u8;
        b += 1;
    }
    bytes
};

/// The byte-level GPT as a [`LanguageModel`]: its parameters (detached, so decoding builds no
/// gradient graph; they share storage with the model they came from), the tokens in the current
/// window and every layer's cached keys and values for them.
pub struct GptDecoder {
    config: ModelConfig,
    weights: BTreeMap<String, Tensor>,
    causal_mask: Tensor,
    cache: Vec<LayerKv>,
    window: Vec<u32>,
}

impl GptDecoder {
    /// A decoder over `model`'s current parameters (no copy: the tensors share storage).
    pub fn new(model: &Gpt) -> GptDecoder {
        GptDecoder {
            config: model.config.clone(),
            weights: model
                .vars
                .iter()
                .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
                .collect(),
            causal_mask: model.causal_mask.clone(),
            cache: Vec::new(),
            window: Vec::new(),
        }
    }

    /// A decoder over loaded parameters (for example `model.safetensors`); names and shapes must
    /// match `config`.
    pub fn from_tensors(
        config: &ModelConfig,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<GptDecoder, ModelError> {
        Ok(GptDecoder::new(&Gpt::from_tensors(config, tensors)?))
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The tokens the cache holds now (at most `context`, positions `0..len`).
    pub fn window(&self) -> &[u32] {
        &self.window
    }

    /// Runs `ids` after the cached positions and returns the last position's logits.
    /// A failed pass may have extended some layers' caches and not others, so it ends the
    /// sequence (the next `step` is refused until `start`).
    fn feed(&mut self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        let pass = Pass {
            config: &self.config,
            weights: &self.weights,
            causal_mask: &self.causal_mask,
        };
        let logits = Tensor::from_slice(ids, (1, ids.len()), &Device::Cpu)
            .map_err(ModelError::from)
            .and_then(|input| pass.run(&input, GradientStop::None, Some(&mut self.cache), true))
            .and_then(|logits| Ok(logits.flatten_all()?.to_vec1::<f32>()?));
        if logits.is_err() {
            self.cache.clear();
            self.window.clear();
        }
        logits
    }

    /// Clears the cache and prefills `window`.
    fn prefill(&mut self, window: Vec<u32>) -> Result<Vec<f32>, ModelError> {
        self.cache.clear();
        self.window.clear();
        let logits = self.feed(&window)?;
        self.window = window;
        Ok(logits)
    }
}

impl LanguageModel for GptDecoder {
    fn vocab_size(&self) -> usize {
        VOCAB
    }

    /// The one byte `id` stands for; empty for an id outside the vocabulary.
    fn token_bytes(&self, id: u32) -> &[u8] {
        BYTE_TOKENS
            .get(id as usize)
            .map_or(&[], std::slice::from_ref)
    }

    /// None: the byte model was trained on raw text and has no end token.
    fn eos(&self) -> Option<u32> {
        None
    }

    /// Unbounded: the window slides (see the module documentation), so a sequence may hold any
    /// number of tokens; the model conditions on at most `context` of them.
    fn context_limit(&self) -> usize {
        usize::MAX
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        Ok(text.bytes().map(u32::from).collect())
    }

    fn start(&mut self, prompt: &[u32]) -> Result<Vec<f32>, ModelError> {
        if prompt.is_empty() {
            self.cache.clear();
            self.window.clear();
            return Err(ModelError::Invalid(
                "empty prompt: the byte-level model needs at least one byte to continue".into(),
            ));
        }
        check_tokens(prompt)?;
        let from = prompt.len().saturating_sub(self.config.context);
        self.prefill(prompt[from..].to_vec())
    }

    fn step(&mut self, token: u32) -> Result<Vec<f32>, ModelError> {
        if self.window.is_empty() {
            return Err(ModelError::Invalid(
                "step before start: no sequence has been started".into(),
            ));
        }
        check_tokens(&[token])?;
        if self.window.len() < self.config.context {
            let logits = self.feed(&[token])?;
            self.window.push(token);
            return Ok(logits);
        }
        let keep = slide_keep(self.config.context);
        let mut window = self.window[self.window.len() + 1 - keep..].to_vec();
        window.push(token);
        self.prefill(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits of the cached decoder and of the uncached reference agree within this (absolute;
    /// the test model's logits spread over several units, f32 rounding differences are ~1e-6).
    const TOLERANCE: f32 = 1e-4;

    fn tiny() -> ModelConfig {
        ModelConfig {
            layers: 2,
            width: 16,
            heads: 2,
            context: 12,
        }
    }

    /// A random model with weights 20× the initialization scale, so its logits are far from
    /// uniform: position or cache mistakes move them well past the tolerance, and greedy
    /// choices are not near-ties.
    fn sharp_model(seed: u64) -> Gpt {
        let config = tiny();
        let scaled: BTreeMap<String, Tensor> = Gpt::new(&config, seed)
            .unwrap()
            .tensors()
            .into_iter()
            .map(|(name, t)| {
                let t = if name.ends_with(".gain") || name.ends_with(".bias") {
                    t
                } else {
                    (t * 20.0).unwrap()
                };
                (name, t)
            })
            .collect();
        Gpt::from_tensors(&config, &scaled).unwrap()
    }

    /// The uncached reference: the training forward over the whole window, last row.
    fn full_forward_last(model: &Gpt, window: &[u32]) -> Vec<f32> {
        let ids = Tensor::from_slice(window, (1, window.len()), &Device::Cpu).unwrap();
        let logits = model.forward(&ids).unwrap();
        logits
            .narrow(1, window.len() - 1, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    }

    fn argmax(logits: &[f32]) -> u32 {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as u32)
            .unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn kv_cached_greedy_generation_equals_the_uncached_one_across_window_slides() {
        let model = sharp_model(7);
        let context = model.config.context;
        let mut decoder = GptDecoder::new(&model);
        let prompt = decoder.encode("hello").unwrap();

        let mut cached_logits = decoder.start(&prompt).unwrap();
        let mut window = prompt.clone();
        let mut reference_logits = full_forward_last(&model, &window);
        let (mut cached_tokens, mut reference_tokens) = (Vec::new(), Vec::new());
        let (mut slides, mut worst) = (0, 0.0f32);
        for step in 0..40 {
            let diff = max_diff(&cached_logits, &reference_logits);
            worst = worst.max(diff);
            assert!(diff <= TOLERANCE, "step {step}: logits differ by {diff}");
            let (cached, reference) = (argmax(&cached_logits), argmax(&reference_logits));
            cached_tokens.push(cached);
            reference_tokens.push(reference);
            assert_eq!(cached, reference, "step {step}: greedy choices differ");

            // The reference applies the documented rule on its own.
            if window.len() < context {
                window.push(reference);
            } else {
                window = window[window.len() + 1 - context / 2..].to_vec();
                window.push(reference);
                slides += 1;
            }
            cached_logits = decoder.step(cached).unwrap();
            reference_logits = full_forward_last(&model, &window);
            assert_eq!(decoder.window(), &window[..], "step {step}: windows differ");
        }
        assert_eq!(cached_tokens, reference_tokens);
        assert!(slides >= 2, "only {slides} slides in 40 steps");
        // Not a constant output: the check compared several distinct choices.
        let mut distinct = cached_tokens.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(
            distinct.len() >= 3,
            "degenerate generation {cached_tokens:?}"
        );
        assert!(worst <= TOLERANCE, "worst difference {worst}");
    }

    #[test]
    fn a_cache_that_ignored_positions_would_be_caught() {
        // The reference differs from a model that sees the same tokens at other positions by
        // far more than the tolerance, so the equality test above can fail.
        let model = sharp_model(7);
        let shifted = full_forward_last(&model, &[b'x' as u32, b'h' as u32, b'i' as u32]);
        let mut decoder = GptDecoder::new(&model);
        let unshifted = decoder.start(&[b'h' as u32, b'i' as u32]).unwrap();
        assert!(max_diff(&shifted, &unshifted) > 100.0 * TOLERANCE);
    }

    #[test]
    fn start_twice_gives_the_same_logits_because_the_cache_is_cleared() {
        let model = sharp_model(3);
        let mut decoder = GptDecoder::new(&model);
        let prompt = decoder.encode("cache").unwrap();
        let first = decoder.start(&prompt).unwrap();
        for token in decoder.encode("polluting the cache").unwrap() {
            decoder.step(token).unwrap();
        }
        let second = decoder.start(&prompt).unwrap();
        assert_eq!(first, second);
        assert_eq!(decoder.window(), &prompt[..]);
    }

    #[test]
    fn a_prompt_longer_than_the_context_keeps_its_last_context_tokens() {
        let model = sharp_model(5);
        let mut decoder = GptDecoder::new(&model);
        let prompt = decoder.encode("a prompt of thirty bytes, long").unwrap();
        let logits = decoder.start(&prompt).unwrap();
        let tail = &prompt[prompt.len() - 12..];
        assert_eq!(decoder.window(), tail);
        assert!(max_diff(&logits, &full_forward_last(&model, tail)) <= TOLERANCE);
    }

    #[test]
    fn byte_vocabulary_and_refusals() {
        let model = Gpt::new(&tiny(), 1).unwrap();
        let mut decoder = GptDecoder::new(&model);
        assert_eq!(decoder.vocab_size(), 256);
        assert_eq!(decoder.token_bytes(0xC3), &[0xC3]);
        assert_eq!(decoder.token_bytes(256), &[] as &[u8]);
        assert_eq!(decoder.eos(), None);
        assert_eq!(decoder.encode("é!").unwrap(), vec![0xC3, 0xA9, 0x21]);

        let err = decoder.step(1).unwrap_err().to_string();
        assert!(err.contains("step before start"), "{err}");
        let err = decoder.start(&[]).unwrap_err().to_string();
        assert!(err.contains("empty prompt"), "{err}");
        let err = decoder.start(&[1, 256]).unwrap_err().to_string();
        assert!(err.contains("token id 256"), "{err}");

        // A refused token leaves the sequence as it was.
        let logits = decoder.start(&[104, 105]).unwrap();
        let err = decoder.step(300).unwrap_err().to_string();
        assert!(err.contains("token id 300"), "{err}");
        assert_eq!(decoder.window(), &[104, 105]);
        let after = decoder.step(33).unwrap();
        assert_ne!(logits, after);
        assert_eq!(decoder.window(), &[104, 105, 33]);
    }
}
