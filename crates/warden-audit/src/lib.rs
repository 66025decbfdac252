//! `warden-audit`: proves from the lineage alone that a training run complied with its policy.
//!
//! The auditor reads what a training run left behind — the lineage, the trust file, the signed
//! corpus declaration with its sample index, the run's config, checkpoints, model file and
//! manifest — and re-derives every decision from the policy in force at each record. It never
//! calls the training code path: the gate decisions are re-implemented here as an independent
//! checker (`checks.rs`), so a bug in the trainer's gates is not silently repeated by its
//! auditor. Only parsers and file-format helpers are shared with `warden-train` (the policy and
//! config types, the safetensors reader and the parameter digest).
//!
//! Seven checks (issue 11), each naming the first record (`seq`) and field that fails:
//! 1. lineage — signatures, roles, chain, Merkle tree, checkpoints (`warden_store::verify`);
//! 2. policy — the version in force at every record, transitions, `config_digest`;
//! 3. data — every trained sample is in the signed sample index, of an admitted class and
//!    license; refusals were right; refused samples never train;
//! 4. gradients — region verdicts, depth routing and scales, detector actions;
//! 5. evaluation — every evaluation authorized, every refusal right;
//! 6. failures — halt ends the run, quarantine rolls back to a checkpoint, tolerance windows;
//! 7. outcome — iterations consecutive, parameter digests chain, model file = manifest = lineage.
//!
//! Spot-check replay (`warden audit --replay K`) is a separate library function; its result is
//! merged into a [`Report`] with [`Report::add_check`] under [`Check::Replay`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use warden_keys::TrustStore;

mod checks;
mod files;
pub mod html;
pub mod proofs;

/// One of the audit's checks (numbered as in issue 11; `Replay` is the spot-check replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Lineage,
    Policy,
    Data,
    Gradients,
    Evaluation,
    Failures,
    Outcome,
    Replay,
}

impl Check {
    /// The seven checks every audit runs, in order.
    pub const ALL: [Check; 7] = [
        Check::Lineage,
        Check::Policy,
        Check::Data,
        Check::Gradients,
        Check::Evaluation,
        Check::Failures,
        Check::Outcome,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Lineage => "lineage",
            Check::Policy => "policy",
            Check::Data => "data",
            Check::Gradients => "gradients",
            Check::Evaluation => "evaluation",
            Check::Failures => "failures",
            Check::Outcome => "outcome",
            Check::Replay => "replay",
        }
    }

    /// What the check proves, for the terminal summary and the HTML report.
    pub fn title(self) -> &'static str {
        match self {
            Check::Lineage => {
                "the lineage verifies (signatures, roles, chain, Merkle, checkpoints)"
            }
            Check::Policy => "the declared policy is in force at every record",
            Check::Data => "every trained sample is in the signed declaration and admissible",
            Check::Gradients => "every region verdict, route and detector action is the policy's",
            Check::Evaluation => "every evaluation was authorized, every refusal right",
            Check::Failures => "every failure was handled as the failure mode says",
            Check::Outcome => "parameter digests chain to the model file and the manifest",
            Check::Replay => "replayed iterations reproduce the recorded digests bit for bit",
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One violation: the check, the record (`seq`) and field where it was found, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub check: Check,
    /// Index of the lineage record that fails (`None`: a file, not a record).
    pub seq: Option<u64>,
    pub iteration: Option<u64>,
    /// The payload field (JSON path, e.g. `regions[3].verdict`) or file that fails.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "record {seq}")?,
            None => f.write_str("run")?,
        }
        if let Some(iteration) = self.iteration {
            write!(f, " (iteration {iteration})")?;
        }
        write!(f, ", {}: {}", self.field, self.message)
    }
}

/// What one check examined and found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckSummary {
    pub check: Check,
    pub title: &'static str,
    /// Records (or files) the check examined.
    pub examined: u64,
    pub findings: u64,
    pub passed: bool,
    /// The first finding, which names the first failing record.
    pub first: Option<Finding>,
}

/// One iteration's numbers, for the report's charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IterationPoint {
    pub seq: u64,
    pub iteration: u64,
    pub loss: Option<f64>,
    pub policy_version: String,
    pub admitted: u64,
    pub refused: u64,
    pub regions: Vec<RegionPoint>,
    /// `ran`, `refused`, or absent.
    pub evaluation: Option<String>,
}

