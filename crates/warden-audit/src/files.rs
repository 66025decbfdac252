//! Check 7 on the run's files: the model file, the signed manifest and the retained
//! checkpoints must agree with the parameter digests the lineage records.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use warden_keys::{Role, TrustStore};
use warden_lineage::SignedRecord;

use crate::{Check, Finding};

fn finding(seq: Option<u64>, field: &str, message: String) -> Finding {
    Finding {
        check: Check::Outcome,
        seq,
        iteration: None,
        field: field.to_string(),
        message,
    }
}

/// The parameter digest of a safetensors file's tensors, optionally only those under `prefix`
/// (with the prefix removed): the same digest the trainer records (`warden_train::io`).
fn file_param_digest(path: &Path, prefix: Option<&str>) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (tensors, _) = warden_train::io::read_safetensors(&bytes, &path.display().to_string())
        .map_err(|e| e.to_string())?;
    let tensors: BTreeMap<_, _> = match prefix {
        None => tensors,
        Some(prefix) => tensors
            .into_iter()
            .filter_map(|(name, t)| name.strip_prefix(prefix).map(|n| (n.to_string(), t)))
            .collect(),
    };
    warden_train::io::parameter_digest(&tensors)
        .map(hex::encode)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Outcome checks on files. Returns how many files it examined.
#[allow(clippy::too_many_arguments)]
pub(crate) fn outcome(
    run_dir: &Path,
    records: &[SignedRecord],
    complete: Option<&(u64, Value)>,
    last_digest: &str,
    recorded: &BTreeMap<u64, (u64, String)>,
    start: &Value,
    trust: &TrustStore,
    halted: Option<(u64, u64)>,
    findings: &mut Vec<Finding>,
) -> u64 {
    let mut examined = 0;
    examined += checkpoints(run_dir, recorded, findings);
    let Some((seq, done)) = complete else {
        let why = match halted {
            Some((seq, it)) => format!(" (it halted at iteration {it}, record {seq})"),
            None => String::new(),
        };
        findings.push(finding(
            None,
            "train.complete",
            format!(
                "the run has no train.complete record: it produced no final model to prove{why}"
            ),
        ));
        return examined;
    };
    let seq = Some(*seq);
    // The model file.
    examined += 1;
    let model_path = run_dir.join("model.safetensors");
    let model_sha = match std::fs::read(&model_path) {
        Ok(bytes) => hex::encode(Sha256::digest(&bytes)),
        Err(e) => {
            findings.push(finding(
                seq,
                "model_sha256",
                format!("{}: {e}", model_path.display()),
            ));
            return examined;
        }
    };
    if done["model_sha256"].as_str() != Some(model_sha.as_str()) {
        findings.push(finding(
            seq,
            "model_sha256",
            format!(
                "{} has sha256 {model_sha}, train.complete names {}",
                model_path.display(),
                done["model_sha256"]
            ),
        ));
    }
    match file_param_digest(&model_path, None) {
        Ok(digest) if digest == last_digest => {}
        Ok(digest) => findings.push(finding(
            seq,
            "param_digest",
            format!(
                "the parameters in {} digest to {digest}, the last recorded parameter digest is {last_digest}",
                model_path.display()
            ),
        )),
        Err(e) => findings.push(finding(seq, "param_digest", e)),
    }
    // The manifest.
    examined += 1;
    let manifest_path = run_dir.join("manifest.intoto.json");
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => text,
        Err(e) => {
            findings.push(finding(
                seq,
                "manifest_sha256",
                format!("{}: {e}", manifest_path.display()),
            ));
            return examined;
        }
    };
    let manifest_sha = hex::encode(Sha256::digest(text.as_bytes()));
    if done["manifest_sha256"].as_str() != Some(manifest_sha.as_str()) {
        findings.push(finding(
            seq,
            "manifest_sha256",
            format!(
                "{} has sha256 {manifest_sha}, train.complete names {}",
                manifest_path.display(),
                done["manifest_sha256"]
            ),
        ));
    }
    let statement = warden_attest::Envelope::from_json(&text)
        .map_err(|e| e.to_string())
        .and_then(|envelope| {
            warden_attest::verify_envelope(&envelope, trust, Role::TrainingAuthority)
                .map_err(|e| e.to_string())
        });
    let statement = match statement {
        Ok(verified) => verified.statement,
        Err(e) => {
            findings.push(finding(
                seq,
                "manifest",
                format!("{}: {e}", manifest_path.display()),
            ));
            return examined;
        }
    };
    let subject = statement
        .subject
        .iter()
        .find(|s| s.name == "model.safetensors")
        .and_then(|s| s.digest.get("sha256"));
    if subject != Some(&model_sha) {
        findings.push(finding(
            seq,
            "manifest.subject",
            format!(
                "{} has sha256 {model_sha}, the signed manifest's subject names {subject:?}: the model file differs from the manifest",
                model_path.display()
            ),
        ));
    }
    let predicate = &statement.predicate;
    if predicate["model"]["parameter_digest"].as_str() != Some(last_digest) {
        findings.push(finding(
            seq,
            "manifest.model.parameter_digest",
            format!(
                "the manifest names parameter digest {}, the lineage's last is {last_digest}",
                predicate["model"]["parameter_digest"]
            ),
        ));
    }
    if predicate["corpus"]["declaration_digest"] != start["corpus"]["declaration_digest"] {
        findings.push(finding(
            seq,
            "manifest.corpus.declaration_digest",
            format!(
                "the manifest names declaration {}, train.start names {}",
                predicate["corpus"]["declaration_digest"], start["corpus"]["declaration_digest"]
            ),
        ));
    }
    let size = predicate["lineage"]["size"].as_u64().unwrap_or(u64::MAX);
    match records.get(..size.min(usize::MAX as u64) as usize) {
        Some(prefix) => {
            let leaves: Vec<_> = prefix.iter().map(SignedRecord::leaf_hash).collect();
            let root = hex::encode(warden_merkle::root(&leaves));
            if predicate["lineage"]["root"].as_str() != Some(root.as_str()) {
                findings.push(finding(
                    seq,
                    "manifest.lineage.root",
                    format!(
                        "the manifest names lineage root {} at size {size}, the lineage's root there is {root}",
                        predicate["lineage"]["root"]
                    ),
                ));
            }
        }
        None => findings.push(finding(
            seq,
            "manifest.lineage.size",
            format!(
                "the manifest names lineage size {}, the lineage holds {} records",
                predicate["lineage"]["size"],
                records.len()
            ),
        )),
    }
    examined
}

