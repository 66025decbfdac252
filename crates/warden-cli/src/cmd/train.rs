//! `warden train CONFIG --out RUN_DIR`, `warden train resume RUN_DIR`, `warden train replay
//! RUN_DIR --k K`, `warden bench train`, `warden bench memorization`, and the training stage of
//! `warden demo`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use warden_keys::Role;
use warden_store::fs;
use warden_train::bench;
use warden_train::config::TrainConfig;
use warden_train::run::{self, Resumed, RunSummary};
use warden_train::trainer::{GateCounts, Outcome, Trainer};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TrainArgs {
    #[command(subcommand)]
    pub command: Option<TrainCommand>,
    /// Training config (TOML: corpus, model, optimizer, seed, policy; see README.md "Governed training").
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
    /// Spot-check replay: re-executes K iterations (K/2 with the largest update norms, K/2
    /// drawn by the lineage root) from the nearest retained checkpoints and requires every
    /// recomputed record and parameter digest to equal the recorded one bit for bit.
    Replay {
        run_dir: PathBuf,
        /// Iterations to replay.
        #[arg(long, value_name = "K")]
        k: usize,
        /// Lineage directory (default: RUN_DIR/lineage, else the one RUN_DIR/run.json names).
        #[arg(long)]
        lineage: Option<PathBuf>,
        /// Trust file: verifies the lineage and the corpus declaration.
        #[arg(long)]
        trust: PathBuf,
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
    // The library checks the key against the trust file for the training-authority role
    // before anything is written (`run::check_signing_key`).
    let key = fs::load_signing_key(key_path)?;
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
        "regions admitted {} clipped {} rejected {} | samples {} refused {} | memorization: spans masked {}, samples rejected {} clipped {} | evals {} refused {} | failures {}",
        c.regions_admitted,
        c.regions_clipped,
        c.regions_rejected,
        c.samples_admitted,
        c.samples_refused,
        c.spans_masked_memorization,
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
        // The run's length is known once its config is loaded (a resume may change it).
        if bar.length() == Some(0) {
            bar.set_length(trainer.config.steps);
        }
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
            c.spans_masked_memorization
                + c.samples_rejected_memorization
                + c.samples_clipped_memorization,
            c.failures
        ));
    }
}

/// One line per evaluation result: held-out loss per source, canary exposures.
fn evaluation_lines(iteration: u64, evaluation: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(sources) = evaluation["sources"].as_object() {
        let losses: Vec<String> = sources
            .iter()
            .map(|(id, s)| {
                format!(
                    "{id} {:.4} ({} samples)",
                    s["loss"].as_f64().unwrap_or(f64::NAN),
                    s["samples"]
                )
            })
            .collect();
        if !losses.is_empty() {
            lines.push(format!(
                "evaluation at iteration {iteration}: held-out loss {}",
                losses.join(", ")
            ));
        }
    }
    if let Some(canaries) = evaluation["canaries"].as_array() {
        if !canaries.is_empty() {
            let exposures: Vec<String> = canaries
                .iter()
                .map(|c| format!("{:.1}", c["exposure"].as_f64().unwrap_or(f64::NAN)))
                .collect();
            let max = canaries[0]["candidates"]
                .as_u64()
                .map_or(f64::NAN, |n| ((n + 1) as f64).log2());
            let extracted = canaries.iter().filter(|c| c["extracted"] == true).count();
            lines.push(format!(
                "evaluation at iteration {iteration}: canary exposure [{}] (max {max:.1}), extracted {extracted} of {}",
                exposures.join(", "),
                canaries.len()
            ));
        }
    }
    lines
}

