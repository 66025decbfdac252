//! The streaming verifier: feed it records and checkpoints in log order, get a
//! [`VerifiedLineage`] or an error naming the first bad record. It does no IO.

use std::collections::{BTreeMap, BTreeSet};

use warden_keys::{KeyRef, TrustStore};
use warden_merkle::{leaf_hash, CompactTree, Hash};

use crate::checkpoint::{CheckpointFault, SignedCheckpoint};
use crate::record::{decode_entry, required_role, signing_message, EnvelopeView};

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordFault {
    #[error("undecodable bytes: {0}")]
    Undecodable(String),
    #[error("corrupted bytes: {0}")]
    Corrupt(String),
    #[error("incomplete record at byte {offset} of {file} (torn write; opening the store for appending cuts it)")]
    Torn { file: String, offset: u64 },
    #[error("sequence number {found} where {expected} was expected (record inserted, removed or reordered)")]
    Sequence { expected: u64, found: u64 },
    #[error("broken chain: its prev hash does not match the previous record (record inserted, removed or reordered)")]
    BrokenChain,
    #[error("signed by key {key}, which is not trusted for role {role}")]
    UntrustedKey { key: String, role: String },
    #[error("kind `{kind}` must be signed by the {required} but is signed as {found}")]
    WrongRole {
        kind: String,
        required: String,
        found: String,
    },
    #[error("bad signature by key {key}")]
    BadSignature { key: String },
    #[error("its signer {key} did not co-sign checkpoint {checkpoint}, which seals it")]
    NotCovered { key: String, checkpoint: u64 },
    #[error("missing: checkpoint {checkpoint} covers {claimed} records")]
    Missing { checkpoint: u64, claimed: u64 },
}

/// Verification failed: the first bad record or checkpoint, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("record {index} ({kind}): {fault}")]
    Record {
        index: u64,
        kind: String,
        fault: RecordFault,
    },
    #[error("checkpoint {index}{}: {fault}", size.map(|s| format!(" (tree size {s})")).unwrap_or_default())]
    Checkpoint {
        index: u64,
        size: Option<u64>,
        fault: CheckpointFault,
    },
    #[error(
        "the log holds {found} records but {expected} were expected (records removed at the end)"
    )]
    ExpectedSize { expected: u64, found: u64 },
    #[error("{0}")]
    Storage(String),
}

impl VerifyError {
    pub fn record(index: u64, kind: impl Into<String>, fault: RecordFault) -> VerifyError {
        VerifyError::Record {
            index,
            kind: kind.into(),
            fault,
        }
    }
}

/// The outcome of a successful verification. Only [`LineageVerifier::finish`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLineage {
    pub origin: Option<String>,
    pub records: u64,
    /// Records covered by a valid signed checkpoint (or signed individually and checkpointed).
    pub sealed: u64,
    pub checkpoints: u64,
    pub root: Hash,
    pub latest_checkpoint: Option<(u64, Hash)>,
    pub kinds: BTreeMap<String, u64>,
    pub signers: BTreeSet<String>,
}

impl VerifiedLineage {
    /// Records after the last checkpoint: chained and in the tree, but not yet signed.
    pub fn unsealed(&self) -> u64 {
        self.records - self.sealed
    }
}

/// Consumes a log in order. Records are fed as stored entries (`[body, signature|null]`).
pub struct LineageVerifier<'t> {
    trust: &'t TrustStore,
    origin: Option<String>,
    /// Only the right edge of the tree: verification memory does not grow with the log.
    tree: CompactTree,
    prev: Hash,
    /// Signers of not-yet-sealed, individually unsigned records → first such record index.
    pending: BTreeMap<KeyRef, u64>,
    sealed: u64,
    checkpoints: u64,
    latest: Option<(u64, Hash)>,
    kinds: BTreeMap<String, u64>,
    signers: BTreeSet<String>,
    /// Kind of each record since the last checkpoint, to name records in errors.
    last_kind: BTreeMap<u64, String>,
}

