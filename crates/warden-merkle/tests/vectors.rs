//! The transparency-dev/merkle RFC 6962 proof probes, every one: the accepted ones must verify
//! and the must-fail ones (wrong index or size, truncated, extended or modified proofs, wrong or
//! swapped roots, garbage) must be refused. The files are copied verbatim into
//! `tests/data/transparency-dev/` (see the README there for the commit).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use warden_merkle::{
    leaf_hash, verify_consistency, verify_inclusion, Hash, MerkleError, MerkleTree,
};

fn probes(kind: &str) -> Vec<(PathBuf, Value)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/transparency-dev");
    let mut paths = Vec::new();
    walk(&root.join(kind), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, value)
        })
        .collect()
}

fn bytes(value: &Value) -> Vec<u8> {
    BASE64.decode(value.as_str().unwrap_or_default()).unwrap()
}

/// A base64 root or proof entry as a hash. Some probes carry values that are not 32 bytes
/// (placeholder roots such as "don't care", garbage proof entries). transparency-dev compares
/// those bytewise, so they never equal a computed hash but equal each other; our typed API
/// takes `[u8; 32]`, so each stands in as a domain-separated SHA-256 of its bytes, which keeps
/// exactly those equalities (a bare SHA-256 of the empty string would be the empty tree's root).
fn hash(value: &Value, placeholders: &mut usize) -> Hash {
    let raw = bytes(value);
    raw.as_slice().try_into().unwrap_or_else(|_| {
        *placeholders += 1;
        let mut hasher = Sha256::new();
        hasher.update(b"warden test stand-in for a non-hash value\0");
        hasher.update(&raw);
        hasher.finalize().into()
    })
}

/// Where warden-merkle deliberately differs from transparency-dev, with the reason.
const DIVERGENCES: [(&str, &str); 1] = [(
    "consistency/additional/size1-is-zero-and-size2-is-not-zero.json",
    "transparency-dev refuses any proof from size 0 as meaningless; warden-merkle accepts it when \
     the old root is the empty tree's root and the proof is empty (every tree extends the empty \
     tree), so a pinned size-0 checkpoint stays checkable",
)];

fn divergence(path: &Path) -> Option<&'static str> {
    let name = name(path);
    DIVERGENCES
        .iter()
        .find(|(file, _)| *file == name)
        .map(|(_, why)| *why)
}

fn proof(value: &Value, placeholders: &mut usize) -> Vec<Hash> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().map(|v| hash(v, placeholders)).collect(),
        _ => panic!("proof is not an array"),
    }
}

/// The 8-leaf reference tree the probes are built on (transparency-dev `testonly.LeafInputs`).
fn reference_tree() -> MerkleTree {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|input| leaf_hash(&hex::decode(input).unwrap()))
    .collect()
}

fn name(path: &Path) -> String {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/transparency-dev");
    path.strip_prefix(base).unwrap().display().to_string()
}

#[derive(Default)]
struct Tally {
    accepted: usize,
    refused: usize,
    proofs_regenerated: usize,
    placeholders: usize,
    short_leaves: usize,
}

#[test]
fn every_transparency_dev_inclusion_probe_gets_its_verdict() {
    let tree = reference_tree();
    let mut tally = Tally::default();
    let probes = probes("inclusion");
    for (path, p) in &probes {
        let want_err = p["wantErr"].as_bool().unwrap();
        let index = p["leafIdx"].as_u64().unwrap();
        let size = p["treeSize"].as_u64().unwrap();
        let root = hash(&p["root"], &mut tally.placeholders);
        let proof = proof(&p["proof"], &mut tally.placeholders);
        // A leaf hash that is not 32 bytes is refused up front, as transparency-dev refuses it
        // ("leafHash has unexpected size"); our API takes `[u8; 32]`, so that check is the
        // caller's parse.
        let result = match <[u8; 32]>::try_from(bytes(&p["leafHash"])) {
            Ok(leaf) => verify_inclusion(&leaf, index, size, &proof, &root),
            Err(_) => {
                tally.short_leaves += 1;
                Err(MerkleError::WrongProofLength)
            }
        };
        // Where the probe is about our reference tree, our prover must also produce exactly
        // the published proof.
        if result.is_ok() && size <= tree.len() && tree.root_at(size) == Ok(root) {
            let ours = tree.inclusion_proof(index, size).unwrap();
            assert_eq!(ours, proof, "{}", name(path));
            tally.proofs_regenerated += 1;
        }
        let want_err = want_err != divergence(path).is_some();
        match (want_err, result) {
            (false, Ok(())) => tally.accepted += 1,
            (true, Err(_)) => tally.refused += 1,
            (false, Err(e)) => panic!("{} ({}): refused: {e}", name(path), p["desc"]),
            (true, Ok(())) => panic!("{} ({}): accepted a must-fail probe", name(path), p["desc"]),
        }
    }
    println!(
        "inclusion: {} probes, {} accepted, {} refused as required, {} proofs regenerated, \
         {} placeholder hashes, {} leaf hashes not 32 bytes",
        probes.len(),
        tally.accepted,
        tally.refused,
        tally.proofs_regenerated,
        tally.placeholders,
        tally.short_leaves
    );
    assert_eq!(probes.len(), 98);
    assert_eq!(
        (tally.accepted, tally.refused, tally.proofs_regenerated),
        (6, 92, 5)
    );
}

