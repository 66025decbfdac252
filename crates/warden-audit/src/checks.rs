//! Checks 2–7: one walk over the run's records, re-deriving every gate decision from the
//! policy in force at that record.
//!
//! The auditor keeps its own model of the trainer's governance state — the iteration counter,
//! the parameter digest, each region's last update, the last evaluation, the failure window and
//! the admissible checkpoints — and moves it only on what the records say. A decision is
//! re-derived from the resolved policy and the signed corpus index here, never by calling
//! `warden_train::gates` or the trainer: an auditor that shares the gate code would repeat its
//! bugs instead of catching them.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use warden_corpus::AdmittedCorpus;
use warden_keys::TrustStore;
use warden_lineage::SignedRecord;
use warden_train::config::TrainConfig;
use warden_train::policy::{
    ExcessAction, FailureMode, MemorizationAction, ResolvedPolicy, TrainingPolicy,
};

use crate::{
    AuditError, Check, FailurePoint, Finding, IterationPoint, PolicyPoint, RefusalPoint,
    RegionPoint, Timeline, MAX_LISTED,
};

/// What the walk found.
pub(crate) struct Walked {
    pub start_seq: u64,
    pub findings: Vec<Finding>,
    pub examined: BTreeMap<Check, u64>,
    pub timeline: Timeline,
}

/// The trainer's governance state as the records establish it.
#[derive(Debug, Clone, Default)]
struct State {
    iteration: u64,
    digest: String,
    last_update: BTreeMap<String, u64>,
    last_eval: Option<u64>,
    recent_failures: VecDeque<u64>,
}

/// The signed corpus declaration and the samples it excluded at admission.
struct Corpus {
    admitted: AdmittedCorpus,
    exclusions: HashMap<[u8; 32], String>,
}

/// The data gate's decision for one sample, re-derived.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Admit { class: String, depth: String },
    Refuse(String),
    Fail(String),
}

struct Walker {
    config: TrainConfig,
    config_digest: String,
    regions: Vec<String>,
    /// Version → (canonical policy digest, resolved policy).
    policies: BTreeMap<String, (String, Rc<ResolvedPolicy>)>,
    current: String,
    /// The resolved policy of `current`.
    in_force: Rc<ResolvedPolicy>,
    corpus: Option<Corpus>,
    state: State,
    /// Admissible checkpoints: iteration → state when it was taken.
    checkpoints: BTreeMap<u64, State>,
    /// Iteration → (seq, parameter digest) of its latest record.
    recorded: BTreeMap<u64, (u64, String)>,
    /// Digests recorded before a plain resume, which its replayed iterations must repeat.
    superseded: BTreeMap<u64, (u64, String)>,
    halted: Option<(u64, u64)>,
    /// Sample hash → iterations whose data-gate failure quarantined it.
    quarantined: HashMap<String, Vec<u64>>,
    complete: Option<(u64, Value)>,
    findings: Vec<Finding>,
    examined: BTreeMap<Check, u64>,
    timeline: Timeline,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

/// Equal up to float rounding in the last bits (recorded values are exact f64; the tolerance
/// only absorbs a different evaluation order, never a different decision).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

/// Whether an SPDX expression is allowed by a license allow-list: some `OR` branch whose ids
/// (joined by `AND`/`WITH`) are all listed; parentheses flattened; an empty list allows all.
fn license_allowed(allowed: &[String], expression: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    expression
        .replace(['(', ')'], " ")
        .split(" OR ")
        .any(|branch| {
            branch
                .split_whitespace()
                .filter(|t| *t != "AND" && *t != "WITH")
                .all(|id| allowed.iter().any(|a| a == id))
        })
}

/// Picks the run's `train.start`: the latest one naming `run_dir`, else the only one (the rule
/// replay uses too: [`warden_train::replay::run_start`]).
pub(crate) fn find_start(
    records: &[SignedRecord],
    run_dir: &Path,
    lineage_dir: &Path,
) -> Result<usize, AuditError> {
    warden_train::replay::run_start(records, run_dir).map_err(|n| match n {
        0 => AuditError::NoStart {
            lineage: lineage_dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
        },
        n => AuditError::AmbiguousStart {
            lineage: lineage_dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            n,
        },
    })
}

pub(crate) fn walk(
    run_dir: &Path,
    lineage_dir: &Path,
    records: &[SignedRecord],
    trust: &TrustStore,
) -> Result<Walked, AuditError> {
    let start_idx = find_start(records, run_dir, lineage_dir)?;
    let start = &records[start_idx];
    let seq = start.record.seq;
    let bad_start = |reason: String| AuditError::Start { seq, reason };
    let payload = &start.record.payload;
    let config_text = payload["config"]
        .as_str()
        .ok_or_else(|| bad_start("no config text".into()))?;
    let config: TrainConfig = toml::from_str(config_text)
        .map_err(|e| bad_start(format!("config: {}", e.to_string().trim())))?;
    let regions = config.model.regions();
    let resolved = config
        .policy
        .resolve(&regions)
        .map_err(|e| bad_start(format!("policy: {e}")))?;
    let policy_digest = warden_train::run::policy_digest(&config.policy)
        .map_err(|e| bad_start(format!("policy: {e}")))?;
    let version = config.policy.version.clone();
    let resolved = Rc::new(resolved);
    let mut walker = Walker {
        in_force: Rc::clone(&resolved),
        config_digest: sha256_hex(config_text.as_bytes()),
        regions,
        policies: BTreeMap::new(),
        current: version.clone(),
        corpus: None,
        state: State::default(),
        checkpoints: BTreeMap::new(),
        recorded: BTreeMap::new(),
        superseded: BTreeMap::new(),
        halted: None,
        quarantined: HashMap::new(),
        complete: None,
        findings: Vec::new(),
        examined: BTreeMap::new(),
        timeline: Timeline::default(),
        config,
    };
    walker
        .policies
        .insert(version.clone(), (policy_digest.clone(), resolved));
    walker.timeline.policies.push(PolicyPoint {
        version,
        digest: policy_digest,
        seq,
        reason: "start".into(),
    });
    walker.start(start, trust);
    let end = records[start_idx + 1..]
        .iter()
        .position(|r| r.record.kind == "train.start")
        .map_or(records.len(), |k| start_idx + 1 + k);
    for record in &records[start_idx + 1..end] {
        walker.record(record);
    }
    let examined = crate::files::outcome(
        run_dir,
        records,
        walker.complete.as_ref(),
        &walker.state.digest,
        &walker.recorded,
        payload,
        trust,
        walker.halted,
        &mut walker.findings,
    );
    walker.count(Check::Outcome, examined);
    let examined =
        crate::files::retained_checkpoints(run_dir, &records[start_idx..end], &mut walker.findings);
    walker.count(Check::Outcome, examined);
    walker.findings.sort_by_key(|f| (f.check, f.seq));
    Ok(Walked {
        start_seq: seq,
        findings: walker.findings,
        examined: walker.examined,
        timeline: walker.timeline,
    })
}

impl Walker {
    fn find(
        &mut self,
        check: Check,
        seq: u64,
        iteration: Option<u64>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.findings.push(Finding {
            check,
            seq: Some(seq),
            iteration,
            field: field.into(),
            message: message.into(),
        });
    }

