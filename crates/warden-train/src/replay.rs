//! Spot-check replay (`warden audit --replay K`): re-executes chosen iterations of a recorded
//! run from its retained checkpoints and requires every recomputed record, and the recomputed
//! parameter digest, to equal the recorded ones bit for bit (δ = 0).
//!
//! Which iterations: [`select`] takes the `K/2` with the largest recorded update norms and
//! `K − K/2` drawn by ChaCha20 seeded from the lineage root, which the trainer cannot know
//! while it trains. How: [`replay`] restores, for each chosen iteration `i`, the nearest
//! retained checkpoint `c < i` (its bytes must hash to the digest its record names), then runs
//! the real training code on iterations `c+1 ..= e`, where `e ≥ i` is the first iteration whose
//! record carries a full `param_digest`. The batch of each iteration is the recorded one
//! (`ChaCha20(seed)` on stream `iteration`, samples from the admitted corpus, checked against
//! the recorded hashes as part of the record), the policy is the recorded one (the record's
//! policy version, resolved through `train.start` and the `train.transition` texts). Every
//! recomputed record (kind, payload, policy version) must equal the recorded one, and the
//! parameter digest after `e` must equal the recorded `param_digest` of `e`.
//!
//! Bit-for-bit equality holds for the same CPU build: the arithmetic is order-fixed, but another
//! target, compiler or candle version may round differently. `train.start` records the build
//! ([`build_identity`]); the report says when it differs from the replaying build.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use warden_keys::TrustStore;
use warden_lineage::SignedRecord;

use crate::admitted::{load_canaries, Admitted};
use crate::config::TrainConfig;
use crate::data::AdmissionIndex;
use crate::policy::TrainingPolicy;
use crate::trainer::{MemorySink, Trainer};
use crate::TrainError;

/// The build that produced a run: target (arch-os-env), this crate's version, profile and the
/// SHA-256 of the running executable (which covers the compiler and every linked crate,
/// candle included). Recorded in `train.start` as `build`.
pub fn build_identity() -> Value {
    static IDENTITY: OnceLock<Value> = OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            let env = if cfg!(target_env = "gnu") {
                "gnu"
            } else if cfg!(target_env = "musl") {
                "musl"
            } else if cfg!(target_env = "msvc") {
                "msvc"
            } else {
                "unknown"
            };
            let executable = std::env::current_exe()
                .ok()
                .and_then(|path| sha256_file(&path).ok());
            json!({
                "target": format!("{}-{}-{env}", std::env::consts::ARCH, std::env::consts::OS),
                "warden_train": env!("CARGO_PKG_VERSION"),
                "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
                "executable_sha256": executable,
            })
        })
        .clone()
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Index of the run's `train.start`: the latest one naming `run_dir` (canonicalized), else the
/// only one in the lineage (the run directory was copied or moved since). `Err(n)`: none names
/// it and the lineage holds `n` starts (0, or several to choose from). The one rule `warden
/// audit` and replay both use.
pub fn run_start(records: &[SignedRecord], run_dir: &Path) -> Result<usize, usize> {
    let canonical = run_dir.canonicalize().ok();
    let starts: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.record.kind == "train.start")
        .map(|(i, _)| i)
        .collect();
    let named = starts.iter().rev().copied().find(|&i| {
        records[i].record.payload["run_dir"]
            .as_str()
            .map(std::path::PathBuf::from)
            .is_some_and(|p| Some(p) == canonical)
    });
    match (named, starts.as_slice()) {
        (Some(i), _) => Ok(i),
        (None, [only]) => Ok(*only),
        (None, many) => Err(many.len()),
    }
}

/// The records of the run ([`run_start`]), from its `train.start` on (the convention `train
/// resume` uses).
pub fn run_records<'a>(
    records: &'a [SignedRecord],
    run_dir: &Path,
) -> Result<&'a [SignedRecord], TrainError> {
    let at = run_start(records, run_dir).map_err(|n| {
        TrainError::Config(format!(
            "the lineage holds {n} train.start records and none names run directory {}",
            run_dir.display()
        ))
    })?;
    Ok(&records[at..])
}

