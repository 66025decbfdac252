//! What an attacker with write access to the lineage files but no key can do, and what `verify`
//! says about it: a forged unsealed tail, a rolled-back checkpoint file with rewritten records,
//! a rollback caught by a pinned checkpoint, and checkpoints co-signed by the wrong role.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::{
    encode_entry, CheckpointFault, PinFault, Record, RecordDraft, RecordFault, SignedCheckpoint,
    SignedRecord, Unauthenticated, UnsealedTail, VerifyError,
};
use warden_store::frame::{self, CHECKPOINT_MAGIC, SEGMENT_MAGIC};
use warden_store::{verify, Cadence, Lineage, StoreOptions, VerifyOptions};

const ORIGIN: &str = "warden.test/authentication";

struct Keys {
    corpus: Arc<SigningKey>,
    training: Arc<SigningKey>,
    trust: TrustStore,
}

fn keys() -> Keys {
    let corpus =
        Arc::new(SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[11; 32]).unwrap());
    let training =
        Arc::new(SigningKey::from_seed(Role::TrainingAuthority, "training", &[22; 32]).unwrap());
    let mut trust = TrustStore::new();
    trust.add(Role::CorpusAuthority, corpus.public().clone());
    trust.add(Role::TrainingAuthority, training.public().clone());
    Keys {
        corpus,
        training,
        trust,
    }
}

/// `n` records (corpus and training kinds), a checkpoint every 5 records and one at close.
fn build(dir: &Path, keys: &Keys, n: u64, cadence: Cadence) {
    let lineage = Lineage::create(dir, StoreOptions::new(ORIGIN).with_cadence(cadence)).unwrap();
    for i in 0..n {
        let (kind, key) = if i % 2 == 0 {
            ("corpus.admission", &keys.corpus)
        } else {
            ("train.iteration", &keys.training)
        };
        lineage
            .append(RecordDraft::new(kind, json!({"i": i})), key)
            .unwrap();
    }
    lineage.close().unwrap();
}

fn window() -> Cadence {
    Cadence::Window {
        records: 5,
        millis: 600_000,
    }
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("seg-00000000000000000000.wlog")
}

fn entries(dir: &Path) -> Vec<Vec<u8>> {
    let file = frame::read_framed(&segment(dir), SEGMENT_MAGIC).unwrap();
    (0..file.frames.len())
        .map(|i| file.payload(i).to_vec())
        .collect()
}

fn write_segment(dir: &Path, entries: &[Vec<u8>]) {
    let mut out = frame::encode_header(SEGMENT_MAGIC, ORIGIN);
    for e in entries {
        frame::encode_frame(&mut out, e);
    }
    std::fs::write(segment(dir), out).unwrap();
}

fn notes(dir: &Path) -> Vec<String> {
    let file = frame::read_framed(&dir.join("checkpoints.wlog"), CHECKPOINT_MAGIC).unwrap();
    (0..file.frames.len())
        .map(|i| String::from_utf8(file.payload(i).to_vec()).unwrap())
        .collect()
}

fn write_notes(dir: &Path, notes: &[String]) {
    let mut out = frame::encode_header(CHECKPOINT_MAGIC, ORIGIN);
    for n in notes {
        frame::encode_frame(&mut out, n.as_bytes());
    }
    std::fs::write(dir.join("checkpoints.wlog"), out).unwrap();
}

/// A record the attacker writes without any key: it claims `signer` and chains onto `prev`.
fn forged_entry(seq: u64, kind: &str, signer: &SigningKey, prev: [u8; 32]) -> Vec<u8> {
    let body = Record {
        seq,
        kind: kind.into(),
        time_ms: 1_700_000_000_000,
        role: signer.role(),
        signer: signer.key_ref(),
        policy_version: None,
        prev,
        payload: json!({"corpus": "forged", "i": seq}),
    }
    .encode_body()
    .unwrap();
    let mut entry = Vec::new();
    encode_entry(&mut entry, &body, None);
    entry
}

fn leaf(entry: &[u8]) -> [u8; 32] {
    SignedRecord::from_cbor(entry).unwrap().leaf_hash()
}

/// Replaces every record from `from` on with keyless forgeries that chain correctly.
fn forge_from(dir: &Path, keys: &Keys, from: usize) {
    let mut all = entries(dir);
    let n = all.len();
    all.truncate(from);
    let mut prev = all.last().map_or([0; 32], |e| leaf(e));
    for seq in from..n {
        let entry = forged_entry(seq as u64, "corpus.admission", &keys.corpus, prev);
        prev = leaf(&entry);
        all.push(entry);
    }
    write_segment(dir, &all);
}

