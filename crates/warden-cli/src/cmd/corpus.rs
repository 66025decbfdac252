//! `warden corpus …` (admit, verify, prove, synth), `warden bench corpus`, and the demo's corpus
//! stage. Thin: flags and printing; the work is in `warden-corpus`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use warden_corpus::prove::{prove, verify_proof, Proof};
use warden_corpus::synth::{self, SynthOptions};
use warden_corpus::verify::{verify, SourceStatus, VerifyReport};
use warden_corpus::{admit, Admission, AdmitOptions, AdmittedCorpus};
use warden_keys::{Role, SigningKey};
use warden_lineage::RecordDraft;
use warden_store::{fs, Lineage, StoreOptions};

/// The lineage record kind an admission appends.
pub const ADMISSION_KIND: &str = "corpus.admission";

#[derive(Subcommand)]
pub enum Command {
    /// Admit the corpus a declaration describes: hash, flag, fingerprint, sign, record.
    Admit {
        /// The declaration (TOML).
        declaration: PathBuf,
        /// Output directory for the signed declaration and its indexes.
        #[arg(long)]
        out: PathBuf,
        /// The corpus-authority private key.
        #[arg(long)]
        key: PathBuf,
        /// The lineage to append the `corpus.admission` record to (default: OUT/lineage).
        #[arg(long)]
        lineage: Option<PathBuf>,
        /// Exclude and list malformed JSONL lines instead of failing on the first.
        #[arg(long)]
        skip_malformed: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Print one `stats:` line with throughput, CPU time and peak memory (VmHWM).
        #[arg(long)]
        stats: bool,
    },
    /// Check the signature and outputs, re-derive roots from the data, report changed samples.
    Verify {
        dir: PathBuf,
        /// Trust file (default: trust.toml next to DIR).
        #[arg(long)]
        trust: Option<PathBuf>,
    },
    /// Print an inclusion proof for a sample hash, or a proof of its absence (JSON).
    Prove {
        dir: PathBuf,
        /// The sample hash (64 hex digits; `printf '%s' "$text" | sha256sum`).
        #[arg(long)]
        sample: String,
        #[arg(long)]
        trust: Option<PathBuf>,
    },
    /// Write the deterministic synthetic corpus, its declaration.toml and canaries.json.
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = SynthOptions::default().seed)]
        seed: u64,
        /// 1.0 is about 4 MB.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Admit {
            declaration,
            out,
            key,
            lineage,
            skip_malformed,
            quiet,
            stats,
        } => {
            let key = Arc::new(fs::load_signing_key(&key)?);
            let options = AdmitOptions {
                skip_malformed,
                progress: !quiet,
                ..AdmitOptions::default()
            };
            let cpu_before = cpu_seconds();
            let admission = admit(&declaration, &out, &key, &options)?;
            if stats {
                // Measured right after admission: the lineage append below is not included.
                let secs = admission.elapsed.as_secs_f64();
                let t = &admission.body.totals;
                outln!(
                    "stats: bytes={} samples={} secs={secs:.4} cpu_secs={:.2} peak_rss_mb={:.1}",
                    t.bytes,
                    t.n_samples,
                    cpu_seconds()
                        .zip(cpu_before)
                        .map_or(f64::NAN, |(a, b)| a - b),
                    peak_rss_mb().unwrap_or(f64::NAN)
                );
            }
            print_admission(&admission);
            let lineage_dir = lineage.unwrap_or_else(|| out.join("lineage"));
            let lineage =
                Lineage::open_or_create(&lineage_dir, StoreOptions::new("warden.local/lineage"))?;
            let appended = record_admission(&lineage, &admission, &key)?;
            lineage.close()?;
            outln!(
                "lineage: {ADMISSION_KIND} record {appended} in {}",
                lineage_dir.display()
            );
            Ok(())
        }
        Command::Verify { dir, trust } => {
            let (trust, _) = super::lineage::resolve_trust(&dir, trust)?;
            let report = verify(&dir, &trust)?;
            print_verify(&report);
            if !report.unchanged() {
                anyhow::bail!(
                    "{}: the data changed since admission (see above)",
                    dir.display()
                );
            }
            Ok(())
        }
        Command::Prove { dir, sample, trust } => {
            let (trust, _) = super::lineage::resolve_trust(&dir, trust)?;
            let corpus = AdmittedCorpus::load(&dir, &trust)?;
            let hash = warden_corpus::parse_hash(&sample)?;
            let proof = prove(&corpus, &hash)?;
            let source_root = match &proof {
                Proof::Inclusion { source, .. } => corpus
                    .sources()
                    .iter()
                    .find(|s| s.id == source.source)
                    .and_then(|s| s.root),
                Proof::Absence { .. } => None,
            };
            // Never print a proof that does not check against the signed roots.
            verify_proof(&proof, &corpus.root(), source_root.as_ref())?;
            outln!("{}", serde_json::to_string_pretty(&proof)?);
            match &proof {
                Proof::Inclusion { source, .. } => eprintln!(
                    "included: sample {sample} is admitted (first at source `{}` line {}); proof verified against corpus root {}",
                    source.source,
                    source.line,
                    hex::encode(corpus.root())
                ),
                Proof::Absence { note, .. } => eprintln!(
                    "absent: sample {sample} is not in the admitted corpus{}; proof verified against corpus root {}",
                    note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
                    hex::encode(corpus.root())
                ),
            }
            Ok(())
        }
        Command::Synth { out, seed, scale } => {
            let summary = synth::write(&out, &SynthOptions { seed, scale })?;
            outln!(
                "wrote {:.1} MB synthetic corpus to {} ({} canaries); declaration: {}",
                summary.bytes as f64 / 1e6,
                out.display(),
                summary.canaries.len(),
                summary.declaration.display()
            );
            Ok(())
        }
    }
}

