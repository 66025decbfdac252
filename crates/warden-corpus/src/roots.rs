//! Streaming RFC 6962 roots in O(log n) memory, over `warden_merkle`'s leaf and node hashes.
//!
//! `warden_merkle::MerkleTree` keeps every subtree (for proofs); admission only needs roots and
//! must not hold a hash per sample, so it folds complete subtrees on a stack instead. Both give
//! the same root (tested against `warden_merkle::root`).

use warden_merkle::{empty_root, node_hash, Hash};

/// Pushes leaf hashes; `root()` is the RFC 6962 root of everything pushed so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct RootBuilder {
    /// Complete subtrees, largest first, as (height, hash).
    stack: Vec<(u32, Hash)>,
    len: u64,
}

impl RootBuilder {
    pub(crate) fn new() -> RootBuilder {
        RootBuilder::default()
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.len += 1;
    }

    /// RFC 6962 splits at the largest power of two, so the root folds the complete subtrees
    /// from the right: `node(s0, node(s1, ... node(s_{k-1}, s_k)))`.
    pub(crate) fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_roots_equal_warden_merkle_roots_for_every_size() {
        let leaves: Vec<Hash> = (0u32..70)
            .map(|i| warden_merkle::leaf_hash(&i.to_le_bytes()))
            .collect();
        let mut builder = RootBuilder::new();
        assert_eq!(builder.root(), warden_merkle::root(&[]));
        for (n, leaf) in leaves.iter().enumerate() {
            builder.push(*leaf);
            assert_eq!(
                builder.root(),
                warden_merkle::root(&leaves[..=n]),
                "size {}",
                n + 1
            );
        }
    }
}
