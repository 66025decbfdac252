//! The training config file (`warden train CONFIG`): corpus, model, optimizer, seed, requested
//! evaluations and the training policy.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::ModelConfig;
use crate::optim::AdamWConfig;
use crate::policy::TrainingPolicy;
use crate::TrainError;

/// Evaluations the operator asks for; the evaluation gate decides whether each one may run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRequest {
    /// Request an evaluation every `every` iterations.
    pub every: u64,
    /// Held-out source ids to evaluate.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Probes: `loss`, `canary-exposure`.
    #[serde(default)]
    pub probes: Vec<String>,
    /// At most this many samples per source.
    #[serde(default = "default_max_samples")]
    pub max_samples: usize,
    /// Random same-format candidates per canary for the exposure rank.
    #[serde(default = "default_candidates")]
    pub candidates: usize,
    /// `canaries.json` of the corpus (`[{"secret", "format", ...}]`) for `canary-exposure`
    /// (relative paths: relative to the config file).
    #[serde(default)]
    pub canaries: Option<PathBuf>,
}

fn default_max_samples() -> usize {
    32
}
fn default_candidates() -> usize {
    64
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Directory written by `warden corpus admit` (relative paths: relative to the config file).
    pub corpus: PathBuf,
    pub seed: u64,
    pub steps: u64,
    pub batch_size: usize,
    pub model: ModelConfig,
    pub optimizer: AdamWConfig,
    pub eval: Option<EvalRequest>,
    pub policy: TrainingPolicy,
}

impl TrainConfig {
    /// Parses a config; a relative corpus path is resolved against `base_dir`.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<TrainConfig, TrainError> {
        let mut config: TrainConfig = toml::from_str(text).map_err(|e| {
            TrainError::Config(format!(
                "{origin}: {}",
                e.to_string().trim().replace('\n', " ")
            ))
        })?;
        if config.corpus.is_relative() {
            config.corpus = base_dir.join(&config.corpus);
        }
        if let Some(eval) = &mut config.eval {
            if let Some(path) = &eval.canaries {
                if path.is_relative() {
                    eval.canaries = Some(base_dir.join(path));
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        self.model.validate()?;
        self.optimizer.validate()?;
        if self.batch_size == 0 {
            return Err(TrainError::Config("batch_size must be at least 1".into()));
        }
        if let Some(eval) = &self.eval {
            if eval.every == 0 {
                return Err(TrainError::Config("eval.every must be at least 1".into()));
            }
        }
        Ok(())
    }

    /// The canonical text of this config (what the run directory keeps and the records digest).
    pub fn to_toml(&self) -> Result<String, TrainError> {
        toml::to_string(self).map_err(|e| TrainError::Internal(format!("config encoding: {e}")))
    }
}
