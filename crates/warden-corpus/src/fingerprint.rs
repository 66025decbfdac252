//! Per-class n-gram fingerprint indexes: the set of hashed token 8-grams of a class's admitted
//! text, which inference uses to detect verbatim reproduction of that class.
//!
//! Scheme `token-8gram-v1` (what [`ngram_hashes`] computes, so inference reproduces it exactly):
//! * tokens are maximal runs of ASCII letters and digits and of non-ASCII bytes; ASCII letters are
//!   lowercased; everything else (spaces, punctuation) separates tokens;
//! * a token's hash folds its lowercased bytes as 8-byte little-endian words: starting from the
//!   FNV-1a offset basis, `h = mix(h ^ w)` for each full word, then the token hash is
//!   `mix(h ^ partial ^ (len << 56))` with the zero-padded partial last word (`mix` = the
//!   SplitMix64 finalizer);
//! * each window of 8 consecutive tokens within one sample gives the gram
//!   `mix(Σ t_j · B^(7-j) mod 2^64)`, B = 0x9E3779B97F4A7C15 (computed by rolling);
//!   a sample with fewer than 8 tokens contributes no gram.
//!
//! The index is the exact set of distinct 64-bit gram hashes, stored sorted. Membership is exact
//! for grams that are in the class; a gram that is not reports present only if its 64-bit hash
//! collides with one of the `n` stored hashes, so the false-positive rate per queried gram is
//! `n / 2^64` (about 5.4e-12 for n = 10^8). [`false_positive_rate`] computes it; the tests measure
//! it on a deliberately truncated hash where it is observable, and on the real width.
//!
//! File format (`fingerprints/<class>.fp`): the 8 bytes `WFPIDX2\n`, then `n` u64 little-endian
//! hashes in strictly ascending order, then the count `n` as u64 little-endian (a trailer, so the
//! file is written in one streaming pass).
//!
//! Building it in bounded memory ([`GramSets`]): grams are partitioned by their top bits into
//! `2^bits` buckets (bits chosen from the corpus size so a bucket stays around 256 Ki grams);
//! buckets live in memory until a budget is exceeded, then are spilled to a scratch file.
//! At the end each bucket is sorted and deduplicated on its own (in parallel) and the buckets are
//! written in order — no k-way merge, and peak memory is the budget plus a few buckets.

use std::io::Read;
use std::path::Path;

use crate::error::CorpusError;

pub const NGRAM: usize = 8;
pub const SCHEME: &str = "token-8gram-v1";
pub(crate) const MAGIC: &[u8; 8] = b"WFPIDX2\n";
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const BASE: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 0 for separators, else the lowercased byte.
const TOKEN_BYTE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = if c.is_ascii_alphanumeric() || c >= 0x80 {
            c.to_ascii_lowercase()
        } else {
            0
        };
        b += 1;
    }
    table
};

/// Calls `emit` with the hash of every token 8-gram of `text`, in order.
pub fn ngram_hashes(text: &str, mut emit: impl FnMut(u64)) {
    let base_pow = (1..NGRAM).fold(1u64, |acc, _| acc.wrapping_mul(BASE));
    let mut window = [0u64; NGRAM];
    let mut n_tokens = 0usize;
    let mut rolling = 0u64;
    let mut push = |t: u64| {
        let slot = n_tokens % NGRAM;
        let outgoing = window[slot];
        window[slot] = t;
        if n_tokens >= NGRAM {
            rolling = rolling.wrapping_sub(outgoing.wrapping_mul(base_pow));
        }
        rolling = rolling.wrapping_mul(BASE).wrapping_add(t);
        n_tokens += 1;
        if n_tokens >= NGRAM {
            emit(mix(rolling));
        }
    };
    // The token hash is folded as bytes arrive: no token buffer.
    let mut h = FNV_OFFSET;
    let mut word = 0u64;
    let mut len = 0u64;
    for &b in text.as_bytes() {
        let lowered = TOKEN_BYTE[b as usize];
        if lowered != 0 {
            word |= u64::from(lowered) << (8 * (len & 7));
            len += 1;
            if len & 7 == 0 {
                h = mix(h ^ word);
                word = 0;
            }
        } else if len > 0 {
            push(mix(h ^ word ^ (len << 56)));
            h = FNV_OFFSET;
            word = 0;
            len = 0;
        }
    }
    if len > 0 {
        push(mix(h ^ word ^ (len << 56)));
    }
}

