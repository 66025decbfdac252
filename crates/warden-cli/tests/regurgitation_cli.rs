//! `warden bench regurgitation --keep DIR` end to end with a tiny model: the kept layout (issue 9's
//! CLI contract), a table that parses with consistent numbers, a kept directory measured again
//! with the same numbers, and a tampered kept run refused.
//!
//! The tiny model is too small to memorise anything in a CI-sized run, so these tests check the
//! structure and the invariants that hold whatever it learned (counts, shares within their
//! calls, the bundle bound to the run's manifest); the default run's numbers are measured by
//! hand (README).

use std::path::Path;
use std::process::{Command, Output};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

/// Small enough for CI's two cores: 3 documents, 30 steps of a 1-layer, 16-wide model.
const TINY: &[&str] = &[
    "--docs",
    "3",
    "--repeats",
    "3",
    "--recased-repeats",
    "1",
    "--deep-docs",
    "4",
    "--heldout",
    "2",
    "--doc-bytes",
    "120",
    "--prompt-bytes",
    "32",
    "--max-tokens",
    "24",
    "--steps",
    "30",
    "--layers",
    "1",
    "--width",
    "16",
    "--batch",
    "4",
    "--context",
    "32",
];

fn warden(args: &[&str]) -> Output {
    Command::new(WARDEN)
        .args(args)
        .output()
        .expect("runs warden")
}

fn succeed(args: &[&str]) -> String {
    let out = warden(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "warden {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The cells after `label` in the table row starting with it.
fn row<'a>(stdout: &'a str, label: &str) -> Vec<&'a str> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{stdout}"));
    line[label.len()..].split_whitespace().collect()
}

/// `"k/n"` of a share cell (`k/n (p%)`).
fn share(cell: &str) -> (usize, usize) {
    let (k, n) = cell.split_once('/').expect("a k/n share");
    (k.parse().unwrap(), n.parse().unwrap())
}

fn prompt_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("prompts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The table's numbers, row by row (for comparing two runs).
fn table(stdout: &str) -> Vec<Vec<String>> {
    [
        "regurgitated, as written",
        "regurgitated, ALL CAPS",
        "longest run B, as written",
        "longest run B, ALL CAPS",
        "false refusals, held-out deep",
    ]
    .iter()
    .map(|label| row(stdout, label).iter().map(|s| s.to_string()).collect())
    .collect()
}

#[test]
fn keep_leaves_the_contract_layout_and_measures_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kept");
    let dir_str = dir.to_str().unwrap();
    let mut args = vec!["bench", "regurgitation", "--keep", dir_str];
    args.extend_from_slice(TINY);
    let stdout = succeed(&args);

    // The contract's layout: prompts, the run with its signed manifest, the bundle directory
    // `policy admit` writes, the trust file.
    for path in [
        "prompts.jsonl",
        "trust.toml",
        "run/model.safetensors",
        "run/manifest.intoto.json",
        "bundle/bundle.admitted.json",
        "bundle/head.json",
        "keys/deployment.key",
    ] {
        assert!(
            dir.join(path).exists(),
            "{path} missing in {}",
            dir.display()
        );
    }
    // The bundle verifies through `warden policy show` and names the run's manifest digest.
    let manifest = std::fs::read(dir.join("run/manifest.intoto.json")).unwrap();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&manifest));
    let show = succeed(&[
        "policy",
        "show",
        dir.join("bundle").to_str().unwrap(),
        "--trust",
        dir.join("trust.toml").to_str().unwrap(),
    ]);
    assert!(show.contains(&format!("sha256:{digest}")), "{show}");

    // prompts.jsonl: exactly the three contract fields; memorised prompts as written and in
    // ALL CAPS, held-out ones; each prompt opens its source document.
    let lines = prompt_lines(&dir);
    assert_eq!(lines.len(), 3 + 3 + 2);
    let mut kinds = std::collections::BTreeMap::new();
    for line in &lines {
        let object = line.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["kind", "prompt", "source_text"]);
        let prompt = line["prompt"].as_str().unwrap();
        let source = line["source_text"].as_str().unwrap();
        let kind = line["kind"].as_str().unwrap();
        assert_eq!(prompt.len(), 32);
        let recased = prompt != &source[..32];
        if recased {
            assert_eq!(kind, "memorized");
            assert_eq!(prompt, source[..32].to_ascii_uppercase());
        }
        *kinds.entry((kind.to_string(), recased)).or_insert(0) += 1;
    }
    assert_eq!(kinds[&("memorized".to_string(), false)], 3);
    assert_eq!(kinds[&("memorized".to_string(), true)], 3);
    assert_eq!(kinds[&("heldout".to_string(), false)], 2);

    // The table: every row counts its calls; shares are k/n of those calls; runs are within
    // the generated length; the bound derived from the manifest is printed.
    for (label, calls) in [
        ("regurgitated, as written", 3),
        ("regurgitated, ALL CAPS", 3),
    ] {
        let cells = row(&stdout, label);
        assert_eq!(cells[0], calls.to_string(), "{stdout}");
        for cell in [cells[1], cells[3]] {
            let (k, n) = share(cell);
            assert_eq!(n, calls);
            assert!(k <= n);
        }
        assert_eq!(cells.last(), Some(&"0"));
    }
    for label in ["longest run B, as written", "longest run B, ALL CAPS"] {
        let cells = row(&stdout, label);
        let ungoverned: usize = cells[1].parse().unwrap();
        let governed: usize = cells[2].parse().unwrap();
        assert!(ungoverned <= 24 && governed <= 24, "{stdout}");
    }
    let cells = row(&stdout, "false refusals, held-out deep");
    assert_eq!(cells[0], "2");
    assert_eq!(cells[1], "-");
    assert_eq!(share(cells[2]).1, 2);
    assert!(
        stdout.contains("bound: output.verbatim.licensed_lyrics <= 8 fingerprint words"),
        "{stdout}"
    );

    // The kept directory is measured again (verified, not retrained) with the same numbers:
    // greedy decoding is deterministic.
    let again = succeed(&[
        "bench",
        "regurgitation",
        "--keep",
        dir_str,
        "--max-tokens",
        "24",
    ]);
    assert!(again.contains("reusing"), "{again}");
    assert!(!again.contains(" iterations in "), "{again}");
    assert_eq!(table(&again), table(&stdout));

    // A kept run whose weights were changed is refused, naming the digest mismatch.
    let weights = dir.join("run/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&weights, bytes).unwrap();
    let out = warden(&["bench", "regurgitation", "--keep", dir_str]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("model digest mismatch"), "{stderr}");
}

#[test]
fn keep_refuses_a_directory_that_is_not_a_kept_run() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "unrelated").unwrap();
    let out = warden(&[
        "bench",
        "regurgitation",
        "--keep",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a complete kept run") && stderr.contains("prompts.jsonl"),
        "{stderr}"
    );
    // Nothing was written into it.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}