impl<'t> LineageVerifier<'t> {
    pub fn new(trust: &'t TrustStore) -> LineageVerifier<'t> {
        LineageVerifier {
            trust,
            origin: None,
            tree: CompactTree::new(),
            prev: [0; 32],
            pending: BTreeMap::new(),
            sealed: 0,
            checkpoints: 0,
            latest: None,
            kinds: BTreeMap::new(),
            signers: BTreeSet::new(),
            last_kind: BTreeMap::new(),
        }
    }

    /// Number of records accepted so far.
    pub fn len(&self) -> u64 {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Checks the next record; `entry` is its stored `[body, signature|null]` bytes.
    pub fn record(&mut self, entry: &[u8]) -> Result<(), VerifyError> {
        let index = self.tree.len();
        let undecodable = |e: &dyn std::fmt::Display| {
            VerifyError::record(
                index,
                "kind unknown",
                RecordFault::Undecodable(e.to_string()),
            )
        };
        let (body, signature) = decode_entry(entry).map_err(|e| undecodable(&e))?;
        let view = EnvelopeView::check(body).map_err(|e| undecodable(&e))?;
        let fail = |fault| VerifyError::record(index, view.kind, fault);
        if view.seq != index {
            return Err(fail(RecordFault::Sequence {
                expected: index,
                found: view.seq,
            }));
        }
        if view.prev != self.prev {
            return Err(fail(RecordFault::BrokenChain));
        }
        if let Some(required) = required_role(view.kind) {
            if view.role != required {
                return Err(fail(RecordFault::WrongRole {
                    kind: view.kind.to_string(),
                    required: required.to_string(),
                    found: view.role.to_string(),
                }));
            }
        }
        let signer = view.signer();
        let key = self.trust.trusted_for(&signer, view.role).map_err(|_| {
            fail(RecordFault::UntrustedKey {
                key: signer.to_string(),
                role: view.role.to_string(),
            })
        })?;
        match signature {
            Some(sig) => key.verify(&signing_message(body), &sig).map_err(|_| {
                fail(RecordFault::BadSignature {
                    key: signer.to_string(),
                })
            })?,
            None => {
                self.pending.entry(signer.clone()).or_insert(index);
            }
        }
        let leaf = leaf_hash(body);
        self.tree.push(leaf);
        self.prev = leaf;
        *self.kinds.entry(view.kind.to_string()).or_default() += 1;
        self.signers.insert(signer.to_string());
        self.last_kind.insert(index, view.kind.to_string());
        Ok(())
    }

    /// Checks a checkpoint whose tree size must equal the number of records fed so far.
    pub fn checkpoint(&mut self, cp_index: u64, note: &str) -> Result<(), VerifyError> {
        let at = |size: Option<u64>, fault| VerifyError::Checkpoint {
            index: cp_index,
            size,
            fault,
        };
        let signed =
            SignedCheckpoint::parse(note).map_err(|e| at(None, CheckpointFault::Malformed(e.0)))?;
        let cp = &signed.checkpoint;
        let size = Some(cp.size);
        match &self.origin {
            Some(origin) if origin != &cp.origin => {
                return Err(at(
                    size,
                    CheckpointFault::WrongOrigin {
                        expected: origin.clone(),
                        found: cp.origin.clone(),
                    },
                ))
            }
            Some(_) => {}
            None => self.origin = Some(cp.origin.clone()),
        }
        if let Some((previous, _)) = self.latest {
            if cp.size <= previous {
                return Err(at(
                    size,
                    CheckpointFault::NotIncreasing {
                        size: cp.size,
                        previous,
                    },
                ));
            }
        }
        if cp.size != self.tree.len() {
            return Err(at(
                size,
                CheckpointFault::BeyondLog {
                    size: cp.size,
                    records: self.tree.len(),
                },
            ));
        }
        let signers = signed
            .verify_signatures(self.trust)
            .map_err(|f| at(size, f))?;
        let expected_root = self.tree.root();
        if cp.root != expected_root {
            return Err(at(
                size,
                CheckpointFault::RootMismatch {
                    expected: hex::encode(expected_root),
                    found: hex::encode(cp.root),
                },
            ));
        }
        for (key, first_index) in &self.pending {
            if !signers.contains(key) {
                let kind = self.last_kind.get(first_index).cloned().unwrap_or_default();
                return Err(VerifyError::record(
                    *first_index,
                    kind,
                    RecordFault::NotCovered {
                        key: key.to_string(),
                        checkpoint: cp_index,
                    },
                ));
            }
        }
        self.pending.clear();
        self.last_kind.clear();
        self.sealed = cp.size;
        self.checkpoints += 1;
        self.latest = Some((cp.size, cp.root));
        Ok(())
    }

    /// Ends verification. `expect_size`, if given, must equal the number of records.
    pub fn finish(self, expect_size: Option<u64>) -> Result<VerifiedLineage, VerifyError> {
        if let Some(expected) = expect_size {
            if expected != self.tree.len() {
                return Err(VerifyError::ExpectedSize {
                    expected,
                    found: self.tree.len(),
                });
            }
        }
        Ok(VerifiedLineage {
            origin: self.origin,
            records: self.tree.len(),
            sealed: self.sealed,
            checkpoints: self.checkpoints,
            root: self.tree.root(),
            latest_checkpoint: self.latest,
            kinds: self.kinds,
            signers: self.signers,
        })
    }
}