/// The false-positive rate per queried gram of an index of `n` grams of `bits`-bit hashes.
pub fn false_positive_rate(n: u64, bits: u32) -> f64 {
    n as f64 / 2f64.powi(bits as i32)
}

/// A loaded fingerprint index.
#[derive(Debug, Clone)]
pub struct FingerprintIndex {
    grams: Vec<u64>,
}

impl FingerprintIndex {
    /// Builds an index from gram hashes (sorts and deduplicates).
    pub fn from_grams(mut grams: Vec<u64>) -> FingerprintIndex {
        grams.sort_unstable();
        grams.dedup();
        FingerprintIndex { grams }
    }

    /// Loads an index file, checking its framing and order. Use
    /// [`crate::AdmittedCorpus::fingerprint_index`] to also check it against the signed digest.
    pub fn load(path: &Path) -> Result<FingerprintIndex, CorpusError> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| CorpusError::io(path, e))?;
        FingerprintIndex::parse(&bytes).map_err(|m| CorpusError::artifact(path, m))
    }

    /// Parses the bytes of an index file, checking framing and order (see [`FingerprintIndex::load`]).
    // Public (not crate-private) only so the fuzz targets in `warden-fuzz-targets` can reach this
    // parser of an untrusted file without the signed-digest check in front of it.
    pub fn parse(bytes: &[u8]) -> Result<FingerprintIndex, String> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err("not a fingerprint index (bad magic)".into());
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[bytes.len() - 8..]);
        let n = u64::from_le_bytes(n);
        let body = &bytes[8..bytes.len() - 8];
        if Some(body.len() as u64) != n.checked_mul(8) {
            return Err(format!(
                "trailer says {n} grams but the file holds {} bytes of grams",
                body.len()
            ));
        }
        let grams: Vec<u64> = body
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        if grams.windows(2).any(|w| w[0] >= w[1]) {
            return Err("grams are not in strictly ascending order".into());
        }
        Ok(FingerprintIndex { grams })
    }

    pub fn len(&self) -> usize {
        self.grams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grams.is_empty()
    }

    pub fn contains(&self, gram: u64) -> bool {
        self.grams.binary_search(&gram).is_ok()
    }

    /// `(grams in text, of which in the index)`: the overlap inference thresholds on.
    pub fn overlap(&self, text: &str) -> (usize, usize) {
        let (mut total, mut hits) = (0, 0);
        ngram_hashes(text, |g| {
            total += 1;
            hits += usize::from(self.contains(g));
        });
        (total, hits)
    }

    /// This index's false-positive rate per queried gram: `n / 2^64`.
    pub fn false_positive_rate(&self) -> f64 {
        false_positive_rate(self.grams.len() as u64, 64)
    }
}

/// Bounded-memory builders of every class's gram set (see the module docs).
///
/// One set of in-memory buckets is shared by all classes and reused: it holds the grams of one
/// class at a time (sources stream one after another), and is spilled when it exceeds the budget
/// or another class starts. A spill is one scratch file holding every bucket back to back (one
/// file per spill, not per bucket: creating files is what costs); each class remembers, per
/// spill, where each of its buckets lies. Buffers are reserved once and reused.
pub(crate) struct GramSets {
    bits: u32,
    budget: usize,
    scratch: std::path::PathBuf,
    buckets: Vec<Vec<u64>>,
    in_memory: usize,
    /// The class whose grams are in `buckets`.
    owner: Option<String>,
    /// The spill files, open for reading back.
    runs: Vec<(std::path::PathBuf, std::fs::File)>,
    /// Per class, the spills holding its grams.
    spills: std::collections::BTreeMap<String, Vec<Spill>>,
}

/// One spill of one class: the run file's index and, per bucket, (byte offset, gram count).
type Spill = (usize, Vec<(u64, usize)>);

impl GramSets {
    /// `expected_bytes`: the text to be fingerprinted (sizes the partition); `budget`: grams held
    /// in memory before the buckets are spilled.
    pub(crate) fn new(scratch: std::path::PathBuf, expected_bytes: u64, budget: usize) -> GramSets {
        // About one gram per 5 bytes of text; aim for ~256 Ki grams per bucket.
        let expected_grams = expected_bytes / 5;
        let mut bits = 0;
        while bits < 12 && (expected_grams >> bits) > (256 << 10) {
            bits += 1;
        }
        GramSets {
            bits,
            budget: budget.max(1 << 16),
            scratch,
            buckets: vec![Vec::new(); 1 << bits],
            in_memory: 0,
            owner: None,
            runs: Vec::new(),
            spills: std::collections::BTreeMap::new(),
        }
    }

