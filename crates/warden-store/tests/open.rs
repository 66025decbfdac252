//! Opening for append: what it refuses (sealed records torn, unauthenticated tails, a second
//! appender), what it keeps (the stored origin and cadence), and how `recover` moves a forged
//! tail aside.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::{encode_entry, Record, RecordDraft};
use warden_store::{frame, verify, Cadence, Lineage, StoreError, StoreOptions, VerifyOptions};

fn keys() -> (Arc<SigningKey>, Arc<TrustStore>) {
    let corpus =
        Arc::new(SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[11; 32]).unwrap());
    let mut trust = TrustStore::new();
    trust.add(Role::CorpusAuthority, corpus.public().clone());
    (corpus, Arc::new(trust))
}

fn options(trust: &Arc<TrustStore>) -> StoreOptions {
    StoreOptions::new("example.com/warden").with_trust(Arc::clone(trust))
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("seg-00000000000000000000.wlog")
}

/// A closed lineage of `n` corpus records, all sealed.
fn build(dir: &Path, n: u64) -> (Arc<SigningKey>, Arc<TrustStore>) {
    let (key, trust) = keys();
    let lineage = Lineage::create(dir, options(&trust)).unwrap();
    for i in 0..n {
        lineage
            .append(RecordDraft::new("corpus.admission", json!({"i": i})), &key)
            .unwrap();
    }
    lineage.close().unwrap();
    (key, trust)
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wlog"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn opening_a_log_whose_sealed_record_is_torn_refuses_and_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, trust) = build(dir.path(), 6);
    // Tear the last record, which the final checkpoint seals.
    let bytes = std::fs::read(segment(dir.path())).unwrap();
    std::fs::write(segment(dir.path()), &bytes[..bytes.len() - 30]).unwrap();
    let before = snapshot(dir.path());
    let err = Lineage::open_with(dir.path(), Some(options(&trust)))
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("record 5 (incomplete): incomplete record"),
        "{err}"
    );
    assert_eq!(snapshot(dir.path()), before, "not a byte was cut");
}

#[test]
fn a_keyless_forged_frame_after_the_last_checkpoint_is_refused_and_recover_moves_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = build(dir.path(), 4);
    // Forge record 4 with no key: right seq, right prev, claims the corpus authority.
    let records = warden_store::read_all(dir.path()).unwrap();
    let forged = Record {
        seq: 4,
        kind: "corpus.admission".into(),
        time_ms: 1,
        role: Role::CorpusAuthority,
        signer: key.key_ref(),
        policy_version: None,
        prev: records[3].leaf_hash(),
        payload: json!({"forged": true}),
    };
    append_raw(dir.path(), &forged, None);
    let mut entry = Vec::new();
    encode_entry(&mut entry, &forged.encode_body().unwrap(), None);
    let mut bytes = Vec::new();
    frame::encode_frame(&mut bytes, &entry);

    let before = snapshot(dir.path());
    let err = Lineage::open_with(dir.path(), Some(options(&trust)))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            StoreError::UnauthenticatedTail {
                first: 4,
                end: 5,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("records 4..5 after the last checkpoint are not authenticated"),
        "{text}"
    );
    assert!(
        text.contains("record 4 (corpus.admission)") && text.contains("no signature"),
        "{text}"
    );
    assert_eq!(snapshot(dir.path()), before, "refusing changes nothing");

    let report = Lineage::recover(dir.path(), Some(&trust)).unwrap();
    assert_eq!(report.records, 4..5);
    assert_eq!(report.moved.len(), 1);
    let side = &report.moved[0];
    assert_eq!(side.bytes, bytes.len() as u64);
    let side_bytes = std::fs::read(&side.file).unwrap();
    assert!(
        side_bytes.ends_with(&bytes),
        "the forged frame is kept, byte for byte"
    );
    assert!(side
        .file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("unauthenticated-00000000000000000004-"));

    let lineage = Lineage::open_with(dir.path(), Some(options(&trust))).unwrap();
    assert_eq!(lineage.len(), 4);
    lineage
        .append(RecordDraft::new("corpus.admission", json!({"i": 4})), &key)
        .unwrap();
    lineage.close().unwrap();
    drop(lineage);
    verify(
        dir.path(),
        &trust,
        &VerifyOptions {
            expect_size: Some(5),
            ..Default::default()
        },
    )
    .unwrap();
    // Nothing left to move.
    assert_eq!(
        Lineage::recover(dir.path(), Some(&trust)).unwrap().moved,
        vec![]
    );
}

