//! The streaming verifier: feed it records and checkpoints in log order, get a
//! [`VerifiedLineage`] or an error naming the first bad record. It does no IO.

use std::collections::{BTreeMap, BTreeSet};

use warden_keys::{KeyRef, Role, TrustStore};
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
    #[error("unauthenticated: it carries no signature and no checkpoint seals it ({count} such record{} after the last checkpoint, the last is record {last}); anyone who can write the files could have written it", if *count == 1 { "" } else { "s" })]
    Unauthenticated { count: u64, last: u64 },
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
    #[error("the log holds {found} records but {expected} were expected ({})", size_difference(*expected, *found))]
    ExpectedSize { expected: u64, found: u64 },
    #[error("pinned checkpoint (size {size}, root {root}): {fault}")]
    Pinned {
        size: u64,
        root: String,
        fault: PinFault,
    },
    #[error("{0}")]
    Storage(String),
}

/// Why the log does not extend a pinned checkpoint (one seen earlier, e.g. by a witness).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinFault {
    #[error("{0}")]
    Signature(CheckpointFault),
    #[error("its origin `{found}` is not the log's origin `{expected}`")]
    WrongOrigin { expected: String, found: String },
    #[error("the log holds only {records} records: it was rolled back (records removed since the checkpoint was seen)")]
    LogRolledBack { records: u64 },
    #[error("the log's root at that size is {log_root}: records up to it were rewritten (the log is not an extension of the pinned checkpoint)")]
    Rewritten { log_root: String },
    #[error("{}: the log's checkpoints were rolled back", match latest { Some(size) => format!("the log's latest checkpoint covers only {size} records"), None => "the log has no checkpoint".to_string() })]
    CheckpointsRolledBack { latest: Option<u64> },
    #[error("the log has no checkpoint of that size (its latest covers {latest} records): its checkpoints were rewritten")]
    NotInLog { latest: u64 },
}

fn size_difference(expected: u64, found: u64) -> String {
    let plural = |n: u64| if n == 1 { "record" } else { "records" };
    if found > expected {
        let n = found - expected;
        format!(
            "{n} more {} than expected: records were appended after that size",
            plural(n)
        )
    } else {
        let n = expected - found;
        format!(
            "{n} {} fewer than expected: records were removed at the end",
            plural(n)
        )
    }
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
    /// Records covered by a valid signed checkpoint.
    pub sealed: u64,
    pub checkpoints: u64,
    pub root: Hash,
    pub latest_checkpoint: Option<(u64, Hash)>,
    pub kinds: BTreeMap<String, u64>,
    pub signers: BTreeSet<String>,
    /// Records after the last checkpoint that carry no signature of their own. Only present
    /// when the caller passed [`UnsealedTail::Allow`]: nothing vouches for these records.
    pub unauthenticated: Option<Unauthenticated>,
    /// The pinned checkpoint the log was proven to extend, if one was given.
    pub pinned: Option<PinnedConsistency>,
}

impl VerifiedLineage {
    /// Records after the last checkpoint (authenticated by their own signatures, or listed in
    /// [`VerifiedLineage::unauthenticated`]).
    pub fn unsealed(&self) -> u64 {
        self.records - self.sealed
    }
}

/// Unsigned records after the last checkpoint: `count` of them, from `first` to `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthenticated {
    pub first: u64,
    pub last: u64,
    pub count: u64,
}

/// A pinned checkpoint and the RFC 6962 consistency proof from it to the log's latest
/// checkpoint, which verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedConsistency {
    pub size: u64,
    pub root: Hash,
    pub latest_size: u64,
    pub latest_root: Hash,
}

/// What [`LineageVerifier::finish`] does with unsigned records after the last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnsealedTail {
    /// Fail naming the first one: nothing authenticates it (the default).
    #[default]
    Refuse,
    /// Accept them and report them in [`VerifiedLineage::unauthenticated`] (e.g. to inspect a
    /// log whose writer crashed before its next checkpoint).
    Allow,
}

/// The first unsigned record since the last checkpoint, and how many followed.
struct UnsignedRun {
    first: u64,
    first_kind: String,
    last: u64,
    count: u64,
}

/// A checkpoint seen earlier, which the log must extend.
struct Pin {
    checkpoint: SignedCheckpoint,
    /// The log's root at the pinned size, once the log has that many records.
    root_in_log: Option<Hash>,
    /// Set when the log holds a checkpoint of the pinned size (its signatures are then checked
    /// against that checkpoint's window).
    in_log: bool,
}

