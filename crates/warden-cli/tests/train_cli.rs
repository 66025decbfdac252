//! `warden train` end to end on a tiny admitted corpus: real binary, real files, real lineage.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use warden_keys::{Role, SigningKey, TrustStore};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

struct Fixture {
    dir: tempfile::TempDir,
}

/// The corpus authority's key seed (tests re-admit with it and relabel it).
const CORPUS_SEED: [u8; 32] = [7; 32];

const DECLARATION: &str = r#"
[corpus]
name = "tiny"
description = "train_cli fixture"

[policy]
admitted_licenses = ["CC0-1.0", "MIT"]
excluded_classes = []

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
id = "heldout"
path = "heldout.txt"
format = "text"
license = "CC0-1.0"
class = "public-domain"
depth = "deep"
held_out = true
provenance = { origin = "test", collected = "2026-11-22", collector = "test", notes = "" }
"#;

fn paragraphs(tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{tag} {i}: the miller walked beside the {} river at dawn and {} the gate",
                ["old", "grey", "quiet", "pale"][i % 4],
                ["opened", "closed", "watched"][i % 3]
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let corpus_dir = root.join("src");
        std::fs::create_dir_all(&corpus_dir).unwrap();
        std::fs::write(corpus_dir.join("prose.txt"), paragraphs("prose", 40)).unwrap();
        std::fs::write(corpus_dir.join("notes.txt"), paragraphs("note", 20)).unwrap();
        std::fs::write(corpus_dir.join("heldout.txt"), paragraphs("held", 10)).unwrap();
        std::fs::write(corpus_dir.join("declaration.toml"), DECLARATION).unwrap();
        let corpus_key =
            SigningKey::from_seed(Role::CorpusAuthority, "corpus", &CORPUS_SEED).unwrap();
        let training_key = SigningKey::generate(Role::TrainingAuthority, "trainer").unwrap();
        let mut trust = TrustStore::new();
        trust.add(Role::CorpusAuthority, corpus_key.public().clone());
        trust.add(Role::TrainingAuthority, training_key.public().clone());
        std::fs::write(root.join("trust.toml"), trust.to_toml()).unwrap();
        std::fs::write(root.join("trainer.key"), training_key.to_file_text()).unwrap();
        warden_corpus::admit(
            &corpus_dir.join("declaration.toml"),
            &root.join("admitted"),
            &corpus_key,
            &warden_corpus::AdmitOptions::default(),
        )
        .unwrap();
        let fixture = Fixture { dir };
        fixture.write_config("config.toml", 8, "halt", "");
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self, name: &str, steps: u64, failure: &str, extra_policy: &str) {
        let text = format!(
            r#"corpus = "admitted"
seed = 11
steps = {steps}
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
failure = "{failure}"
checkpoint_every = 3
lineage = {{ cadence = "step" }}
{extra_policy}
[[policy.regions]]
match = "*"
max_norm = 5.0
"#
        );
        std::fs::write(self.path(name), text).unwrap();
    }

    fn warden(&self, args: &[&str]) -> Output {
        Command::new(WARDEN)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn train(&self, config: &str, out: &str) -> Output {
        self.warden(&[
            "train",
            config,
            "--out",
            out,
            "--key",
            "trainer.key",
            "--trust",
            "trust.toml",
        ])
    }

    fn records(&self, run: &str) -> Vec<warden_lineage::SignedRecord> {
        warden_store::read_all(&self.path(run).join("lineage")).unwrap()
    }

    fn verify(&self, run: &str) -> warden_lineage::VerifiedLineage {
        let trust = TrustStore::parse(
            &std::fs::read_to_string(self.path("trust.toml")).unwrap(),
            "trust.toml",
        )
        .unwrap();
        warden_store::verify(
            &self.path(run).join("lineage"),
            &trust,
            &warden_store::VerifyOptions::default(),
        )
        .unwrap()
    }

    fn edit_prose_line(&self, paragraph: usize) -> String {
        let path = self.path("src/prose.txt");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut parts: Vec<String> = text.split("\n\n").map(String::from).collect();
        parts[paragraph] = format!("{} (quietly edited after admission)", parts[paragraph]);
        std::fs::write(&path, parts.join("\n\n")).unwrap();
        parts[paragraph].clone()
    }
}

