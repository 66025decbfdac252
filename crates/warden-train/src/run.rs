//! A training run on disk: `RUN_DIR/{config.toml, policy.toml, run.json, checkpoints/, lineage/,
//! model.safetensors, manifest.intoto.json}`, started, resumed and finished here.
//!
//! Every command checks, before it writes anything, that its signing key is trusted for the
//! training-authority role; `start` checks the config and loads the corpus before it creates the
//! run directory (a failed start leaves nothing), and `resume` checks the run's corpus, config
//! and policy labels against its `train.start` and `train.transition` records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::SignedRecord;
use warden_store::{Cadence, Lineage, StoreOptions};

use crate::admitted::{load_canaries, Admitted};
use crate::config::{SigningCadence, TrainConfig};
use crate::data::AdmissionIndex;
use crate::io::atomic_write;
use crate::lineage::LineageSink;
use crate::manifest::{self, LineagePoint};
use crate::policy::TrainingPolicy;
use crate::trainer::{GateCounts, Outcome, RecordSink, Trainer};
use crate::TrainError;

/// Called after every iteration (the CLI draws its progress bar from it).
pub type Progress<'a> = &'a mut dyn FnMut(&Trainer, &Outcome);

pub struct RunSummary {
    pub run_dir: PathBuf,
    pub lineage_dir: PathBuf,
    pub iterations: u64,
    pub counts: GateCounts,
    pub final_loss: Option<f32>,
    /// The latest evaluation that ran in this command: (iteration, the record's
    /// `evaluation` object: `sources.ID.loss`, `canaries[].exposure`, ...).
    pub last_evaluation: Option<(u64, Value)>,
    pub model_sha256: [u8; 32],
    pub manifest: PathBuf,
    pub policy_versions: Vec<String>,
}

/// The training authority's signing key with the trust file it is checked against.
pub struct Authority<'a> {
    pub key: Arc<SigningKey>,
    pub trust: &'a TrustStore,
}

/// A run that already finished: `train resume` appends nothing.
pub struct CompletedRun {
    pub run_dir: PathBuf,
    pub iterations: u64,
    pub model_sha256: String,
    /// Index of its `train.complete` record.
    pub seq: u64,
}

/// What `train resume` did.
pub enum Resumed {
    Trained(Box<RunSummary>),
    /// The run had already completed the requested steps; nothing was written.
    AlreadyComplete(CompletedRun),
}

fn io_err(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::io(path, e)
}

/// The store options of a training lineage. `[lineage] cadence = "record"` signs every record
/// (the tail a kill leaves is authenticated through `trust` on resume); `"window"` leaves
/// records unsigned until the checkpoint that seals them. Either way lineage checkpoints are
/// driven by the policy's cadence (`RecordSink::checkpoint`), not by the store. The origin is
/// used only when the lineage is created: an existing lineage keeps its own.
fn store_options(origin: &str, cadence: SigningCadence, trust: &TrustStore) -> StoreOptions {
    let (records, millis) = (1 << 20, 24 * 3_600_000);
    StoreOptions::new(origin)
        .with_cadence(match cadence {
            SigningCadence::Record => Cadence::SignedWindow { records, millis },
            SigningCadence::Window => Cadence::Window { records, millis },
        })
        .with_trust(Arc::new(trust.clone()))
}

