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
    /// Detector memory, saved in checkpoints so a resumed run decides exactly as the original.
    fn state(&self) -> serde_json::Value;
    fn restore(&mut self, state: &serde_json::Value) -> Result<(), String>;
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

/// (a) Exact-match scanning: long n-gram repeats between a sample and *other* samples of the
/// recent window (including earlier samples of the same batch). Re-drawing the same sample in a
/// later epoch is ordinary training, not duplicated content, so a sample's own earlier
/// occurrences do not count against it.
pub struct NgramDetector {
    ngram: usize,
    window: usize,
    threshold: f64,
    recent: VecDeque<(u64, Vec<u64>)>,
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
            counts: GramCounts::default(),
            occurrences: HashMap::new(),
        }
    }

    fn remember(&mut self, id: u64, grams: Vec<u64>) {
        for g in &grams {
            *self.counts.entry(*g).or_insert(0) += 1;
        }
        *self.occurrences.entry(id).or_insert(0) += 1;
        self.recent.push_back((id, grams));
        while self.recent.len() > self.window {
            if let Some((old_id, old)) = self.recent.pop_front() {
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

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "recent": self.recent })
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), String> {
        let recent: Vec<(u64, Vec<u64>)> = serde_json::from_value(state["recent"].clone())
            .map_err(|e| format!("exact-ngram state: {e}"))?;
        self.recent.clear();
        self.counts.clear();
        self.occurrences.clear();
        for (id, grams) in recent {
            self.remember(id, grams);
        }
        Ok(())
    }
}

/// (b) Loss signature: a sample the model already reproduces far better than its class does.
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

    fn state(&self) -> serde_json::Value {
        serde_json::json!({"losses": self.losses})
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), String> {
        self.losses = serde_json::from_value(state["losses"].clone())
            .map_err(|e| format!("loss-signature state: {e}"))?;
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
        let mut b = NgramDetector::new(8, 4, 0.0);
        b.restore(&a.state()).unwrap();
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
}