fn print_summary(summary: &RunSummary, trust: Option<&Path>) {
    let loss = match summary.final_loss {
        Some(loss) if loss.is_finite() => format!("final loss {loss:.4}"),
        _ => "no admitted batch in this command".to_string(),
    };
    outln!(
        "trained {} iterations, {loss}, policy versions {}",
        summary.iterations,
        summary.policy_versions.join(" → ")
    );
    outln!("gates: {}", gate_line(&summary.counts));
    match &summary.last_evaluation {
        Some((iteration, evaluation)) => {
            for line in evaluation_lines(*iteration, evaluation) {
                outln!("{line}");
            }
        }
        None if summary.counts.evals_refused > 0 => {
            outln!(
                "evaluation: {} requested evaluations refused by the policy, none ran",
                summary.counts.evals_refused
            );
        }
        None => {}
    }
    outln!(
        "model: {} (sha256 {})",
        summary.run_dir.join("model.safetensors").display(),
        hex::encode(summary.model_sha256)
    );
    outln!(
        "manifest: {} (in-toto Statement v1, DSSE)",
        summary.manifest.display()
    );
    outln!("lineage: {}", summary.lineage_dir.display());
    if let Some(trust) = trust {
        outln!(
            "verify: warden lineage verify {} --trust {}",
            summary.lineage_dir.display(),
            trust.display()
        );
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let trust_path = match &args.command {
        Some(TrainCommand::Resume { authority, .. }) => authority.trust.clone(),
        Some(TrainCommand::Replay { trust, .. }) => Some(trust.clone()),
        None => args.authority.trust.clone(),
    };
    let summary = match args.command {
        Some(TrainCommand::Replay {
            run_dir,
            k,
            lineage,
            trust,
        }) => return replay(&run_dir, k, lineage.as_deref(), &trust),
        Some(TrainCommand::Resume {
            run_dir,
            policy,
            steps,
            authority,
        }) => {
            let (key, trust) = load_authority(&authority)?;
            let bar = progress_bar(steps.unwrap_or(0));
            let mut report = reporter(&bar);
            let result = run::resume(&run_dir, policy.as_deref(), key, &trust, steps, &mut report);
            bar.finish_and_clear();
            match result? {
                Resumed::Trained(summary) => *summary,
                Resumed::AlreadyComplete(done) => {
                    outln!(
                        "{}: the run is complete ({} iterations, model sha256 {}, train.complete at lineage record {}); nothing to do (give --steps N above {} to train further)",
                        done.run_dir.display(),
                        done.iterations,
                        done.model_sha256,
                        done.seq,
                        done.iterations
                    );
                    return Ok(());
                }
            }
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
                &mut report,
            );
            bar.finish_and_clear();
            result?
        }
    };
    print_summary(&summary, trust_path.as_deref());
    Ok(())
}

/// The run's lineage directory: `given`, else `RUN_DIR/lineage`, else the one `run.json` names.
fn run_lineage_dir(run_dir: &Path, given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir.to_path_buf());
    }
    let beside = run_dir.join("lineage");
    if beside.is_dir() {
        return Ok(beside);
    }
    let run_json = run_dir.join("run.json");
    let text = std::fs::read_to_string(&run_json).with_context(|| {
        format!(
            "no lineage at {} and no {}: pass --lineage DIR",
            beside.display(),
            run_json.display()
        )
    })?;
    let info: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", run_json.display()))?;
    info["lineage"]
        .as_str()
        .map(PathBuf::from)
        .with_context(|| format!("{}: no \"lineage\" path", run_json.display()))
}

/// `warden train replay RUN_DIR --k K`: verifies the lineage, selects K iterations from its
/// root and replays them ([`spot_check_lines`], which `warden audit --replay K` calls too).
/// Fails unless every one replays bit for bit.
fn replay(run_dir: &Path, k: usize, lineage: Option<&Path>, trust: &Path) -> anyhow::Result<()> {
    let lineage = run_lineage_dir(run_dir, lineage)?;
    let trust = fs::load_trust(trust)?;
    let (lines, report) = spot_check_lines(run_dir, &lineage, &trust, k)?;
    for line in &lines {
        outln!("{line}");
    }
    anyhow::ensure!(
        !report.iterations.is_empty(),
        "replay: the run records no iteration to replay"
    );
    let failed = report.iterations.iter().filter(|r| !r.equal).count();
    anyhow::ensure!(
        failed == 0,
        "replay: {failed} of {} chosen iterations do not reproduce their records bit for bit",
        report.iterations.len()
    );
    outln!(
        "ok: {} iterations replayed bit for bit (δ = 0){}",
        report.iterations.len(),
        if report.same_build() {
            ", same build as the run"
        } else {
            ""
        }
    );
    Ok(())
}

