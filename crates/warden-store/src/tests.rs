//! Unit tests that need the store's insides: fault injection through [`LogFile`], a crash
//! without the final checkpoint, a poisoned mutex.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use serde_json::json;
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::RecordDraft;

use super::logfile::faults::{self, Fault, Plan};
use super::*;

fn key() -> (Arc<SigningKey>, Arc<TrustStore>) {
    let key = Arc::new(SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[3; 32]).unwrap());
    let mut trust = TrustStore::new();
    trust.add(Role::CorpusAuthority, key.public().clone());
    (key, Arc::new(trust))
}

fn options(trust: &Arc<TrustStore>) -> StoreOptions {
    let mut options = StoreOptions::new("warden.test/faults")
        .with_cadence(Cadence::SignedWindow {
            records: 3,
            millis: 1 << 40,
        })
        .with_trust(Arc::clone(trust));
    // Small segments, so rotation happens under faults too.
    options.segment_bytes = 700;
    options
}

fn draft(i: u64) -> RecordDraft {
    RecordDraft::new("corpus.admission", json!({"i": i, "pad": "p".repeat(90)}))
}

fn payload_indices(dir: &Path) -> Vec<u64> {
    read_all(dir)
        .unwrap()
        .iter()
        .map(|r| r.record.payload["i"].as_u64().unwrap())
        .collect()
}

fn plan(schedule: &[(u64, Fault)]) -> Arc<Mutex<Plan>> {
    Arc::new(Mutex::new(Plan {
        schedule: schedule.iter().copied().collect::<BTreeMap<_, _>>(),
        ..Plan::default()
    }))
}

fn segment_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for seg in list_segments(dir).unwrap() {
        all.extend(std::fs::read(seg.path).unwrap());
    }
    all
}

#[test]
fn a_failed_record_write_leaves_the_log_exactly_as_before_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    // Operation 0 is the first record's write: half of it lands, then ENOSPC.
    let plan = plan(&[(0, Fault::Short), (1, Fault::NoSpace)]);
    let lineage =
        Lineage::open_or_create_through(dir.path(), options(&trust), faults::opener(plan.clone()))
            .unwrap();
    let before = segment_bytes(dir.path());
    let err = lineage.append(draft(0), &key).unwrap_err();
    assert!(
        matches!(err, StoreError::NotAppended { index: 0, .. }),
        "{err}"
    );
    assert_eq!(err.appended(), None);
    assert!(
        err.to_string()
            .starts_with("record 0 was not appended and the log is unchanged"),
        "{err}"
    );
    assert_eq!(
        segment_bytes(dir.path()),
        before,
        "the partial frame was cut back"
    );
    assert_eq!(lineage.len(), 0);
    // The next append goes where the failed one would have, and the log verifies.
    assert_eq!(lineage.append(draft(1), &key).unwrap().index, 0);
    lineage.close().unwrap();
    drop(lineage);
    assert_eq!(payload_indices(dir.path()), vec![1]);
    verify(
        dir.path(),
        &trust,
        &VerifyOptions {
            expect_size: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(plan.lock().unwrap().injected, 2);
}

#[test]
fn a_fragment_that_cannot_be_cut_back_stops_appends_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    // The write is short then fails with EIO, and the truncation that would undo it fails too.
    let plan = plan(&[(0, Fault::Short), (1, Fault::Eio), (2, Fault::Eio)]);
    let lineage =
        Lineage::open_or_create_through(dir.path(), options(&trust), faults::opener(plan)).unwrap();
    let err = lineage.append(draft(0), &key).unwrap_err();
    assert!(matches!(err, StoreError::NotAppended { .. }), "{err}");
    let err = lineage.append(draft(1), &key).unwrap_err();
    assert!(matches!(err, StoreError::Broken { .. }), "{err}");
    assert!(err.to_string().contains("reopen the lineage"), "{err}");
    drop(lineage);
    // Reopening cuts the fragment (after the last checkpoint) and appending continues.
    let lineage = Lineage::open_with(dir.path(), Some(options(&trust))).unwrap();
    assert_eq!(lineage.open_report().repaired.len(), 1);
    assert_eq!(lineage.append(draft(2), &key).unwrap().index, 0);
    lineage.close().unwrap();
    drop(lineage);
    assert_eq!(payload_indices(dir.path()), vec![2]);
}

