//! The `call.generate` lineage record payload: what one governed call did, without its text
//! unless asked. Pure (no IO, no signing): the caller appends it with the deployment authority.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::governor::{CallSummary, Generation, Stop};

pub const CALL_GENERATE_KIND: &str = "call.generate";

/// Payload of a `call.generate` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// SHA-256 (hex) of the prompt's UTF-8 bytes.
    pub prompt_sha256: String,
    /// SHA-256 (hex) of the output bytes exactly as emitted.
    pub output_sha256: String,
    /// The texts, only when the caller asked for them.
    pub prompt: Option<String>,
    pub output: Option<String>,
    pub stop: Stop,
    pub summary: CallSummary,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Builds the payload for the call that produced `generation` from `prompt`; the texts are
/// included only with `include_text`.
pub fn call_record(prompt: &str, generation: &Generation, include_text: bool) -> CallRecord {
    CallRecord {
        prompt_sha256: sha256_hex(prompt.as_bytes()),
        output_sha256: sha256_hex(&generation.bytes),
        prompt: include_text.then(|| prompt.to_string()),
        output: include_text.then(|| generation.text.clone()),
        stop: generation.stop,
        summary: generation.summary.clone(),
    }
}