/// One recorded iteration: the last record for it (a resume replays iterations after its
/// checkpoint and records them again; the later record is the one in force).
#[derive(Debug, Clone)]
struct Recorded {
    seq: u64,
    kind: String,
    payload: Value,
    policy_version: Option<String>,
}

/// What replay needs from a run's records.
struct RunView {
    /// The run's config as `train.start` records it.
    config: TrainConfig,
    start: Value,
    start_seq: u64,
    start_version: Option<String>,
    iterations: BTreeMap<u64, Recorded>,
    /// Retained checkpoints: iteration → SHA-256 (hex).
    retained: BTreeMap<u64, String>,
    /// Policy version → the policy (from the start config and transitions).
    policies: BTreeMap<String, TrainingPolicy>,
    /// Sum of the `seconds` the run's `train.complete` records report (None without one).
    training_seconds: Option<f64>,
}

impl RunView {
    /// `records` starts at the run's `train.start`.
    fn read(records: &[SignedRecord]) -> Result<RunView, TrainError> {
        let first = records
            .first()
            .filter(|r| r.record.kind == "train.start")
            .ok_or_else(|| {
                TrainError::Config("the run's records do not begin with train.start".into())
            })?;
        let start = first.record.payload.clone();
        let start_seq = first.record.seq;
        let config_text = start["config"].as_str().ok_or_else(|| {
            TrainError::Config(format!(
                "lineage record {start_seq}: train.start has no config"
            ))
        })?;
        // An empty base leaves a relative corpus path as recorded, so the config re-encodes
        // to the text `config_digest` was taken over.
        let config = TrainConfig::parse(
            config_text,
            &format!("lineage record {start_seq} (train.start config)"),
            Path::new(""),
        )?;
        let mut policies = BTreeMap::new();
        policies.insert(config.policy.version.clone(), config.policy.clone());
        let mut retained = BTreeMap::new();
        if let Some(sha) = start["initial_checkpoint"]["sha256"].as_str() {
            retained.insert(0, sha.to_string());
        }
        let mut iterations: BTreeMap<u64, Recorded> = BTreeMap::new();
        let mut training_seconds = None;
        for r in &records[1..] {
            let payload = &r.record.payload;
            match r.record.kind.as_str() {
                "train.iteration" | "train.failure" => {
                    let Some(i) = payload["iteration"].as_u64() else {
                        continue;
                    };
                    // A re-recorded iteration supersedes what was recorded for it and after it
                    // before the resume.
                    iterations.split_off(&i);
                    retained.split_off(&i);
                    if let Some(sha) = payload["checkpoint"]["sha256"].as_str() {
                        retained.insert(i, sha.to_string());
                    }
                    iterations.insert(
                        i,
                        Recorded {
                            seq: r.record.seq,
                            kind: r.record.kind.clone(),
                            payload: payload.clone(),
                            policy_version: r.record.policy_version.clone(),
                        },
                    );
                }
                "train.complete" => {
                    if let Some(seconds) = payload["seconds"].as_f64() {
                        training_seconds = Some(training_seconds.unwrap_or(0.0) + seconds);
                    }
                }
                "train.transition" => {
                    if let Some(text) = payload["policy_text"].as_str() {
                        let origin = format!("lineage record {} (train.transition)", r.record.seq);
                        let policy = TrainingPolicy::parse(text, &origin)?;
                        policies.entry(policy.version.clone()).or_insert(policy);
                    }
                }
                _ => {}
            }
        }
        Ok(RunView {
            config,
            start,
            start_seq,
            start_version: first.record.policy_version.clone(),
            iterations,
            retained,
            policies,
            training_seconds,
        })
    }