/// Verifies `lineage`, selects K iterations from its root and replays them
/// ([`warden_train::replay::spot_check`]); returns the report and its description, one line per
/// chosen iteration plus warnings and the auditor's cost.
pub fn spot_check_lines(
    run_dir: &Path,
    lineage: &Path,
    trust: &warden_keys::TrustStore,
    k: usize,
) -> anyhow::Result<(Vec<String>, warden_train::replay::ReplayReport)> {
    anyhow::ensure!(k > 0, "replay: K must be at least 1");
    let verified = warden_store::verify(lineage, trust, &warden_store::VerifyOptions::default())
        .map_err(|e| anyhow::anyhow!("{}: {e}", lineage.display()))?;
    let records = warden_store::read_all(lineage)?;
    anyhow::ensure!(
        records.len() as u64 == verified.records,
        "{}: the lineage changed while it was read ({} records verified, {} read)",
        lineage.display(),
        verified.records,
        records.len()
    );
    let (selection, report) =
        warden_train::replay::spot_check(run_dir, &records, trust, k, &verified.root)?;
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let mut lines = vec![format!(
        "replay: {} iterations chosen: largest update norms [{}], drawn by the lineage root {} [{}]",
        selection.by_update_norm.len() + selection.by_lineage_root.len(),
        list(&selection.by_update_norm),
        &hex::encode(verified.root)[..16],
        list(&selection.by_lineage_root)
    )];
    for r in &report.iterations {
        lines.push(match &r.failure {
            None => format!(
                "  iteration {}: replayed from retained checkpoint {} through {}: param_digest {} equal",
                r.iteration,
                r.from_checkpoint,
                r.through,
                r.recomputed_digest.as_deref().unwrap_or("?")
            ),
            Some(why) => format!("  iteration {}: DIFFERS: {why}", r.iteration),
        });
    }
    for warning in report.warnings() {
        lines.push(format!("warning: {warning}"));
    }
    let time = report.time_cost().map_or(String::new(), |f| {
        format!(
            "; {:.2} s replaying vs {:.2} s recorded training = {:.2}%",
            report.replay_seconds,
            report.training_seconds.unwrap_or(0.0),
            100.0 * f
        )
    });
    lines.push(format!(
        "auditor cost: {} of {} training iterations re-executed = {:.2}% of training{time}",
        report.executed,
        report.training_iterations,
        100.0 * report.cost()
    ));
    Ok((lines, report))
}

/// The model and batch shape both training benchmarks use.
#[derive(Args)]
pub struct BenchShape {
    /// Decoder layers.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Model width.
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    /// Samples per batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Bytes per sample window.
    #[arg(long, default_value_t = 64)]
    pub context: usize,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Iterations measured (each one runs governed and ungoverned on the same batch).
    #[arg(long, default_value_t = 40)]
    pub steps: u64,
    /// Synthetic corpus scale (1.0 is about 4 MB).
    #[arg(long, default_value_t = 0.05)]
    pub scale: f64,
    #[command(flatten)]
    pub shape: BenchShape,
    /// Train every class at depth `deep` (one forward/backward per step: no routing split).
    #[arg(long)]
    pub single_depth: bool,
}

