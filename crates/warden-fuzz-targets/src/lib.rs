//! The body of every fuzz target, as a plain function over the input bytes.
//!
//! `fuzz/fuzz_targets/<name>.rs` (cargo-fuzz, libFuzzer) calls [`target`]`(name)`, and the
//! workspace test `tests/replay_seeds.rs` calls the same function on every file of the committed
//! seed corpus `fuzz/corpus/<name>/`, so a regression on a seed is caught by `cargo test` without
//! the fuzzer. Each function must never panic on any input; where the format has a canonical
//! encoder it also asserts the round trip (decode → encode → decode gives the same thing), and a
//! panic is how a broken property is reported.
//!
//! Inputs that need several files (a trust file and a signed artifact, a lineage directory's
//! segment and checkpoint files) are one byte string cut into sections by [`SECTION`]; the seeds
//! hold real files joined that way, so the fuzzer starts past the signature checks.

mod corpus;
mod keys;
mod lineage;
mod policy;
mod train;

/// Separates the files of a multi-file input (see [`sections`]).
pub const SECTION: &[u8] = b"\n%%warden-fuzz-section%%\n";

/// What a target made of its input: the replay test insists that some seed of every target is
/// accepted, so the seeds demonstrably reach past the outer checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The input parsed (and verified, where the target verifies) and every round trip held.
    Accepted,
    /// The input was refused with an error, as hostile input should be.
    Rejected,
}

/// One fuzz target: its name (the `fuzz/` binary and the `fuzz/corpus/` folder) and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> Outcome,
    /// What the target reaches, for the table in README.
    pub reaches: &'static str,
}

/// Every target, in the order `fuzz/run-all.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "lineage_entry",
        run: lineage::entry,
        reaches: "stored record entry: strict CBOR decode, re-encode, JSON form, verifier",
    },
    Target {
        name: "lineage_json",
        run: lineage::json,
        reaches: "JSON audit record decode (export --format json) and its CBOR twin",
    },
    Target {
        name: "checkpoint_note",
        run: lineage::checkpoint_note,
        reaches: "signed-note checkpoint parse, re-render, co-signature check",
    },
    Target {
        name: "segment_frames",
        run: lineage::segment_frames,
        reaches: "segment / checkpoint file framing scan and its re-encoding",
    },
    Target {
        name: "store_read",
        run: lineage::store_read,
        reaches: "a lineage directory end to end: verify, read_all, read_checkpoints, open",
    },
    Target {
        name: "policy_bundle",
        run: policy::bundle,
        reaches: "policy bundle TOML, expression parser, type checker, canonical text",
    },
    Target {
        name: "policy_signed_bundle",
        run: policy::signed_bundle,
        reaches: "signed bundle JSON (bundle.admitted.json): verify, re-parse, compile",
    },
    Target {
        name: "corpus_declaration",
        run: corpus::declaration,
        reaches: "corpus declaration TOML (licenses, regexes, sources)",
    },
    Target {
        name: "corpus_source_text",
        run: corpus::source_text,
        reaches: "the text-document splitter (blank-line separated samples)",
    },
    Target {
        name: "corpus_source_jsonl",
        run: corpus::source_jsonl,
        reaches: "the JSONL splitter (text field of each line)",
    },
    Target {
        name: "corpus_signed_declaration",
        run: corpus::signed_declaration,
        reaches: "declaration.json / .sig / samples.idx through AdmittedCorpus::load",
    },
    Target {
        name: "corpus_sample_index",
        run: corpus::sample_index,
        reaches: "samples.idx parser and lookups",
    },
    Target {
        name: "corpus_fingerprint_index",
        run: corpus::fingerprint_index,
        reaches: "fingerprints/<class>.fp parser and lookups",
    },
    Target {
        name: "train_canaries",
        run: train::canaries,
        reaches: "canaries.json (training evaluation and synth form)",
    },
    Target {
        name: "train_config",
        run: train::config,
        reaches: "training config TOML, validation, canonical config text",
    },
    Target {
        name: "train_policy",
        run: train::policy,
        reaches: "training policy TOML (resume --policy), canonical text, resolution",
    },
    Target {
        name: "train_checkpoint",
        run: train::checkpoint,
        reaches: "safetensors checkpoint / model reading and the canonical writer",
    },
    Target {
        name: "attest_envelope",
        run: keys::dsse_envelope,
        reaches: "DSSE envelope JSON (manifest.intoto.json), signature, in-toto statement",
    },
    Target {
        name: "key_file",
        run: keys::key_file,
        reaches: "private key files, .pub files, signed-note verifier keys",
    },
    Target {
        name: "trust_file",
        run: keys::trust_file,
        reaches: "the trust file TOML and its canonical text",
    },
];

/// The target called `name`, if there is one.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Cuts `data` at each [`SECTION`] into exactly `N` parts; missing parts are empty and anything
/// after the `N`th separator stays in the last part.
pub fn sections<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&data[..0]; N];
    let mut rest = data;
    for slot in out.iter_mut().take(N - 1) {
        match find(rest, SECTION) {
            Some(at) => {
                *slot = &rest[..at];
                rest = &rest[at + SECTION.len()..];
            }
            None => {
                *slot = rest;
                rest = &rest[rest.len()..];
                break;
            }
        }
    }
    if let Some(last) = out.last_mut() {
        if !rest.is_empty() {
            *last = rest;
        }
    }
    out
}

/// Joins files into one multi-file input (the inverse of [`sections`]).
pub fn join_sections(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(SECTION)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A trust store from a trust-file section; a section that does not parse gives an empty store
/// (the artifact is then still parsed, and refused at its signature).
fn trust_from(section: &[u8]) -> warden_keys::TrustStore {
    std::str::from_utf8(section)
        .ok()
        .and_then(|text| warden_keys::TrustStore::parse(text, "fuzz-trust.toml").ok())
        .unwrap_or_default()
}

/// A scratch directory for targets that must go through files (under `TMPDIR`; `run-all.sh`
/// points it at a RAM disk when there is one). Creating it is the harness's business: failing
/// to is not a finding about the input, so it panics loudly instead of hiding the input.
fn scratch_dir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("fuzz harness: cannot create a scratch directory: {e}"),
    }
}

/// Writes a scratch file (harness failure, not an input finding, if it cannot).
fn write_scratch(path: &std::path::Path, bytes: &[u8]) {
    if let Err(e) = std::fs::write(path, bytes) {
        panic!("fuzz harness: cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_split_and_join_inverse() {
        let joined = join_sections(&[b"trust", b"", b"seg\nment"]);
        assert_eq!(sections::<3>(&joined), [&b"trust"[..], b"", b"seg\nment"]);
        assert_eq!(sections::<2>(b"only"), [&b"only"[..], b""]);
        // A fourth part stays in the last section.
        let four = join_sections(&[b"a", b"b", b"c"]);
        assert_eq!(sections::<2>(&four)[1], &join_sections(&[b"b", b"c"])[..]);
    }

    #[test]
    fn target_names_are_unique() {
        let mut names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TARGETS.len());
    }
}
