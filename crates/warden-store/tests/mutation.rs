//! Tamper-evidence over a real lineage: every byte flip, truncation, deletion, duplication,
//! swap and re-signing with an untrusted key is caught by `verify`, naming the record.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::{RecordDraft, RecordFault, SignedRecord, UnsealedTail, VerifyError};
use warden_store::frame::{self, CHECKPOINT_MAGIC, SEGMENT_MAGIC};
use warden_store::{verify, Cadence, Lineage, StoreOptions, VerifyOptions};

fn keys() -> (Arc<SigningKey>, Arc<SigningKey>, TrustStore) {
    let corpus =
        Arc::new(SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[11; 32]).unwrap());
    let training =
        Arc::new(SigningKey::from_seed(Role::TrainingAuthority, "training", &[22; 32]).unwrap());
    let mut trust = TrustStore::new();
    trust.add(Role::CorpusAuthority, corpus.public().clone());
    trust.add(Role::TrainingAuthority, training.public().clone());
    (corpus, training, trust)
}

/// A lineage of `n` records of several kinds by two signers, checkpointed every 5 records
/// and once more at close.
fn build(dir: &Path, n: u64, cadence: Cadence) -> TrustStore {
    let (corpus, training, trust) = keys();
    let lineage = Lineage::create(
        dir,
        StoreOptions::new("warden.test/mutation").with_cadence(cadence),
    )
    .unwrap();
    for i in 0..n {
        let (kind, key) = match i % 3 {
            0 => ("note", &corpus),
            1 => ("corpus.admission", &corpus),
            _ => ("train.iteration", &training),
        };
        lineage
            .append(
                RecordDraft::new(
                    kind,
                    json!({"i": i, "loss": 1.0 / (i as f64 + 1.0), "tag": "x"}),
                )
                .with_policy_version("v1"),
                key,
            )
            .unwrap();
    }
    lineage.close().unwrap();
    trust
}

fn window() -> Cadence {
    Cadence::Window {
        records: 5,
        millis: 60_000,
    }
}

fn segment(dir: &Path) -> std::path::PathBuf {
    dir.join("seg-00000000000000000000.wlog")
}

/// Rewrites the segment with the given record entries (re-framed with valid checksums, as an
/// attacker who knows the format would).
fn rewrite_segment(dir: &Path, entries: &[Vec<u8>]) {
    let mut out = frame::encode_header(SEGMENT_MAGIC, "warden.test/mutation");
    for e in entries {
        frame::encode_frame(&mut out, e);
    }
    std::fs::write(segment(dir), out).unwrap();
}

fn entries(dir: &Path) -> Vec<Vec<u8>> {
    let file = frame::read_framed(&segment(dir), SEGMENT_MAGIC).unwrap();
    (0..file.frames.len())
        .map(|i| file.payload(i).to_vec())
        .collect()
}

fn record_index(err: &VerifyError) -> Option<u64> {
    match err {
        VerifyError::Record { index, .. } => Some(*index),
        _ => None,
    }
}

#[test]
fn every_single_byte_flip_in_every_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let trust = build(dir.path(), 23, window());
    verify(dir.path(), &trust, &VerifyOptions::default()).unwrap();
    let seg = frame::read_framed(&segment(dir.path()), SEGMENT_MAGIC).unwrap();
    let files = [segment(dir.path()), dir.path().join("checkpoints.wlog")];
    let mut checked = 0;
    for path in &files {
        let original = std::fs::read(path).unwrap();
        for i in 0..original.len() {
            let mut bytes = original.clone();
            bytes[i] ^= 0x20;
            std::fs::write(path, &bytes).unwrap();
            let err = verify(dir.path(), &trust, &VerifyOptions::default()).expect_err(&format!(
                "flip at byte {i} of {} not detected",
                path.display()
            ));
            // A flip inside a record's frame must name exactly that record.
            if path == &files[0] {
                if let Some(frame_no) = seg
                    .frames
                    .iter()
                    .position(|&(s, l)| i >= s - 8 && i < s + l + 4)
                {
                    assert_eq!(record_index(&err), Some(frame_no as u64), "byte {i}: {err}");
                }
            }
            checked += 1;
        }
        std::fs::write(path, &original).unwrap();
    }
    verify(dir.path(), &trust, &VerifyOptions::default()).unwrap();
    assert!(checked > 3000, "only {checked} flips checked");
}