/// Refuses a signing key the trust file does not accept for the training-authority role: a
/// record it signed would not verify. Checked before a command writes anything.
pub fn check_signing_key(key: &SigningKey, trust: &TrustStore) -> Result<(), TrainError> {
    let role = Role::TrainingAuthority;
    let reason = if key.role() != role {
        Some(format!("its key file labels it {}", key.role()))
    } else {
        match trust.trusted_for(&key.key_ref(), role) {
            Ok(public) if public == key.public() => None,
            Ok(_) => Some("the trust file holds a different key under its name and id".into()),
            Err(_) => Some(
                match trust.entries().find(|(public, _)| *public == key.public()) {
                    Some((_, roles)) => format!(
                        "the trust file accepts it only as {}",
                        roles
                            .iter()
                            .map(Role::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => "the trust file does not list it".into(),
                },
            ),
        }
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(TrainError::UntrustedKey {
            key: key.key_ref().to_string(),
            role,
            reason,
        }),
    }
}

fn prepare_trainer(config: TrainConfig, trust: &TrustStore) -> Result<Trainer, TrainError> {
    let corpus: Arc<dyn AdmissionIndex> = Arc::new(Admitted::load(&config.corpus, trust)?);
    let canaries = config.eval.as_ref().and_then(|e| e.canaries.clone());
    let mut trainer = Trainer::new(config, corpus, None)?;
    if let Some(path) = canaries {
        trainer.set_canaries_from_pool(load_canaries(&path)?);
    }
    Ok(trainer)
}

/// Files `start` created, removed again if the start fails before its `train.start` record.
struct StartCleanup {
    run_dir: PathBuf,
    created_run_dir: bool,
    lineage_dir: PathBuf,
    created_lineage: bool,
    armed: bool,
}

impl Drop for StartCleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.created_lineage {
            let _ = std::fs::remove_dir_all(&self.lineage_dir);
        }
        if self.created_run_dir {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        } else {
            for name in ["config.toml", "policy.toml", "run.json"] {
                let _ = std::fs::remove_file(self.run_dir.join(name));
            }
            let _ = std::fs::remove_dir_all(self.run_dir.join("checkpoints"));
        }
    }
}