#[derive(Args)]
pub struct MemorizationArgs {
    /// Training iterations per model.
    #[arg(long, default_value_t = 600)]
    pub steps: u64,
    /// Synthetic corpus scale (canaries do not scale, so smaller corpora repeat them more).
    #[arg(long, default_value_t = 0.1)]
    pub scale: f64,
    #[command(flatten)]
    pub shape: BenchShape,
    /// Exact-repeat n-gram length (bytes) of the governed run's detector.
    #[arg(long, default_value_t = 40)]
    pub ngram: usize,
    /// Samples the governed run's detector remembers.
    #[arg(long, default_value_t = 1024)]
    pub window: usize,
    /// Random same-format candidates per canary for the exposure rank.
    #[arg(long, default_value_t = 1023)]
    pub candidates: usize,
}

/// A scratch directory, removed when dropped (also when a benchmark fails half-way).
fn scratch(name: &str) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("warden-{name}-"))
        .tempdir()
        .context("creating a scratch directory")
}

/// The training config of the benchmarks and the demo (also `warden bench decode`'s small run).
#[allow(clippy::too_many_arguments)]
pub(crate) fn bench_config(
    corpus: &Path,
    steps: u64,
    layers: usize,
    width: usize,
    batch: usize,
    context: usize,
    learning_rate: f64,
    memorization: Option<(usize, usize)>,
) -> anyhow::Result<TrainConfig> {
    let heads = if width.is_multiple_of(4) { 4 } else { 1 };
    let memorization = memorization.map_or(String::new(), |(ngram, window)| {
        format!(
            "[policy.memorization]\nngram = {ngram}\nwindow = {window}\nthreshold = 0.0\naction = \"reject\"\n"
        )
    });
    let text = format!(
        r#"corpus = "{corpus}"
seed = 2026
steps = {steps}
batch_size = {batch}

[model]
layers = {layers}
width = {width}
heads = {heads}
context = {context}

[optimizer]
learning_rate = {learning_rate}
weight_decay = 0.01

[policy]
version = "bench-v1"
failure = "halt"
checkpoint_every = 25
lineage = {{ cadence = "window", steps = 10 }}
licenses = ["CC0-1.0", "CC-BY-4.0", "MIT"]

[[policy.regions]]
match = "*"
max_norm = 1.0
on_excess = "clip"

[policy.depths.shallow]
regions = ["head", "final_norm"]
max_norm = 0.5

{memorization}"#,
        corpus = corpus.display()
    );
    Ok(TrainConfig::parse(&text, "bench config", Path::new("."))?)
}

