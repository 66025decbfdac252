//! Crash safety: a child process appending as fast as it can is killed with SIGKILL at random
//! moments; after each kill the store opens (cutting any torn tail), verifies, and appends.
//! While the child runs, the parent's open is refused by the directory lock, naming the child.
//! Also: appends from several threads are serialized into one valid chain.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::RecordDraft;
use warden_store::{verify, Cadence, Lineage, StoreError, StoreOptions, VerifyOptions};

const CHILD_ENV: &str = "WARDEN_CRASH_CHILD_DIR";

fn key() -> (Arc<SigningKey>, TrustStore) {
    let key =
        Arc::new(SigningKey::from_seed(Role::TrainingAuthority, "training", &[5; 32]).unwrap());
    let mut trust = TrustStore::new();
    trust.add(Role::TrainingAuthority, key.public().clone());
    (key, trust)
}

/// The default cadence (every record signed, a checkpoint per window): a crash leaves a tail
/// that reopening authenticates through the trust store.
fn options(trust: &TrustStore) -> StoreOptions {
    StoreOptions::new("warden.test/crash")
        .with_cadence(Cadence::SignedWindow {
            records: 64,
            millis: 5,
        })
        .with_trust(Arc::new(trust.clone()))
}

/// Appends `n` records (every 7th one 512 KiB, so a SIGKILL can land inside its write and
/// tear it), or forever when `n` is `None`.
fn append_records(lineage: &Lineage, key: &Arc<SigningKey>, n: Option<u64>) {
    let small = "x".repeat(300);
    let large = "y".repeat(512 << 10);
    for i in 0u64.. {
        if n.is_some_and(|n| i >= n) {
            break;
        }
        let pad = if i % 7 == 3 { &large } else { &small };
        lineage
            .append(
                RecordDraft::new("train.iteration", json!({"i": i, "pad": pad})),
                key,
            )
            .unwrap();
    }
}

/// The process the crash test kills (spawned with `CHILD_ENV` set: appends until killed).
/// Run directly, it checks that what the child writes is a log that verifies.
#[test]
fn appender_child_writes_a_verifiable_log() {
    let (key, trust) = key();
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let lineage = Lineage::open_or_create(Path::new(&dir), options(&trust)).unwrap();
        println!("ready");
        append_records(&lineage, &key, None);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lineage = Lineage::open_or_create(dir.path(), options(&trust)).unwrap();
    append_records(&lineage, &key, Some(20));
    lineage.close().unwrap();
    drop(lineage);
    let verified = verify(
        dir.path(),
        &trust,
        &VerifyOptions {
            expect_size: Some(20),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(verified.sealed, 20);
}

#[test]
fn sigkill_at_random_moments_never_loses_a_valid_log() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut torn, mut unsealed) = (0, 0);
    let mut last_len = 0;
    for round in 0..24 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "appender_child_writes_a_verifiable_log",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest may print the test's name on the same line first.
            .any(|line| line.ends_with("ready"));
        assert!(ready, "round {round}: the child never opened the lineage");
        // Two processes never append to one lineage: the child holds the lock.
        match Lineage::open_with(dir.path(), Some(options(&trust))) {
            Err(StoreError::Locked { path, holder }) => {
                assert_eq!(holder, Some(child.id()), "round {round}");
                assert_eq!(path, dir.path().display().to_string());
            }
            Err(e) => panic!("round {round}: expected a lock error, got {e}"),
            Ok(_) => panic!("round {round}: a second appender was let in"),
        }
        // xorshift: kill somewhere between 5 and 125 ms after the child opened.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(5 + seed % 120));
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();

        let lineage = Lineage::open_with(dir.path(), Some(options(&trust)))
            .unwrap_or_else(|e| panic!("round {round}: open failed: {e}"));
        torn += lineage.open_report().repaired.len();
        let n = lineage.len();
        if lineage.latest_checkpoint().unwrap().map(|c| c.0) != Some(n) {
            unsealed += 1;
        }
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
    // Each kill left either a torn frame (cut) or a signed, unsealed tail (kept), or nothing.
    eprintln!(
        "24 kills, {last_len} records; {torn} torn tails cut, {unsealed} signed tails authenticated and kept"
    );
}

#[test]
fn concurrent_appends_from_several_threads_form_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    let lineage = Arc::new(Lineage::create(dir.path(), options(&trust)).unwrap());
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
fn proofs_from_the_store_verify_against_its_stored_signed_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    let lineage = Lineage::create(
        dir.path(),
        options(&trust).with_cadence(Cadence::SignedWindow {
            records: 40,
            millis: 1 << 40,
        }),
    )
    .unwrap();
    for i in 0..100 {
        lineage
            .append(RecordDraft::new("note", json!({"i": i})), &key)
            .unwrap();
    }
    lineage.close().unwrap();
    drop(lineage);
    // What an auditor holds: the checkpoint notes on disk, checked against the trust file.
    let checkpoints = warden_store::read_checkpoints(dir.path()).unwrap();
    let sizes: Vec<u64> = checkpoints.iter().map(|c| c.checkpoint.size).collect();
    assert_eq!(sizes, vec![40, 80, 100]);
    for cp in &checkpoints {
        cp.verify_signatures(&trust, &std::collections::BTreeSet::from([key.role()]))
            .unwrap();
    }
    let (old, new) = (&checkpoints[0].checkpoint, &checkpoints[2].checkpoint);
    // A reopened handle (its tree read back from disk) proves against those notes.
    let lineage = Lineage::open_with(dir.path(), Some(options(&trust))).unwrap();
    for index in [0, 1, 37, 99] {
        let proof = lineage.prove_inclusion(index, new.size).unwrap();
        let leaf = lineage.leaf_hash(index).unwrap().unwrap();
        warden_merkle::verify_inclusion(&leaf, index, new.size, &proof, &new.root).unwrap();
        let mut forged = leaf;
        forged[0] ^= 1;
        assert!(
            warden_merkle::verify_inclusion(&forged, index, new.size, &proof, &new.root).is_err()
        );
    }
    let proof = lineage.prove_consistency(old.size, new.size).unwrap();
    warden_merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof).unwrap();
    assert_eq!(lineage.root_at(old.size).unwrap(), old.root);
}

#[test]
fn a_torn_tail_is_reported_cut_and_appending_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (key, trust) = key();
    let lineage = Lineage::create(dir.path(), options(&trust)).unwrap();
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

    let lineage = Lineage::open_or_create(dir.path(), options(&trust)).unwrap();
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