    fn count(&mut self, check: Check, n: u64) {
        *self.examined.entry(check).or_default() += n;
    }

    fn policy(&self) -> Rc<ResolvedPolicy> {
        Rc::clone(&self.in_force)
    }

    /// The start record: config digest, policy version, the signed corpus, the initial state.
    fn start(&mut self, start: &SignedRecord, trust: &TrustStore) {
        let seq = start.record.seq;
        let p = &start.record.payload;
        self.count(Check::Policy, 1);
        self.count(Check::Data, 1);
        if p["config_digest"].as_str() != Some(self.config_digest.as_str()) {
            self.find(
                Check::Policy,
                seq,
                None,
                "config_digest",
                format!(
                    "train.start names config digest {} but its config text hashes to {}",
                    p["config_digest"], self.config_digest
                ),
            );
        }
        if start.record.policy_version.as_deref() != Some(self.current.as_str()) {
            self.find(
                Check::Policy,
                seq,
                None,
                "policy_version",
                format!(
                    "train.start declares policy version {:?} but its config's policy is {}",
                    start.record.policy_version, self.current
                ),
            );
        }
        let corpus_dir = p["corpus"]["dir"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.config.corpus.clone());
        match AdmittedCorpus::load(&corpus_dir, trust) {
            Ok(admitted) => {
                let declared = hex::encode(admitted.declaration_digest());
                if p["corpus"]["declaration_digest"].as_str() != Some(declared.as_str()) {
                    self.find(
                        Check::Data,
                        seq,
                        None,
                        "corpus.declaration_digest",
                        format!(
                            "the run names declaration {} but {} holds signed declaration {declared}",
                            p["corpus"]["declaration_digest"],
                            corpus_dir.display()
                        ),
                    );
                }
                let mut exclusions = HashMap::new();
                match admitted.exclusions() {
                    Ok(list) => {
                        self.timeline.corpus_exclusions = list.len() as u64;
                        for e in list {
                            if let Some(hash) = parse_hash(&e.hash) {
                                exclusions.insert(hash, format!("{}: {}", e.reason, e.detail));
                            }
                        }
                    }
                    Err(e) => self.find(
                        Check::Data,
                        seq,
                        None,
                        "corpus",
                        format!("{}: exclusions: {e}", corpus_dir.display()),
                    ),
                }
                self.corpus = Some(Corpus {
                    admitted,
                    exclusions,
                });
            }
            Err(e) => self.find(
                Check::Data,
                seq,
                None,
                "corpus.dir",
                format!(
                    "the signed corpus declaration {} does not load: {e}",
                    corpus_dir.display()
                ),
            ),
        }
        let initial = p["initial_param_digest"].as_str().unwrap_or_default();
        if initial.is_empty() {
            self.find(
                Check::Outcome,
                seq,
                None,
                "initial_param_digest",
                "train.start records no initial parameter digest",
            );
        }
        self.state.digest = initial.to_string();
        self.recorded.insert(0, (seq, initial.to_string()));
        self.checkpoints.insert(0, self.state.clone());
    }

    fn record(&mut self, record: &SignedRecord) {
        let kind = record.record.kind.as_str();
        if !kind.starts_with("train.") {
            return;
        }
        let seq = record.record.seq;
        let payload = &record.record.payload;
        if kind == "train.transition" {
            self.transition(seq, payload);
        }
        self.count(Check::Policy, 1);
        let declared = record.record.policy_version.clone().unwrap_or_default();
        if declared != self.current {
            let iteration = payload["iteration"].as_u64();
            self.find(
                Check::Policy,
                seq,
                iteration,
                "policy_version",
                format!(
                    "{kind} declares policy version {declared:?} but the policy in force is {:?} (no train.transition switched to {declared:?})",
                    self.current
                ),
            );
        }
        if kind != "train.transition" {
            // Every record is examined for the halt rule; failure records also for their action.
            self.count(Check::Failures, 1);
            if let Some((halt_seq, at)) = self.halted {
                self.find(
                    Check::Failures,
                    seq,
                    payload["iteration"].as_u64(),
                    "kind",
                    format!(
                        "{kind} after the halt at iteration {at} (record {halt_seq}): a halt ends the run; only a train.transition (resume) may continue it"
                    ),
                );
            }
        }
        match kind {
            "train.iteration" => self.iteration(seq, payload, &declared),
            "train.failure" => self.failure(seq, payload),
            "train.complete" => self.complete(seq, payload),
            _ => {}
        }
    }