/// Appends the `corpus.admission` record; returns its index.
pub fn record_admission(
    lineage: &Lineage,
    admission: &Admission,
    key: &Arc<SigningKey>,
) -> anyhow::Result<u64> {
    let payload = admission
        .body
        .lineage_payload(&admission.declaration_digest, &key.key_ref());
    let appended = lineage.append(RecordDraft::new(ADMISSION_KIND, payload), key)?;
    Ok(appended.index)
}

fn print_admission(a: &Admission) {
    let b = &a.body;
    outln!(
        "admitted corpus `{}` into {} in {:.2} s",
        b.name,
        a.out_dir.display(),
        a.elapsed.as_secs_f64()
    );
    outln!(
        "  {:<16} {:<15} {:<22} {:>9} {:>8} {:>9} {:>10}",
        "source",
        "class",
        "license",
        "decision",
        "samples",
        "flagged",
        "MB"
    );
    for s in &b.sources {
        outln!(
            "  {:<16} {:<15} {:<22} {:>9} {:>8} {:>9} {:>10.2}{}",
            s.id,
            s.class,
            s.license,
            s.decision,
            s.n_samples,
            s.n_flagged,
            s.bytes as f64 / 1e6,
            if s.held_out { "  (held out)" } else { "" }
        );
    }
    for s in b.sources.iter().filter_map(|s| s.refusal.as_ref()) {
        outln!("  refused: {s}");
    }
    outln!("  per class:");
    for c in &b.classes {
        outln!(
            "    {:<15} sources {} (refused {}), samples {}, admitted {}, flagged {}{}",
            c.class,
            c.n_sources,
            c.n_refused_sources,
            c.n_samples,
            c.n_admitted,
            c.n_flagged,
            c.fingerprint
                .as_ref()
                .map(|f| format!(
                    ", fingerprint {} grams (FPR {})",
                    f.n_grams, f.false_positive_rate
                ))
                .unwrap_or_default()
        );
    }
    let t = &b.totals;
    outln!(
        "  excluded: {} flagged, {} malformed (all listed in {})",
        t.n_flagged,
        t.n_malformed,
        a.out_dir.join(&b.exclusions.file.file).display()
    );
    for e in a.first_exclusions.iter().take(5) {
        outln!(
            "    {} ({}): source `{}` line {}, sample {}",
            e.reason,
            e.detail,
            e.source,
            e.line,
            e.hash
        );
    }
    outln!(
        "  {} distinct admitted samples; corpus root {}",
        t.n_unique_admitted,
        b.corpus_root
    );
    outln!("  declaration sha256 {}", hex::encode(a.declaration_digest));
}

