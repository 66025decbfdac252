//! Proofs that a sample is, or is not, in an admitted corpus.
//!
//! The corpus tree is the RFC 6962 tree over the distinct admitted sample hashes in ascending
//! order (leaf data = the 32-byte sample hash). Because the leaves are sorted:
//! * inclusion of `h`: the leaf index `i` and its audit path to the signed corpus root, plus the
//!   audit path of `h` in its first source's tree (leaf data again the sample hash) locating it by
//!   source and line;
//! * absence of `h`: the two adjacent leaves `lo < h < hi` at indexes `i` and `i + 1`, each with
//!   its audit path to the same root (only `hi` at index 0 when `h` sorts first, only `lo` at
//!   index `n - 1` when it sorts last, nothing when the tree is empty and its root is the empty
//!   root). Adjacent leaves of a sorted list leave no room for `h`.
//!
//! The soundness of absence proofs rests on the leaves being sorted, which the signer commits to:
//! the sample index is checked strictly ascending on load and the root is re-derived from it by
//! `corpus verify`.

use serde::{Deserialize, Serialize};
use warden_merkle::{leaf_hash, verify_inclusion, Hash, MerkleTree};

use crate::corpus::AdmittedCorpus;
use crate::error::CorpusError;
use crate::parse_hash;

/// One leaf of the sorted corpus tree with its audit path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortedLeaf {
    pub hash: String,
    pub index: u64,
    pub path: Vec<String>,
}

/// The sample's place in its source's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInclusion {
    pub source: String,
    pub line: u64,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub source_root: String,
    pub path: Vec<String>,
}

/// A proof about one sample hash against a corpus root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Proof {
    Inclusion {
        sample: String,
        corpus_root: String,
        tree_size: u64,
        leaf: SortedLeaf,
        source: SourceInclusion,
    },
    Absence {
        sample: String,
        corpus_root: String,
        tree_size: u64,
        lower: Option<SortedLeaf>,
        upper: Option<SortedLeaf>,
        /// When the sample was excluded at admission: why (flagger or malformed), for humans.
        /// Not part of the proof.
        note: Option<String>,
    },
}

fn hexes(path: &[Hash]) -> Vec<String> {
    path.iter().map(hex::encode).collect()
}

fn unhex(list: &[String]) -> Result<Vec<Hash>, CorpusError> {
    list.iter().map(|h| parse_hash(h)).collect()
}

/// Builds an inclusion or absence proof for `sample` in `corpus`.
pub fn prove(corpus: &AdmittedCorpus, sample: &Hash) -> Result<Proof, CorpusError> {
    let entries = corpus.index().entries();
    let tree: MerkleTree = entries.iter().map(|e| leaf_hash(&e.hash)).collect();
    let size = tree.len();
    let proof_err = |e: warden_merkle::MerkleError| CorpusError::Proof(e.to_string());
    let sorted_leaf = |index: usize| -> Result<SortedLeaf, CorpusError> {
        Ok(SortedLeaf {
            hash: hex::encode(entries[index].hash),
            index: index as u64,
            path: hexes(
                &tree
                    .inclusion_proof(index as u64, size)
                    .map_err(proof_err)?,
            ),
        })
    };
    match corpus.index().position(sample) {
        Ok(i) => {
            let entry = entries[i];
            let leaves = corpus.leaves(entry.first.source)?;
            let leaf_index = leaves
                .iter()
                .position(|(line, h)| *line == entry.first.line && h == sample)
                .ok_or_else(|| {
                    CorpusError::Proof(
                        "the sample index and the source's leaf list disagree".into(),
                    )
                })?;
            let source_tree: MerkleTree = leaves.iter().map(|(_, h)| leaf_hash(h)).collect();
            let source = &corpus.sources()[entry.first.source as usize];
            Ok(Proof::Inclusion {
                sample: hex::encode(sample),
                corpus_root: hex::encode(corpus.root()),
                tree_size: size,
                leaf: sorted_leaf(i)?,
                source: SourceInclusion {
                    source: source.id.clone(),
                    line: entry.first.line,
                    leaf_index: leaf_index as u64,
                    tree_size: source_tree.len(),
                    source_root: hex::encode(source_tree.root()),
                    path: hexes(
                        &source_tree
                            .inclusion_proof(leaf_index as u64, source_tree.len())
                            .map_err(proof_err)?,
                    ),
                },
            })
        }
        Err(i) => {
            let note = corpus
                .exclusions()?
                .into_iter()
                .find(|e| e.hash == hex::encode(sample))
                .map(|e| {
                    format!(
                        "excluded at admission: {} ({}) at source `{}` line {}",
                        e.reason, e.detail, e.source, e.line
                    )
                });
            Ok(Proof::Absence {
                sample: hex::encode(sample),
                corpus_root: hex::encode(corpus.root()),
                tree_size: size,
                lower: if i > 0 {
                    Some(sorted_leaf(i - 1)?)
                } else {
                    None
                },
                upper: if i < entries.len() {
                    Some(sorted_leaf(i)?)
                } else {
                    None
                },
                note,
            })
        }
    }
}