/// One region's gradient in one iteration against its bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionPoint {
    pub region: String,
    pub grad_norm: Option<f64>,
    pub bound: Option<f64>,
    pub verdict: String,
}

/// A failure record (for the report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailurePoint {
    pub seq: u64,
    pub iteration: u64,
    pub gate: String,
    pub action: String,
    pub detail: String,
}

/// A sample the data gate refused or skipped.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefusalPoint {
    pub seq: u64,
    pub iteration: u64,
    pub source: String,
    pub hash: String,
    pub status: String,
}

/// A policy version and the record that put it in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyPoint {
    pub version: String,
    pub digest: String,
    pub seq: u64,
    pub reason: String,
}

/// What the run did, for the HTML report (the checks do not read it).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timeline {
    pub iterations: Vec<IterationPoint>,
    pub failures: Vec<FailurePoint>,
    /// (class, depth) → admitted sample draws.
    pub classes: BTreeMap<String, BTreeMap<String, u64>>,
    /// The first [`MAX_LISTED`] refusals.
    pub refusals: Vec<RefusalPoint>,
    pub n_refusals: u64,
    /// Samples the corpus authority excluded at admission (from the signed declaration).
    pub corpus_exclusions: u64,
    pub policies: Vec<PolicyPoint>,
}

/// Lists in the report keep at most this many entries (counts stay exact).
pub const MAX_LISTED: usize = 200;
/// At most this many findings are kept per check (the count stays exact).
pub const MAX_FINDINGS_PER_CHECK: usize = 100;

/// The audit's result. `passed()` iff no check found anything.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub run_dir: String,
    pub lineage_dir: String,
    /// Index of the run's `train.start` record.
    pub start_seq: u64,
    /// Records in the lineage.
    pub records: u64,
    pub checks: Vec<CheckSummary>,
    pub findings: Vec<Finding>,
    pub timeline: Timeline,
    /// RFC 6962 inclusion proofs for a sample of trained samples (`--prove N`), if requested.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inclusion_proofs: Vec<proofs::SampleProof>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// Adds (or replaces) a check's result: how the replay helper merges `--replay K`.
    pub fn add_check(&mut self, check: Check, examined: u64, findings: Vec<Finding>) {
        self.checks.retain(|c| c.check != check);
        self.findings.retain(|f| f.check != check);
        self.checks.push(CheckSummary {
            check,
            title: check.title(),
            examined,
            findings: findings.len() as u64,
            passed: findings.is_empty(),
            first: findings.first().cloned(),
        });
        self.findings.extend(findings);
    }

    /// Attaches inclusion proofs (see [`proofs::prove_trained_samples`]); a sample whose proof
    /// is not an inclusion that verifies becomes a finding of the data check.
    pub fn attach_inclusion_proofs(&mut self, proofs: Vec<proofs::SampleProof>) {
        let failed: Vec<Finding> = proofs
            .iter()
            .filter_map(|p| {
                p.problem.as_ref().map(|problem| Finding {
                    check: Check::Data,
                    seq: Some(p.seq),
                    iteration: Some(p.iteration),
                    field: format!("batch.samples[{}].hash", p.sample),
                    message: format!("inclusion proof of {}: {problem}", p.hash),
                })
            })
            .collect();
        if !failed.is_empty() {
            let (examined, counted) = self
                .checks
                .iter()
                .find(|c| c.check == Check::Data)
                .map_or((0, 0), |c| (c.examined, c.findings));
            let n_failed = failed.len() as u64;
            let mut findings: Vec<Finding> = self.findings_of(Check::Data).cloned().collect();
            findings.extend(failed);
            self.add_check(Check::Data, examined, findings);
            // The count stays exact when the check's listed findings were capped.
            if let Some(summary) = self.checks.iter_mut().find(|c| c.check == Check::Data) {
                summary.findings = counted + n_failed;
            }
            self.checks.sort_by_key(|c| c.check);
        }
        self.inclusion_proofs = proofs;
    }

    /// The findings of one check, in record order.
    pub fn findings_of(&self, check: Check) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.check == check)
    }
}