    /// The iteration counter moves by exactly one per iteration or failure record.
    fn next_iteration(&mut self, seq: u64, payload: &Value) -> Option<u64> {
        self.count(Check::Outcome, 1);
        let Some(iteration) = payload["iteration"].as_u64() else {
            self.find(
                Check::Outcome,
                seq,
                None,
                "iteration",
                "no iteration number",
            );
            return None;
        };
        let expected = self.state.iteration + 1;
        if iteration > expected {
            let missing = if iteration == expected + 1 {
                format!("iteration {expected} has no record")
            } else {
                format!("iterations {expected}..{} have no record", iteration - 1)
            };
            self.find(
                Check::Outcome,
                seq,
                Some(iteration),
                "iteration",
                format!(
                    "iteration {iteration} follows iteration {}: {missing} (skipped)",
                    self.state.iteration
                ),
            );
        } else if iteration < expected {
            self.find(
                Check::Outcome,
                seq,
                Some(iteration),
                "iteration",
                format!(
                    "iteration {iteration} follows iteration {}: iterations must count up by one",
                    self.state.iteration
                ),
            );
        }
        self.state.iteration = iteration;
        Some(iteration)
    }

    /// The data gate's decision for a sample hash, from the signed index and the policy.
    fn expected_sample(&self, policy: &ResolvedPolicy, hash: &[u8; 32]) -> Option<Expected> {
        let corpus = self.corpus.as_ref()?;
        let Some(at) = corpus.admitted.lookup(hash) else {
            return Some(match corpus.exclusions.get(hash) {
                Some(reason) => Expected::Refuse(format!("excluded at admission ({reason})")),
                None => Expected::Fail(
                    "its content hash is not in the signed sample index of the corpus declaration"
                        .into(),
                ),
            });
        };
        let Some(source) = corpus.admitted.sources().get(at.source as usize) else {
            return Some(Expected::Fail(format!(
                "the sample index names source {}, which the declaration lacks",
                at.source
            )));
        };
        let rules = &policy.source;
        Some(if !source.admitted {
            Expected::Fail(format!("source {} was refused at admission", source.id))
        } else if source.held_out {
            Expected::Fail(format!(
                "it is admitted only in held-out source {}",
                source.id
            ))
        } else if rules.excluded_classes.contains(&source.class)
            || corpus.admitted.excluded_classes().contains(&source.class)
        {
            Expected::Refuse(format!("class {} is excluded", source.class))
        } else if !license_allowed(&rules.licenses, &source.license) {
            Expected::Refuse(format!("license {} is not allowed", source.license))
        } else {
            let depth = rules.classes.get(&source.class).unwrap_or(&source.depth);
            if policy.depths.contains_key(depth) {
                Expected::Admit {
                    class: source.class.clone(),
                    depth: depth.clone(),
                }
            } else {
                Expected::Fail(format!(
                    "class {} has depth {depth}, which policy {} does not define",
                    source.class, rules.version
                ))
            }
        })
    }

