//! warden-train: the governed training loop — model, optimizer, gates, detectors, manifest.

use std::path::PathBuf;

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
pub mod replay;
pub mod run;
pub mod trainer;

pub use trainer::Gate;

/// Everything that can stop a training command. Variants carry what the user needs to find
/// the fault (file, field, iteration, digests); messages are sentences without type names.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The config (or policy) file is not valid TOML for its schema.
    #[error("invalid configuration: {origin}: {reason}")]
    Syntax { origin: String, reason: String },
    /// One field of the config holds a value training cannot use.
    #[error("invalid configuration: {field}: {reason}")]
    Field { field: String, reason: String },
    /// A policy that does not fit the model or is inconsistent in itself.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The run directory already holds a run.
    #[error("{}: already holds a run; use `warden train resume {}`", run_dir.display(), run_dir.display())]
    RunExists { run_dir: PathBuf },
    /// The lineage has no `train.start` record for this run directory.
    #[error("{}: the lineage {} holds no train.start record for this run", run_dir.display(), lineage.display())]
    NoStart { run_dir: PathBuf, lineage: PathBuf },
    /// The signing key is not trusted for the training-authority role (checked before anything
    /// is written: a record signed by it would not verify).
    #[error("signing key {key} is not trusted for {role}: {reason}")]
    UntrustedKey {
        key: String,
        role: warden_keys::Role,
        reason: String,
    },
    /// The corpus directory holds a different admission than the one the run started on.
    #[error("{}: corpus declaration {found} is not the run's: train.start (lineage record {seq}) names declaration {recorded}; re-admitting into a run's corpus directory is refused, start a new run", corpus.display())]
    CorpusChanged {
        corpus: PathBuf,
        recorded: String,
        found: String,
        seq: u64,
    },
    /// The run's config file is not the one its `train.start` record names.
    #[error("{}: config digest {found} is not the run's: train.start (lineage record {seq}) names {recorded}", path.display())]
    ConfigChanged {
        path: PathBuf,
        recorded: String,
        found: String,
        seq: u64,
    },
    /// A policy version label already names another policy in this run.
    #[error("{}: policy version {label:?} already names policy {recorded} in this run (lineage record {seq}), this one is {found}; give it a new version", path.display())]
    PolicyLabelReused {
        path: PathBuf,
        label: String,
        recorded: String,
        found: String,
        seq: u64,
    },
    #[error("{}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    /// Checkpoint content that does not fit the model (names the tensor).
    #[error("checkpoint: {0}")]
    CheckpointContent(String),
    #[error("corpus: {0}")]
    Corpus(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A durable write failed (the store's message names the file).
    #[error("{source}")]
    Write {
        path: PathBuf,
        #[source]
        source: warden_store::StoreError,
    },
    #[error("lineage: {action}: {source}")]
    Lineage {
        action: String,
        #[source]
        source: warden_store::StoreError,
    },
    #[error("training halted at iteration {iteration}: {gate} gate: {detail}")]
    Halted {
        iteration: u64,
        gate: Gate,
        detail: String,
    },
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Model errors keep their meaning in training: a configuration field stays a field error and
/// parameters that do not fit stay a checkpoint error, with the model's message.
impl From<warden_model::ModelError> for TrainError {
    fn from(error: warden_model::ModelError) -> TrainError {
        use warden_model::ModelError;
        match error {
            ModelError::Config { field, reason } => TrainError::Field { field, reason },
            ModelError::Parameters(reason) => TrainError::CheckpointContent(reason),
            ModelError::Candle(source) => TrainError::Tensor(source),
            ModelError::Invalid(reason) => TrainError::Internal(reason),
            other => TrainError::Internal(other.to_string()),
        }
    }
}

impl TrainError {
    /// An IO error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> TrainError {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    /// A lineage store error while doing `action`.
    pub fn lineage(action: impl Into<String>, source: warden_store::StoreError) -> TrainError {
        TrainError::Lineage {
            action: action.into(),
            source,
        }
    }

    /// A field of the config that is out of range.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> TrainError {
        TrainError::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
