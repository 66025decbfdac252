//! Corpus admission: signed corpus declarations with per-sample commitments.
//!
//! A user declares a corpus in TOML ([`declaration`]); [`admit`] streams every source, hashes
//! each sample ([`sample_hash`]), builds RFC 6962 trees per source and over the whole corpus,
//! refuses sources the policy does not admit, excludes and lists flagged samples, builds per-class
//! n-gram fingerprint indexes, and writes a declaration signed by a corpus-authority key.
//! [`AdmittedCorpus::load`] is the only way to use an admission, and it verifies the signature
//! through the trust store first; the training data gate then reduces to
//! [`AdmittedCorpus::lookup`] on each sample's hash.
//!
//! Architecture invariants: this crate never appends to the lineage itself (the binary does, with
//! [`DeclarationBody::lineage_payload`]), never loads a source file whole, and never drops a
//! sample without listing it.

pub mod admit;
pub mod corpus;
pub mod declaration;
mod error;
mod extsort;
pub mod fingerprint;
mod fsio;
pub mod index;
pub mod policy;
pub mod prove;
mod roots;
pub mod signed;
pub mod source;
pub mod synth;
pub mod verify;

pub use admit::{
    admit, check_signing_key, Admission, AdmitOptions, AdmitProgress, Exclusion, ProgressFn,
};
pub use corpus::{AdmittedCorpus, AdmittedSource};
pub use declaration::{Declaration, Provenance, SourceFormat};
pub use error::CorpusError;
pub use fingerprint::FingerprintIndex;
pub use index::SampleRef;
pub use signed::DeclarationBody;
pub use source::Sample;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The sample hash: SHA-256 of the sample's canonical bytes, which are the UTF-8 bytes of its
/// text exactly as [`source`] extracts it (JSONL: the decoded text field verbatim; text: the
/// document's lines without terminators, joined by `\n`, no trailing newline; no Unicode
/// normalization). `printf '%s' "$text" | sha256sum` computes the same value.
pub fn sample_hash(text: &str) -> Hash {
    Sha256::digest(text.as_bytes()).into()
}

/// Parses a 64-hex-digit hash.
pub fn parse_hash(text: &str) -> Result<Hash, CorpusError> {
    let bytes = hex::decode(text.trim()).map_err(|_| CorpusError::BadHash(text.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| CorpusError::BadHash(text.to_string()))
}
