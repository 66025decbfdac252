//! `warden audit RUN_DIR`: proves from the lineage alone that a training run complied with its
//! policy (checks 1–7 of `warden_audit`), printed per check, as JSON, or as an HTML report.

use std::path::{Path, PathBuf};

use clap::Args;
use warden_audit::{AuditInputs, Check, Finding, Report};
use warden_corpus::prove::Proof;
use warden_keys::TrustStore;
use warden_store::fs;

#[derive(Args)]
pub struct AuditArgs {
    /// The run directory (`warden train CONFIG --out RUN_DIR`).
    pub run_dir: PathBuf,
    /// Lineage directory (default: RUN_DIR/lineage, else the one RUN_DIR/run.json names).
    #[arg(long)]
    pub lineage: Option<PathBuf>,
    /// Trust file: which key may act in which role (default: trust.toml beside the lineage
    /// directory, else beside RUN_DIR).
    #[arg(long)]
    pub trust: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report (charts and every finding) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print and verify RFC 6962 inclusion proofs (sample → signed corpus root and source
    /// root) for N trained samples, chosen by the lineage root.
    #[arg(long, value_name = "N")]
    pub prove: Option<usize>,
    /// Spot-check replay: re-execute K iterations (K/2 with the largest update norms, K/2 drawn
    /// by the lineage root) from the nearest retained checkpoints; every recomputed record and
    /// parameter digest must equal the recorded one bit for bit (check `replay`).
    #[arg(long, value_name = "K")]
    pub replay: Option<usize>,
}

/// The trust file: `--trust`, else `trust.toml` beside the lineage directory or the run.
fn trust_path(given: Option<PathBuf>, lineage: &Path, run_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let beside = |dir: &Path| {
        dir.canonicalize()
            .ok()
            .and_then(|d| d.parent().map(|p| p.join("trust.toml")))
    };
    let candidates: Vec<PathBuf> = [beside(lineage), beside(run_dir)]
        .into_iter()
        .flatten()
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no trust file: pass --trust FILE (the keys you accept per role); looked for {}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        })
}

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let lineage = warden_audit::lineage_dir_of(&args.run_dir, args.lineage.as_deref())?;
    let trust = fs::load_trust(&trust_path(args.trust, &lineage, &args.run_dir)?)?;
    let inputs = AuditInputs {
        run_dir: args.run_dir.clone(),
        lineage_dir: Some(lineage.clone()),
    };
    let mut report = audit_to(&inputs, &trust, args.prove, None)?;
    let mut replay_lines = Vec::new();
    if let Some(k) = args.replay {
        let (lines, replayed) = super::train::spot_check_lines(&args.run_dir, &lineage, &trust, k)?;
        let findings = replayed
            .iterations
            .iter()
            .filter(|r| !r.equal)
            .map(|r| Finding {
                check: Check::Replay,
                seq: None,
                iteration: Some(r.iteration),
                field: "param_digest".to_string(),
                message: r
                    .failure
                    .clone()
                    .unwrap_or_else(|| "does not replay bit for bit".to_string()),
            })
            .collect();
        report.add_check(Check::Replay, replayed.iterations.len() as u64, findings);
        replay_lines = lines;
    }
    if let Some(path) = &args.html {
        fs::atomic_write(path, warden_audit::html::render(&report).as_bytes())?;
    }
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
        // stdout holds the one JSON object; the replay's description goes to stderr.
        for line in &replay_lines {
            eprintln!("{line}");
        }
    } else {
        print_summary(&report, args.html.as_deref(), true);
        for line in &replay_lines {
            outln!("{line}");
        }
    }
    if report.passed() {
        Ok(())
    } else {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.check.name())
            .collect();
        anyhow::bail!(
            "audit failed: {} findings (checks: {})",
            report.checks.iter().map(|c| c.findings).sum::<u64>(),
            failed.join(", ")
        )
    }
}