fn ms(d: Duration, steps: u64) -> f64 {
    d.as_secs_f64() * 1e3 / steps.max(1) as f64
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let scratch = scratch("bench-train")?;
    outln!(
        "preparing: synthetic corpus (scale {}), admission",
        args.scale
    );
    let (corpus, _, _) = bench::synthetic_corpus(scratch.path(), args.scale)?;
    let mut config = bench_config(
        &scratch.path().join("admitted"),
        args.steps + 3,
        args.shape.layers,
        args.shape.width,
        args.shape.batch,
        args.shape.context,
        3e-3,
        Some((40, 1024)),
    )?;
    if args.single_depth {
        config
            .policy
            .classes
            .insert("licensed-news".into(), "deep".into());
    }
    let n_params = config.model.n_parameters();
    let key = Arc::new(warden_keys::SigningKey::generate(
        Role::TrainingAuthority,
        "bench-trainer",
    )?);
    let lineage = warden_store::Lineage::create(
        &scratch.path().join("lineage"),
        warden_store::StoreOptions::new("bench-train").with_cadence(
            warden_store::Cadence::Window {
                records: 1 << 20,
                millis: 3_600_000,
            },
        ),
    )?;
    let mut sink = warden_train::lineage::LineageSink {
        lineage: &lineage,
        key,
    };
    outln!(
        "measuring: {} steps, batch {} x {} bytes, model {} layers x {} wide ({} parameters)",
        args.steps,
        args.shape.batch,
        args.shape.context,
        args.shape.layers,
        args.shape.width,
        n_params
    );
    let retain_every = config.policy.retain_every;
    let checkpoint_every = config.policy.checkpoint_every;
    let run_dir = scratch.path().join("run");
    let report = bench::overhead(config, corpus, &mut sink, Some(&run_dir), 3, args.steps)?;
    let n = report.steps;
    let t = &report.timings;
    let ratio = report.governed.as_secs_f64() / report.ungoverned.as_secs_f64().max(1e-12);
    outln!("ungoverned  {:8.2} ms/step", ms(report.ungoverned, n));
    outln!("governed    {:8.2} ms/step", ms(report.governed, n));
    outln!(
        "ratio       {:8.3}  (total governed/ungoverned; median per step {:.3}; target <= 1.03)",
        ratio,
        report.median_ratio
    );
    outln!("where the governed step's time goes (ms/step):");
    for (name, d) in [
        ("data gate (hash lookup, license/class)", t.data_gate),
        ("memorization detectors", t.detectors),
        (
            "forward+backward, routed per depth group",
            t.forward_backward,
        ),
        (
            "gradient gate (per-region stats, verdicts)",
            t.gradient_gate,
        ),
        ("optimizer (admitted regions only)", t.optimizer),
        ("evaluation gate", t.evaluation),
        ("parameter digest (sha256, checkpoint steps)", t.digest),
        ("retained checkpoint (encode, sha256, write)", t.retention),
        ("lineage record (build + append)", t.record),
        ("checkpoint (rollback snapshot, resume file)", t.checkpoint),
    ] {
        outln!("  {name:<44} {:8.3}", ms(d, n));
    }
    outln!(
        "  governance overhead outside fwd/bwd/optimizer: {:.3} ms/step ({:.1}% of the ungoverned step)",
        ms(t.governance(), n),
        100.0 * t.governance().as_secs_f64() / report.ungoverned.as_secs_f64().max(1e-12)
    );
    let audit = t.digest + t.retention;
    outln!(
        "  audit commitments (full digest at steps divisible by {} or {}, checkpoint retained every {}): {:.3} ms/step = {:.2}% of the governed step (target <= 3%)",
        retain_every,
        checkpoint_every,
        retain_every,
        ms(audit, n),
        100.0 * audit.as_secs_f64() / report.governed.as_secs_f64().max(1e-12)
    );
    outln!(
        "  all governance: {:.2}% of the governed step",
        100.0 * t.governance().as_secs_f64() / report.governed.as_secs_f64().max(1e-12)
    );
    outln!(
        "gradient routing: {:.2} forward/backward passes per step (one per depth group, each stopping its backward pass before its earliest admitted region): {:.2} ms/step vs {:.2} ms/step for one ungoverned pass over the whole batch",
        report.groups_per_step,
        ms(t.forward_backward, n),
        ms(report.baseline.forward_backward, n)
    );
    if report.groups_per_step > 1.0 {
        outln!(
            "  (routing does less backward work than the ungoverned pass for depths that may not reach early regions; \
             --single-depth compares without that saving)"
        );
    }
    lineage.close()?;
    Ok(())
}

