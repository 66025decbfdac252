//! The one error type of this crate: every message names the file, line, source or field to fix.

use std::path::PathBuf;

/// Everything that can go wrong declaring, admitting, loading, verifying or proving a corpus.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A declaration (TOML) problem, located by file, line and field.
    #[error("{file}:{line}: {field}: {message}")]
    Declaration {
        file: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
    /// A sample that cannot be read as text (bad JSON, missing text field, invalid UTF-8).
    #[error("{file}:{line}: malformed sample: {message} (use --skip-malformed to exclude and list such lines)")]
    Malformed {
        file: PathBuf,
        line: u64,
        message: String,
    },
    /// An output file of an admission that is missing, truncated or not what the declaration signed.
    #[error("{file}: {message}")]
    Artifact { file: PathBuf, message: String },
    #[error("corpus declaration {file}: {message}")]
    Signature { file: PathBuf, message: String },
    #[error(
        "key {key} has role {role}, but corpus declarations are signed by a corpus-authority key"
    )]
    WrongRole { key: String, role: String },
    #[error("refusing to sign with key {key}: {reason}")]
    UntrustedKey { key: String, reason: String },
    /// `--out` is not empty and holds no admission (or another admission into it is running).
    #[error(
        "{dir}: cannot admit into this directory: {reason}; choose another --out or remove it"
    )]
    OutNotEmpty { dir: PathBuf, reason: String },
    /// `--out` holds a different admission.
    #[error("{dir} already holds a different admission (declaration sha256 {existing}); this admission's declaration sha256 is {new}: choose another --out, or remove the old admission first")]
    OutHoldsOther {
        dir: PathBuf,
        existing: String,
        new: String,
    },
    /// `--out` holds this admission's declaration, but not a usable admission.
    #[error("{dir} holds this admission's declaration but cannot be reused: {reason}; remove it and admit again")]
    OutIncomplete { dir: PathBuf, reason: String },
    /// A durable-write helper of `warden_store::fs` failed (the message names the path).
    #[error(transparent)]
    Store(#[from] warden_store::StoreError),
    #[error("unknown source index {0}")]
    NoSuchSource(u32),
    #[error("`{0}` is not a sample hash (expected 64 hex digits)")]
    BadHash(String),
    #[error("{0}")]
    Proof(String),
}

impl CorpusError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> CorpusError {
        CorpusError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn artifact(file: impl Into<PathBuf>, message: impl Into<String>) -> CorpusError {
        CorpusError::Artifact {
            file: file.into(),
            message: message.into(),
        }
    }
}
