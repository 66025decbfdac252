//! Memorization detectors behind one open trait.
//!
//! A detector looks at a batch twice: before the forward pass (text only: exact-match scanning)
//! and after it (per-sample losses: loss signature). Each finding names a sample and a score; the
//! policy's action (reject or clip with a sensitivity weight) is applied by the gate, not by the
//! detector, so a new detector (embedding similarity, influence) only has to score samples.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use crate::policy::MemorizationRule;

/// What a detector sees of one sample: its class and its whole text (not only the window
/// drawn this iteration: two windows of one repeated secret need not overlap).
pub struct Candidate<'a> {
    /// Identity of the sample (its place in the corpus, not its content): a sample drawn again
    /// in a later epoch is the same sample, while an identical copy elsewhere is a duplicate.
    pub id: u64,
    pub class: &'a str,
    pub text: &'a [u8],
}

/// One detection: sample index in the batch, which detector, its score, and the byte spans
/// of the sample's text that are affected (empty: the whole sample).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub sample: usize,
    pub detector: String,
    pub score: f64,
    #[serde(default)]
    pub spans: Vec<(usize, usize)>,
}

pub trait Detector: Send {
    fn name(&self) -> &'static str;
    /// Settings recorded in the governance manifest.
    fn settings(&self) -> serde_json::Value;
    /// Before the forward pass. Every candidate is remembered afterwards (detected or not), so a
    /// repeated sample stays detected while it keeps recurring within the window.
    fn scan_text(&mut self, _batch: &[Candidate<'_>]) -> Vec<Finding> {
        Vec::new()
    }
    /// After the forward pass, on the samples that reached it. `losses[i]` belongs to `batch[i]`.
    fn scan_losses(&mut self, _batch: &[Candidate<'_>], _losses: &[f32]) -> Vec<Finding> {
        Vec::new()
    }
    /// Called once the iteration is admitted, with the losses of the samples that were trained.
    fn observe_losses(&mut self, _batch: &[Candidate<'_>], _losses: &[f32]) {}
    /// Appends the detector's memory in a compact binary form (saved in a checkpoint's
    /// sidecar file, so a resumed run decides exactly as the original).
    fn save(&self, out: &mut Vec<u8>);
    /// Replaces the detector's memory with what [`Detector::save`] wrote. The bytes come from a
    /// file: malformed input is an error, and the detector's bounds apply to what is restored.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateError>;
}

/// A detector state (or a checkpoint's detector sidecar) that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("detector state ends at byte {at}, {needed} more bytes needed")]
    Truncated { at: usize, needed: usize },
    #[error("detector state: {reason} at byte {at}")]
    Invalid { at: usize, reason: String },
    #[error("detector state has {extra} unread bytes at its end")]
    Trailing { extra: usize },
}

/// Little-endian reader over untrusted state bytes: every read is bounds-checked, and a count
/// is checked against the bytes left before anything is allocated for it.
struct StateReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> StateReader<'a> {
    fn new(bytes: &'a [u8]) -> StateReader<'a> {
        StateReader { bytes, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        let left = self.bytes.len() - self.at;
        if n > left {
            return Err(StateError::Truncated {
                at: self.at,
                needed: n - left,
            });
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, StateError> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(buf))
    }

    fn u32(&mut self) -> Result<u32, StateError> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(buf))
    }

    /// A count of items of `item_bytes` each that must fit in the bytes left.
    fn count(&mut self, item_bytes: usize) -> Result<usize, StateError> {
        let at = self.at;
        let n = self.u64()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(item_bytes as u64) > left {
            return Err(StateError::Invalid {
                at,
                reason: format!("count {n} exceeds the {left} bytes left"),
            });
        }
        Ok(n as usize)
    }

    fn text(&mut self) -> Result<String, StateError> {
        let n = self.count(1)?;
        let at = self.at;
        std::str::from_utf8(self.take(n)?)
            .map(str::to_string)
            .map_err(|_| StateError::Invalid {
                at,
                reason: "text is not UTF-8".into(),
            })
    }

    fn finish(self) -> Result<(), StateError> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            extra => Err(StateError::Trailing { extra }),
        }
    }
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_u64(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

const STATES_MAGIC: &[u8; 20] = b"warden-detectors/v1\n";

/// A checkpoint's detector sidecar: a magic line, then per detector its name and its state
/// (length-prefixed, little-endian).
pub fn encode_states(states: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = STATES_MAGIC.to_vec();
    put_u64(&mut out, states.len() as u64);
    for (name, state) in states {
        put_text(&mut out, name);
        put_u64(&mut out, state.len() as u64);
        out.extend_from_slice(state);
    }
    out
}

/// Decodes [`encode_states`]'s bytes into (detector name, state) pairs.
pub fn decode_states(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, StateError> {
    let mut reader = StateReader::new(bytes);
    if reader.take(STATES_MAGIC.len())? != STATES_MAGIC {
        return Err(StateError::Invalid {
            at: 0,
            reason: "not a warden detector state file".into(),
        });
    }
    // Each entry takes at least 16 bytes (two length prefixes).
    let n = reader.count(16)?;
    let mut states = Vec::with_capacity(n);
    for _ in 0..n {
        let name = reader.text()?;
        let len = reader.count(1)?;
        states.push((name, reader.take(len)?.to_vec()));
    }
    reader.finish()?;
    Ok(states)
}

/// FNV-1a over bytes (test helper ids).
#[cfg(test)]
fn ngram_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const ROLL_BASE: u64 = 0x100_0000_01b3;

/// Hasher for keys that already are 64-bit hashes: one multiply-xorshift finalizer instead of
/// SipHash (the detector does a few thousand lookups per step).
#[derive(Default)]
struct PremixedHasher(u64);

impl Hasher for PremixedHasher {
    fn finish(&self) -> u64 {
        let x = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }
}

type GramCounts = HashMap<u64, u32, BuildHasherDefault<PremixedHasher>>;

/// Polynomial rolling hash (mod 2^64) of every `n`-byte window, in O(len): deterministic across
/// runs and machines (std's hasher is randomly seeded).
fn rolling_hashes(bytes: &[u8], n: usize) -> Vec<u64> {
    if n == 0 || bytes.len() < n {
        return Vec::new();
    }
    // Bytes are hashed as they are. (Hashing whitespace as a space, so re-wrapped copies match,
    // was measured on the synthetic corpus: it masks far more ordinary prose and cost +27%
    // held-out loss instead of +1.9%.)
    let byte = |b: u8| -> u64 { u64::from(b) + 1 };
    let top = (1..n).fold(1u64, |p, _| p.wrapping_mul(ROLL_BASE));
    let mut h = bytes[..n].iter().fold(0u64, |h, &b| {
        h.wrapping_mul(ROLL_BASE).wrapping_add(byte(b))
    });
    let mut out = Vec::with_capacity(bytes.len() - n + 1);
    out.push(h);
    for i in n..bytes.len() {
        h = h
            .wrapping_sub(byte(bytes[i - n]).wrapping_mul(top))
            .wrapping_mul(ROLL_BASE)
            .wrapping_add(byte(bytes[i]));
        out.push(h);
    }
    out
}

/// At most this many n-gram hashes are remembered by [`NgramDetector`], whatever its window:
/// 2^21 hashes, 16 MiB in the sample log plus at most as many entries in the count map (about
/// 40 MiB in all, and a checkpoint sidecar of at most ~16 MiB plus 16 bytes per sample).
pub const MAX_REMEMBERED_NGRAMS: usize = 1 << 21;

/// (a) Exact-match scanning: long n-gram repeats between a sample and *other* samples of the
/// recent window (including earlier samples of the same batch). Re-drawing the same sample in a
/// later epoch is ordinary training, not duplicated content, so a sample's own earlier
/// occurrences do not count against it.
///
/// Memory is bounded: the last `window` samples, and fewer when they hold more than
/// [`MAX_REMEMBERED_NGRAMS`] distinct n-grams in all (the oldest samples are forgotten first).
pub struct NgramDetector {
    ngram: usize,
    window: usize,
    threshold: f64,
    recent: VecDeque<(u64, Vec<u64>)>,
    /// Total n-gram hashes held in `recent`.
    remembered: usize,
    max_remembered: usize,
    counts: GramCounts,
    occurrences: HashMap<u64, u32>,
}

impl NgramDetector {
    pub fn new(ngram: usize, window: usize, threshold: f64) -> NgramDetector {
        NgramDetector {
            ngram,
            window,
            threshold,
            recent: VecDeque::new(),
            remembered: 0,
            max_remembered: MAX_REMEMBERED_NGRAMS,
            counts: GramCounts::default(),
            occurrences: HashMap::new(),
        }
    }

    /// The same detector with a smaller n-gram bound (tests).
    #[cfg(test)]
    fn with_max_remembered(mut self, max: usize) -> NgramDetector {
        self.max_remembered = max;
        self
    }

    fn remember(&mut self, id: u64, grams: Vec<u64>) {
        for g in &grams {
            *self.counts.entry(*g).or_insert(0) += 1;
        }
        *self.occurrences.entry(id).or_insert(0) += 1;
        self.remembered += grams.len();
        self.recent.push_back((id, grams));
        while self.recent.len() > self.window || self.remembered > self.max_remembered {
            if let Some((old_id, old)) = self.recent.pop_front() {
                self.remembered -= old.len();
                if let Some(n) = self.occurrences.get_mut(&old_id) {
                    *n -= 1;
                    if *n == 0 {
                        self.occurrences.remove(&old_id);
                    }
                }
                for g in old {
                    if let Some(c) = self.counts.get_mut(&g) {
                        *c -= 1;
                        if *c == 0 {
                            self.counts.remove(&g);
                        }
                    }
                }
            }
        }
    }
}

impl Detector for NgramDetector {
    fn name(&self) -> &'static str {
        "exact-ngram"
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({"ngram": self.ngram, "window": self.window, "threshold": self.threshold})
    }

    fn scan_text(&mut self, batch: &[Candidate<'_>]) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (idx, candidate) in batch.iter().enumerate() {
            let positional = rolling_hashes(candidate.text, self.ngram);
            // Each earlier occurrence of this very sample contributed each of its n-grams once.
            let own = self.occurrences.get(&candidate.id).copied().unwrap_or(0);
            let mut spans: Vec<(usize, usize)> = Vec::new();
            let mut seen = 0usize;
            for (at, gram) in positional.iter().enumerate() {
                if self.counts.get(gram).is_some_and(|&c| c > own) {
                    seen += 1;
                    match spans.last_mut() {
                        Some(last) if last.1 >= at => last.1 = at + self.ngram,
                        _ => spans.push((at, at + self.ngram)),
                    }
                }
            }
            if !positional.is_empty() {
                let score = seen as f64 / positional.len() as f64;
                if seen > 0 && score > self.threshold {
                    findings.push(Finding {
                        sample: idx,
                        detector: self.name().to_string(),
                        score,
                        spans,
                    });
                }
            }
            let mut grams = positional;
            grams.sort_unstable();
            grams.dedup();
            self.remember(candidate.id, grams);
        }
        findings
    }

    /// `u64 samples`, then per remembered sample `u64 id`, `u64 n`, `n × u64` n-gram hashes.
    fn save(&self, out: &mut Vec<u8>) {
        put_u64(out, self.recent.len() as u64);
        for (id, grams) in &self.recent {
            put_u64(out, *id);
            put_u64(out, grams.len() as u64);
            for g in grams {
                put_u64(out, *g);
            }
        }
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let mut reader = StateReader::new(bytes);
        let n = reader.count(16)?;
        let mut recent = Vec::with_capacity(n.min(self.window));
        for _ in 0..n {
            let id = reader.u64()?;
            let len = reader.count(8)?;
            let mut grams = Vec::with_capacity(len);
            for _ in 0..len {
                grams.push(reader.u64()?);
            }
            recent.push((id, grams));
        }
        reader.finish()?;
        self.recent.clear();
        self.remembered = 0;
        self.counts.clear();
        self.occurrences.clear();
        // Replayed through `remember`, so the window and the n-gram bound hold for what a
        // file says as for what was seen.
        for (id, grams) in recent {
            self.remember(id, grams);
        }
        Ok(())
    }
}

/// (b) Loss signature: a sample the model already reproduces far better than its class does.
/// Memory: at most `history` losses per class (4 bytes each).
pub struct LossSignatureDetector {
    ratio: f64,
    history: usize,
    min_history: usize,
    losses: BTreeMap<String, VecDeque<f32>>,
}

impl LossSignatureDetector {
    pub fn new(ratio: f64, history: usize) -> LossSignatureDetector {
        LossSignatureDetector {
            ratio,
            history: history.max(8),
            min_history: 8,
            losses: BTreeMap::new(),
        }
    }

    fn median(&self, class: &str) -> Option<f32> {
        let seen = self.losses.get(class)?;
        if seen.len() < self.min_history {
            return None;
        }
        let mut sorted: Vec<f32> = seen.iter().copied().collect();
        sorted.sort_by(f32::total_cmp);
        Some(sorted[sorted.len() / 2])
    }
}

impl Detector for LossSignatureDetector {
    fn name(&self) -> &'static str {
        "loss-signature"
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({"loss_ratio": self.ratio, "history": self.history})
    }

    fn scan_losses(&mut self, batch: &[Candidate<'_>], losses: &[f32]) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (idx, (candidate, &loss)) in batch.iter().zip(losses).enumerate() {
            if let Some(median) = self.median(candidate.class) {
                if f64::from(loss) < self.ratio * f64::from(median) {
                    findings.push(Finding {
                        sample: idx,
                        detector: self.name().to_string(),
                        score: f64::from(loss / median.max(f32::MIN_POSITIVE)),
                        spans: Vec::new(),
                    });
                }
            }
        }
        findings
    }

    fn observe_losses(&mut self, batch: &[Candidate<'_>], losses: &[f32]) {
        for (candidate, &loss) in batch.iter().zip(losses) {
            if loss.is_finite() {
                let seen = self.losses.entry(candidate.class.to_string()).or_default();
                seen.push_back(loss);
                while seen.len() > self.history {
                    seen.pop_front();
                }
            }
        }
    }

    /// `u64 classes`, then per class its name (`u64` length + UTF-8), `u64 n` and `n` f32 bit
    /// patterns (exact, so a resumed run computes the same medians).
    fn save(&self, out: &mut Vec<u8>) {
        put_u64(out, self.losses.len() as u64);
        for (class, losses) in &self.losses {
            put_text(out, class);
            put_u64(out, losses.len() as u64);
            for loss in losses {
                out.extend_from_slice(&loss.to_bits().to_le_bytes());
            }
        }
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let mut reader = StateReader::new(bytes);
        let n = reader.count(16)?;
        let mut losses = BTreeMap::new();
        for _ in 0..n {
            let class = reader.text()?;
            let len = reader.count(4)?;
            let mut seen = VecDeque::with_capacity(len.min(self.history));
            for _ in 0..len {
                seen.push_back(f32::from_bits(reader.u32()?));
                // The same bound as `observe_losses` keeps.
                while seen.len() > self.history {
                    seen.pop_front();
                }
            }
            losses.insert(class, seen);
        }
        reader.finish()?;
        self.losses = losses;
        Ok(())
    }
}

/// The detectors a memorization rule asks for, in a fixed order.
pub fn from_rule(rule: &MemorizationRule) -> Vec<Box<dyn Detector>> {
    let mut detectors: Vec<Box<dyn Detector>> = vec![Box::new(NgramDetector::new(
        rule.ngram,
        rule.window,
        rule.threshold,
    ))];
    if rule.loss_ratio > 0.0 {
        detectors.push(Box::new(LossSignatureDetector::new(
            rule.loss_ratio,
            rule.window,
        )));
    }
    detectors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates<'a>(texts: &[&'a str]) -> Vec<Candidate<'a>> {
        texts
            .iter()
            .map(|t| Candidate {
                id: ngram_hash(t.as_bytes()),
                class: "web",
                text: t.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn a_repeated_secret_is_caught_within_the_window_and_forgotten_after() {
        let mut detector = NgramDetector::new(12, 3, 0.0);
        let first = detector.scan_text(&candidates(&["the vault code is 4417-2290, keep it"]));
        assert!(first.is_empty());
        let again = detector.scan_text(&candidates(&[
            "an unrelated sentence about rivers",
            "remember: the vault code is 4417-2290",
        ]));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].sample, 1);
        assert!(again[0].score > 0.0 && again[0].score < 1.0);
        // The span covers the repeated secret, not the unrelated lead-in.
        let text = "remember: the vault code is 4417-2290";
        let (start, end) = again[0].spans[0];
        assert_eq!(&text[start..end], "the vault code is 4417-2290");
        // Three unrelated samples push the secret out of a window of 3.
        detector.scan_text(&candidates(&[
            "aaaaaaaaaaaaaaaa1",
            "bbbbbbbbbbbbbbbbbb2",
            "ccccccccccccccccc3",
        ]));
        assert!(detector
            .scan_text(&candidates(&["the vault code is 4417-2290"]))
            .is_empty());
    }

