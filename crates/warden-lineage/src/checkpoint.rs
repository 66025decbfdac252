//! Signed checkpoints in the C2SP `tlog-checkpoint` / signed-note text format.
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, base64>
//!
//! — <key name> <base64(key id ‖ Ed25519 signature)>
//! ```
//! The signature covers the note text (the three lines, each ending in `\n`), exactly as
//! `golang.org/x/mod/sumdb/note` defines it, so these checkpoints verify with standard tooling.
//! A checkpoint may carry several signature lines: in window mode every key that signed records
//! in the window co-signs the checkpoint that seals them.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use std::collections::BTreeSet;

use warden_keys::{KeyId, KeyRef, Role, Signature, SigningKey, TrustStore};
use warden_merkle::Hash;

/// The em dash that starts every signed-note signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// A tree head: origin, size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub id: KeyId,
    pub signature: Signature,
}

impl NoteSignature {
    pub fn key_ref(&self) -> KeyRef {
        KeyRef {
            name: self.name.clone(),
            id: self.id.to_string(),
        }
    }
}

/// A checkpoint with its signatures, and the exact text they cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub signatures: Vec<NoteSignature>,
}

/// Why checkpoint text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed checkpoint: {0}")]
pub struct CheckpointParseError(pub String);

impl Checkpoint {
    /// The signed text: `origin\nsize\nbase64(root)\n`.
    pub fn note_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    /// Signs the note with each key (order kept: callers pass a deterministic order).
    pub fn sign<'k>(self, keys: impl IntoIterator<Item = &'k SigningKey>) -> SignedCheckpoint {
        let text = self.note_text();
        let signatures = keys
            .into_iter()
            .map(|key| NoteSignature {
                name: key.name().to_string(),
                id: key.id(),
                signature: key.sign(text.as_bytes()),
            })
            .collect();
        SignedCheckpoint {
            checkpoint: self,
            signatures,
        }
    }
}

impl SignedCheckpoint {
    /// The full note: text, blank line, signature lines.
    pub fn to_note(&self) -> String {
        let mut out = self.checkpoint.note_text();
        out.push('\n');
        for sig in &self.signatures {
            let mut blob = Vec::with_capacity(68);
            blob.extend_from_slice(&sig.id.to_bytes());
            blob.extend_from_slice(&sig.signature.0);
            out.push_str(&format!(
                "{SIG_PREFIX}{} {}\n",
                sig.name,
                BASE64.encode(blob)
            ));
        }
        out
    }

    /// Parses a note strictly: re-rendering it must give back the same text.
    pub fn parse(note: &str) -> Result<SignedCheckpoint, CheckpointParseError> {
        let bad = |m: &str| CheckpointParseError(m.to_string());
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line between the text and the signatures"))?;
        let text = &note[..split + 1];
        let sig_block = &note[split + 2..];
        let mut lines = text.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("missing origin line"))?;
        let size_line = lines.next().ok_or_else(|| bad("missing tree size line"))?;
        let size: u64 = size_line
            .parse()
            .ok()
            .filter(|_| size_line == "0" || !size_line.starts_with('0'))
            .ok_or_else(|| bad(&format!("tree size `{size_line}` is not a decimal number")))?;
        let root_line = lines.next().ok_or_else(|| bad("missing root hash line"))?;
        let root: Hash = BASE64
            .decode(root_line)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("root hash is not 32 bytes of base64"))?;
        if lines.next().is_some() {
            return Err(bad("unexpected extension lines"));
        }
        let mut signatures = Vec::new();
        for line in sig_block.split_terminator('\n') {
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| bad("signature line does not start with an em dash"))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| bad("signature line is not `— name signature`"))?;
            let raw = BASE64
                .decode(blob)
                .map_err(|_| bad("signature is not base64"))?;
            if raw.len() != 68 {
                return Err(bad(
                    "signature is not a 4-byte key id and a 64-byte Ed25519 signature",
                ));
            }
            let id = KeyId(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]));
            let signature =
                Signature::from_slice(&raw[4..]).ok_or_else(|| bad("short signature"))?;
            signatures.push(NoteSignature {
                name: name.to_string(),
                id,
                signature,
            });
        }
        let parsed = SignedCheckpoint {
            checkpoint: Checkpoint {
                origin: origin.to_string(),
                size,
                root,
            },
            signatures,
        };
        if parsed.to_note() != note {
            return Err(bad("not in canonical form"));
        }
        Ok(parsed)
    }

    /// Checks every signature line through the trust store. A co-signature counts only from a
    /// key trusted for one of `roles` — the roles that signed records in the window the
    /// checkpoint seals — so a key trusted for an unrelated role cannot vouch for a tree head.
    /// Each line must be by such a key and valid; a note with no signature is refused. Returns
    /// the signers.
    pub fn verify_signatures(
        &self,
        trust: &TrustStore,
        roles: &BTreeSet<Role>,
    ) -> Result<Vec<KeyRef>, CheckpointFault> {
        if self.signatures.is_empty() {
            return Err(CheckpointFault::Unsigned);
        }
        let text = self.checkpoint.note_text();
        let mut signers = Vec::with_capacity(self.signatures.len());
        for sig in &self.signatures {
            let key = sig.key_ref();
            let held = trust.roles_of(&key);
            if held.is_empty() {
                return Err(CheckpointFault::UntrustedKey(key.to_string()));
            }
            let role = held
                .iter()
                .copied()
                .find(|r| roles.contains(r))
                .ok_or_else(|| CheckpointFault::UnrelatedRole {
                    key: key.to_string(),
                    held: join_roles(held.iter()),
                    window: join_roles(roles.iter()),
                })?;
            trust
                .verify(&key, role, text.as_bytes(), &sig.signature)
                .map_err(|_| CheckpointFault::BadSignature(key.to_string()))?;
            signers.push(key);
        }
        Ok(signers)
    }
}

