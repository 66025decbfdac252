//! The real `warden` binary on real files: keys, trust, lineage verify/show/prove/export, and
//! one-line errors for bad input.

use std::path::Path;
use std::process::{Command, Output};

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .output()
        .expect("run warden")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Builds a small lineage with the library, signed by a key created with the CLI.
fn lineage_with_cli_keys(root: &Path) -> std::path::PathBuf {
    let key_path = root.join("keys/policy.key");
    let out = warden(&[
        "key",
        "new",
        "--role",
        "policy-authority",
        "--out",
        p(&key_path),
        "--name",
        "ops.policy",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let trust = root.join("trust.toml");
    let out = warden(&[
        "key",
        "trust",
        p(&trust),
        p(&root.join("keys/policy.key.pub")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let key = std::sync::Arc::new(warden_store::fs::load_signing_key(&key_path).unwrap());
    let dir = root.join("lineage");
    let lineage =
        warden_store::Lineage::create(&dir, warden_store::StoreOptions::new("test/cli")).unwrap();
    for i in 0..40 {
        lineage
            .append(
                warden_lineage::RecordDraft::new("policy.note", serde_json::json!({"i": i})),
                &key,
            )
            .unwrap();
    }
    lineage.close().unwrap();
    dir
}

#[test]
fn key_files_are_private_and_trust_is_by_role() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = lineage_with_cli_keys(tmp.path());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("keys/policy.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = warden(&[
        "key",
        "new",
        "--role",
        "policy-authority",
        "--out",
        p(&tmp.path().join("keys/policy.key")),
    ]);
    assert!(!out.status.success(), "overwriting a key must be refused");
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    let out = warden(&["lineage", "verify", p(&dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(
        line.starts_with("ok: 40 records, 1 checkpoints, root "),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1);

    // The same key trusted only for another role: every record is refused, naming key and role.
    let other = tmp.path().join("other-trust.toml");
    let out = warden(&[
        "key",
        "trust",
        p(&other),
        p(&tmp.path().join("keys/policy.key.pub")),
        "--role",
        "corpus-authority",
    ]);
    assert!(out.status.success());
    let out = warden(&["lineage", "verify", p(&dir), "--trust", p(&other)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("record 0 (policy.note)")
            && err.contains("not trusted for role policy-authority"),
        "{err}"
    );
}

#[test]
fn show_prove_and_export_agree_with_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = lineage_with_cli_keys(tmp.path());
    let out = warden(&["lineage", "show", p(&dir), "--json", "--range", "3..6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["seq"], 3);
    assert_eq!(lines[0]["payload"]["i"], 3);

    let out = warden(&["lineage", "prove", p(&dir), "--index", "17"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\"index\": 17") && text.contains("signed checkpoint for tree size 40"),
        "{text}"
    );

    let out = warden(&["lineage", "prove", p(&dir), "--consistency", "10"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let json_out = tmp.path().join("export.jsonl");
    let cbor_out = tmp.path().join("export.cbor");
    assert!(warden(&[
        "lineage",
        "export",
        p(&dir),
        "--format",
        "json",
        "--out",
        p(&json_out)
    ])
    .status
    .success());
    assert!(warden(&[
        "lineage",
        "export",
        p(&dir),
        "--format",
        "cbor",
        "--out",
        p(&cbor_out)
    ])
    .status
    .success());
    let from_json: Vec<_> = std::fs::read_to_string(&json_out)
        .unwrap()
        .lines()
        .map(|l| {
            warden_lineage::SignedRecord::from_json(&serde_json::from_str(l).unwrap()).unwrap()
        })
        .collect();
    let stored = warden_store::read_all(&dir).unwrap();
    assert_eq!(from_json, stored);
    let cbor: Vec<u8> = stored.iter().flat_map(|r| r.to_cbor()).collect();
    assert_eq!(std::fs::read(&cbor_out).unwrap(), cbor);
}

#[test]
fn bad_lineage_directories_give_one_line_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = lineage_with_cli_keys(tmp.path());
    let trust = tmp.path().join("trust.toml");

    let missing = tmp.path().join("missing");
    let out = warden(&["lineage", "verify", p(&missing), "--trust", p(&trust)]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        format!("error: {}: no such lineage directory", missing.display())
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = warden(&["lineage", "verify", p(&empty), "--trust", p(&trust)]);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("no segment files"));

    let segment = dir.join("seg-00000000000000000000.wlog");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let out = warden(&["lineage", "verify", p(&dir)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("record ") && err.contains("seg-00000000000000000000.wlog"),
        "{err}"
    );

    std::fs::write(&segment, b"\x00garbage, not a lineage at all").unwrap();
    let out = warden(&["lineage", "show", p(&dir)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong magic bytes"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
}