/// Consumes a log in order. Records are fed as stored entries (`[body, signature|null]`).
///
/// A record is authenticated by its own signature (checked through the trust store for the
/// role its kind requires) or by the next checkpoint, which every signer of an unsigned record
/// in the window must co-sign. Unsigned records after the last checkpoint are authenticated by
/// nothing: [`LineageVerifier::finish`] refuses them unless told [`UnsealedTail::Allow`].
pub struct LineageVerifier<'t> {
    trust: &'t TrustStore,
    origin: Option<String>,
    /// Only the right edge of the tree: verification memory does not grow with the log.
    tree: CompactTree,
    prev: Hash,
    /// Signers of not-yet-sealed, individually unsigned records → first such record and kind.
    pending: BTreeMap<KeyRef, (u64, String)>,
    /// Roles that signed records since the last checkpoint: the only roles whose keys may
    /// co-sign the next one.
    window_roles: BTreeSet<Role>,
    /// Roles that signed any record (a pinned checkpoint absent from the log is checked
    /// against these).
    log_roles: BTreeSet<Role>,
    unsigned: Option<UnsignedRun>,
    sealed: u64,
    checkpoints: u64,
    latest: Option<(u64, Hash)>,
    kinds: BTreeMap<String, u64>,
    signers: BTreeSet<String>,
    pin: Option<Pin>,
}

impl<'t> LineageVerifier<'t> {
    pub fn new(trust: &'t TrustStore) -> LineageVerifier<'t> {
        LineageVerifier {
            trust,
            origin: None,
            tree: CompactTree::new(),
            prev: [0; 32],
            pending: BTreeMap::new(),
            window_roles: BTreeSet::new(),
            log_roles: BTreeSet::new(),
            unsigned: None,
            sealed: 0,
            checkpoints: 0,
            latest: None,
            kinds: BTreeMap::new(),
            signers: BTreeSet::new(),
            pin: None,
        }
    }

    /// Pins a checkpoint seen earlier (a witness's view): [`LineageVerifier::finish`] then
    /// fails unless its signatures verify, the log holds a checkpoint of its size and the
    /// log's latest checkpoint extends it by an RFC 6962 consistency proof. This catches a
    /// rollback of the records or of the checkpoint file, and a rewrite of pinned records.
    pub fn with_pinned(mut self, checkpoint: SignedCheckpoint) -> LineageVerifier<'t> {
        let size = checkpoint.checkpoint.size;
        // Records fed later fill it in when the tree reaches the pinned size (`record`).
        let root_in_log = (size == self.tree.len()).then(|| self.tree.root());
        self.pin = Some(Pin {
            checkpoint,
            root_in_log,
            in_log: false,
        });
        self
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
        let signer = check_signer(&view, self.trust).map_err(fail)?;
        match signature {
            Some(sig) => check_signature(&view, &signer, body, &sig, self.trust).map_err(fail)?,
            None => {
                self.pending
                    .entry(signer.key().clone())
                    .or_insert_with(|| (index, view.kind.to_string()));
                match &mut self.unsigned {
                    Some(run) => {
                        run.last = index;
                        run.count += 1;
                    }
                    None => {
                        self.unsigned = Some(UnsignedRun {
                            first: index,
                            first_kind: view.kind.to_string(),
                            last: index,
                            count: 1,
                        })
                    }
                }
            }
        }
        let leaf = leaf_hash(body);
        self.tree.push(leaf);
        self.prev = leaf;
        self.window_roles.insert(view.role);
        self.log_roles.insert(view.role);
        *self.kinds.entry(view.kind.to_string()).or_default() += 1;
        self.signers.insert(signer.key().to_string());
        if let Some(pin) = &mut self.pin {
            if pin.checkpoint.checkpoint.size == self.tree.len() {
                pin.root_in_log = Some(self.tree.root());
            }
        }
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
            .verify_signatures(self.trust, &self.window_roles)
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
        for (key, (first_index, kind)) in &self.pending {
            if !signers.contains(key) {
                return Err(VerifyError::record(
                    *first_index,
                    kind.clone(),
                    RecordFault::NotCovered {
                        key: key.to_string(),
                        checkpoint: cp_index,
                    },
                ));
            }
        }
        if let Some(pin) = &mut self.pin {
            if pin.checkpoint.checkpoint.size == cp.size {
                // The pinned note is checked against the window of the log's checkpoint of
                // the same size, exactly as that checkpoint was.
                pin.checkpoint
                    .verify_signatures(self.trust, &self.window_roles)
                    .map_err(|fault| pin_error(&pin.checkpoint, PinFault::Signature(fault)))?;
                pin.in_log = true;
            }
        }
        self.pending.clear();
        self.window_roles.clear();
        self.unsigned = None;
        self.sealed = cp.size;
        self.checkpoints += 1;
        self.latest = Some((cp.size, cp.root));
        Ok(())
    }

