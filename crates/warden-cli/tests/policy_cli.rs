//! `warden policy …` end to end: the real binary on real files and a real lineage.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn warden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .output()
        .expect("run warden")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(args: &[&str]) -> String {
    let out = warden(args);
    assert!(
        out.status.success(),
        "warden {args:?} failed:\n{}",
        text(&out)
    );
    text(&out)
}

fn fails(args: &[&str]) -> String {
    let out = warden(args);
    assert!(
        !out.status.success(),
        "warden {args:?} should fail:\n{}",
        text(&out)
    );
    text(&out)
}

const HEAD: &str = r#"[bundle]
name = "assistant"
VERSION_LINE

[vocabulary]
"caller.tier"    = { enum = ["anonymous", "free", "verified"], context = true }
"request.domain" = { enum = ["general", "medical"], context = true }
"output.tokens"  = { int = [0, 8192] }
"output.classes" = { set = ["pii", "violence"] }

[[predicate]]
id = "structural.max-length"
category = "structural"
require = "output.tokens <= 1024"

[[predicate]]
id = "safety.no-pii"
category = "safety"
require = "not (output.classes contains 'pii')"

[[predicate]]
id = "domain.medical-needs-verified"
category = "domain"
weight = "advisory"
when = "request.domain == 'medical'"
require = "caller.tier == 'verified' or output.tokens <= 64"
"#;

fn write_bundle(dir: &Path, file: &str, version: &str, extra: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, HEAD.replace("VERSION_LINE", version) + extra).unwrap();
    path
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    key: String,
    trust: String,
    lineage: String,
    out: String,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let key = dir.join("policy.key");
    let trust = dir.join("trust.toml");
    ok(&[
        "key",
        "new",
        "--role",
        "policy-authority",
        "--out",
        key.to_str().unwrap(),
    ]);
    ok(&[
        "key",
        "trust",
        trust.to_str().unwrap(),
        key.to_str().unwrap(),
    ]);
    Setup {
        key: key.display().to_string(),
        trust: trust.display().to_string(),
        lineage: dir.join("lineage").display().to_string(),
        out: dir.join("admitted").display().to_string(),
        dir,
        _tmp: tmp,
    }
}

impl Setup {
    fn admit(&self, bundle: &Path, extra: &[&str]) -> Output {
        self.admit_with(bundle, true, extra)
    }

    fn admit_with(&self, bundle: &Path, lineage: bool, extra: &[&str]) -> Output {
        let mut args = vec![
            "policy",
            "admit",
            bundle.to_str().unwrap(),
            "--key",
            &self.key,
            "--out",
            &self.out,
            "--trust",
            &self.trust,
        ];
        if lineage {
            args.extend_from_slice(&["--lineage", &self.lineage]);
        }
        args.extend_from_slice(extra);
        warden(&args)
    }

    fn file(&self, name: &str) -> PathBuf {
        Path::new(&self.out).join(name)
    }

    fn eval(&self, sets: &[&str]) -> String {
        let mut args = vec!["policy", "eval", &self.out, "--trust", &self.trust];
        for set in sets {
            args.push("--set");
            args.push(set);
        }
        ok(&args).trim().to_string()
    }
}

#[test]
fn check_names_the_minimal_core_of_a_contradiction() {
    let s = setup();
    let bundle = write_bundle(
        &s.dir,
        "bad.toml",
        "version = 1",
        "\n[[predicate]]\nid = \"task.long\"\ncategory = \"task\"\nrequire = \"output.tokens >= 2000\"\n",
    );
    let out = fails(&["policy", "check", bundle.to_str().unwrap()]);
    assert!(out.contains("rejected by the consistency check"), "{out}");
    assert!(
        out.contains("minimal core: structural.max-length, task.long"),
        "{out}"
    );
    let good = write_bundle(&s.dir, "good.toml", "version = 1", "");
    let out = ok(&["policy", "check", good.to_str().unwrap()]);
    assert!(out.contains("passes all checks (3 predicates"), "{out}");
}