/// Whether `dir` holds a lineage (segments or a checkpoint file).
fn holds_lineage(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// `warden train CONFIG --out RUN_DIR`: a new run, recorded in `lineage_dir` (default
/// `RUN_DIR/lineage`). Nothing is written until the key, the config and the corpus checked
/// out; a failure before the `train.start` record removes what was written.
pub fn start(
    config_path: &Path,
    run_dir: &Path,
    key: Arc<SigningKey>,
    trust: &TrustStore,
    lineage_dir: Option<&Path>,
    progress: Progress<'_>,
) -> Result<RunSummary, TrainError> {
    check_signing_key(&key, trust)?;
    let text = std::fs::read_to_string(config_path).map_err(|e| io_err(config_path, e))?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let mut config = TrainConfig::parse(&text, &config_path.display().to_string(), base)?;
    // The run directory keeps absolute paths, so `resume` works from any working directory.
    config.corpus = config
        .corpus
        .canonicalize()
        .map_err(|e| io_err(&config.corpus, e))?;
    if let Some(eval) = &mut config.eval {
        if let Some(path) = &eval.canaries {
            eval.canaries = Some(path.canonicalize().map_err(|e| io_err(path, e))?);
        }
    }
    if run_dir.join("config.toml").exists() || holds_lineage(&run_dir.join("lineage")) {
        return Err(TrainError::RunExists {
            run_dir: run_dir.to_path_buf(),
        });
    }
    let mut trainer = prepare_trainer(config, trust)?;
    let config_toml = trainer.config.to_toml()?;
    let policy_text = toml::to_string(&trainer.config.policy)
        .map_err(|e| TrainError::Internal(format!("policy encoding: {e}")))?;

    // Everything checked: write the run.
    let created_run_dir = !run_dir.exists();
    std::fs::create_dir_all(run_dir).map_err(|e| io_err(run_dir, e))?;
    let mut cleanup = StartCleanup {
        run_dir: run_dir.to_path_buf(),
        created_run_dir,
        lineage_dir: PathBuf::new(),
        created_lineage: false,
        armed: true,
    };
    let run_dir = run_dir.canonicalize().map_err(|e| io_err(run_dir, e))?;
    cleanup.run_dir = run_dir.clone();
    let lineage_dir = lineage_dir.map_or_else(|| run_dir.join("lineage"), Path::to_path_buf);
    // Only a lineage directory this start creates is removed on failure, never one given.
    cleanup.created_lineage = !lineage_dir.exists();
    cleanup.lineage_dir = lineage_dir.clone();
    trainer.set_run_dir(Some(run_dir.clone()));
    atomic_write(&run_dir.join("config.toml"), config_toml.as_bytes())?;
    atomic_write(&run_dir.join("policy.toml"), policy_text.as_bytes())?;
    atomic_write(
        &run_dir.join("run.json"),
        json!({"lineage": lineage_dir}).to_string().as_bytes(),
    )?;
    let lineage = Lineage::open_or_create(
        &lineage_dir,
        store_options(
            "warden.local/lineage",
            trainer.config.lineage.cadence,
            trust,
        ),
    )
    .map_err(|e| TrainError::lineage(format!("opening {}", lineage_dir.display()), e))?;
    let mut sink = LineageSink {
        lineage: &lineage,
        key: key.clone(),
    };
    // The initial state is retained before the record that names it.
    let initial = trainer.retain_checkpoint()?;
    let c = &trainer.config;
    let payload = json!({
        "config_digest": hex::encode(trainer.config_digest()),
        "config": config_toml,
        "seed": c.seed,
        "steps": c.steps,
        "batch_size": c.batch_size,
        "model": c.model,
        "parameters": c.model.n_parameters(),
        "corpus": {
            "dir": c.corpus,
            "declaration_digest": hex::encode(trainer.corpus().declaration_digest()),
            "root": hex::encode(trainer.corpus().root()),
        },
        "initial_param_digest": hex::encode(trainer.model().digest()?),
        "initial_checkpoint": initial.to_json(),
        "build": crate::replay::build_identity(),
        "run_dir": run_dir,
    });
    let version = trainer.policy().version().to_string();
    sink.append("train.start", payload, &version)?;
    // The run exists from its start record on: a later failure leaves it to `resume`.
    cleanup.armed = false;
    sink.checkpoint()?;
    trainer.checkpoint()?;
    drive(
        &mut trainer,
        &mut sink,
        &run_dir,
        &lineage_dir,
        &key,
        progress,
    )
}

/// The canonical digest of a policy: SHA-256 of its canonical TOML (formatting and comments
/// of the file it came from do not matter).
pub fn policy_digest(policy: &TrainingPolicy) -> Result<String, TrainError> {
    let text = toml::to_string(policy)
        .map_err(|e| TrainError::Internal(format!("policy encoding: {e}")))?;
    Ok(hex::encode(Sha256::digest(text.as_bytes())))
}

/// What the lineage says about one run: its records from its `train.start` on.
struct RunHistory {
    start_seq: u64,
    start: Value,
    /// Policy version label → (canonical policy digest, index of the record that named it).
    labels: BTreeMap<String, (String, u64)>,
    /// (sha256 of the text, text) of the policy the latest `train.transition` switched to.
    last_transition_policy: Option<(String, String)>,
    last_recorded_iteration: Option<u64>,
    /// The latest `train.complete` (index, payload), unless a transition followed it.
    complete: Option<(u64, Value)>,
}

fn policy_of_config(text: &str, seq: u64) -> Result<TrainingPolicy, TrainError> {
    let bad = |reason: String| TrainError::Syntax {
        origin: format!("lineage record {seq} (train.start config)"),
        reason,
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    table
        .get("policy")
        .cloned()
        .ok_or_else(|| bad("no [policy] table".into()))?
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.to_string()))
}

impl RunHistory {
    /// Reads the records of the run whose `train.start` names `run_dir` (the latest such start).
    fn read(lineage: &Lineage, run_dir: &Path) -> Result<RunHistory, TrainError> {
        let records = lineage
            .read_range(0..lineage.len())
            .map_err(|e| TrainError::lineage("reading the run's records", e))?;
        let wanted = json!(run_dir);
        let start_at = records
            .iter()
            .rposition(|r| r.record.kind == "train.start" && r.record.payload["run_dir"] == wanted)
            .ok_or_else(|| TrainError::NoStart {
                run_dir: run_dir.to_path_buf(),
                lineage: lineage.dir().to_path_buf(),
            })?;
        let start_record = &records[start_at];
        let mut history = RunHistory {
            start_seq: start_record.record.seq,
            start: start_record.record.payload.clone(),
            labels: BTreeMap::new(),
            last_transition_policy: None,
            last_recorded_iteration: None,
            complete: None,
        };
        let start_policy = policy_of_config(
            history.start["config"].as_str().unwrap_or_default(),
            history.start_seq,
        )?;
        history.labels.insert(
            start_policy.version.clone(),
            (policy_digest(&start_policy)?, history.start_seq),
        );
        for r in &records[start_at + 1..] {
            history.observe(r)?;
        }
        Ok(history)
    }

