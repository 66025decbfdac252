//! `warden lineage verify` against an attacker with write access to the files and no key:
//! a forged unsealed tail, `--allow-unsealed`, pinned checkpoints (`lineage checkpoint`,
//! `verify --checkpoint`), `--expect-size` wording, and `key show --verifier`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use serde_json::json;
use warden_keys::SigningKey;
use warden_lineage::{encode_entry, Record, RecordDraft, SignedRecord};
use warden_store::frame::{self, SEGMENT_MAGIC};
use warden_store::{Cadence, Lineage, StoreOptions};

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

const ORIGIN: &str = "warden.test/verify-cli";

/// A corpus key made and trusted with the CLI (trust.toml beside the lineage).
fn corpus_key(root: &Path) -> Arc<SigningKey> {
    let key_path = root.join("keys/corpus.key");
    let out = warden(&[
        "key",
        "new",
        "--role",
        "corpus-authority",
        "--out",
        p(&key_path),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = warden(&["key", "trust", p(&root.join("trust.toml")), p(&key_path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    Arc::new(warden_store::fs::load_signing_key(&key_path).unwrap())
}

/// Appends `n` corpus records and closes, which seals them under one checkpoint.
fn append(dir: &Path, key: &Arc<SigningKey>, n: u64) {
    let options = StoreOptions::new(ORIGIN).with_cadence(Cadence::Window {
        records: 1024,
        millis: 3_600_000,
    });
    let lineage = Lineage::open_or_create(dir, options).unwrap();
    let start = lineage.len();
    for i in start..start + n {
        lineage
            .append(
                RecordDraft::new("corpus.admission", json!({"corpus": "real", "i": i})),
                key,
            )
            .unwrap();
    }
    lineage.close().unwrap();
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

/// Rewrites records from `from` on as keyless forgeries claiming `key`, chained correctly,
/// framed exactly as the store frames them.
fn forge_from(dir: &Path, key: &SigningKey, from: usize, total: usize) {
    let mut all = entries(dir);
    all.truncate(from);
    let mut prev = all
        .last()
        .map_or([0; 32], |e| SignedRecord::from_cbor(e).unwrap().leaf_hash());
    for seq in from..total {
        let body = Record {
            seq: seq as u64,
            kind: "corpus.admission".into(),
            time_ms: 1_700_000_000_000,
            role: key.role(),
            signer: key.key_ref(),
            policy_version: None,
            prev,
            payload: json!({"corpus": "forged"}),
        }
        .encode_body()
        .unwrap();
        prev = warden_merkle::leaf_hash(&body);
        let mut entry = Vec::new();
        encode_entry(&mut entry, &body, None);
        all.push(entry);
    }
    let mut out = frame::encode_header(SEGMENT_MAGIC, ORIGIN);
    for e in &all {
        frame::encode_frame(&mut out, e);
    }
    std::fs::write(segment(dir), out).unwrap();
}

/// Regression (issue 8 §1.1): a keyless `corpus.admission` appended after the last checkpoint
/// made `lineage verify` exit 0, also with `--expect-size`.
#[test]
fn a_keyless_forged_tail_fails_verify_unless_allowed_and_then_is_called_unauthenticated() {
    let tmp = tempfile::tempdir().unwrap();
    let key = corpus_key(tmp.path());
    let dir = tmp.path().join("lineage");
    append(&dir, &key, 40);
    forge_from(&dir, &key, 40, 42);

    for extra in [&[][..], &["--expect-size", "42"][..]] {
        let mut args = vec!["lineage", "verify", p(&dir)];
        args.extend_from_slice(extra);
        let out = warden(&args);
        assert!(
            !out.status.success(),
            "forged tail verified: {}",
            stdout(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains("record 40 (corpus.admission): unauthenticated: it carries no signature and no checkpoint seals it (2 such records")
                && err.contains("--allow-unsealed"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    let out = warden(&["lineage", "verify", p(&dir), "--allow-unsealed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("ok: 42 records, 1 checkpoints, root "),
        "{text}"
    );
    assert!(
        text.contains("warning: records 40 to 41 are UNAUTHENTICATED"),
        "{text}"
    );
}

/// Regression (issue 8 §1.1): cutting checkpoints.wlog back and rewriting every later record
/// verified. Now it fails by default, and a pinned checkpoint catches it even when allowed.
#[test]
fn pinned_checkpoints_catch_rollbacks_of_the_log_and_of_the_checkpoint_file() {
    let tmp = tempfile::tempdir().unwrap();
    let key = corpus_key(tmp.path());
    let dir = tmp.path().join("lineage");
    append(&dir, &key, 40);
    let saved_segment = std::fs::read(segment(&dir)).unwrap();
    let saved_checkpoints = std::fs::read(dir.join("checkpoints.wlog")).unwrap();
    let early_pin = tmp.path().join("pin-40.note");
    let out = warden(&["lineage", "checkpoint", p(&dir), "--out", p(&early_pin)]);
    assert!(out.status.success(), "{}", stderr(&out));
    append(&dir, &key, 20);
    let segment_at_60 = std::fs::read(segment(&dir)).unwrap();
    let pin = tmp.path().join("pin-60.note");
    let out = warden(&["lineage", "checkpoint", p(&dir), "--out", p(&pin)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("size 60"), "{}", stderr(&out));
    // The note on stdout is the same signed note, in C2SP form.
    let out = warden(&["lineage", "checkpoint", p(&dir)]);
    assert_eq!(stdout(&out), std::fs::read_to_string(&pin).unwrap());
    assert!(stdout(&out).starts_with(&format!("{ORIGIN}\n60\n")));

    // The grown log extends the checkpoint pinned at 40.
    let out = warden(&["lineage", "verify", p(&dir), "--checkpoint", p(&early_pin)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("pinned checkpoint (size 40, root ")
            && stdout(&out).contains("checkpoint size 60 extends it"),
        "{}",
        stdout(&out)
    );

    // Both files rolled back to size 40: a valid log on its own, refused against the pin.
    std::fs::write(segment(&dir), &saved_segment).unwrap();
    std::fs::write(dir.join("checkpoints.wlog"), &saved_checkpoints).unwrap();
    let out = warden(&["lineage", "verify", p(&dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = warden(&["lineage", "verify", p(&dir), "--checkpoint", p(&pin)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("pinned checkpoint (size 60, root ")
            && err.contains("the log holds only 40 records: it was rolled back"),
        "{err}"
    );

    // Records back to 60, checkpoints.wlog still rolled back to 40.
    std::fs::write(segment(&dir), &segment_at_60).unwrap();
    let out = warden(&["lineage", "verify", p(&dir)]);
    assert!(!out.status.success(), "an unsealed tail must fail");
    assert!(stderr(&out).contains("record 40 (corpus.admission): unauthenticated"));
    let out = warden(&[
        "lineage",
        "verify",
        p(&dir),
        "--allow-unsealed",
        "--checkpoint",
        p(&pin),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("the log's latest checkpoint covers only 40 records: the log's checkpoints were rolled back"),
        "{err}"
    );

    // The records after the cut rewritten by a keyless attacker: refused by default, and
    // against the pin even with --allow-unsealed.
    forge_from(&dir, &key, 40, 60);
    let out = warden(&["lineage", "verify", p(&dir), "--expect-size", "60"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("record 40 (corpus.admission): unauthenticated"));
    let out = warden(&[
        "lineage",
        "verify",
        p(&dir),
        "--allow-unsealed",
        "--checkpoint",
        p(&pin),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("pinned checkpoint (size 60")
            && err.contains("records up to it were rewritten"),
        "{err}"
    );
}

/// Regression (issue 8 §6): `--expect-size 300` on a 371-record log said "records removed".
#[test]
fn expect_size_says_more_or_fewer_records_than_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let key = corpus_key(tmp.path());
    let dir = tmp.path().join("lineage");
    append(&dir, &key, 37);
    let out = warden(&["lineage", "verify", p(&dir), "--expect-size", "30"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the log holds 37 records but 30 were expected (7 more records than expected: records were appended after that size)"),
        "{}",
        stderr(&out)
    );
    let out = warden(&["lineage", "verify", p(&dir), "--expect-size", "38"]);
    assert!(
        stderr(&out).contains("(1 record fewer than expected: records were removed at the end)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn key_show_verifier_prints_the_bare_signed_note_verifier_key() {
    let tmp = tempfile::tempdir().unwrap();
    let key = corpus_key(tmp.path());
    let private = tmp.path().join("keys/corpus.key");
    let public = tmp.path().join("keys/corpus.key.pub");
    let from_pub = warden(&["key", "show", "--verifier", p(&public)]);
    let from_private = warden(&["key", "show", "--verifier", p(&private)]);
    assert!(from_pub.status.success(), "{}", stderr(&from_pub));
    assert_eq!(stdout(&from_pub), stdout(&from_private));
    let text = stdout(&from_pub);
    assert_eq!(text.lines().count(), 1, "{text}");
    let line = text.trim_end();
    assert_eq!(line, key.public().verifier_string());
    // `name+hash+base64(0x01 ‖ key)`: parses back (hash checked) to the same key.
    let parsed = warden_keys::PublicKey::parse_verifier(line).unwrap();
    assert_eq!(&parsed, key.public());
    assert!(
        line.starts_with(&format!("corpus-authority+{}+", key.id())),
        "{line}"
    );
    assert!(!line.contains("PRIVATE"), "{line}");
}
