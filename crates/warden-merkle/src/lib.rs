//! RFC 6962 / RFC 9162 Merkle tree hashing with inclusion and consistency proofs.
//!
//! Leaves hash as `SHA-256(0x00 ‖ data)`, interior nodes as `SHA-256(0x01 ‖ left ‖ right)`, the
//! empty tree as `SHA-256("")`, and a tree of `n` leaves splits at the largest power of two smaller
//! than `n` — exactly the standard, so proofs produced here verify with any RFC 6962 implementation
//! (checked against the Certificate Transparency known-answer vectors in the tests).
//!
//! [`MerkleTree`] keeps every complete subtree it has seen, so appending is amortised O(1),
//! the current root is O(log n), and any historical root or proof is O(log² n) without rehashing
//! leaves. The crate does no IO.

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Errors from proof generation and verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("leaf index {index} is not inside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {requested} is larger than the tree ({available} leaves)")]
    SizeOutOfRange { requested: u64, available: u64 },
    #[error("consistency proof needs old size ≤ new size, got {old} > {new}")]
    SizesReversed { old: u64, new: u64 },
    #[error("proof has the wrong number of hashes for this index and size")]
    WrongProofLength,
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly smaller than `n` (`n ≥ 2`): RFC 6962's split point.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The Merkle tree hash over a slice of leaf hashes (recursive definition, no caching).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// An append-only Merkle tree over leaf hashes that remembers every complete subtree.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    /// `levels[h][i]` is the hash of the complete subtree of height `h` covering leaves
    /// `[i·2^h, (i+1)·2^h)`; `levels[0]` holds the leaf hashes.
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    pub fn new() -> MerkleTree {
        MerkleTree {
            levels: vec![Vec::new()],
        }
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels.first()?.get(index as usize).copied()
    }

    /// Appends a leaf hash and completes any subtrees it closes.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut height = 0;
        while self.levels[height].len().is_multiple_of(2) {
            let level = &self.levels[height];
            let parent = node_hash(&level[level.len() - 2], &level[level.len() - 1]);
            if self.levels.len() == height + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[height + 1].push(parent);
            height += 1;
        }
    }

    /// The right edge of the tree (see [`CompactTree`]).
    pub fn frontier(&self) -> CompactTree {
        let size = self.len();
        let mut frontier = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for height in (0..64).rev() {
            if size & (1 << height) != 0 {
                frontier.push(self.levels[height][(start >> height) as usize]);
                start += 1 << height;
            }
        }
        CompactTree { size, frontier }
    }

    /// Drops every leaf at or after `size` (used when a store cuts a torn tail before opening).
    pub fn truncate(&mut self, size: u64) {
        for (height, level) in self.levels.iter_mut().enumerate() {
            level.truncate((size >> height) as usize);
        }
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.subtree(0, self.len())
    }

    /// The root the tree had when it held `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        self.check_size(size)?;
        Ok(self.subtree(0, size))
    }

    fn check_size(&self, size: u64) -> Result<(), MerkleError> {
        if size > self.len() {
            return Err(MerkleError::SizeOutOfRange {
                requested: size,
                available: self.len(),
            });
        }
        Ok(())
    }

    /// `MTH(D[start:end])` for a range produced by RFC 6962's recursion: `start` is a multiple
    /// of the largest power of two not exceeding `end - start`, so complete pieces are cached.
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let height = n.trailing_zeros() as usize;
            return self.levels[height][(start >> height) as usize];
        }
        let k = split_point(n);
        node_hash(
            &self.subtree(start, start + k),
            &self.subtree(start + k, end),
        )
    }

    /// The audit path for leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1 `PATH`).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(size)?;
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Ok(proof)
    }

    fn path(&self, index: u64, start: u64, end: u64, proof: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split_point(n);
        if index < start + k {
            self.path(index, start, start + k, proof);
            proof.push(self.subtree(start + k, end));
        } else {
            self.path(index, start + k, end, proof);
            proof.push(self.subtree(start, start + k));
        }
    }

    /// The consistency proof between sizes `old` and `new` (RFC 6962 §2.1.2 `PROOF`).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(new)?;
        if old > new {
            return Err(MerkleError::SizesReversed { old, new });
        }
        let mut proof = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut proof);
        }
        Ok(proof)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, complete: bool, proof: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !complete {
                proof.push(self.subtree(start, end));
            }
            return;
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, start, start + k, complete, proof);
            proof.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, proof);
            proof.push(self.subtree(start, start + k));
        }
    }
}

