//! The governance manifest: an in-toto Statement v1 about `model.safetensors`, signed by the
//! training authority in a DSSE envelope, so tools outside Warden can verify it.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use warden_attest::{Statement, Subject};

use crate::trainer::Trainer;
use crate::TrainError;

/// The predicate type of Warden training manifests.
pub const PREDICATE_TYPE: &str = "https://warden.dev/attestations/training-manifest/v1";

/// Where the lineage stood when the manifest was written.
#[derive(Debug, Clone)]
pub struct LineagePoint {
    pub dir: String,
    pub origin: String,
    pub size: u64,
    pub root: [u8; 32],
}

/// Builds the statement for a finished (or halted) run.
pub fn statement(
    trainer: &Trainer,
    model_bytes: &[u8],
    lineage: &LineagePoint,
) -> Result<Statement, TrainError> {
    let model_sha: [u8; 32] = Sha256::digest(model_bytes).into();
    let mut weights = BTreeMap::new();
    for (name, var) in trainer.model().vars() {
        let values = var.flatten_all()?.to_vec1::<f32>()?;
        let mut hasher = Sha256::new();
        for v in values {
            hasher.update(v.to_le_bytes());
        }
        weights.insert(name.clone(), hex::encode(hasher.finalize()));
    }
    let corpus = trainer.corpus();
    let policy = trainer.policy();
    let mut classes: BTreeMap<String, Value> = BTreeMap::new();
    for source in corpus.sources() {
        if !source.admitted {
            continue;
        }
        let depth = policy.depth_for(&source.class, &source.depth);
        let entry = classes.entry(source.class.clone()).or_insert_with(|| {
            json!({
                "depth": depth,
                "regions": depth.and_then(|d| policy.depths.get(d)).map(|d| d.regions.clone()),
                "max_norm": depth.and_then(|d| policy.depths.get(d)).and_then(|d| d.max_norm),
                "excluded_by_policy": policy.class_excluded(&source.class, corpus.excluded_classes()),
                "sources": [],
            })
        });
        if let Some(list) = entry["sources"].as_array_mut() {
            list.push(
                json!({"id": source.id, "license": source.license, "held_out": source.held_out}),
            );
        }
    }
    let mut excluded: Vec<String> = corpus.excluded_classes().to_vec();
    excluded.extend(policy.source.excluded_classes.iter().cloned());
    excluded.sort();
    excluded.dedup();
    let predicate = json!({
        "model": {
            "config": trainer.config.model,
            "parameters": trainer.config.model.n_parameters(),
            "parameter_digest": hex::encode(trainer.model().digest()?),
            "weight_digests": weights,
        },
        "corpus": {
            "declaration_digest": hex::encode(corpus.declaration_digest()),
            "root": hex::encode(corpus.root()),
        },
        "classes": classes,
        "excluded_classes": excluded,
        "memorization": {
            "rule": policy.source.memorization,
            "detectors": trainer.detector_settings(),
        },
        "policy": {
            "versions": trainer.policy_versions(),
            "current": policy.source,
        },
        "training": {
            "seed": trainer.config.seed,
            "iterations": trainer.iteration(),
            "config_digest": hex::encode(trainer.config_digest()),
            "gate_counts": trainer.counts(),
        },
        "lineage": {
            "dir": lineage.dir,
            "origin": lineage.origin,
            "size": lineage.size,
            "root": hex::encode(lineage.root),
        },
    });
    Ok(Statement::new(
        vec![Subject::sha256("model.safetensors", &model_sha)],
        PREDICATE_TYPE,
        predicate,
    ))
}