    /// Ends verification: checks the pinned checkpoint, then the unsealed tail (see
    /// [`UnsealedTail`]), then `expect_size`, which if given must equal the number of records.
    pub fn finish(
        self,
        expect_size: Option<u64>,
        tail: UnsealedTail,
    ) -> Result<VerifiedLineage, VerifyError> {
        let pinned = match &self.pin {
            Some(pin) => Some(self.check_pin(pin)?),
            None => None,
        };
        let unauthenticated = match (self.unsigned, tail) {
            (None, _) => None,
            (Some(run), UnsealedTail::Refuse) => {
                return Err(VerifyError::record(
                    run.first,
                    run.first_kind,
                    RecordFault::Unauthenticated {
                        count: run.count,
                        last: run.last,
                    },
                ))
            }
            (Some(run), UnsealedTail::Allow) => Some(Unauthenticated {
                first: run.first,
                last: run.last,
                count: run.count,
            }),
        };
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
            unauthenticated,
            pinned,
        })
    }

    /// The pinned checkpoint must be authentic, of this log, and extended by its latest
    /// checkpoint. Checked in an order that names the most specific fault.
    fn check_pin(&self, pin: &Pin) -> Result<PinnedConsistency, VerifyError> {
        let pinned = &pin.checkpoint;
        let fail = |fault| Err(pin_error(pinned, fault));
        let (size, root) = (pinned.checkpoint.size, pinned.checkpoint.root);
        if !pin.in_log {
            // No checkpoint of the log has its size, so no window to check it against: its
            // co-signers must be trusted for a role that signed some record of the log.
            if let Err(fault) = pinned.verify_signatures(self.trust, &self.log_roles) {
                return fail(PinFault::Signature(fault));
            }
        }
        if let Some(origin) = &self.origin {
            if origin != &pinned.checkpoint.origin {
                return fail(PinFault::WrongOrigin {
                    expected: origin.clone(),
                    found: pinned.checkpoint.origin.clone(),
                });
            }
        }
        let Some(root_in_log) = pin.root_in_log else {
            return fail(PinFault::LogRolledBack {
                records: self.tree.len(),
            });
        };
        if root_in_log != root {
            return fail(PinFault::Rewritten {
                log_root: hex::encode(root_in_log),
            });
        }
        let (latest_size, latest_root) = match self.latest {
            Some((latest, root)) if latest >= size => (latest, root),
            other => {
                return fail(PinFault::CheckpointsRolledBack {
                    latest: other.map(|(s, _)| s),
                })
            }
        };
        if !pin.in_log {
            return fail(PinFault::NotInLog {
                latest: latest_size,
            });
        }
        // Consistency without a proof object: the verifier hashed every record itself, so the
        // first `size` records hash to the pinned root (checked above) and all of them to the
        // latest checkpoint's root (checked when it was read). That is exactly what an RFC 6962
        // consistency proof would show, without holding the tree in memory.
        Ok(PinnedConsistency {
            size,
            root,
            latest_size,
            latest_root,
        })
    }
}

fn pin_error(pinned: &SignedCheckpoint, fault: PinFault) -> VerifyError {
    VerifyError::Pinned {
        size: pinned.checkpoint.size,
        root: hex::encode(pinned.checkpoint.root),
        fault,
    }
}

/// The signer checks every reader of records makes (the verifier, and the store before it
/// seals a tail it did not write): the kind's prefix fixes the role (`corpus.*` by the corpus
/// authority, …) and the trust file must list the signer for that role. Returns the signer as
/// a [`TrustedSigner`], which only this function makes.
pub fn check_signer(
    view: &EnvelopeView<'_>,
    trust: &TrustStore,
) -> Result<TrustedSigner, RecordFault> {
    if let Some(required) = required_role(view.kind) {
        if view.role != required {
            return Err(RecordFault::WrongRole {
                kind: view.kind.to_string(),
                required: required.to_string(),
                found: view.role.to_string(),
            });
        }
    }
    let signer = view.signer();
    if !trust.roles_of(&signer).contains(&view.role) {
        return Err(RecordFault::UntrustedKey {
            key: signer.to_string(),
            role: view.role.to_string(),
        });
    }
    Ok(TrustedSigner(signer))
}

