//! The governed training loop: data gate → forward/backward per depth group (gradient routing)
//! → memorization detectors → gradient gate → optimizer → evaluation gate → one record.
//!
//! Architecture invariants:
//! - A sample reaches the forward pass only after the data gate found its *current* content hash
//!   in the signed admission index and its source, class and license admissible.
//! - A sample's gradient reaches only the regions its depth admits: each depth group gets its own
//!   forward and backward pass, and only the admitted regions' gradients are read from it.
//! - A region the gate rejects gets no optimizer call at all: its parameters and moments are
//!   untouched (not a zero gradient fed to Adam).
//! - Exactly one record per iteration — `train.iteration` after every gate decided, or
//!   `train.failure` — and nothing is appended before all gates decided.
//! - Everything random derives from `(seed, iteration)`, so any iteration can be replayed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::config::TrainConfig;
use crate::data::{AdmissionIndex, PoolSample};
use crate::detect::{self, Candidate, Detector, Finding};
use crate::gates::{Admissibility, RegionStats, RegionVerdict, SampleVerdict};
use crate::io;
use crate::model::{encode, mean_over, region_of, Gpt};
use crate::optim::{AdamW, Moments};
use crate::policy::{FailureMode, LineageCadence, ResolvedPolicy};
use crate::TrainError;

/// Where records go: the signed lineage in production, a vector in unit tests.
pub trait RecordSink {
    /// Appends one record; returns its index.
    fn append(
        &mut self,
        kind: &str,
        payload: Value,
        policy_version: &str,
    ) -> Result<u64, TrainError>;
    /// Signs a lineage checkpoint over everything appended so far.
    fn checkpoint(&mut self) -> Result<(), TrainError>;
}

/// Records kept in memory (unit tests, benchmarks).
#[derive(Default)]
pub struct MemorySink {
    pub records: Vec<(String, Value, String)>,
    pub checkpoints: usize,
}

impl RecordSink for MemorySink {
    fn append(&mut self, kind: &str, payload: Value, version: &str) -> Result<u64, TrainError> {
        self.records
            .push((kind.to_string(), payload, version.to_string()));
        Ok(self.records.len() as u64 - 1)
    }
    fn checkpoint(&mut self) -> Result<(), TrainError> {
        self.checkpoints += 1;
        Ok(())
    }
}

/// A canary planted in the training data (Carlini et al., "The Secret Sharer").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    /// The full secret as planted, e.g. `canary-k3m9-xq2d-7hpa`.
    pub secret: String,
    /// The literal start every secret of this format shares (`canary-`): part of the prompt.
    pub fixed_prefix: String,
    /// Characters a random position of the format draws from.
    pub alphabet: Vec<u8>,
    /// The text that precedes the secret where it was planted (the extraction prompt).
    pub context: String,
}

impl Canary {
    /// A canary from its secret and a format like `canary-xxxx-xxxx-xxxx (x in [a-z0-9])`:
    /// the template's text before the first `x` is fixed, `x` positions draw from the bracket
    /// class (default `[a-z0-9]`).
    pub fn from_format(secret: &str, format: &str) -> Canary {
        let template = format.split(" (").next().unwrap_or(format);
        let fixed = template.find('x').map_or("", |i| &template[..i]);
        let fixed_prefix = if secret.starts_with(fixed) {
            fixed.to_string()
        } else {
            String::new()
        };
        let class = format
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(class, _)| class.as_bytes().to_vec())
            .unwrap_or_else(|| b"a-z0-9".to_vec());
        let mut alphabet = Vec::new();
        let mut i = 0;
        while i < class.len() {
            if i + 2 < class.len() && class[i + 1] == b'-' {
                alphabet.extend(class[i]..=class[i + 2]);
                i += 3;
            } else {
                alphabet.push(class[i]);
                i += 1;
            }
        }
        Canary {
            secret: secret.to_string(),
            fixed_prefix,
            alphabet,
            context: String::new(),
        }
    }
}

/// Running totals shown on the progress bar and in the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateCounts {
    pub iterations: u64,
    pub samples_admitted: u64,
    pub samples_refused: u64,
    pub samples_rejected_memorization: u64,
    pub samples_clipped_memorization: u64,
    /// Exact-repeat spans whose target bytes were masked (reject) or down-weighted (clip).
    pub spans_masked_memorization: u64,
    pub regions_admitted: u64,
    pub regions_clipped: u64,
    pub regions_rejected: u64,
    pub evals_run: u64,
    pub evals_refused: u64,
    pub failures: u64,
}

/// Where one iteration's time goes.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub data_gate: Duration,
    pub detectors: Duration,
    pub forward_backward: Duration,
    pub gradient_gate: Duration,
    pub optimizer: Duration,
    pub evaluation: Duration,
    pub digest: Duration,
    pub record: Duration,
    /// Encoding, content-addressing and writing the retained checkpoints.
    pub retention: Duration,
    /// The in-memory rollback snapshot and the `checkpoint_every` resume file (not counted as
    /// governance: a trainer without gates checkpoints too).
    pub checkpoint: Duration,
}

impl Timings {
    pub fn governance(&self) -> Duration {
        self.data_gate
            + self.detectors
            + self.gradient_gate
            + self.digest
            + self.record
            + self.retention
    }
}

/// A checkpoint kept for good for spot-check replay: `RUN_DIR/<file>`, named by the SHA-256 of
/// its bytes (which commit to its detector sidecar by digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedCheckpoint {
    pub iteration: u64,
    /// SHA-256 (hex) of the safetensors file.
    pub sha256: String,
    /// `checkpoints/retained/<sha256>.safetensors`, relative to the run directory.
    pub file: String,
}

impl RetainedCheckpoint {
    /// The record form: `{"sha256", "file"}`.
    pub fn to_json(&self) -> Value {
        json!({"sha256": self.sha256, "file": self.file})
    }
}

/// Where retained checkpoints live, relative to the run directory.
pub const RETAINED_DIR: &str = "checkpoints/retained";

/// The gate a failure was found at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    Data,
    Gradient,
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Gate::Data => "data",
            Gate::Gradient => "gradient",
        })
    }
}

/// What one iteration ended as (a halt is an `Err(TrainError::Halted)`).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Admitted { loss: f32, tokens: usize },
    Quarantined { gate: Gate, detail: String },
}

/// What the data gate decided for one drawn sample. Recorded as the sample's `status` string
/// (`admitted`, `refused: REASON`, `skipped: quarantined at iteration N`), unchanged from the
/// record format before this type existed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleStatus {
    Admitted,
    /// Not admissible (not in the declaration's admitted sources, license, class, ...).
    Refused(String),
    /// Quarantined by an earlier failure of the data gate at iteration `at`.
    Quarantined {
        at: u64,
    },
}

impl std::fmt::Display for SampleStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SampleStatus::Admitted => f.write_str("admitted"),
            SampleStatus::Refused(reason) => write!(f, "refused: {reason}"),
            SampleStatus::Quarantined { at } => write!(f, "skipped: quarantined at iteration {at}"),
        }
    }
}

impl Serialize for SampleStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct Snapshot {
    iteration: u64,
    params: BTreeMap<String, Tensor>,
    moments: BTreeMap<String, Moments>,
    last_update: BTreeMap<String, u64>,
    /// Each detector's state in its compact binary form ([`Detector::save`]).
    detectors: Vec<Vec<u8>>,
    last_eval: Option<u64>,
}

/// Where a checkpoint's detector state lives: a sidecar file next to the safetensors file,
/// committed to by its SHA-256 here (the detector memory stays out of the safetensors header,
/// which readers cap at 100 MB).
#[derive(Serialize, Deserialize)]
struct DetectorStateRef {
    file: String,
    sha256: String,
    bytes: u64,
}