#[test]
fn a_failed_checkpoint_reports_the_record_as_appended_so_it_is_never_written_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    // Records 0..3: write, write, write + fsync segment (op 3) + checkpoint write (op 4: EIO).
    let plan = plan(&[(4, Fault::Eio)]);
    let lineage =
        Lineage::open_or_create_through(dir.path(), options(&trust), faults::opener(plan)).unwrap();
    lineage.append(draft(0), &key).unwrap();
    lineage.append(draft(1), &key).unwrap();
    let err = lineage.append(draft(2), &key).unwrap_err();
    let appended = err.appended().expect("the record is in the log");
    assert_eq!(appended.index, 2);
    assert!(
        err.to_string()
            .starts_with("record 2 is in the log but was not sealed (do not append it again)"),
        "{err}"
    );
    // The checkpoint file was put back; the next checkpoint seals all three.
    assert!(lineage.checkpoint().unwrap().is_some());
    lineage.close().unwrap();
    drop(lineage);
    assert_eq!(payload_indices(dir.path()), vec![0, 1, 2]);
    verify(
        dir.path(),
        &trust,
        &VerifyOptions {
            expect_size: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
}

#[test]
fn a_poisoned_lock_is_an_error_and_never_an_empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    let lineage = Arc::new(Lineage::create(dir.path(), options(&trust)).unwrap());
    for i in 0..4 {
        lineage.append(draft(i), &key).unwrap();
    }
    let holder = Arc::clone(&lineage);
    let _ = std::thread::spawn(move || {
        let _guard = holder.inner.lock().unwrap();
        panic!("a panic while holding the store's lock");
    })
    .join();
    assert_eq!(lineage.len(), 4);
    assert!(!lineage.is_empty());
    let err = lineage.append(draft(4), &key).unwrap_err();
    assert!(matches!(err, StoreError::Poisoned { .. }), "{err}");
    assert!(err.to_string().contains("poisoned"), "{err}");
    assert!(matches!(lineage.root(), Err(StoreError::Poisoned { .. })));
}

#[test]
fn a_crash_with_the_default_cadence_reopens_with_trust_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    let lineage = Lineage::create(dir.path(), StoreOptions::new("example.com/warden")).unwrap();
    assert_eq!(lineage.cadence(), Cadence::DEFAULT);
    for i in 0..10 {
        lineage.append(draft(i), &key).unwrap();
    }
    lineage.crash();
    // No checkpoint was written: the ten records are the tail, each signed.
    assert!(read_checkpoints(dir.path()).unwrap().is_empty());
    let err = Lineage::open(dir.path()).err().unwrap();
    assert!(
        matches!(
            err,
            StoreError::UnauthenticatedTail {
                first: 0,
                end: 10,
                ..
            }
        ),
        "without a trust store nothing can be authenticated: {err}"
    );
    let options = StoreOptions::new("example.com/warden").with_trust(Arc::clone(&trust));
    let lineage = Lineage::open_with(dir.path(), Some(options)).unwrap();
    assert_eq!(lineage.len(), 10);
    lineage.append(draft(10), &key).unwrap();
    lineage.close().unwrap();
    drop(lineage);
    let verified = verify(
        dir.path(),
        &trust,
        &VerifyOptions {
            expect_size: Some(11),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(verified.sealed, 11);
}

#[test]
fn open_reads_only_the_records_after_the_cached_state() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    let lineage = Lineage::create(dir.path(), options(&trust)).unwrap();
    for i in 0..40 {
        lineage.append(draft(i), &key).unwrap();
    }
    lineage.close().unwrap();
    let root = lineage.root().unwrap();
    drop(lineage);
    let lineage = Lineage::open_with(dir.path(), Some(options(&trust))).unwrap();
    assert_eq!((lineage.len(), lineage.open_report().scanned), (40, 0));
    assert_eq!(lineage.root().unwrap(), root);
    for i in 40..45 {
        lineage.append(draft(i), &key).unwrap();
    }
    lineage.crash();
    let lineage = Lineage::open_with(dir.path(), Some(options(&trust))).unwrap();
    assert_eq!((lineage.len(), lineage.open_report().scanned), (45, 5));
    let root = lineage.root().unwrap();
    lineage.close().unwrap();
    drop(lineage);
    // A damaged cache is ignored: the whole log is read and gives the same tree.
    let state_path = dir.path().join(STATE_FILE);
    let mut bytes = std::fs::read(&state_path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&state_path, bytes).unwrap();
    let lineage = Lineage::open_with(dir.path(), Some(options(&trust))).unwrap();
    assert_eq!((lineage.len(), lineage.open_report().scanned), (45, 45));
    assert_eq!(lineage.root().unwrap(), root);
    // Proofs still work: the full tree is read on demand.
    let proof = lineage.prove_inclusion(7, 45).unwrap();
    let leaf = lineage.leaf_hash(7).unwrap().unwrap();
    warden_merkle::verify_inclusion(&leaf, 7, 45, &proof, &root).unwrap();
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Append,
    Checkpoint,
}

