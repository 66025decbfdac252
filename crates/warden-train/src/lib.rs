//! warden-train: the governed training loop — model, optimizer, gates, detectors, manifest.

pub mod detect;
pub mod model;
pub mod optim;
pub mod policy;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("internal error: {0}")]
    Internal(String),
}