fn options(
    expect_size: Option<u64>,
    tail: UnsealedTail,
    pinned: Option<&SignedCheckpoint>,
) -> VerifyOptions {
    VerifyOptions {
        expect_size,
        unsealed_tail: tail,
        pinned: pinned.cloned(),
    }
}

fn unauthenticated_at(err: &VerifyError) -> Option<(u64, u64, u64)> {
    match err {
        VerifyError::Record {
            index,
            fault: RecordFault::Unauthenticated { count, last },
            ..
        } => Some((*index, *count, *last)),
        _ => None,
    }
}

/// Regression (issue 8 §1.1): a keyless `corpus.admission` appended after the last checkpoint
/// used to verify, even with `--expect-size`.
#[test]
fn a_keyless_forged_record_after_the_last_checkpoint_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    build(dir.path(), &keys, 12, window());
    let mut all = entries(dir.path());
    let prev = leaf(all.last().unwrap());
    all.push(forged_entry(12, "corpus.admission", &keys.corpus, prev));
    write_segment(dir.path(), &all);

    for expect in [None, Some(13)] {
        let err = verify(
            dir.path(),
            &keys.trust,
            &options(expect, UnsealedTail::Refuse, None),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "record 12 (corpus.admission): unauthenticated: it carries no signature and no checkpoint seals it (1 such record after the last checkpoint, the last is record 12); anyone who can write the files could have written it"
        );
    }
    // Allowed explicitly, it verifies and says exactly which records nobody vouches for.
    let verified = verify(
        dir.path(),
        &keys.trust,
        &options(Some(13), UnsealedTail::Allow, None),
    )
    .unwrap();
    assert_eq!(
        verified.unauthenticated,
        Some(Unauthenticated {
            first: 12,
            last: 12,
            count: 1
        })
    );
    assert_eq!((verified.records, verified.sealed), (13, 12));
}

/// Regression (issue 8 §1.1): cutting `checkpoints.wlog` back to an earlier checkpoint and
/// rewriting every record after it used to verify.
#[test]
fn a_cut_checkpoint_file_with_every_later_record_rewritten_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    build(dir.path(), &keys, 23, window());
    let all_notes = notes(dir.path());
    assert_eq!(all_notes.len(), 5, "checkpoints at 5, 10, 15, 20, 23");
    write_notes(dir.path(), &all_notes[..2]);
    forge_from(dir.path(), &keys, 10);
    let err = verify(
        dir.path(),
        &keys.trust,
        &options(Some(23), UnsealedTail::Refuse, None),
    )
    .unwrap_err();
    assert_eq!(unauthenticated_at(&err), Some((10, 13, 22)), "{err}");
    assert!(err
        .to_string()
        .starts_with("record 10 (corpus.admission): unauthenticated"));
}

/// A record after the last checkpoint that carries its own signature is authenticated through
/// the trust store for its kind's role; a signature by another role's key is refused.
#[test]
fn a_signed_record_after_the_last_checkpoint_is_authenticated_by_its_own_signature() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    build(dir.path(), &keys, 10, window());
    let mut all = entries(dir.path());
    let prev = leaf(all.last().unwrap());
    let record = |signer: &SigningKey| Record {
        seq: 10,
        kind: "corpus.admission".into(),
        time_ms: 1_700_000_000_000,
        role: signer.role(),
        signer: signer.key_ref(),
        policy_version: None,
        prev,
        payload: json!({"corpus": "real"}),
    };
    all.push(
        SignedRecord::seal(record(&keys.corpus), &keys.corpus, true)
            .unwrap()
            .to_cbor(),
    );
    write_segment(dir.path(), &all);
    let verified = verify(dir.path(), &keys.trust, &VerifyOptions::default()).unwrap();
    assert_eq!((verified.records, verified.sealed), (11, 10));
    assert_eq!(verified.unauthenticated, None);

    // The training key signs a corpus record: its signature is valid, its role is not.
    all.pop();
    all.push(
        SignedRecord::seal(record(&keys.training), &keys.training, true)
            .unwrap()
            .to_cbor(),
    );
    write_segment(dir.path(), &all);
    let err = verify(dir.path(), &keys.trust, &VerifyOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 10 (corpus.admission): kind `corpus.admission` must be signed by the corpus-authority but is signed as training-authority"
    );
    // A corpus key nobody trusts, with a valid signature: refused naming key and role.
    let stranger = SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[99; 32]).unwrap();
    all.pop();
    all.push(
        SignedRecord::seal(record(&stranger), &stranger, true)
            .unwrap()
            .to_cbor(),
    );
    write_segment(dir.path(), &all);
    let err = verify(dir.path(), &keys.trust, &VerifyOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "record 10 (corpus.admission): signed by key {}, which is not trusted for role corpus-authority",
            stranger.key_ref()
        )
    );
}