#[test]
fn every_transparency_dev_consistency_probe_gets_its_verdict() {
    let tree = reference_tree();
    let mut tally = Tally::default();
    let probes = probes("consistency");
    for (path, p) in &probes {
        let want_err = p["wantErr"].as_bool().unwrap();
        let old = p["size1"].as_u64().unwrap();
        let new = p["size2"].as_u64().unwrap();
        let root1 = hash(&p["root1"], &mut tally.placeholders);
        let root2 = hash(&p["root2"], &mut tally.placeholders);
        let proof = proof(&p["proof"], &mut tally.placeholders);
        let result = verify_consistency(old, new, &root1, &root2, &proof);
        if result.is_ok()
            && old > 0
            && new <= tree.len()
            && tree.root_at(old) == Ok(root1)
            && tree.root_at(new) == Ok(root2)
        {
            let ours = tree.consistency_proof(old, new).unwrap();
            assert_eq!(ours, proof, "{}", name(path));
            tally.proofs_regenerated += 1;
        }
        let want_err = want_err != divergence(path).is_some();
        match (want_err, result) {
            (false, Ok(())) => tally.accepted += 1,
            (true, Err(_)) => tally.refused += 1,
            (false, Err(e)) => panic!("{} ({}): refused: {e}", name(path), p["desc"]),
            (true, Ok(())) => panic!("{} ({}): accepted a must-fail probe", name(path), p["desc"]),
        }
    }
    println!(
        "consistency: {} probes, {} accepted, {} refused as required, {} proofs regenerated, {} placeholder hashes",
        probes.len(), tally.accepted, tally.refused, tally.proofs_regenerated, tally.placeholders
    );
    assert_eq!(probes.len(), 98);
    // 6 accepted by both, plus the one documented divergence.
    assert_eq!(
        (tally.accepted, tally.refused, tally.proofs_regenerated),
        (7, 91, 5)
    );
}

/// Regression: a consistency "proof" from size 0 was accepted whatever the old root said, so a
/// false tree head of size 0 passed as consistent with every later tree.
#[test]
fn a_proof_from_size_zero_needs_the_empty_tree_root() {
    let tree = reference_tree();
    let root5 = tree.root_at(5).unwrap();
    let empty = warden_merkle::empty_root();
    assert_eq!(verify_consistency(0, 5, &empty, &root5, &[]), Ok(()));
    assert_eq!(verify_consistency(0, 0, &empty, &empty, &[]), Ok(()));
    let forged = [7u8; 32];
    for (old_root, new_size, new_root) in
        [(forged, 5, root5), (forged, 0, forged), (empty, 0, forged)]
    {
        assert_eq!(
            verify_consistency(0, new_size, &old_root, &new_root, &[]),
            Err(warden_merkle::MerkleError::RootMismatch)
        );
    }
    assert_eq!(
        verify_consistency(0, 5, &empty, &root5, &[empty]),
        Err(warden_merkle::MerkleError::WrongProofLength)
    );
}

#[test]
fn the_documented_divergences_name_existing_probes() {
    let all: Vec<String> = probes("consistency")
        .iter()
        .chain(probes("inclusion").iter())
        .map(|(path, _)| name(path))
        .collect();
    for (file, _) in DIVERGENCES {
        assert!(all.iter().any(|n| n == file), "{file} is not a probe");
    }
}