#[test]
fn parse_errors_name_file_line_column_and_predicate() {
    let s = setup();
    let bundle = write_bundle(
        &s.dir,
        "typo.toml",
        "version = 1",
        "\n[[predicate]]\nid = \"task.typo\"\ncategory = \"task\"\nrequire = \"output.tokens <= 'many'\"\n",
    );
    let out = fails(&["policy", "check", bundle.to_str().unwrap()]);
    assert!(
        out.contains(&format!(
            "{}:31:29: predicate `task.typo`: in `require`: expected an integer, found a quoted value",
            bundle.display()
        )),
        "{out}"
    );
}

#[test]
fn admit_sign_evaluate_and_version_monotonically() {
    let s = setup();
    let v1 = write_bundle(&s.dir, "v1.toml", "version = 1", "");
    let out = s.admit(&v1, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("admitted assistant@v1+"),
        "{}",
        text(&out)
    );
    assert!(Path::new(&s.out).join("bundle.admitted.json").exists());
    assert!(Path::new(&s.out).join("history/v1.admitted.json").exists());

    let base = [
        "caller.tier=free",
        "request.domain=general",
        "output.classes=",
    ];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    assert_eq!(s.eval(&with(&["output.tokens=100"])), "admit");
    assert_eq!(
        s.eval(&with(&["output.tokens=2000"])),
        "reject: structural.max-length"
    );
    let medical = [
        "caller.tier=free",
        "request.domain=medical",
        "output.classes=pii",
        "output.tokens=100",
    ];
    assert_eq!(s.eval(&medical), "reject: safety.no-pii");
    let medical = [
        "caller.tier=free",
        "request.domain=medical",
        "output.classes=",
        "output.tokens=100",
    ];
    assert_eq!(s.eval(&medical), "decompose: domain.medical-needs-verified");

    let show = ok(&["policy", "show", &s.out, "--trust", &s.trust]);
    assert!(show.contains("bundle:      assistant version 1"), "{show}");
    assert!(show.contains("no-stranded-context"), "{show}");

    // The same version again, a successor that forgets `succeeds`, a fork: all refused.
    let out = text(&s.admit(&v1, &[]));
    assert!(
        out.contains("version 1 is not above the admitted version 1"),
        "{out}"
    );
    let v2_bare = write_bundle(&s.dir, "v2bare.toml", "version = 2", "");
    let out = text(&s.admit(&v2_bare, &[]));
    assert!(
        out.contains("the successor must say `succeeds = 1`"),
        "{out}"
    );
    let v2 = write_bundle(&s.dir, "v2.toml", "version = 2\nsucceeds = 1", "");
    assert!(s.admit(&v2, &[]).status.success());
    let fork = write_bundle(&s.dir, "fork.toml", "version = 3\nsucceeds = 1", "");
    let out = text(&s.admit(&fork, &[]));
    assert!(out.contains("it succeeds version 1, but the admitted head is version 2: that would fork the history"), "{out}");

    // The lineage verifies and holds the two admissions (refusals before the gate are not recorded).
    let verify = ok(&["lineage", "verify", &s.lineage, "--trust", &s.trust]);
    assert!(verify.starts_with("ok: 2 records"), "{verify}");
}