/// State saved next to the tensors of a checkpoint.
#[derive(Serialize, Deserialize)]
struct CheckpointState {
    iteration: u64,
    adam_steps: BTreeMap<String, u64>,
    last_update: BTreeMap<String, u64>,
    detectors: Option<DetectorStateRef>,
    last_eval: Option<u64>,
    quarantined: BTreeMap<usize, u64>,
    recent_failures: Vec<u64>,
    counts: GateCounts,
    policy_versions: Vec<String>,
    config_digest: String,
}

/// A gate's failure, before the failure mode decides between halt and quarantine.
struct Failure {
    gate: Gate,
    detail: String,
    sample: Option<usize>,
}

/// Why the stages of an iteration stopped early: a gate failed (recorded as `train.failure`,
/// handled by the failure mode) or the computation itself failed (an error, nothing recorded).
enum Stop {
    Failure(Failure),
    Error(TrainError),
}

impl From<TrainError> for Stop {
    fn from(err: TrainError) -> Stop {
        Stop::Error(err)
    }
}

impl From<warden_model::ModelError> for Stop {
    fn from(err: warden_model::ModelError) -> Stop {
        Stop::Error(err.into())
    }
}

impl From<candle_core::Error> for Stop {
    fn from(err: candle_core::Error) -> Stop {
        Stop::Error(err.into())
    }
}

/// One drawn sample as the stages see it.
struct Entry {
    pool_idx: usize,
    offset: usize,
    len: usize,
    depth: Option<String>,
    class: String,
    status: SampleStatus,
    weight: f64,
    /// Byte spans of the sample's text whose target positions get `span_weight`.
    spans: Vec<(usize, usize)>,
    span_weight: f64,
}

/// One iteration's batch, filled in stage by stage.
struct Batch {
    entries: Vec<Entry>,
    /// Indices (into `entries`) of the samples the data gate admitted.
    admitted: Vec<usize>,
    findings: Vec<Finding>,
    per_sample_loss: BTreeMap<usize, f32>,
    loss_sum: f64,
    loss_weight: f64,
    n_tokens: usize,
    /// One record per depth group's forward/backward pass.
    group_records: Vec<Value>,
}

/// The gradient gate's decisions for one iteration.
struct GradientDecision {
    updates: Vec<(String, Tensor)>,
    region_records: Vec<Value>,
    /// (admitted, clipped, rejected) regions.
    verdict_counts: (u64, u64, u64),
}

/// Applies a detection to its entry: a whole-sample finding caps the sample's weight, a span
/// finding down-weights those target bytes.
fn apply_finding(entries: &mut [Entry], finding: &Finding, kept: f64) {
    let entry = &mut entries[finding.sample];
    if finding.spans.is_empty() {
        entry.weight = entry.weight.min(kept);
    } else {
        entry.spans.extend(finding.spans.iter().copied());
        entry.span_weight = entry.span_weight.min(kept);
    }
}

impl Batch {
    /// Mean loss over the samples that reached a forward pass (NaN when none did).
    fn mean_loss(&self) -> f32 {
        if self.loss_weight > 0.0 {
            (self.loss_sum / self.loss_weight) as f32
        } else {
            f32::NAN
        }
    }
}

/// Token weights for a depth group: target bytes inside detected spans (exact repeats) keep
/// only their entry's `span_weight`; `None` when no member has a span.
fn span_weights(
    entries: &[Entry],
    members: &[usize],
    mask: &Tensor,
) -> Result<Option<Tensor>, TrainError> {
    if members.iter().all(|&i| entries[i].spans.is_empty()) {
        return Ok(None);
    }
    let (rows, cols) = mask.dims2()?;
    let mut w = mask.flatten_all()?.to_vec1::<f32>()?;
    for (row, &i) in members.iter().enumerate() {
        let e = &entries[i];
        for col in 0..cols.min(e.len.saturating_sub(1)) {
            let target = e.offset + col + 1;
            if e.spans.iter().any(|&(a, b)| a <= target && target < b) {
                w[row * cols + col] *= e.span_weight as f32;
            }
        }
    }
    Ok(Some(Tensor::from_vec(w, (rows, cols), &Device::Cpu)?))
}

fn window_of<'a>(pool: &'a [PoolSample], entry: &Entry) -> &'a [u8] {
    &pool[entry.pool_idx].text.as_bytes()[entry.offset..entry.offset + entry.len]
}

/// The detectors' view of the batch entries at `indices` (a free function so the caller can
/// hold it while borrowing `self.detectors` mutably).
fn candidates<'a>(
    pool: &'a [PoolSample],
    entries: &'a [Entry],
    indices: &[usize],
) -> Vec<Candidate<'a>> {
    indices
        .iter()
        .map(|&i| Candidate {
            id: entries[i].pool_idx as u64,
            class: &entries[i].class,
            text: pool[entries[i].pool_idx].text.as_bytes(),
        })
        .collect()
}

fn hex32(bytes: &[u8; 32]) -> String {
    hex::encode(bytes)
}

/// A JSON number, or a string for NaN/∞ (lineage payloads must be finite).
fn num(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        json!(value.to_string())
    }
}

fn sum_sq_and_max_abs(tensor: &Tensor) -> Result<(f64, f64, bool), TrainError> {
    let values = tensor.flatten_all()?.to_vec1::<f32>()?;
    let mut sum = 0f64;
    let mut max = 0f64;
    let mut finite = true;
    for v in values {
        let v = f64::from(v);
        finite &= v.is_finite();
        sum += v * v;
        max = max.max(v.abs());
    }
    Ok((sum, max, finite))
}

pub struct Trainer {
    pub config: TrainConfig,
    config_digest: [u8; 32],
    policy: ResolvedPolicy,
    policy_versions: Vec<String>,
    model: Gpt,
    optimizer: AdamW,
    corpus: Arc<dyn AdmissionIndex>,
    pool: Vec<PoolSample>,
    held_out: BTreeMap<String, Vec<PoolSample>>,
    canaries: Vec<Canary>,
    detectors: Vec<Box<dyn Detector>>,
    region_vars: BTreeMap<String, Vec<String>>,
    iteration: u64,
    last_update: BTreeMap<String, u64>,
    last_eval: Option<u64>,
    quarantined: BTreeMap<usize, u64>,
    recent_failures: VecDeque<u64>,
    snapshot: Snapshot,
    counts: GateCounts,
    pub timings: Timings,
    /// Forward/backward passes run (one per depth group per iteration).
    pub group_passes: u64,
    last_loss: Option<f32>,
    /// The latest evaluation that ran in this process: (iteration, its record).
    last_evaluation: Option<(u64, Value)>,
    run_dir: Option<PathBuf>,
}

