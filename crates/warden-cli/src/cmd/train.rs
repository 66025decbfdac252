//! `warden train CONFIG --out RUN_DIR`, `warden train resume RUN_DIR`, `warden bench train`,
//! `warden bench memorization`, and the training stage of `warden demo`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use warden_keys::Role;
use warden_store::fs;
use warden_train::run::{self, RunSummary};
use warden_train::trainer::{GateCounts, Outcome, Trainer};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TrainArgs {
    #[command(subcommand)]
    pub command: Option<TrainCommand>,
    /// Training config (TOML: corpus, model, optimizer, seed, policy; see docs/readme-train.md).
    #[arg(required = true)]
    pub config: Option<PathBuf>,
    /// Run directory to create (model, checkpoints, lineage, manifest).
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub authority: Authority,
    /// Lineage directory (default: RUN_DIR/lineage).
    #[arg(long)]
    pub lineage: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct Authority {
    /// Training-authority signing key.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Trust file (verifies the corpus declaration).
    #[arg(long)]
    pub trust: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum TrainCommand {
    /// Continue a run from its latest checkpoint (also after a crash), optionally under a new
    /// policy version; records a `train.transition`.
    Resume {
        run_dir: PathBuf,
        /// New training policy (the `[policy]` table as a file, with a new `version`).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Train until this iteration instead of the config's `steps`.
        #[arg(long)]
        steps: Option<u64>,
        #[command(flatten)]
        authority: Authority,
    },
}

fn load_authority(
    authority: &Authority,
) -> anyhow::Result<(Arc<warden_keys::SigningKey>, warden_keys::TrustStore)> {
    let key_path = authority
        .key
        .as_ref()
        .context("--key FILE (training-authority signing key) is required")?;
    let trust_path = authority
        .trust
        .as_ref()
        .context("--trust FILE is required")?;
    let key = fs::load_signing_key(key_path)?;
    if key.role() != Role::TrainingAuthority {
        anyhow::bail!(
            "{}: key {} has role {}, training needs training-authority",
            key_path.display(),
            key.key_ref(),
            key.role()
        );
    }
    Ok((Arc::new(key), fs::load_trust(trust_path)?))
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn gate_line(c: &GateCounts) -> String {
    format!(
        "regions admitted {} clipped {} rejected {} | samples {} refused {} memorization rejected {} clipped {} | evals {} refused {} | failures {}",
        c.regions_admitted,
        c.regions_clipped,
        c.regions_rejected,
        c.samples_admitted,
        c.samples_refused,
        c.samples_rejected_memorization,
        c.samples_clipped_memorization,
        c.evals_run,
        c.evals_refused,
        c.failures
    )
}

/// A progress callback drawing step, loss, tokens/s and gate counts.
fn reporter(bar: &ProgressBar) -> impl FnMut(&Trainer, &Outcome) + '_ {
    let started = std::time::Instant::now();
    let mut tokens = 0usize;
    move |trainer: &Trainer, outcome: &Outcome| {
        if let Outcome::Admitted { tokens: t, .. } = outcome {
            tokens += t;
        }
        let rate = tokens as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let c = trainer.counts();
        bar.set_position(trainer.iteration());
        bar.set_message(format!(
            "loss {:.3} | {:.0} tok/s | regions +{} ~{} -{} | samples refused {} mem {} | fail {}",
            trainer.last_loss().unwrap_or(f32::NAN),
            rate,
            c.regions_admitted,
            c.regions_clipped,
            c.regions_rejected,
            c.samples_refused,
            c.samples_rejected_memorization + c.samples_clipped_memorization,
            c.failures
        ));
    }
}

fn print_summary(summary: &RunSummary) {
    println!(
        "trained {} iterations, final loss {:.4}, policy versions {}",
        summary.iterations,
        summary.final_loss.unwrap_or(f32::NAN),
        summary.policy_versions.join(" → ")
    );
    println!("gates: {}", gate_line(&summary.counts));
    println!(
        "model: {} (sha256 {})",
        summary.run_dir.join("model.safetensors").display(),
        hex::encode(summary.model_sha256)
    );
    println!(
        "manifest: {} (in-toto Statement v1, DSSE)",
        summary.manifest.display()
    );
    println!("lineage: {}", summary.lineage_dir.display());
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let summary = match args.command {
        Some(TrainCommand::Resume {
            run_dir,
            policy,
            steps,
            authority,
        }) => {
            let (key, trust) = load_authority(&authority)?;
            let bar = progress_bar(steps.unwrap_or(0));
            let mut report = reporter(&bar);
            let result = run::resume(
                &run_dir,
                policy.as_deref(),
                key,
                &trust,
                steps,
                &mut |t, o| {
                    if bar.length() == Some(0) {
                        bar.set_length(t.config.steps);
                    }
                    report(t, o)
                },
            );
            bar.finish_and_clear();
            result?
        }
        None => {
            let config = args.config.context("CONFIG is required")?;
            let out = args.out.context("--out RUN_DIR is required")?;
            let (key, trust) = load_authority(&args.authority)?;
            let bar = progress_bar(0);
            let mut report = reporter(&bar);
            let result = run::start(
                &config,
                &out,
                key,
                &trust,
                args.lineage.as_deref(),
                &mut |t, o| {
                    if bar.length() == Some(0) {
                        bar.set_length(t.config.steps);
                    }
                    report(t, o)
                },
            );
            bar.finish_and_clear();
            result?
        }
    };
    print_summary(&summary);
    Ok(())
}

#[derive(Args)]
pub struct BenchArgs {
    /// Iterations measured (each runs governed and ungoverned on the same batch).
    #[arg(long, default_value_t = 40)]
    pub steps: u64,
}

#[derive(Args)]
pub struct MemorizationArgs {
    /// Training iterations per model.
    #[arg(long, default_value_t = 600)]
    pub steps: u64,
}

pub fn bench(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

pub fn bench_memorization(_args: MemorizationArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

pub fn demo_stage(_ctx: &mut super::demo::DemoContext) -> anyhow::Result<()> {
    let _ = (Path::new("."), Duration::ZERO);
    Ok(())
}
