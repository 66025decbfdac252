//! `warden generate` end to end: the real binary on a real (tiny) training run, a bundle admitted
//! against its manifest, a real lineage; and a tiny random-weight GGUF model.

use std::path::PathBuf;
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};
use warden_keys::{Role, SigningKey, TrustStore};

const DECLARATION: &str = r#"
[corpus]
name = "tiny"
description = "generate_cli fixture"

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

[[source]]
id = "clinic"
path = "clinic.txt"
format = "text"
license = "CC0-1.0"
class = "medical"
depth = "deep"
provenance = { origin = "test", collected = "2026-11-22", collector = "test", notes = "" }
"#;

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

[policy.memorization]
ngram = 64
window = 16
threshold = 0.5
action = "reject"

[[policy.regions]]
match = "*"
max_norm = 5.0
"#;

/// Free callers get at most 3 tokens; gold callers are bounded by --max-tokens only.
const OPERATOR: &str = r#"[bundle]
name = "assistant"
version = 1

[vocabulary]
"caller.tier" = { enum = ["free", "gold"], context = true }
"output.tokens" = { int = [0, 4096] }

[[predicate]]
id = "task.free-short"
category = "task"
when = "caller.tier == 'free'"
require = "output.tokens <= 3"
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

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", text(output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}):\n{}", text(output)))
}