impl Fixture {
    fn resume(&self, extra: &[&str]) -> Output {
        let mut args = vec!["train", "resume", "run"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--key") {
            args.extend_from_slice(&["--key", "trainer.key"]);
        }
        args.extend_from_slice(&["--trust", "trust.toml"]);
        self.warden(&args)
    }

    fn replay(&self, run: &str, k: usize) -> Output {
        self.warden(&[
            "train",
            "replay",
            run,
            "--k",
            &k.to_string(),
            "--trust",
            "trust.toml",
        ])
    }

    fn trust(&self) -> TrustStore {
        TrustStore::parse(
            &std::fs::read_to_string(self.path("trust.toml")).unwrap(),
            "trust.toml",
        )
        .unwrap()
    }

    /// The digest of the declaration now in `admitted/`, as training computes it.
    fn declaration_digest(&self) -> String {
        use warden_train::data::AdmissionIndex as _;
        let admitted =
            warden_train::admitted::Admitted::load(&self.path("admitted"), &self.trust()).unwrap();
        hex::encode(admitted.declaration_digest())
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn kinds(records: &[warden_lineage::SignedRecord]) -> Vec<String> {
    records.iter().map(|r| r.record.kind.clone()).collect()
}

#[test]
fn train_writes_model_manifest_and_a_verifying_lineage() {
    let f = Fixture::new();
    let out = f.train("config.toml", "run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("trained 8 iterations"),
        "{}",
        text(&out)
    );
    let records = f.records("run");
    let kinds = kinds(&records);
    assert_eq!(kinds.first().map(String::as_str), Some("train.start"));
    assert_eq!(kinds.iter().filter(|k| *k == "train.iteration").count(), 8);
    assert_eq!(kinds.last().map(String::as_str), Some("train.complete"));
    let verified = f.verify("run");
    assert_eq!(verified.records, records.len() as u64);
    assert_eq!(verified.sealed, verified.records);

    // The manifest verifies for the training authority and names the model's digest.
    let trust =
        TrustStore::parse(&std::fs::read_to_string(f.path("trust.toml")).unwrap(), "t").unwrap();
    let envelope = warden_attest::Envelope::from_json(
        &std::fs::read_to_string(f.path("run/manifest.intoto.json")).unwrap(),
    )
    .unwrap();
    let statement = warden_attest::verify_envelope(&envelope, &trust, Role::TrainingAuthority)
        .unwrap()
        .statement;
    let sum = Command::new("sha256sum")
        .arg(f.path("run/model.safetensors"))
        .output()
        .unwrap();
    let model_sha = String::from_utf8_lossy(&sum.stdout)[..64].to_string();
    assert_eq!(statement.subject[0].digest["sha256"], model_sha);
    assert_eq!(statement.predicate["classes"]["notes"]["depth"], "shallow");
    assert_eq!(statement.predicate["policy"]["versions"][0], "train-v1");
    assert!(verify_fails_for_corpus_role(&envelope, &trust));
}

fn verify_fails_for_corpus_role(envelope: &warden_attest::Envelope, trust: &TrustStore) -> bool {
    warden_attest::verify_envelope(envelope, trust, Role::CorpusAuthority).is_err()
}

#[test]
fn same_seed_gives_identical_model_files() {
    let f = Fixture::new();
    assert!(f.train("config.toml", "a").status.success());
    assert!(f.train("config.toml", "b").status.success());
    assert_eq!(
        std::fs::read(f.path("a/model.safetensors")).unwrap(),
        std::fs::read(f.path("b/model.safetensors")).unwrap()
    );
}

#[test]
fn halt_mode_exits_nonzero_naming_the_iteration_and_the_edited_sample() {
    let f = Fixture::new();
    f.write_config("long.toml", 60, "halt", "");
    f.edit_prose_line(5);
    let out = f.train("long.toml", "run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("training halted at iteration"), "{stderr}");
    assert!(stderr.contains("data gate"), "{stderr}");
    // Paragraph 5 starts on line 11 of prose.txt (one line per paragraph, blank separators).
    assert!(stderr.contains("sample prose line 11"), "{stderr}");
    let records = f.records("run");
    let last = records.last().unwrap();
    assert_eq!(last.record.kind, "train.failure");
    assert_eq!(last.record.payload["action"], "halt");
    assert_eq!(last.record.payload["sample"]["line"], 11);
    f.verify("run");
    assert!(!f.path("run/model.safetensors").exists());
}

#[test]
fn quarantine_mode_rolls_back_and_finishes_without_the_edited_sample() {
    let f = Fixture::new();
    f.write_config("q.toml", 60, "quarantine", "");
    let edited = f.edit_prose_line(5);
    let bad = hex::encode(warden_corpus::sample_hash(&edited));
    let out = f.train("q.toml", "run");
    assert!(out.status.success(), "{}", text(&out));
    let records = f.records("run");
    let failures: Vec<_> = records
        .iter()
        .filter(|r| r.record.kind == "train.failure")
        .collect();
    assert_eq!(failures.len(), 1, "quarantined once, then skipped");
    assert_eq!(failures[0].record.payload["action"], "quarantine");
    assert_eq!(failures[0].record.payload["sample"]["hash"], bad);
    for r in records
        .iter()
        .filter(|r| r.record.kind == "train.iteration")
    {
        for s in r.record.payload["batch"]["samples"].as_array().unwrap() {
            if s["hash"] == bad {
                assert!(
                    s.get("loss").is_none(),
                    "edited sample reached the forward pass"
                );
            }
        }
    }
    f.verify("run");
    // The rollback is part of what replay re-executes: every iteration reproduces.
    let out = f.replay("run", 60);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ok: 60 iterations replayed bit for bit"),
        "{}",
        text(&out)
    );
}

#[test]
fn replay_passes_on_an_honest_run_and_fails_on_a_retained_checkpoint_altered_by_one_bit() {
    let f = Fixture::new();
    f.write_config("r.toml", 40, "halt", "retain_every = 4");
    assert!(f.train("r.toml", "run").status.success());
    let out = f.replay("run", 4);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("ok: 4 iterations replayed bit for bit (δ = 0), same build as the run"),
        "{said}"
    );
    // K = 4 of 40 iterations: at most 4 iterations each from its retained checkpoint.
    assert!(
        said.contains("of 40 training iterations re-executed"),
        "{said}"
    );

    // A run directory moved since training replays too: its start record is the lineage's only
    // one (the rule the audit uses), not only the one naming the original path.
    std::fs::rename(f.path("run"), f.path("moved")).unwrap();
    let out = f.replay("moved", 4);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::rename(f.path("moved"), f.path("run")).unwrap();

    // `warden audit --replay K` runs the same spot check as its `replay` check.
    let audit = |f: &Fixture| f.warden(&["audit", "run", "--replay", "4", "--trust", "trust.toml"]);
    let out = audit(&f);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("replay     passed") && said.contains("param_digest"),
        "{said}"
    );
    assert!(said.contains("auditor cost: "), "{said}");

