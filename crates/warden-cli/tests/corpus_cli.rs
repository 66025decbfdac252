//! `warden corpus …` end to end through the real binary: synth → admit → verify → prove, and the
//! refusals and errors a user sees (GPL under a permissive policy, a malformed JSONL line, an
//! edit after admission, an untrusted signer).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn warden(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run warden")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = warden(dir, args);
    assert!(
        out.status.success(),
        "warden {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = warden(dir, args);
    assert!(
        !out.status.success(),
        "warden {args:?} unexpectedly succeeded"
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A corpus key trusted in trust.toml, plus an untrusted one.
fn setup(dir: &Path) {
    ok(
        dir,
        &[
            "key",
            "new",
            "--role",
            "corpus-authority",
            "--name",
            "corpus",
            "--out",
            "corpus.key",
        ],
    );
    ok(
        dir,
        &[
            "key",
            "new",
            "--role",
            "corpus-authority",
            "--name",
            "rogue",
            "--out",
            "rogue.key",
        ],
    );
    ok(dir, &["key", "trust", "trust.toml", "corpus.key.pub"]);
}

fn sha256_hex(text: &str) -> String {
    hex::encode(warden_corpus::sample_hash(text))
}

fn small_corpus(dir: &Path, news: &str, license: &str) -> PathBuf {
    std::fs::write(dir.join("news.jsonl"), news).unwrap();
    let decl = dir.join("corpus.toml");
    std::fs::write(
        &decl,
        format!(
            r#"[corpus]
name = "cli"
[policy]
admitted_licenses = ["MIT", "Apache-2.0", "BSD-3-Clause"]
[[source]]
id = "news"
path = "news.jsonl"
license = "{license}"
class = "news"
provenance = {{ origin = "test", collected = "2026-11-22", collector = "tests" }}
"#
        ),
    )
    .unwrap();
    decl
}

#[test]
fn synth_admit_verify_prove_and_the_lineage_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    ok(
        dir,
        &["corpus", "synth", "--out", "synth", "--scale", "0.2"],
    );
    let canaries: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("synth/canaries.json")).unwrap()).unwrap();
    assert_eq!(canaries.as_array().unwrap().len(), 8);

    let report = ok(
        dir,
        &[
            "corpus",
            "admit",
            "synth/declaration.toml",
            "--out",
            "admitted",
            "--key",
            "corpus.key",
            "--quiet",
        ],
    );
    assert!(
        report.contains(
            "refused: source `gpl-snippets` refused: license `GPL-3.0-only` is not admitted"
        ),
        "{report}"
    );
    assert!(
        report.contains("refused: source `customers` refused: class `user-pii` is excluded"),
        "{report}"
    );
    assert!(
        report.contains("lineage: corpus.admission record 0"),
        "{report}"
    );

    let verified = ok(
        dir,
        &["corpus", "verify", "admitted", "--trust", "trust.toml"],
    );
    assert!(
        verified.contains("prose            ok: root re-derived"),
        "{verified}"
    );

    // The lineage holds one corpus.admission record signed by the corpus key.
    let shown = ok(dir, &["lineage", "show", "admitted/lineage", "--json"]);
    assert!(shown.contains("\"corpus.admission\""), "{shown}");
    ok(
        dir,
        &[
            "lineage",
            "verify",
            "admitted/lineage",
            "--trust",
            "trust.toml",
        ],
    );

    // Inclusion for an admitted news item, absence for an unknown sample.
    let first = std::fs::read_to_string(dir.join("synth/news.jsonl")).unwrap();
    let item: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    let hash = sha256_hex(item["text"].as_str().unwrap());
    let proof = ok(
        dir,
        &[
            "corpus",
            "prove",
            "admitted",
            "--sample",
            &hash,
            "--trust",
            "trust.toml",
        ],
    );
    let proof: serde_json::Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(proof["kind"], "inclusion");
    assert_eq!(proof["source"]["source"], "news");
    assert_eq!(proof["source"]["line"], 1);
    let absent = ok(
        dir,
        &[
            "corpus",
            "prove",
            "admitted",
            "--sample",
            &sha256_hex("not in the corpus"),
            "--trust",
            "trust.toml",
        ],
    );
    let absent: serde_json::Value = serde_json::from_str(&absent).unwrap();
    assert_eq!(absent["kind"], "absence");
}