impl FromIterator<Hash> for MerkleTree {
    fn from_iter<I: IntoIterator<Item = Hash>>(iter: I) -> Self {
        let mut tree = MerkleTree::new();
        for leaf in iter {
            tree.push(leaf);
        }
        tree
    }
}

/// The right edge of an RFC 6962 tree: one complete-subtree hash per set bit of the size,
/// largest (leftmost) first. It is all an append-only writer or a streaming verifier needs to
/// extend the tree and compute its root, in O(log n) memory, without holding the leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactTree {
    size: u64,
    frontier: Vec<Hash>,
}

impl CompactTree {
    pub fn new() -> CompactTree {
        CompactTree::default()
    }

    /// Rebuilds a tree from its size and frontier (as returned by [`CompactTree::frontier`] or
    /// [`MerkleTree::frontier`]); refused unless there is exactly one hash per set bit of `size`.
    pub fn from_frontier(size: u64, frontier: Vec<Hash>) -> Result<CompactTree, MerkleError> {
        if frontier.len() != size.count_ones() as usize {
            return Err(MerkleError::WrongProofLength);
        }
        Ok(CompactTree { size, frontier })
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The complete subtrees of the right edge, largest first.
    pub fn frontier(&self) -> &[Hash] {
        &self.frontier
    }

    /// Appends a leaf hash, merging the subtrees it completes.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            // A set low bit means a complete subtree of that height is waiting for a sibling.
            let left = self.frontier.pop().unwrap_or_default();
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.frontier.push(hash);
        self.size += 1;
    }