fn check_leaf(leaf: &SortedLeaf, size: u64, root: &Hash) -> Result<Hash, CorpusError> {
    let hash = parse_hash(&leaf.hash)?;
    verify_inclusion(
        &leaf_hash(&hash),
        leaf.index,
        size,
        &unhex(&leaf.path)?,
        root,
    )
    .map_err(|e| CorpusError::Proof(format!("leaf {}: {e}", leaf.index)))?;
    Ok(hash)
}

/// Checks a proof against a corpus root obtained from a verified declaration. For inclusion,
/// `source_root` is the source's signed root.
pub fn verify_proof(
    proof: &Proof,
    corpus_root: &Hash,
    source_root: Option<&Hash>,
) -> Result<(), CorpusError> {
    let bad = |m: &str| Err(CorpusError::Proof(m.to_string()));
    match proof {
        Proof::Inclusion {
            sample,
            tree_size,
            leaf,
            source,
            ..
        } => {
            let sample = parse_hash(sample)?;
            if parse_hash(&leaf.hash)? != sample {
                return bad("the proven leaf is not the sample");
            }
            check_leaf(leaf, *tree_size, corpus_root)?;
            let source_root_claimed = parse_hash(&source.source_root)?;
            if let Some(expected) = source_root {
                if expected != &source_root_claimed {
                    return bad("the source root in the proof is not the signed one");
                }
            }
            verify_inclusion(
                &leaf_hash(&sample),
                source.leaf_index,
                source.tree_size,
                &unhex(&source.path)?,
                &source_root_claimed,
            )
            .map_err(|e| CorpusError::Proof(format!("source `{}`: {e}", source.source)))
        }
        Proof::Absence {
            sample,
            tree_size,
            lower,
            upper,
            ..
        } => {
            let sample = parse_hash(sample)?;
            let n = *tree_size;
            match (lower, upper) {
                (None, None) => {
                    if n == 0 && *corpus_root == warden_merkle::empty_root() {
                        Ok(())
                    } else {
                        bad("no neighbours given for a non-empty tree")
                    }
                }
                (Some(lo), None) => {
                    let h = check_leaf(lo, n, corpus_root)?;
                    if lo.index + 1 != n || h >= sample {
                        return bad("the lower neighbour is not the last leaf below the sample");
                    }
                    Ok(())
                }
                (None, Some(hi)) => {
                    let h = check_leaf(hi, n, corpus_root)?;
                    if hi.index != 0 || h <= sample {
                        return bad("the upper neighbour is not the first leaf above the sample");
                    }
                    Ok(())
                }
                (Some(lo), Some(hi)) => {
                    let l = check_leaf(lo, n, corpus_root)?;
                    let h = check_leaf(hi, n, corpus_root)?;
                    if lo.index + 1 != hi.index || !(l < sample && sample < h) {
                        return bad("the neighbours are not adjacent leaves around the sample");
                    }
                    Ok(())
                }
            }
        }
    }
}
