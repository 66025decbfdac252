//! Governed vs ungoverned decoding measured side by side (the measurement behind
//! `warden bench decode`).
//!
//! [`compare`] runs every prompt through [`Governor::generate`] and [`generate_ungoverned`] with
//! the same model, request and sampler, alternating which goes first from one pair to the next
//! (A/B, B/A, …) so drift (a warming cache, another process on the machine) falls on both sides
//! alike. One unmeasured call of each kind comes first. The model is wrapped so that its prefill
//! (`start`) is timed apart: the same prompt costs the same prefill governed or not, so the ratio
//! compares the time per generated token after it.
//!
//! Nothing here asserts a time: the report holds the measurements and the caller prints them.

use std::time::{Duration, Instant};

use warden_model::{LanguageModel, ModelError};

use crate::{generate_ungoverned, DecodeError, GovernanceTiming, Governor, Request, Stop};

/// One side's totals (all governed calls, or all ungoverned calls).
#[derive(Debug, Clone, Default)]
pub struct SideTotals {
    pub calls: usize,
    pub tokens: u64,
    /// Whole calls, prefill included.
    pub wall: Duration,
    /// The model's prefill (`LanguageModel::start`).
    pub prefill: Duration,
    /// Calls by stop reason: `stop`, `length`, `policy`.
    pub stops: [usize; 3],
}

impl SideTotals {
    /// Wall time after the prefill: sampling, governance (if any) and incremental forwards.
    pub fn decode(&self) -> Duration {
        self.wall.saturating_sub(self.prefill)
    }

    /// Decode time per generated token, in nanoseconds (NaN for no tokens).
    pub fn decode_ns_per_token(&self) -> f64 {
        per_token(self.decode(), self.tokens)
    }

    /// Generated tokens per second of decode time.
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.decode().as_secs_f64()
    }

    fn add(&mut self, wall: Duration, prefill: Duration, tokens: usize, stop: Stop) {
        self.calls += 1;
        self.tokens += tokens as u64;
        self.wall += wall;
        self.prefill += prefill;
        self.stops[stop_index(stop)] += 1;
    }
}

fn stop_index(stop: Stop) -> usize {
    match stop {
        Stop::Stop => 0,
        Stop::Length => 1,
        Stop::Policy => 2,
    }
}

fn per_token(time: Duration, tokens: u64) -> f64 {
    if tokens == 0 {
        f64::NAN
    } else {
        time.as_nanos() as f64 / tokens as f64
    }
}

/// One prompt's governed and ungoverned call in one round.
#[derive(Debug, Clone)]
pub struct Pair {
    pub prompt: usize,
    pub governed_tokens: usize,
    pub ungoverned_tokens: usize,
    /// Governed / ungoverned decode time per token for this pair.
    pub ratio: f64,
    /// The governed call emitted exactly the ungoverned call's tokens.
    pub same_output: bool,
}

/// Everything [`compare`] measured.
#[derive(Debug, Clone, Default)]
pub struct DecodeBench {
    pub governed: SideTotals,
    pub ungoverned: SideTotals,
    pub pairs: Vec<Pair>,
    /// Governance time of every emitted token of every governed call, ascending.
    pub step_governance_ns: Vec<u64>,
    /// The governed calls' timings, summed.
    pub timing: GovernanceTiming,
    /// Candidates judged, by verdict, over all governed calls.
    pub admitted: u64,
    pub rejected: u64,
    pub decomposed: u64,
    pub interventions: usize,
}

/// Nearest-rank percentile of ascending `sorted` (`q` in (0, 1]); 0 for an empty slice.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl DecodeBench {
    /// Governed / ungoverned decode time per token over all calls.
    pub fn ratio(&self) -> f64 {
        self.governed.decode_ns_per_token() / self.ungoverned.decode_ns_per_token()
    }

    /// The median of the per-pair ratios (robust to one disturbed call).
    pub fn median_pair_ratio(&self) -> f64 {
        let mut ratios: Vec<f64> = self
            .pairs
            .iter()
            .map(|p| p.ratio)
            .filter(|r| r.is_finite())
            .collect();
        ratios.sort_by(f64::total_cmp);
        match ratios.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => ratios[n / 2],
            n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
        }
    }

    /// Governance time per governed token in nanoseconds: everything the governor added to the
    /// calls (also the steps that ended a call) over the tokens emitted.
    pub fn governance_mean_ns(&self) -> f64 {
        self.timing.total_ns as f64 / self.governed.tokens.max(1) as f64
    }

    /// The ratio the governance time alone implies: (ungoverned time per token + governance
    /// time per token) / ungoverned time per token. Unlike the wall-clock ratio it is not
    /// disturbed by the noise of the model's forwards.
    pub fn implied_ratio(&self) -> f64 {
        let base = self.ungoverned.decode_ns_per_token();
        (base + self.governance_mean_ns()) / base
    }

    /// A part of the governance time per governed token, in nanoseconds.
    pub fn part_ns_per_token(&self, part_ns: u64) -> f64 {
        part_ns as f64 / self.governed.tokens.max(1) as f64
    }
}