/// Appends `record` to the segment as a frame, signed by `key` if given (as a process that
/// crashed before sealing it, or an attacker, would leave it).
fn append_raw(dir: &Path, record: &Record, key: Option<&SigningKey>) {
    let body = record.encode_body().unwrap();
    let signature = key.map(|k| k.sign(&warden_lineage::signing_message(&body)));
    let mut entry = Vec::new();
    encode_entry(&mut entry, &body, signature.as_ref());
    let mut bytes = Vec::new();
    frame::encode_frame(&mut bytes, &entry);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(segment(dir))
        .unwrap();
    std::io::Write::write_all(&mut file, &bytes).unwrap();
}

#[test]
fn a_tail_record_signed_by_an_untrusted_key_or_in_the_wrong_role_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = build(dir.path(), 2);
    let prev = warden_store::read_all(dir.path()).unwrap()[1].leaf_hash();
    let stranger = SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[66; 32]).unwrap();
    let record = Record {
        seq: 2,
        kind: "corpus.admission".into(),
        time_ms: 1,
        role: Role::CorpusAuthority,
        signer: stranger.key_ref(),
        policy_version: None,
        prev,
        payload: json!({}),
    };
    append_raw(dir.path(), &record, Some(&stranger));
    let err = Lineage::open_with(dir.path(), Some(options(&trust)))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            StoreError::UnauthenticatedTail {
                first: 2,
                end: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("not trusted for role corpus-authority"),
        "{err}"
    );
    // The trusted key, but a kind its role may not write.
    Lineage::recover(dir.path(), Some(&trust)).unwrap();
    let wrong_role = Record {
        kind: "train.iteration".into(),
        signer: key.key_ref(),
        ..record
    };
    append_raw(dir.path(), &wrong_role, Some(&key));
    let err = Lineage::open_with(dir.path(), Some(options(&trust)))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("must be signed by the training-authority"),
        "{err}"
    );
}

#[test]
fn a_second_appender_is_refused_naming_the_directory_and_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = build(dir.path(), 1);
    let first = Lineage::open_with(dir.path(), Some(options(&trust))).unwrap();
    let err = Lineage::open_with(dir.path(), Some(options(&trust)))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the lineage is open for appending by another process (pid {})",
            dir.path().display(),
            std::process::id()
        )
    );
    assert!(Lineage::open_or_create(dir.path(), options(&trust)).is_err());
    // Reading and verifying need no lock.
    verify(dir.path(), &trust, &VerifyOptions::default()).unwrap();
    first
        .append(RecordDraft::new("note", json!({})), &key)
        .unwrap();
    drop(first);
    Lineage::open_with(dir.path(), Some(options(&trust))).unwrap();
}