#[test]
fn truncation_at_every_boundary_and_mid_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let trust = build(
        dir.path(),
        23,
        Cadence::Window {
            records: 5,
            millis: 60_000,
        },
    );
    let path = segment(dir.path());
    let original = std::fs::read(&path).unwrap();
    let seg = frame::scan(original.clone(), SEGMENT_MAGIC);
    let n = seg.frames.len() as u64;
    let boundaries: Vec<usize> = seg.frames.iter().map(|&(s, _)| s - 8).collect();
    for (k, &cut) in boundaries.iter().enumerate() {
        std::fs::write(&path, &original[..cut]).unwrap();
        // All records are sealed by the final checkpoint: any cut leaves records missing.
        let err = verify(dir.path(), &trust, &VerifyOptions::default()).unwrap_err();
        assert_eq!(
            record_index(&err),
            Some(k as u64),
            "cut before record {k}: {err}"
        );
        assert!(err.to_string().contains("missing"), "{err}");
        // Mid-record: a torn frame, named.
        std::fs::write(&path, &original[..cut + 5]).unwrap();
        let err = verify(dir.path(), &trust, &VerifyOptions::default()).unwrap_err();
        assert_eq!(record_index(&err), Some(k as u64), "{err}");
        assert!(err.to_string().contains("incomplete record"), "{err}");
    }
    std::fs::write(&path, &original).unwrap();
    assert_eq!(
        verify(
            dir.path(),
            &trust,
            &VerifyOptions {
                expect_size: Some(n),
                ..Default::default()
            }
        )
        .unwrap()
        .records,
        n
    );
}

#[test]
fn a_cut_after_the_last_checkpoint_is_caught_by_expect_size() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, _, trust) = keys();
    let lineage = Lineage::create(
        dir.path(),
        StoreOptions::new("warden.test/mutation").with_cadence(window()),
    )
    .unwrap();
    for i in 0..7 {
        lineage
            .append(RecordDraft::new("note", json!({"i": i})), &corpus)
            .unwrap();
    }
    // Simulate a crash: records 5 and 6 are written but never sealed.
    std::mem::forget(lineage);
    let path = segment(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let seg = frame::scan(bytes.clone(), SEGMENT_MAGIC);
    std::fs::write(&path, &bytes[..seg.frames[6].0 - 8]).unwrap();
    // Record 5 is unsealed and unsigned: refused unless the caller allows an unsealed tail.
    let err = verify(dir.path(), &trust, &VerifyOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("record 5 (note): unauthenticated"),
        "{err}"
    );
    let allow = |expect_size| VerifyOptions {
        expect_size,
        unsealed_tail: UnsealedTail::Allow,
        ..Default::default()
    };
    let verified = verify(dir.path(), &trust, &allow(None)).unwrap();
    assert_eq!((verified.records, verified.sealed), (6, 5));
    let err = verify(dir.path(), &trust, &allow(Some(7))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the log holds 6 records but 7 were expected (1 record fewer than expected: records were removed at the end)"
    );
}

/// Regression (issue 8 §6): more records than expected used to be reported as "records
/// removed at the end".
#[test]
fn expect_size_says_whether_the_log_has_more_or_fewer_records() {
    let dir = tempfile::tempdir().unwrap();
    let trust = build(dir.path(), 37, window());
    let expect = |n| VerifyOptions {
        expect_size: Some(n),
        ..Default::default()
    };
    assert_eq!(
        verify(dir.path(), &trust, &expect(30)).unwrap_err().to_string(),
        "the log holds 37 records but 30 were expected (7 more records than expected: records were appended after that size)"
    );
    assert_eq!(
        verify(dir.path(), &trust, &expect(40)).unwrap_err().to_string(),
        "the log holds 37 records but 40 were expected (3 records fewer than expected: records were removed at the end)"
    );
    assert_eq!(verify(dir.path(), &trust, &expect(37)).unwrap().records, 37);
}

