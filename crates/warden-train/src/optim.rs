//! AdamW with per-variable state, so the gradient gate can withhold an update from one region.
//!
//! candle-nn's `AdamW::step` updates every variable it holds from one `GradStore`; a region that
//! the gate rejected would still see its moments decay and its step counter advance. Here each
//! variable has its own moments and its own step count, and `step_var` is called only for the
//! variables the gate admitted: a rejected region's parameters *and* optimizer state stay
//! bit-identical. All arithmetic is element-wise on CPU, hence deterministic.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Optimizer hyper-parameters (the `[optimizer]` table of the training config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWConfig {
    pub learning_rate: f64,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices only (not to norms, biases or embeddings).
    #[serde(default)]
    pub weight_decay: f64,
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.99
}
fn default_eps() -> f64 {
    1e-8
}

impl AdamWConfig {
    pub fn validate(&self) -> Result<(), TrainError> {
        let checks = [
            (
                "optimizer.learning_rate",
                self.learning_rate,
                self.learning_rate.is_finite() && self.learning_rate > 0.0,
                "must be a finite number above 0",
            ),
            (
                "optimizer.beta1",
                self.beta1,
                (0.0..1.0).contains(&self.beta1),
                "must be at least 0 and below 1",
            ),
            (
                "optimizer.beta2",
                self.beta2,
                (0.0..1.0).contains(&self.beta2),
                "must be at least 0 and below 1",
            ),
            (
                "optimizer.eps",
                self.eps,
                self.eps.is_finite() && self.eps > 0.0,
                "must be a finite number above 0",
            ),
            (
                "optimizer.weight_decay",
                self.weight_decay,
                self.weight_decay.is_finite() && self.weight_decay >= 0.0,
                "must be a finite number, 0 or more",
            ),
        ];
        for (field, value, ok, rule) in checks {
            if !ok {
                return Err(TrainError::field(field, format!("{rule} (got {value})")));
            }
        }
        Ok(())
    }
}

/// One variable's optimizer state.
#[derive(Clone)]
pub struct Moments {
    pub m: Tensor,
    pub v: Tensor,
    /// Number of updates this variable has received (bias correction uses it).
    pub steps: u64,
}

pub struct AdamW {
    pub config: AdamWConfig,
    state: BTreeMap<String, Moments>,
}

fn decays(name: &str) -> bool {
    !name.starts_with("embed.")
        && (name.ends_with(".weight")
            || name.ends_with(".wq")
            || name.ends_with(".wk")
            || name.ends_with(".wv")
            || name.ends_with(".wo")
            || name.ends_with(".w1")
            || name.ends_with(".w2"))
}

impl AdamW {
    pub fn new(config: AdamWConfig, vars: &BTreeMap<String, Var>) -> Result<AdamW, TrainError> {
        config.validate()?;
        let mut state = BTreeMap::new();
        for (name, var) in vars {
            let zeros = var.as_tensor().zeros_like()?;
            state.insert(
                name.clone(),
                Moments {
                    m: zeros.clone(),
                    v: zeros,
                    steps: 0,
                },
            );
        }
        Ok(AdamW { config, state })
    }