fn checkpoint_of_size(dir: &Path, size: u64) -> SignedCheckpoint {
    warden_store::read_checkpoints(dir)
        .unwrap()
        .into_iter()
        .find(|c| c.checkpoint.size == size)
        .unwrap()
}

/// A checkpoint seen earlier is extended by the log's latest one, and the store's consistency
/// proof between the two verifies.
#[test]
fn a_pinned_earlier_checkpoint_is_proven_consistent_with_the_grown_log() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    build(dir.path(), &keys, 23, window());
    let pinned = checkpoint_of_size(dir.path(), 10);
    let verified = verify(
        dir.path(),
        &keys.trust,
        &options(None, UnsealedTail::Refuse, Some(&pinned)),
    )
    .unwrap();
    let pin = verified.pinned.unwrap();
    assert_eq!((pin.size, pin.latest_size), (10, 23));
    // A witness asks the store for the RFC 6962 proof of what the verifier checked.
    let lineage = Lineage::open_with(
        dir.path(),
        Some(StoreOptions::new(ORIGIN).with_trust(Arc::new(keys.trust.clone()))),
    )
    .unwrap();
    let proof = lineage.prove_consistency(10, 23).unwrap();
    assert!(!proof.is_empty());
    warden_merkle::verify_consistency(10, 23, &pin.root, &verified.root, &proof).unwrap();
}

/// Both files cut back to an earlier, self-consistent state: a valid shorter log, caught only
/// by the pinned checkpoint.
#[test]
fn a_rolled_back_log_is_refused_against_a_pinned_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    build(dir.path(), &keys, 23, window());
    let pinned = checkpoint_of_size(dir.path(), 15);
    let all = entries(dir.path());
    write_segment(dir.path(), &all[..10]);
    write_notes(dir.path(), &notes(dir.path())[..2]);
    verify(dir.path(), &keys.trust, &VerifyOptions::default()).unwrap();
    let err = verify(
        dir.path(),
        &keys.trust,
        &options(None, UnsealedTail::Refuse, Some(&pinned)),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pinned checkpoint (size 15, root {}): the log holds only 10 records: it was rolled back (records removed since the checkpoint was seen)",
            hex::encode(pinned.checkpoint.root)
        )
    );
}

/// The records are intact but `checkpoints.wlog` is cut back before the pinned size.
#[test]
fn a_rolled_back_checkpoint_file_is_refused_against_a_pinned_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    build(dir.path(), &keys, 23, window());
    let pinned = checkpoint_of_size(dir.path(), 15);
    write_notes(dir.path(), &notes(dir.path())[..2]);
    let err = verify(
        dir.path(),
        &keys.trust,
        &options(None, UnsealedTail::Allow, Some(&pinned)),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Pinned {
                size: 15,
                fault: PinFault::CheckpointsRolledBack { latest: Some(10) },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("the log's latest checkpoint covers only 10 records: the log's checkpoints were rolled back"),
        "{err}"
    );
}

/// The checkpoint file cut back before the pinned size and the records after it rewritten:
/// the log's root at the pinned size differs, even when the unsealed tail is allowed.
#[test]
fn records_rewritten_below_a_pinned_checkpoint_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    build(dir.path(), &keys, 23, window());
    let pinned = checkpoint_of_size(dir.path(), 15);
    write_notes(dir.path(), &notes(dir.path())[..2]);
    forge_from(dir.path(), &keys, 10);
    let err = verify(
        dir.path(),
        &keys.trust,
        &options(Some(23), UnsealedTail::Allow, Some(&pinned)),
    )
    .unwrap_err();
    let VerifyError::Pinned {
        size: 15,
        fault: PinFault::Rewritten { log_root },
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_ne!(log_root, &hex::encode(pinned.checkpoint.root));
    assert!(
        err.to_string().contains("records up to it were rewritten"),
        "{err}"
    );
}

/// Records after the pinned size rewritten (checkpoints cut back to the pinned one): the pin
/// still holds, and the rewritten records are refused as unauthenticated, or reported so.
#[test]
fn records_rewritten_after_a_pinned_checkpoint_are_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    build(dir.path(), &keys, 23, window());
    let pinned = checkpoint_of_size(dir.path(), 15);
    write_notes(dir.path(), &notes(dir.path())[..3]);
    forge_from(dir.path(), &keys, 15);
    let err = verify(
        dir.path(),
        &keys.trust,
        &options(Some(23), UnsealedTail::Refuse, Some(&pinned)),
    )
    .unwrap_err();
    assert_eq!(unauthenticated_at(&err), Some((15, 8, 22)), "{err}");
    let verified = verify(
        dir.path(),
        &keys.trust,
        &options(Some(23), UnsealedTail::Allow, Some(&pinned)),
    )
    .unwrap();
    assert_eq!(verified.pinned.unwrap().latest_size, 15);
    assert_eq!(
        verified.unauthenticated,
        Some(Unauthenticated {
            first: 15,
            last: 22,
            count: 8
        })
    );
}

