//! The networks Warden runs: its own byte-level GPT (shared by training and decoding, one
//! definition of the network) and llama-family GGUF models, behind one incremental interface the
//! governed decode loop drives.

pub mod gguf;
pub mod gpt;

/// Errors from building, loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("{0}")]
    Invalid(String),
    /// A model configuration field out of range (names the field, e.g. `model.heads`).
    #[error("invalid model configuration: {field}: {reason}")]
    Config { field: String, reason: String },
    /// Parameters that do not fit the configuration (names the tensor).
    #[error("model parameters: {0}")]
    Parameters(String),
    #[error("{path}: {reason}")]
    Gguf {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// What the decode loop needs from a model, whatever its architecture: the text of every token,
/// and next-token logits one incremental step at a time (a KV cache, so a new token costs one
/// forward over that token, never a re-run of the context).
pub trait LanguageModel {
    /// Number of token ids; logits have this length.
    fn vocab_size(&self) -> usize;
    /// The bytes token `id` adds to the output (may be part of a UTF-8 character).
    fn token_bytes(&self, id: u32) -> &[u8];
    /// The end-of-sequence token, if the model has one.
    fn eos(&self) -> Option<u32>;
    /// Most tokens (prompt + output) one sequence may hold.
    fn context_limit(&self) -> usize;
    /// Token ids for a plain-text prompt (no template).
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError>;
    /// Starts a new sequence: clears the cache, feeds `prompt`, returns the next-token logits.
    fn start(&mut self, prompt: &[u32]) -> Result<Vec<f32>, ModelError>;
    /// Appends `token` to the sequence and returns the next-token logits (one incremental step).
    fn step(&mut self, token: u32) -> Result<Vec<f32>, ModelError>;
}