    fn observe(&mut self, r: &SignedRecord) -> Result<(), TrainError> {
        let payload = &r.record.payload;
        match r.record.kind.as_str() {
            "train.iteration" | "train.failure" => {
                if let Some(i) = payload["iteration"].as_u64() {
                    self.last_recorded_iteration = Some(i);
                }
            }
            "train.complete" => self.complete = Some((r.record.seq, payload.clone())),
            "train.transition" => {
                self.complete = None;
                if let (Some(digest), Some(text)) = (
                    payload["policy_digest"].as_str(),
                    payload["policy_text"].as_str(),
                ) {
                    if hex::encode(Sha256::digest(text.as_bytes())) != digest {
                        return Err(TrainError::Config(format!(
                            "lineage record {}: train.transition policy text does not match its digest",
                            r.record.seq
                        )));
                    }
                    let origin = format!("lineage record {} (train.transition)", r.record.seq);
                    let policy = TrainingPolicy::parse(text, &origin)?;
                    self.labels
                        .entry(policy.version.clone())
                        .or_insert((policy_digest(&policy)?, r.record.seq));
                    self.last_transition_policy = Some((digest.to_string(), text.to_string()));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Refuses `policy` if its version label already names a different policy in this run.
    fn check_label(&self, policy: &TrainingPolicy, path: &Path) -> Result<(), TrainError> {
        let found = policy_digest(policy)?;
        match self.labels.get(&policy.version) {
            Some((recorded, seq)) if *recorded != found => Err(TrainError::PolicyLabelReused {
                path: path.to_path_buf(),
                label: policy.version.clone(),
                recorded: recorded.clone(),
                found,
                seq: *seq,
            }),
            _ => Ok(()),
        }
    }
}

/// `warden train resume RUN_DIR [--policy NEW]`: continues from the latest checkpoint (also
/// after a kill at any moment), recording a versioned `train.transition`. Refuses, before
/// writing anything, an untrusted key, a corpus or config that is not the run's, and a policy
/// whose version label already names another policy in this run; a run that already completed
/// the requested steps is reported and left alone.
pub fn resume(
    run_dir: &Path,
    new_policy: Option<&Path>,
    key: Arc<SigningKey>,
    trust: &TrustStore,
    steps: Option<u64>,
    progress: Progress<'_>,
) -> Result<Resumed, TrainError> {
    check_signing_key(&key, trust)?;
    let run_dir = &run_dir.canonicalize().map_err(|e| io_err(run_dir, e))?;
    let config_path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&config_path).map_err(|e| io_err(&config_path, e))?;
    let config = TrainConfig::parse(&text, &config_path.display().to_string(), run_dir)?;
    let run_json = run_dir.join("run.json");
    let run_info: Value = serde_json::from_slice(&crate::io::read(&run_json)?).map_err(|e| {
        io_err(
            &run_json,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    let lineage_dir = run_info["lineage"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| TrainError::field(run_json.display().to_string(), "no lineage path"))?;
    let lineage = Lineage::open_with(
        &lineage_dir,
        Some(store_options(
            "warden.local/lineage",
            config.lineage.cadence,
            trust,
        )),
    )
    .map_err(|e| TrainError::lineage(format!("opening {}", lineage_dir.display()), e))?;
    let history = RunHistory::read(&lineage, run_dir)?;
    let target = steps.unwrap_or(config.steps);
    if let Some((seq, payload)) = &history.complete {
        let iterations = payload["iterations"].as_u64().unwrap_or(0);
        if target <= iterations {
            return Ok(Resumed::AlreadyComplete(CompletedRun {
                run_dir: run_dir.clone(),
                iterations,
                model_sha256: payload["model_sha256"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                seq: *seq,
            }));
        }
    }
    let policy_path = run_dir.join("policy.toml");
    let mut current_text =
        std::fs::read_to_string(&policy_path).map_err(|e| io_err(&policy_path, e))?;
    // A kill between a `train.transition` record and the replacement of policy.toml leaves the
    // old file behind: the lineage is authoritative, so finish the switch from the record
    // (written below, once every check passed).
    let mut finish_switch = false;
    if let Some((digest, text)) = &history.last_transition_policy {
        if hex::encode(Sha256::digest(current_text.as_bytes())) != *digest {
            current_text = text.clone();
            finish_switch = true;
        }
    }
    let current = TrainingPolicy::parse(&current_text, &policy_path.display().to_string())?;
    let mut trainer = prepare_trainer(config, trust)?;
    let recorded = history.start["corpus"]["declaration_digest"]
        .as_str()
        .unwrap_or("(none)");
    let found = hex::encode(trainer.corpus().declaration_digest());
    if found != recorded {
        return Err(TrainError::CorpusChanged {
            corpus: trainer.config.corpus.clone(),
            recorded: recorded.to_string(),
            found,
            seq: history.start_seq,
        });
    }
    let recorded = history.start["config_digest"].as_str().unwrap_or("(none)");
    let found = hex::encode(trainer.config_digest());
    if found != recorded {
        return Err(TrainError::ConfigChanged {
            path: config_path,
            recorded: recorded.to_string(),
            found,
            seq: history.start_seq,
        });
    }
    trainer.set_run_dir(Some(run_dir.clone()));
    // The policy in force first (it decides which detectors exist), then their saved state.
    if trainer.policy().source != current {
        trainer.set_policy(current.clone())?;
    }
    let from_iteration = trainer.restore_latest(run_dir)?;
    let old_version = trainer.policy().version().to_string();
    let mut next_policy = None;
    if let Some(path) = new_policy {
        let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
        let policy = TrainingPolicy::parse(&text, &path.display().to_string())?;
        history.check_label(&policy, path)?;
        // Resolving checks it against the model before anything is recorded.
        policy.resolve(&trainer.config.model.regions())?;
        next_policy = Some((policy, text));
    }
    trainer.config.steps = target;

    // Every check passed: from here on the run is written.
    if finish_switch {
        atomic_write(&policy_path, current_text.as_bytes())?;
    }
    let repaired = lineage.open_report().repaired.len();
    let last = history.last_recorded_iteration;
    let mut sink = LineageSink {
        lineage: &lineage,
        key: key.clone(),
    };
    let mut payload = json!({
        "reason": if next_policy.is_some() { "policy-change" } else { "resume" },
        "resumed_from_iteration": from_iteration,
        "last_recorded_iteration": last,
        "replayed_iterations": last.map_or(0, |l| l.saturating_sub(from_iteration)),
        "param_digest": hex::encode(trainer.model().digest()?),
        "torn_tail_repaired": repaired,
        "policy_from": old_version,
    });
    if let Some((policy, text)) = &next_policy {
        trainer.set_policy(policy.clone())?;
        payload["policy_to"] = json!(policy.version);
        payload["policy_digest"] = json!(hex::encode(Sha256::digest(text.as_bytes())));
        payload["policy_text"] = json!(text);
    }
    let version = trainer.policy().version().to_string();
    sink.append("train.transition", payload, &version)?;
    sink.checkpoint()?;
    if let Some((_, text)) = &next_policy {
        atomic_write(&policy_path, text.as_bytes())?;
    }
    drive(
        &mut trainer,
        &mut sink,
        run_dir,
        &lineage_dir,
        &key,
        progress,
    )
    .map(|summary| Resumed::Trained(Box::new(summary)))
}

/// Trains `config` into `run_dir`, appending to an existing lineage (the demo's shared one);
/// `canaries` (a `canaries.json`) feeds the canary-exposure probe.
pub fn train_into_lineage_with_canaries(
    config: TrainConfig,
    corpus: Arc<dyn AdmissionIndex>,
    canaries: Option<&Path>,
    run_dir: &Path,
    lineage: &Lineage,
    authority: Authority<'_>,
    progress: Progress<'_>,
) -> Result<RunSummary, TrainError> {
    let Authority { key, trust } = authority;
    check_signing_key(&key, trust)?;
    std::fs::create_dir_all(run_dir).map_err(|e| io_err(run_dir, e))?;
    let mut trainer = Trainer::new(config, corpus, Some(run_dir.to_path_buf()))?;
    if let Some(path) = canaries {
        trainer.set_canaries_from_pool(load_canaries(path)?);
    }
    let mut sink = LineageSink {
        lineage,
        key: key.clone(),
    };
    let version = trainer.policy().version().to_string();
    let initial = trainer.retain_checkpoint()?;
    let run_dir_abs = run_dir.canonicalize().map_err(|e| io_err(run_dir, e))?;
    sink.append(
        "train.start",
        json!({
            "config_digest": hex::encode(trainer.config_digest()),
            "config": trainer.config.to_toml()?,
            "seed": trainer.config.seed,
            "parameters": trainer.config.model.n_parameters(),
            "corpus": {
                "declaration_digest": hex::encode(trainer.corpus().declaration_digest()),
                "root": hex::encode(trainer.corpus().root()),
            },
            "initial_param_digest": hex::encode(trainer.model().digest()?),
            "initial_checkpoint": initial.to_json(),
            "build": crate::replay::build_identity(),
            "run_dir": run_dir_abs,
        }),
        &version,
    )?;
    trainer.checkpoint()?;
    let dir = lineage.dir().to_path_buf();
    drive(&mut trainer, &mut sink, run_dir, &dir, &key, progress)
}

fn drive(
    trainer: &mut Trainer,
    sink: &mut LineageSink<'_>,
    run_dir: &Path,
    lineage_dir: &Path,
    key: &Arc<SigningKey>,
    progress: Progress<'_>,
) -> Result<RunSummary, TrainError> {
    let started = Instant::now();
    while trainer.iteration() < trainer.config.steps {
        match trainer.iterate(sink) {
            Ok(outcome) => progress(trainer, &outcome),
            Err(err) => {
                let _ = sink.lineage.checkpoint();
                return Err(err);
            }
        }
    }
    // A run checkpoint at the last iteration, so extending the run (`resume --steps`) starts
    // here instead of replaying the iterations after the last periodic checkpoint.
    if !trainer
        .iteration()
        .is_multiple_of(trainer.policy().source.checkpoint_every)
    {
        trainer.checkpoint()?;
    }
    // Seal everything, then write the model and the manifest naming that lineage point.
    sink.checkpoint()?;
    let model_bytes = trainer.model_bytes()?;
    let model_sha256: [u8; 32] = Sha256::digest(&model_bytes).into();
    atomic_write(&run_dir.join("model.safetensors"), &model_bytes)?;
    let (size, root) = sink
        .lineage
        .latest_checkpoint()
        .map_err(|e| TrainError::lineage("reading the latest checkpoint", e))?
        .unwrap_or((sink.lineage.len(), [0u8; 32]));
    let point = LineagePoint {
        dir: lineage_dir.display().to_string(),
        origin: sink.lineage.origin().to_string(),
        size,
        root,
    };
    let statement = manifest::statement(trainer, &model_bytes, &point)?;
    let envelope = warden_attest::sign_statement(&statement, key);
    let manifest_path = run_dir.join("manifest.intoto.json");
    let envelope_text = envelope.to_json_pretty();
    atomic_write(&manifest_path, envelope_text.as_bytes())?;
    sink.append(
        "train.complete",
        json!({
            "iterations": trainer.iteration(),
            "model_sha256": hex::encode(model_sha256),
            "param_digest": hex::encode(trainer.model().digest()?),
            "manifest_sha256": hex::encode(Sha256::digest(envelope_text.as_bytes())),
            "gate_counts": trainer.counts(),
            "seconds": started.elapsed().as_secs_f64(),
        }),
        trainer.policy().version(),
    )?;
    sink.checkpoint()?;
    Ok(RunSummary {
        run_dir: run_dir.to_path_buf(),
        lineage_dir: lineage_dir.to_path_buf(),
        iterations: trainer.iteration(),
        counts: trainer.counts().clone(),
        final_loss: trainer.last_loss(),
        last_evaluation: trainer.last_evaluation().cloned(),
        model_sha256,
        manifest: manifest_path,
        policy_versions: trainer.policy_versions().to_vec(),
    })
}
