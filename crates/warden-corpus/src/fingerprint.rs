//! Per-class n-gram fingerprint indexes: the set of hashed token 8-grams of a class's admitted
//! text, which inference uses to detect verbatim reproduction of that class.
//!
//! Scheme `token-8gram-v1` (what [`ngram_hashes`] computes, so inference reproduces it exactly):
//! * tokens are maximal runs of ASCII letters and digits and of non-ASCII bytes; ASCII letters are
//!   lowercased; everything else (spaces, punctuation) separates tokens;
//! * each token is hashed with 64-bit FNV-1a and finalized with the SplitMix64 mixer;
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
//! File format (`fingerprints/<class>.fp`): the 8 bytes `WFPIDX1\n`, the count `n` as u64
//! little-endian, then `n` u64 little-endian hashes in strictly ascending order.

use std::io::Read;
use std::path::Path;

use crate::error::CorpusError;

pub const NGRAM: usize = 8;
pub const SCHEME: &str = "token-8gram-v1";
pub(crate) const MAGIC: &[u8; 8] = b"WFPIDX1\n";
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const BASE: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// Calls `emit` with the hash of every token 8-gram of `text`, in order.
pub fn ngram_hashes(text: &str, mut emit: impl FnMut(u64)) {
    let base_pow = (1..NGRAM).fold(1u64, |acc, _| acc.wrapping_mul(BASE));
    let mut window = [0u64; NGRAM];
    let mut n_tokens = 0usize;
    let mut rolling = 0u64;
    let mut token = FNV_OFFSET;
    let mut in_token = false;
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
    for &b in text.as_bytes() {
        if is_token_byte(b) {
            token = (token ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
            in_token = true;
        } else if in_token {
            push(mix(token));
            token = FNV_OFFSET;
            in_token = false;
        }
    }
    if in_token {
        push(mix(token));
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

    pub(crate) fn parse(bytes: &[u8]) -> Result<FingerprintIndex, String> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err("not a fingerprint index (bad magic)".into());
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[8..16]);
        let n = u64::from_le_bytes(n);
        let body = &bytes[16..];
        if Some(body.len() as u64) != n.checked_mul(8) {
            return Err(format!(
                "header says {n} grams but the file holds {} bytes of grams",
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
