//! The signed corpus declaration: what was admitted, refused and excluded, and the digests of
//! every output file, signed by a corpus-authority key.
//!
//! One canonical encoding: the body is the compact JSON serialization of [`DeclarationBody`]
//! (fields in struct order, lists in declaration order, no maps, no floats). It is stored as
//! `declaration.json` exactly as signed; `declaration.sig` holds the signer's key reference and
//! the Ed25519 signature over `"warden/corpus-declaration/v1\n" ‖ body`. Loading verifies the
//! signature through the trust store over the bytes on disk, then parses them and re-encodes:
//! bytes that are not the canonical encoding of what they parse to are refused, so two different
//! byte strings can never carry the same declaration.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use warden_keys::{KeyRef, Role, Signature, SigningKey, TrustStore};

use crate::declaration::Provenance;
use crate::error::CorpusError;
use crate::Hash;

/// v3: classes may carry a deny index (`denied`, the fingerprints of refused excluded-class
/// text). v2 (still read): `base_dir` is relative to the admission directory. v1 (still read):
/// absolute.
pub const FORMAT: &str = "warden-corpus-declaration/v3";
const FORMAT_V2: &str = "warden-corpus-declaration/v2";
const FORMAT_V1: &str = "warden-corpus-declaration/v1";
pub const DOMAIN: &[u8] = b"warden/corpus-declaration/v1\n";
pub const DECLARATION_FILE: &str = "declaration.json";
pub const SIGNATURE_FILE: &str = "declaration.sig";
/// What [`crate::sample_hash`] hashes, recorded in every declaration.
pub const SAMPLE_HASH: &str = "sha256(utf-8 bytes of the sample text: jsonl = the decoded text field verbatim; text = document lines without terminators joined by LF, no trailing newline; no unicode normalization)";