impl Trainer {
    /// A fresh run at iteration 0. `run_dir`, when given, receives on-disk checkpoints.
    pub fn new(
        config: TrainConfig,
        corpus: Arc<dyn AdmissionIndex>,
        run_dir: Option<PathBuf>,
    ) -> Result<Trainer, TrainError> {
        config.validate()?;
        let model = Gpt::new(&config.model, config.seed)?;
        let optimizer = AdamW::new(config.optimizer.clone(), model.vars())?;
        let policy = config.policy.resolve(&config.model.regions())?;
        let mut pool = Vec::new();
        let mut held_out = BTreeMap::new();
        for (idx, source) in corpus.sources().iter().enumerate() {
            if source.held_out {
                held_out.insert(source.id.clone(), corpus.read_source(idx as u32)?);
            } else if source.admitted {
                pool.extend(corpus.read_source(idx as u32)?);
            }
        }
        if pool.is_empty() {
            return Err(TrainError::Corpus(
                "the corpus has no admitted training source with samples".into(),
            ));
        }
        let config_text = config.to_toml()?;
        let mut region_vars: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in model.vars().keys() {
            region_vars
                .entry(region_of(name).to_string())
                .or_default()
                .push(name.clone());
        }
        let detectors = policy
            .source
            .memorization
            .as_ref()
            .map(detect::from_rule)
            .unwrap_or_default();
        let snapshot = Snapshot {
            iteration: 0,
            params: model.tensors(),
            moments: optimizer.snapshot()?,
            last_update: BTreeMap::new(),
            detectors: detectors
                .iter()
                .map(|d| {
                    let mut bytes = Vec::new();
                    d.save(&mut bytes);
                    bytes
                })
                .collect(),
            last_eval: None,
        };
        Ok(Trainer {
            config_digest: Sha256::digest(config_text.as_bytes()).into(),
            policy_versions: vec![policy.version().to_string()],
            policy,
            config,
            model,
            optimizer,
            corpus,
            pool,
            held_out,
            canaries: Vec::new(),
            detectors,
            region_vars,
            iteration: 0,
            last_update: BTreeMap::new(),
            last_eval: None,
            quarantined: BTreeMap::new(),
            recent_failures: VecDeque::new(),
            snapshot,
            counts: GateCounts::default(),
            timings: Timings::default(),
            group_passes: 0,
            last_loss: None,
            last_evaluation: None,
            run_dir,
        })
    }

    /// Where on-disk checkpoints go (`RUN_DIR/checkpoints`); `None`: in memory only.
    pub fn set_run_dir(&mut self, run_dir: Option<PathBuf>) {
        self.run_dir = run_dir;
    }

    pub fn set_canaries(&mut self, canaries: Vec<Canary>) {
        self.canaries = canaries;
    }

    pub fn canaries(&self) -> &[Canary] {
        &self.canaries
    }

    /// Replaces the memorization detectors (the interface is open for new ones).
    pub fn set_detectors(&mut self, detectors: Vec<Box<dyn Detector>>) {
        self.detectors = detectors;
        self.snapshot.detectors = self.detector_states();
    }

    pub fn iteration(&self) -> u64 {
        self.iteration
    }
    pub fn counts(&self) -> &GateCounts {
        &self.counts
    }
    pub fn model(&self) -> &Gpt {
        &self.model
    }
    pub fn policy(&self) -> &ResolvedPolicy {
        &self.policy
    }
    pub fn policy_versions(&self) -> &[String] {
        &self.policy_versions
    }
    pub fn config_digest(&self) -> [u8; 32] {
        self.config_digest
    }
    pub fn last_loss(&self) -> Option<f32> {
        self.last_loss
    }
    /// The latest evaluation that ran in this process, with its iteration (the
    /// `evaluation` object of that `train.iteration` record).
    pub fn last_evaluation(&self) -> Option<&(u64, Value)> {
        self.last_evaluation.as_ref()
    }
    pub fn corpus(&self) -> &dyn AdmissionIndex {
        self.corpus.as_ref()
    }
    pub fn detector_settings(&self) -> Value {
        Value::Array(
            self.detectors
                .iter()
                .map(|d| json!({"detector": d.name(), "settings": d.settings()}))
                .collect(),
        )
    }

    /// Switches to a new policy (the caller records the `train.transition`).
    pub fn set_policy(&mut self, policy: crate::policy::TrainingPolicy) -> Result<(), TrainError> {
        let resolved = policy.resolve(&self.config.model.regions())?;
        // Detector memory carries over when the detection rule is unchanged.
        if resolved.source.memorization != self.policy.source.memorization {
            self.detectors = resolved
                .source
                .memorization
                .as_ref()
                .map(detect::from_rule)
                .unwrap_or_default();
        }
        if self.policy_versions.last().map(String::as_str) != Some(resolved.version()) {
            self.policy_versions.push(resolved.version().to_string());
        }
        self.config.policy = resolved.source.clone();
        self.policy = resolved;
        Ok(())
    }

    /// The samples of iteration `iteration`: pool indices and byte windows, from
    /// `ChaCha20(seed)` on stream `iteration` — replayable without any other state.
    fn draw(&self, iteration: u64) -> Vec<(usize, usize, usize)> {
        let mut rng = ChaCha20Rng::seed_from_u64(self.config.seed);
        rng.set_stream(iteration);
        let span = self.config.model.context + 1;
        (0..self.config.batch_size)
            .map(|_| {
                let idx = rng.gen_range(0..self.pool.len());
                let len = self.pool[idx].text.len();
                let offset = if len > span {
                    rng.gen_range(0..=len - span)
                } else {
                    0
                };
                (idx, offset, len.min(span))
            })
            .collect()
    }