    /// The root of the whole tree: the frontier folded from the right.
    pub fn root(&self) -> Hash {
        match self.frontier.split_last() {
            None => empty_root(),
            Some((last, rest)) => rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)),
        }
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    expected_root: &Hash,
) -> Result<(), MerkleError> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut hash = *leaf;
    for sibling in proof {
        if snode == 0 {
            return Err(MerkleError::WrongProofLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            hash = node_hash(sibling, &hash);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(MerkleError::WrongProofLength);
    }
    if &hash != expected_root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizesReversed {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 {
        // Every tree extends the empty tree, so the proof is empty, but only the empty tree's
        // root is the root of size 0: any other "old root" is a false tree head. (RFC 9162
        // defines proofs for 0 < old < new only; transparency-dev refuses old = 0 outright.)
        if !proof.is_empty() {
            return Err(MerkleError::WrongProofLength);
        }
        let empty = empty_root();
        return if *old_root == empty && (new_size > 0 || *new_root == empty) {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(MerkleError::WrongProofLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    if proof.is_empty() {
        return Err(MerkleError::WrongProofLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);

    let mut fnode = old_size - 1;
    let mut snode = new_size - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if snode == 0 {
            return Err(MerkleError::WrongProofLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(MerkleError::WrongProofLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(MerkleError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// Certificate Transparency / transparency-dev reference leaves (RFC 6962 test vectors).
    fn reference_leaves() -> Vec<Hash> {
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
        .map(|d| leaf_hash(&hex::decode(d).unwrap()))
        .collect()
    }

    const REFERENCE_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn the_compact_tree_has_every_root_and_round_trips_its_frontier() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut compact = CompactTree::new();
        let mut full = MerkleTree::new();
        assert_eq!(compact.root(), empty_root());
        for leaf in &leaves {
            compact.push(*leaf);
            full.push(*leaf);
            assert_eq!(compact.root(), full.root(), "size {}", compact.len());
            assert_eq!(full.frontier(), compact);
            let rebuilt =
                CompactTree::from_frontier(compact.len(), compact.frontier().to_vec()).unwrap();
            assert_eq!(rebuilt.root(), compact.root());
        }
        assert!(CompactTree::from_frontier(3, vec![[0; 32]]).is_err());
        let first_100: MerkleTree = leaves[..100].iter().copied().collect();
        let mut resumed =
            CompactTree::from_frontier(100, first_100.frontier().frontier().to_vec()).unwrap();
        for leaf in &leaves[100..] {
            resumed.push(*leaf);
        }
        assert_eq!(resumed.root(), root(&leaves));
    }

    #[test]
    fn roots_match_rfc6962_vectors_for_every_size() {
        let leaves = reference_leaves();
        let tree: MerkleTree = leaves.iter().copied().collect();
        for size in 0..=8 {
            assert_eq!(hex::encode(root(&leaves[..size])), REFERENCE_ROOTS[size]);
            assert_eq!(
                hex::encode(tree.root_at(size as u64).unwrap()),
                REFERENCE_ROOTS[size]
            );
        }
    }

    #[test]
    fn inclusion_proofs_match_published_vectors() {
        let tree: MerkleTree = reference_leaves().into_iter().collect();
        let cases: [(u64, u64, Vec<&str>); 3] = [
            (
                0,
                8,
                vec![
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                vec![
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (0, 1, vec![]),
        ];
        for (index, size, expected) in cases {
            let proof = tree.inclusion_proof(index, size).unwrap();
            let expected: Vec<Hash> = expected.iter().map(|s| h(s)).collect();
            assert_eq!(
                proof, expected,
                "inclusion proof for leaf {index} in size {size}"
            );
            let root = h(REFERENCE_ROOTS[size as usize]);
            verify_inclusion(&tree.leaf(index).unwrap(), index, size, &proof, &root).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_published_vectors() {
        let tree: MerkleTree = reference_leaves().into_iter().collect();
        let cases: [(u64, u64, Vec<&str>); 3] = [
            (
                2,
                8,
                vec![
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                vec![
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                vec![
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, expected) in cases {
            let proof = tree.consistency_proof(old, new).unwrap();
            let expected: Vec<Hash> = expected.iter().map(|s| h(s)).collect();
            assert_eq!(proof, expected, "consistency proof {old} -> {new}");
            verify_consistency(
                old,
                new,
                &h(REFERENCE_ROOTS[old as usize]),
                &h(REFERENCE_ROOTS[new as usize]),
                &proof,
            )
            .unwrap();
        }
    }

    #[test]
    fn every_proof_in_every_small_tree_verifies_and_tampering_fails() {
        let leaves: Vec<Hash> = (0u32..41).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let tree: MerkleTree = leaves.iter().copied().collect();
        for size in 1..=leaves.len() as u64 {
            let root = tree.root_at(size).unwrap();
            assert_eq!(root, super::root(&leaves[..size as usize]));
            for index in 0..size {
                let proof = tree.inclusion_proof(index, size).unwrap();
                let leaf = leaves[index as usize];
                verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err());
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
                }
            }
            for old in 0..=size {
                let proof = tree.consistency_proof(old, size).unwrap();
                let old_root = tree.root_at(old).unwrap();
                verify_consistency(old, size, &old_root, &root, &proof).unwrap();
                if old > 0 && old < size {
                    let mut bad_root = old_root;
                    bad_root[5] ^= 0x40;
                    assert!(verify_consistency(old, size, &bad_root, &root, &proof).is_err());
                }
            }
        }
    }

    #[test]
    fn truncate_restores_an_earlier_tree() {
        let leaves: Vec<Hash> = (0u32..23).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut tree: MerkleTree = leaves.iter().copied().collect();
        tree.truncate(13);
        assert_eq!(tree.len(), 13);
        assert_eq!(tree.root(), root(&leaves[..13]));
        tree.push(leaves[13]);
        assert_eq!(tree.root(), root(&leaves[..14]));
    }
}
