//! Crash safety: a child process appending as fast as it can is killed with SIGKILL at random
//! moments; after each kill the store opens (cutting any torn tail), verifies, and appends.
//! Also: appends from several threads are serialized into one valid chain.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::RecordDraft;
use warden_store::{verify, Cadence, Lineage, StoreOptions, VerifyOptions};

const CHILD_ENV: &str = "WARDEN_CRASH_CHILD_DIR";

fn key() -> (Arc<SigningKey>, TrustStore) {
    let key =
        Arc::new(SigningKey::from_seed(Role::TrainingAuthority, "training", &[5; 32]).unwrap());
    let mut trust = TrustStore::new();
    trust.add(Role::TrainingAuthority, key.public().clone());
    (key, trust)
}

fn options() -> StoreOptions {
    StoreOptions::new("warden.test/crash").with_cadence(Cadence::Window {
        records: 64,
        millis: 5,
    })
}

/// Not a real test on its own: when spawned by the crash test with `CHILD_ENV` set, it appends
/// until killed.
#[test]
fn crash_child_appender() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (key, _) = key();
    let lineage = Lineage::open_or_create(Path::new(&dir), options()).unwrap();
    println!("ready");
    let payload = "x".repeat(300);
    for i in 0u64.. {
        lineage
            .append(
                RecordDraft::new("train.iteration", json!({"i": i, "pad": payload})),
                &key,
            )
            .unwrap();
    }
}

#[test]
fn sigkill_at_random_moments_never_loses_a_valid_log() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut repairs = 0;
    let mut last_len = 0;
    for round in 0..24 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // xorshift: kill somewhere between 20 and 140 ms after start.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 120));
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();

        let lineage = Lineage::open_or_create(dir.path(), options())
            .unwrap_or_else(|e| panic!("round {round}: open failed: {e}"));
        repairs += lineage.open_report().repaired.len();
        let n = lineage.len();
        assert!(
            n >= last_len,
            "round {round}: records were lost ({n} < {last_len})"
        );
        lineage
            .append(RecordDraft::new("note", json!({"round": round})), &key)
            .unwrap();
        lineage.close().unwrap();
        drop(lineage);
        let verified = verify(
            dir.path(),
            &trust,
            &VerifyOptions {
                expect_size: Some(n + 1),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("round {round}: verify failed: {e}"));
        assert_eq!(verified.sealed, n + 1);
        last_len = n + 1;
    }
    assert!(last_len > 24, "the child appended nothing");
    eprintln!("24 kills, {last_len} records, {repairs} torn tails cut");
}

#[test]
fn concurrent_appends_from_several_threads_form_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    let lineage = Arc::new(Lineage::create(dir.path(), options()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let lineage = Arc::clone(&lineage);
            let key = Arc::clone(&key);
            std::thread::spawn(move || {
                for i in 0..500 {
                    lineage
                        .append(
                            RecordDraft::new("train.iteration", json!({"thread": t, "i": i})),
                            &key,
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    lineage.close().unwrap();
    let records = lineage.read_range(0..2000).unwrap();
    assert_eq!(records.len(), 2000);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.record.seq, i as u64);
    }
    let verified = verify(
        dir.path(),
        &trust,
        &VerifyOptions {
            expect_size: Some(2000),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(verified.sealed, 2000);
}

#[test]
fn proofs_from_the_store_verify_against_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = key();
    let lineage = Lineage::create(dir.path(), options()).unwrap();
    for i in 0..100 {
        lineage
            .append(RecordDraft::new("note", json!({"i": i})), &key)
            .unwrap();
    }
    lineage.close().unwrap();
    let root = lineage.root().unwrap();
    for index in [0, 1, 37, 99] {
        let proof = lineage.prove_inclusion(index, 100).unwrap();
        let leaf = lineage.leaf_hash(index).unwrap().unwrap();
        warden_merkle::verify_inclusion(&leaf, index, 100, &proof, &root).unwrap();
    }
    let old = lineage.root_at(40).unwrap();
    let proof = lineage.prove_consistency(40, 100).unwrap();
    warden_merkle::verify_consistency(40, 100, &old, &root, &proof).unwrap();
}

#[test]
fn a_torn_tail_is_reported_cut_and_appending_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    let lineage = Lineage::create(dir.path(), options()).unwrap();
    for i in 0..10 {
        lineage
            .append(RecordDraft::new("note", json!({"i": i})), &key)
            .unwrap();
    }
    lineage.close().unwrap();
    drop(lineage);
    // A crash in the middle of writing record 10: a prefix of a valid frame.
    let seg = dir.path().join("seg-00000000000000000000.wlog");
    let good_len = std::fs::metadata(&seg).unwrap().len();
    let mut frame = Vec::new();
    warden_store::frame::encode_frame(&mut frame, &[0xa5; 90]);
    let mut file = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut file, &frame[..40]).unwrap();
    drop(file);

    let err = verify(dir.path(), &trust, &VerifyOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("record 10 (incomplete): incomplete record at byte"),
        "{err}"
    );

    let lineage = Lineage::open_or_create(dir.path(), options()).unwrap();
    let report = lineage.open_report().clone();
    assert_eq!(report.repaired.len(), 1);
    assert_eq!((report.repaired[0].1, report.repaired[0].2), (good_len, 40));
    assert_eq!(lineage.len(), 10);
    lineage
        .append(RecordDraft::new("note", json!({"after": "repair"})), &key)
        .unwrap();
    lineage.close().unwrap();
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
