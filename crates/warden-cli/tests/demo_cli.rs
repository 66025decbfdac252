//! `warden demo` end to end: the README's first command must work from a clean directory.
//! (That a rerun replaces an earlier demo directory is a unit test in `cmd/demo.rs`.)

use std::process::Command;

#[test]
fn demo_runs_the_pipeline_and_its_lineage_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    // A relative --dir, as the README runs it (regression: the training config written with a
    // path relative to the working directory instead of absolute).
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(tmp.path())
        .args(["demo", "--dir", "demo"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("inclusion proof for record 123"), "{text}");
    assert!(
        text.contains("== final: verify the whole lineage\nok: "),
        "{text}"
    );
    // The decoding stage reports each case it set out to show, shown or not (never assumed),
    // and shows all three (a leading newline: "NOT shown: ..." must not match).
    assert!(
        text.contains("\nshown: a call with every token admitted\n"),
        "{text}"
    );
    assert!(
        text.contains("\nshown: a rejected candidate replaced by the next one\n"),
        "{text}"
    );
    assert!(text.contains("\nshown: a policy stop\n"), "{text}");
    assert!(
        text.contains("rejected by safety.no-stutter\n"),
        "the rejection is printed with its predicate: {text}"
    );
    // The demo ends by auditing its own run: every check passes and the report is written.
    let audit = text
        .split("== audit:")
        .nth(1)
        .expect("an audit stage")
        .split("\n== ")
        .next()
        .unwrap_or_default();
    assert!(audit.contains("audit passed"), "{audit}");
    assert_eq!(audit.matches(" passed ").count(), 7, "{audit}");
    assert_eq!(audit.matches(": verified").count(), 3, "{audit}");
    let html = std::fs::read_to_string(dir.join("audit.html")).unwrap();
    assert!(html.contains("warden audit: <span class=\"pass\">PASSED"));
    // And a user can audit it again from the run directory alone (lineage from run.json,
    // trust file beside the lineage).
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["audit", dir.join("train-run").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["lineage", "verify", dir.join("lineage").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = warden_store::read_all(&dir.join("lineage")).unwrap();
    assert!(
        records.len() >= 300,
        "a few hundred records, got {}",
        records.len()
    );
    for kind in [
        "key",
        "note",
        "deploy.heartbeat",
        "corpus.admission",
        "policy.admission",
        "policy.rejection",
        "train.start",
        "train.iteration",
        "train.complete",
        "call.generate",
    ] {
        assert!(
            records.iter().any(|r| r.record.kind == kind),
            "no {kind} record"
        );
    }

    // What a user starts from: the demo's training config and a real run directory whose
    // records are in the demo's one lineage (regression: the run directory had no config).
    for file in [
        "config.toml",
        "policy.toml",
        "run.json",
        "model.safetensors",
    ] {
        assert!(
            dir.join("train-run").join(file).exists(),
            "no train-run/{file}"
        );
    }
    let key = dir.join("keys/training.key");
    let trust = dir.join("trust.toml");
    let resume = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["train", "resume"])
        .arg(dir.join("train-run"))
        .arg("--key")
        .arg(&key)
        .arg("--trust")
        .arg(&trust)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&resume.stdout);
    assert!(resume.status.success(), "{said}");
    assert!(
        said.contains("the run is complete (60 iterations"),
        "{said}"
    );
    let fresh = tmp.path().join("my-run");
    let start = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("train")
        .arg(dir.join("train.toml"))
        .arg("--out")
        .arg(&fresh)
        .arg("--key")
        .arg(&key)
        .arg("--trust")
        .arg(&trust)
        .output()
        .unwrap();
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    // The demo's run and bundle are usable from the command line: a free caller is stopped at
    // the bundle's 24-token bound.
    let generated = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(tmp.path())
        .args([
            "generate",
            "--model",
            "demo/train-run",
            "--bundle",
            "demo/generate/bundle",
            "--trust",
            "demo/trust.toml",
            "--prompt",
            "The harbour keeper wrote that the ",
            "--set",
            "caller.tier=free",
            "--max-tokens",
            "40",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let object: serde_json::Value = serde_json::from_slice(&generated.stdout).unwrap();
    assert_eq!(object["stop"], "policy", "{object}");
    assert_eq!(object["summary"]["tokens"], 24, "{object}");
    // A gold caller, greedy: the model stutters, the corpus's `stutter` flagger sees the
    // candidate that would complete "the the", `safety.no-stutter` rejects it and the next one
    // is emitted instead; the call runs to its length, the stutter never in the output.
    let object = generate_json(
        tmp.path(),
        &["--set", "caller.tier=gold", "--max-tokens", "40"],
    );
    assert_eq!(object["stop"], "length", "{object}");
    let output = object["text"].as_str().unwrap().to_lowercase();
    assert!(!output.contains("the the"), "{object}");
    let interventions = object["summary"]["interventions"].as_array().unwrap();
    assert!(!interventions.is_empty(), "{object}");
    for intervention in interventions {
        assert_eq!(intervention["action"], "rejected", "{object}");
        assert_eq!(
            intervention["predicates"],
            serde_json::json!(["safety.no-stutter"]),
            "{object}"
        );
        assert_eq!(intervention["candidate_text"], "e", "{object}");
    }
    // The demo's sampled gold call, as printed: every token admitted, the same on every run.
    let sampled = [
        "--set",
        "caller.tier=gold",
        "--max-tokens",
        "40",
        "--temperature",
        "0.7",
        "--seed",
        "0",
    ];
    let object = generate_json(tmp.path(), &sampled);
    assert_eq!(object["stop"], "length", "{object}");
    assert_eq!(object["summary"]["tokens"], 40, "{object}");
    assert_eq!(
        object["summary"]["interventions"],
        serde_json::json!([]),
        "{object}"
    );
    assert_eq!(generate_json(tmp.path(), &sampled)["text"], object["text"]);
    // Same config, corpus and seed: the same model, bit for bit.
    assert_eq!(
        std::fs::read(fresh.join("model.safetensors")).unwrap(),
        std::fs::read(dir.join("train-run/model.safetensors")).unwrap()
    );
}

/// `warden generate --json` on the demo's run and bundle with the harbour prompt and `extra`
/// flags, run in `dir` (which holds `demo/`).
fn generate_json(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(dir)
        .args([
            "generate",
            "--model",
            "demo/train-run",
            "--bundle",
            "demo/generate/bundle",
            "--trust",
            "demo/trust.toml",
            "--prompt",
            "The harbour keeper wrote that the ",
            "--json",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn demo_refuses_a_directory_it_did_not_create() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), b"keep me").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["demo", "--dir", tmp.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("was not made by `warden demo`"));
    assert_eq!(
        std::fs::read(tmp.path().join("precious.txt")).unwrap(),
        b"keep me"
    );
}