    // One bit of every retained checkpoint: whichever the chosen iterations start from is
    // refused by its content address.
    let retained = f.path("run/checkpoints/retained");
    for entry in std::fs::read_dir(&retained).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            std::fs::write(&path, &bytes).unwrap();
        }
    }
    let out = f.replay("run", 4);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("DIFFERS") && said.contains("the retained checkpoint was altered"),
        "{said}"
    );
    assert!(
        said.contains("4 chosen iterations do not reproduce"),
        "{said}"
    );
    // The audit fails its replay check, naming the iteration, and its outcome check (every
    // retained file is checked against its content address, with or without --replay).
    let out = audit(&f);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("replay     FAILED (4 findings)"), "{said}");
    assert!(
        said.contains("the retained checkpoint was altered"),
        "{said}"
    );
    assert!(said.contains("checks: outcome, replay"), "{said}");
    // Without --replay, a plain audit already refuses the altered retained checkpoints.
    let out = f.warden(&["audit", "run", "--trust", "trust.toml"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("outcome    FAILED"), "{said}");
    assert!(said.contains("it was altered"), "{said}");
    // A deleted retained checkpoint is named too: the run could no longer be replayed.
    for entry in std::fs::read_dir(&retained).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let out = f.warden(&["audit", "run", "--trust", "trust.toml"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("cannot be replayed from it"), "{said}");
}

#[test]
fn sigkill_mid_training_then_resume_and_the_lineage_verifies() {
    let f = Fixture::new();
    f.write_config("long.toml", 100_000, "halt", "");
    let mut child = Command::new(WARDEN)
        .args([
            "train",
            "long.toml",
            "--out",
            "run",
            "--key",
            "trainer.key",
            "--trust",
            "trust.toml",
        ])
        .current_dir(f.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let latest = f.path("run/checkpoints/LATEST");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let at = std::fs::read_to_string(&latest).unwrap_or_default();
        if at.trim() >= "iter-00000009" || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = f.records("run").len();
    assert!(before > 5, "the run got going before the kill");

    let at = std::fs::read_to_string(&latest).unwrap();
    let checkpoint: u64 = at.trim()[5..13].parse().unwrap();
    let target = (checkpoint + 6).to_string();
    let out = f.warden(&[
        "train",
        "resume",
        "run",
        "--steps",
        &target,
        "--key",
        "trainer.key",
        "--trust",
        "trust.toml",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let records = f.records("run");
    let transition = records
        .iter()
        .find(|r| r.record.kind == "train.transition")
        .unwrap();
    assert_eq!(transition.record.payload["reason"], "resume");
    assert!(
        transition.record.payload["resumed_from_iteration"]
            .as_u64()
            .unwrap()
            >= checkpoint
    );
    assert_eq!(records.last().unwrap().record.kind, "train.complete");
    let verified = f.verify("run");
    assert_eq!(verified.records, records.len() as u64);
    assert!(f.path("run/model.safetensors").exists());
    // Every iteration, those recorded before the kill and again after the resume included,
    // replays bit for bit from the retained checkpoints.
    let out = f.replay("run", usize::MAX);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "ok: {} iterations replayed bit for bit",
            checkpoint + 6
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn resume_under_a_new_policy_records_a_versioned_transition() {
    let f = Fixture::new();
    assert!(f.train("config.toml", "run").status.success());
    let v1_text = std::fs::read_to_string(f.path("run/policy.toml")).unwrap();
    std::fs::write(
        f.path("policy-v2.toml"),
        "version = \"train-v2\"\nfailure = \"halt\"\ncheckpoint_every = 3\n\n[[regions]]\nmatch = \"embed\"\nfrozen = true\n",
    )
    .unwrap();
    let out = f.warden(&[
        "train",
        "resume",
        "run",
        "--policy",
        "policy-v2.toml",
        "--steps",
        "12",
        "--key",
        "trainer.key",
        "--trust",
        "trust.toml",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("train-v1 → train-v2"), "{}", text(&out));
    let records = f.records("run");
    let transition = records
        .iter()
        .find(|r| r.record.kind == "train.transition")
        .unwrap();
    assert_eq!(transition.record.payload["policy_from"], "train-v1");
    assert_eq!(transition.record.payload["policy_to"], "train-v2");
    assert_eq!(
        transition.record.policy_version.as_deref(),
        Some("train-v2")
    );
    let after: Vec<_> = records
        .iter()
        .filter(|r| {
            r.record.kind == "train.iteration" && r.record.payload["iteration"].as_u64() > Some(8)
        })
        .collect();
    assert_eq!(after.len(), 4);
    assert!(after
        .iter()
        .all(|r| r.record.policy_version.as_deref() == Some("train-v2")));
    f.verify("run");

    // A kill between the transition record and the replacement of policy.toml leaves the old
    // file behind; the lineage is authoritative, so the next resume finishes the switch.
    std::fs::write(f.path("run/policy.toml"), &v1_text).unwrap();

    // A later plain resume stays under train-v2, and the run remembers both versions.
    let out = f.warden(&[
        "train",
        "resume",
        "run",
        "--steps",
        "14",
        "--key",
        "trainer.key",
        "--trust",
        "trust.toml",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("policy versions train-v1 → train-v2"),
        "{}",
        text(&out)
    );
    let records = f.records("run");
    let last_transition = records
        .iter()
        .rev()
        .find(|r| r.record.kind == "train.transition")
        .unwrap();
    assert_eq!(last_transition.record.payload["reason"], "resume");
    assert_eq!(last_transition.record.payload["policy_from"], "train-v2");
    f.verify("run");

    // Every iteration replays bit for bit across both transitions, each under its version.
    let out = f.replay("run", 14);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ok: 14 iterations replayed bit for bit"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_run_directory_is_never_overwritten() {
    let f = Fixture::new();
    assert!(f.train("config.toml", "run").status.success());
    let out = f.train("config.toml", "run");
    assert!(!out.status.success());
    assert!(text(&out).contains("already holds a run"), "{}", text(&out));
}

#[test]
fn an_unauthorized_evaluation_is_refused_and_recorded() {
    let f = Fixture::new();
    // The config asks to evaluate the held-out source every 2 iterations; the policy authorizes
    // only the loss probe, at most every 4 iterations.
    let eval = "[policy.eval]\nsources = [\"heldout\"]\nprobes = [\"loss\"]\nmin_interval = 4\n";
    f.write_config("eval.toml", 8, "halt", eval);
    let mut config = std::fs::read_to_string(f.path("eval.toml")).unwrap();
    config = config.replace(
        "[policy]",
        "[eval]\nevery = 2\nsources = [\"heldout\"]\nprobes = [\"loss\"]\n\n[policy]",
    );
    std::fs::write(f.path("eval.toml"), config).unwrap();
    let out = f.train("eval.toml", "run");
    assert!(out.status.success(), "{}", text(&out));
    let evals: Vec<serde_json::Value> = f
        .records("run")
        .iter()
        .filter(|r| r.record.kind == "train.iteration")
        .map(|r| r.record.payload["evaluation"].clone())
        .filter(|e| !e.is_null())
        .collect();
    assert_eq!(evals.len(), 4, "requested at iterations 2, 4, 6, 8");
    // 2 runs; 4 is too soon after 2; 6 runs; 8 is too soon after 6.
    assert!(evals[0]["sources"]["heldout"]["loss"].as_f64().unwrap() > 0.0);
    assert!(evals[1]["refused"][0]
        .as_str()
        .unwrap()
        .contains("at most every 4"));
    assert!(evals[1].get("sources").is_none());
    assert!(evals[2]["sources"]["heldout"]["loss"].as_f64().is_some());
    assert!(evals[3]["refused"].is_array());
    assert!(text(&out).contains("evals 2 refused 2"), "{}", text(&out));
    // The summary reports the results of the latest evaluation that ran.
    assert!(
        text(&out).contains("evaluation at iteration 6: held-out loss heldout"),
        "{}",
        text(&out)
    );
}

#[test]
fn resume_refuses_a_corpus_readmitted_into_the_run_corpus_directory_naming_both_digests() {
    let f = Fixture::new();
    assert!(f.train("config.toml", "run").status.success());
    let recorded = f.declaration_digest();
    let before = f.records("run").len();
    // Changed data admitted (and signed by the real corpus authority) into the same directory.
    f.edit_prose_line(3);
    std::fs::remove_dir_all(f.path("admitted")).unwrap();
    let corpus_key = SigningKey::from_seed(Role::CorpusAuthority, "corpus", &CORPUS_SEED).unwrap();
    warden_corpus::admit(
        &f.path("src/declaration.toml"),
        &f.path("admitted"),
        &corpus_key,
        &warden_corpus::AdmitOptions::default(),
    )
    .unwrap();
    let found = f.declaration_digest();
    assert_ne!(recorded, found);
    let out = f.resume(&["--steps", "12"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not the run's"), "{stderr}");
    assert!(stderr.contains(&recorded), "{stderr}");
    assert!(stderr.contains(&found), "{stderr}");
    assert_eq!(f.records("run").len(), before, "nothing appended");
}

#[test]
fn a_corpus_key_relabelled_training_authority_is_refused_before_anything_is_written() {
    let f = Fixture::new();
    let relabelled =
        SigningKey::from_seed(Role::TrainingAuthority, "corpus", &CORPUS_SEED).unwrap();
    std::fs::write(f.path("relabelled.key"), relabelled.to_file_text()).unwrap();
    let out = f.warden(&[
        "train",
        "config.toml",
        "--out",
        "run",
        "--key",
        "relabelled.key",
        "--trust",
        "trust.toml",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not trusted for training-authority"),
        "{stderr}"
    );
    assert!(
        stderr.contains("accepts it only as corpus-authority"),
        "{stderr}"
    );
    assert!(!f.path("run").exists(), "no run directory, no lineage");

    // Resuming a real run with it appends nothing either.
    assert!(f.train("config.toml", "run").status.success());
    let before = f.records("run").len();
    let out = f.resume(&["--steps", "12", "--key", "relabelled.key"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is not trusted for training-authority"));
    assert_eq!(f.records("run").len(), before);
    f.verify("run");
}

#[test]
fn a_policy_version_label_names_one_policy_for_the_life_of_a_run() {
    let f = Fixture::new();
    assert!(f.train("config.toml", "run").status.success());
    let v2 = "version = \"train-v2\"\nfailure = \"halt\"\ncheckpoint_every = 3\n\n[[regions]]\nmatch = \"embed\"\nfrozen = true\n";
    std::fs::write(f.path("v2.toml"), v2).unwrap();
    let out = f.resume(&["--policy", "v2.toml", "--steps", "10"]);
    assert!(out.status.success(), "{}", text(&out));
    let before = f.records("run").len();
    let digest = |text: &str| {
        warden_train::run::policy_digest(
            &warden_train::policy::TrainingPolicy::parse(text, "t").unwrap(),
        )
        .unwrap()
    };

    // Another policy called train-v2 is refused, naming the label and both digests.
    let other = v2.replace("embed", "head");
    std::fs::write(f.path("v2-other.toml"), &other).unwrap();
    let out = f.resume(&["--policy", "v2-other.toml", "--steps", "12"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("policy version \"train-v2\""), "{stderr}");
    assert!(stderr.contains(&digest(v2)), "{stderr}");
    assert!(stderr.contains(&digest(&other)), "{stderr}");

    // So is going back to the start's label with a different policy.
    let v1_other = other.replace("train-v2", "train-v1");
    std::fs::write(f.path("v1-other.toml"), &v1_other).unwrap();
    let out = f.resume(&["--policy", "v1-other.toml", "--steps", "12"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("policy version \"train-v1\""),
        "{}",
        text(&out)
    );
    assert_eq!(f.records("run").len(), before, "nothing appended");

    // The same policy under its own label (other formatting) is no conflict.
    std::fs::write(f.path("v2-again.toml"), format!("# same policy\n{v2}")).unwrap();
    let out = f.resume(&["--policy", "v2-again.toml", "--steps", "12"]);
    assert!(out.status.success(), "{}", text(&out));
    f.verify("run");
}

#[test]
fn resume_of_a_finished_run_says_it_is_complete_and_appends_nothing() {
    let f = Fixture::new();
    assert!(f.train("config.toml", "run").status.success());
    let before = f.records("run").len();
    let model = std::fs::read(f.path("run/model.safetensors")).unwrap();
    let out = f.resume(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the run is complete (8 iterations"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("NaN"), "{}", text(&out));
    assert_eq!(f.records("run").len(), before);
    assert_eq!(
        std::fs::read(f.path("run/model.safetensors")).unwrap(),
        model
    );

    // Extending it trains from the final checkpoint (no replayed iterations), one more complete.
    let out = f.resume(&["--steps", "10"]);
    assert!(out.status.success(), "{}", text(&out));
    let records = f.records("run");
    let transition = records
        .iter()
        .find(|r| r.record.kind == "train.transition")
        .unwrap();
    assert_eq!(transition.record.payload["resumed_from_iteration"], 8);
    assert_eq!(transition.record.payload["replayed_iterations"], 0);
    assert_eq!(
        kinds(&records)
            .iter()
            .filter(|k| *k == "train.complete")
            .count(),
        2
    );
    f.verify("run");
}

#[test]
fn config_errors_name_the_field_and_zero_steps_are_refused_without_a_trace() {
    let f = Fixture::new();
    f.write_config("bad.toml", 8, "halt", "");
    let bad = std::fs::read_to_string(f.path("bad.toml"))
        .unwrap()
        .replace("heads = 2", "heads = 3");
    std::fs::write(f.path("bad.toml"), bad).unwrap();
    let out = f.train("bad.toml", "run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model.heads: must divide model.width"),
        "{stderr}"
    );
    assert!(!stderr.contains("ModelConfig"), "{stderr}");
    assert!(!f.path("run").exists());

    f.write_config("zero.toml", 0, "halt", "");
    let out = f.train("zero.toml", "run");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("steps: must be at least 1"),
        "{}",
        text(&out)
    );
    assert!(!f.path("run").exists(), "no model, no run directory");
}

#[test]
fn a_failed_start_leaves_nothing_and_the_same_command_then_succeeds() {
    let f = Fixture::new();
    // The corpus is missing: refused before the run directory exists.
    let config = std::fs::read_to_string(f.path("config.toml")).unwrap();
    std::fs::write(
        f.path("missing.toml"),
        config.replace("corpus = \"admitted\"", "corpus = \"not-admitted\""),
    )
    .unwrap();
    let out = f.train("missing.toml", "run");
    assert!(!out.status.success());
    assert!(!f.path("run").exists());
    // The lineage cannot be opened (a file, not a directory): what the start wrote is removed.
    let out = f.warden(&[
        "train",
        "config.toml",
        "--out",
        "run",
        "--key",
        "trainer.key",
        "--trust",
        "trust.toml",
        "--lineage",
        "trust.toml",
    ]);
    assert!(!out.status.success());
    assert!(!f.path("run").exists(), "{}", text(&out));
    assert!(f.path("trust.toml").is_file());
    // The same command, fixed, then succeeds.
    let out = f.train("config.toml", "run");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn records_are_signed_one_by_one_by_default_and_per_window_when_configured() {
    let f = Fixture::new();
    assert!(f.train("config.toml", "run").status.success());
    let records = f.records("run");
    assert!(records.iter().all(|r| r.signature.is_some()));
    f.verify("run");

    let config = std::fs::read_to_string(f.path("config.toml")).unwrap();
    std::fs::write(
        f.path("window.toml"),
        config.replace("[policy]", "[lineage]\ncadence = \"window\"\n\n[policy]"),
    )
    .unwrap();
    let out = f.train("window.toml", "windowed");
    assert!(out.status.success(), "{}", text(&out));
    let records = f.records("windowed");
    assert!(records.iter().all(|r| r.signature.is_none()));
    let verified = f.verify("windowed");
    assert_eq!(verified.sealed, records.len() as u64);
}
