//! `warden corpus …` (admit, verify, prove, synth), `warden bench corpus`, and the demo's corpus
//! stage. Thin: flags and printing; the work is in `warden-corpus`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use warden_corpus::prove::{prove, verify_proof, Proof};
use warden_corpus::synth::{self, SynthOptions};
use warden_corpus::verify::{verify, SourceStatus, VerifyReport};
use warden_corpus::{
    admit, check_signing_key, Admission, AdmitOptions, AdmitProgress, AdmittedCorpus, ProgressFn,
};
use warden_keys::{Role, SigningKey, TrustStore};
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
        /// Trust file that must trust KEY for the corpus-authority role, checked before anything
        /// is written (default: trust.toml next to OUT).
        #[arg(long)]
        trust: Option<PathBuf>,
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
        /// Succeed even when an admitted source's data is not present (its root is then not
        /// re-derived: only the signature and the admission's own files are checked).
        #[arg(long)]
        allow_missing_data: bool,
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
            trust,
            lineage,
            skip_malformed,
            quiet,
            stats,
        } => {
            let key = Arc::new(fs::load_signing_key(&key)?);
            // The key must be trusted for its role before anything is written.
            let trust = load_trust_beside(&out, trust)?;
            check_signing_key(&key, &trust)?;
            let bar = admission_bar(quiet);
            let options = AdmitOptions {
                skip_malformed,
                progress: bar.as_ref().map(progress_reporter),
                ..AdmitOptions::default()
            };
            let cpu_before = cpu_seconds();
            let admission = admit(&declaration, &out, &key, &options);
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            let admission = admission?;
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
            // The origin is used only if the lineage is new; the trust store authenticates a
            // tail an earlier process left unsealed before anything is appended after it.
            let lineage = Lineage::open_or_create(
                &lineage_dir,
                StoreOptions::new("warden.local/lineage").with_trust(Arc::new(trust.clone())),
            )?;
            // Appended after the admission is in place; a re-run after a crash between the two
            // finds the admission complete and appends the missing record (only then). Only a
            // re-run reads the lineage back: a fresh admission is a new event.
            let existing = if admission.already_admitted {
                find_admission_record(&lineage, &admission.declaration_digest)?
            } else {
                None
            };
            let recorded = match existing {
                Some(index) => {
                    outln!(
                        "lineage: {ADMISSION_KIND} record {index} in {} already records this admission",
                        lineage_dir.display()
                    );
                    Ok(())
                }
                None => record_admission(&lineage, &admission, &key).map(|appended| {
                    outln!(
                        "lineage: {ADMISSION_KIND} record {appended} in {}",
                        lineage_dir.display()
                    )
                }),
            };
            lineage.close()?;
            recorded
        }
        Command::Verify {
            dir,
            trust,
            allow_missing_data,
        } => {
            let (trust, _) = super::lineage::resolve_trust(&dir, trust)?;
            let report = verify(&dir, &trust)?;
            print_verify(&report);
            if !report.unchanged() {
                anyhow::bail!(
                    "{}: the data changed since admission (see above)",
                    dir.display()
                );
            }
            let missing = report.missing();
            if !missing.is_empty() {
                let ids: Vec<&str> = missing.iter().map(|s| s.id.as_str()).collect();
                if !allow_missing_data {
                    anyhow::bail!(
                        "{}: the data of {} admitted source(s) ({}) is not present, so it was not verified; move the corpus back (source paths resolve relative to the admission directory) or pass --allow-missing-data to check only the signature and the admission's files",
                        dir.display(),
                        ids.len(),
                        ids.join(", ")
                    );
                }
                eprintln!(
                    "warning: --allow-missing-data: the data of {} ({}) was NOT verified",
                    ids.len(),
                    ids.join(", ")
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

/// The trust file `--trust` names, or `trust.toml` next to `out` (the directory that will hold
/// it: `out` need not exist yet).
fn load_trust_beside(out: &Path, trust: Option<PathBuf>) -> anyhow::Result<TrustStore> {
    let path = match trust {
        Some(path) => path,
        None => {
            let parent = match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let candidate = parent.join("trust.toml");
            if !candidate.exists() {
                anyhow::bail!(
                    "no trust file: pass --trust FILE (looked for {}); the signing key must be trusted for corpus-authority",
                    candidate.display()
                );
            }
            candidate
        }
    };
    Ok(fs::load_trust(&path)?)
}

/// A progress bar on stderr (hidden when stderr is not a terminal), or none with `--quiet`.
fn admission_bar(quiet: bool) -> Option<ProgressBar> {
    if quiet {
        return None;
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} admitting {msg:12} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// The admission progress callback drawing `bar`.
fn progress_reporter(bar: &ProgressBar) -> ProgressFn {
    let bar = bar.clone();
    Arc::new(move |event| match event {
        AdmitProgress::Started { total_bytes } => bar.set_length(total_bytes),
        AdmitProgress::Source { id } => bar.set_message(id.to_string()),
        AdmitProgress::Read { bytes } => bar.inc(bytes),
        AdmitProgress::SourcesRead => bar.finish_and_clear(),
    })
}

/// The index of the `corpus.admission` record for the declaration digest `digest`, if the
/// lineage has one. Read backwards in batches (the latest admissions are the likely ones), so
/// memory stays bounded whatever the lineage's size.
pub fn find_admission_record(lineage: &Lineage, digest: &[u8; 32]) -> anyhow::Result<Option<u64>> {
    const BATCH: u64 = 4096;
    let digest = hex::encode(digest);
    let mut end = lineage.len();
    while end > 0 {
        let start = end.saturating_sub(BATCH);
        let records = lineage.read_range(start..end)?;
        if let Some(found) = records.iter().rev().find(|r| {
            r.record.kind == ADMISSION_KIND
                && r.record.payload["declaration_sha256"].as_str() == Some(digest.as_str())
        }) {
            return Ok(Some(found.record.seq));
        }
        end = start;
    }
    Ok(None)
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
    if a.already_admitted {
        outln!(
            "already admitted: {} holds this admission (declaration sha256 {}); nothing rewritten",
            a.out_dir.display(),
            hex::encode(a.declaration_digest)
        );
    } else {
        outln!(
            "admitted corpus `{}` into {} in {:.2} s",
            b.name,
            a.out_dir.display(),
            a.elapsed.as_secs_f64()
        );
    }
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
    /// Also admit this text file (blank-line-separated documents), e.g. tinyshakespeare.txt.
    /// By default only the embedded synthetic corpus is used, generated at the sizes below.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
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

/// Admits one text file given with `--input` (e.g. tinyshakespeare: speeches as documents).
fn bench_input(base: &Path, input: &Path, key_file: &Path) -> anyhow::Result<()> {
    let input =
        std::fs::canonicalize(input).with_context(|| format!("--input {}", input.display()))?;
    let name = input
        .file_name()
        .map_or_else(|| "input".to_string(), |n| n.to_string_lossy().into_owned());
    let decl = base.join("input.toml");
    std::fs::write(
        &decl,
        format!(
            "[corpus]\nname = \"bench-input\"\n[policy]\nadmitted_licenses = [\"CC0-1.0\"]\n[[source]]\nid = \"input\"\npath = {}\nformat = \"text\"\nlicense = \"CC0-1.0\"\nclass = \"public-domain\"\nprovenance = {{ origin = {}, collected = \"unknown\", collector = \"bench\" }}\n",
            toml::Value::String(input.display().to_string()),
            toml::Value::String(name.clone())
        ),
    )?;
    bench_admit(
        &format!("{name} (blank-line documents)"),
        &decl,
        &base.join("out-input"),
        key_file,
        None,
    )?;
    Ok(())
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
        args.input.as_deref(),
        args.small_mb,
        args.size_mb,
        args.also_mb,
    );
    let _ = std::fs::remove_dir_all(&base);
    result
}

fn bench_in(
    base: &Path,
    input: Option<&Path>,
    small_mb: u64,
    size_mb: u64,
    also_mb: Option<u64>,
) -> anyhow::Result<()> {
    let key = SigningKey::generate(Role::CorpusAuthority, "bench.corpus")?;
    let key_file = base.join("bench-corpus.key");
    fs::atomic_write_private(&key_file, key.to_file_text().as_bytes())?;
    let mut trust = TrustStore::new();
    trust.add(Role::CorpusAuthority, key.public().clone());
    fs::atomic_write(&base.join("trust.toml"), trust.to_toml().as_bytes())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    outln!("warden bench corpus ({cores} cores; admission = stream + SHA-256 + flaggers + 8-gram fingerprints + Merkle roots + signed outputs with fsync)");

    if let Some(input) = input {
        bench_input(base, input, &key_file)?;
    }

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
    check_signing_key(&ctx.keys.corpus, &ctx.trust)?;
    let admission = admit(
        &summary.declaration,
        &corpus_dir,
        &ctx.keys.corpus,
        &AdmitOptions::default(),
    )?;
    print_admission(&admission);
    let index = record_admission(ctx.lineage()?, &admission, &ctx.keys.corpus)?;
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