fn print_verify(r: &VerifyReport) {
    outln!(
        "signature ok (signer {}), declaration sha256 {}, corpus root {} over {} samples re-derived from the index",
        r.signer,
        hex::encode(r.declaration_digest),
        hex::encode(r.root),
        r.n_unique_admitted
    );
    for s in &r.sources {
        match &s.status {
            SourceStatus::Refused => outln!("  {:<16} refused at admission (not read)", s.id),
            SourceStatus::Missing(why) => outln!(
                "  {:<16} data not present ({why}): root not re-derived",
                s.id
            ),
            SourceStatus::Unchanged { n_samples } => {
                outln!(
                    "  {:<16} ok: root re-derived from {n_samples} samples",
                    s.id
                )
            }
            SourceStatus::Changed {
                n_changes, changes, ..
            } => {
                outln!(
                    "  {:<16} CHANGED: {n_changes} samples differ from admission",
                    s.id
                );
                for c in changes {
                    let at = match (&c.file, c.file_line) {
                        (Some(f), Some(l)) => format!(" ({}:{l})", f.display()),
                        _ => String::new(),
                    };
                    outln!(
                        "    {} source `{}` line {}{at}",
                        c.kind.as_str(),
                        s.id,
                        c.line
                    );
                }
            }
        }
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// Tiny Shakespeare (relative paths resolve against the repository root).
    #[arg(long, default_value = "../shared/data/tinyshakespeare.txt")]
    shakespeare: PathBuf,
    /// Size of the large generated corpus, MB of admitted text.
    #[arg(long, default_value_t = 200)]
    size_mb: u64,
    /// Size of the smaller generated corpus used to show memory does not grow with size.
    #[arg(long, default_value_t = 50)]
    small_mb: u64,
    /// Also admit a corpus of this many MB (e.g. 400) to extend the memory comparison.
    #[arg(long)]
    also_mb: Option<u64>,
    /// Where to generate and admit (default: the system temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn resolve_in_repo(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        path.to_path_buf()
    } else {
        repo_root().join(path)
    }
}

/// Peak resident memory since the last reset, from /proc/self/status (VmHWM), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct Run {
    label: String,
    mb: f64,
    samples: u64,
    secs: f64,
    cpu_secs: Option<f64>,
    peak_mb: Option<f64>,
}