impl Fixture {
    /// Keys and a trust file for all four roles; with `train`, an admitted corpus and a run.
    fn new(train: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let corpus_key = SigningKey::generate(Role::CorpusAuthority, "corpus").unwrap();
        let training_key = SigningKey::generate(Role::TrainingAuthority, "trainer").unwrap();
        let policy_key = SigningKey::generate(Role::PolicyAuthority, "policy").unwrap();
        let deploy_key = SigningKey::generate(Role::DeploymentAuthority, "deploy").unwrap();
        let mut trust = TrustStore::new();
        trust.add(Role::CorpusAuthority, corpus_key.public().clone());
        trust.add(Role::TrainingAuthority, training_key.public().clone());
        trust.add(Role::PolicyAuthority, policy_key.public().clone());
        trust.add(Role::DeploymentAuthority, deploy_key.public().clone());
        std::fs::write(root.join("trust.toml"), trust.to_toml()).unwrap();
        std::fs::write(root.join("trainer.key"), training_key.to_file_text()).unwrap();
        std::fs::write(root.join("policy.key"), policy_key.to_file_text()).unwrap();
        std::fs::write(root.join("deployment.key"), deploy_key.to_file_text()).unwrap();
        let f = Fixture { dir };
        if train {
            let src = root.join("src");
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join("prose.txt"), paragraphs("prose", 20)).unwrap();
            std::fs::write(src.join("notes.txt"), paragraphs("note", 10)).unwrap();
            std::fs::write(
                src.join("clinic.txt"),
                "take two aspirin tablets every morning with water for the fever\n".repeat(4),
            )
            .unwrap();
            std::fs::write(src.join("declaration.toml"), DECLARATION).unwrap();
            warden_corpus::admit(
                &src.join("declaration.toml"),
                &root.join("admitted"),
                &corpus_key,
                &warden_corpus::AdmitOptions::default(),
            )
            .unwrap();
            std::fs::write(root.join("config.toml"), CONFIG).unwrap();
            f.train("run");
        }
        f
    }

    fn train(&self, out: &str) {
        let trained = self.warden(&[
            "train",
            "config.toml",
            "--out",
            out,
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

    /// Admits OPERATOR into `out`, against `manifest` if given.
    fn admit(&self, out: &str, manifest: Option<&str>) {
        self.admit_text(OPERATOR, out, manifest);
    }

    fn admit_text(&self, bundle: &str, out: &str, manifest: Option<&str>) {
        std::fs::write(self.path("op.toml"), bundle).unwrap();
        let mut args = vec![
            "policy",
            "admit",
            "op.toml",
            "--key",
            "policy.key",
            "--out",
            out,
            "--trust",
            "trust.toml",
        ];
        if let Some(manifest) = manifest {
            args.extend(["--manifest", manifest]);
        }
        let admitted = self.warden(&args);
        assert!(admitted.status.success(), "{}", text(&admitted));
    }

    /// `warden generate --model run --bundle bundle --trust trust.toml --prompt PROMPT` + extra.
    fn generate(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "generate",
            "--model",
            "run",
            "--bundle",
            "bundle",
            "--trust",
            "trust.toml",
            "--prompt",
            "prose 3: the miller",
        ];
        args.extend(extra);
        self.warden(&args)
    }

    fn calls(&self, lineage: &str) -> Vec<serde_json::Value> {
        warden_store::read_all(&self.path(lineage))
            .unwrap()
            .into_iter()
            .filter(|r| r.record.kind == "call.generate")
            .map(|r| {
                assert_eq!(r.record.role.as_str(), "deployment-authority");
                r.record.payload
            })
            .collect()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn generate_prints_only_the_continuation_is_deterministic_and_records_the_call() {
    let f = Fixture::new(true);
    f.admit("bundle", Some("run/manifest.intoto.json"));
    let gold = ["--set", "caller.tier=gold", "--max-tokens", "12"];

    // Greedy: stdout is exactly the continuation, the summary is on stderr.
    let plain = f.generate(&gold);
    assert!(plain.status.success(), "{}", text(&plain));
    let err = stderr(&plain);
    assert!(err.contains("stop: length"), "{err}");
    assert!(err.contains("tokens: 12 (prompt 19)"), "{err}");
    assert!(
        err.contains("verdicts: admit 12, reject 0, decompose 0"),
        "{err}"
    );
    assert!(err.contains("µs/token"), "{err}");
    // The byte-level model emits one byte per token.
    assert_eq!(plain.stdout.len(), 12, "{}", text(&plain));

    // --json: one object with the same output; nothing else on stdout, nothing on stderr.
    let as_json = f.generate(&[&gold[..], &["--json"]].concat());
    let object = json(&as_json);
    assert!(stderr(&as_json).is_empty(), "{}", stderr(&as_json));
    assert_eq!(object["stop"], "length");
    assert_eq!(object["output_sha256"], sha256_hex(&plain.stdout));
    assert_eq!(
        object["text"].as_str().unwrap(),
        String::from_utf8_lossy(&plain.stdout)
    );
    assert_eq!(object["summary"]["tokens"], 12);
    assert_eq!(object["summary"]["attributes"]["caller.tier"], "gold");
    assert_eq!(
        object["summary"]["manifest_digest"],
        sha256_hex(&std::fs::read(f.path("run/manifest.intoto.json")).unwrap())
    );
    assert!(object["record"].is_null());

    // Seeded sampling: the same seed and prompt give the same bytes, another seed others.
    let sampled = |seed: &str| {
        let out = f.generate(&[
            "--set",
            "caller.tier=gold",
            "--max-tokens",
            "32",
            "--temperature",
            "1.0",
            "--seed",
            seed,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        out.stdout
    };
    let first = sampled("7");
    assert_eq!(first.len(), 32);
    assert_eq!(first, sampled("7"));
    assert_ne!(first, sampled("8"));

    // The policy stops a free caller's call at its token bound: exit 0, stop `policy`.
    let stopped = f.generate(&["--set", "caller.tier=free", "--max-tokens", "12", "--json"]);
    let object = json(&stopped);
    assert_eq!(object["stop"], "policy");
    assert_eq!(object["summary"]["tokens"], 3);
    assert_eq!(
        object["summary"]["refusal"]["predicates"],
        serde_json::json!(["task.free-short"])
    );
    assert_eq!(
        object["text"].as_str().unwrap().as_bytes(),
        &plain.stdout[..3],
        "the same greedy tokens up to the bound"
    );
    let human = f.generate(&["--set", "caller.tier=free", "--max-tokens", "12"]);
    assert!(human.status.success(), "{}", text(&human));
    assert_eq!(human.stdout, &plain.stdout[..3]);
    let err = stderr(&human);
    assert!(err.contains("stop: policy ("), "{err}");
    assert!(err.contains("by task.free-short"), "{err}");

    // --lineage: one call.generate record, signed by the deployment authority, hashes only.
    let recorded = f.generate(
        &[
            &gold[..],
            &["--lineage", "calls", "--key", "deployment.key"],
        ]
        .concat(),
    );
    assert!(recorded.status.success(), "{}", text(&recorded));
    assert_eq!(recorded.stdout, plain.stdout);
    assert!(
        stderr(&recorded).contains("recorded as lineage record 0 (call.generate)"),
        "{}",
        stderr(&recorded)
    );
    let calls = f.calls("calls");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call["prompt_sha256"], sha256_hex(b"prose 3: the miller"));
    assert_eq!(call["output_sha256"], sha256_hex(&plain.stdout));
    assert!(
        call["prompt"].is_null() && call["output"].is_null(),
        "{call}"
    );
    assert_eq!(call["stop"], "length");
    assert_eq!(call["summary"]["bundle"], "assistant");
    assert_eq!(call["summary"]["tokens"], 12);
    assert_eq!(call["model"]["kind"], "warden-run");
    let verify = f.warden(&["lineage", "verify", "calls", "--trust", "trust.toml"]);
    assert!(verify.status.success(), "{}", text(&verify));
    // --record-text puts the texts in.
    let with_text = f.generate(
        &[
            &gold[..],
            &[
                "--lineage",
                "calls",
                "--key",
                "deployment.key",
                "--record-text",
            ],
        ]
        .concat(),
    );
    assert!(with_text.status.success(), "{}", text(&with_text));
    let calls = f.calls("calls");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["prompt"], "prose 3: the miller");
    assert_eq!(
        calls[1]["output"].as_str().unwrap(),
        String::from_utf8_lossy(&plain.stdout)
    );
    // Signing with a key of another role is refused before the call runs.
    let wrong = f.generate(&[&gold[..], &["--lineage", "calls", "--key", "policy.key"]].concat());
    assert!(!wrong.status.success());
    assert!(wrong.stdout.is_empty());
    assert!(
        stderr(&wrong).contains("deployment-authority"),
        "{}",
        stderr(&wrong)
    );
    assert_eq!(f.calls("calls").len(), 2);

    // --ungoverned: the same model's continuation, a warning, nothing recorded.
    let baseline = f.warden(&[
        "generate",
        "--model",
        "run",
        "--ungoverned",
        "--trust",
        "trust.toml",
        "--prompt",
        "prose 3: the miller",
        "--max-tokens",
        "12",
    ]);
    assert!(baseline.status.success(), "{}", text(&baseline));
    assert_eq!(baseline.stdout, plain.stdout);
    assert!(
        stderr(&baseline).contains("warning: --ungoverned"),
        "{}",
        stderr(&baseline)
    );
    let refused = f.warden(&[
        "generate",
        "--model",
        "run",
        "--ungoverned",
        "--trust",
        "trust.toml",
        "--prompt",
        "x",
        "--lineage",
        "calls",
        "--key",
        "deployment.key",
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--ungoverned records nothing"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(f.calls("calls").len(), 2);
}

#[test]
fn generate_refuses_a_tampered_model_a_foreign_bundle_and_a_missing_attribute() {
    let f = Fixture::new(true);
    f.admit("bundle", Some("run/manifest.intoto.json"));

    // A missing caller attribute is an error, never a default.
    let missing = f.generate(&[]);
    assert!(!missing.status.success());
    assert!(missing.stdout.is_empty());
    let err = stderr(&missing);
    assert!(
        err.contains("caller.tier") && err.contains("not supplied"),
        "{err}"
    );
    // So is one the bundle does not declare.
    let unknown = f.generate(&["--set", "caller.tier=gold", "--set", "caller.region=eu"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("caller.region"),
        "{}",
        stderr(&unknown)
    );

    // A bundle admitted against another run's manifest is refused for this run; so is one
    // admitted without a manifest.
    f.train("run2");
    f.admit("bundle-run2", Some("run2/manifest.intoto.json"));
    f.admit("bundle-none", None);
    for (bundle, expected) in [
        ("bundle-run2", "it was admitted against manifest sha256:"),
        ("bundle-none", "it was admitted without a manifest"),
    ] {
        let out = f.warden(&[
            "generate",
            "--model",
            "run",
            "--bundle",
            bundle,
            "--trust",
            "trust.toml",
            "--prompt",
            "x",
            "--set",
            "caller.tier=gold",
        ]);
        assert!(!out.status.success(), "{bundle}");
        assert!(out.stdout.is_empty());
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{bundle}: refused for this model")) && err.contains(expected),
            "{err}"
        );
    }

    // A bundle admitted against a Warden manifest is refused for a GGUF model (it has none).
    warden_model::gguf::testing::write_tiny_gguf(
        &f.path("tiny.gguf"),
        &warden_model::gguf::testing::TinySpec {
            context_length: 256,
            ..Default::default()
        },
    )
    .unwrap();
    let out = f.warden(&[
        "generate",
        "--gguf",
        "tiny.gguf",
        "--bundle",
        "bundle",
        "--trust",
        "trust.toml",
        "--prompt",
        "x",
        "--set",
        "caller.tier=gold",
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("was admitted against the Warden manifest sha256:"),
        "{}",
        stderr(&out)
    );

    // A bundle using an attribute the runtime cannot compute is refused at load, naming it.
    let sentiment = OPERATOR.replace(
        "\"output.tokens\" = { int = [0, 4096] }",
        "\"output.tokens\" = { int = [0, 4096] }\n\"output.sentiment\" = { int = [0, 10] }",
    ) + "\n[[predicate]]\nid = \"tone.calm\"\ncategory = \"task\"\nrequire = \"output.sentiment <= 5\"\n";
    f.admit_text(
        &sentiment,
        "bundle-sentiment",
        Some("run/manifest.intoto.json"),
    );
    let out = f.warden(&[
        "generate",
        "--model",
        "run",
        "--bundle",
        "bundle-sentiment",
        "--trust",
        "trust.toml",
        "--prompt",
        "x",
        "--set",
        "caller.tier=gold",
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("bundle-sentiment: refused at load")
            && err.contains("attribute `output.sentiment`")
            && err.contains("the runtime cannot provide it"),
        "{err}"
    );

    // One byte of the weights changed: refused naming the file, nothing generated.
    let weights = f.path("run/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, &bytes).unwrap();
    let tampered = f.generate(&["--set", "caller.tier=gold"]);
    assert!(!tampered.status.success());
    assert!(tampered.stdout.is_empty());
    let err = stderr(&tampered);
    assert!(
        err.contains("run/model.safetensors: model digest mismatch"),
        "{err}"
    );
}

#[test]
fn generate_runs_a_gguf_model_under_the_bundle_alone() {
    let f = Fixture::new(false);
    warden_model::gguf::testing::write_tiny_gguf(
        &f.path("tiny.gguf"),
        &warden_model::gguf::testing::TinySpec {
            context_length: 256,
            ..Default::default()
        },
    )
    .unwrap();
    f.admit("bundle", None);
    let gguf = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--gguf",
            "tiny.gguf",
            "--bundle",
            "bundle",
            "--trust",
            "trust.toml",
            "--prompt",
            "hello world",
        ];
        args.extend(extra);
        f.warden(&args)
    };
    let stopped = gguf(&[
        "--set",
        "caller.tier=free",
        "--max-tokens",
        "8",
        "--lineage",
        "calls",
        "--key",
        "deployment.key",
        "--json",
    ]);
    let object = json(&stopped);
    assert!(
        stderr(&stopped).contains("tiny.gguf: no Warden manifest: governed by the bundle alone"),
        "{}",
        stderr(&stopped)
    );
    // The free caller's token bound ends the call (the random weights are fixed by the seed).
    assert_eq!(object["summary"]["tokens"], 3, "{object}");
    assert_eq!(object["stop"], "policy", "{object}");
    assert!(object["summary"]["manifest_digest"].is_null());
    let calls = f.calls("calls");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["model"]["kind"], "gguf");
    assert_eq!(
        calls[0]["model"]["sha256"],
        sha256_hex(&std::fs::read(f.path("tiny.gguf")).unwrap())
    );
    assert_eq!(calls[0]["output_sha256"], object["output_sha256"]);

    // Same prompt, same output (greedy through the chat template), bare on stdout.
    let gold = ["--set", "caller.tier=gold", "--max-tokens", "8"];
    let first = gguf(&gold);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(first.stdout, gguf(&gold).stdout);
    let object = json(&gguf(&[&gold[..], &["--json"]].concat()));
    assert_eq!(object["output_sha256"], sha256_hex(&first.stdout));
    assert!(
        object["summary"]["prompt_tokens"].as_u64().unwrap() > 10,
        "chat template applied: {object}"
    );
}