/// A record's signer that passed [`check_signer`] (kind, role and trust file agree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedSigner(KeyRef);

impl TrustedSigner {
    pub fn key(&self) -> &KeyRef {
        &self.0
    }
}

/// A per-record signature by a signer [`check_signer`] accepted: Ed25519 over the record's
/// signing message through the trust store for the record's role. (Taking the checked signer
/// keeps the role checks out of the per-record path a second time.)
pub fn check_signature(
    view: &EnvelopeView<'_>,
    signer: &TrustedSigner,
    body: &[u8],
    signature: &warden_keys::Signature,
    trust: &TrustStore,
) -> Result<(), RecordFault> {
    trust
        .verify(&signer.0, view.role, &signing_message(body), signature)
        .map_err(|_| RecordFault::BadSignature {
            key: signer.0.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Record, SignedRecord};
    use crate::Checkpoint;
    use warden_keys::SigningKey;

    fn key() -> SigningKey {
        SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[5; 32]).unwrap()
    }

    /// `n` records by `key`, each signed on its own when `signed` says so.
    fn entries(key: &SigningKey, signed: impl Fn(u64) -> bool, n: u64) -> Vec<Vec<u8>> {
        let mut prev = [0; 32];
        (0..n)
            .map(|seq| {
                let record = Record {
                    seq,
                    kind: "corpus.admission".into(),
                    time_ms: 1,
                    role: key.role(),
                    signer: key.key_ref(),
                    policy_version: None,
                    prev,
                    payload: serde_json::json!({ "seq": seq }),
                };
                let sealed = SignedRecord::seal(record, key, signed(seq)).unwrap();
                prev = sealed.leaf_hash();
                sealed.to_cbor()
            })
            .collect()
    }

    fn trust(key: &SigningKey) -> TrustStore {
        let mut trust = TrustStore::new();
        trust.add(Role::CorpusAuthority, key.public().clone());
        trust
    }

    /// Regression (issue 8 §1.1): unsigned records after the last checkpoint verified.
    #[test]
    fn an_unsigned_tail_is_refused_naming_its_first_record_unless_allowed() {
        let key = key();
        let trust = trust(&key);
        // Records 0..3 unsigned and sealed by a checkpoint; 3 signed; 4 and 6 unsigned; 5 signed.
        let all = entries(&key, |seq| seq == 3 || seq == 5, 7);
        let feed = |tail| {
            let mut verifier = LineageVerifier::new(&trust);
            let mut tree = warden_merkle::MerkleTree::new();
            for (seq, entry) in all.iter().enumerate() {
                verifier.record(entry).unwrap();
                tree.push(leaf_hash(decode_entry(entry).unwrap().0));
                if seq == 2 {
                    let note = Checkpoint {
                        origin: "o".into(),
                        size: 3,
                        root: tree.root(),
                    }
                    .sign([&key])
                    .to_note();
                    verifier.checkpoint(0, &note).unwrap();
                }
            }
            verifier.finish(None, tail)
        };
        let err = feed(UnsealedTail::Refuse).unwrap_err();
        assert_eq!(
            err,
            VerifyError::record(
                4,
                "corpus.admission",
                RecordFault::Unauthenticated { count: 2, last: 6 }
            )
        );
        let verified = feed(UnsealedTail::Allow).unwrap();
        assert_eq!(
            verified.unauthenticated,
            Some(Unauthenticated {
                first: 4,
                last: 6,
                count: 2
            })
        );
        assert_eq!((verified.sealed, verified.unsealed()), (3, 4));
    }

    #[test]
    fn a_fully_signed_tail_needs_no_checkpoint() {
        let key = key();
        let trust = trust(&key);
        let mut verifier = LineageVerifier::new(&trust);
        for entry in entries(&key, |_| true, 4) {
            verifier.record(&entry).unwrap();
        }
        let verified = verifier.finish(Some(4), UnsealedTail::Refuse).unwrap();
        assert_eq!((verified.sealed, verified.unauthenticated), (0, None));
    }
}