/// A digest-committed output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Relative to the admission output directory.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRecord {
    pub id: String,
    pub pattern: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlaggersRecord {
    pub email: bool,
    pub phone: bool,
    pub card: bool,
    pub regexes: Vec<RegexRecord>,
    /// Sample hashes, hex, ascending.
    pub blocklist: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRecord {
    pub admitted_licenses: Vec<String>,
    pub excluded_classes: Vec<String>,
    pub flaggers: FlaggersRecord,
}

/// One file of a source with its size and line count at admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFileRecord {
    /// Relative to the source path; empty when the source is one file.
    pub path: String,
    pub format: String,
    pub bytes: u64,
    pub lines: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRecord {
    pub id: String,
    /// As declared (relative paths resolve against [`DeclarationBody::base_dir`]).
    pub path: String,
    /// `jsonl`, `text`, or null (per file by extension).
    pub format: Option<String>,
    pub text_field: String,
    pub license: String,
    pub class: String,
    pub depth: String,
    pub held_out: bool,
    pub provenance: Provenance,
    /// `admitted` or `refused`.
    pub decision: String,
    pub refusal: Option<String>,
    pub files: Vec<SourceFileRecord>,
    /// Samples read (admitted and flagged; malformed lines are not samples).
    pub n_samples: u64,
    pub n_flagged: u64,
    pub n_malformed: u64,
    pub bytes: u64,
    /// RFC 6962 root over the source's sample hashes in file order (leaf data = sample hash).
    pub root: Option<String>,
    /// The `(line, hash)` list the root is over, in file order.
    pub leaves: Option<FileRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintRecord {
    pub file: String,
    pub sha256: String,
    pub scheme: String,
    pub n_grams: u64,
    /// The false-positive rate per queried gram, stated as a formula with its `n`.
    pub false_positive_rate: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassRecord {
    pub class: String,
    pub n_sources: u64,
    pub n_refused_sources: u64,
    pub n_samples: u64,
    pub n_admitted: u64,
    pub n_flagged: u64,
    pub fingerprint: Option<FingerprintRecord>,
    /// The deny index (v3): the fingerprints of this class's text in sources refused because
    /// the class is excluded (`fingerprints/denied/<class>.fp`, same scheme and file format),
    /// never admitted. Absent (not serialized) when the class has no refused text, so v1/v2
    /// bodies keep their canonical encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<FingerprintRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub n_sources: u64,
    pub n_refused_sources: u64,
    pub n_samples: u64,
    /// Admitted sample occurrences (not flagged, in admitted sources).
    pub n_admitted: u64,
    /// Distinct admitted sample hashes: the leaves of the corpus tree.
    pub n_unique_admitted: u64,
    pub n_flagged: u64,
    pub n_malformed: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExclusionsRecord {
    pub file: FileRecord,
    pub n_flagged: u64,
    pub n_malformed: u64,
}

/// The signed body of a corpus declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclarationBody {
    pub format: String,
    pub name: String,
    pub description: String,
    /// SHA-256 of the TOML declaration the admission read.
    pub declaration_toml_sha256: String,
    /// The directory relative source paths resolve against (the declaration TOML's directory),
    /// relative to the admission directory (the one holding `declaration.json`), e.g.
    /// `../synth`; absolute only in v1 declarations or across drives.
    pub base_dir: String,
    pub sample_hash: String,
    pub policy: PolicyRecord,
    pub sources: Vec<SourceRecord>,
    pub classes: Vec<ClassRecord>,
    pub totals: Totals,
    /// RFC 6962 root over the distinct admitted sample hashes in ascending order.
    pub corpus_root: String,
    pub sample_index: FileRecord,
    pub exclusions: ExclusionsRecord,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    signer: KeyRef,
    signature: String,
}

impl DeclarationBody {
    /// The one canonical encoding.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serializing plain structs of strings, integers, booleans and lists cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The payload of the `corpus.admission` lineage record.
    pub fn lineage_payload(&self, digest: &Hash, signer: &KeyRef) -> serde_json::Value {
        serde_json::json!({
            "corpus": self.name,
            "declaration_sha256": hex::encode(digest),
            "corpus_root": self.corpus_root,
            "signer": signer.to_string(),
            "sample_hash": "sha256",
            "excluded_classes": self.policy.excluded_classes,
            "admitted_licenses": self.policy.admitted_licenses,
            "sources": self.sources.iter().map(|s| serde_json::json!({
                "id": s.id,
                "class": s.class,
                "license": s.license,
                "held_out": s.held_out,
                "decision": s.decision,
                "refusal": s.refusal,
                "n_samples": s.n_samples,
                "n_flagged": s.n_flagged,
                "n_malformed": s.n_malformed,
                "root": s.root,
            })).collect::<Vec<_>>(),
            "totals": self.totals,
        })
    }
}

pub(crate) fn message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + body.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(body);
    m
}

/// Signs and writes `declaration.json` then `declaration.sig`; returns the body's SHA-256.
pub(crate) fn write_signed(
    dir: &Path,
    body: &DeclarationBody,
    key: &SigningKey,
) -> Result<Hash, CorpusError> {
    let bytes = body.canonical_bytes();
    let signature = key.sign(&message(&bytes));
    let sig = SignatureFile {
        signer: key.key_ref(),
        signature: BASE64.encode(signature.0),
    };
    let sig_text = serde_json::to_vec_pretty(&sig).unwrap_or_default();
    let digest = crate::fsio::atomic_write(&dir.join(DECLARATION_FILE), &bytes)?;
    crate::fsio::atomic_write(&dir.join(SIGNATURE_FILE), &sig_text)?;
    Ok(digest)
}

/// Reads, verifies (trust store, corpus-authority role) and parses a signed declaration.
pub(crate) fn read_verified(
    dir: &Path,
    trust: &TrustStore,
) -> Result<(DeclarationBody, Hash, KeyRef), CorpusError> {
    let decl_path = dir.join(DECLARATION_FILE);
    let sig_path = dir.join(SIGNATURE_FILE);
    let bytes = crate::fsio::read(&decl_path)?;
    let sig_bytes = crate::fsio::read(&sig_path)?;
    let bad = |message: String| CorpusError::Signature {
        file: decl_path.clone(),
        message,
    };
    let sig: SignatureFile =
        serde_json::from_slice(&sig_bytes).map_err(|e| CorpusError::Signature {
            file: sig_path.clone(),
            message: format!("malformed signature file: {e}"),
        })?;
    let raw = BASE64
        .decode(sig.signature.as_bytes())
        .map_err(|_| bad("signature is not base64".into()))?;
    let signature =
        Signature::from_slice(&raw).ok_or_else(|| bad("signature is not 64 bytes".into()))?;
    trust
        .verify(
            &sig.signer,
            Role::CorpusAuthority,
            &message(&bytes),
            &signature,
        )
        .map_err(|e| bad(format!("refused: {e}")))?;
    let body: DeclarationBody =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("signed but unreadable: {e}")))?;
    if body.format != FORMAT && body.format != FORMAT_V2 && body.format != FORMAT_V1 {
        return Err(bad(format!(
            "unsupported format `{}` (expected {FORMAT})",
            body.format
        )));
    }
    if body.canonical_bytes() != bytes {
        return Err(bad("not in canonical encoding".into()));
    }
    Ok((body, crate::fsio::sha256(&bytes), sig.signer))
}