    /// The admissibility evaluator over this run's policy and corpus.
    fn gates(&self) -> Admissibility<'_> {
        Admissibility {
            policy: &self.policy,
            corpus: self.corpus.as_ref(),
        }
    }

    fn sample_json(&self, pool_idx: usize) -> Value {
        let sample = &self.pool[pool_idx];
        let source = self
            .corpus
            .sources()
            .get(sample.source as usize)
            .map_or("?", |s| s.id.as_str());
        json!({"hash": hex32(&sample.hash), "source": source, "line": sample.line})
    }

    /// Runs one iteration through every gate and appends exactly one record: the stages in
    /// order, then `train.iteration`, or `train.failure` when a gate failed.
    pub fn iterate(&mut self, sink: &mut dyn RecordSink) -> Result<Outcome, TrainError> {
        let iteration = self.iteration + 1;
        match self.stages(iteration, sink) {
            Ok(outcome) => Ok(outcome),
            Err(Stop::Failure(failure)) => self.fail(iteration, failure, sink),
            Err(Stop::Error(err)) => Err(err),
        }
    }

    fn stages(&mut self, iteration: u64, sink: &mut dyn RecordSink) -> Result<Outcome, Stop> {
        let mut batch = self.data_gate(iteration)?;
        self.scan_text(&mut batch);
        let total = self.routed_backward(&mut batch)?;
        let decision = self.gradient_gate(iteration, &total)?;
        self.apply_updates(iteration, &decision.updates)?;

        let t = Instant::now();
        let evaluation = self.evaluation_gate(iteration)?;
        self.timings.evaluation += t.elapsed();

        let loss = batch.mean_loss();
        self.advance(iteration, &batch, &decision, loss);
        // The retained checkpoint is written before the record that names its digest; the
        // full parameter digest is taken only where a checkpoint is (and at the last step):
        // replay from the retained checkpoint bridges the iterations in between.
        let checkpoint_now = self.is_checkpoint_iteration(iteration);
        let retained = if iteration.is_multiple_of(self.policy.source.retain_every) {
            Some(self.retain_checkpoint()?)
        } else {
            None
        };
        let t = Instant::now();
        let digest = if checkpoint_now || iteration >= self.config.steps {
            Some(self.model.digest()?)
        } else {
            None
        };
        self.timings.digest += t.elapsed();

        let t = Instant::now();
        let payload = self.iteration_payload(
            iteration,
            &batch,
            &decision,
            evaluation,
            digest.as_ref(),
            retained.as_ref(),
        );
        sink.append("train.iteration", payload, self.policy.version())?;
        self.timings.record += t.elapsed();

        let t = Instant::now();
        if iteration.is_multiple_of(self.policy.source.checkpoint_every) {
            self.checkpoint()?;
        } else if checkpoint_now {
            // Retained only: the in-memory checkpoint quarantine rolls back to (so a replay
            // from the retained file rolls back to the same state); resume keeps using the
            // `checkpoint_every` files.
            self.snapshot()?;
        }
        self.timings.checkpoint += t.elapsed();
        self.lineage_cadence(iteration, sink)?;
        Ok(Outcome::Admitted {
            loss,
            tokens: batch.n_tokens,
        })
    }

    /// Stage 1, the data gate: draws the batch and decides every sample (quarantined, refused,
    /// admitted with its depth and class). A sample the admission index does not vouch for is a
    /// failure.
    fn data_gate(&mut self, iteration: u64) -> Result<Batch, Stop> {
        let started = Instant::now();
        let draws = self.draw(iteration);
        let mut entries = Vec::with_capacity(draws.len());
        for (pool_idx, offset, len) in draws {
            let mut entry = Entry {
                pool_idx,
                offset,
                len,
                depth: None,
                class: String::new(),
                status: SampleStatus::Admitted,
                weight: 1.0,
                spans: Vec::new(),
                span_weight: 1.0,
            };
            if let Some(&at) = self.quarantined.get(&pool_idx) {
                entry.status = SampleStatus::Quarantined { at };
            } else {
                match self.gates().sample(&self.pool[pool_idx]) {
                    SampleVerdict::Admit { depth, class } => {
                        entry.depth = Some(depth);
                        entry.class = class;
                    }
                    SampleVerdict::Refuse(reason) => entry.status = SampleStatus::Refused(reason),
                    SampleVerdict::Fail(detail) => {
                        self.timings.data_gate += started.elapsed();
                        return Err(Stop::Failure(Failure {
                            gate: Gate::Data,
                            detail,
                            sample: Some(pool_idx),
                        }));
                    }
                }
            }
            entries.push(entry);
        }
        let admitted = (0..entries.len())
            .filter(|&i| entries[i].depth.is_some())
            .collect();
        self.timings.data_gate += started.elapsed();
        Ok(Batch {
            entries,
            admitted,
            findings: Vec::new(),
            per_sample_loss: BTreeMap::new(),
            loss_sum: 0.0,
            loss_weight: 0.0,
            n_tokens: 0,
            group_records: Vec::new(),
        })
    }

    /// Stage 2, memorization detectors on the text: before anything reaches the forward pass.
    fn scan_text(&mut self, batch: &mut Batch) {
        let t = Instant::now();
        if !self.detectors.is_empty() {
            let candidates = candidates(&self.pool, &batch.entries, &batch.admitted);
            let mut found = Vec::new();
            for detector in &mut self.detectors {
                found.extend(detector.scan_text(&candidates));
            }
            for mut finding in found {
                finding.sample = batch.admitted[finding.sample];
                batch.findings.push(finding);
            }
        }
        let (kept, _) = self.gates().memorization();
        for finding in &batch.findings {
            apply_finding(&mut batch.entries, finding, kept);
        }
        self.timings.detectors += t.elapsed();
    }

    /// Stage 3, gradient routing: one forward/backward pass per depth group, each reading only
    /// its depth's admitted regions, scaled by the depth's bound. Returns the summed gradients.
    fn routed_backward(&mut self, batch: &mut Batch) -> Result<BTreeMap<String, Tensor>, Stop> {
        let n_batch = batch.admitted.len().max(1) as f64;
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for &i in &batch.admitted {
            if batch.entries[i].weight > 0.0 {
                if let Some(depth) = &batch.entries[i].depth {
                    groups.entry(depth.clone()).or_default().push(i);
                }
            }
        }
        let mut total: BTreeMap<String, Tensor> = BTreeMap::new();
        for (depth, members) in &groups {
            self.group_pass(batch, depth, members, n_batch, &mut total)?;
        }
        Ok(total)
    }

    /// One depth group's forward pass, loss-side detectors, backward pass and depth bound.
    fn group_pass(
        &mut self,
        batch: &mut Batch,
        depth: &str,
        members: &[usize],
        n_batch: f64,
        total: &mut BTreeMap<String, Tensor>,
    ) -> Result<(), Stop> {
        let t = Instant::now();
        self.group_passes += 1;
        let windows: Vec<&[u8]> = members
            .iter()
            .map(|&i| window_of(&self.pool, &batch.entries[i]))
            .collect();
        let encoded = encode(&windows, self.config.model.context)?;
        batch.n_tokens += encoded.n_tokens;
        // Only this depth's admitted regions are read from the gradients below, so the
        // backward pass stops before the earliest of them.
        let stop = self
            .config
            .model
            .gradient_stop(&self.policy.depths[depth].regions);
        let nll = self
            .model
            .token_nll_routed(&encoded.inputs, &encoded.targets, stop)?;
        let losses_t = mean_over(&nll, &encoded.mask, &encoded.mask)?;
        let losses: Vec<f32> = losses_t.to_vec1()?;
        let token_weights = span_weights(&batch.entries, members, &encoded.mask)?;
        self.timings.forward_backward += t.elapsed();
        if let Some(k) = losses.iter().position(|l| !l.is_finite()) {
            return Err(Stop::Failure(Failure {
                gate: Gate::Gradient,
                detail: format!("non-finite loss {}", losses[k]),
                sample: Some(batch.entries[members[k]].pool_idx),
            }));
        }
        // Memorization, loss side.
        let t = Instant::now();
        if !self.detectors.is_empty() {
            let (kept, _) = self.gates().memorization();
            let candidates = candidates(&self.pool, &batch.entries, members);
            let mut found = Vec::new();
            for detector in &mut self.detectors {
                found.extend(detector.scan_losses(&candidates, &losses));
            }
            for mut finding in found {
                finding.sample = members[finding.sample];
                apply_finding(&mut batch.entries, &finding, kept);
                batch.findings.push(finding);
            }
        }
        self.timings.detectors += t.elapsed();
        let t = Instant::now();
        let weights: Vec<f32> = members
            .iter()
            .map(|&i| (batch.entries[i].weight / n_batch) as f32)
            .collect();
        for (k, &i) in members.iter().enumerate() {
            batch.per_sample_loss.insert(i, losses[k]);
            batch.loss_sum += f64::from(losses[k]);
            batch.loss_weight += 1.0;
        }
        if weights.iter().all(|w| *w == 0.0) {
            self.timings.forward_backward += t.elapsed();
            return Ok(());
        }
        let weights = Tensor::from_vec(weights, members.len(), &Device::Cpu)?;
        let trained_losses = match &token_weights {
            Some(w) => mean_over(&nll, &encoded.mask, w)?,
            None => losses_t,
        };
        let grads = (trained_losses * weights)?.sum_all()?.backward()?;
        self.timings.forward_backward += t.elapsed();
        let t = Instant::now();
        let profile = &self.policy.depths[depth];
        let mut contribution = Vec::new();
        let mut sum_sq = 0f64;
        for region in &profile.regions {
            for name in self.region_vars.get(region).into_iter().flatten() {
                if let Some(grad) = grads.get(self.model.vars()[name].as_tensor()) {
                    sum_sq += grad.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                    contribution.push((name.clone(), grad.clone()));
                }
            }
        }
        let norm = sum_sq.sqrt();
        let scale = self.gates().depth_scale(depth, norm);
        for (name, grad) in contribution {
            let grad = if scale < 1.0 { (grad * scale)? } else { grad };
            let sum = match total.remove(&name) {
                Some(acc) => (acc + grad)?,
                None => grad,
            };
            total.insert(name, sum);
        }
        batch.group_records.push(json!({
            "depth": depth, "samples": members.len(), "grad_norm": num(norm),
            "scale": num(scale), "regions": profile.regions.len(),
        }));
        self.timings.gradient_gate += t.elapsed();
        Ok(())
    }

    /// Stage 4, the gradient gate: one verdict per model region over the summed gradients.
    fn gradient_gate(
        &mut self,
        iteration: u64,
        total: &BTreeMap<String, Tensor>,
    ) -> Result<GradientDecision, Stop> {
        let t = Instant::now();
        let mut decision = GradientDecision {
            updates: Vec::new(),
            region_records: Vec::new(),
            verdict_counts: (0, 0, 0),
        };
        for region in self.config.model.regions() {
            let names = self.region_vars.get(&region).cloned().unwrap_or_default();
            let grads: Vec<(&String, &Tensor)> = names
                .iter()
                .filter_map(|n| total.get(n).map(|g| (n, g)))
                .collect();
            if grads.is_empty() {
                decision
                    .region_records
                    .push(json!({"region": region, "verdict": "untouched",
                    "reason": "no admitted contribution reaches this region"}));
                continue;
            }
            let (mut sum_sq, mut max_abs, mut finite) = (0f64, 0f64, true);
            for (_, g) in &grads {
                let (s, m, f) = sum_sq_and_max_abs(g)?;
                sum_sq += s;
                max_abs = max_abs.max(m);
                finite &= f;
            }
            let stats = RegionStats {
                norm: sum_sq.sqrt(),
                max_abs,
                finite,
            };
            let verdict = self.gates().region(
                &region,
                &stats,
                self.last_update.get(&region).copied(),
                iteration,
            );
            if let RegionVerdict::Fail(detail) = verdict {
                self.timings.gradient_gate += t.elapsed();
                return Err(Stop::Failure(Failure {
                    gate: Gate::Gradient,
                    detail,
                    sample: None,
                }));
            }
            let mut record = json!({"region": region, "grad_norm": num(stats.norm),
                "max_abs": num(stats.max_abs), "finite": true, "verdict": verdict.name()});
            if let Some(reason) = verdict.reason() {
                record["reason"] = json!(reason);
            }
            match verdict {
                RegionVerdict::Admit => decision.verdict_counts.0 += 1,
                RegionVerdict::Clip { .. } => decision.verdict_counts.1 += 1,
                _ => decision.verdict_counts.2 += 1,
            }
            if let Some(scale) = verdict.scale() {
                record["scale"] = num(scale);
                for (name, grad) in grads {
                    let grad = if scale < 1.0 {
                        (grad * scale)?
                    } else {
                        grad.clone()
                    };
                    decision.updates.push((name.clone(), grad));
                }
            }
            decision.region_records.push(record);
        }
        self.timings.gradient_gate += t.elapsed();
        Ok(decision)
    }

    /// Stage 5, the optimizer: one AdamW step per admitted variable, nothing for the others.
    fn apply_updates(
        &mut self,
        iteration: u64,
        updates: &[(String, Tensor)],
    ) -> Result<(), TrainError> {
        let t = Instant::now();
        let mut updated_regions = BTreeSet::new();
        for (name, grad) in updates {
            let var = self.model.vars()[name].clone();
            self.optimizer.step_var(name, &var, grad)?;
            updated_regions.insert(region_of(name).to_string());
        }
        for region in updated_regions {
            self.last_update.insert(region, iteration);
        }
        self.timings.optimizer += t.elapsed();
        Ok(())
    }

    /// Stage 7, the record: the `train.iteration` payload (format in ARCHITECTURE.md).
    fn iteration_payload(
        &self,
        iteration: u64,
        batch: &Batch,
        decision: &GradientDecision,
        evaluation: Value,
        digest: Option<&[u8; 32]>,
        retained: Option<&RetainedCheckpoint>,
    ) -> Value {
        let leaves: Vec<[u8; 32]> = batch
            .entries
            .iter()
            .map(|e| warden_merkle::leaf_hash(&self.pool[e.pool_idx].hash))
            .collect();
        let samples: Vec<Value> = batch
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut s = self.sample_json(e.pool_idx);
                s["offset"] = json!(e.offset);
                s["bytes"] = json!(e.len);
                s["status"] = json!(e.status);
                if let Some(depth) = &e.depth {
                    s["depth"] = json!(depth);
                    s["class"] = json!(e.class);
                }
                if e.weight != 1.0 {
                    s["weight"] = num(e.weight);
                }
                if !e.spans.is_empty() {
                    let (a, b) = (e.offset, e.offset + e.len);
                    let masked: usize = e
                        .spans
                        .iter()
                        .map(|&(x, y)| y.min(b).saturating_sub(x.max(a)))
                        .sum();
                    s["masked_bytes"] = json!(masked);
                    s["span_weight"] = num(e.span_weight);
                }
                if let Some(l) = batch.per_sample_loss.get(&i) {
                    s["loss"] = num(f64::from(*l));
                }
                s
            })
            .collect();
        let (_, action) = self.gates().memorization();
        let mut payload = json!({
            "iteration": iteration,
            "rng": {"algorithm": "chacha20", "seed": self.config.seed, "stream": iteration},
            "config_digest": hex32(&self.config_digest),
            "batch": {"merkle_root": hex32(&warden_merkle::root(&leaves)), "samples": samples},
            "loss": num(f64::from(batch.mean_loss())),
            "tokens": batch.n_tokens,
            "groups": batch.group_records,
            "memorization": batch.findings.iter().map(|f| json!({
                "sample": f.sample, "detector": f.detector, "score": num(f.score),
                "scope": if f.spans.is_empty() { "sample" } else { "spans" },
                "spans": f.spans,
                "action": action,
            })).collect::<Vec<_>>(),
            "regions": decision.region_records,
            "evaluation": evaluation,
        });
        if let Some(digest) = digest {
            payload["param_digest"] = json!(hex32(digest));
        }
        if let Some(retained) = retained {
            payload["checkpoint"] = retained.to_json();
        }
        payload
    }

    /// Whether iteration `iteration` takes a run checkpoint (`checkpoint_every` or
    /// `retain_every`): its record carries the full parameter digest.
    pub fn is_checkpoint_iteration(&self, iteration: u64) -> bool {
        iteration.is_multiple_of(self.policy.source.checkpoint_every)
            || iteration.is_multiple_of(self.policy.source.retain_every)
    }

    /// Bookkeeping once every gate decided, before the record: detectors learn from what was
    /// trained, counts, the iteration number (so a checkpoint taken now holds the state after
    /// this iteration).
    fn advance(&mut self, iteration: u64, batch: &Batch, decision: &GradientDecision, loss: f32) {
        let entries = &batch.entries;
        let trained: Vec<usize> = batch
            .per_sample_loss
            .keys()
            .copied()
            .filter(|&i| entries[i].weight > 0.0)
            .collect();
        if !self.detectors.is_empty() {
            let candidates = candidates(&self.pool, entries, &trained);
            let losses: Vec<f32> = trained.iter().map(|i| batch.per_sample_loss[i]).collect();
            for detector in &mut self.detectors {
                detector.observe_losses(&candidates, &losses);
            }
        }
        self.counts.iterations += 1;
        self.counts.samples_admitted += batch.admitted.len() as u64;
        self.counts.samples_refused += (entries.len() - batch.admitted.len()) as u64;
        for f in &batch.findings {
            if !f.spans.is_empty() {
                self.counts.spans_masked_memorization += f.spans.len() as u64;
            } else if entries[f.sample].weight == 0.0 {
                self.counts.samples_rejected_memorization += 1;
            } else {
                self.counts.samples_clipped_memorization += 1;
            }
        }
        self.counts.regions_admitted += decision.verdict_counts.0;
        self.counts.regions_clipped += decision.verdict_counts.1;
        self.counts.regions_rejected += decision.verdict_counts.2;
        self.iteration = iteration;
        self.last_loss = Some(loss);
    }

    /// Signs a lineage checkpoint when the policy's cadence says so.
    fn lineage_cadence(&self, iteration: u64, sink: &mut dyn RecordSink) -> Result<(), TrainError> {
        match self.policy.source.lineage {
            LineageCadence::Step => sink.checkpoint(),
            LineageCadence::Window { steps } if iteration.is_multiple_of(steps) => {
                sink.checkpoint()
            }
            LineageCadence::Window { .. } => Ok(()),
        }
    }

    /// The evaluation gate: runs a requested evaluation only if the policy authorizes the
    /// sources, the probes and the frequency; otherwise records the refusal.
    fn evaluation_gate(&mut self, iteration: u64) -> Result<Value, TrainError> {
        let Some(request) = self.config.eval.clone() else {
            return Ok(Value::Null);
        };
        if !iteration.is_multiple_of(request.every) {
            return Ok(Value::Null);
        }
        let verdict = self.gates().evaluation(&request, iteration, self.last_eval);
        let requested = json!({"sources": request.sources, "probes": request.probes});
        if let Err(refusals) = verdict {
            self.counts.evals_refused += 1;
            return Ok(json!({"refused": refusals, "requested": requested}));
        }
        self.counts.evals_run += 1;
        self.last_eval = Some(iteration);
        let mut sources = serde_json::Map::new();
        if request.probes.iter().any(|p| p == "loss") {
            for source in &request.sources {
                let samples = &self.held_out[source];
                let texts: Vec<&str> = samples
                    .iter()
                    .take(request.max_samples)
                    .map(|s| s.text.as_str())
                    .collect();
                let loss = self.mean_loss(&texts)?;
                sources.insert(
                    source.clone(),
                    json!({"loss": num(loss), "samples": texts.len()}),
                );
            }
        }
        let mut canaries = Vec::new();
        if request.probes.iter().any(|p| p == "canary-exposure") {
            for (idx, canary) in self.canaries.clone().iter().enumerate() {
                let exposure = self.canary_exposure(canary, request.candidates, idx as u64)?;
                canaries.push(serde_json::to_value(exposure).unwrap_or(Value::Null));
            }
        }
        let evaluation = json!({"requested": requested, "sources": sources, "canaries": canaries});
        self.last_evaluation = Some((iteration, evaluation.clone()));
        Ok(evaluation)
    }

    /// Mean per-sample loss over the first context+1 bytes of each text (no gradient kept).
    pub fn mean_loss(&self, texts: &[&str]) -> Result<f64, TrainError> {
        let span = self.config.model.context + 1;
        let mut total = 0f64;
        let mut n = 0usize;
        for chunk in texts.chunks(32) {
            let windows: Vec<&[u8]> = chunk
                .iter()
                .map(|t| &t.as_bytes()[..t.len().min(span)])
                .filter(|w| w.len() >= 2)
                .collect();
            if windows.is_empty() {
                continue;
            }
            let batch = encode(&windows, self.config.model.context)?;
            let losses: Vec<f32> = self
                .model
                .per_sample_loss(&batch.inputs, &batch.targets, &batch.mask)?
                .to_vec1()?;
            total += losses.iter().map(|l| f64::from(*l)).sum::<f64>();
            n += losses.len();
        }
        Ok(if n == 0 { f64::NAN } else { total / n as f64 })
    }

    /// Canary exposure (Carlini et al., "The Secret Sharer"): the rank of the canary's loss
    /// among `candidates` random secrets of the same format (same context), as
    /// `log2(candidates + 1) − log2(rank)`, and whether greedy decoding from the context and the
    /// format's fixed prefix reproduces the secret.
    pub fn canary_exposure(
        &self,
        canary: &Canary,
        candidates: usize,
        index: u64,
    ) -> Result<CanaryExposure, TrainError> {
        let span = self.config.model.context + 1;
        let window_of = |secret: &str| -> Vec<u8> {
            let mut bytes = canary.context.as_bytes().to_vec();
            bytes.extend_from_slice(secret.as_bytes());
            let start = bytes.len().saturating_sub(span);
            bytes[start..].to_vec()
        };
        let mut rng = ChaCha20Rng::seed_from_u64(self.config.seed ^ 0x6361_6e61_7279);
        rng.set_stream(index);
        let mut texts = vec![window_of(&canary.secret)];
        let random_part = &canary.secret.as_bytes()[canary.fixed_prefix.len()..];
        for _ in 0..candidates {
            let mut secret = canary.fixed_prefix.as_bytes().to_vec();
            for &c in random_part {
                if canary.alphabet.contains(&c) && !canary.alphabet.is_empty() {
                    secret.push(canary.alphabet[rng.gen_range(0..canary.alphabet.len())]);
                } else {
                    secret.push(c);
                }
            }
            texts.push(window_of(&String::from_utf8_lossy(&secret)));
        }
        let mut losses: Vec<f32> = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(64) {
            let windows: Vec<&[u8]> = chunk.iter().map(|t| t.as_slice()).collect();
            let batch = encode(&windows, self.config.model.context)?;
            losses.extend(
                self.model
                    .per_sample_loss(&batch.inputs, &batch.targets, &batch.mask)?
                    .to_vec1::<f32>()?,
            );
        }
        let rank = 1 + losses[1..].iter().filter(|l| **l < losses[0]).count();
        let exposure = ((candidates + 1) as f64).log2() - (rank as f64).log2();
        let mut prompt = canary.context.as_bytes().to_vec();
        prompt.extend_from_slice(canary.fixed_prefix.as_bytes());
        let extracted = self.greedy(&prompt, random_part.len())? == random_part;
        Ok(CanaryExposure {
            rank,
            candidates,
            exposure,
            extracted,
        })
    }

    /// Sets canaries, taking each one's context from the first training sample that holds it.
    pub fn set_canaries_from_pool(&mut self, mut canaries: Vec<Canary>) {
        for canary in &mut canaries {
            if let Some(sample) = self.pool.iter().find(|s| s.text.contains(&canary.secret)) {
                if let Some(at) = sample.text.find(&canary.secret) {
                    canary.context = sample.text[..at].to_string();
                }
            }
        }
        self.canaries = canaries;
    }

    /// Greedy decoding of `n` bytes after `prefix`.
    pub fn greedy(&self, prefix: &[u8], n: usize) -> Result<Vec<u8>, TrainError> {
        let context = self.config.model.context;
        let mut bytes = prefix.to_vec();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let start = bytes.len().saturating_sub(context);
            let ids: Vec<u32> = bytes[start..].iter().map(|b| u32::from(*b)).collect();
            if ids.is_empty() {
                break;
            }
            let t = ids.len();
            let logits = self
                .model
                .forward(&Tensor::from_vec(ids, (1, t), &Device::Cpu)?)?;
            let last: Vec<f32> = logits.narrow(1, t - 1, 1)?.flatten_all()?.to_vec1()?;
            let next = last
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i as u8);
            bytes.push(next);
            out.push(next);
        }
        Ok(out)
    }

    /// Records a failure and applies the policy's failure mode.
    fn fail(
        &mut self,
        iteration: u64,
        failure: Failure,
        sink: &mut dyn RecordSink,
    ) -> Result<Outcome, TrainError> {
        self.counts.failures += 1;
        let mode = self.policy.source.failure;
        let mut halt = mode == FailureMode::Halt;
        let mut why_halt = None;
        if mode == FailureMode::Tolerance {
            if let Some(tolerance) = self.policy.source.tolerance {
                self.recent_failures.push_back(iteration);
                while self
                    .recent_failures
                    .front()
                    .is_some_and(|&f| f + tolerance.window <= iteration)
                {
                    self.recent_failures.pop_front();
                }
                if self.recent_failures.len() as u64 >= tolerance.failures {
                    halt = true;
                    why_halt = Some(format!(
                        "{} failures within {} iterations",
                        self.recent_failures.len(),
                        tolerance.window
                    ));
                }
            }
        }
        let sample = failure.sample.map(|idx| self.sample_json(idx));
        let mut payload = json!({
            "iteration": iteration,
            "gate": failure.gate,
            "detail": failure.detail,
            "sample": sample,
            "mode": mode,
        });
        if halt {
            payload["action"] = json!("halt");
            if let Some(why) = &why_halt {
                payload["tolerance_exceeded"] = json!(why);
            }
            payload["param_digest"] = json!(hex32(&self.model.digest()?));
            sink.append("train.failure", payload, self.policy.version())?;
            sink.checkpoint()?;
            let mut detail = failure.detail;
            if let Some(s) = &sample {
                detail = format!(
                    "{detail}: sample {} line {} (sha256 {})",
                    s["source"].as_str().unwrap_or("?"),
                    s["line"],
                    s["hash"].as_str().unwrap_or("?")
                );
            }
            if let Some(why) = why_halt {
                detail = format!("{detail} ({why})");
            }
            return Err(TrainError::Halted {
                iteration,
                gate: failure.gate,
                detail,
            });
        }
        // Quarantine: roll back to the last admissible checkpoint, drop the batch, continue.
        if let Some(idx) = failure.sample {
            if failure.gate == Gate::Data {
                self.quarantined.insert(idx, iteration);
            }
        }
        self.restore_snapshot()?;
        payload["action"] = json!("quarantine");
        payload["rolled_back_to"] = json!(self.snapshot.iteration);
        payload["param_digest"] = json!(hex32(&self.model.digest()?));
        sink.append("train.failure", payload, self.policy.version())?;
        self.iteration = iteration;
        self.lineage_cadence(iteration, sink)?;
        Ok(Outcome::Quarantined {
            gate: failure.gate,
            detail: failure.detail,
        })
    }

    fn restore_snapshot(&mut self) -> Result<(), TrainError> {
        self.model.load(&self.snapshot.params)?;
        let moments = self
            .snapshot
            .moments
            .iter()
            .map(|(k, m)| {
                Ok((
                    k.clone(),
                    Moments {
                        m: m.m.copy()?,
                        v: m.v.copy()?,
                        steps: m.steps,
                    },
                ))
            })
            .collect::<Result<BTreeMap<_, _>, TrainError>>()?;
        self.optimizer.restore(moments)?;
        self.last_update = self.snapshot.last_update.clone();
        self.last_eval = self.snapshot.last_eval;
        for (detector, state) in self.detectors.iter_mut().zip(&self.snapshot.detectors) {
            detector
                .restore(state)
                .map_err(|e| TrainError::CheckpointContent(e.to_string()))?;
        }
        Ok(())
    }

    /// Each detector's state in its compact binary form.
    fn detector_states(&self) -> Vec<Vec<u8>> {
        self.detectors
            .iter()
            .map(|d| {
                let mut bytes = Vec::new();
                d.save(&mut bytes);
                bytes
            })
            .collect()
    }

    /// Encodes the current state as a checkpoint: the safetensors bytes (parameters, AdamW
    /// moments, the run state as JSON in the header metadata `warden.state`) and, with
    /// detectors, the sidecar (their memory, [`detect::encode_states`]) as (file name, bytes),
    /// whose SHA-256 and length the header commits to. `sidecar_name` names the sidecar from
    /// its bytes.
    #[allow(clippy::type_complexity)]
    fn encode_checkpoint(
        &self,
        sidecar_name: &dyn Fn(&[u8]) -> String,
    ) -> Result<(Vec<u8>, Option<(String, Vec<u8>)>), TrainError> {
        let mut tensors = BTreeMap::new();
        let moments = self.optimizer.snapshot()?;
        for (name, t) in self.model.tensors() {
            tensors.insert(format!("param.{name}"), t);
        }
        for (name, m) in &moments {
            tensors.insert(format!("adam.m.{name}"), m.m.clone());
            tensors.insert(format!("adam.v.{name}"), m.v.clone());
        }
        let (detectors, sidecar) = if self.detectors.is_empty() {
            (None, None)
        } else {
            let states = self.detector_states();
            let named: Vec<(&str, &[u8])> = self
                .detectors
                .iter()
                .zip(&states)
                .map(|(d, bytes)| (d.name(), bytes.as_slice()))
                .collect();
            let bytes = detect::encode_states(&named);
            let file = sidecar_name(&bytes);
            let reference = DetectorStateRef {
                file: file.clone(),
                sha256: hex::encode(Sha256::digest(&bytes)),
                bytes: bytes.len() as u64,
            };
            (Some(reference), Some((file, bytes)))
        };
        let state = CheckpointState {
            iteration: self.iteration,
            adam_steps: moments.iter().map(|(k, m)| (k.clone(), m.steps)).collect(),
            last_update: self.last_update.clone(),
            detectors,
            last_eval: self.last_eval,
            quarantined: self.quarantined.clone(),
            recent_failures: self.recent_failures.iter().copied().collect(),
            counts: self.counts.clone(),
            policy_versions: self.policy_versions.clone(),
            config_digest: hex32(&self.config_digest),
        };
        let mut meta = BTreeMap::new();
        meta.insert(
            "warden.state".to_string(),
            serde_json::to_string(&state).map_err(|e| TrainError::Internal(e.to_string()))?,
        );
        Ok((io::safetensors_bytes(&tensors, &meta)?, sidecar))
    }

    /// Retains the current state for good: `RUN_DIR/checkpoints/retained/<sha256>.safetensors`
    /// (sidecar `<its sha256>.detectors` beside it), named by the SHA-256 of its bytes, which the
    /// caller records. Without a run directory the digest is computed and nothing is written
    /// (replay recomputes it this way).
    pub fn retain_checkpoint(&mut self) -> Result<RetainedCheckpoint, TrainError> {
        let t = Instant::now();
        let (bytes, sidecar) =
            self.encode_checkpoint(&|b| format!("{}.detectors", hex::encode(Sha256::digest(b))))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let file = format!("{RETAINED_DIR}/{sha256}.safetensors");
        if let Some(run_dir) = &self.run_dir {
            let dir = run_dir.join(RETAINED_DIR);
            std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
            if let Some((name, sidecar)) = &sidecar {
                io::atomic_write(&dir.join(name), sidecar)?;
            }
            io::atomic_write(&run_dir.join(&file), &bytes)?;
        }
        self.timings.retention += t.elapsed();
        Ok(RetainedCheckpoint {
            iteration: self.iteration,
            sha256,
            file,
        })
    }

    /// Takes the in-memory checkpoint quarantine rolls back to.
    fn snapshot(&mut self) -> Result<(), TrainError> {
        self.snapshot = Snapshot {
            iteration: self.iteration,
            params: self.model.tensors(),
            moments: self.optimizer.snapshot()?,
            last_update: self.last_update.clone(),
            detectors: self.detector_states(),
            last_eval: self.last_eval,
        };
        Ok(())
    }

    /// Takes an admissible checkpoint now: in memory (for quarantine) and, with a run
    /// directory, on disk (atomic), then points `checkpoints/LATEST` at it.
    ///
    /// On disk: `iter-N.safetensors` with its sidecar `iter-N.detectors` (see
    /// [`Trainer::encode_checkpoint`]).
    pub fn checkpoint(&mut self) -> Result<(), TrainError> {
        self.snapshot()?;
        let Some(run_dir) = &self.run_dir else {
            return Ok(());
        };
        let dir = run_dir.join("checkpoints");
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        let stem = format!("iter-{:08}", self.iteration);
        let (bytes, sidecar) = self.encode_checkpoint(&|_| format!("{stem}.detectors"))?;
        if let Some((file, sidecar)) = &sidecar {
            io::atomic_write(&dir.join(file), sidecar)?;
        }
        let name = format!("{stem}.safetensors");
        io::atomic_write(&dir.join(&name), &bytes)?;
        let previous = std::fs::read_to_string(dir.join("LATEST")).ok();
        io::atomic_write(&dir.join("LATEST"), name.as_bytes())?;
        // Keep the latest two `iter-N` checkpoints (with their sidecars); older ones are
        // superseded. Retained checkpoints (`retained/`) are never removed.
        if let Some(prev) = previous {
            let prev_stem = prev.trim().trim_end_matches(".safetensors").to_string();
            if let Ok(listing) = std::fs::read_dir(&dir) {
                for item in listing.flatten() {
                    let file = item.file_name().to_string_lossy().into_owned();
                    let file_stem = file.split('.').next().unwrap_or("");
                    if file.starts_with("iter-") && file_stem != stem && file_stem != prev_stem {
                        let _ = std::fs::remove_file(item.path());
                    }
                }
            }
        }
        Ok(())
    }

    /// Restores the state of the latest on-disk checkpoint of `run_dir` into a trainer built
    /// from the run's config (the run continues from that iteration).
    pub fn restore_latest(&mut self, run_dir: &Path) -> Result<u64, TrainError> {
        let dir = run_dir.join("checkpoints");
        let latest_path = dir.join("LATEST");
        let latest =
            std::fs::read_to_string(&latest_path).map_err(|e| TrainError::io(&latest_path, e))?;
        let latest = latest.trim();
        if latest.is_empty() || latest.starts_with('.') || latest.contains(['/', '\\']) {
            return Err(TrainError::Checkpoint {
                path: latest_path,
                reason: format!("names {latest:?}, not a checkpoint file of this directory"),
            });
        }
        let path = dir.join(latest);
        let bytes = io::read(&path)?;
        self.restore_bytes(&bytes, &path)
    }

    /// Restores the retained checkpoint whose SHA-256 is `sha256` (hex) from
    /// `RUN_DIR/checkpoints/retained/`, refusing a file whose bytes do not hash to it.
    pub fn restore_retained(&mut self, run_dir: &Path, sha256: &str) -> Result<u64, TrainError> {
        let path = run_dir
            .join(RETAINED_DIR)
            .join(format!("{sha256}.safetensors"));
        let bytes = io::read(&path)?;
        let found = hex::encode(Sha256::digest(&bytes));
        if found != sha256 {
            return Err(TrainError::Checkpoint {
                path,
                reason: format!(
                    "its bytes hash to sha256 {found}, the lineage records {sha256}: the retained checkpoint was altered"
                ),
            });
        }
        self.restore_bytes(&bytes, &path)
    }

    /// Restores a checkpoint's bytes read from `path` (its sidecar is read beside it).
    fn restore_bytes(&mut self, bytes: &[u8], path: &Path) -> Result<u64, TrainError> {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let bad = |reason: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let (tensors, meta) = io::read_safetensors(bytes, &path.display().to_string())?;
        let state: CheckpointState = meta
            .get("warden.state")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| bad("missing or unreadable warden.state".into()))?;
        if state.config_digest != hex32(&self.config_digest) {
            return Err(bad(format!(
                "written for config {} but the run config is {}",
                state.config_digest,
                hex32(&self.config_digest)
            )));
        }
        let mut params = BTreeMap::new();
        let mut moments = BTreeMap::new();
        for name in self.model.vars().keys() {
            let get = |key: String| {
                tensors
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| bad(format!("tensor {key} is missing")))
            };
            params.insert(name.clone(), get(format!("param.{name}"))?);
            moments.insert(
                name.clone(),
                Moments {
                    m: get(format!("adam.m.{name}"))?,
                    v: get(format!("adam.v.{name}"))?,
                    steps: state.adam_steps.get(name).copied().unwrap_or(0),
                },
            );
        }
        let detector_states = match &state.detectors {
            Some(reference) => self.read_detector_states(&dir, reference, path)?,
            None => Vec::new(),
        };
        self.model.load(&params)?;
        self.optimizer.restore(moments)?;
        self.iteration = state.iteration;
        self.last_update = state.last_update;
        self.last_eval = state.last_eval;
        self.quarantined = state.quarantined;
        self.recent_failures = state.recent_failures.into_iter().collect();
        self.counts = state.counts;
        self.policy_versions = state.policy_versions;
        if self.policy_versions.last().map(String::as_str) != Some(self.policy.version()) {
            self.policy_versions.push(self.policy.version().to_string());
        }
        // Saved detector memory is restored into the detectors of the same name (a policy
        // change that replaced the detection rule starts them empty).
        for detector in &mut self.detectors {
            if let Some((_, saved)) = detector_states.iter().find(|(n, _)| n == detector.name()) {
                detector.restore(saved).map_err(|e| bad(e.to_string()))?;
            }
        }
        self.snapshot = Snapshot {
            iteration: self.iteration,
            params: self.model.tensors(),
            moments: self.optimizer.snapshot()?,
            last_update: self.last_update.clone(),
            detectors: self.detector_states(),
            last_eval: self.last_eval,
        };
        Ok(self.iteration)
    }

    /// Reads a checkpoint's detector sidecar, checked against the digest its header commits to.
    fn read_detector_states(
        &self,
        dir: &Path,
        reference: &DetectorStateRef,
        checkpoint: &Path,
    ) -> Result<Vec<(String, Vec<u8>)>, TrainError> {
        let bad = |reason: String| TrainError::Checkpoint {
            path: checkpoint.to_path_buf(),
            reason,
        };
        if reference.file.contains(['/', '\\']) || reference.file.starts_with('.') {
            return Err(bad(format!(
                "detector state file {:?} is not a plain file name",
                reference.file
            )));
        }
        let sidecar = dir.join(&reference.file);
        let bytes = io::read(&sidecar)?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest != reference.sha256 || bytes.len() as u64 != reference.bytes {
            return Err(bad(format!(
                "{} has sha256 {digest} ({} bytes), the checkpoint names sha256 {} ({} bytes)",
                sidecar.display(),
                bytes.len(),
                reference.sha256,
                reference.bytes
            )));
        }
        detect::decode_states(&bytes).map_err(|e| bad(format!("{}: {e}", sidecar.display())))
    }

    /// One plain training step on the same batch iteration `iteration` would draw: no gates, no
    /// routing, no records (the baseline of `warden bench train`).
    pub fn ungoverned_step(&mut self, iteration: u64) -> Result<f32, TrainError> {
        let draws = self.draw(iteration);
        let windows: Vec<&[u8]> = draws
            .iter()
            .map(|&(idx, offset, len)| &self.pool[idx].text.as_bytes()[offset..offset + len])
            .collect();
        let t = Instant::now();
        let batch = encode(&windows, self.config.model.context)?;
        let loss = self
            .model
            .per_sample_loss(&batch.inputs, &batch.targets, &batch.mask)?
            .mean_all()?;
        let grads = loss.backward()?;
        self.timings.forward_backward += t.elapsed();
        let t = Instant::now();
        let vars: Vec<(String, candle_core::Var)> = self
            .model
            .vars()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, var) in vars {
            if let Some(grad) = grads.get(var.as_tensor()) {
                self.optimizer.step_var(&name, &var, grad)?;
            }
        }
        self.timings.optimizer += t.elapsed();
        self.iteration = iteration;
        Ok(loss.to_scalar::<f32>()?)
    }

    /// The current parameters as safetensors bytes (`model.safetensors`).
    pub fn model_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        meta.insert(
            "warden.model".to_string(),
            serde_json::to_string(&self.config.model).unwrap_or_default(),
        );
        io::safetensors_bytes(&self.model.tensors(), &meta)
    }
}

/// One canary's exposure measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryExposure {
    pub rank: usize,
    pub candidates: usize,
    pub exposure: f64,
    pub extracted: bool,
}

#[cfg(test)]
mod tests;
