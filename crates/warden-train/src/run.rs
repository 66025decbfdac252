//! A training run on disk: `RUN_DIR/{config.toml, policy.toml, run.json, checkpoints/, lineage/,
//! model.safetensors, manifest.intoto.json}`, started, resumed and finished here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use sha2::{Digest as _, Sha256};
use warden_keys::{SigningKey, TrustStore};
use warden_store::{Cadence, Lineage, StoreOptions};

use crate::admitted::{load_canaries, Admitted};
use crate::config::TrainConfig;
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
    pub model_sha256: [u8; 32],
    pub manifest: PathBuf,
    pub policy_versions: Vec<String>,
}

fn io_err(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn store_err(e: warden_store::StoreError) -> TrainError {
    TrainError::Lineage(e.to_string())
}

/// Checkpoints are driven by the policy's cadence (`RecordSink::checkpoint`), not by the store.
/// Every record is signed, so the tail a kill leaves is authenticated through `trust` on resume.
fn store_options(origin: &str, trust: &TrustStore) -> StoreOptions {
    StoreOptions::new(origin)
        .with_cadence(Cadence::SignedWindow {
            records: 1 << 20,
            millis: 24 * 3_600_000,
        })
        .with_trust(Arc::new(trust.clone()))
}

fn prepare_trainer(
    config: TrainConfig,
    run_dir: &Path,
    trust: &TrustStore,
) -> Result<Trainer, TrainError> {
    let corpus: Arc<dyn AdmissionIndex> = Arc::new(Admitted::load(&config.corpus, trust)?);
    let canaries = config.eval.as_ref().and_then(|e| e.canaries.clone());
    let mut trainer = Trainer::new(config, corpus, Some(run_dir.to_path_buf()))?;
    if let Some(path) = canaries {
        trainer.set_canaries_from_pool(load_canaries(&path)?);
    }
    Ok(trainer)
}

/// `warden train CONFIG --out RUN_DIR`: a new run, recorded in `lineage_dir` (default
/// `RUN_DIR/lineage`).
pub fn start(
    config_path: &Path,
    run_dir: &Path,
    key: Arc<SigningKey>,
    trust: &TrustStore,
    lineage_dir: Option<&Path>,
    progress: Progress<'_>,
) -> Result<RunSummary, TrainError> {
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
    if run_dir.join("config.toml").exists() {
        return Err(TrainError::Config(format!(
            "{}: already holds a run; use `warden train resume {}`",
            run_dir.display(),
            run_dir.display()
        )));
    }
    std::fs::create_dir_all(run_dir).map_err(|e| io_err(run_dir, e))?;
    let run_dir = run_dir.canonicalize().map_err(|e| io_err(run_dir, e))?;
    let lineage_dir = lineage_dir.map_or_else(|| run_dir.join("lineage"), Path::to_path_buf);
    atomic_write(&run_dir.join("config.toml"), config.to_toml()?.as_bytes())?;
    let policy_text = toml::to_string(&config.policy)
        .map_err(|e| TrainError::Internal(format!("policy encoding: {e}")))?;
    atomic_write(&run_dir.join("policy.toml"), policy_text.as_bytes())?;
    atomic_write(
        &run_dir.join("run.json"),
        json!({"lineage": lineage_dir}).to_string().as_bytes(),
    )?;
    let mut trainer = prepare_trainer(config, &run_dir, trust)?;
    let lineage =
        Lineage::open_or_create(&lineage_dir, store_options("warden.local/lineage", trust))
            .map_err(store_err)?;
    let mut sink = LineageSink {
        lineage: &lineage,
        key: key.clone(),
    };
    let c = &trainer.config;
    let payload = json!({
        "config_digest": hex::encode(trainer.config_digest()),
        "config": c.to_toml()?,
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
        "run_dir": run_dir,
    });
    let version = trainer.policy().version().to_string();
    sink.append("train.start", payload, &version)?;
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

/// The iteration of the last `train.iteration` / `train.failure` record in a lineage, if any.
fn last_recorded_iteration(lineage: &Lineage) -> Result<Option<u64>, TrainError> {
    let records = lineage.read_range(0..lineage.len()).map_err(store_err)?;
    Ok(records
        .iter()
        .rev()
        .find(|r| r.record.kind == "train.iteration" || r.record.kind == "train.failure")
        .and_then(|r| r.record.payload["iteration"].as_u64()))
}

/// The (digest, text) of the policy the latest `train.transition` switched to, if any, checked
/// against each other.
fn last_transition_policy(lineage: &Lineage) -> Result<Option<(String, String)>, TrainError> {
    let records = lineage.read_range(0..lineage.len()).map_err(store_err)?;
    let Some(record) = records.iter().rev().find(|r| {
        r.record.kind == "train.transition" && r.record.payload.get("policy_text").is_some()
    }) else {
        return Ok(None);
    };
    let payload = &record.record.payload;
    let (Some(digest), Some(text)) = (
        payload["policy_digest"].as_str(),
        payload["policy_text"].as_str(),
    ) else {
        return Ok(None);
    };
    if hex::encode(Sha256::digest(text.as_bytes())) != digest {
        return Err(TrainError::Config(format!(
            "lineage record {}: train.transition policy text does not match its digest",
            record.record.seq
        )));
    }
    Ok(Some((digest.to_string(), text.to_string())))
}

/// `warden train resume RUN_DIR [--policy NEW]`: continues from the latest checkpoint (also
/// after a kill at any moment), recording a versioned `train.transition`.
pub fn resume(
    run_dir: &Path,
    new_policy: Option<&Path>,
    key: Arc<SigningKey>,
    trust: &TrustStore,
    steps: Option<u64>,
    progress: Progress<'_>,
) -> Result<RunSummary, TrainError> {
    let config_path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&config_path).map_err(|e| io_err(&config_path, e))?;
    let config = TrainConfig::parse(&text, &config_path.display().to_string(), run_dir)?;
    let run_json = run_dir.join("run.json");
    let run_info: serde_json::Value = serde_json::from_slice(&crate::io::read(&run_json)?)
        .map_err(|e| io_err(&run_json, std::io::Error::other(e)))?;
    let lineage_dir = run_info["lineage"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| TrainError::Config(format!("{}: no lineage path", run_json.display())))?;
    let policy_path = run_dir.join("policy.toml");
    let lineage =
        Lineage::open_or_create(&lineage_dir, store_options("warden.local/lineage", trust))
            .map_err(store_err)?;
    let mut current_text =
        std::fs::read_to_string(&policy_path).map_err(|e| io_err(&policy_path, e))?;
    // A kill between a `train.transition` record and the replacement of policy.toml leaves the
    // old file behind: the lineage is authoritative, so finish the switch from the record.
    if let Some(recorded) = last_transition_policy(&lineage)? {
        if hex::encode(Sha256::digest(current_text.as_bytes())) != recorded.0 {
            atomic_write(&policy_path, recorded.1.as_bytes())?;
            current_text = recorded.1;
        }
    }
    let current = TrainingPolicy::parse(&current_text, &policy_path.display().to_string())?;
    let mut trainer = prepare_trainer(config, run_dir, trust)?;
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
        if policy.version == old_version && policy != current {
            return Err(TrainError::Config(format!(
                "{}: changes the policy but keeps version {old_version:?}; give it a new version",
                path.display()
            )));
        }
        next_policy = Some((policy, text));
    }
    if let Some(steps) = steps {
        trainer.config.steps = steps;
    }
    let repaired = lineage.open_report().repaired.len();
    let last = last_recorded_iteration(&lineage)?;
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
}

/// Trains `config` into `run_dir`, appending to an existing lineage (the demo's shared one);
/// `canaries` (a `canaries.json`) feeds the canary-exposure probe.
pub fn train_into_lineage_with_canaries(
    config: TrainConfig,
    corpus: Arc<dyn AdmissionIndex>,
    canaries: Option<&Path>,
    run_dir: &Path,
    lineage: &Lineage,
    key: Arc<SigningKey>,
    progress: Progress<'_>,
) -> Result<RunSummary, TrainError> {
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
    // Seal everything, then write the model and the manifest naming that lineage point.
    sink.checkpoint()?;
    let model_bytes = trainer.model_bytes()?;
    let model_sha256: [u8; 32] = Sha256::digest(&model_bytes).into();
    atomic_write(&run_dir.join("model.safetensors"), &model_bytes)?;
    let (size, root) = sink
        .lineage
        .latest_checkpoint()
        .map_err(store_err)?
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
        model_sha256,
        manifest: manifest_path,
        policy_versions: trainer.policy_versions().to_vec(),
    })
}
