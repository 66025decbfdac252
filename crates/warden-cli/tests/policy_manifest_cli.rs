//! `warden policy derive` and `warden policy admit --manifest` on the manifest of a real (tiny)
//! training run: the real binary, real files, a real lineage.

use std::path::PathBuf;
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};
use warden_keys::{Role, SigningKey, TrustStore};

const DECLARATION: &str = r#"
[corpus]
name = "tiny"
description = "policy_manifest_cli fixture"

[policy]
admitted_licenses = ["CC0-1.0", "MIT"]
excluded_classes = ["medical"]

[[source]]
id = "prose"
path = "prose.txt"
format = "text"
license = "CC0-1.0"
class = "public-domain"
depth = "deep"
provenance = { origin = "test", collected = "2026-11-22", collector = "test", notes = "" }

[[source]]
id = "notes"
path = "notes.txt"
format = "text"
license = "MIT"
class = "notes"
depth = "shallow"
provenance = { origin = "test", collected = "2026-11-22", collector = "test", notes = "" }
"#;

/// ngram = 64 bytes gives N = 64 / 5 = 12 tokens (the context of 32 bytes never holds a
/// 64-byte n-gram, so the detector cannot halt this tiny run).
const CONFIG: &str = r#"corpus = "admitted"
seed = 11
steps = 4
batch_size = 4

[model]
layers = 1
width = 16
heads = 2
context = 32

[optimizer]
learning_rate = 0.01

[policy]
version = "train-v1"
failure = "halt"
checkpoint_every = 2
lineage = { cadence = "step" }
excluded_classes = ["forum"]

[policy.memorization]
ngram = 64
window = 16
threshold = 0.5
action = "reject"

[[policy.regions]]
match = "*"
max_norm = 5.0
"#;

const OPERATOR: &str = r#"[bundle]
name = "assistant"
version = 1

[vocabulary]
"caller.tier" = { enum = ["free", "verified"], context = true }
"output.tokens" = { int = [0, 4096] }
"output.verbatim.notes" = { int = [0, 1000] }

[[predicate]]
id = "structural.max-length"
category = "structural"
require = "output.tokens <= 1024"
"#;

const CONTRADICTION: &str = r#"
[[predicate]]
id = "task.quote-notes"
category = "task"
when = "caller.tier == 'verified'"
require = "output.verbatim.notes >= 200"
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