#[test]
fn the_stored_origin_wins_so_every_command_appends_to_one_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = build(dir.path(), 2);
    for origin in [
        "warden.local/corpus",
        "warden.local/policy",
        "warden.local/train",
    ] {
        let lineage = Lineage::open_or_create(
            dir.path(),
            StoreOptions::new(origin).with_trust(Arc::clone(&trust)),
        )
        .unwrap();
        assert_eq!(lineage.origin(), "example.com/warden");
        lineage
            .append(RecordDraft::new("note", json!({"from": origin})), &key)
            .unwrap();
    }
    let verified = verify(
        dir.path(),
        &trust,
        &VerifyOptions {
            expect_size: Some(5),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(verified.origin.as_deref(), Some("example.com/warden"));
}

#[test]
fn origins_that_are_not_url_like_are_refused_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    for (origin, reason) in [
        ("", "it is empty"),
        ("example.com/my log", "whitespace"),
        ("example.com/log\n5", "whitespace"),
        ("a+b", "`+`"),
    ] {
        let err = Lineage::create(&dir.path().join("x"), StoreOptions::new(origin))
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::BadOrigin { .. }), "{err}");
        assert!(err.to_string().contains(reason), "{origin:?}: {err}");
    }
    assert!(!dir.path().join("x").exists(), "nothing is created");
}

#[test]
fn the_stored_cadence_wins_over_the_callers() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = keys();
    let unsigned = Cadence::Window {
        records: 1000,
        millis: 1 << 40,
    };
    let lineage = Lineage::create(dir.path(), options(&trust).with_cadence(unsigned)).unwrap();
    drop(lineage);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cadence")).unwrap(),
        "window\n"
    );
    // A caller asking for signed records gets the lineage's unsigned ones (same window).
    let lineage = Lineage::open_with(dir.path(), Some(options(&trust))).unwrap();
    assert_eq!(
        lineage.cadence(),
        Cadence::DEFAULT.with_record_signatures(false)
    );
    lineage
        .append(RecordDraft::new("note", json!({})), &key)
        .unwrap();
    lineage.close().unwrap();
    let records = warden_store::read_all(dir.path()).unwrap();
    assert!(records[0].signature.is_none());
}

#[test]
fn reads_stream_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = keys();
    let mut small = options(&trust);
    small.segment_bytes = 1000;
    let lineage = Lineage::create(dir.path(), small).unwrap();
    for i in 0..60 {
        lineage
            .append(
                RecordDraft::new("note", json!({"i": i, "pad": "z".repeat(100)})),
                &key,
            )
            .unwrap();
    }
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("seg-")
        })
        .count();
    assert!(segments > 5, "{segments} segments");
    let range = lineage.read_range(23..41).unwrap();
    let seqs: Vec<u64> = range.iter().map(|r| r.record.seq).collect();
    assert_eq!(seqs, (23..41).collect::<Vec<_>>());
    lineage.close().unwrap();
    let streamed: Vec<u64> = warden_store::records(dir.path())
        .unwrap()
        .map(|r| r.unwrap().record.payload["i"].as_u64().unwrap())
        .collect();
    assert_eq!(streamed, (0..60).collect::<Vec<_>>());
}

#[test]
fn a_creation_interrupted_before_the_segment_is_completed_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = build(dir.path(), 1);
    // A kill during creation: the checkpoint header is there, the first segment is not.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    std::fs::copy(dir.path().join("cadence"), fresh.join("cadence")).unwrap();
    std::fs::write(
        fresh.join("checkpoints.wlog"),
        frame::encode_header(frame::CHECKPOINT_MAGIC, "example.com/warden"),
    )
    .unwrap();
    let lineage = Lineage::open_or_create(&fresh, options(&trust)).unwrap();
    lineage
        .append(RecordDraft::new("note", json!({})), &key)
        .unwrap();
    lineage.close().unwrap();
    verify(
        &fresh,
        &trust,
        &VerifyOptions {
            expect_size: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    // But a lineage whose segments are gone is never re-created over its checkpoints.
    std::fs::remove_file(segment(dir.path())).unwrap();
    let err = Lineage::open_or_create(dir.path(), options(&trust))
        .err()
        .unwrap();
    assert!(err.to_string().contains("no segment files"), "{err}");
    assert!(matches!(
        Lineage::create(dir.path(), options(&trust)).err().unwrap(),
        StoreError::Exists { .. }
    ));
}
