//! `warden lineage …` (init, verify, show, prove, export, recover) and `warden bench lineage`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::{
    RecordDraft, RecordFault, SignedCheckpoint, SignedRecord, UnsealedTail, VerifyError,
};
use warden_merkle::MerkleTree;
use warden_store::{fs, Cadence, Lineage, StoreOptions, VerifyOptions};

#[derive(Subcommand)]
pub enum Command {
    /// Create a lineage whose origin (and record signing) is chosen once; every command
    /// (corpus, policy, train) then appends to it, whatever origin it would have used itself.
    Init {
        dir: PathBuf,
        /// The checkpoint origin: a URL-like name unique to this log, e.g. example.com/warden.
        #[arg(long)]
        origin: String,
        /// `record`: every record signed, a checkpoint per window (a crash leaves an
        /// authenticated tail). `window`: unsigned records sealed by the window's checkpoint
        /// (faster; a crash leaves a tail that `lineage recover` must move aside).
        #[arg(long, value_enum, default_value_t = CadenceArg::Record)]
        cadence: CadenceArg,
    },
    /// Move records after the last checkpoint that cannot be authenticated (no signature the
    /// trust file accepts, or damaged) into a side file in DIR, so appending can continue.
    Recover {
        dir: PathBuf,
        /// Trust file (default: trust.toml next to DIR).
        #[arg(long)]
        trust: Option<PathBuf>,
    },
    /// Verify every record, chain link, signature and checkpoint; print a summary line.
    /// Unsigned records after the last checkpoint are unauthenticated and fail verification.
    Verify {
        dir: PathBuf,
        /// Trust file (default: trust.toml next to DIR).
        #[arg(long)]
        trust: Option<PathBuf>,
        /// Fail unless the log holds exactly N records.
        #[arg(long)]
        expect_size: Option<u64>,
        /// Accept unsigned records after the last checkpoint (a writer that has not sealed yet,
        /// or crashed); they are reported as unauthenticated.
        #[arg(long)]
        allow_unsealed: bool,
        /// A checkpoint note seen earlier (`warden lineage checkpoint DIR --out FILE`): fail
        /// unless the log contains it and its latest checkpoint extends it (consistency proof).
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Print the latest signed checkpoint (C2SP signed note), to pin with `verify --checkpoint`.
    Checkpoint {
        dir: PathBuf,
        /// Write the note to FILE (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print records, as text or JSON lines.
    Show {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// Records a..b (half-open), e.g. `0..10`.
        #[arg(long)]
        range: Option<String>,
    },
    /// Print an inclusion proof for a record, or a consistency proof between two sizes.
    Prove {
        dir: PathBuf,
        /// The record to prove.
        #[arg(long, conflicts_with = "consistency")]
        index: Option<u64>,
        /// Prove the tree of OLD_SIZE records is a prefix of the current one.
        #[arg(long)]
        consistency: Option<u64>,
        /// The tree size to prove against (default: the latest checkpoint).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Append records as fast as possible until killed (used by the crash benchmark).
    #[command(hide = true)]
    StressAppend {
        dir: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// One measured phase of `bench lineage` in a fresh process, so its peak RSS is its own.
    #[command(hide = true)]
    BenchPhase {
        dir: PathBuf,
        #[arg(long, value_enum)]
        phase: Phase,
        #[arg(long)]
        trust: PathBuf,
    },
    /// Export every record as JSON lines or a CBOR sequence (RFC 8742).
    Export {
        dir: PathBuf,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CadenceArg {
    Record,
    Window,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Phase {
    Verify,
    Open,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Json,
    Cbor,
}

/// The trust file: `--trust`, else `trust.toml` beside the lineage directory.
pub fn resolve_trust(dir: &Path, trust: Option<PathBuf>) -> anyhow::Result<(TrustStore, PathBuf)> {
    let path = match trust {
        Some(p) => p,
        None => {
            let parent = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from("."));
            let candidate = parent.join("trust.toml");
            if !candidate.exists() {
                anyhow::bail!(
                    "no trust file: pass --trust FILE, the keys you accept per role (`warden key trust`); looked for {}",
                    candidate.display()
                );
            }
            candidate
        }
    };
    Ok((fs::load_trust(&path)?, path))
}

fn parse_range(text: &str) -> anyhow::Result<Range<u64>> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| anyhow::anyhow!("range `{text}` is not a..b"))?;
    let start = if a.is_empty() {
        0
    } else {
        a.parse().with_context(|| format!("range start `{a}`"))?
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        b.parse().with_context(|| format!("range end `{b}`"))?
    };
    Ok(start..end)
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Verify {
            dir,
            trust,
            expect_size,
            allow_unsealed,
            checkpoint,
        } => verify_command(&dir, trust, expect_size, allow_unsealed, checkpoint),
        Command::Checkpoint { dir, out } => {
            let checkpoints = warden_store::read_checkpoints(&dir)?;
            let latest = checkpoints
                .last()
                .ok_or_else(|| anyhow::anyhow!("{}: no checkpoint yet", dir.display()))?;
            let note = latest.to_note();
            match out {
                Some(path) => {
                    fs::atomic_write(&path, note.as_bytes())?;
                    eprintln!(
                        "wrote checkpoint (size {}, root {}) to {}",
                        latest.checkpoint.size,
                        hex::encode(latest.checkpoint.root),
                        path.display()
                    );
                }
                None => out!("{note}"),
            }
            Ok(())
        }
        Command::Show { dir, json, range } => {
            let range = match range {
                Some(r) => parse_range(&r)?,
                None => 0..u64::MAX,
            };
            // Streamed: one record in memory at a time, however long the log.
            for r in warden_store::records(&dir)? {
                let r = r?;
                if r.record.seq >= range.end {
                    break;
                }
                if !range.contains(&r.record.seq) {
                    continue;
                }
                if json {
                    outln!("{}", r.to_json());
                } else {
                    outln!("{}", summary_line(&r));
                }
            }
            Ok(())
        }
        Command::Prove {
            dir,
            index,
            consistency,
            size,
        } => {
            let records = warden_store::read_all(&dir)?;
            let tree: MerkleTree = records.iter().map(SignedRecord::leaf_hash).collect();
            let checkpoints = warden_store::read_checkpoints(&dir)?;
            let size = size
                .or_else(|| checkpoints.last().map(|c| c.checkpoint.size))
                .unwrap_or(tree.len());
            let root = tree.root_at(size)?;
            if let Some(index) = index {
                let proof = tree.inclusion_proof(index, size)?;
                let leaf = tree
                    .leaf(index)
                    .ok_or_else(|| anyhow::anyhow!("no record {index}"))?;
                warden_merkle::verify_inclusion(&leaf, index, size, &proof, &root)?;
                print_proof(
                    "inclusion",
                    &json!({
                        "index": index,
                        "tree_size": size,
                        "leaf_hash": hex::encode(leaf),
                        "root": hex::encode(root),
                        "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                    }),
                    &checkpoints,
                    size,
                );
            } else if let Some(old) = consistency {
                let proof = tree.consistency_proof(old, size)?;
                let old_root = tree.root_at(old)?;
                warden_merkle::verify_consistency(old, size, &old_root, &root, &proof)?;
                print_proof(
                    "consistency",
                    &json!({
                        "old_size": old,
                        "old_root": hex::encode(old_root),
                        "tree_size": size,
                        "root": hex::encode(root),
                        "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                    }),
                    &checkpoints,
                    size,
                );
            } else {
                anyhow::bail!("pass --index N or --consistency OLD_SIZE");
            }
            Ok(())
        }
        Command::Init {
            dir,
            origin,
            cadence,
        } => {
            let cadence = match cadence {
                CadenceArg::Record => Cadence::DEFAULT,
                CadenceArg::Window => Cadence::DEFAULT.with_record_signatures(false),
            };
            let lineage = Lineage::create(
                &dir,
                StoreOptions::new(origin.clone()).with_cadence(cadence),
            )?;
            lineage.close()?;
            outln!(
                "created lineage {} (origin {origin}, cadence {})",
                dir.display(),
                cadence.name()
            );
            Ok(())
        }
        Command::Recover { dir, trust } => {
            let (trust, _) = resolve_trust(&dir, trust)?;
            let report = Lineage::recover(&dir, Some(&trust))?;
            if report.moved.is_empty() {
                outln!(
                    "nothing to recover: every record after the last checkpoint is authenticated"
                );
            } else {
                outln!(
                    "moved records {}..{} aside ({}); the log continues at record {}",
                    report.records.start,
                    report.records.end,
                    report.reason,
                    report.records.start
                );
                for moved in &report.moved {
                    outln!(
                        "  {} ({} bytes, from record {})",
                        moved.file.display(),
                        moved.bytes,
                        moved.first
                    );
                }
            }
            Ok(())
        }
        Command::StressAppend { dir, key } => {
            let key = Arc::new(fs::load_signing_key(&key)?);
            let lineage = Lineage::open_or_create(&dir, crash_options())?;
            // Mostly small records, some of 1 MiB: a SIGKILL that lands inside the write of a
            // large one (the kernel checks for fatal signals between pages) tears it.
            let small = "x".repeat(200);
            let large = "y".repeat(1 << 20);
            for i in 0u64.. {
                let pad = if i % 4 == 1 { &large } else { &small };
                lineage.append(RecordDraft::new("note", json!({"i": i, "pad": pad})), &key)?;
            }
            Ok(())
        }
        Command::BenchPhase { dir, phase, trust } => bench_phase(&dir, phase, &trust),
        Command::Export { dir, format, out } => {
            let records = warden_store::read_all(&dir)?;
            let mut buf = Vec::new();
            for r in &records {
                match format {
                    ExportFormat::Json => {
                        serde_json::to_writer(&mut buf, &r.to_json())?;
                        buf.push(b'\n');
                    }
                    ExportFormat::Cbor => buf.extend_from_slice(&r.to_cbor()),
                }
            }
            match out {
                Some(path) => {
                    fs::atomic_write(&path, &buf)?;
                    eprintln!("exported {} records to {}", records.len(), path.display());
                }
                None => crate::out::write_bytes(&buf),
            }
            Ok(())
        }
    }
}

fn verify_command(
    dir: &Path,
    trust: Option<PathBuf>,
    expect_size: Option<u64>,
    allow_unsealed: bool,
    checkpoint: Option<PathBuf>,
) -> anyhow::Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("{}: no such lineage directory", dir.display());
    }
    let (trust, _) = resolve_trust(dir, trust)?;
    let pinned = match &checkpoint {
        Some(path) => Some(
            SignedCheckpoint::parse(&fs::read_to_string(path)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        ),
        None => None,
    };
    let options = VerifyOptions {
        expect_size,
        unsealed_tail: if allow_unsealed {
            UnsealedTail::Allow
        } else {
            UnsealedTail::Refuse
        },
        pinned,
    };
    let verified = warden_store::verify(dir, &trust, &options).map_err(|e| {
        let mut text = e.to_string();
        if let VerifyError::Record {
            fault: RecordFault::Unauthenticated { .. },
            ..
        } = e
        {
            text.push_str(" (--allow-unsealed accepts it, reported as unauthenticated)");
        }
        let name = dir.display().to_string();
        if text.contains(&name) {
            anyhow::anyhow!(text)
        } else {
            anyhow::anyhow!("{name}: {text}")
        }
    })?;
    let mut line = format!(
        "ok: {} records, {} checkpoints, root {}",
        verified.records,
        verified.checkpoints,
        hex::encode(verified.root)
    );
    let unauthenticated = verified.unauthenticated.map_or(0, |u| u.count);
    let self_signed = verified.unsealed() - unauthenticated;
    if self_signed > 0 {
        line.push_str(&format!(
            " ({self_signed} records after the last checkpoint, each signed)"
        ));
    }
    outln!("{line}");
    if let Some(pin) = &verified.pinned {
        outln!(
            "pinned checkpoint (size {}, root {}): the log's first {} records hash to its root and checkpoint size {} extends it",
            pin.size,
            hex::encode(pin.root),
            pin.size,
            pin.latest_size
        );
    }
    if let Some(u) = verified.unauthenticated {
        let which = if u.count == u.last - u.first + 1 {
            format!("records {} to {}", u.first, u.last)
        } else {
            format!("{} of the records {} to {}", u.count, u.first, u.last)
        };
        outln!(
            "warning: {which} are UNAUTHENTICATED: after the last checkpoint, without a signature; anyone with write access to {} could have written them",
            dir.display()
        );
    }
    Ok(())
}

fn print_proof(
    what: &str,
    proof: &serde_json::Value,
    checkpoints: &[warden_lineage::SignedCheckpoint],
    size: u64,
) {
    outln!("{what} proof (verified locally):");
    outln!(
        "{}",
        serde_json::to_string_pretty(proof).unwrap_or_default()
    );
    if let Some(cp) = checkpoints.iter().find(|c| c.checkpoint.size == size) {
        outln!("signed checkpoint for tree size {size}:\n{}", cp.to_note());
    }
}

/// One line per record for `show` and the demo.
pub fn summary_line(r: &SignedRecord) -> String {
    let rec = &r.record;
    let mut payload = rec.payload.to_string();
    if payload.len() > 100 {
        let mut cut = 97;
        while !payload.is_char_boundary(cut) {
            cut -= 1;
        }
        payload.truncate(cut);
        payload.push_str("...");
    }
    format!(
        "#{:<6} {} {:<20} {:<24} {:<8} {}",
        rec.seq,
        warden_lineage::rfc3339(rec.time_ms).unwrap_or_else(|| rec.time_ms.to_string()),
        rec.kind,
        rec.signer.to_string(),
        rec.policy_version.as_deref().unwrap_or("-"),
        payload
    )
}

#[derive(Args)]
pub struct BenchArgs {
    /// Records appended in the per-window run (the per-record run uses a tenth).
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Where to write the benchmark logs (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// SIGKILLs in the crash benchmark (a child appending as fast as it can, killed at random).
    #[arg(long, default_value_t = 100)]
    kills: u32,
    /// Size of the large log for the scale run (verify time and peak RSS, open-for-append
    /// time), compared with a log of a tenth of it; e.g. 10000000. 0 skips the run.
    #[arg(long, default_value_t = 1_000_000)]
    scale_records: u64,
}

/// The default cadence (every record signed, a checkpoint per window): a kill leaves a tail the
/// parent authenticates through the trust store when it reopens.
fn crash_options() -> StoreOptions {
    StoreOptions::new("bench.warden/crash").with_cadence(Cadence::SignedWindow {
        records: 256,
        millis: 10,
    })
}

/// Peak resident set size of this process (Linux `VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn bench_phase(dir: &Path, phase: Phase, trust: &Path) -> anyhow::Result<()> {
    let trust = fs::load_trust(trust)?;
    let (seconds, records, scanned) = match phase {
        Phase::Verify => {
            let start = Instant::now();
            let verified = warden_store::verify(dir, &trust, &VerifyOptions::default())?;
            let seconds = start.elapsed().as_secs_f64();
            (seconds, verified.records, verified.records)
        }
        Phase::Open => {
            // Milliseconds on a shared machine: the median of 9 opens.
            let options = StoreOptions::new("bench.warden/scale").with_trust(Arc::new(trust));
            let mut times = Vec::new();
            let (mut records, mut scanned) = (0, 0);
            for _ in 0..9 {
                let start = Instant::now();
                let lineage = Lineage::open_with(dir, Some(options.clone()))?;
                times.push(start.elapsed().as_secs_f64());
                (records, scanned) = (lineage.len(), lineage.open_report().scanned);
            }
            times.sort_by(f64::total_cmp);
            (times[times.len() / 2], records, scanned)
        }
    };
    outln!(
        "{}",
        json!({"seconds": seconds, "records": records, "scanned": scanned, "peak_rss_kib": peak_rss_kib()})
    );
    Ok(())
}

/// What one `bench-phase` child measured.
struct PhaseResult {
    seconds: f64,
    scanned: u64,
    peak_rss_mib: f64,
}

fn run_phase(dir: &Path, phase: &str, trust: &Path) -> anyhow::Result<PhaseResult> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["lineage", "bench-phase"])
        .arg(dir)
        .args(["--phase", phase, "--trust"])
        .arg(trust)
        .output()?;
    if !output.status.success() {
        anyhow::bail!(
            "bench phase {phase} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let value: serde_json::Value = serde_json::from_str(text.trim())
        .with_context(|| format!("bench phase {phase} printed {text:?}"))?;
    Ok(PhaseResult {
        seconds: value["seconds"].as_f64().unwrap_or(f64::NAN),
        scanned: value["scanned"].as_u64().unwrap_or(0),
        peak_rss_mib: value["peak_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
    })
}

/// Builds a log of `n / 10` records, measures verify and open-for-append in fresh processes,
/// extends it to `n` and measures again: memory and open time must not grow with the log.
fn scale_bench(
    tmp: &Path,
    n: u64,
    key: &Arc<SigningKey>,
    trust_path: &Path,
    payload: &dyn Fn(u64) -> serde_json::Value,
) -> anyhow::Result<()> {
    let dir = tmp.join("scale");
    // Unsigned records and no fsync: the fastest way to a large throwaway log.
    let mut options = StoreOptions::new("bench.warden/scale").with_cadence(Cadence::Window {
        records: 1024,
        millis: 1000,
    });
    options.fsync = false;
    let mut written = 0;
    let mut results = Vec::new();
    for target in [(n / 10).max(1), n] {
        let lineage = Lineage::open_or_create(&dir, options.clone())?;
        for i in written..target {
            lineage.append(RecordDraft::new("train.iteration", payload(i)), key)?;
        }
        lineage.close()?;
        drop(lineage);
        written = target;
        let verify = run_phase(&dir, "verify", trust_path)?;
        let open = run_phase(&dir, "open", trust_path)?;
        outln!(
            "{:<44} {:>14}",
            format!("scale: {target} records"),
            format!(
                "verify {:.1} s, peak RSS {:.1} MiB; open-for-append {:.2} ms (median of 9; read {} records), peak RSS {:.1} MiB",
                verify.seconds,
                verify.peak_rss_mib,
                open.seconds * 1e3,
                open.scanned,
                open.peak_rss_mib
            )
        );
        results.push((target, verify, open));
    }
    if let [(small, v_small, o_small), (large, v_large, o_large)] = &results[..] {
        outln!(
            "scale ratios {large} / {small} records: open-for-append time {:.2}x, verify peak RSS {:.2}x, verify time {:.1}x   (targets: open ~1x, RSS < 64 MiB)",
            o_large.seconds / o_small.seconds,
            v_large.peak_rss_mib / v_small.peak_rss_mib,
            v_large.seconds / v_small.seconds
        );
    }
    Ok(())
}

/// Kills a child appender with SIGKILL `kills` times at random moments; after each kill the
/// store must open (cutting any torn tail, authenticating any signed unsealed one), verify, and
/// accept an append.
fn crash_bench(tmp: &Path, kills: u32) -> anyhow::Result<()> {
    let key_path = tmp.join("crash.key");
    let key = Arc::new(super::key::new_key(
        Role::CorpusAuthority,
        "crash",
        &key_path,
    )?);
    let mut trust = TrustStore::new();
    trust.add(Role::CorpusAuthority, key.public().clone());
    let trust = Arc::new(trust);
    let dir = tmp.join("crash");
    let exe = std::env::current_exe()?;
    let mut seed = 0x2545_f491_4f6c_dd1du64 ^ std::process::id() as u64;
    let (mut torn, mut cut_bytes, mut tails, mut records) = (0u32, 0u64, 0u32, 0u64);
    let start = Instant::now();
    for round in 0..kills {
        let mut child = std::process::Command::new(&exe)
            .args(["lineage", "stress-append"])
            .arg(&dir)
            .arg("--key")
            .arg(&key_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(std::time::Duration::from_millis(40 + seed % 160));
        child.kill()?;
        child.wait()?;
        let lineage = Lineage::open_or_create(&dir, crash_options().with_trust(Arc::clone(&trust)))
            .with_context(|| format!("after kill {round}: open"))?;
        let segment_cuts: Vec<_> = lineage
            .open_report()
            .repaired
            .iter()
            .filter(|(file, _, _)| !file.ends_with("checkpoints.wlog"))
            .collect();
        if !segment_cuts.is_empty() {
            torn += 1;
            cut_bytes += segment_cuts.iter().map(|(_, _, bytes)| bytes).sum::<u64>();
        }
        if lineage.latest_checkpoint()?.map(|c| c.0) != Some(lineage.len()) {
            tails += 1;
        }
        lineage.append(RecordDraft::new("note", json!({"after_kill": round})), &key)?;
        lineage.close()?;
        records = lineage.len();
        drop(lineage);
        warden_store::verify(
            &dir,
            &trust,
            &VerifyOptions {
                expect_size: Some(records),
                ..Default::default()
            },
        )
        .with_context(|| format!("after kill {round}: verify"))?;
    }
    outln!(
        "crash: {kills} SIGKILLs in {:.1} s, {records} records; {torn} kills left a torn record (all cut: {cut_bytes} bytes), {tails} left a signed unsealed tail (all authenticated and kept); every reopen verified and appended",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    // Removed when dropped, also when a measurement fails half-way.
    let scratch = match &args.dir {
        Some(base) => tempfile::Builder::new()
            .prefix("warden-bench-lineage-")
            .tempdir_in(base),
        None => tempfile::Builder::new()
            .prefix("warden-bench-lineage-")
            .tempdir(),
    }
    .context("creating a scratch directory")?;
    let tmp = scratch.path().to_path_buf();
    let key = Arc::new(SigningKey::generate(Role::TrainingAuthority, "bench")?);
    let mut trust = TrustStore::new();
    trust.add(Role::TrainingAuthority, key.public().clone());
    let payload = |i: u64| json!({"iteration": i, "loss": 2.5 / (i as f64 + 1.0), "batch_root": "9f2c1e0b7a6d5c4b3a29180716253443", "verdicts": ["admit", "admit", "clip"]});
    outln!(
        "warden bench lineage ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    outln!("{:<44} {:>14}", "measurement", "result");

    // Per-record signing: every record signed and checkpointed. With fsync per checkpoint this
    // is bound by the disk; without, by the two Ed25519 signatures per record.
    let n_each = (args.records / 100).max(1);
    let dir_each = tmp.join("every-record");
    let lineage = Lineage::create(
        &dir_each,
        StoreOptions::new("bench/every").with_cadence(Cadence::EveryRecord),
    )?;
    let start = Instant::now();
    for i in 0..n_each {
        lineage.append(RecordDraft::new("train.iteration", payload(i)), &key)?;
    }
    lineage.close()?;
    let per_record_synced = n_each as f64 / start.elapsed().as_secs_f64();
    outln!(
        "{:<44} {:>14.0}",
        "appends/s, per-record signing, fsync each",
        per_record_synced
    );
    drop(lineage);
    let n_each = (args.records / 10).max(1);
    let dir_each = tmp.join("every-record-nosync");
    let mut options = StoreOptions::new("bench/every").with_cadence(Cadence::EveryRecord);
    options.fsync = false;
    let lineage = Lineage::create(&dir_each, options)?;
    let start = Instant::now();
    for i in 0..n_each {
        lineage.append(RecordDraft::new("train.iteration", payload(i)), &key)?;
    }
    lineage.close()?;
    let per_record = n_each as f64 / start.elapsed().as_secs_f64();
    outln!(
        "{:<44} {:>14.0}",
        "appends/s, per-record signing, no fsync",
        per_record
    );
    drop(lineage);

    // The default: every record signed, a co-signed checkpoint every 1024 records or 1000 ms.
    let n_signed = (args.records / 10).max(1);
    let lineage = Lineage::create(
        &tmp.join("signed-window"),
        StoreOptions::new("bench/signed"),
    )?;
    let start = Instant::now();
    for i in 0..n_signed {
        lineage.append(RecordDraft::new("train.iteration", payload(i)), &key)?;
    }
    lineage.close()?;
    let signed_window = n_signed as f64 / start.elapsed().as_secs_f64();
    outln!(
        "{:<44} {:>14.0}",
        "appends/s, signed records, window (default)",
        signed_window
    );
    drop(lineage);

    // Unsigned records: a co-signed checkpoint every 1024 records or 1000 ms seals them.
    let dir_window = tmp.join("window");
    let lineage = Lineage::create(
        &dir_window,
        StoreOptions::new("bench/window")
            .with_cadence(Cadence::DEFAULT.with_record_signatures(false)),
    )?;
    let start = Instant::now();
    for i in 0..args.records {
        lineage.append(RecordDraft::new("train.iteration", payload(i)), &key)?;
    }
    lineage.close()?;
    let per_window = args.records as f64 / start.elapsed().as_secs_f64();
    outln!(
        "{:<44} {:>14.0}   (target >= 100000)",
        "appends/s, unsigned records, window (1024/1 s)",
        per_window
    );

    let start = Instant::now();
    let verified = warden_store::verify(
        &dir_window,
        &trust,
        &VerifyOptions {
            expect_size: Some(args.records),
            ..Default::default()
        },
    )?;
    let verify_rate = verified.records as f64 / start.elapsed().as_secs_f64();
    outln!(
        "{:<44} {:>14.0}   (target >= 300000)",
        "records/s verified (window log)",
        verify_rate
    );

    let start = Instant::now();
    let verified_each = warden_store::verify(&dir_each, &trust, &VerifyOptions::default())?;
    let verify_each_rate = verified_each.records as f64 / start.elapsed().as_secs_f64();
    outln!(
        "{:<44} {:>14.0}",
        "records/s verified (per-record signed log)",
        verify_each_rate
    );

    let size = lineage.len();
    let root = lineage.root()?;
    let n_proofs = 100_000u64;
    let mut proofs = Vec::with_capacity(n_proofs as usize);
    let start = Instant::now();
    for i in 0..n_proofs {
        let index = (i.wrapping_mul(2_654_435_761)) % size;
        proofs.push((index, lineage.prove_inclusion(index, size)?));
    }
    let gen_rate = n_proofs as f64 / start.elapsed().as_secs_f64();
    outln!(
        "{:<44} {:>14.0}",
        format!("inclusion proofs generated/s (size {size})"),
        gen_rate
    );
    let leaves: Vec<_> = proofs
        .iter()
        .map(|(i, _)| lineage.leaf_hash(*i).ok().flatten().unwrap_or_default())
        .collect();
    let start = Instant::now();
    for ((index, proof), leaf) in proofs.iter().zip(&leaves) {
        warden_merkle::verify_inclusion(leaf, *index, size, proof, &root)?;
    }
    let check_rate = n_proofs as f64 / start.elapsed().as_secs_f64();
    outln!("{:<44} {:>14.0}", "inclusion proofs verified/s", check_rate);
    outln!(
        "ratios: window/per-record (no fsync) appends {:.1}x; verify/append (window) {:.2}x",
        per_window / per_record,
        verify_rate / per_window
    );
    drop(lineage);
    if args.scale_records > 0 {
        let trust_path = tmp.join("trust.toml");
        fs::atomic_write(&trust_path, trust.to_toml().as_bytes())?;
        scale_bench(&tmp, args.scale_records, &key, &trust_path, &payload)?;
    }
    if args.kills > 0 {
        crash_bench(&tmp, args.kills)?;
    }
    Ok(())
}