fn paragraphs(tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!("{tag} {i}: the miller walked beside the river at dawn and opened the gate")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

impl Fixture {
    /// Admits the corpus and trains a run into `run/` (manifest included).
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let src = root.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("prose.txt"), paragraphs("prose", 20)).unwrap();
        std::fs::write(src.join("notes.txt"), paragraphs("note", 10)).unwrap();
        std::fs::write(src.join("declaration.toml"), DECLARATION).unwrap();
        let corpus_key = SigningKey::generate(Role::CorpusAuthority, "corpus").unwrap();
        let training_key = SigningKey::generate(Role::TrainingAuthority, "trainer").unwrap();
        let policy_key = SigningKey::generate(Role::PolicyAuthority, "policy").unwrap();
        let mut trust = TrustStore::new();
        trust.add(Role::CorpusAuthority, corpus_key.public().clone());
        trust.add(Role::TrainingAuthority, training_key.public().clone());
        trust.add(Role::PolicyAuthority, policy_key.public().clone());
        std::fs::write(root.join("trust.toml"), trust.to_toml()).unwrap();
        std::fs::write(root.join("trainer.key"), training_key.to_file_text()).unwrap();
        std::fs::write(root.join("policy.key"), policy_key.to_file_text()).unwrap();
        warden_corpus::admit(
            &src.join("declaration.toml"),
            &root.join("admitted"),
            &corpus_key,
            &warden_corpus::AdmitOptions::default(),
        )
        .unwrap();
        std::fs::write(root.join("config.toml"), CONFIG).unwrap();
        let f = Fixture { dir };
        let trained = f.warden(&[
            "train",
            "config.toml",
            "--out",
            "run",
            "--key",
            "trainer.key",
            "--trust",
            "trust.toml",
        ]);
        assert!(
            trained.status.success(),
            "training failed:\n{}",
            text(&trained)
        );
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn warden(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn manifest_sha(&self) -> String {
        hex::encode(Sha256::digest(
            std::fs::read(self.path("run/manifest.intoto.json")).unwrap(),
        ))
    }

    fn admit(&self, bundle: &str, out: &str) -> Output {
        std::fs::write(self.path("op.toml"), bundle).unwrap();
        self.warden(&[
            "policy",
            "admit",
            "op.toml",
            "--key",
            "policy.key",
            "--out",
            out,
            "--trust",
            "trust.toml",
            "--lineage",
            "policy-lineage",
            "--manifest",
            "run/manifest.intoto.json",
        ])
    }

    fn records(&self, kind: &str) -> Vec<serde_json::Value> {
        warden_store::read_all(&self.path("policy-lineage"))
            .unwrap()
            .into_iter()
            .filter(|r| r.record.kind == kind)
            .map(|r| r.record.payload)
            .collect()
    }
}

#[test]
fn derive_prints_the_manifest_constraints_and_refuses_a_tampered_manifest() {
    let f = Fixture::new();
    let out = f.warden(&[
        "policy",
        "derive",
        "run/manifest.intoto.json",
        "--trust",
        "trust.toml",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with(&format!(
        "# derived from run/manifest.intoto.json (sha256:{})",
        f.manifest_sha()
    )));
    // The shallow class is bounded with N from the memorization rule; the deep class is not.
    assert!(stdout.contains(
        "id = \"derived.verbatim.notes\"\ncategory = \"safety\"\nweight = \"strict\"\nrequire = \"output.verbatim.notes <= 12\"\n"
    ), "{stdout}");
    assert!(!stdout.contains("public-domain"), "{stdout}");
    // Excluded by the corpus and by the training policy.
    for class in ["medical", "forum"] {
        assert!(
            stdout.contains(&format!(
                "id = \"derived.excluded.{class}\"\ncategory = \"safety\"\nweight = \"strict\"\nrequire = \"not (output.classes contains '{class}')\"\n"
            )),
            "{stdout}"
        );
    }
    assert!(stdout.contains("\"output.classes\" = { set = [\"forum\", \"medical\"] }"));
    assert!(stdout.contains("\"output.verbatim.notes\" = { int = [0, 1000000] }"));
    // stdout is a bundle that parses and passes the gate on its own.
    let bundle = warden_policy::Bundle::parse(&stdout, "derived").unwrap();
    assert_eq!(bundle.predicates.len(), 3);
    warden_policy::prove(&bundle, &warden_policy::Bound::default()).unwrap();

    // One byte of the signed payload changed: refused, naming the file.
    let path = f.path("run/manifest.intoto.json");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = String::from_utf8_lossy(&bytes)
        .find("\"payload\": \"")
        .unwrap()
        + 200;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(f.path("tampered.json"), &bytes).unwrap();
    let out = f.warden(&["policy", "derive", "tampered.json", "--trust", "trust.toml"]);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "nothing derived from a tampered manifest"
    );
    let err = text(&out);
    assert!(
        err.contains("tampered.json: the manifest does not verify as signed by a training authority of the trust file"),
        "{err}"
    );
    // A trust file without the training authority refuses the genuine manifest.
    let policy_only = SigningKey::generate(Role::PolicyAuthority, "other").unwrap();
    let mut trust = TrustStore::new();
    trust.add(Role::PolicyAuthority, policy_only.public().clone());
    std::fs::write(f.path("other-trust.toml"), trust.to_toml()).unwrap();
    let out = f.warden(&[
        "policy",
        "derive",
        "run/manifest.intoto.json",
        "--trust",
        "other-trust.toml",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("run/manifest.intoto.json: the manifest does not verify"),
        "{}",
        text(&out)
    );
}

#[test]
fn admit_with_manifest_rejects_a_contradicting_bundle_and_binds_the_manifest_digest() {
    let f = Fixture::new();
    let sha = f.manifest_sha();

    // Verified callers must get long verbatim notes: the model's training forbids it.
    let out = f.admit(&format!("{OPERATOR}{CONTRADICTION}"), "contradiction");
    assert!(!out.status.success(), "{}", text(&out));
    let message = text(&out);
    assert!(
        message.contains("merged 3 predicates derived from run/manifest.intoto.json"),
        "{message}"
    );
    let core_line = message
        .lines()
        .find(|l| l.contains("minimal core:"))
        .unwrap_or_else(|| panic!("no minimal core in:\n{message}"));
    assert!(core_line.contains("task.quote-notes"), "{message}");
    assert!(core_line.contains("derived.verbatim.notes"), "{message}");
    assert!(message.contains("rejected"), "{message}");
    let rejections = f.records("policy.rejection");
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0]["manifest"], sha.as_str());
    // The same bundle without the manifest passes the gate: the contradiction is the training's.
    std::fs::write(f.path("alone.toml"), format!("{OPERATOR}{CONTRADICTION}")).unwrap();
    let alone = f.warden(&["policy", "check", "alone.toml"]);
    assert!(alone.status.success(), "{}", text(&alone));

    // A bundle that respects the training is admitted; statement and record name the manifest.
    let out = f.admit(OPERATOR, "admitted");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("against manifest sha256:{sha}")),
        "{}",
        text(&out)
    );
    let admissions = f.records("policy.admission");
    assert_eq!(admissions.len(), 1);
    assert_eq!(admissions[0]["manifest"], sha.as_str());
    let trust = TrustStore::parse(
        &std::fs::read_to_string(f.path("trust.toml")).unwrap(),
        "trust.toml",
    )
    .unwrap();
    let loaded = warden_policy::AdmittedBundle::load(
        &std::fs::read(f.path("admitted/bundle.admitted.json")).unwrap(),
        "bundle.admitted.json",
        &trust,
    )
    .unwrap();
    assert_eq!(loaded.manifest_digest().map(hex::encode), Some(sha.clone()));
    let show = f.warden(&["policy", "show", "admitted", "--trust", "trust.toml"]);
    assert!(
        text(&show).contains(&format!("manifest:    sha256:{sha}")),
        "{}",
        text(&show)
    );

    // The derived predicates are enforced by the admitted bundle.
    let eval = |verbatim: &str| {
        let out = f.warden(&[
            "policy",
            "eval",
            "admitted",
            "--trust",
            "trust.toml",
            "--set",
            "caller.tier=free",
            "--set",
            "output.tokens=10",
            "--set",
            &format!("output.verbatim.notes={verbatim}"),
            "--set",
            "output.classes=",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(eval("12"), "admit\n");
    assert_eq!(eval("13"), "reject: derived.verbatim.notes\n");
}