    pub(crate) fn extend(&mut self, class: &str, grams: &[u64]) -> Result<(), CorpusError> {
        if self.owner.as_deref() != Some(class) {
            self.spill()?;
            self.owner = Some(class.to_string());
            self.spills.entry(class.to_string()).or_default();
        }
        let bits = self.bits;
        // Each bucket reserves its share of the budget once, with slack for uneven hashing.
        let share = self.budget / self.buckets.len() + self.budget / self.buckets.len() / 4 + 64;
        for &g in grams {
            let b = if bits == 0 {
                0
            } else {
                (g >> (64 - bits)) as usize
            };
            let bucket = &mut self.buckets[b];
            if bucket.capacity() == 0 {
                bucket.reserve_exact(share);
            }
            bucket.push(g);
        }
        self.in_memory += grams.len();
        if self.in_memory > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Writes every in-memory bucket into one new scratch file (capacity kept for reuse).
    fn spill(&mut self) -> Result<(), CorpusError> {
        use std::io::Write as _;
        let Some(owner) = self.owner.clone() else {
            return Ok(());
        };
        if self.in_memory == 0 {
            return Ok(());
        }
        let path = self
            .scratch
            .join(format!("grams-{:05}.run", self.runs.len()));
        let io = |e| CorpusError::io(&path, e);
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &file);
        let mut slices = Vec::with_capacity(self.buckets.len());
        let mut offset = 0u64;
        let mut bytes = Vec::new();
        for bucket in &mut self.buckets {
            slices.push((offset, bucket.len()));
            bytes.clear();
            for g in bucket.iter() {
                bytes.extend_from_slice(&g.to_le_bytes());
            }
            out.write_all(&bytes).map_err(io)?;
            offset += bytes.len() as u64;
            bucket.clear();
        }
        out.flush().map_err(io)?;
        drop(out);
        self.spills
            .entry(owner)
            .or_default()
            .push((self.runs.len(), slices));
        self.runs.push((path, file));
        self.in_memory = 0;
        Ok(())
    }