#[test]
fn deleted_duplicated_and_swapped_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let trust = build(dir.path(), 12, window());
    let original = entries(dir.path());

    let mut deleted = original.clone();
    deleted.remove(4);
    rewrite_segment(dir.path(), &deleted);
    let err = verify(dir.path(), &trust, &VerifyOptions::default()).unwrap_err();
    assert_eq!(record_index(&err), Some(4), "{err}");

    let mut duplicated = original.clone();
    duplicated.insert(7, original[6].clone());
    rewrite_segment(dir.path(), &duplicated);
    let err = verify(dir.path(), &trust, &VerifyOptions::default()).unwrap_err();
    assert_eq!(record_index(&err), Some(7), "{err}");
    assert!(
        matches!(
            err,
            VerifyError::Record {
                fault: RecordFault::Sequence {
                    expected: 7,
                    found: 6
                },
                ..
            }
        ),
        "{err}"
    );

    let mut swapped = original.clone();
    swapped.swap(2, 3);
    rewrite_segment(dir.path(), &swapped);
    let err = verify(dir.path(), &trust, &VerifyOptions::default()).unwrap_err();
    assert_eq!(record_index(&err), Some(2), "{err}");

    rewrite_segment(dir.path(), &original);
    verify(dir.path(), &trust, &VerifyOptions::default()).unwrap();
}

#[test]
fn a_record_re_signed_with_an_untrusted_key_is_refused_naming_key_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let trust = build(dir.path(), 9, Cadence::EveryRecord);
    verify(dir.path(), &trust, &VerifyOptions::default()).unwrap();
    let mut all = entries(dir.path());
    let evil = SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[99; 32]).unwrap();
    let mut victim = SignedRecord::from_cbor(&all[4]).unwrap();
    victim.record.signer = evil.key_ref();
    let resealed = SignedRecord::seal(victim.record, &evil, true).unwrap();
    all[4] = resealed.to_cbor();
    rewrite_segment(dir.path(), &all);
    let err = verify(dir.path(), &trust, &VerifyOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "record 4 (corpus.admission): signed by key {}, which is not trusted for role corpus-authority",
            evil.key_ref()
        )
    );
}

#[test]
fn a_key_trusted_for_another_role_cannot_write_a_kind_it_does_not_own() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, _, trust) = keys();
    let lineage = Lineage::create(
        dir.path(),
        StoreOptions::new("o").with_cadence(Cadence::EveryRecord),
    )
    .unwrap();
    lineage
        .append(RecordDraft::new("train.iteration", json!({})), &corpus)
        .unwrap();
    lineage.close().unwrap();
    let err = verify(dir.path(), &trust, &VerifyOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 0 (train.iteration): kind `train.iteration` must be signed by the training-authority but is signed as corpus-authority"
    );
}

#[test]
fn bad_directories_give_one_line_errors_naming_the_path() {
    let (_, _, trust) = keys();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = verify(&missing, &trust, &VerifyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope") && !err.contains('\n'), "{err}");
    let err = verify(dir.path(), &trust, &VerifyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no segment files"), "{err}");
    std::fs::write(segment(dir.path()), b"garbage garbage garbage").unwrap();
    std::fs::write(dir.path().join("checkpoints.wlog"), b"garbage").unwrap();
    let err = verify(dir.path(), &trust, &VerifyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("seg-00000000000000000000.wlog") && err.contains("magic"),
        "{err}"
    );
    let err = Lineage::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("seg-00000000000000000000.wlog"), "{err}");
    let _ = CHECKPOINT_MAGIC;
}