pub fn bench_memorization(args: MemorizationArgs) -> anyhow::Result<()> {
    let scratch = scratch("bench-memorization")?;
    outln!(
        "preparing: synthetic corpus (scale {}), admission",
        args.scale
    );
    let (corpus, canaries, _) = bench::synthetic_corpus(scratch.path(), args.scale)?;
    let admitted = scratch.path().join("admitted");
    let mut rows = Vec::new();
    for (label, memorization) in [
        ("ungoverned", None),
        ("governed", Some((args.ngram, args.window))),
    ] {
        let config = bench_config(
            &admitted,
            args.steps,
            args.shape.layers,
            args.shape.width,
            args.shape.batch,
            args.shape.context,
            3e-3,
            memorization,
        )?;
        let bar = progress_bar(args.steps);
        bar.set_message(label);
        let row = bench::memorization_run(
            config,
            corpus.clone(),
            &canaries,
            "prose-heldout",
            args.candidates,
            &mut |i| bar.set_position(i),
        )?;
        bar.finish_and_clear();
        outln!(
            "{label}: trained {} steps in {:.1} s",
            args.steps,
            row.seconds
        );
        rows.push(row);
    }
    let (plain, governed) = (&rows[0], &rows[1]);
    outln!(
        "\ncanary exposure (log2 of {} candidates + 1 = {:.2} max) and greedy extraction",
        args.candidates,
        ((args.candidates + 1) as f64).log2()
    );
    outln!(
        "{:<24} {:>7} | {:>10} {:>9} | {:>10} {:>9}",
        "canary",
        "repeats",
        "exp ungov",
        "extract",
        "exp gov",
        "extract"
    );
    let repeats: std::collections::HashMap<String, u32> =
        serde_json::from_slice::<Vec<serde_json::Value>>(&std::fs::read(
            scratch.path().join("synth/canaries.json"),
        )?)?
        .iter()
        .filter_map(|c| {
            Some((
                c["secret"].as_str()?.to_string(),
                c["repeats"].as_u64()? as u32,
            ))
        })
        .collect();
    for ((canary, u), (_, g)) in plain.exposures.iter().zip(&governed.exposures) {
        outln!(
            "{:<24} {:>7} | {:>10.2} {:>9} | {:>10.2} {:>9}",
            canary.secret,
            repeats.get(&canary.secret).copied().unwrap_or(0),
            u.exposure,
            if u.extracted { "YES" } else { "no" },
            g.exposure,
            if g.extracted { "YES" } else { "no" }
        );
    }
    let extracted =
        |r: &bench::MemorizationRow| r.exposures.iter().filter(|(_, e)| e.extracted).count();
    outln!(
        "\nextracted canaries: ungoverned {} / {}, governed {} / {}",
        extracted(plain),
        plain.exposures.len(),
        extracted(governed),
        governed.exposures.len()
    );
    let cost = (governed.held_out_loss / plain.held_out_loss - 1.0) * 100.0;
    outln!(
        "held-out loss (prose-heldout): ungoverned {:.4}, governed {:.4} ({:+.2}%, target <= +2%)",
        plain.held_out_loss,
        governed.held_out_loss,
        cost
    );
    outln!(
        "governed detector masked {} repeated spans",
        governed.masked_spans
    );
    Ok(())
}