    /// Applies one AdamW update to `var` from `grad`. Only called for admitted variables.
    pub fn step_var(&mut self, name: &str, var: &Var, grad: &Tensor) -> Result<(), TrainError> {
        let c = &self.config;
        let moments = self
            .state
            .get_mut(name)
            .ok_or_else(|| TrainError::Internal(format!("no optimizer state for {name}")))?;
        let steps = moments.steps + 1;
        let m = ((&moments.m * c.beta1)? + (grad * (1.0 - c.beta1))?)?;
        let v = ((&moments.v * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
        let m_hat = (&m / (1.0 - c.beta1.powi(steps as i32)))?;
        let v_hat = (&v / (1.0 - c.beta2.powi(steps as i32)))?;
        let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
        let theta = var.as_tensor();
        let decayed = if decays(name) && c.weight_decay > 0.0 {
            (theta * (1.0 - c.learning_rate * c.weight_decay))?
        } else {
            theta.clone()
        };
        var.set(&(decayed - (update * c.learning_rate)?)?)?;
        // Gradients from backward carry their op graph (they are built from the forward's
        // tensors); moments kept across steps must not, or every step's graph stays alive
        // through them and memory grows without bound.
        *moments = Moments {
            m: m.detach(),
            v: v.detach(),
            steps,
        };
        Ok(())
    }

    pub fn state(&self) -> &BTreeMap<String, Moments> {
        &self.state
    }

    /// A deep copy of the state (for in-memory rollback).
    pub fn snapshot(&self) -> Result<BTreeMap<String, Moments>, TrainError> {
        self.state
            .iter()
            .map(|(k, s)| {
                Ok((
                    k.clone(),
                    Moments {
                        m: s.m.copy()?,
                        v: s.v.copy()?,
                        steps: s.steps,
                    },
                ))
            })
            .collect()
    }

    /// Replaces the state (rollback or resume); every variable must be present.
    pub fn restore(&mut self, state: BTreeMap<String, Moments>) -> Result<(), TrainError> {
        for name in self.state.keys() {
            if !state.contains_key(name) {
                return Err(TrainError::CheckpointContent(format!(
                    "optimizer state for {name} is missing"
                )));
            }
        }
        self.state = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn var(values: &[f32]) -> Var {
        Var::from_tensor(&Tensor::new(values, &Device::Cpu).unwrap()).unwrap()
    }

    #[test]
    fn a_variable_that_is_not_stepped_keeps_parameters_and_state() {
        let mut vars = BTreeMap::new();
        vars.insert("a.w1".to_string(), var(&[1.0, 2.0]));
        vars.insert("b.bias".to_string(), var(&[3.0]));
        let config = AdamWConfig {
            learning_rate: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(config, &vars).unwrap();
        let grad = Tensor::new(&[0.5f32, -0.5], &Device::Cpu).unwrap();
        opt.step_var("a.w1", &vars["a.w1"], &grad).unwrap();
        let a = vars["a.w1"].to_vec1::<f32>().unwrap();
        // First Adam step moves each coordinate by lr·sign(g) (plus decay on the matrix).
        assert!((a[0] - (1.0 * (1.0 - 0.01) - 0.1)).abs() < 1e-5, "{a:?}");
        assert!((a[1] - (2.0 * (1.0 - 0.01) + 0.1)).abs() < 1e-5, "{a:?}");
        assert_eq!(vars["b.bias"].to_vec1::<f32>().unwrap(), vec![3.0]);
        assert_eq!(opt.state()["b.bias"].steps, 0);
        assert_eq!(opt.state()["a.w1"].steps, 1);
        assert_eq!(opt.state()["b.bias"].m.to_vec1::<f32>().unwrap(), vec![0.0]);
    }

    /// Regression: moments built from a gradient that carries its op graph (as backward's
    /// gradients do) kept every step's graph alive; `warden bench train --steps 120` grew to
    /// 11.8 GB resident. The stored moments must be detached.
    #[test]
    fn moments_do_not_keep_the_gradient_graph_alive() {
        let mut vars = BTreeMap::new();
        vars.insert("a.w1".to_string(), var(&[1.0, 2.0]));
        let config = AdamWConfig {
            learning_rate: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let mut opt = AdamW::new(config, &vars).unwrap();
        let x = var(&[0.5, -0.5]);
        // A gradient that tracks its op (built from a variable), as backward produces.
        let grad = (x.as_tensor() * 2.0).unwrap();
        assert!(grad.track_op());
        opt.step_var("a.w1", &vars["a.w1"], &grad).unwrap();
        let moments = &opt.state()["a.w1"];
        assert!(!moments.m.track_op(), "m keeps the gradient's graph");
        assert!(!moments.v.track_op(), "v keeps the gradient's graph");
    }
}
