//! Candidate order for one decode step: greedy ranking, or seeded sampling without replacement.
//!
//! The loop asks for candidates one at a time and stops asking as soon as one is emitted, so the
//! common case (the first candidate is admitted) costs what an ungoverned sampler costs: one
//! argmax (greedy) or one draw (sampling). Further candidates are produced only after a
//! rejection or an advisory failure:
//!
//! * **greedy**: logits in descending order, ties broken by the lower token id, NaN ranked as
//!   −∞. The ranking is built lazily (a partial selection of the first `limit` tokens, where
//!   `limit` is the loop's try bound), never a full sort of the vocabulary.
//! * **sampling** (temperature, optional top-k, optional top-p): the support is the top-k tokens
//!   by logit, then the smallest prefix of them by probability whose mass reaches top-p; each
//!   candidate is drawn from the support's remaining mass *without replacement* (a drawn token's
//!   probability is removed before the next draw), one uniform from a ChaCha20 stream seeded by
//!   the request's seed per draw. Once the support is exhausted the remaining tokens follow in
//!   greedy order, so a small nucleus does not by itself end a governed call.
//!
//! Same seed, same prompt, same model → the same draws, hence the same output.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::DecodeError;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Sampler {
    /// The most probable token (ties: the lower id).
    Greedy,
    /// Seeded sampling from `softmax(logits / temperature)`, restricted to the top-k tokens and
    /// then to the top-p nucleus when given.
    Sample {
        temperature: f32,
        top_k: Option<usize>,
        top_p: Option<f32>,
        seed: u64,
    },
}