    fn config(&self) -> TrainConfig {
        self.config.clone()
    }
}

/// The norm of the update an iteration applied, from its record: the root sum of squares of
/// `grad_norm × scale` over the regions whose verdict let an update through (admit, clip).
pub fn update_norm(payload: &Value) -> f64 {
    let mut sum = 0f64;
    for region in payload["regions"].as_array().into_iter().flatten() {
        let verdict = region["verdict"].as_str().unwrap_or("");
        if verdict != "admit" && verdict != "clip" {
            continue;
        }
        let norm = region["grad_norm"].as_f64().unwrap_or(0.0);
        let scale = region["scale"].as_f64().unwrap_or(1.0);
        if (norm * scale).is_finite() {
            sum += (norm * scale) * (norm * scale);
        }
    }
    sum.sqrt()
}

/// The iterations a spot check replays, by why they were chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The `K/2` with the largest [`update_norm`]s.
    pub by_update_norm: Vec<u64>,
    /// `K − K/2` drawn from the rest by the lineage-root seed.
    pub by_lineage_root: Vec<u64>,
}

impl Selection {
    /// Every chosen iteration, ascending.
    pub fn all(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self
            .by_update_norm
            .iter()
            .chain(&self.by_lineage_root)
            .copied()
            .collect();
        all.sort_unstable();
        all
    }
}

/// The iterations to replay: of the run's recorded iterations (`train.iteration` and
/// `train.failure`, the last record of each; `records` from its
/// `train.start`, see [`run_records`]), the `count / 2` with the largest [`update_norm`] (ties:
/// the earlier iteration) and `count − count / 2` more drawn without replacement by
/// `ChaCha20Rng::from_seed(SHA-256("warden/replay-select/v1\n" ‖ lineage_root))` (a partial
/// Fisher–Yates shuffle of the rest, in iteration order). All of them (as drawn) when `count`
/// is at least their number.
///
/// The trainer signs every record before the root that covers them exists, so it cannot know
/// which iterations the seed will pick; the largest updates are where an invented record would
/// gain the most.
pub fn select(
    records: &[SignedRecord],
    count: usize,
    lineage_root: &[u8; 32],
) -> Result<Selection, TrainError> {
    let view = RunView::read(records)?;
    // Every recorded iteration, failures too (a quarantine's rollback is re-executed like any
    // update; a failure updates nothing, so its norm is 0).
    let mut candidates: Vec<(u64, f64)> = view
        .iterations
        .iter()
        .map(|(&i, r)| (i, update_norm(&r.payload)))
        .collect();
    let count = count.min(candidates.len());
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top = count / 2;
    let mut by_update_norm: Vec<u64> = candidates[..top].iter().map(|(i, _)| *i).collect();
    let mut rest: Vec<u64> = candidates[top..].iter().map(|(i, _)| *i).collect();
    rest.sort_unstable();
    let mut seed = Sha256::new();
    seed.update(b"warden/replay-select/v1\n");
    seed.update(lineage_root);
    let mut rng = ChaCha20Rng::from_seed(seed.finalize().into());
    let mut by_lineage_root = Vec::with_capacity(count - top);
    for k in 0..count - top {
        let j = rng.gen_range(k..rest.len());
        rest.swap(k, j);
        by_lineage_root.push(rest[k]);
    }
    by_update_norm.sort_unstable();
    by_lineage_root.sort_unstable();
    Ok(Selection {
        by_update_norm,
        by_lineage_root,
    })
}

/// `warden audit --replay K` in one call: of the run in `run_dir` (the one whose latest
/// `train.start` in `records` names it), [`select`]s `count` iterations from `lineage_root`
/// and [`replay`]s them. The caller has verified the lineage (`records` and `lineage_root`
/// are the verified log's); `trust` checks the corpus declaration replay loads.
pub fn spot_check(
    run_dir: &Path,
    records: &[SignedRecord],
    trust: &TrustStore,
    count: usize,
    lineage_root: &[u8; 32],
) -> Result<(Selection, ReplayReport), TrainError> {
    let selection = select(run_records(records, run_dir)?, count, lineage_root)?;
    let report = replay(run_dir, records, trust, &selection.all())?;
    Ok((selection, report))
}