#[test]
fn a_rejected_bundle_is_recorded_and_needs_an_acknowledgement_to_return() {
    let s = setup();
    let bad = write_bundle(
        &s.dir,
        "stranded.toml",
        "version = 1",
        "\n[[predicate]]\nid = \"domain.general-is-long\"\ncategory = \"domain\"\nwhen = \"request.domain == 'general'\"\nrequire = \"output.tokens >= 100\"\n\n[[predicate]]\nid = \"task.anonymous-short\"\ncategory = \"task\"\nwhen = \"caller.tier == 'anonymous'\"\nrequire = \"output.tokens <= 50\"\n",
    );
    let out = s.admit(&bad, &[]);
    assert!(!out.status.success());
    let out = text(&out);
    assert!(
        out.contains("rejected by the no-stranded-context check"),
        "{out}"
    );
    assert!(
        out.contains("minimal core: domain.general-is-long, task.anonymous-short"),
        "{out}"
    );
    assert!(
        out.contains("counterexample context: caller.tier = anonymous, request.domain = general"),
        "{out}"
    );
    assert!(
        out.contains("recorded as lineage record 0 (policy.rejection)"),
        "{out}"
    );
    assert!(!Path::new(&s.out).join("bundle.admitted.json").exists());

    let out = text(&s.admit(&bad, &[]));
    assert!(out.contains("was rejected at lineage record 0"), "{out}");
    assert!(!out.contains("recorded as lineage record 1"), "{out}");

    let out = text(&s.admit(
        &bad,
        &["--acknowledge", "checked the anonymous token budget"],
    ));
    assert!(
        out.contains("recorded as lineage record 1 (policy.rejection)"),
        "{out}"
    );
}