/// The audit, with `prove` inclusion proofs attached and the HTML report written to `html`.
fn audit_to(
    inputs: &AuditInputs,
    trust: &TrustStore,
    prove: Option<usize>,
    html: Option<&Path>,
) -> anyhow::Result<Report> {
    let mut report = warden_audit::audit(inputs, trust)?;
    if let Some(n) = prove {
        let proofs = warden_audit::proofs::prove_trained_samples(inputs, trust, n)?;
        report.attach_inclusion_proofs(proofs);
    }
    if let Some(path) = html {
        fs::atomic_write(path, warden_audit::html::render(&report).as_bytes())?;
    }
    Ok(report)
}

/// The audit stage of `warden demo`, after the train stage: audits the demo's training run
/// from the demo lineage (with three inclusion proofs) and writes `audit.html` into the demo
/// directory. An honest demo run must pass; a finding fails the demo.
pub fn demo_stage(ctx: &mut super::demo::DemoContext) -> anyhow::Result<()> {
    super::demo::heading("audit: prove from the lineage that the run complied with its policy");
    // The directory the train stage trains into.
    let run_dir = ctx.dir.join("train-run");
    if !run_dir.is_dir() {
        anyhow::bail!(
            "{}: no training run to audit (the train stage must run first)",
            run_dir.display()
        );
    }
    let html = ctx.dir.join("audit.html");
    let inputs = AuditInputs {
        run_dir,
        lineage_dir: Some(ctx.lineage_dir.clone()),
    };
    let report = audit_to(&inputs, &ctx.trust, Some(3), Some(&html))?;
    print_summary(&report, Some(&html), false);
    if !report.passed() {
        anyhow::bail!(
            "the demo's training run fails its audit: {}",
            report
                .findings
                .first()
                .map_or_else(String::new, ToString::to_string)
        );
    }
    Ok(())
}

/// The per-check summary; `proof_paths`: print each inclusion proof's audit paths in full.
fn print_summary(report: &Report, html: Option<&Path>, proof_paths: bool) {
    outln!(
        "audit of {} (lineage {}: {} records, the run starts at record {})",
        report.run_dir,
        report.lineage_dir,
        report.records,
        report.start_seq
    );
    for (idx, check) in report.checks.iter().enumerate() {
        let result = if check.passed {
            "passed".to_string()
        } else {
            format!("FAILED ({} findings)", check.findings)
        };
        outln!(
            "  {}. {:<10} {:<22} {} examined: {}",
            idx + 1,
            check.check.name(),
            result,
            check.examined,
            check.title
        );
        if let Some(first) = &check.first {
            outln!("       first: {first}");
        }
    }
    if !report.inclusion_proofs.is_empty() {
        outln!(
            "inclusion proofs ({} trained samples chosen by the lineage root):",
            report.inclusion_proofs.len()
        );
        for p in &report.inclusion_proofs {
            let status = p.problem.as_deref().unwrap_or("verified");
            outln!(
                "  record {} (iteration {}) sample {} {}: {status}",
                p.seq,
                p.iteration,
                p.sample,
                p.hash
            );
            if let Some(Proof::Inclusion {
                corpus_root,
                tree_size,
                leaf,
                source,
                ..
            }) = &p.proof
            {
                if !proof_paths {
                    outln!(
                        "    corpus leaf {} of {tree_size} under root {corpus_root}; source {} line {}",
                        leaf.index,
                        source.source,
                        source.line
                    );
                    continue;
                }
                outln!(
                    "    corpus root {corpus_root}: leaf {} of {tree_size}, path [{}]",
                    leaf.index,
                    leaf.path.join(" ")
                );
                outln!(
                    "    source {} line {} root {}: leaf {} of {}, path [{}]",
                    source.source,
                    source.line,
                    source.source_root,
                    source.leaf_index,
                    source.tree_size,
                    source.path.join(" ")
                );
            }
        }
    }
    if !report.findings.is_empty() {
        outln!("findings:");
        for finding in &report.findings {
            outln!("  [{}] {finding}", finding.check);
        }
    }
    if let Some(path) = html {
        outln!("HTML report: {}", path.display());
    }
    outln!(
        "{}",
        if report.passed() {
            "audit passed: the run complied with its policy"
        } else {
            "audit FAILED"
        }
    );
}