/// The outcome of replaying one chosen iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayedIteration {
    /// The chosen iteration.
    pub iteration: u64,
    /// The retained checkpoint replay started from.
    pub from_checkpoint: u64,
    /// The first iteration at or after `iteration` whose record carries `param_digest`: replay
    /// ran through it.
    pub through: u64,
    /// `param_digest` of iteration `through`'s record.
    pub recorded_digest: Option<String>,
    /// The parameter digest after re-executing iteration `through`.
    pub recomputed_digest: Option<String>,
    /// Every recomputed record from `from_checkpoint + 1` through `through` and the digest
    /// equal the recorded ones.
    pub equal: bool,
    /// Why not, naming the iteration, record and field (or the checkpoint file).
    pub failure: Option<String>,
    /// Iterations re-executed for this window (shared windows are executed once and counted
    /// once in [`ReplayReport::executed`]).
    pub executed: u64,
}

/// What [`replay`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    pub iterations: Vec<ReplayedIteration>,
    /// Distinct iterations re-executed in all.
    pub executed: u64,
    /// Iterations the run trained (its last recorded iteration).
    pub training_iterations: u64,
    /// `build` of the run's `train.start` (null when it has none).
    pub recorded_build: Value,
    /// [`build_identity`] of the replaying process.
    pub current_build: Value,
    /// Wall-clock seconds this replay took (restoring checkpoints included).
    pub replay_seconds: f64,
    /// Wall-clock seconds of training the run's `train.complete` records report (summed over
    /// its commands; None when the run never completed).
    pub training_seconds: Option<f64>,
}

impl ReplayReport {
    /// Every chosen iteration replayed bit for bit.
    pub fn passed(&self) -> bool {
        !self.iterations.is_empty() && self.iterations.iter().all(|r| r.equal)
    }

    /// The auditor's cost as a fraction of the training cost: executed / trained iterations.
    pub fn cost(&self) -> f64 {
        self.executed as f64 / self.training_iterations.max(1) as f64
    }

    /// The same in wall-clock time: replay seconds / recorded training seconds (None when the
    /// run recorded none). Measured on two machines or loads when the run was trained elsewhere.
    pub fn time_cost(&self) -> Option<f64> {
        self.training_seconds
            .filter(|&t| t > 0.0)
            .map(|t| self.replay_seconds / t)
    }

    /// Whether the run was recorded by this very build (δ = 0 is promised only then).
    pub fn same_build(&self) -> bool {
        self.recorded_build == self.current_build
    }

    /// Warnings to print with the report (a different build).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.same_build() {
            out.push(format!(
                "the run was recorded by build {} and is replayed by build {}: bit-for-bit equality is guaranteed only on the same CPU build, so a mismatch may be rounding, not tampering",
                self.recorded_build, self.current_build
            ));
        }
        out
    }
}

/// Replays `iterations` of the run in `run_dir`. `records` are the lineage's records in order
/// (the run is the one whose latest `train.start` names `run_dir`); the corpus is loaded from
/// the directory the run's config names, its signature checked through `trust`, and must be
/// the declaration `train.start` names.
pub fn replay(
    run_dir: &Path,
    records: &[SignedRecord],
    trust: &TrustStore,
    iterations: &[u64],
) -> Result<ReplayReport, TrainError> {
    let records = run_records(records, run_dir)?;
    let view = RunView::read(records)?;
    let config = view.config();
    let corpus = Admitted::load(&config.corpus, trust)?;
    let found = hex::encode(corpus.declaration_digest());
    let recorded = view.start["corpus"]["declaration_digest"]
        .as_str()
        .unwrap_or("(none)");
    if found != recorded {
        return Err(TrainError::CorpusChanged {
            corpus: config.corpus.clone(),
            recorded: recorded.to_string(),
            found,
            seq: view.start_seq,
        });
    }
    replay_view(run_dir, &view, Arc::new(corpus), iterations)
}

