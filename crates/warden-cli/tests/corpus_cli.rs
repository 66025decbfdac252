//! `warden corpus …` end to end through the real binary: synth → admit → verify → prove, and the
//! refusals and errors a user sees (GPL under a permissive policy, a malformed JSONL line, an
//! edit after admission, an untrusted signer, a relabelled key, re-admission over an existing
//! admission, a moved corpus), crash recovery of `admit`, and `bench corpus` on a fresh clone.

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
    assert!(
        !dir.join("out").exists(),
        "a failed admission leaves no partial out/"
    );

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
    let rogue_admit = [
        "corpus",
        "admit",
        "corpus.toml",
        "--out",
        "out",
        "--key",
        "rogue.key",
        "--quiet",
    ];
    // `admit` itself refuses a key the trust file does not trust, writing nothing ...
    let err = fails(dir, &rogue_admit);
    assert!(
        err.contains("refusing to sign with key rogue+")
            && err.contains("is not trusted for role corpus-authority"),
        "{err}"
    );
    assert!(!dir.join("out").exists());
    // ... so the rogue signs with its own trust file, and verify under ours refuses it.
    ok(dir, &["key", "trust", "rogue-trust.toml", "rogue.key.pub"]);
    let mut with_rogue_trust = rogue_admit.to_vec();
    with_rogue_trust.extend(["--trust", "rogue-trust.toml"]);
    ok(dir, &with_rogue_trust);
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

fn n_admission_records(dir: &Path, lineage: &str) -> usize {
    let shown = ok(dir, &["lineage", "show", lineage, "--json"]);
    shown.matches("\"corpus.admission\"").count()
}

#[test]
fn a_training_key_relabelled_as_corpus_authority_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    ok(
        dir,
        &[
            "key",
            "new",
            "--role",
            "training-authority",
            "--name",
            "trainer",
            "--out",
            "trainer.key",
        ],
    );
    ok(dir, &["key", "trust", "trust.toml", "trainer.key.pub"]);
    let text = std::fs::read_to_string(dir.join("trainer.key")).unwrap();
    std::fs::write(
        dir.join("trainer.key"),
        text.replace("training-authority", "corpus-authority"),
    )
    .unwrap();
    small_corpus(dir, "{\"text\":\"a\"}\n", "MIT");
    let err = fails(
        dir,
        &[
            "corpus",
            "admit",
            "corpus.toml",
            "--out",
            "out",
            "--key",
            "trainer.key",
            "--quiet",
        ],
    );
    assert!(
        err.contains("refusing to sign with key trainer+")
            && err.contains("is not trusted for role corpus-authority"),
        "{err}"
    );
    assert!(!dir.join("out").exists(), "nothing written");
    // Without a trust file there is nothing to check the key against: refused too.
    std::fs::remove_file(dir.join("trust.toml")).unwrap();
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
    assert!(err.contains("no trust file: pass --trust FILE"), "{err}");
    assert!(!dir.join("out").exists(), "nothing written");
}

#[test]
fn readmission_is_idempotent_and_a_changed_corpus_is_refused_naming_both_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    small_corpus(dir, "{\"text\":\"a\"}\n{\"text\":\"b\"}\n", "MIT");
    let admit_args = [
        "corpus",
        "admit",
        "corpus.toml",
        "--out",
        "out",
        "--key",
        "corpus.key",
        "--quiet",
    ];
    let first = ok(dir, &admit_args);
    let digest = first
        .lines()
        .find_map(|l| l.trim().strip_prefix("declaration sha256 "))
        .unwrap()
        .to_string();
    let again = ok(dir, &admit_args);
    assert!(
        again.contains(&format!(
            "already admitted: out holds this admission (declaration sha256 {digest})"
        )),
        "{again}"
    );
    assert!(
        again.contains(
            "lineage: corpus.admission record 0 in out/lineage already records this admission"
        ),
        "{again}"
    );
    assert_eq!(n_admission_records(dir, "out/lineage"), 1);

    std::fs::write(
        dir.join("news.jsonl"),
        "{\"text\":\"a\"}\n{\"text\":\"B\"}\n",
    )
    .unwrap();
    let err = fails(dir, &admit_args);
    assert!(
        err.contains(&format!(
            "out already holds a different admission (declaration sha256 {digest})"
        )) && err.contains("this admission's declaration sha256 is "),
        "{err}"
    );
    assert_eq!(n_admission_records(dir, "out/lineage"), 1);
    // The first admission is untouched: still signed, still the same digest (its data changed).
    let verified = fails(dir, &["corpus", "verify", "out", "--trust", "trust.toml"]);
    assert!(
        verified.contains(&format!("declaration sha256 {digest}")),
        "{verified}"
    );
}