/// Admits in a child process (`warden corpus admit --stats`), so each run's peak memory is its
/// own and not what the allocator kept from the previous run.
fn bench_admit(
    label: &str,
    decl: &Path,
    out: &Path,
    key_file: &Path,
    threads: Option<usize>,
) -> anyhow::Result<Run> {
    let exe = std::env::current_exe().context("locating the warden binary")?;
    let mut command = std::process::Command::new(exe);
    command
        .args(["corpus", "admit"])
        .arg(decl)
        .arg("--out")
        .arg(out)
        .arg("--key")
        .arg(key_file)
        .arg("--lineage")
        .arg(out.with_extension("lineage"))
        .args(["--quiet", "--stats"]);
    if let Some(n) = threads {
        command.env("RAYON_NUM_THREADS", n.to_string());
    }
    let output = command.output().context("running warden corpus admit")?;
    if !output.status.success() {
        anyhow::bail!(
            "benchmark admission failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stats: "))
        .ok_or_else(|| anyhow::anyhow!("no stats line from the admission"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .ok_or_else(|| anyhow::anyhow!("stats line lacks {name}"))?
            .parse::<f64>()
            .with_context(|| format!("stats field {name}"))
    };
    let run = Run {
        label: label.to_string(),
        mb: field("bytes")? / 1e6,
        samples: field("samples")? as u64,
        secs: field("secs")?,
        cpu_secs: Some(field("cpu_secs")?).filter(|c| c.is_finite()),
        peak_mb: Some(field("peak_rss_mb")?).filter(|p| p.is_finite()),
    };
    let cpu = run.cpu_secs.map_or("n/a".to_string(), |c| {
        format!("{c:.2} s ({:.2} cores busy)", c / run.secs)
    });
    outln!(
        "{:<38} {:>6.1} MB {:>8} samples {:>6.2} s {:>7.1} MB/s {:>8.0} samples/s  cpu {cpu}  peak RSS {}",
        run.label,
        run.mb,
        run.samples,
        run.secs,
        run.mb / run.secs,
        run.samples as f64 / run.secs,
        run.peak_mb.map_or("n/a".to_string(), |m| format!("{m:.0} MB"))
    );
    std::fs::remove_dir_all(out).with_context(|| out.display().to_string())?;
    let _ = std::fs::remove_dir_all(out.with_extension("lineage"));
    Ok(run)
}

/// Synth scale giving about `mb` MB of admitted text (refused sources are not read).
fn scale_for(mb: u64) -> f64 {
    mb as f64 / 3.6
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let base = args
        .dir
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("warden-bench-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&base).with_context(|| base.display().to_string())?;
    let result = bench_in(
        &base,
        &args.shakespeare,
        args.small_mb,
        args.size_mb,
        args.also_mb,
    );
    let _ = std::fs::remove_dir_all(&base);
    result
}

fn bench_in(
    base: &Path,
    shakespeare: &Path,
    small_mb: u64,
    size_mb: u64,
    also_mb: Option<u64>,
) -> anyhow::Result<()> {
    let key = SigningKey::generate(Role::CorpusAuthority, "bench.corpus")?;
    let key_file = base.join("bench-corpus.key");
    fs::atomic_write_private(&key_file, key.to_file_text().as_bytes())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    outln!("warden bench corpus ({cores} cores; admission = stream + SHA-256 + flaggers + 8-gram fingerprints + Merkle roots + signed outputs with fsync)");

    let shakespeare = resolve_in_repo(shakespeare);
    let shakespeare = std::fs::canonicalize(&shakespeare)
        .with_context(|| format!("{} (pass --shakespeare PATH)", shakespeare.display()))?;
    let decl = base.join("shakespeare.toml");
    std::fs::write(
        &decl,
        format!(
            "[corpus]\nname = \"tinyshakespeare\"\n[policy]\nadmitted_licenses = [\"CC0-1.0\"]\n[[source]]\nid = \"shakespeare\"\npath = {}\nformat = \"text\"\nlicense = \"CC0-1.0\"\nclass = \"public-domain\"\nprovenance = {{ origin = \"karpathy/char-rnn\", collected = \"2015\", collector = \"bench\" }}\n",
            toml::Value::String(shakespeare.display().to_string())
        ),
    )?;
    bench_admit(
        "tinyshakespeare (speeches as documents)",
        &decl,
        &base.join("out-shakespeare"),
        &key_file,
        None,
    )?;

    let mut runs = Vec::new();
    for mb in [small_mb, size_mb].into_iter().chain(also_mb) {
        let dir = base.join(format!("synth-{mb}"));
        let started = Instant::now();
        let summary = synth::write(
            &dir,
            &SynthOptions {
                seed: 1,
                scale: scale_for(mb),
            },
        )?;
        outln!(
            "  (generated {:.0} MB synthetic corpus in {:.1} s, not timed below)",
            summary.bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        runs.push(bench_admit(
            &format!("synthetic {mb} MB, {cores} worker threads"),
            &summary.declaration,
            &base.join("out"),
            &key_file,
            None,
        )?);
        if mb == small_mb {
            runs.push(bench_admit(
                &format!("synthetic {mb} MB, 1 worker thread"),
                &summary.declaration,
                &base.join("out"),
                &key_file,
                Some(1),
            )?);
        }
        std::fs::remove_dir_all(&dir)?;
    }
    let (small, one_thread, large) = (&runs[0], &runs[1], &runs[2]);
    outln!(
        "parallel speedup at {small_mb} MB: {:.2}x ({cores} worker threads vs 1)",
        (small.mb / small.secs) / (one_thread.mb / one_thread.secs)
    );
    let peaks: Vec<String> = [small, large]
        .into_iter()
        .chain(runs.get(3))
        .filter_map(|r| r.peak_mb.map(|p| format!("{p:.0} MB at {:.0} MB", r.mb)))
        .collect();
    if peaks.is_empty() {
        outln!("peak RSS: not measurable here (/proc/self/clear_refs unavailable)");
    } else {
        outln!(
            "peak RSS (bounded by fixed buffers, not corpus size): {}",
            peaks.join(", ")
        );
    }
    outln!(
        "target >= 150 MB/s on 2 cores at {size_mb} MB: {:.1} MB/s ({})",
        large.mb / large.secs,
        if large.mb / large.secs >= 150.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

/// The demo's corpus stage: synth → admit (demo corpus key, demo lineage) → verify.
pub fn demo_stage(ctx: &mut super::demo::DemoContext) -> anyhow::Result<()> {
    super::demo::heading("corpus: synthesize, admit, verify");
    let synth_dir = ctx.dir.join("corpus-synth");
    let summary = synth::write(&synth_dir, &SynthOptions::default())?;
    outln!(
        "  synthesized {:.1} MB in {} ({} canaries, repeats {:?})",
        summary.bytes as f64 / 1e6,
        synth_dir.display(),
        summary.canaries.len(),
        summary
            .canaries
            .iter()
            .map(|c| c.repeats)
            .collect::<Vec<_>>()
    );
    let corpus_dir = ctx.dir.join("corpus");
    let admission = admit(
        &summary.declaration,
        &corpus_dir,
        &ctx.keys.corpus,
        &AdmitOptions::default(),
    )?;
    print_admission(&admission);
    let index = record_admission(&ctx.lineage, &admission, &ctx.keys.corpus)?;
    outln!("  lineage: {ADMISSION_KIND} record {index}");
    let report = verify(&corpus_dir, &ctx.trust)?;
    print_verify(&report);
    if !report.unchanged() {
        anyhow::bail!("the freshly admitted corpus does not verify");
    }
    ctx.synth_dir = Some(synth_dir);
    ctx.corpus_dir = Some(corpus_dir);
    Ok(())
}