/// [`replay`] over an already loaded admission index (`records` as for [`replay`]).
pub fn replay_with_corpus(
    run_dir: &Path,
    records: &[SignedRecord],
    corpus: Arc<dyn AdmissionIndex>,
    iterations: &[u64],
) -> Result<ReplayReport, TrainError> {
    let records = run_records(records, run_dir)?;
    let view = RunView::read(records)?;
    replay_view(run_dir, &view, corpus, iterations)
}

fn replay_view(
    run_dir: &Path,
    view: &RunView,
    corpus: Arc<dyn AdmissionIndex>,
    iterations: &[u64],
) -> Result<ReplayReport, TrainError> {
    let config = view.config();
    let recorded_config = view.start["config_digest"].as_str().unwrap_or("(none)");
    if hex::encode(Sha256::digest(config.to_toml()?.as_bytes())) != recorded_config {
        return Err(TrainError::Config(format!(
            "lineage record {}: the recorded config does not hash to its config_digest {recorded_config}",
            view.start_seq
        )));
    }
    let started = std::time::Instant::now();
    let training_iterations = view.iterations.keys().next_back().copied().unwrap_or(0);
    let mut report = ReplayReport {
        iterations: Vec::new(),
        executed: 0,
        training_iterations,
        recorded_build: view.start["build"].clone(),
        current_build: build_identity(),
        replay_seconds: 0.0,
        training_seconds: view.training_seconds,
    };
    // Windows: retained checkpoint → (its last iteration to run, the chosen iterations in it).
    let mut windows: BTreeMap<u64, (u64, Vec<u64>)> = BTreeMap::new();
    let chosen: BTreeSet<u64> = iterations.iter().copied().collect();
    for &i in &chosen {
        let fail = |failure: String| ReplayedIteration {
            iteration: i,
            from_checkpoint: 0,
            through: i,
            recorded_digest: None,
            recomputed_digest: None,
            equal: false,
            failure: Some(failure),
            executed: 0,
        };
        if !view.iterations.contains_key(&i) {
            report.iterations.push(fail(format!(
                "iteration {i}: the run records no such iteration"
            )));
            continue;
        }
        let Some((&from, _)) = view.retained.range(..i).next_back() else {
            report.iterations.push(fail(format!(
                "iteration {i}: no retained checkpoint is recorded before it"
            )));
            continue;
        };
        let Some((&through, _)) = view
            .iterations
            .range(i..)
            .find(|(_, r)| r.payload.get("param_digest").is_some())
        else {
            report.iterations.push(fail(format!(
                "iteration {i}: no record at or after it carries a param_digest"
            )));
            continue;
        };
        let window = windows.entry(from).or_insert((through, Vec::new()));
        window.0 = window.0.max(through);
        window.1.push(i);
    }
    for (from, (last, chosen_here)) in windows {
        let outcome = replay_window(run_dir, view, &config, &corpus, from, last)?;
        report.executed += outcome.executed;
        for i in chosen_here {
            let through = view
                .iterations
                .range(i..)
                .find(|(_, r)| r.payload.get("param_digest").is_some())
                .map_or(i, |(&k, _)| k);
            let recorded_digest = view.iterations[&through].payload["param_digest"]
                .as_str()
                .map(str::to_string);
            let recomputed_digest = outcome.digests.get(&through).cloned();
            // The first difference up to `through` (a difference after it belongs to another
            // chosen iteration of the same window).
            let failure = outcome
                .failure
                .as_ref()
                .filter(|(at, _)| *at <= through)
                .map(|(_, why)| why.clone())
                .or_else(|| {
                    (recomputed_digest.is_some() && recorded_digest != recomputed_digest).then(
                        || {
                            format!(
                                "iteration {through} (lineage record {}): param_digest recorded {} but replay computes {}",
                                view.iterations[&through].seq,
                                recorded_digest.as_deref().unwrap_or("(none)"),
                                recomputed_digest.as_deref().unwrap_or("(none)")
                            )
                        },
                    )
                })
                .or_else(|| {
                    recomputed_digest.is_none().then(|| {
                        format!("iteration {through}: replay did not reach it")
                    })
                });
            report.iterations.push(ReplayedIteration {
                iteration: i,
                from_checkpoint: from,
                through,
                recorded_digest,
                recomputed_digest,
                equal: failure.is_none(),
                failure,
                executed: through - from,
            });
        }
    }
    report.iterations.sort_by_key(|r| r.iteration);
    report.replay_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// What re-executing one window found.
struct WindowOutcome {
    executed: u64,
    /// Parameter digest after each iteration whose record carries one.
    digests: BTreeMap<u64, String>,
    /// The first difference: (iteration, description).
    failure: Option<(u64, String)>,
}

fn replay_window(
    run_dir: &Path,
    view: &RunView,
    config: &TrainConfig,
    corpus: &Arc<dyn AdmissionIndex>,
    from: u64,
    last: u64,
) -> Result<WindowOutcome, TrainError> {
    let mut outcome = WindowOutcome {
        executed: 0,
        digests: BTreeMap::new(),
        failure: None,
    };
    let mut trainer = Trainer::new(config.clone(), corpus.clone(), None)?;
    if let Some(path) = config.eval.as_ref().and_then(|e| e.canaries.clone()) {
        trainer.set_canaries_from_pool(load_canaries(&path)?);
    }
    // The policy in force at the checkpoint first (it decides which detectors exist), then
    // the checkpoint's state.
    let version_at_from = if from == 0 {
        view.start_version.clone()
    } else {
        view.iterations
            .get(&from)
            .and_then(|r| r.policy_version.clone())
    };
    switch_policy(&mut trainer, view, version_at_from.as_deref(), from)?;
    let sha = &view.retained[&from];
    match trainer.restore_retained(run_dir, sha) {
        Ok(at) if at == from => {}
        Ok(at) => {
            outcome.failure = Some((
                from,
                format!(
                    "retained checkpoint {sha} (recorded at iteration {from}) holds the state of iteration {at}"
                ),
            ));
            return Ok(outcome);
        }
        Err(err) => {
            outcome.failure = Some((
                from,
                format!("retained checkpoint of iteration {from}: {err}"),
            ));
            return Ok(outcome);
        }
    }
    let mut sink = MemorySink::default();
    for j in from + 1..=last {
        let Some(recorded) = view.iterations.get(&j) else {
            outcome.failure = Some((
                j,
                format!("iteration {j}: the run records no such iteration"),
            ));
            break;
        };
        switch_policy(&mut trainer, view, recorded.policy_version.as_deref(), j)?;
        // The trainer takes a full digest at checkpoint iterations and at its last step; a
        // record that carries one outside the checkpoint cadence ended a training command.
        trainer.config.steps = if recorded.payload.get("param_digest").is_some() {
            j
        } else {
            u64::MAX
        };
        let before = sink.records.len();
        match trainer.iterate(&mut sink) {
            Ok(_) | Err(TrainError::Halted { .. }) => {}
            Err(err) => return Err(err),
        }
        outcome.executed += 1;
        let Some((kind, payload, version)) = sink.records.get(before) else {
            outcome.failure = Some((j, format!("iteration {j}: replay appended no record")));
            break;
        };
        let at = format!("iteration {j} (lineage record {})", recorded.seq);
        if *kind != recorded.kind {
            outcome.failure = Some((
                j,
                format!(
                    "{at}: recorded as {} but replay produces {kind}",
                    recorded.kind
                ),
            ));
            break;
        }
        if Some(version) != recorded.policy_version.as_ref() {
            outcome.failure = Some((
                j,
                format!(
                    "{at}: recorded under policy {:?} but replay runs {version:?}",
                    recorded.policy_version
                ),
            ));
            break;
        }
        // The parameter digest is compared on its own, after everything else, so the report
        // carries both values; its presence is part of the record like any other field.
        let recorded_digest = recorded.payload.get("param_digest");
        let replayed_digest = payload.get("param_digest");
        let without_digest = |p: &Value| {
            let mut p = p.clone();
            if let Some(fields) = p.as_object_mut() {
                fields.remove("param_digest");
            }
            p
        };
        if let Some(diff) = first_difference(
            "payload",
            &without_digest(&recorded.payload),
            &without_digest(payload),
        ) {
            outcome.failure = Some((j, format!("{at}: {diff}")));
            break;
        }
        if let Some(digest) = replayed_digest.and_then(Value::as_str) {
            outcome.digests.insert(j, digest.to_string());
        }
        if recorded_digest != replayed_digest {
            let show = |d: Option<&Value>| d.map_or("(none)".to_string(), Value::to_string);
            outcome.failure = Some((
                j,
                format!(
                    "{at}: param_digest recorded {} but replay computes {}",
                    show(recorded_digest),
                    show(replayed_digest)
                ),
            ));
            break;
        }
        if matches!(recorded.kind.as_str(), "train.failure") && recorded.payload["action"] == "halt"
        {
            break;
        }
    }
    Ok(outcome)
}

/// Puts the trainer under the policy named `version` (a no-op when it already is).
fn switch_policy(
    trainer: &mut Trainer,
    view: &RunView,
    version: Option<&str>,
    iteration: u64,
) -> Result<(), TrainError> {
    let Some(version) = version else {
        return Ok(());
    };
    if trainer.policy().version() == version {
        return Ok(());
    }
    let policy = view.policies.get(version).ok_or_else(|| {
        TrainError::Config(format!(
            "iteration {iteration}: policy version {version:?} is neither the start's nor any transition's"
        ))
    })?;
    trainer.set_policy(policy.clone())
}

/// The first place two JSON values differ, as `path: recorded X, replay Y`. Numbers compare
/// by exact value (integer or the bits of the binary64), so 2 and 2.0 are equal and nothing
/// else is rounded away.
fn first_difference(path: &str, recorded: &Value, replayed: &Value) -> Option<String> {
    let differ = || {
        Some(format!(
            "{path}: recorded {recorded}, replay computes {replayed}"
        ))
    };
    match (recorded, replayed) {
        (Value::Number(a), Value::Number(b)) => {
            let same = match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => match (a.as_f64(), b.as_f64()) {
                    (Some(x), Some(y)) => x.to_bits() == y.to_bits(),
                    _ => false,
                },
            };
            if same {
                None
            } else {
                differ()
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(format!(
                    "{path}: recorded {} entries, replay computes {}",
                    a.len(),
                    b.len()
                ));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(k, (x, y))| first_difference(&format!("{path}[{k}]"), x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().chain(b.keys()) {
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => {
                        if let Some(diff) = first_difference(&format!("{path}.{key}"), x, y) {
                            return Some(diff);
                        }
                    }
                    (Some(x), None) => {
                        return Some(format!(
                            "{path}.{key}: recorded {x}, replay has no such field"
                        ))
                    }
                    (None, Some(y)) => {
                        return Some(format!("{path}.{key}: not recorded, replay computes {y}"))
                    }
                    (None, None) => {}
                }
            }
            None
        }
        _ if recorded == replayed => None,
        _ => differ(),
    }
}

#[cfg(test)]
mod tests;