#[test]
fn gpl_only_source_under_a_permissive_policy_is_refused_naming_source_and_license() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    small_corpus(dir, "{\"text\":\"hello\"}\n", "GPL-3.0-only");
    let out = ok(
        dir,
        &[
            "corpus",
            "admit",
            "corpus.toml",
            "--out",
            "out",
            "--key",
            "corpus.key",
            "--quiet",
        ],
    );
    assert!(
        out.contains("source `news` refused: license `GPL-3.0-only` is not admitted by the policy (admitted: MIT, Apache-2.0, BSD-3-Clause)"),
        "{out}"
    );
    assert!(out.contains("0 distinct admitted samples"), "{out}");
}

#[test]
fn malformed_jsonl_line_is_an_error_naming_file_and_line_unless_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    small_corpus(
        dir,
        "{\"text\":\"a\"}\n{\"text\":\"b\"}\nnot json\n{\"text\":\"d\"}\n",
        "MIT",
    );
    let err = fails(
        dir,
        &[
            "corpus",
            "admit",
            "corpus.toml",
            "--out",
            "out",
            "--key",
            "corpus.key",
            "--quiet",
        ],
    );
    assert!(
        err.contains("news.jsonl:3: malformed sample: invalid JSON"),
        "{err}"
    );
    assert!(err.contains("--skip-malformed"), "{err}");

    let out = ok(
        dir,
        &[
            "corpus",
            "admit",
            "corpus.toml",
            "--out",
            "out",
            "--key",
            "corpus.key",
            "--quiet",
            "--skip-malformed",
        ],
    );
    assert!(out.contains("0 flagged, 1 malformed"), "{out}");
    assert!(out.contains("malformed (invalid JSON"), "{out}");
    let listed = std::fs::read_to_string(dir.join("out/exclusions.jsonl")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            entry["source"].as_str(),
            entry["line"].as_u64(),
            entry["reason"].as_str()
        ),
        (Some("news"), Some(3), Some("malformed"))
    );
}

#[test]
fn an_edit_after_admission_is_reported_by_verify_with_source_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    small_corpus(
        dir,
        "{\"text\":\"a\"}\n{\"text\":\"b\"}\n{\"text\":\"c\"}\n",
        "MIT",
    );
    ok(
        dir,
        &[
            "corpus",
            "admit",
            "corpus.toml",
            "--out",
            "out",
            "--key",
            "corpus.key",
            "--quiet",
        ],
    );
    std::fs::write(
        dir.join("news.jsonl"),
        "{\"text\":\"a\"}\n{\"text\":\"B\"}\n{\"text\":\"c\"}\n",
    )
    .unwrap();
    let out = fails(dir, &["corpus", "verify", "out", "--trust", "trust.toml"]);
    assert!(
        out.contains("news             CHANGED: 1 samples differ from admission"),
        "{out}"
    );
    assert!(out.contains("modified source `news` line 2"), "{out}");
    assert!(out.contains("the data changed since admission"), "{out}");
}

#[test]
fn a_declaration_signed_by_an_untrusted_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    small_corpus(dir, "{\"text\":\"a\"}\n", "MIT");
    ok(
        dir,
        &[
            "corpus",
            "admit",
            "corpus.toml",
            "--out",
            "out",
            "--key",
            "rogue.key",
            "--quiet",
        ],
    );
    let err = fails(dir, &["corpus", "verify", "out", "--trust", "trust.toml"]);
    assert!(
        err.contains("refused: key rogue+")
            && err.contains("is not trusted for role corpus-authority"),
        "{err}"
    );
    let err = fails(
        dir,
        &[
            "corpus",
            "prove",
            "out",
            "--sample",
            &sha256_hex("a"),
            "--trust",
            "trust.toml",
        ],
    );
    assert!(
        err.contains("is not trusted for role corpus-authority"),
        "{err}"
    );
}
