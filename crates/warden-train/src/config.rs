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
    /// How the run's records are signed (`[lineage] cadence`); default: every record.
    #[serde(default)]
    pub lineage: LineageSettings,
    pub policy: TrainingPolicy,
}

/// How training records are authenticated in the lineage.
///
/// `record` (the default): every record carries its own training-authority signature, so a
/// crash leaves an authenticated tail. `window`: records are chained and sealed by the signed
/// checkpoints the policy's `lineage` cadence takes (fewer signatures; records after the last
/// checkpoint are unauthenticated until the next one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningCadence {
    #[default]
    Record,
    Window,
}

/// The `[lineage]` table of the training config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageSettings {
    #[serde(default)]
    pub cadence: SigningCadence,
}

impl TrainConfig {
    /// Parses a config; a relative corpus path is resolved against `base_dir`.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<TrainConfig, TrainError> {
        let mut config: TrainConfig = toml::from_str(text).map_err(|e| TrainError::Syntax {
            origin: origin.to_string(),
            reason: e.to_string().trim().replace('\n', " "),
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
        if self.steps == 0 {
            return Err(TrainError::field(
                "steps",
                "must be at least 1 (a run of 0 steps would write an untrained model)",
            ));
        }
        if self.batch_size == 0 {
            return Err(TrainError::field("batch_size", "must be at least 1"));
        }
        if let Some(eval) = &self.eval {
            if eval.every == 0 {
                return Err(TrainError::field("eval.every", "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The canonical text of this config (what the run directory keeps and the records digest).
    pub fn to_toml(&self) -> Result<String, TrainError> {
        toml::to_string(self).map_err(|e| TrainError::Internal(format!("config encoding: {e}")))
    }
}
