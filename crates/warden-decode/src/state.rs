//! The incremental output state behind the generated attributes: the word-token 8-gram hash of
//! the fingerprint scheme `token-8gram-v1`, computed as bytes arrive, per-class verbatim runs,
//! and the sticky set of detected classes.
//!
//! The state is a few machine words plus one counter per tracked class; judging a candidate
//! copies it (`clone_from`, which reuses the allocation) and applies only the candidate's bytes,
//! so the cost of a candidate depends on its length and the number of classes, never on the
//! length of the output.
//!
//! The hashing reproduces `warden_corpus::fingerprint::ngram_hashes` exactly (a test checks it on
//! text fed in arbitrary chunks): word tokens are maximal runs of ASCII letters and digits and of
//! non-ASCII bytes, lowercased; the gram of 8 consecutive words is `mix(Σ t_j·B^(7-j))`.

use warden_corpus::fingerprint::{FingerprintIndex, NGRAM};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const BASE: u64 = 0x9E37_79B9_7F4A_7C15;
/// Words held besides the newest one of a gram.
const HISTORY: usize = NGRAM - 1;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 0 for separators, else the lowercased byte (the scheme's token bytes).
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

/// `B^(HISTORY-1)`: the weight of the oldest word in the 7-word rolling sum.
const OLDEST_WEIGHT: u64 = {
    let mut acc = 1u64;
    let mut i = 1;
    while i < HISTORY {
        acc = acc.wrapping_mul(BASE);
        i += 1;
    }
    acc
};

/// The word tokenizer and rolling hash, fed byte by byte.
#[derive(Debug, Clone, Default)]
pub(crate) struct WordHasher {
    /// Hash state of the partial word (full 8-byte words folded so far).
    h: u64,
    /// The partial word's last, incomplete 8-byte word.
    word: u64,
    /// Bytes in the partial word (0: the text ends with a separator or is empty).
    len: u64,
    /// The last `HISTORY` complete word hashes (ring indexed by `n_words % HISTORY`).
    ring: [u64; HISTORY],
    n_words: u64,
    /// `Σ t_j·B^(6-j)` over the last (up to) 7 complete words.
    rolling: u64,
}

impl WordHasher {
    pub(crate) fn new() -> WordHasher {
        WordHasher {
            h: FNV_OFFSET,
            ..WordHasher::default()
        }
    }

    /// Feeds one byte; returns the gram completed by it, if any (a separator after a word
    /// completes that word; a gram needs 8 complete words).
    #[inline]
    pub(crate) fn push(&mut self, byte: u8) -> Option<u64> {
        let lowered = TOKEN_BYTE[byte as usize];
        if lowered != 0 {
            self.word |= u64::from(lowered) << (8 * (self.len & 7));
            self.len += 1;
            if self.len & 7 == 0 {
                self.h = mix(self.h ^ self.word);
                self.word = 0;
            }
            None
        } else if self.len > 0 {
            let token = self.partial_hash();
            self.h = FNV_OFFSET;
            self.word = 0;
            self.len = 0;
            self.complete(token)
        } else {
            None
        }
    }

    fn partial_hash(&self) -> u64 {
        mix(self.h ^ self.word ^ (self.len << 56))
    }

    fn complete(&mut self, token: u64) -> Option<u64> {
        let gram = (self.n_words >= HISTORY as u64)
            .then(|| mix(self.rolling.wrapping_mul(BASE).wrapping_add(token)));
        let slot = (self.n_words % HISTORY as u64) as usize;
        if self.n_words >= HISTORY as u64 {
            let oldest = self.ring[slot];
            self.rolling = self
                .rolling
                .wrapping_sub(oldest.wrapping_mul(OLDEST_WEIGHT));
        }
        self.rolling = self.rolling.wrapping_mul(BASE).wrapping_add(token);
        self.ring[slot] = token;
        self.n_words += 1;
        gram
    }

    /// The gram the text would end with if it ended here (the partial word taken as complete),
    /// or `None` when the text ends with a separator or has fewer than 8 words.
    pub(crate) fn tentative_gram(&self) -> Option<u64> {
        (self.len > 0 && self.n_words >= HISTORY as u64).then(|| {
            mix(self
                .rolling
                .wrapping_mul(BASE)
                .wrapping_add(self.partial_hash()))
        })
    }

    pub(crate) fn ends_in_word(&self) -> bool {
        self.len > 0
    }
}

/// What the runtime tracks for the bundle: which classes' runs and which deny indexes.
#[derive(Debug)]
pub(crate) struct Tracked {
    /// Admitted fingerprint index per `output.verbatim.<class>` attribute (attribute index).
    pub(crate) verbatim: Vec<(u32, FingerprintIndex)>,
    /// Deny index per excluded class: the element bit in `output.classes`.
    pub(crate) deny: Vec<(u64, FingerprintIndex)>,
}

/// The state after the committed output: the hasher, the verbatim run (in words, ending at the
/// last complete word) per tracked class, and the detected-class bitmask.
#[derive(Debug)]
pub(crate) struct OutputState {
    pub(crate) hasher: WordHasher,
    pub(crate) runs: Vec<u32>,
    pub(crate) classes: u64,
}

impl Clone for OutputState {
    fn clone(&self) -> OutputState {
        OutputState {
            hasher: self.hasher.clone(),
            runs: self.runs.clone(),
            classes: self.classes,
        }
    }

    /// Reuses `runs`' allocation: judging a candidate allocates nothing.
    fn clone_from(&mut self, source: &OutputState) {
        self.hasher.clone_from(&source.hasher);
        self.runs.clone_from(&source.runs);
        self.classes = source.classes;
    }
}

/// The verbatim value of a run extended by one more matching gram.
fn extend(run: u32) -> u32 {
    if run == 0 {
        NGRAM as u32
    } else {
        run.saturating_add(1)
    }
}

impl OutputState {
    pub(crate) fn new(tracked: &Tracked) -> OutputState {
        OutputState {
            hasher: WordHasher::new(),
            runs: vec![0; tracked.verbatim.len()],
            classes: 0,
        }
    }

    /// Applies `bytes`; returns the work done (bytes hashed + index probes).
    pub(crate) fn apply(&mut self, tracked: &Tracked, bytes: &[u8]) -> u64 {
        let mut work = bytes.len() as u64;
        for &byte in bytes {
            if let Some(gram) = self.hasher.push(byte) {
                work += self.observe(tracked, gram);
            }
        }
        work
    }

    fn observe(&mut self, tracked: &Tracked, gram: u64) -> u64 {
        let mut work = 0;
        for (run, (_, index)) in self.runs.iter_mut().zip(&tracked.verbatim) {
            work += 1;
            *run = if index.contains(gram) {
                extend(*run)
            } else {
                0
            };
        }
        for (bit, index) in &tracked.deny {
            if self.classes & bit == 0 {
                work += 1;
                if index.contains(gram) {
                    self.classes |= bit;
                }
            }
        }
        work
    }

    /// The verbatim value of tracked class `k` for the output as it stands, as if it ended here:
    /// the number of words in the longest suffix of the output whose every 8-gram is in the
    /// class's index (0 when the last gram is not, or the output has fewer than 8 words).
    /// Returns the value and the index probes spent.
    pub(crate) fn verbatim(&self, tracked: &Tracked, k: usize) -> (u32, u64) {
        if !self.hasher.ends_in_word() {
            return (self.runs[k], 0);
        }
        match self.hasher.tentative_gram() {
            Some(gram) if tracked.verbatim[k].1.contains(gram) => (extend(self.runs[k]), 1),
            Some(_) => (0, 1),
            None => (0, 0),
        }
    }

    /// The deny classes the output as it stands would match if it ended here (the tentative
    /// gram included), added to the sticky set. Returns the mask and the probes spent.
    pub(crate) fn classes_if_ended(&self, tracked: &Tracked) -> (u64, u64) {
        let mut classes = self.classes;
        let mut work = 0;
        if let Some(gram) = self.hasher.tentative_gram() {
            for (bit, index) in &tracked.deny {
                if classes & bit == 0 {
                    work += 1;
                    if index.contains(gram) {
                        classes |= bit;
                    }
                }
            }
        }
        (classes, work)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_corpus::fingerprint::ngram_hashes;

    #[test]
    fn incremental_grams_equal_the_corpus_scheme_in_any_chunking() {
        let text = "The quick brown fox, jumps over the LAZY dog; and then: the quick brown fox \
                    jumps again — über alles 12345 x y z w v u t s r q p o n m, averyveryverylongword \
                    with seventeen bytes ok.";
        let mut expected = Vec::new();
        ngram_hashes(text, |g| expected.push(g));
        assert!(expected.len() > 20);
        for chunk in [1usize, 2, 3, 7, 64] {
            let mut hasher = WordHasher::new();
            let mut got = Vec::new();
            let mut tentative_last = None;
            for piece in text.as_bytes().chunks(chunk) {
                for &b in piece {
                    got.extend(hasher.push(b));
                }
                tentative_last = hasher.tentative_gram();
            }
            // The text ends in a word ("ok" then '.'): no, it ends with '.', so all grams are
            // complete; the tentative gram of a prefix ending mid-word is checked below.
            assert_eq!(tentative_last, None);
            assert_eq!(got, expected, "chunk size {chunk}");
        }
        // A prefix ending mid-word: its tentative gram is the last gram of that prefix.
        let prefix = &text[..text.find("again").unwrap() + 3];
        let mut prefix_grams = Vec::new();
        ngram_hashes(prefix, |g| prefix_grams.push(g));
        let mut hasher = WordHasher::new();
        for &b in prefix.as_bytes() {
            hasher.push(b);
        }
        assert_eq!(hasher.tentative_gram(), prefix_grams.last().copied());
    }
}