impl Sampler {
    /// Checks the parameters: temperature finite and > 0, top-k ≥ 1, top-p in (0, 1].
    pub fn validate(&self) -> Result<(), DecodeError> {
        if let Sampler::Sample {
            temperature,
            top_k,
            top_p,
            ..
        } = *self
        {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(DecodeError::Invalid(format!(
                    "temperature must be a finite number > 0 (use greedy decoding for 0), got {temperature}"
                )));
            }
            if top_k == Some(0) {
                return Err(DecodeError::Invalid("top-k must be at least 1".into()));
            }
            if let Some(p) = top_p {
                if !(p > 0.0 && p <= 1.0) {
                    return Err(DecodeError::Invalid(format!(
                        "top-p must be in (0, 1], got {p}"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn key(logit: f32) -> f32 {
    if logit.is_nan() {
        f32::NEG_INFINITY
    } else {
        logit
    }
}

/// Descending by logit, then ascending by id: a total order, so selections are deterministic.
fn ranks_before(logits: &[f32], a: u32, b: u32) -> std::cmp::Ordering {
    key(logits[b as usize])
        .total_cmp(&key(logits[a as usize]))
        .then(a.cmp(&b))
}

/// The per-call candidate generator; its buffers are reused across steps.
pub(crate) struct CandidateOrder {
    sampler: Sampler,
    rng: Option<ChaCha20Rng>,
    /// At most this many candidates are requested per step.
    limit: usize,
    /// Greedy ranking of the current step (built on the second request).
    ranked: Vec<u32>,
    ranked_built: bool,
    ranked_pos: usize,
    /// Sampling support and the remaining probability of each of its tokens.
    support: Vec<u32>,
    weights: Vec<f64>,
    mass: f64,
    /// Candidates already returned this step (≤ limit), to skip them in the greedy fallback.
    returned: Vec<u32>,
    scratch: Vec<u32>,
}

impl CandidateOrder {
    pub(crate) fn new(sampler: Sampler, limit: usize) -> CandidateOrder {
        let rng = match sampler {
            Sampler::Greedy => None,
            Sampler::Sample { seed, .. } => Some(ChaCha20Rng::seed_from_u64(seed)),
        };
        CandidateOrder {
            sampler,
            rng,
            limit: limit.max(1),
            ranked: Vec::new(),
            ranked_built: false,
            ranked_pos: 0,
            support: Vec::new(),
            weights: Vec::new(),
            mass: 0.0,
            returned: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Starts a step over `logits` (sampling: computes the support and its probabilities).
    pub(crate) fn begin(&mut self, logits: &[f32]) {
        self.ranked_built = false;
        self.ranked_pos = 0;
        self.returned.clear();
        self.support.clear();
        self.weights.clear();
        self.mass = 0.0;
        let Sampler::Sample {
            temperature,
            top_k,
            top_p,
            ..
        } = self.sampler
        else {
            return;
        };
        let n = logits.len();
        self.scratch.clear();
        self.scratch.extend(0..n as u32);
        let k = top_k.unwrap_or(n).min(n);
        if k < n && k > 0 {
            self.scratch
                .select_nth_unstable_by(k - 1, |a, b| ranks_before(logits, *a, *b));
            self.scratch.truncate(k);
        }
        if top_p.is_some() {
            self.scratch
                .sort_unstable_by(|a, b| ranks_before(logits, *a, *b));
        }
        let max = self
            .scratch
            .iter()
            .map(|&i| key(logits[i as usize]))
            .fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            // Every logit is −∞ or NaN: no support; candidates come from the greedy fallback.
            return;
        }
        let temperature = f64::from(temperature);
        let mut total = 0.0;
        for &i in &self.scratch {
            let w = ((f64::from(key(logits[i as usize])) - f64::from(max)) / temperature).exp();
            total += w;
            self.weights.push(w);
        }
        let mut keep = self.scratch.len();
        if let Some(p) = top_p {
            let target = f64::from(p) * total;
            let mut cumulative = 0.0;
            for (idx, w) in self.weights.iter().enumerate() {
                cumulative += w;
                if cumulative >= target {
                    keep = idx + 1;
                    break;
                }
            }
        }
        self.weights.truncate(keep);
        self.support.extend_from_slice(&self.scratch[..keep]);
        self.mass = self.weights.iter().sum();
    }

    /// The next candidate of this step, or `None` once `limit` candidates were returned or the
    /// vocabulary is exhausted.
    pub(crate) fn next(&mut self, logits: &[f32]) -> Option<u32> {
        if self.returned.len() >= self.limit || self.returned.len() >= logits.len() {
            return None;
        }
        let candidate = match self.sampler {
            Sampler::Greedy => self.next_greedy(logits),
            Sampler::Sample { .. } => match self.draw() {
                Some(id) => Some(id),
                None => self.next_greedy(logits),
            },
        }?;
        self.returned.push(candidate);
        Some(candidate)
    }

    fn draw(&mut self) -> Option<u32> {
        let rng = self.rng.as_mut()?;
        if self.mass <= 0.0 || !self.weights.iter().any(|w| *w > 0.0) {
            return None;
        }
        let target = rng.gen::<f64>() * self.mass;
        let mut cumulative = 0.0;
        let mut chosen = None;
        for (idx, w) in self.weights.iter().enumerate() {
            if *w <= 0.0 {
                continue;
            }
            chosen = Some(idx);
            cumulative += w;
            if cumulative > target {
                break;
            }
        }
        // Rounding can leave `target` past the sum: the last token with weight is taken.
        let idx = chosen?;
        self.mass -= self.weights[idx];
        self.weights[idx] = 0.0;
        Some(self.support[idx])
    }

    fn next_greedy(&mut self, logits: &[f32]) -> Option<u32> {
        if !self.ranked_built && self.returned.is_empty() {
            // The common case: one argmax, no ranking.
            let best = (0..logits.len() as u32).min_by(|a, b| ranks_before(logits, *a, *b))?;
            return Some(best);
        }
        if !self.ranked_built {
            self.build_ranking(logits);
        }
        while self.ranked_pos < self.ranked.len() {
            let id = self.ranked[self.ranked_pos];
            self.ranked_pos += 1;
            if !self.returned.contains(&id) {
                return Some(id);
            }
        }
        None
    }

    /// The first `2 * limit + 1` tokens in greedy order (enough for any step: at most `limit`
    /// candidates are returned, some of which may have been drawn already), in one pass with a
    /// small sorted buffer: most tokens cost one comparison against the buffer's last entry.
    fn build_ranking(&mut self, logits: &[f32]) {
        let keep = (2 * self.limit + 1).min(logits.len());
        self.ranked.clear();
        let mut threshold = f32::NEG_INFINITY;
        for id in 0..logits.len() as u32 {
            if self.ranked.len() == keep {
                // Fast path: a plain float comparison against the buffer's last logit.
                if key(logits[id as usize]) < threshold {
                    continue;
                }
                let last = self.ranked[keep - 1];
                if ranks_before(logits, id, last) != std::cmp::Ordering::Less {
                    continue;
                }
                self.ranked.pop();
            }
            let at = self.ranked.partition_point(|&other| {
                ranks_before(logits, other, id) == std::cmp::Ordering::Less
            });
            self.ranked.insert(at, id);
            if self.ranked.len() == keep {
                threshold = key(logits[self.ranked[keep - 1] as usize]);
            }
        }
        self.ranked_built = true;
        self.ranked_pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(order: &mut CandidateOrder, logits: &[f32]) -> Vec<u32> {
        order.begin(logits);
        std::iter::from_fn(|| order.next(logits)).collect()
    }

    #[test]
    fn greedy_ranks_by_logit_then_id_and_stops_at_the_limit() {
        let logits = [0.5, 2.0, f32::NAN, 2.0, -1.0, 3.0];
        let mut order = CandidateOrder::new(Sampler::Greedy, 4);
        assert_eq!(all(&mut order, &logits), vec![5, 1, 3, 0]);
        let mut order = CandidateOrder::new(Sampler::Greedy, 10);
        assert_eq!(all(&mut order, &logits), vec![5, 1, 3, 0, 4, 2]);
    }

    #[test]
    fn the_lazy_greedy_ranking_equals_a_full_sort() {
        // Many ties and NaNs: the ranking must follow (logit desc, id asc) exactly.
        let logits: Vec<f32> = (0..5000u32)
            .map(|i| match i % 97 {
                0 => f32::NAN,
                r => ((i.wrapping_mul(2654435761) >> 7) % 50) as f32 + (r % 3) as f32 * 0.5,
            })
            .collect();
        let mut expected: Vec<u32> = (0..logits.len() as u32).collect();
        expected.sort_by(|a, b| ranks_before(&logits, *a, *b));
        let mut order = CandidateOrder::new(Sampler::Greedy, 20);
        assert_eq!(all(&mut order, &logits), expected[..20].to_vec());
    }

    #[test]
    fn sampling_is_without_replacement_within_the_support_then_greedy() {
        let logits = [0.0, 5.0, 4.0, -3.0, 1.0];
        let sampler = Sampler::Sample {
            temperature: 1.0,
            top_k: Some(2),
            top_p: None,
            seed: 7,
        };
        let mut order = CandidateOrder::new(sampler, 5);
        let got = all(&mut order, &logits);
        // The support is {1, 2} in some sampled order, then the rest by logit.
        let mut head = got[..2].to_vec();
        head.sort();
        assert_eq!(head, vec![1, 2]);
        assert_eq!(&got[2..], &[4, 0, 3]);
    }

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 / 4.0).collect();
        let draws = |seed| {
            let mut order = CandidateOrder::new(
                Sampler::Sample {
                    temperature: 1.5,
                    top_k: None,
                    top_p: Some(0.9),
                    seed,
                },
                1,
            );
            (0..40)
                .map(|_| all(&mut order, &logits)[0])
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
    }

    #[test]
    fn invalid_parameters_are_named() {
        let bad = Sampler::Sample {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("temperature"));
        let bad = Sampler::Sample {
            temperature: 1.0,
            top_k: None,
            top_p: Some(1.5),
            seed: 0,
        };
        assert!(bad.validate().unwrap_err().to_string().contains("top-p"));
    }
}