/// A pinned note whose signature does not verify, or that no checkpoint of the log matches.
#[test]
fn a_forged_or_foreign_pinned_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    build(dir.path(), &keys, 23, window());
    let real = checkpoint_of_size(dir.path(), 15);
    let mut forged = real.clone();
    forged.checkpoint.root = [7; 32];
    let err = verify(
        dir.path(),
        &keys.trust,
        &options(None, UnsealedTail::Refuse, Some(&forged)),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Pinned {
                fault: PinFault::Signature(CheckpointFault::BadSignature(_)),
                ..
            }
        ),
        "{err}"
    );
    // Validly signed, but of a size the log never checkpointed: not this log's history.
    let mut tree = warden_merkle::MerkleTree::new();
    for e in entries(dir.path()) {
        tree.push(leaf(&e));
    }
    let foreign = warden_lineage::Checkpoint {
        origin: ORIGIN.into(),
        size: 12,
        root: tree.root_at(12).unwrap(),
    }
    .sign([keys.corpus.as_ref(), keys.training.as_ref()]);
    let err = verify(
        dir.path(),
        &keys.trust,
        &options(None, UnsealedTail::Refuse, Some(&foreign)),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Pinned {
                size: 12,
                fault: PinFault::NotInLog { latest: 23 },
                ..
            }
        ),
        "{err}"
    );
}

/// Regression (issue 8 §4): a checkpoint's co-signatures used to be accepted from a trusted
/// key of any role. In a log whose records are all signed by the training key, checkpoints
/// signed by the corpus key alone (trusted, but for another role) must be refused.
#[test]
fn a_checkpoint_co_signed_by_a_key_of_an_unrelated_role_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let lineage = Lineage::create(
        dir.path(),
        StoreOptions::new(ORIGIN).with_cadence(Cadence::EveryRecord),
    )
    .unwrap();
    for i in 0..4 {
        lineage
            .append(
                RecordDraft::new("train.iteration", json!({"i": i})),
                &keys.training,
            )
            .unwrap();
    }
    lineage.close().unwrap();
    verify(dir.path(), &keys.trust, &VerifyOptions::default()).unwrap();
    let resigned: Vec<String> = warden_store::read_checkpoints(dir.path())
        .unwrap()
        .into_iter()
        .map(|c| c.checkpoint.sign([keys.corpus.as_ref()]).to_note())
        .collect();
    write_notes(dir.path(), &resigned);
    let err = verify(dir.path(), &keys.trust, &VerifyOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "checkpoint 0 (tree size 1): co-signed by key {}, trusted only for corpus-authority, not for a role that signed the records it seals (training-authority)",
            keys.corpus.key_ref()
        )
    );
}

/// Regression: opening for append took the last checkpoint note on trust. A record forged
/// under the training key's name (no key needed: records in a window are unsigned), sealed by
/// a checkpoint note that nobody trusted signed, was accepted as sealed — and the writer's next
/// checkpoint would then have sealed the forgery under the real training key. Opening must
/// verify the note that decides what is sealed, and change nothing when it refuses.
#[test]
fn opening_refuses_records_sealed_by_a_checkpoint_nobody_trusted_signed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    build(dir.path(), &keys, 10, window());
    let mut all = entries(dir.path());
    let prev = leaf(all.last().unwrap());
    all.push(forged_entry(10, "train.iteration", &keys.training, prev));
    write_segment(dir.path(), &all);
    let mut tree = warden_merkle::MerkleTree::new();
    for e in &all {
        tree.push(leaf(e));
    }
    let attacker = SigningKey::from_seed(Role::TrainingAuthority, "training", &[99; 32]).unwrap();
    let forged_note = warden_lineage::Checkpoint {
        origin: ORIGIN.into(),
        size: 11,
        root: tree.root(),
    }
    .sign([&attacker])
    .to_note();
    let mut notes = notes(dir.path());
    notes.push(forged_note);
    write_notes(dir.path(), &notes);
    let segment_before = std::fs::read(segment(dir.path())).unwrap();

    let err = Lineage::open_with(
        dir.path(),
        Some(StoreOptions::new(ORIGIN).with_trust(Arc::new(keys.trust.clone()))),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("checkpoint 2 (tree size 11)"), "{err}");
    assert!(
        err.contains("does not list") || err.contains("signature"),
        "{err}"
    );
    assert_eq!(std::fs::read(segment(dir.path())).unwrap(), segment_before);
    // The verifier agrees: the note is not authentic.
    assert!(verify(dir.path(), &keys.trust, &VerifyOptions::default()).is_err());
}