/// The training stage of `warden demo`: a small governed run on the admitted synthetic corpus,
/// appended to the demo lineage with the training-authority key, then verified.
pub fn demo_stage(ctx: &mut super::demo::DemoContext) -> anyhow::Result<()> {
    super::demo::heading("train: governed training on the admitted corpus");
    let corpus_dir = match &ctx.corpus_dir {
        Some(dir) => dir.clone(),
        None => {
            outln!("  (no corpus stage ran: synthesizing and admitting a small corpus here)");
            let dir = ctx.dir.join("train-corpus");
            let summary = warden_corpus::synth::write(
                &dir.join("synth"),
                &warden_corpus::synth::SynthOptions {
                    scale: 0.1,
                    ..Default::default()
                },
            )?;
            warden_corpus::admit(
                &summary.declaration,
                &dir.join("admitted"),
                &ctx.keys.corpus,
                &warden_corpus::AdmitOptions::default(),
            )?;
            ctx.synth_dir.get_or_insert(dir.join("synth"));
            dir.join("admitted")
        }
    };
    let mut config = bench_config(&corpus_dir, 60, 2, 48, 16, 64, 3e-3, Some((40, 1024)))?;
    config.policy.version = "demo-train-v1".into();
    config.policy.failure = warden_train::policy::FailureMode::Quarantine;
    config.policy.eval = warden_train::policy::EvalRule {
        sources: vec!["prose-heldout".into()],
        min_interval: 30,
        probes: vec!["loss".into(), "canary-exposure".into()],
    };
    let canaries = ctx.synth_dir.as_ref().map(|d| d.join("canaries.json"));
    config.eval = Some(warden_train::config::EvalRequest {
        every: 30,
        sources: vec!["prose-heldout".into()],
        probes: vec!["loss".into(), "canary-exposure".into()],
        max_samples: 32,
        candidates: 63,
        canaries: canaries.clone(),
    });
    outln!(
        "  model {} layers x {} wide ({} parameters), {} steps of {} x {} bytes, policy {}",
        config.model.layers,
        config.model.width,
        config.model.n_parameters(),
        config.steps,
        config.batch_size,
        config.model.context,
        config.policy.version
    );
    // The config a user can start from: `warden train DEMO/train.toml --out RUN_DIR …`.
    let config_path = ctx.dir.join("train.toml");
    warden_store::fs::atomic_write(&config_path, config.to_toml()?.as_bytes())?;
    outln!("  config: {}", config_path.display());
    let run_dir = ctx.dir.join("train-run");
    let before = ctx.lineage()?.len();
    let started = std::time::Instant::now();
    // The run appends to the demo's one lineage; the run directory (config.toml, policy.toml,
    // run.json, checkpoints, model, manifest) is a real run that `warden train resume` continues.
    ctx.release_lineage()?;
    let summary = run::start(
        &config_path,
        &run_dir,
        ctx.keys.training.clone(),
        &ctx.trust,
        Some(&ctx.lineage_dir),
        &mut |_, _| {},
    )?;
    ctx.reopen_lineage()?;
    ctx.run_dir = Some(run_dir.clone());
    outln!(
        "  trained {} iterations in {:.1} s, final loss {:.3}",
        summary.iterations,
        started.elapsed().as_secs_f64(),
        summary.final_loss.unwrap_or(f32::NAN)
    );
    outln!("  gates: {}", gate_line(&summary.counts));
    outln!(
        "  lineage: {} training records appended (train.start, train.iteration x{}, train.complete)",
        ctx.lineage()?.len() - before,
        summary.iterations
    );
    let lineage = ctx.lineage()?;
    let records = lineage.read_range(before..lineage.len())?;
    if let Some(eval) = records
        .iter()
        .rev()
        .map(|r| &r.record.payload["evaluation"])
        .find(|e| e.get("sources").is_some())
    {
        let exposures: Vec<String> = eval["canaries"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|c| format!("{:.1}", c["exposure"].as_f64().unwrap_or(f64::NAN)))
                    .collect()
            })
            .unwrap_or_default();
        outln!(
            "  authorized evaluation: held-out loss {:.3}, canary exposures [{}] (max {:.1})",
            eval["sources"]["prose-heldout"]["loss"]
                .as_f64()
                .unwrap_or(f64::NAN),
            exposures.join(", "),
            64f64.log2()
        );
    }
    let envelope = warden_attest::Envelope::from_json(
        &std::fs::read_to_string(&summary.manifest).context("reading the manifest")?,
    )?;
    let verified = warden_attest::verify_envelope(&envelope, &ctx.trust, Role::TrainingAuthority)?;
    outln!(
        "  manifest {} verifies: in-toto {} about {} (signed by {})",
        summary.manifest.display(),
        verified.statement.predicate_type,
        verified.statement.subject[0].name,
        verified.signer
    );
    let lineage = warden_store::verify(
        &ctx.lineage_dir,
        &ctx.trust,
        &warden_store::VerifyOptions::default(),
    )?;
    outln!(
        "  lineage verifies: {} records, {} sealed, {} checkpoints",
        lineage.records,
        lineage.sealed,
        lineage.checkpoints
    );
    Ok(())
}