#[test]
fn a_rerun_appends_the_lineage_record_a_crashed_admission_never_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    small_corpus(dir, "{\"text\":\"a\"}\n", "MIT");
    // The state a crash between the rename and the lineage append leaves: the admission is
    // complete in `out`, and the lineage the user meant (`lineage`) has no record of it.
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
            "--lineage",
            "elsewhere",
        ],
    );
    let args = [
        "corpus",
        "admit",
        "corpus.toml",
        "--out",
        "out",
        "--key",
        "corpus.key",
        "--quiet",
        "--lineage",
        "lineage",
    ];
    let rerun = ok(dir, &args);
    assert!(rerun.contains("already admitted"), "{rerun}");
    assert!(
        rerun.contains("lineage: corpus.admission record 0 in lineage\n"),
        "{rerun}"
    );
    let third = ok(dir, &args);
    assert!(third.contains("already records this admission"), "{third}");
    assert_eq!(n_admission_records(dir, "lineage"), 1);
    ok(
        dir,
        &["lineage", "verify", "lineage", "--trust", "trust.toml"],
    );
}

#[test]
fn admit_killed_at_any_point_leaves_no_partial_out_and_a_rerun_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    ok(
        dir,
        &["corpus", "synth", "--out", "synth", "--scale", "0.5"],
    );
    let args = [
        "corpus",
        "admit",
        "synth/declaration.toml",
        "--out",
        "out",
        "--key",
        "corpus.key",
        "--quiet",
    ];
    for delay_ms in [0u64, 40, 120, 300] {
        if dir.join("out").exists() {
            std::fs::remove_dir_all(dir.join("out")).unwrap();
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .current_dir(dir)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whenever the kill landed: OUT is absent or a complete admission.
        if dir.join("out").exists() {
            ok(dir, &["corpus", "verify", "out", "--trust", "trust.toml"]);
        }
        ok(dir, &args);
        ok(dir, &["corpus", "verify", "out", "--trust", "trust.toml"]);
        assert_eq!(
            n_admission_records(dir, "out/lineage"),
            1,
            "after a kill at {delay_ms} ms"
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_corpus_moved_with_its_admission_verifies_and_missing_data_fails_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    ok(
        &project,
        &["corpus", "synth", "--out", "synth", "--scale", "0.1"],
    );
    ok(
        dir,
        &[
            "corpus",
            "admit",
            "project/synth/declaration.toml",
            "--out",
            "project/admitted",
            "--key",
            "corpus.key",
            "--trust",
            "trust.toml",
            "--quiet",
        ],
    );
    std::fs::rename(&project, dir.join("moved")).unwrap();
    let verified = ok(
        dir,
        &[
            "corpus",
            "verify",
            "moved/admitted",
            "--trust",
            "trust.toml",
        ],
    );
    assert!(
        verified.contains("prose            ok: root re-derived"),
        "{verified}"
    );
    assert!(!verified.contains("not present"), "{verified}");

    // The data gone: verify must not pass silently.
    std::fs::remove_dir_all(dir.join("moved/synth")).unwrap();
    let err = fails(
        dir,
        &[
            "corpus",
            "verify",
            "moved/admitted",
            "--trust",
            "trust.toml",
        ],
    );
    assert!(
        err.contains("is not present, so it was not verified")
            && err.contains("--allow-missing-data"),
        "{err}"
    );
    let out = warden(
        dir,
        &[
            "corpus",
            "verify",
            "moved/admitted",
            "--trust",
            "trust.toml",
            "--allow-missing-data",
        ],
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("was NOT verified"), "{stderr}");
}

#[test]
fn bench_corpus_runs_on_a_fresh_clone_with_the_synthetic_corpus_and_takes_an_input_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("speeches.txt"),
        "First Citizen:\nSpeak.\n\nAll:\nSpeak, speak.\n",
    )
    .unwrap();
    let out = ok(
        dir,
        &[
            "bench",
            "corpus",
            "--small-mb",
            "1",
            "--size-mb",
            "2",
            "--input",
            "speeches.txt",
            "--dir",
            ".",
        ],
    );
    assert!(out.contains("speeches.txt (blank-line documents)"), "{out}");
    assert!(out.contains("synthetic 1 MB, 1 worker thread"), "{out}");
    assert!(out.contains("synthetic 2 MB"), "{out}");
    let err = fails(
        dir,
        &[
            "bench",
            "corpus",
            "--input",
            "no-such-file.txt",
            "--dir",
            ".",
        ],
    );
    assert!(err.contains("--input no-such-file.txt"), "{err}");
}
