//! `warden lineage init` and `warden lineage recover` with the real binary: one lineage whose
//! origin and record signing are chosen once, and a forged tail moved aside.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use serde_json::json;
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::{encode_entry, Record, RecordDraft};
use warden_store::{Cadence, Lineage, StoreOptions};

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .output()
        .expect("run warden")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A policy key and a trust file beside the lineage (where `lineage verify` looks).
fn key_and_trust(root: &Path) -> (Arc<SigningKey>, TrustStore) {
    let key = Arc::new(SigningKey::from_seed(Role::PolicyAuthority, "policy", &[4; 32]).unwrap());
    let mut trust = TrustStore::new();
    trust.add(Role::PolicyAuthority, key.public().clone());
    std::fs::write(root.join("trust.toml"), trust.to_toml()).unwrap();
    (key, trust)
}

fn signatures(dir: &Path) -> Vec<bool> {
    let out = warden(&["lineage", "show", p(dir), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            !value["signature"].is_null()
        })
        .collect()
}

#[test]
fn init_chooses_origin_and_cadence_once_for_every_appender() {
    let root = tempfile::tempdir().unwrap();
    let (key, _) = key_and_trust(root.path());
    for (cadence, signed) in [("record", true), ("window", false)] {
        let dir = root.path().join(cadence);
        let out = warden(&[
            "lineage",
            "init",
            p(&dir),
            "--origin",
            "example.com/warden",
            "--cadence",
            cadence,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            format!(
                "created lineage {} (origin example.com/warden, cadence {cadence})\n",
                dir.display()
            )
        );
        // Two appenders with their own origins and cadences: the lineage's choices win.
        for caller in [
            StoreOptions::new("warden.local/policy"),
            StoreOptions::new("warden.local/train").with_cadence(Cadence::EveryRecord),
        ] {
            let lineage = Lineage::open_or_create(&dir, caller).unwrap();
            assert_eq!(lineage.origin(), "example.com/warden");
            lineage
                .append(RecordDraft::new("policy.note", json!({})), &key)
                .unwrap();
            lineage.close().unwrap();
        }
        assert_eq!(signatures(&dir), vec![signed, signed], "cadence {cadence}");
        let out = warden(&["lineage", "verify", p(&dir), "--expect-size", "2"]);
        assert!(out.status.success(), "{}", text(&out.stderr));

        let again = warden(&["lineage", "init", p(&dir), "--origin", "example.com/other"]);
        assert!(!again.status.success());
        assert!(text(&again.stderr).contains("a lineage already exists here"));
    }
    let bad = warden(&[
        "lineage",
        "init",
        p(&root.path().join("bad")),
        "--origin",
        "my lineage",
    ]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr)
            .contains("`my lineage` is not a usable lineage origin: it contains whitespace"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn recover_moves_a_keyless_forged_tail_aside_and_the_log_continues() {
    let root = tempfile::tempdir().unwrap();
    let (key, trust) = key_and_trust(root.path());
    let dir = root.path().join("lineage");
    let out = warden(&["lineage", "init", p(&dir), "--origin", "example.com/warden"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lineage = Lineage::open(&dir).unwrap();
    for i in 0..3 {
        lineage
            .append(RecordDraft::new("policy.note", json!({"i": i})), &key)
            .unwrap();
    }
    lineage.close().unwrap();
    drop(lineage);
    // A keyless forgery appended after the last checkpoint.
    let prev = warden_store::read_all(&dir).unwrap()[2].leaf_hash();
    let forged = Record {
        seq: 3,
        kind: "policy.admission".into(),
        time_ms: 1,
        role: Role::PolicyAuthority,
        signer: key.key_ref(),
        policy_version: None,
        prev,
        payload: json!({"forged": true}),
    };
    let mut entry = Vec::new();
    encode_entry(&mut entry, &forged.encode_body().unwrap(), None);
    let mut frame = Vec::new();
    warden_store::frame::encode_frame(&mut frame, &entry);
    let segment = dir.join("seg-00000000000000000000.wlog");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut file, &frame).unwrap();
    drop(file);
    let options = || StoreOptions::new("x.y/z").with_trust(Arc::new(trust.clone()));
    let err = Lineage::open_with(&dir, Some(options())).err().unwrap();
    assert!(
        err.to_string()
            .contains("records 3..4 after the last checkpoint are not authenticated"),
        "{err}"
    );

    let out = warden(&["lineage", "recover", p(&dir)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("moved records 3..4 aside (record 3 (policy.admission): "),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("({} bytes, from record 3)", frame.len())),
        "{stdout}"
    );
    let side = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("unauthenticated-")
        })
        .expect("a side file");
    assert!(std::fs::read(side).unwrap().ends_with(&frame));

    let lineage = Lineage::open_with(&dir, Some(options())).unwrap();
    assert_eq!(lineage.len(), 3);
    lineage
        .append(RecordDraft::new("policy.note", json!({"i": 3})), &key)
        .unwrap();
    lineage.close().unwrap();
    drop(lineage);
    let out = warden(&["lineage", "verify", p(&dir), "--expect-size", "4"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = warden(&["lineage", "recover", p(&dir)]);
    assert_eq!(
        text(&out.stdout),
        "nothing to recover: every record after the last checkpoint is authenticated\n"
    );
}