    /// Reads back one bucket of one class from every spill, appending to `grams`.
    fn read_bucket(
        runs: &[(std::path::PathBuf, std::fs::File)],
        spills: &[Spill],
        bucket: usize,
        grams: &mut Vec<u64>,
    ) -> Result<(), CorpusError> {
        use std::os::unix::fs::FileExt as _;
        let mut raw = Vec::new();
        for (run, slices) in spills {
            let (offset, count) = slices[bucket];
            if count == 0 {
                continue;
            }
            let (path, file) = &runs[*run];
            raw.resize(count * 8, 0);
            file.read_exact_at(&mut raw, offset)
                .map_err(|e| CorpusError::io(path, e))?;
            grams.extend(raw.chunks_exact(8).map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_le_bytes(w)
            }));
        }
        Ok(())
    }

    /// Writes the class's index file (magic, sorted distinct grams, count trailer) into `out`;
    /// returns the count, `None` for a class with no grams. Buckets are sorted a few at a time
    /// on all cores, each batch written while the next is sorted.
    pub(crate) fn finish_class(
        &mut self,
        class: &str,
        out: &mut crate::fsio::AtomicFile,
    ) -> Result<Option<u64>, CorpusError> {
        use rayon::prelude::*;
        let Some(spills) = self.spills.remove(class) else {
            return Ok(None);
        };
        let owned = self.owner.as_deref() == Some(class);
        let n_buckets = self.buckets.len();
        let runs = &self.runs;
        out.write(MAGIC)?;
        let mut n = 0u64;
        let batch = rayon::current_num_threads().max(1) * 2;
        let sort_batch =
            |start: usize, in_memory: Vec<Vec<u64>>| -> Vec<Result<Vec<u64>, CorpusError>> {
                in_memory
                    .into_par_iter()
                    .zip(start..start + batch)
                    .map(|(mut grams, b)| {
                        GramSets::read_bucket(runs, &spills, b, &mut grams)?;
                        grams.sort_unstable();
                        grams.dedup();
                        Ok(grams)
                    })
                    .collect()
            };
        let mut bytes = Vec::new();
        let mut write_batch =
            |sorted: Vec<Result<Vec<u64>, CorpusError>>| -> Result<(), CorpusError> {
                for grams in sorted {
                    let grams = grams?;
                    n += grams.len() as u64;
                    bytes.clear();
                    bytes.reserve(grams.len() * 8);
                    for g in &grams {
                        bytes.extend_from_slice(&g.to_le_bytes());
                    }
                    out.write(&bytes)?;
                }
                Ok(())
            };
        // Pipelined: batch k is written (and hashed) while batch k + 1 is sorted.
        let mut previous: Option<Vec<Result<Vec<u64>, CorpusError>>> = None;
        let mut start = 0;
        while start < n_buckets {
            let end = (start + batch).min(n_buckets);
            let in_memory: Vec<Vec<u64>> = if owned {
                // Copies, so the shared buckets keep their reserved capacity.
                self.buckets[start..end]
                    .iter()
                    .map(|b| b.to_vec())
                    .collect()
            } else {
                vec![Vec::new(); end - start]
            };
            let to_write = previous.take();
            let (written, sorted) = rayon::join(
                || to_write.map_or(Ok(()), &mut write_batch),
                || sort_batch(start, in_memory),
            );
            written?;
            previous = Some(sorted);
            start = end;
        }
        if let Some(sorted) = previous {
            write_batch(sorted)?;
        }
        if owned {
            for bucket in &mut self.buckets {
                bucket.clear();
            }
            self.owner = None;
            self.in_memory = 0;
        }
        out.write(&n.to_le_bytes())?;
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn words(rng: &mut impl Rng, n: usize, alphabet: &[u8]) -> String {
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            for _ in 0..rng.gen_range(3..9) {
                s.push(alphabet[rng.gen_range(0..alphabet.len())] as char);
            }
        }
        s
    }

    #[test]
    fn grams_ignore_case_and_punctuation_and_need_eight_tokens() {
        let mut a = Vec::new();
        ngram_hashes("The quick brown fox jumps over the lazy dog", |g| a.push(g));
        let mut b = Vec::new();
        ngram_hashes("the QUICK, brown fox -- jumps over the lazy dog!", |g| {
            b.push(g)
        });
        assert_eq!(a.len(), 2);
        assert_eq!(a, b);
        let mut c = Vec::new();
        ngram_hashes("one two three four five six seven", |g| c.push(g));
        assert!(c.is_empty());
        // Order matters: a permutation of the same tokens is a different gram.
        let mut d = Vec::new();
        ngram_hashes("quick the brown fox jumps over the lazy", |g| d.push(g));
        assert_ne!(d[0], a[0]);
    }

    /// The stated FPR formula `n / 2^bits` is checked where it is observable (hashes truncated to
    /// 20 bits), then the real 64-bit index is queried with a million absent grams.
    #[test]
    fn false_positive_rate_matches_the_stated_formula() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        // Indexed text uses letters a-m, queries use n-z: no query gram is truly present.
        let indexed = words(&mut rng, 60_000, b"abcdefghijklm");
        let mut grams = Vec::new();
        ngram_hashes(&indexed, |g| grams.push(g));
        let full = FingerprintIndex::from_grams(grams.clone());
        assert!(full.len() > 59_000);
        let mut queries = Vec::new();
        let query_text = words(&mut rng, 1_000_007, b"nopqrstuvwxyz");
        ngram_hashes(&query_text, |g| queries.push(g));
        assert!(queries.len() >= 1_000_000);

        let bits = 20;
        let truncated =
            FingerprintIndex::from_grams(grams.iter().map(|g| g >> (64 - bits)).collect());
        let hits = queries
            .iter()
            .filter(|q| truncated.contains(*q >> (64 - bits)))
            .count();
        let measured = hits as f64 / queries.len() as f64;
        let stated = false_positive_rate(truncated.len() as u64, bits);
        assert!(
            (measured - stated).abs() < 0.1 * stated,
            "measured {measured} vs stated {stated}"
        );

        // At 64 bits the expected number of false positives over all queries is ~3e-9.
        let false_hits = queries.iter().filter(|q| full.contains(**q)).count();
        assert_eq!(false_hits, 0);
        assert!(full.false_positive_rate() < 1e-14);
        // And every indexed gram is found (no false negatives).
        assert!(grams.iter().all(|g| full.contains(*g)));
    }
}