fn fault_strategy() -> impl Strategy<Value = Fault> {
    prop_oneof![Just(Fault::Short), Just(Fault::NoSpace), Just(Fault::Eio)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// For any schedule of short writes, ENOSPC and EIO at any write, fsync or truncation of
    /// appends, rotations and checkpoints: reopening gives a valid log holding exactly the
    /// acknowledged records, plus those whose error said they were in the log.
    #[test]
    fn any_fault_schedule_leaves_exactly_the_acknowledged_records(
        schedule in proptest::collection::btree_map(0u64..160, fault_strategy(), 0..10),
        actions in proptest::collection::vec(prop_oneof![9 => Just(Action::Append), 1 => Just(Action::Checkpoint)], 5..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (key, trust) = key();
        let plan = Arc::new(Mutex::new(Plan { schedule, ..Plan::default() }));
        let open = || Lineage::open_or_create_through(dir.path(), options(&trust), faults::opener(plan.clone()));
        let mut lineage = open().unwrap();
        let mut expected = Vec::new();
        for (i, action) in actions.iter().enumerate() {
            let i = i as u64;
            let result = match action {
                Action::Append => match lineage.append(draft(i), &key) {
                    Ok(appended) => {
                        prop_assert_eq!(appended.index, expected.len() as u64);
                        expected.push(i);
                        Ok(())
                    }
                    Err(e) => {
                        if let Some(appended) = e.appended() {
                            prop_assert_eq!(appended.index, expected.len() as u64);
                            expected.push(i);
                        } else {
                            prop_assert!(matches!(e, StoreError::NotAppended { .. } | StoreError::Broken { .. }), "{}", e);
                        }
                        Err(e)
                    }
                },
                Action::Checkpoint => lineage.checkpoint().map(|_| ()),
            };
            prop_assert_eq!(lineage.len(), expected.len() as u64);
            if let Err(StoreError::Broken { .. }) = result {
                // The caller's way out: reopen.
                drop(lineage);
                lineage = open().unwrap();
                prop_assert_eq!(lineage.len(), expected.len() as u64);
            }
        }
        drop(lineage);
        let reopened = Lineage::open_with(dir.path(), Some(options(&trust))).unwrap();
        prop_assert_eq!(reopened.len(), expected.len() as u64);
        reopened.close().unwrap();
        drop(reopened);
        prop_assert_eq!(payload_indices(dir.path()), expected.clone());
        let verified = verify(dir.path(), &trust, &VerifyOptions { expect_size: Some(expected.len() as u64), ..Default::default() });
        prop_assert!(verified.is_ok(), "{:?}", verified.err());
    }
}
