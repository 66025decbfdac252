//! The sample index (`samples.idx`): every admitted sample hash, sorted, with its first place.
//!
//! File format: the 8 bytes `WSMPIDX1`, then one 48-byte entry per distinct admitted sample
//! hash, in strictly ascending hash order: `hash (32) ‖ source u32 LE ‖ line u64 LE ‖
//! occurrences u32 LE`, where (source, line) is the first place the sample occurs (lowest source
//! index, then lowest line) and occurrences counts its copies across admitted sources.
//!
//! The corpus root is the RFC 6962 root over these hashes in this order (leaf data = the 32-byte
//! sample hash), which is what makes absence provable: see [`crate::prove`].
//!
//! In memory, lookups are O(1) expected: the top `k` bits of a (uniformly distributed) hash pick
//! one of `2^k ≥ n` buckets, each holding on average at most one entry.

use crate::error::CorpusError;
use crate::extsort::Record;
use crate::Hash;

pub(crate) const MAGIC: &[u8; 8] = b"WSMPIDX1";
pub(crate) const ENTRY_SIZE: usize = 48;

/// Where an admitted sample is: its source index and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleRef {
    pub source: u32,
    pub line: u64,
}

/// One admitted sample occurrence during admission; sorted by hash, then place. It carries the
/// RFC 6962 leaf hash of `hash` (already computed for the source tree) so the corpus tree does
/// not hash every leaf a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SampleRecord {
    pub hash: Hash,
    pub source: u32,
    pub line: u64,
    pub leaf: Hash,
}

fn place(b: &[u8]) -> (Hash, u32, u64) {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&b[..32]);
    let mut s = [0u8; 4];
    s.copy_from_slice(&b[32..36]);
    let mut l = [0u8; 8];
    l.copy_from_slice(&b[36..44]);
    (hash, u32::from_le_bytes(s), u64::from_le_bytes(l))
}

impl Record for SampleRecord {
    const SIZE: usize = 76;
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.source.to_le_bytes());
        out.extend_from_slice(&self.line.to_le_bytes());
        out.extend_from_slice(&self.leaf);
    }
    fn read_from(b: &[u8]) -> Self {
        let (hash, source, line) = place(b);
        let mut leaf = [0u8; 32];
        leaf.copy_from_slice(&b[44..76]);
        SampleRecord {
            hash,
            source,
            line,
            leaf,
        }
    }
}

/// One entry of the sample index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub hash: Hash,
    pub first: SampleRef,
    pub occurrences: u32,
}

impl IndexEntry {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.first.source.to_le_bytes());
        out.extend_from_slice(&self.first.line.to_le_bytes());
        out.extend_from_slice(&self.occurrences.to_le_bytes());
    }

    fn decode(b: &[u8]) -> IndexEntry {
        let (hash, source, line) = place(b);
        let mut o = [0u8; 4];
        o.copy_from_slice(&b[44..48]);
        IndexEntry {
            hash,
            first: SampleRef { source, line },
            occurrences: u32::from_le_bytes(o),
        }
    }
}

/// The loaded sample index.
#[derive(Debug, Clone)]
pub struct SampleIndex {
    entries: Vec<IndexEntry>,
    /// `buckets[b]..buckets[b + 1]` are the entries whose hash's top `bits` bits equal `b`.
    buckets: Vec<u32>,
    bits: u32,
}

fn top_bits(hash: &Hash, bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(b) >> (64 - bits)) as usize
}

impl SampleIndex {
    /// Parses an index file, checking framing, order and source indexes (`n_sources`).
    // Public (not crate-private) only so the fuzz targets in `warden-fuzz-targets` can reach the
    // parser of this untrusted file directly: through `AdmittedCorpus::load` the signed digest
    // check refuses every mutated file before the parser runs.
    pub fn parse(bytes: &[u8], n_sources: usize) -> Result<SampleIndex, String> {
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err("not a sample index (bad magic)".into());
        }
        let body = &bytes[8..];
        if !body.len().is_multiple_of(ENTRY_SIZE) {
            return Err(format!(
                "truncated: {} bytes is not a whole number of entries",
                body.len()
            ));
        }
        let n = body.len() / ENTRY_SIZE;
        if n >= u32::MAX as usize {
            return Err("more entries than the index supports".into());
        }
        let mut entries = Vec::with_capacity(n);
        for chunk in body.chunks_exact(ENTRY_SIZE) {
            let e = IndexEntry::decode(chunk);
            if e.first.source as usize >= n_sources {
                return Err(format!(
                    "entry names source {} of {}",
                    e.first.source, n_sources
                ));
            }
            if let Some(prev) = entries.last() {
                let prev: &IndexEntry = prev;
                if prev.hash >= e.hash {
                    return Err("hashes are not in strictly ascending order".into());
                }
            }
            entries.push(e);
        }
        Ok(SampleIndex::from_sorted(entries))
    }

    pub(crate) fn from_sorted(entries: Vec<IndexEntry>) -> SampleIndex {
        let n = entries.len();
        let bits = if n <= 1 {
            0
        } else {
            usize::BITS - (n - 1).leading_zeros()
        };
        let n_buckets = 1usize << bits;
        let mut buckets = vec![0u32; n_buckets + 1];
        for e in &entries {
            buckets[top_bits(&e.hash, bits) + 1] += 1;
        }
        for b in 1..buckets.len() {
            buckets[b] += buckets[b - 1];
        }
        SampleIndex {
            entries,
            buckets,
            bits,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for `hash`, in O(1) expected time.
    pub fn get(&self, hash: &Hash) -> Option<&IndexEntry> {
        let b = top_bits(hash, self.bits);
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        self.entries[lo..hi].iter().find(|e| &e.hash == hash)
    }

    /// Position of `hash` in sorted order: `Ok(i)` if present, `Err(i)` where it would go.
    pub fn position(&self, hash: &Hash) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.hash.cmp(hash))
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }
}

pub(crate) fn check(
    file: &std::path::Path,
    bytes: &[u8],
    n_sources: usize,
) -> Result<SampleIndex, CorpusError> {
    SampleIndex::parse(bytes, n_sources).map_err(|m| CorpusError::artifact(file, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_every_entry_and_nothing_else() {
        let mut hashes: Vec<Hash> = (0u32..1000)
            .map(|i| crate::sample_hash(&i.to_string()))
            .collect();
        hashes.sort();
        let entries: Vec<IndexEntry> = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| IndexEntry {
                hash: *h,
                first: SampleRef {
                    source: 0,
                    line: i as u64 + 1,
                },
                occurrences: 1,
            })
            .collect();
        let mut bytes = MAGIC.to_vec();
        for e in &entries {
            e.encode(&mut bytes);
        }
        let index = SampleIndex::parse(&bytes, 1).unwrap();
        for (i, h) in hashes.iter().enumerate() {
            assert_eq!(index.get(h).unwrap().first.line, i as u64 + 1);
        }
        assert!(index.get(&crate::sample_hash("absent")).is_none());
        // Tampering with the order or the length is caught.
        assert!(SampleIndex::parse(&bytes[..bytes.len() - 1], 1).is_err());
        let mut swapped = bytes.clone();
        swapped[8..8 + 48].copy_from_slice(&bytes[8 + 48..8 + 96]);
        assert!(SampleIndex::parse(&swapped, 1).is_err());
    }
}
