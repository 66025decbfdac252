//! warden-train: the governed training loop — model, optimizer, gates, detectors, manifest.

pub mod admitted;
pub mod bench;
pub mod config;
pub mod data;
pub mod detect;
pub mod gates;
pub mod io;
pub mod lineage;
pub mod manifest;
pub mod model;
pub mod optim;
pub mod policy;
pub mod run;
pub mod trainer;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("corpus: {0}")]
    Corpus(String),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("lineage: {0}")]
    Lineage(String),
    #[error("training halted at iteration {iteration}: {gate} gate: {detail}")]
    Halted {
        iteration: u64,
        gate: String,
        detail: String,
    },
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("internal error: {0}")]
    Internal(String),
}