/// Every retained checkpoint a record names (`train.start.initial_checkpoint`, an iteration's
/// `checkpoint`) is in `RUN_DIR/checkpoints/retained/<sha256>.safetensors`, its bytes hash to
/// the recorded SHA-256 and its parameters digest to the record's parameter digest: replay
/// starts from these files, so a run whose retained checkpoints are gone or altered cannot be
/// spot-checked, and the audit says so without `--replay`. Returns the files examined.
pub(crate) fn retained_checkpoints(
    run_dir: &Path,
    run_records: &[SignedRecord],
    findings: &mut Vec<Finding>,
) -> u64 {
    let mut examined = 0;
    for record in run_records {
        let p = &record.record.payload;
        let seq = record.record.seq;
        let (field, named, digest_field) = match record.record.kind.as_str() {
            "train.start" => (
                "initial_checkpoint",
                &p["initial_checkpoint"],
                "initial_param_digest",
            ),
            "train.iteration" => ("checkpoint", &p["checkpoint"], "param_digest"),
            _ => continue,
        };
        if named.is_null() {
            continue;
        }
        examined += 1;
        let iteration = p["iteration"].as_u64();
        let mut fail = |message: String| {
            findings.push(Finding {
                check: Check::Outcome,
                seq: Some(seq),
                iteration,
                field: field.to_string(),
                message,
            })
        };
        let Some(sha) = named["sha256"]
            .as_str()
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            fail(format!("names no retained checkpoint sha256: {named}"));
            continue;
        };
        // The file is found by its content address, never by a path the record supplies.
        let path = run_dir
            .join(warden_train::trainer::RETAINED_DIR)
            .join(format!("{sha}.safetensors"));
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                fail(format!(
                    "the retained checkpoint {} cannot be read ({e}): the run cannot be replayed from it",
                    path.display()
                ));
                continue;
            }
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha {
            fail(format!(
                "the retained checkpoint {} hashes to {actual}, not the recorded {sha}: it was altered",
                path.display()
            ));
            continue;
        }
        if let Some(expected) = p[digest_field].as_str() {
            match file_param_digest(&path, Some("param.")) {
                Ok(digest) if digest == expected => {}
                Ok(digest) => fail(format!(
                    "the retained checkpoint {} holds parameters digesting to {digest}, the record's {digest_field} is {expected}",
                    path.display()
                )),
                Err(e) => fail(e),
            }
        }
    }
    examined
}

/// Every retained checkpoint `checkpoints/iter-N.safetensors` holds the parameters whose
/// digest the lineage records for iteration N.
fn checkpoints(
    run_dir: &Path,
    recorded: &BTreeMap<u64, (u64, String)>,
    findings: &mut Vec<Finding>,
) -> u64 {
    let dir = run_dir.join("checkpoints");
    let Ok(listing) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut files: Vec<(u64, std::path::PathBuf)> = listing
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix("iter-")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some((n, entry.path()))
        })
        .collect();
    files.sort();
    let mut examined = 0;
    for (iteration, path) in files {
        examined += 1;
        let Some((seq, expected)) = recorded.get(&iteration) else {
            findings.push(finding(
                None,
                "checkpoints",
                format!(
                    "{} is a checkpoint of iteration {iteration}, which the lineage does not record",
                    path.display()
                ),
            ));
            continue;
        };
        match file_param_digest(&path, Some("param.")) {
            Ok(digest) if digest == *expected => {}
            Ok(digest) => findings.push(Finding {
                check: Check::Outcome,
                seq: Some(*seq),
                iteration: Some(iteration),
                field: "param_digest".into(),
                message: format!(
                    "records param_digest {expected}, but the retained checkpoint {} holds parameters digesting to {digest}: the digest does not chain",
                    path.display()
                ),
            }),
            Err(e) => findings.push(finding(Some(*seq), "checkpoints", e)),
        }
    }
    examined
}