/// Progress of [`compare`]: calls done and calls in all (warm-up included).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// Runs each of `prompts` `rounds` times governed and ungoverned (see the module docs) and
/// returns the measurements. `request` (its sampler, `max_tokens` and attributes) is the same
/// for both sides.
pub fn compare(
    model: &mut dyn LanguageModel,
    governor: &Governor,
    prompts: &[String],
    request: &Request,
    rounds: usize,
    progress: Progress<'_>,
) -> Result<DecodeBench, DecodeError> {
    if prompts.is_empty() || rounds == 0 {
        return Err(DecodeError::Invalid(
            "nothing to measure: give at least one prompt and one round".into(),
        ));
    }
    let mut model = Timed {
        inner: model,
        prefill: Duration::ZERO,
    };
    let total = 2 + 2 * prompts.len() * rounds;
    let mut done = 0;
    // Warm-up: first-call allocations and page faults are not part of either side.
    let warmup = Request {
        max_tokens: request.max_tokens.min(8),
        ..request.clone()
    };
    generate_ungoverned(&mut model, &prompts[0], &warmup)?;
    done += 1;
    progress(done, total);
    governor.generate(&mut model, &prompts[0], &warmup)?;
    done += 1;
    progress(done, total);

    let mut bench = DecodeBench::default();
    for round in 0..rounds {
        for (prompt_idx, prompt) in prompts.iter().enumerate() {
            let governed_first = (round * prompts.len() + prompt_idx).is_multiple_of(2);
            let mut governed = None;
            let mut ungoverned = None;
            for side in 0..2 {
                let run_governed = (side == 0) == governed_first;
                model.prefill = Duration::ZERO;
                let start = Instant::now();
                let generation = if run_governed {
                    governor.generate(&mut model, prompt, request)?
                } else {
                    generate_ungoverned(&mut model, prompt, request)?
                };
                let wall = start.elapsed();
                let prefill = model.prefill;
                let tokens = generation.tokens.len();
                if run_governed {
                    bench.governed.add(wall, prefill, tokens, generation.stop);
                    let summary = &generation.summary;
                    if let Some(t) = summary.timing {
                        add_timing(&mut bench.timing, &t);
                    }
                    bench.admitted += summary.verdicts.admit;
                    bench.rejected += summary.verdicts.reject;
                    bench.decomposed += summary.verdicts.decompose;
                    bench.interventions += summary.interventions.len();
                    bench
                        .step_governance_ns
                        .extend_from_slice(&generation.step_governance_ns);
                    governed = Some((generation.tokens, wall.saturating_sub(prefill)));
                } else {
                    bench.ungoverned.add(wall, prefill, tokens, generation.stop);
                    ungoverned = Some((generation.tokens, wall.saturating_sub(prefill)));
                }
                done += 1;
                progress(done, total);
            }
            if let (Some((g_tokens, g_time)), Some((u_tokens, u_time))) = (governed, ungoverned) {
                bench.pairs.push(Pair {
                    prompt: prompt_idx,
                    governed_tokens: g_tokens.len(),
                    ungoverned_tokens: u_tokens.len(),
                    ratio: per_token(g_time, g_tokens.len() as u64)
                        / per_token(u_time, u_tokens.len() as u64),
                    same_output: g_tokens == u_tokens,
                });
            }
        }
    }
    bench.step_governance_ns.sort_unstable();
    Ok(bench)
}

fn add_timing(sum: &mut GovernanceTiming, t: &GovernanceTiming) {
    sum.total_ns += t.total_ns;
    sum.fingerprint_ns += t.fingerprint_ns;
    sum.flagger_ns += t.flagger_ns;
    sum.evaluate_ns += t.evaluate_ns;
    sum.ranking_ns += t.ranking_ns;
    sum.work_units += t.work_units;
}

/// The measured model: every call passes through, `start` is timed.
struct Timed<'m> {
    inner: &'m mut dyn LanguageModel,
    prefill: Duration,
}

impl LanguageModel for Timed<'_> {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn token_bytes(&self, id: u32) -> &[u8] {
        self.inner.token_bytes(id)
    }
    fn eos(&self) -> Option<u32> {
        self.inner.eos()
    }
    fn context_limit(&self) -> usize {
        self.inner.context_limit()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.inner.encode(text)
    }
    fn start(&mut self, prompt: &[u32]) -> Result<Vec<f32>, ModelError> {
        let start = Instant::now();
        let logits = self.inner.start(prompt);
        self.prefill += start.elapsed();
        logits
    }
    fn step(&mut self, token: u32) -> Result<Vec<f32>, ModelError> {
        self.inner.step(token)
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.5), 50);
        assert_eq!(percentile(&sorted, 0.99), 99);
        assert_eq!(percentile(&sorted, 1.0), 100);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(percentile(&[1, 2, 3], 0.01), 1);
    }
}