    #[test]
    fn rolling_hashes_equal_hashing_each_window() {
        let text = b"the rolling hash of every window equals the direct one";
        let direct: Vec<u64> = text
            .windows(7)
            .map(|w| {
                w.iter().fold(0u64, |h, &b| {
                    h.wrapping_mul(ROLL_BASE).wrapping_add(u64::from(b) + 1)
                })
            })
            .collect();
        assert_eq!(rolling_hashes(text, 7), direct);
        assert!(rolling_hashes(b"short", 7).is_empty());
    }

    #[test]
    fn the_same_sample_drawn_again_is_not_a_duplicate() {
        let mut detector = NgramDetector::new(8, 16, 0.0);
        let text = "one sample drawn in two epochs";
        assert!(detector.scan_text(&candidates(&[text])).is_empty());
        assert!(detector.scan_text(&candidates(&[text])).is_empty());
        // Different content sharing its words is a duplicate.
        assert_eq!(
            detector
                .scan_text(&candidates(&["drawn in two epochs!"]))
                .len(),
            1
        );
    }

    #[test]
    fn state_round_trips() {
        let mut a = NgramDetector::new(8, 4, 0.0);
        a.scan_text(&candidates(&["some sample text here"]));
        let mut bytes = Vec::new();
        a.save(&mut bytes);
        let mut b = NgramDetector::new(8, 4, 0.0);
        b.restore(&bytes).unwrap();
        assert!(b
            .scan_text(&candidates(&["some sample text here"]))
            .is_empty());
        assert_eq!(
            b.scan_text(&candidates(&["some sample text here!"])).len(),
            1
        );
    }

