//! RFC 6962 inclusion proofs for a sampled subset of the trained samples (`--prove N`).
//!
//! The subset is drawn from SHA-256 over the lineage's Merkle root, so whoever wrote the
//! lineage cannot know in advance which samples an auditor will ask to see proven. Each proof
//! goes from the sample hash to the signed corpus root (sorted tree) and to its source's
//! signed root, and is verified here against the roots of the verified declaration.

use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use warden_corpus::prove::{prove, verify_proof, Proof};
use warden_corpus::AdmittedCorpus;
use warden_keys::TrustStore;
use warden_lineage::SignedRecord;

use crate::{lineage_dir_of, AuditError, AuditInputs};

/// One trained sample with its proof.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleProof {
    /// The `train.iteration` record and the sample's index in its batch.
    pub seq: u64,
    pub iteration: u64,
    pub sample: usize,
    pub hash: String,
    pub proof: Option<Proof>,
    /// Why the sample is not proven included (`None`: the proof verifies).
    pub problem: Option<String>,
}

/// Proves `n` trained samples of the run (distinct draws, chosen by the lineage root).
pub fn prove_trained_samples(
    inputs: &AuditInputs,
    trust: &TrustStore,
    n: usize,
) -> Result<Vec<SampleProof>, AuditError> {
    let lineage_dir = lineage_dir_of(&inputs.run_dir, inputs.lineage_dir.as_deref())?;
    let records = warden_store::read_all(&lineage_dir).map_err(|e| AuditError::Records {
        path: lineage_dir.clone(),
        reason: e.to_string(),
    })?;
    let start = crate::checks::find_start(&records, &inputs.run_dir, &lineage_dir)?;
    let start_record = &records[start];
    let seq = start_record.record.seq;
    let payload = &start_record.record.payload;
    let corpus_dir = match payload["corpus"]["dir"].as_str() {
        Some(dir) => PathBuf::from(dir),
        None => {
            let config: warden_train::config::TrainConfig =
                toml::from_str(payload["config"].as_str().unwrap_or_default()).map_err(|e| {
                    AuditError::Start {
                        seq,
                        reason: format!("config: {e}"),
                    }
                })?;
            config.corpus
        }
    };
    let corpus = AdmittedCorpus::load(&corpus_dir, trust).map_err(|e| AuditError::Start {
        seq,
        reason: format!("corpus {}: {e}", corpus_dir.display()),
    })?;
    // A proof against another declaration than the one the run names proves nothing about
    // the run: every proof then carries the mismatch as its problem.
    let declared = hex::encode(corpus.declaration_digest());
    let wrong_corpus =
        (payload["corpus"]["declaration_digest"].as_str() != Some(declared.as_str())).then(|| {
            format!(
                "the run names declaration {} but {} holds signed declaration {declared}",
                payload["corpus"]["declaration_digest"],
                corpus_dir.display()
            )
        });
    // Every admitted draw of the run: (seq, iteration, index in batch, hash).
    let mut trained = Vec::new();
    for record in records[start + 1..]
        .iter()
        .take_while(|r| r.record.kind != "train.start")
        .filter(|r| r.record.kind == "train.iteration")
    {
        let p = &record.record.payload;
        let iteration = p["iteration"].as_u64().unwrap_or(0);
        for (i, s) in p["batch"]["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if s["status"] == "admitted" {
                let hash = s["hash"].as_str().unwrap_or_default().to_string();
                trained.push((record.record.seq, iteration, i, hash));
            }
        }
    }
    let leaves: Vec<_> = records.iter().map(SignedRecord::leaf_hash).collect();
    let seed = warden_merkle::root(&leaves);
    let mut chosen = Vec::new();
    let mut counter = 0u64;
    while chosen.len() < n.min(trained.len()) {
        let mut hasher = Sha256::new();
        hasher.update(b"warden/audit-sample/v1\n");
        hasher.update(seed);
        hasher.update(counter.to_le_bytes());
        counter += 1;
        let digest = hasher.finalize();
        let mut word = [0u8; 8];
        word.copy_from_slice(&digest[..8]);
        let pick = (u64::from_le_bytes(word) % trained.len() as u64) as usize;
        if !chosen.contains(&pick) {
            chosen.push(pick);
        }
    }
    chosen.sort_unstable();
    Ok(chosen
        .into_iter()
        .map(|pick| {
            let (seq, iteration, sample, hash) = trained[pick].clone();
            let (proof, problem) = match &wrong_corpus {
                Some(problem) => (None, Some(problem.clone())),
                None => prove_one(&corpus, &hash),
            };
            SampleProof {
                seq,
                iteration,
                sample,
                hash,
                proof,
                problem,
            }
        })
        .collect())
}

fn prove_one(corpus: &AdmittedCorpus, hash: &str) -> (Option<Proof>, Option<String>) {
    let sample = match warden_corpus::parse_hash(hash) {
        Ok(sample) => sample,
        Err(e) => return (None, Some(e.to_string())),
    };
    let proof = match prove(corpus, &sample) {
        Ok(proof) => proof,
        Err(e) => return (None, Some(e.to_string())),
    };
    let problem = verify_sample_proof(corpus, &proof).err();
    (Some(proof), problem)
}

/// Checks that `proof` proves its sample *included* under the roots of the verified
/// declaration `corpus`: the sorted corpus root and the signed root of the source the proof
/// names. Whatever the proof itself claims as roots is not trusted. An absence proof, a
/// source without a signed root (refused at admission) or any path that does not hash to the
/// signed roots is an error naming why.
pub fn verify_sample_proof(corpus: &AdmittedCorpus, proof: &Proof) -> Result<(), String> {
    match proof {
        Proof::Absence { .. } => {
            verify_proof(proof, &corpus.root(), None).map_err(|e| e.to_string())?;
            Err("the signed corpus proves it absent".to_string())
        }
        Proof::Inclusion { source, .. } => {
            let source_root = corpus
                .sources()
                .iter()
                .find(|s| s.id == source.source && s.admitted)
                .and_then(|s| s.root)
                .ok_or_else(|| {
                    format!(
                        "source `{}` has no signed root in the declaration (not an admitted source)",
                        source.source
                    )
                })?;
            verify_proof(proof, &corpus.root(), Some(&source_root)).map_err(|e| e.to_string())
        }
    }
}