fn join_roles<'r>(roles: impl Iterator<Item = &'r Role>) -> String {
    let names: Vec<&str> = roles.map(|r| r.as_str()).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// What is wrong with a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointFault {
    #[error("{0}")]
    Malformed(String),
    #[error("it carries no signature")]
    Unsigned,
    #[error("signed by key {0}, which the trust file does not list")]
    UntrustedKey(String),
    #[error("co-signed by key {key}, trusted only for {held}, not for a role that signed the records it seals ({window})")]
    UnrelatedRole {
        key: String,
        held: String,
        window: String,
    },
    #[error("bad signature by key {0}")]
    BadSignature(String),
    #[error("origin `{found}` differs from the log's origin `{expected}`")]
    WrongOrigin { expected: String, found: String },
    #[error("tree size {size} does not grow past the previous checkpoint's {previous}")]
    NotIncreasing { size: u64, previous: u64 },
    #[error("root {found} does not match the root {expected} recomputed from the records")]
    RootMismatch { expected: String, found: String },
    #[error(
        "claims {size} records but the log holds only {records} (records removed or truncated)"
    )]
    BeyondLog { size: u64, records: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_round_trip_and_cosigning() {
        let a = SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[1; 32]).unwrap();
        let b = SigningKey::from_seed(Role::TrainingAuthority, "training", &[2; 32]).unwrap();
        let cp = Checkpoint {
            origin: "warden.example/lineage".into(),
            size: 42,
            root: [7; 32],
        };
        let signed = cp.clone().sign([&a, &b]);
        let note = signed.to_note();
        assert!(note.starts_with("warden.example/lineage\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u{2014} corpus "));
        let parsed = SignedCheckpoint::parse(&note).unwrap();
        assert_eq!(parsed, signed);
        let both: BTreeSet<Role> = [Role::CorpusAuthority, Role::TrainingAuthority].into();
        let mut trust = TrustStore::new();
        trust.add(Role::CorpusAuthority, a.public().clone());
        assert_eq!(
            parsed.verify_signatures(&trust, &both),
            Err(CheckpointFault::UntrustedKey(b.key_ref().to_string()))
        );
        trust.add(Role::TrainingAuthority, b.public().clone());
        assert_eq!(parsed.verify_signatures(&trust, &both).unwrap().len(), 2);
        let tampered = note.replace("\n42\n", "\n43\n");
        let parsed = SignedCheckpoint::parse(&tampered).unwrap();
        assert!(matches!(
            parsed.verify_signatures(&trust, &both),
            Err(CheckpointFault::BadSignature(_))
        ));
    }

    /// Regression: any trusted key of any role used to be accepted as a co-signer.
    #[test]
    fn a_cosignature_by_a_key_of_a_role_absent_from_the_window_is_refused() {
        let training =
            SigningKey::from_seed(Role::TrainingAuthority, "training", &[2; 32]).unwrap();
        let corpus = SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[1; 32]).unwrap();
        let mut trust = TrustStore::new();
        trust.add(Role::TrainingAuthority, training.public().clone());
        trust.add(Role::CorpusAuthority, corpus.public().clone());
        let cp = Checkpoint {
            origin: "o".into(),
            size: 3,
            root: [1; 32],
        };
        let window: BTreeSet<Role> = [Role::TrainingAuthority].into();
        assert_eq!(
            cp.clone()
                .sign([&training])
                .verify_signatures(&trust, &window)
                .unwrap(),
            vec![training.key_ref()]
        );
        let err = cp
            .sign([&training, &corpus])
            .verify_signatures(&trust, &window)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "co-signed by key {}, trusted only for corpus-authority, not for a role that signed the records it seals (training-authority)",
                corpus.key_ref()
            )
        );
    }

    #[test]
    fn non_canonical_notes_are_refused() {
        for note in ["", "o\n1\n", "o\n01\nAA==\n\n", "o\n1\nAA==\n\nnot a sig\n"] {
            assert!(SignedCheckpoint::parse(note).is_err(), "{note:?}");
        }
    }
}