#[test]
fn tampered_or_untrusted_bundles_are_refused() {
    let s = setup();
    let v1 = write_bundle(&s.dir, "v1.toml", "version = 1", "");
    assert!(s.admit(&v1, &[]).status.success());
    let head = Path::new(&s.out).join("bundle.admitted.json");

    // A trust file that does not trust this key as policy authority.
    let other_key = s.dir.join("other.key");
    let other_trust = s.dir.join("other-trust.toml");
    ok(&[
        "key",
        "new",
        "--role",
        "policy-authority",
        "--out",
        other_key.to_str().unwrap(),
    ]);
    ok(&[
        "key",
        "trust",
        other_trust.to_str().unwrap(),
        other_key.to_str().unwrap(),
    ]);
    let out = fails(&[
        "policy",
        "eval",
        &s.out,
        "--trust",
        other_trust.to_str().unwrap(),
        "--set",
        "x=1",
    ]);
    assert!(
        out.contains("is not trusted for role policy-authority"),
        "{out}"
    );
    // Succeeding a head signed by a key this trust file does not accept is refused too.
    let v2 = write_bundle(&s.dir, "v2.toml", "version = 2\nsucceeds = 1", "");
    let out = text(&warden(&[
        "policy",
        "admit",
        v2.to_str().unwrap(),
        "--key",
        other_key.to_str().unwrap(),
        "--out",
        &s.out,
        "--trust",
        other_trust.to_str().unwrap(),
    ]));
    assert!(
        out.contains("head.json: signature check failed")
            && out.contains("is not trusted for role policy-authority"),
        "{out}"
    );

    // One changed character of the signed payload.
    let original = std::fs::read_to_string(&head).unwrap();
    let at = original.find("\"payload\": \"").unwrap() + 40;
    let mut tampered = original.clone();
    let flipped = if &original[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(at..at + 1, flipped);
    std::fs::write(&head, tampered).unwrap();
    let out = fails(&[
        "policy", "eval", &s.out, "--trust", &s.trust, "--set", "x=1",
    ]);
    assert!(
        out.contains("signature check failed") || out.contains("does not decode"),
        "{out}"
    );
}

#[test]
fn an_undecided_bundle_is_rejected_and_recorded_with_its_bound() {
    let s = setup();
    let bundle = write_bundle(
        &s.dir,
        "hard.toml",
        "version = 1",
        "\n[[predicate]]\nid = \"task.band\"\ncategory = \"task\"\nrequire = \"3 * output.tokens >= 100 and 3 * output.tokens <= 102\"\n",
    );
    let out = s.admit(&bundle, &["--max-conflicts", "0"]);
    assert!(!out.status.success());
    let out = text(&out);
    assert!(
        out.contains("undecided within the bound (0 conflicts, 4096 refinement rounds)"),
        "{out}"
    );
    assert!(
        out.contains("recorded as lineage record 0 (policy.rejection)"),
        "{out}"
    );
    assert!(!Path::new(&s.out).join("bundle.admitted.json").exists());
    // With the default bound the same bundle is decided and admitted (after acknowledging).
    let out = s.admit(&bundle, &["--acknowledge", "raised the bound"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn without_a_lineage_the_output_directory_remembers_rejections() {
    let s = setup();
    let bad = write_bundle(
        &s.dir,
        "bad.toml",
        "version = 1",
        "\n[[predicate]]\nid = \"task.long\"\ncategory = \"task\"\nrequire = \"output.tokens >= 2000\"\n",
    );
    let admit = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "admit",
            bad.to_str().unwrap(),
            "--key",
            &s.key,
            "--out",
            &s.out,
            "--trust",
            &s.trust,
        ];
        args.extend_from_slice(extra);
        text(&warden(&args))
    };
    let out = admit(&[]);
    assert!(
        out.contains("minimal core: structural.max-length, task.long"),
        "{out}"
    );
    let out = admit(&[]);
    assert!(
        out.contains("this exact bundle was rejected before"),
        "{out}"
    );
    assert!(
        !out.contains("minimal core"),
        "the gate must not run again: {out}"
    );
    let out = admit(&["--acknowledge", "kept both on purpose"]);
    assert!(
        out.contains("minimal core: structural.max-length, task.long"),
        "{out}"
    );
}

/// Regression (issue 8 §1.2): copying `history/v1.admitted.json` over `bundle.admitted.json` made
/// `policy eval` silently use version 1, and a different version 2 admitted without a lineage
/// then overwrote `history/v2.admitted.json`.
#[test]
fn a_rolled_back_head_is_refused_and_history_is_never_overwritten() {
    let s = setup();
    let v1 = write_bundle(&s.dir, "v1.toml", "version = 1", "");
    assert!(s.admit_with(&v1, false, &[]).status.success());
    let v1_head = std::fs::read(s.file("head.json")).unwrap();
    let v2 = write_bundle(&s.dir, "v2.toml", "version = 2\nsucceeds = 1", "");
    assert!(s.admit_with(&v2, false, &[]).status.success());
    let v2_history = std::fs::read(s.file("history/v2.admitted.json")).unwrap();
    let eval = |extra: &[&str]| {
        let mut args = vec!["policy", "eval", &s.out, "--trust", &s.trust];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "--set",
            "caller.tier=free",
            "--set",
            "request.domain=general",
        ]);
        args.extend_from_slice(&["--set", "output.classes=", "--set", "output.tokens=100"]);
        warden(&args)
    };
    assert!(eval(&[]).status.success());

    std::fs::copy(
        s.file("history/v1.admitted.json"),
        s.file("bundle.admitted.json"),
    )
    .unwrap();
    let out = text(&eval(&[]));
    assert!(
        out.contains("bundle `assistant` version 1 is not the highest admitted version: version 2 is admitted (head.json); refusing version 1"),
        "{out}"
    );
    // The older signed head record replayed as well: the history file still shows version 2.
    std::fs::write(s.file("head.json"), &v1_head).unwrap();
    let out = text(&eval(&[]));
    assert!(
        out.contains("version 2 is admitted (history/v2.admitted.json); refusing version 1"),
        "{out}"
    );
    assert!(!eval(&[]).status.success());

    // A different version 2 is refused, and history/v2 keeps its bytes.
    let other = write_bundle(&s.dir, "other.toml", "version = 2\nsucceeds = 1", "\n[[predicate]]\nid = \"task.short\"\ncategory = \"task\"\nrequire = \"output.tokens <= 900\"\n");
    let out = s.admit_with(&other, false, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the admission of assistant@v2+"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(s.file("history/v2.admitted.json")).unwrap(),
        v2_history
    );
    // Re-admitting the real version 2 repairs the directory from its signed history.
    let out = s.admit_with(&v2, false, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(eval(&[]).status.success());
    let show = ok(&["policy", "show", &s.out, "--trust", &s.trust]);
    assert!(show.contains("bundle:      assistant version 2"), "{show}");
}

/// With a lineage, even a whole directory put back to version 1 is refused by `eval --lineage`.
#[test]
fn eval_with_the_lineage_refuses_a_directory_rolled_back_whole() {
    let s = setup();
    let v1 = write_bundle(&s.dir, "v1.toml", "version = 1", "");
    assert!(s.admit(&v1, &[]).status.success());
    let saved = s.dir.join("saved");
    std::fs::create_dir_all(saved.join("history")).unwrap();
    for name in [
        "bundle.admitted.json",
        "head.json",
        "history/v1.admitted.json",
    ] {
        std::fs::copy(s.file(name), saved.join(name)).unwrap();
    }
    let v2 = write_bundle(&s.dir, "v2.toml", "version = 2\nsucceeds = 1", "");
    assert!(s.admit(&v2, &[]).status.success());
    std::fs::remove_dir_all(&s.out).unwrap();
    std::fs::rename(&saved, &s.out).unwrap();
    let sets = [
        "--set",
        "caller.tier=free",
        "--set",
        "request.domain=general",
        "--set",
        "output.classes=",
        "--set",
        "output.tokens=100",
    ];
    let mut args = vec!["policy", "eval", &s.out, "--trust", &s.trust];
    args.extend_from_slice(&sets);
    assert!(
        warden(&args).status.success(),
        "the directory alone cannot tell"
    );
    args.extend_from_slice(&["--lineage", &s.lineage]);
    let out = fails(&args);
    assert!(
        out.contains("version 1 is not the highest admitted version: version 2 is admitted (lineage record 1)"),
        "{out}"
    );
}

/// Regression (issue 8 §1.4 for policy): a corpus key whose file is relabelled policy-authority
/// is refused by the trust file before anything is written.
#[test]
fn a_corpus_key_relabelled_as_policy_authority_is_refused_before_anything_is_written() {
    let s = setup();
    let corpus_key = s.dir.join("corpus.key");
    ok(&[
        "key",
        "new",
        "--role",
        "corpus-authority",
        "--out",
        corpus_key.to_str().unwrap(),
    ]);
    ok(&["key", "trust", &s.trust, corpus_key.to_str().unwrap()]);
    let relabelled = std::fs::read_to_string(&corpus_key)
        .unwrap()
        .replace("role = \"corpus-authority\"", "role = \"policy-authority\"");
    std::fs::write(&corpus_key, relabelled).unwrap();
    let v1 = write_bundle(&s.dir, "v1.toml", "version = 1", "");
    let out = fails(&[
        "policy",
        "admit",
        v1.to_str().unwrap(),
        "--key",
        corpus_key.to_str().unwrap(),
        "--out",
        &s.out,
        "--lineage",
        &s.lineage,
        "--trust",
        &s.trust,
    ]);
    assert!(out.contains("signing key corpus"), "{out}");
    assert!(
        out.contains("is not trusted for role policy-authority"),
        "{out}"
    );
    assert!(!Path::new(&s.out).exists(), "nothing written to --out");
    assert!(!Path::new(&s.lineage).exists(), "no lineage created");
}

/// Regression (issue 8 §1.7): `policy admit` killed between the lineage record and
/// `bundle.admitted.json` left the record without the file, and re-admitting was refused forever.
/// Removing the files the admission writes after the record reproduces that state exactly.
#[test]
fn an_admission_killed_after_its_lineage_record_completes_when_run_again() {
    let s = setup();
    let v1 = write_bundle(&s.dir, "v1.toml", "version = 1", "");
    assert!(s.admit(&v1, &[]).status.success());
    let statement = std::fs::read(s.file("history/v1.admitted.json")).unwrap();
    for name in ["bundle.admitted.json", "head.json", "bundle.canonical.toml"] {
        std::fs::remove_file(s.file(name)).unwrap();
    }
    let out = fails(&[
        "policy", "eval", &s.out, "--trust", &s.trust, "--set", "x=1",
    ]);
    assert!(out.contains("an admission was interrupted"), "{out}");

    let out = s.admit(&v1, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = text(&out);
    assert!(
        out.contains("completing the interrupted admission of assistant@v1+"),
        "{out}"
    );
    assert!(out.contains("admitted assistant@v1+"), "{out}");
    assert!(
        !out.contains("recorded as lineage record 1"),
        "no second record: {out}"
    );
    assert_eq!(
        std::fs::read(s.file("history/v1.admitted.json")).unwrap(),
        statement
    );
    assert_eq!(
        std::fs::read(s.file("bundle.admitted.json")).unwrap(),
        statement
    );
    assert_eq!(
        s.eval(&[
            "caller.tier=free",
            "request.domain=general",
            "output.classes=",
            "output.tokens=100"
        ]),
        "admit"
    );
    let verify = ok(&["lineage", "verify", &s.lineage, "--trust", &s.trust]);
    assert!(verify.starts_with("ok: 1 records"), "{verify}");
    // Once complete, the same admission again is an ordinary refusal.
    let out = text(&s.admit(&v1, &[]));
    assert!(
        out.contains("version 1 is not above the admitted version 1"),
        "{out}"
    );
    // A directory whose admissions are in a lineage is not admitted into without it.
    let v2 = write_bundle(&s.dir, "v2.toml", "version = 2\nsucceeds = 1", "");
    let out = text(&s.admit_with(&v2, false, &[]));
    assert!(
        out.contains("its admissions are recorded in a lineage (record 0 admits assistant@v1+"),
        "{out}"
    );
    assert!(!s.file("history/v2.admitted.json").exists());
}

#[test]
fn admit_and_eval_need_a_trust_file() {
    let s = setup();
    let v1 = write_bundle(&s.dir, "v1.toml", "version = 1", "");
    let out = fails(&[
        "policy",
        "admit",
        v1.to_str().unwrap(),
        "--key",
        &s.key,
        "--out",
        &s.out,
    ]);
    assert!(out.contains("--trust"), "{out}");
    let missing = s.dir.join("no-such-trust.toml");
    let out = fails(&[
        "policy",
        "admit",
        v1.to_str().unwrap(),
        "--key",
        &s.key,
        "--out",
        &s.out,
        "--trust",
        missing.to_str().unwrap(),
    ]);
    assert!(out.contains("no-such-trust.toml"), "{out}");
    assert!(!Path::new(&s.out).exists());
    let out = fails(&["policy", "eval", &s.out, "--set", "x=1"]);
    assert!(out.contains("--trust"), "{out}");
}

/// Regression (issue 8 §6): a flat 129-term `and` was refused as "nested deeper than 128 levels".
#[test]
fn a_flat_and_of_129_terms_is_accepted_and_real_nesting_is_bounded() {
    let s = setup();
    let terms: Vec<String> = (0..129)
        .map(|i| format!("output.tokens != {}", 2000 + i))
        .collect();
    let flat = write_bundle(
        &s.dir,
        "flat.toml",
        "version = 1",
        &format!(
            "\n[[predicate]]\nid = \"task.flat\"\ncategory = \"task\"\nrequire = \"{}\"\n",
            terms.join(" and ")
        ),
    );
    let out = ok(&["policy", "check", flat.to_str().unwrap()]);
    assert!(out.contains("passes all checks (4 predicates"), "{out}");
    let deep = format!("{}output.tokens <= 10{}", "(".repeat(129), ")".repeat(129));
    let nested = write_bundle(
        &s.dir,
        "nested.toml",
        "version = 1",
        &format!(
            "\n[[predicate]]\nid = \"task.deep\"\ncategory = \"task\"\nrequire = \"{deep}\"\n"
        ),
    );
    let out = fails(&["policy", "check", nested.to_str().unwrap()]);
    assert!(
        out.contains(
            "predicate `task.deep`: in `require`: expression nested deeper than 128 levels"
        ),
        "{out}"
    );
}