    fn iteration(&mut self, seq: u64, p: &Value, version: &str) {
        let Some(it) = self.next_iteration(seq, p) else {
            return;
        };
        let policy = self.policy();
        for check in [Check::Data, Check::Gradients, Check::Evaluation] {
            self.count(check, 1);
        }
        if p["config_digest"].as_str() != Some(self.config_digest.as_str()) {
            self.find(
                Check::Policy,
                seq,
                Some(it),
                "config_digest",
                format!(
                    "config digest {} is not the run's {}",
                    p["config_digest"], self.config_digest
                ),
            );
        }
        let rng = &p["rng"];
        if rng["algorithm"] != "chacha20"
            || rng["seed"].as_u64() != Some(self.config.seed)
            || rng["stream"].as_u64() != Some(it)
        {
            self.find(
                Check::Data,
                seq,
                Some(it),
                "rng",
                format!(
                    "the batch must come from chacha20 seed {} stream {it}; the record says {rng}",
                    self.config.seed
                ),
            );
        }
        let (admitted, refused, depth_counts) = self.samples(seq, it, p, &policy);
        let updated = self.gradients(seq, it, p, &policy, &depth_counts);
        let evaluation = self.evaluation(seq, it, p, &policy);
        // Outcome: the full parameter digest is recorded at every checkpoint iteration
        // (`checkpoint_every` or `retain_every`; replay bridges the iterations between them) and
        // may be recorded elsewhere (the last iteration of a command). Where recorded it must
        // chain: a digest can only change when some region was updated. Between recorded
        // digests the parameters are unknown ("") once a region was updated.
        let digest = p["param_digest"].as_str().unwrap_or_default().to_string();
        let retain_every = policy.source.retain_every.max(1);
        let checkpoint_it =
            it.is_multiple_of(policy.source.checkpoint_every) || it.is_multiple_of(retain_every);
        if digest.is_empty() && checkpoint_it {
            self.find(
                Check::Outcome,
                seq,
                Some(it),
                "param_digest",
                "no parameter digest at a checkpoint iteration",
            );
        } else if !digest.is_empty()
            && updated.is_empty()
            && !self.state.digest.is_empty()
            && digest != self.state.digest
        {
            self.find(
                Check::Outcome,
                seq,
                Some(it),
                "param_digest",
                format!(
                    "no region was updated, yet param_digest {digest} differs from the previous {}: the digest does not chain",
                    self.state.digest
                ),
            );
        }
        // The retained checkpoint replay starts from: exactly at `retain_every` multiples.
        let retained = !p["checkpoint"].is_null();
        if retained != it.is_multiple_of(retain_every) {
            self.find(
                Check::Outcome,
                seq,
                Some(it),
                "checkpoint",
                if retained {
                    format!("a retained checkpoint at iteration {it}, which is not a multiple of retain_every {retain_every}")
                } else {
                    format!("no retained checkpoint at iteration {it}, a multiple of retain_every {retain_every}")
                },
            );
        }
        if let Some((old_seq, old)) = self.superseded.remove(&it) {
            if !old.is_empty() && !digest.is_empty() && old != digest {
                self.find(
                    Check::Outcome,
                    seq,
                    Some(it),
                    "param_digest",
                    format!(
                        "replayed iteration {it} after a resume records digest {digest}, but record {old_seq} recorded {old} for it (the loop is deterministic)"
                    ),
                );
            }
        }
        for region in &updated {
            self.state.last_update.insert(region.clone(), it);
        }
        if !digest.is_empty() {
            self.state.digest = digest.clone();
        } else if !updated.is_empty() {
            self.state.digest = String::new();
        }
        self.recorded.insert(it, (seq, digest));
        if checkpoint_it {
            self.checkpoints.insert(it, self.state.clone());
        }
        let regions = p["regions"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|r| {
                        let region = r["region"].as_str().unwrap_or("?").to_string();
                        RegionPoint {
                            bound: policy.regions.get(&region).and_then(|x| x.max_norm),
                            grad_norm: r["grad_norm"].as_f64(),
                            verdict: r["verdict"].as_str().unwrap_or("?").to_string(),
                            region,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.timeline.iterations.push(IterationPoint {
            seq,
            iteration: it,
            loss: p["loss"].as_f64(),
            policy_version: version.to_string(),
            admitted,
            refused,
            regions,
            evaluation,
        });
    }

    /// Check 3 on one batch. Returns (admitted, refused, per-depth (admitted, trained)).
    fn samples(
        &mut self,
        seq: u64,
        it: u64,
        p: &Value,
        policy: &ResolvedPolicy,
    ) -> (u64, u64, BTreeMap<String, (u64, u64)>) {
        let empty = Vec::new();
        let samples = p["batch"]["samples"].as_array().unwrap_or(&empty);
        let mut leaves = Vec::with_capacity(samples.len());
        let mut depth_counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let (mut admitted, mut refused) = (0, 0);
        for (i, s) in samples.iter().enumerate() {
            let field = |name: &str| format!("batch.samples[{i}].{name}");
            let hash_text = s["hash"].as_str().unwrap_or_default();
            let Some(hash) = parse_hash(hash_text) else {
                self.find(
                    Check::Data,
                    seq,
                    Some(it),
                    field("hash"),
                    format!("{hash_text:?} is not a SHA-256 hex digest"),
                );
                continue;
            };
            leaves.push(warden_merkle::leaf_hash(&hash));
            let status = s["status"].as_str().unwrap_or_default();
            let expected = self.expected_sample(policy, &hash);
            let source = s["source"].as_str().unwrap_or("?");
            if status == "admitted" {
                admitted += 1;
                let depth = s["depth"].as_str().unwrap_or_default();
                let weight = s["weight"].as_f64().unwrap_or(1.0);
                let entry = depth_counts.entry(depth.to_string()).or_default();
                entry.0 += 1;
                if weight > 0.0 {
                    entry.1 += 1;
                }
                match expected {
                    Some(Expected::Admit {
                        class,
                        depth: expected_depth,
                    }) => {
                        if s["class"].as_str() != Some(class.as_str()) {
                            self.find(
                                Check::Data,
                                seq,
                                Some(it),
                                field("class"),
                                format!(
                                    "sample {hash_text} is of class {class} in the signed declaration; the record says {}",
                                    s["class"]
                                ),
                            );
                        }
                        if depth != expected_depth {
                            self.find(
                                Check::Gradients,
                                seq,
                                Some(it),
                                field("depth"),
                                format!(
                                    "sample {i} (source {source}, class {class}) trains at depth {expected_depth} under policy {}, but was routed at depth {depth:?}",
                                    policy.source.version
                                ),
                            );
                        }
                        *self
                            .timeline
                            .classes
                            .entry(class)
                            .or_default()
                            .entry(expected_depth)
                            .or_default() += 1;
                    }
                    Some(Expected::Refuse(reason)) => self.find(
                        Check::Data,
                        seq,
                        Some(it),
                        field("status"),
                        format!(
                            "sample {hash_text} (source {source}) is marked admitted, but the policy refuses it: {reason}"
                        ),
                    ),
                    Some(Expected::Fail(reason)) => self.find(
                        Check::Data,
                        seq,
                        Some(it),
                        field("status"),
                        format!(
                            "sample {hash_text} (source {source}) is marked admitted, but {reason}"
                        ),
                    ),
                    None => {}
                }
                continue;
            }
            refused += 1;
            self.timeline.n_refusals += 1;
            if self.timeline.refusals.len() < MAX_LISTED {
                self.timeline.refusals.push(RefusalPoint {
                    seq,
                    iteration: it,
                    source: source.to_string(),
                    hash: hash_text.to_string(),
                    status: status.to_string(),
                });
            }
            for trained in ["depth", "loss"] {
                if !s[trained].is_null() {
                    self.find(
                        Check::Data,
                        seq,
                        Some(it),
                        field(trained),
                        format!(
                            "sample {hash_text} is {status:?} yet has a {trained}: a refused sample never counts as trained"
                        ),
                    );
                }
            }
            if let Some(reason) = status.strip_prefix("refused: ") {
                match expected {
                    Some(Expected::Admit { class, depth }) => self.find(
                        Check::Data,
                        seq,
                        Some(it),
                        field("status"),
                        format!(
                            "sample {hash_text} was refused ({reason}) but the policy admits it (class {class}, depth {depth})"
                        ),
                    ),
                    Some(Expected::Fail(why)) => self.find(
                        Check::Failures,
                        seq,
                        Some(it),
                        field("status"),
                        format!(
                            "sample {hash_text} was refused ({reason}), but {why}: an integrity failure the failure mode must handle"
                        ),
                    ),
                    _ => {}
                }
            } else if let Some(at) = status
                .strip_prefix("skipped: quarantined at iteration ")
                .and_then(|n| n.parse::<u64>().ok())
            {
                let known = self
                    .quarantined
                    .get(hash_text)
                    .is_some_and(|list| list.contains(&at));
                if !known || at >= it {
                    self.find(
                        Check::Data,
                        seq,
                        Some(it),
                        field("status"),
                        format!(
                            "sample {hash_text} is skipped as quarantined at iteration {at}, but no data-gate failure quarantined it there"
                        ),
                    );
                }
            } else {
                self.find(
                    Check::Data,
                    seq,
                    Some(it),
                    field("status"),
                    format!("unknown sample status {status:?}"),
                );
            }
        }
        let root = hex::encode(warden_merkle::root(&leaves));
        if p["batch"]["merkle_root"].as_str() != Some(root.as_str()) {
            self.find(
                Check::Data,
                seq,
                Some(it),
                "batch.merkle_root",
                format!(
                    "the batch's samples hash to Merkle root {root}, the record says {}",
                    p["batch"]["merkle_root"]
                ),
            );
        }
        (admitted, refused, depth_counts)
    }

    /// Check 4 on one iteration: groups, detector actions, region verdicts. Returns the
    /// regions that were updated.
    fn gradients(
        &mut self,
        seq: u64,
        it: u64,
        p: &Value,
        policy: &ResolvedPolicy,
        depth_counts: &BTreeMap<String, (u64, u64)>,
    ) -> BTreeSet<String> {
        let empty = Vec::new();
        let mut routed: BTreeSet<String> = BTreeSet::new();
        let mut grouped = BTreeSet::new();
        for (g, group) in p["groups"].as_array().unwrap_or(&empty).iter().enumerate() {
            let field = |name: &str| format!("groups[{g}].{name}");
            let depth = group["depth"].as_str().unwrap_or_default();
            grouped.insert(depth.to_string());
            let Some(profile) = policy.depths.get(depth) else {
                self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    field("depth"),
                    format!(
                        "depth {depth:?} is not defined by policy {}",
                        policy.source.version
                    ),
                );
                continue;
            };
            routed.extend(profile.regions.iter().cloned());
            let (n_admitted, n_trained) = depth_counts.get(depth).copied().unwrap_or((0, 0));
            let n = group["samples"].as_u64().unwrap_or(0);
            if n > n_admitted || n < n_trained {
                self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    field("samples"),
                    format!(
                        "the {depth} group trained {n} samples, but the batch admits {n_admitted} at depth {depth} ({n_trained} with weight > 0)"
                    ),
                );
            }
            let norm = group["grad_norm"].as_f64();
            let scale = group["scale"].as_f64();
            let expected_scale = match (profile.max_norm, norm) {
                (Some(bound), Some(norm)) if norm > bound => Some(bound / norm),
                (_, Some(_)) => Some(1.0),
                (_, None) => None,
            };
            match (scale, expected_scale) {
                (Some(s), Some(e)) if close(s, e) => {}
                _ => self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    field("scale"),
                    format!(
                        "depth {depth} (bound {:?}) with gradient norm {:?} must be scaled by {:?}; the record says {:?}",
                        profile.max_norm, norm, expected_scale, scale
                    ),
                ),
            }
        }
        for (depth, (_, trained)) in depth_counts {
            if *trained > 0 && !grouped.contains(depth) {
                self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    "groups",
                    format!("{trained} samples train at depth {depth:?} but no group records their pass"),
                );
            }
        }
        self.detector_actions(seq, it, p, policy);
        let mut updated = BTreeSet::new();
        let records: BTreeMap<String, (usize, &Value)> = p["regions"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .enumerate()
            .map(|(k, r)| (r["region"].as_str().unwrap_or("?").to_string(), (k, r)))
            .collect();
        let regions = self.regions.clone();
        for region in &regions {
            let Some(&(k, r)) = records.get(region) else {
                self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    "regions",
                    format!("region {region} has no verdict"),
                );
                continue;
            };
            let field = |name: &str| format!("regions[{k}].{name}");
            let verdict = r["verdict"].as_str().unwrap_or_default();
            if verdict == "untouched" {
                continue;
            }
            if !routed.contains(region) {
                self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    field("verdict"),
                    format!(
                        "region {region} has a gradient ({verdict}) but no depth group of this batch may update it (groups route to {:?})",
                        routed
                    ),
                );
            }
            let norm = r["grad_norm"].as_f64();
            let finite = r["finite"].as_bool() == Some(true);
            let Some(norm) = norm.filter(|n| finite && n.is_finite()) else {
                self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    field("grad_norm"),
                    format!(
                        "region {region}: non-finite gradient {} in an iteration record; the policy makes it a failure",
                        r["grad_norm"]
                    ),
                );
                continue;
            };
            let (expected, why) = self.expected_region(policy, region, norm, it);
            if verdict != expected {
                self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    field("verdict"),
                    format!(
                        "region {region}: verdict {verdict} for grad_norm {norm}, but policy {} mandates {expected} ({why})",
                        policy.source.version
                    ),
                );
            } else if expected == "clip" {
                let bound = policy
                    .regions
                    .get(region)
                    .and_then(|x| x.max_norm)
                    .unwrap_or(norm);
                let scale = r["scale"].as_f64();
                if !scale.is_some_and(|s| close(s, bound / norm)) {
                    self.find(
                        Check::Gradients,
                        seq,
                        Some(it),
                        field("scale"),
                        format!(
                            "region {region}: clip scale {scale:?}, but bound {bound} / norm {norm} is {}",
                            bound / norm
                        ),
                    );
                }
            }
            if verdict == "admit" || verdict == "clip" {
                updated.insert(region.clone());
            }
        }
        updated
    }

    /// The gradient gate's verdict for one region, re-derived: frozen, update-frequency cap,
    /// norm bound with its excess action.
    fn expected_region(
        &self,
        policy: &ResolvedPolicy,
        region: &str,
        norm: f64,
        it: u64,
    ) -> (&'static str, String) {
        let Some(profile) = policy.regions.get(region) else {
            return ("reject", "the region has no profile".into());
        };
        if profile.frozen {
            return ("reject", "the region is frozen".into());
        }
        if let Some(&last) = self.state.last_update.get(region) {
            if it.saturating_sub(last) < profile.every {
                return (
                    "reject",
                    format!(
                        "last updated at iteration {last}, at most every {}",
                        profile.every
                    ),
                );
            }
        }
        match profile.max_norm {
            Some(bound) if norm > bound => match profile.on_excess {
                ExcessAction::Clip => ("clip", format!("norm above its bound {bound}")),
                ExcessAction::Reject => ("reject", format!("norm above its bound {bound}")),
            },
            Some(bound) => ("admit", format!("norm within its bound {bound}")),
            None => ("admit", "no bound".into()),
        }
    }

    /// Every detector finding carries the policy's action, and its sample keeps no more than
    /// the policy's weight.
    fn detector_actions(&mut self, seq: u64, it: u64, p: &Value, policy: &ResolvedPolicy) {
        let empty = Vec::new();
        let found = p["memorization"].as_array().unwrap_or(&empty);
        let Some(rule) = &policy.source.memorization else {
            if !found.is_empty() {
                self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    "memorization",
                    format!(
                        "{} detector findings, but policy {} has no memorization rule",
                        found.len(),
                        policy.source.version
                    ),
                );
            }
            return;
        };
        let (action, kept) = match rule.action {
            MemorizationAction::Reject => ("reject", 0.0),
            MemorizationAction::Clip => ("clip", rule.weight),
        };
        for (k, f) in found.iter().enumerate() {
            if f["action"].as_str() != Some(action) {
                self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    format!("memorization[{k}].action"),
                    format!(
                        "detector action {} but policy {} says {action}",
                        f["action"], policy.source.version
                    ),
                );
            }
            let sample = &p["batch"]["samples"][f["sample"].as_u64().unwrap_or(u64::MAX) as usize];
            if sample.is_null() {
                self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    format!("memorization[{k}].sample"),
                    format!("names sample {}, which the batch lacks", f["sample"]),
                );
                continue;
            }
            let (name, kept_now) = if f["scope"] == "spans" {
                ("span_weight", sample["span_weight"].as_f64().unwrap_or(1.0))
            } else {
                ("weight", sample["weight"].as_f64().unwrap_or(1.0))
            };
            if kept_now > kept + 1e-12 {
                self.find(
                    Check::Gradients,
                    seq,
                    Some(it),
                    format!("batch.samples[{}].{name}", f["sample"]),
                    format!(
                        "a detected contribution keeps {name} {kept_now}; policy {} keeps at most {kept} ({action})",
                        policy.source.version
                    ),
                );
            }
        }
    }

    /// Check 5 on one iteration. Returns `ran` / `refused` for the report.
    fn evaluation(
        &mut self,
        seq: u64,
        it: u64,
        p: &Value,
        policy: &ResolvedPolicy,
    ) -> Option<String> {
        let ev = &p["evaluation"];
        let request = self.config.eval.clone();
        let requested_now = request.as_ref().is_some_and(|r| it.is_multiple_of(r.every));
        if ev.is_null() {
            if requested_now {
                self.find(
                    Check::Evaluation,
                    seq,
                    Some(it),
                    "evaluation",
                    "the run's config requests an evaluation at this iteration, but none is recorded (neither run nor refused)",
                );
            }
            return None;
        }
        let Some(request) = request.filter(|_| requested_now) else {
            self.find(
                Check::Evaluation,
                seq,
                Some(it),
                "evaluation",
                "an evaluation is recorded at an iteration the run's config does not request: it was not authorized",
            );
            return Some(
                if ev["refused"].is_null() {
                    "ran"
                } else {
                    "refused"
                }
                .into(),
            );
        };
        let as_strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        if as_strings(&ev["requested"]["sources"]) != request.sources
            || as_strings(&ev["requested"]["probes"]) != request.probes
        {
            self.find(
                Check::Evaluation,
                seq,
                Some(it),
                "evaluation.requested",
                format!(
                    "requested {} but the run's config requests sources {:?} probes {:?}",
                    ev["requested"], request.sources, request.probes
                ),
            );
        }
        let rule = &policy.source.eval;
        let mut reasons = Vec::new();
        for source in &request.sources {
            let held_out = self.corpus.as_ref().is_none_or(|c| {
                c.admitted
                    .sources()
                    .iter()
                    .any(|s| &s.id == source && s.held_out && s.admitted)
            });
            if !rule.sources.contains(source) {
                reasons.push(format!("source {source} is not authorized"));
            } else if !held_out {
                reasons.push(format!(
                    "source {source} is not an admitted held-out source"
                ));
            }
        }
        for probe in &request.probes {
            if !rule.probes.contains(probe) {
                reasons.push(format!("probe {probe} is not authorized"));
            }
        }
        if let Some(last) = self.state.last_eval {
            if it.saturating_sub(last) < rule.min_interval {
                reasons.push(format!(
                    "last evaluation at iteration {last}, at most every {}",
                    rule.min_interval
                ));
            }
        }
        if !ev["refused"].is_null() {
            if reasons.is_empty() {
                self.find(
                    Check::Evaluation,
                    seq,
                    Some(it),
                    "evaluation.refused",
                    format!(
                        "the evaluation was refused ({}), but policy {} authorizes it",
                        ev["refused"], policy.source.version
                    ),
                );
            }
            return Some("refused".into());
        }
        if !reasons.is_empty() {
            self.find(
                Check::Evaluation,
                seq,
                Some(it),
                "evaluation",
                format!(
                    "an evaluation ran that policy {} does not authorize: {}",
                    policy.source.version,
                    reasons.join("; ")
                ),
            );
        }
        if let Some(sources) = ev["sources"].as_object() {
            for name in sources.keys() {
                if !request.sources.contains(name) {
                    self.find(
                        Check::Evaluation,
                        seq,
                        Some(it),
                        format!("evaluation.sources.{name}"),
                        format!("source {name} was evaluated but not requested"),
                    );
                }
            }
        }
        let canaries = ev["canaries"].as_array().map_or(0, Vec::len);
        if canaries > 0 && !request.probes.iter().any(|p| p == "canary-exposure") {
            self.find(
                Check::Evaluation,
                seq,
                Some(it),
                "evaluation.canaries",
                "canary exposure was measured but the canary-exposure probe was not requested",
            );
        }
        self.state.last_eval = Some(it);
        Some("ran".into())
    }

    /// Check 6 on a `train.failure`.
    fn failure(&mut self, seq: u64, p: &Value) {
        let Some(it) = self.next_iteration(seq, p) else {
            return;
        };
        let policy = self.policy();
        let mode = policy.source.failure;
        let mode_name = match mode {
            FailureMode::Halt => "halt",
            FailureMode::Quarantine => "quarantine",
            FailureMode::Tolerance => "tolerance",
        };
        if p["mode"].as_str() != Some(mode_name) {
            self.find(
                Check::Failures,
                seq,
                Some(it),
                "mode",
                format!(
                    "failure mode {} but policy {} says {mode_name}",
                    p["mode"], policy.source.version
                ),
            );
        }
        let hash = p["sample"]["hash"].as_str().unwrap_or_default().to_string();
        if p["gate"] == "data" && !hash.is_empty() {
            if let Some(bytes) = parse_hash(&hash) {
                if let Some(Expected::Admit { .. } | Expected::Refuse(_)) =
                    self.expected_sample(&policy, &bytes)
                {
                    self.find(
                        Check::Failures,
                        seq,
                        Some(it),
                        "sample",
                        format!(
                            "a data-gate failure on sample {hash}, which the signed declaration and the policy do not make a failure"
                        ),
                    );
                }
            }
        }
        let mut exceeded = false;
        if let (FailureMode::Tolerance, Some(t)) = (mode, policy.source.tolerance) {
            self.state.recent_failures.push_back(it);
            while self
                .state
                .recent_failures
                .front()
                .is_some_and(|&f| f + t.window <= it)
            {
                self.state.recent_failures.pop_front();
            }
            exceeded = self.state.recent_failures.len() as u64 >= t.failures;
        }
        let halt = mode == FailureMode::Halt || exceeded;
        let expected = if halt { "halt" } else { "quarantine" };
        let action = p["action"].as_str().unwrap_or_default().to_string();
        if action != expected {
            let why = if exceeded {
                " (the tolerance window is exceeded)".to_string()
            } else {
                String::new()
            };
            self.find(
                Check::Failures,
                seq,
                Some(it),
                "action",
                format!("action {action:?} but failure mode {mode_name} requires {expected}{why}"),
            );
        }
        if mode == FailureMode::Tolerance && p["tolerance_exceeded"].is_null() == exceeded {
            self.find(
                Check::Failures,
                seq,
                Some(it),
                "tolerance_exceeded",
                format!(
                    "the tolerance window is {}exceeded, the record says {}",
                    if exceeded { "" } else { "not " },
                    p["tolerance_exceeded"]
                ),
            );
        }
        let digest = p["param_digest"].as_str().unwrap_or_default().to_string();
        if action == "halt" {
            if !self.state.digest.is_empty() && digest != self.state.digest {
                self.find(
                    Check::Failures,
                    seq,
                    Some(it),
                    "param_digest",
                    format!(
                        "a halt changes no parameter, but param_digest {digest} is not the previous {}",
                        self.state.digest
                    ),
                );
            }
            self.halted = Some((seq, it));
        } else if action == "quarantine" {
            if !hash.is_empty() && p["gate"] == "data" {
                self.quarantined.entry(hash.clone()).or_default().push(it);
            }
            let latest = self
                .checkpoints
                .range(..it)
                .next_back()
                .map(|(k, s)| (*k, s.clone()));
            let rolled = p["rolled_back_to"].as_u64();
            match latest {
                Some((at, snapshot)) => {
                    if rolled != Some(at) {
                        self.find(
                            Check::Failures,
                            seq,
                            Some(it),
                            "rolled_back_to",
                            format!(
                                "rolled back to {}, but the latest admissible checkpoint is iteration {at}",
                                p["rolled_back_to"]
                            ),
                        );
                    }
                    if digest != snapshot.digest {
                        self.find(
                            Check::Failures,
                            seq,
                            Some(it),
                            "param_digest",
                            format!(
                                "the quarantine does not roll back: param_digest {digest} is not {}, the digest recorded at checkpoint iteration {at}",
                                snapshot.digest
                            ),
                        );
                    }
                    let failures = std::mem::take(&mut self.state.recent_failures);
                    self.state = State {
                        iteration: it,
                        recent_failures: failures,
                        ..snapshot
                    };
                }
                None => self.find(
                    Check::Failures,
                    seq,
                    Some(it),
                    "rolled_back_to",
                    "a quarantine with no admissible checkpoint before it",
                ),
            }
        }
        self.state.digest = digest.clone();
        self.recorded.insert(it, (seq, digest));
        self.timeline.failures.push(FailurePoint {
            seq,
            iteration: it,
            gate: p["gate"].as_str().unwrap_or("?").to_string(),
            action,
            detail: p["detail"].as_str().unwrap_or_default().to_string(),
        });
    }

    /// A `train.transition`: resume from a checkpoint, optionally switching policy (check 2
    /// for the switch, check 7 for the digest it resumes from).
    fn transition(&mut self, seq: u64, p: &Value) {
        self.count(Check::Outcome, 1);
        let reason = p["reason"].as_str().unwrap_or_default();
        if p["policy_from"].as_str() != Some(self.current.as_str()) {
            self.find(
                Check::Policy,
                seq,
                None,
                "policy_from",
                format!(
                    "the transition leaves policy {} but the policy in force is {}",
                    p["policy_from"], self.current
                ),
            );
        }
        let mut changed = None;
        if reason == "policy-change" {
            let text = p["policy_text"].as_str().unwrap_or_default();
            let digest = sha256_hex(text.as_bytes());
            if p["policy_digest"].as_str() != Some(digest.as_str()) {
                self.find(
                    Check::Policy,
                    seq,
                    None,
                    "policy_digest",
                    format!(
                        "the policy text hashes to {digest}, the record says {}",
                        p["policy_digest"]
                    ),
                );
            }
            match TrainingPolicy::parse(text, &format!("lineage record {seq} (policy_text)"))
                .and_then(|policy| {
                    let resolved = policy.resolve(&self.regions)?;
                    Ok((warden_train::run::policy_digest(&policy)?, resolved))
                }) {
                Ok((canonical, resolved)) => {
                    let version = resolved.source.version.clone();
                    if p["policy_to"].as_str() != Some(version.as_str()) {
                        self.find(
                            Check::Policy,
                            seq,
                            None,
                            "policy_to",
                            format!(
                                "policy_to {} but the policy text is version {version}",
                                p["policy_to"]
                            ),
                        );
                    }
                    let clash = self
                        .policies
                        .get(&version)
                        .map(|(known, _)| known.clone())
                        .filter(|known| *known != canonical);
                    if let Some(known) = clash {
                        self.find(
                            Check::Policy,
                            seq,
                            None,
                            "policy_text",
                            format!(
                                "version {version} already names policy {known} in this run; this one is {canonical}"
                            ),
                        );
                    }
                    let resolved = Rc::new(resolved);
                    self.policies
                        .insert(version.clone(), (canonical.clone(), Rc::clone(&resolved)));
                    changed = Some((version, canonical, resolved));
                }
                Err(e) => self.find(Check::Policy, seq, None, "policy_text", e.to_string()),
            }
        } else if reason != "resume" {
            self.find(
                Check::Policy,
                seq,
                None,
                "reason",
                format!("unknown transition reason {reason:?}"),
            );
        }
        if let Some((version, digest, resolved)) = changed {
            self.current = version.clone();
            self.in_force = resolved;
            self.timeline.policies.push(PolicyPoint {
                version,
                digest,
                seq,
                reason: reason.to_string(),
            });
        }
        let last = p["last_recorded_iteration"].as_u64();
        let recorded_last = (self.state.iteration > 0).then_some(self.state.iteration);
        if last != recorded_last {
            self.find(
                Check::Outcome,
                seq,
                None,
                "last_recorded_iteration",
                format!(
                    "says the last recorded iteration is {}, the lineage's is {recorded_last:?}",
                    p["last_recorded_iteration"]
                ),
            );
        }
        let from = p["resumed_from_iteration"].as_u64().unwrap_or(u64::MAX);
        let digest = p["param_digest"].as_str().unwrap_or_default().to_string();
        match self.checkpoints.get(&from).cloned() {
            Some(snapshot) => {
                if digest != snapshot.digest {
                    self.find(
                        Check::Outcome,
                        seq,
                        Some(from),
                        "param_digest",
                        format!(
                            "resumes with param_digest {digest}, but checkpoint iteration {from} recorded {}: the digest does not chain",
                            snapshot.digest
                        ),
                    );
                }
                if reason == "resume" {
                    for (it, entry) in self.recorded.range(from + 1..) {
                        self.superseded.insert(*it, entry.clone());
                    }
                }
                self.state = snapshot;
                // Checkpoints of the abandoned branch after `from` are gone with it.
                self.checkpoints.retain(|k, _| *k <= from);
            }
            None => {
                self.find(
                    Check::Outcome,
                    seq,
                    None,
                    "resumed_from_iteration",
                    format!(
                        "resumes from iteration {}, which is not an admissible checkpoint of this run (known: {:?})",
                        p["resumed_from_iteration"],
                        self.checkpoints.keys().collect::<Vec<_>>()
                    ),
                );
                self.state.digest = digest;
            }
        }
        self.halted = None;
        self.complete = None;
        self.checkpoints
            .insert(self.state.iteration, self.state.clone());
    }

    fn complete(&mut self, seq: u64, p: &Value) {
        self.count(Check::Outcome, 1);
        if p["iterations"].as_u64() != Some(self.state.iteration) {
            self.find(
                Check::Outcome,
                seq,
                None,
                "iterations",
                format!(
                    "train.complete says {} iterations, the lineage records {}",
                    p["iterations"], self.state.iteration
                ),
            );
        }
        if p["param_digest"].as_str() != Some(self.state.digest.as_str()) {
            self.find(
                Check::Outcome,
                seq,
                None,
                "param_digest",
                format!(
                    "train.complete param_digest {} does not chain from the last recorded {}",
                    p["param_digest"], self.state.digest
                ),
            );
        }
        self.checkpoints
            .insert(self.state.iteration, self.state.clone());
        self.complete = Some((seq, p.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_branches_need_every_id_allowed() {
        let allowed = vec!["MIT".to_string(), "CC0-1.0".to_string()];
        assert!(license_allowed(&allowed, "MIT"));
        assert!(license_allowed(&allowed, "GPL-3.0-only OR MIT"));
        assert!(!license_allowed(&allowed, "MIT AND GPL-3.0-only"));
        assert!(license_allowed(&[], "anything"));
    }

    #[test]
    fn closeness_absorbs_rounding_only() {
        assert!(close(0.5, 0.5 + 1e-15));
        assert!(!close(0.5, 0.5001));
    }
}
