//! A closed standard output (`warden … | head`) must neither panic nor stop a command halfway:
//! the command finishes its durable work and exits 141 (as a tool killed by SIGPIPE would).

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `warden ARGS` with its stdout a pipe whose read end is closed before the child starts,
/// so its first write fails however fast it is.
fn run_with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("make a pipe");
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run warden");
    let output = child.wait_with_output().expect("wait for warden");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_closed_stdout_is_not_a_panic_and_the_work_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("policy.key");
    let (code, stderr) = run_with_closed_stdout(&[
        "key",
        "new",
        "--role",
        "policy-authority",
        "--out",
        p(&key),
        "--name",
        "ops.policy",
    ]);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(code, Some(141), "{stderr}");
    assert!(
        key.exists(),
        "the key was written although stdout was closed"
    );
    assert!(tmp.path().join("policy.key.pub").exists());

    // A lineage with enough records that `show` writes many lines into the closed pipe.
    let signing = std::sync::Arc::new(warden_store::fs::load_signing_key(&key).unwrap());
    let dir = tmp.path().join("lineage");
    let lineage =
        warden_store::Lineage::create(&dir, warden_store::StoreOptions::new("test/stdout"))
            .unwrap();
    for i in 0..200 {
        lineage
            .append(
                warden_lineage::RecordDraft::new("policy.note", serde_json::json!({"i": i})),
                &signing,
            )
            .unwrap();
    }
    lineage.close().unwrap();
    for args in [
        vec!["lineage", "show", p(&dir)],
        vec!["lineage", "show", "--json", p(&dir)],
        vec!["lineage", "export", p(&dir), "--format", "json"],
    ] {
        let (code, stderr) = run_with_closed_stdout(&args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(code, Some(141), "{args:?}: {stderr}");
    }
}
