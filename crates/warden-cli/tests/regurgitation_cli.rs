//! `warden bench regurgitation --keep DIR` end to end with a tiny model: the kept layout (the
//! contract of issue 9 §4) and the measurement's table; `--reuse DIR` measures it again.

use std::path::Path;
use std::process::Command;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

/// Small enough for CI's two cores: 4 documents, 40 steps of a 1-layer, 16-wide model.
const TINY: &[&str] = &[
    "--docs",
    "4",
    "--repeats",
    "3",
    "--recased-repeats",
    "1",
    "--deep-docs",
    "4",
    "--heldout",
    "3",
    "--doc-bytes",
    "150",
    "--prompt-bytes",
    "32",
    "--max-tokens",
    "24",
    "--steps",
    "40",
    "--layers",
    "1",
    "--width",
    "16",
    "--batch",
    "8",
    "--context",
    "32",
];

fn warden(args: &[&str]) -> (String, String) {
    let out = Command::new(WARDEN)
        .args(args)
        .output()
        .expect("runs warden");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "warden {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// The table row for `decoding` and `group`: its numbers.
fn row<'a>(stdout: &'a str, decoding: &str, group: &str) -> Vec<&'a str> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(decoding) && l[decoding.len()..].trim_start().starts_with(group))
        .unwrap_or_else(|| panic!("no row {decoding} / {group} in:\n{stdout}"));
    line[decoding.len()..].trim_start()[group.len()..]
        .split_whitespace()
        .collect()
}

fn prompt_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("prompts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn keep_leaves_the_documented_layout_and_reuse_measures_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kept");
    let dir_str = dir.to_str().unwrap();
    let mut args = vec!["bench", "regurgitation", "--keep", dir_str];
    args.extend_from_slice(TINY);
    let (stdout, _) = warden(&args);

    // The layout: prompts, the run with its signed manifest, the trust file and keys.
    for path in [
        "prompts.jsonl",
        "trust.toml",
        "run/model.safetensors",
        "run/manifest.intoto.json",
        "keys/training.key",
        "keys/deployment.key",
    ] {
        assert!(
            dir.join(path).is_file(),
            "{path} missing in {}",
            dir.display()
        );
    }
    let lines = prompt_lines(&dir);
    let kinds: Vec<(&str, bool)> = lines
        .iter()
        .map(|l| (l["kind"].as_str().unwrap(), l["recased"] == true))
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == ("memorized", false)).count(),
        4
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == ("memorized", true)).count(),
        4
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == ("heldout", false)).count(),
        3
    );
    for line in &lines {
        let prompt = line["prompt"].as_str().unwrap();
        let source = line["source_text"].as_str().unwrap();
        assert_eq!(prompt.len(), 32);
        assert!(source.len() >= 150 || line["kind"] == "heldout");
        if line["recased"] == true {
            assert_eq!(prompt, source[..32].to_ascii_uppercase());
        } else {
            assert_eq!(prompt, &source[..32]);
        }
    }
    // Every group has its row, counting its prompts.
    assert_eq!(row(&stdout, "ungoverned", "memorized,")[0], "4", "{stdout}");
    assert_eq!(row(&stdout, "ungoverned", "held-out deep")[0], "3");

    // A kept directory is refused as a new --keep target, and re-measured by --reuse with the
    // same (deterministic, greedy) numbers.
    let mut again = vec!["bench", "regurgitation", "--keep", dir_str];
    again.extend_from_slice(TINY);
    let out = Command::new(WARDEN).args(&again).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exists and is not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (reused, _) = warden(&[
        "bench",
        "regurgitation",
        "--reuse",
        dir_str,
        "--max-tokens",
        "24",
    ]);
    for group in ["memorized", "memorized,", "held-out deep"] {
        assert_eq!(
            row(&reused, "ungoverned", group),
            row(&stdout, "ungoverned", group)
        );
    }
}
