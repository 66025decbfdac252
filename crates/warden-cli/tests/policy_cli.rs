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
        let mut args = vec![
            "policy",
            "admit",
            bundle.to_str().unwrap(),
            "--key",
            &self.key,
            "--out",
            &self.out,
            "--lineage",
            &self.lineage,
            "--trust",
            &self.trust,
        ];
        args.extend_from_slice(extra);
        warden(&args)
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
        out.contains("the admitted head in the output directory does not verify"),
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
