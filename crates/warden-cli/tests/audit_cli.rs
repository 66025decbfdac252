//! `warden audit` end to end: real binary, a real tiny training run (with a quarantine and a
//! policy change), the terminal summary, `--json`, and the HTML report rendered in headless
//! Chromium.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use warden_keys::{Role, SigningKey, TrustStore};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

const DECLARATION: &str = r#"
[corpus]
name = "tiny"
description = "audit_cli fixture"

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

fn policy(version: &str, max_norm: f64) -> String {
    format!(
        r#"version = "{version}"
failure = "quarantine"
checkpoint_every = 2
lineage = {{ cadence = "step" }}

[eval]
sources = ["heldout"]
probes = ["loss"]
min_interval = 2

[[regions]]
match = "*"
max_norm = {max_norm}

[[regions]]
match = "layer0.attn"
on_excess = "reject"
"#
    )
}

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

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// An admitted corpus, keys, a trust file and a config of `steps` iterations.
    fn new(steps: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let src = root.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("prose.txt"), paragraphs("prose", 40)).unwrap();
        std::fs::write(src.join("notes.txt"), paragraphs("note", 20)).unwrap();
        std::fs::write(src.join("heldout.txt"), paragraphs("held", 10)).unwrap();
        std::fs::write(src.join("declaration.toml"), DECLARATION).unwrap();
        let corpus_key = SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[7; 32]).unwrap();
        let training_key = SigningKey::generate(Role::TrainingAuthority, "trainer").unwrap();
        let mut trust = TrustStore::new();
        trust.add(Role::CorpusAuthority, corpus_key.public().clone());
        trust.add(Role::TrainingAuthority, training_key.public().clone());
        std::fs::write(root.join("trust.toml"), trust.to_toml()).unwrap();
        std::fs::write(root.join("trainer.key"), training_key.to_file_text()).unwrap();
        warden_corpus::admit(
            &src.join("declaration.toml"),
            &root.join("admitted"),
            &corpus_key,
            &warden_corpus::AdmitOptions::default(),
        )
        .unwrap();
        let config = format!(
            "corpus = \"admitted\"\nseed = 3\nsteps = {steps}\nbatch_size = 4\n\n\
             [model]\nlayers = 1\nwidth = 16\nheads = 2\ncontext = 32\n\n\
             [optimizer]\nlearning_rate = 0.01\n\n\
             [eval]\nevery = 2\nsources = [\"heldout\"]\nprobes = [\"loss\"]\nmax_samples = 4\n\n\
             [policy]\n{}",
            policy("audit-v1", 5.0)
                .replace("[eval]", "[policy.eval]")
                .replace("[[regions]]", "[[policy.regions]]")
        );
        std::fs::write(root.join("config.toml"), config).unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn warden(&self, args: &[&str]) -> Output {
        Command::new(WARDEN)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn train(&self) {
        let out = self.warden(&[
            "train",
            "config.toml",
            "--out",
            "run",
            "--key",
            "trainer.key",
            "--trust",
            "trust.toml",
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn an_honest_run_with_a_quarantine_and_a_policy_change_passes() {
    let fx = Fixture::new(6);
    // Samples edited after admission fail the data gate: the run quarantines them and rolls
    // back, which the audit must accept as handled by the failure mode.
    let prose = fx.path("src/prose.txt");
    let edited: Vec<String> = std::fs::read_to_string(&prose)
        .unwrap()
        .split("\n\n")
        .enumerate()
        .map(|(i, p)| {
            if i % 3 == 0 {
                format!("{p} (edited after admission)")
            } else {
                p.to_string()
            }
        })
        .collect();
    std::fs::write(&prose, edited.join("\n\n")).unwrap();
    fx.train();
    std::fs::write(fx.path("policy-v2.toml"), policy("audit-v2", 0.05)).unwrap();
    let out = fx.warden(&[
        "train",
        "resume",
        "run",
        "--policy",
        "policy-v2.toml",
        "--steps",
        "9",
        "--key",
        "trainer.key",
        "--trust",
        "trust.toml",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let records = warden_store::read_all(&fx.path("run/lineage")).unwrap();
    assert!(
        records.iter().any(|r| r.record.kind == "train.failure"),
        "the fixture must exercise a quarantine"
    );
    assert!(records.iter().any(|r| r.record.kind == "train.transition"));

    let out = fx.warden(&["audit", "run", "--trust", "trust.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for check in [
        "lineage",
        "policy",
        "data",
        "gradients",
        "evaluation",
        "failures",
        "outcome",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(check) && l.contains("passed")),
            "{check} not reported passed:\n{stdout}"
        );
    }
    assert!(stdout.contains("audit passed"), "{stdout}");

    // The trust file is found beside the run without --trust; --json is one object, here
    // with two inclusion proofs that verified against the signed roots.
    let out = fx.warden(&["audit", "run", "--json", "--prove", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 7);
    assert!(checks.iter().all(|c| c["passed"] == true));
    let versions: Vec<&str> = report["timeline"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["audit-v1", "audit-v2"]);
    let proofs = report["inclusion_proofs"].as_array().unwrap();
    assert_eq!(proofs.len(), 2);
    for proof in proofs {
        assert_eq!(proof["problem"], serde_json::Value::Null, "{proof}");
        assert_eq!(proof["proof"]["kind"], "inclusion", "{proof}");
        assert_eq!(proof["proof"]["sample"], proof["hash"], "{proof}");
    }
    assert!(!report["timeline"]["failures"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// Debian's chromium, installed when missing; the test fails if it cannot be.
fn chromium() -> PathBuf {
    let find = || {
        ["chromium", "chromium-browser"].iter().find_map(|name| {
            Command::new("which")
                .arg(name)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        })
    };
    if let Some(path) = find() {
        return path;
    }
    let install = Command::new("sh")
        .args([
            "-c",
            // Wait for another apt run's lock rather than fail on it.
            "apt-get -o DPkg::Lock::Timeout=600 update && DEBIAN_FRONTEND=noninteractive \
             apt-get -o DPkg::Lock::Timeout=600 install -y chromium",
        ])
        .output()
        .expect("running apt-get to install chromium");
    assert!(
        install.status.success(),
        "installing chromium failed: {}",
        text(&install)
    );
    find().expect("chromium is installed but not on PATH")
}

fn dump_dom(html: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_html_report_renders_in_chromium_and_lists_a_planted_violation() {
    let fx = Fixture::new(4);
    fx.train();
    let report_path = fx.path("honest.html");
    let out = fx.warden(&["audit", "run", "--html", report_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let dom = dump_dom(&report_path);
    for section in [
        "id=\"checks\"",
        "id=\"findings\"",
        "training loss per iteration",
        "region verdicts per iteration",
        "id=\"classes\"",
        "id=\"refusals\"",
        "id=\"policies\"",
        "<svg",
        "<polyline",
    ] {
        assert!(dom.contains(section), "the rendered report lacks {section}");
    }
    assert!(dom.contains("No findings"));
    // Nothing external: no scripts, no links, no remote images.
    let html = std::fs::read_to_string(&report_path).unwrap();
    // (No src or href at all, no CSS url(), no @import: nothing that could load from anywhere.)
    for external in [
        "<script", "<link", "src=", "href=", "url(", "@import", "<iframe",
    ] {
        assert!(!html.contains(external), "the report loads {external}");
    }

    // Plant a violation: the model file no longer matches the manifest and the lineage.
    let model = fx.path("run/model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&model, bytes).unwrap();
    let complete = warden_store::read_all(&fx.path("run/lineage"))
        .unwrap()
        .iter()
        .find(|r| r.record.kind == "train.complete")
        .unwrap()
        .record
        .seq;
    let report_path = fx.path("planted.html");
    let out = fx.warden(&["audit", "run", "--html", report_path.to_str().unwrap()]);
    assert!(!out.status.success(), "a planted violation must fail");
    let output = text(&out);
    assert!(
        output.contains(&format!("record {complete}")) && output.contains("model.safetensors"),
        "{output}"
    );
    assert!(output.contains("audit failed"), "{output}");
    let dom = dump_dom(&report_path);
    let findings = dom
        .split("id=\"findings\"")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .expect("the findings table");
    let row = findings
        .split("<tr>")
        .find(|row| row.contains("model.safetensors"))
        .unwrap_or_else(|| panic!("no finding names the model file: {findings}"));
    assert!(row.contains("outcome"), "{row}");
    assert!(row.contains(&format!("<td>{complete}</td>")), "{row}");
    assert!(dom.contains("FAILED"));
}