/// Why an audit could not run at all (a violation is a [`Finding`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{}: no such run directory", .0.display())]
    NoRunDir(PathBuf),
    #[error("{}: no lineage directory (pass --lineage DIR)", .0.display())]
    NoLineage(PathBuf),
    #[error("{}: the lineage's records cannot be read: {reason}", path.display())]
    Records { path: PathBuf, reason: String },
    #[error("{}: the lineage holds no train.start record for run {}", lineage.display(), run_dir.display())]
    NoStart { lineage: PathBuf, run_dir: PathBuf },
    #[error("{}: the lineage holds {n} runs and none names run directory {}; audit it where it was trained", lineage.display(), run_dir.display())]
    AmbiguousStart {
        lineage: PathBuf,
        run_dir: PathBuf,
        n: usize,
    },
    #[error("lineage record {seq} (train.start): {reason}")]
    Start { seq: u64, reason: String },
}

/// Where the run's evidence lives.
#[derive(Debug, Clone)]
pub struct AuditInputs {
    pub run_dir: PathBuf,
    /// Default: `RUN_DIR/lineage` if present, else the lineage `RUN_DIR/run.json` names.
    pub lineage_dir: Option<PathBuf>,
}

/// The lineage directory of a run: the one given, `RUN_DIR/lineage`, or `run.json`'s.
pub fn lineage_dir_of(run_dir: &Path, given: Option<&Path>) -> Result<PathBuf, AuditError> {
    if let Some(dir) = given {
        return if dir.is_dir() {
            Ok(dir.to_path_buf())
        } else {
            Err(AuditError::NoLineage(dir.to_path_buf()))
        };
    }
    let beside = run_dir.join("lineage");
    if beside.is_dir() {
        return Ok(beside);
    }
    let named = std::fs::read(run_dir.join("run.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v["lineage"].as_str().map(PathBuf::from));
    match named {
        Some(dir) if dir.is_dir() => Ok(dir),
        _ => Err(AuditError::NoLineage(beside)),
    }
}

/// Audits the run in `inputs.run_dir` against `trust`: all seven checks.
pub fn audit(inputs: &AuditInputs, trust: &TrustStore) -> Result<Report, AuditError> {
    if !inputs.run_dir.is_dir() {
        return Err(AuditError::NoRunDir(inputs.run_dir.clone()));
    }
    let lineage_dir = lineage_dir_of(&inputs.run_dir, inputs.lineage_dir.as_deref())?;
    let mut findings = Vec::new();
    // Check 1: the lineage verifies. A failure is a finding; the other checks still run over
    // the records, so the report says what else is wrong.
    let verify = warden_store::verify(&lineage_dir, trust, &warden_store::VerifyOptions::default());
    let records = warden_store::read_all(&lineage_dir).map_err(|e| AuditError::Records {
        path: lineage_dir.clone(),
        reason: e.to_string(),
    })?;
    let lineage_examined = records.len() as u64;
    match &verify {
        Err(e) => findings.push(Finding {
            check: Check::Lineage,
            seq: verify_error_seq(e),
            iteration: None,
            field: "lineage".into(),
            message: e.to_string(),
        }),
        // Verified and read in two passes: a record appended in between was never verified.
        Ok(verified) if verified.records != lineage_examined => findings.push(Finding {
            check: Check::Lineage,
            seq: Some(verified.records),
            iteration: None,
            field: "lineage".into(),
            message: format!(
                "the lineage changed while it was audited: {} records verified, {lineage_examined} read",
                verified.records
            ),
        }),
        Ok(_) => {}
    }
    let walked = checks::walk(&inputs.run_dir, &lineage_dir, &records, trust)?;
    findings.extend(walked.findings);
    let mut examined = walked.examined;
    examined.insert(Check::Lineage, lineage_examined);
    let run_dir = inputs.run_dir.display().to_string();
    let mut report = Report {
        run_dir,
        lineage_dir: lineage_dir.display().to_string(),
        start_seq: walked.start_seq,
        records: records.len() as u64,
        checks: Vec::new(),
        findings: Vec::new(),
        timeline: walked.timeline,
        inclusion_proofs: Vec::new(),
    };
    for check in Check::ALL {
        let mut of_check: Vec<Finding> = findings
            .iter()
            .filter(|f| f.check == check)
            .cloned()
            .collect();
        let total = of_check.len() as u64;
        of_check.truncate(MAX_FINDINGS_PER_CHECK);
        report.add_check(check, examined.get(&check).copied().unwrap_or(0), of_check);
        if let Some(summary) = report.checks.last_mut() {
            summary.findings = total;
        }
    }
    Ok(report)
}

/// The record a lineage verification error names, if any.
fn verify_error_seq(error: &warden_lineage::VerifyError) -> Option<u64> {
    match error {
        warden_lineage::VerifyError::Record { index, .. } => Some(*index),
        _ => None,
    }
}
