//! Replays every committed seed-corpus file (`fuzz/corpus/<target>/`) through its target's
//! function, so a regression on a real output is caught by `cargo test` without the fuzzer.
//!
//! Beyond "no panic", each target must accept at least one seed: a seed corpus that the parser
//! refuses everywhere would leave the fuzzer stuck at the outer checks again.

use std::path::{Path, PathBuf};

use warden_fuzz_targets::{Outcome, TARGETS};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = corpus_root().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable seed directory").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_replays_and_every_target_accepts_a_seed() {
    let mut report = Vec::new();
    for target in TARGETS {
        let files = seeds(target.name);
        assert!(!files.is_empty(), "no seeds for target {}", target.name);
        let mut accepted = 0;
        for path in &files {
            let data = std::fs::read(path).expect("readable seed");
            if (target.run)(&data) == Outcome::Accepted {
                accepted += 1;
            }
        }
        report.push(format!(
            "{}: {accepted}/{} accepted",
            target.name,
            files.len()
        ));
        assert!(
            accepted > 0,
            "target {}: none of its {} seeds is accepted",
            target.name,
            files.len()
        );
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn every_corpus_folder_belongs_to_a_target_and_every_target_has_a_fuzz_binary() {
    for entry in std::fs::read_dir(corpus_root()).expect("fuzz/corpus exists") {
        let name = entry.expect("readable").file_name();
        let name = name.to_string_lossy();
        assert!(
            TARGETS.iter().any(|t| t.name == name),
            "fuzz/corpus/{name} has no target"
        );
    }
    let manifest =
        std::fs::read_to_string(corpus_root().join("../Cargo.toml")).expect("fuzz/Cargo.toml");
    for target in TARGETS {
        let source = corpus_root().join(format!("../fuzz_targets/{}.rs", target.name));
        assert!(source.is_file(), "no fuzz/fuzz_targets/{}.rs", target.name);
        assert!(
            manifest.contains(&format!("name = \"{}\"", target.name)),
            "fuzz/Cargo.toml has no [[bin]] {}",
            target.name
        );
    }
}

/// Seeds of one flavour must be refused: a damaged copy of a real output.
#[test]
fn a_flipped_byte_in_a_signed_seed_is_refused() {
    let target = warden_fuzz_targets::target("policy_signed_bundle").expect("target exists");
    for path in seeds(target.name) {
        let mut data = std::fs::read(&path).expect("readable seed");
        if (target.run)(&data) != Outcome::Accepted {
            continue;
        }
        // Flip a byte of the signature's base64 (inside the envelope, the last section).
        let at = data
            .windows(13)
            .rposition(|w| w == b"\"signature\": ")
            .expect("the envelope has a signature field")
            + 14;
        data[at] = if data[at] == b'A' { b'B' } else { b'A' };
        assert_eq!((target.run)(&data), Outcome::Rejected, "{}", path.display());
    }
}