    #[test]
    fn loss_far_below_the_class_median_is_flagged() {
        let mut detector = LossSignatureDetector::new(0.3, 16);
        let batch = candidates(&["x"; 8]);
        detector.observe_losses(&batch, &[3.0, 3.1, 2.9, 3.2, 3.0, 2.8, 3.3, 3.0]);
        let found = detector.scan_losses(&candidates(&["a", "b"]), &[2.7, 0.4]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].sample, 1);
    }

    #[test]
    fn memory_is_bounded_by_the_ngram_limit_and_the_oldest_samples_go_first() {
        let mut detector = NgramDetector::new(4, 100, 0.0).with_max_remembered(20);
        // Each 13-byte text has 10 distinct 4-grams: two fit, a third pushes the first out.
        detector.scan_text(&candidates(&["first sample!"]));
        detector.scan_text(&candidates(&["other words.."]));
        assert_eq!(detector.remembered, 20);
        detector.scan_text(&candidates(&["third one ..."]));
        assert_eq!(detector.remembered, 20);
        assert_eq!(detector.recent.len(), 2);
        // The first sample was forgotten: its text is no longer a repeat.
        assert!(detector
            .scan_text(&candidates(&["xfirst sample!"]))
            .is_empty());
    }

    #[test]
    fn loss_state_round_trips_bit_exactly_and_malformed_state_is_refused() {
        let mut a = LossSignatureDetector::new(0.3, 16);
        a.observe_losses(&candidates(&["x", "y"]), &[0.1 + 0.2, f32::MIN_POSITIVE]);
        let mut bytes = Vec::new();
        a.save(&mut bytes);
        let mut b = LossSignatureDetector::new(0.3, 16);
        b.restore(&bytes).unwrap();
        assert_eq!(a.losses, b.losses);
        // Every truncation is an error naming where it ended, never a panic.
        for cut in 0..bytes.len() {
            assert!(b.restore(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(b.restore(&longer), Err(StateError::Trailing { extra: 1 }));
        // A count larger than the file is refused before anything is allocated for it.
        let mut huge = Vec::new();
        put_u64(&mut huge, u64::MAX);
        assert!(matches!(
            NgramDetector::new(4, 4, 0.0).restore(&huge),
            Err(StateError::Invalid { at: 0, .. })
        ));
    }

    #[test]
    fn the_sidecar_format_round_trips_and_rejects_other_files() {
        let states = encode_states(&[("exact-ngram", b"abc".as_slice()), ("loss-signature", b"")]);
        assert_eq!(
            decode_states(&states).unwrap(),
            vec![
                ("exact-ngram".to_string(), b"abc".to_vec()),
                ("loss-signature".to_string(), Vec::new())
            ]
        );
        assert!(decode_states(b"{\"recent\": []}").is_err());
        for cut in 0..states.len() {
            assert!(decode_states(&states[..cut]).is_err());
        }
    }
}
