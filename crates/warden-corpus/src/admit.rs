//! `admit`: streams every admitted source, hashes, flags and fingerprints its samples on both
//! cores, and writes the signed declaration with its sample index, leaf lists, exclusions and
//! fingerprint indexes.
//!
//! Pipeline per source: a reader thread splits files into chunks of ~2 MiB of records (buffers
//! recycled) and hands them over a bounded channel; each chunk is decoded, hashed, flagged and
//! fingerprinted in parallel (rayon, order-preserving collect) while the previous chunk is folded,
//! in file order, into the source's Merkle root, leaf list and exclusion list. Sample records go
//! through a bounded external sort and grams through partitioned buckets that spill to scratch
//! files, so peak memory does not grow with the corpus. Output files are fsynced on background
//! threads, all joined before the declaration that commits to them is signed and written.
//!
//! Architecture invariant: nothing is dropped silently. Every sample of an admitted source is a
//! leaf of its source tree, and is either in the sample index or listed in `exclusions.jsonl`
//! (flagged, with its flagger); every malformed line is an error or (with `skip_malformed`)
//! listed; every refused source is in the declaration with a sentence saying why.
//!
//! Deny indexes: a source refused because its class is excluded is still read (never admitted:
//! no leaf, no sample index entry, no part of any root) and its text's token 8-grams go into
//! `fingerprints/denied/<class>.fp`, committed in the signed declaration like the admitted
//! fingerprint files, so inference can recognise excluded content. Only class exclusion counts
//! as "excluded content": a license refusal says nothing about the class (it may be admitted
//! through other sources, and a deny entry would forbid it), and flagged samples are PII the
//! flaggers themselves detect again at inference (indexing them would store their text's grams).

use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use warden_keys::{Role, SigningKey, TrustStore};

use crate::declaration::{Declaration, SourceDecl, SourceFormat};
use crate::error::CorpusError;
use crate::extsort::ExternalSorter;
use crate::fsio::AtomicFile;
use crate::index::{IndexEntry, SampleRecord, SampleRef};
use crate::policy::{self, Flag};
use crate::roots::RootBuilder;
use crate::signed::*;
use crate::source::{decode, list_files, RecordSpan, SourceFile, Splitter};
use crate::{fingerprint, Hash};

pub const SAMPLE_INDEX_FILE: &str = "samples.idx";
pub const EXCLUSIONS_FILE: &str = "exclusions.jsonl";
pub(crate) const LEAVES_MAGIC: &[u8; 8] = b"WLEAVES1";
pub(crate) const LEAF_ENTRY: usize = 40;

/// What an admission reports while it runs; the caller draws its progress bar from it (the
/// library draws nothing, as training reports by callback too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitProgress<'a> {
    /// The admitted sources hold `total_bytes` of data, about to be read.
    Started { total_bytes: u64 },
    /// Reading source `id` begins.
    Source { id: &'a str },
    /// `bytes` more bytes of the current source were read and folded.
    Read { bytes: u64 },
    /// Every source was read; the sample and fingerprint indexes are being written.
    SourcesRead,
}

/// A progress callback. It is called from admission's worker threads, hence `Send + Sync`.
pub type ProgressFn = Arc<dyn Fn(AdmitProgress<'_>) + Send + Sync>;

/// Knobs of an admission.
#[derive(Clone)]
pub struct AdmitOptions {
    /// Exclude and list malformed JSONL lines / non-UTF-8 documents instead of failing.
    pub skip_malformed: bool,
    /// Called as sources are read (see [`AdmitProgress`]).
    pub progress: Option<ProgressFn>,
    /// Gram hashes held in memory before the buckets are appended to scratch files.
    pub gram_budget: usize,
    /// Sample records held in memory before spilling a sorted run.
    pub sample_budget: usize,
    /// Bytes of records per chunk handed from the reader to the workers.
    pub chunk_bytes: usize,
    /// Worker threads for hashing and fingerprinting (default: rayon's global pool, one per
    /// core). The reader thread comes on top.
    pub threads: Option<usize>,
}

impl std::fmt::Debug for AdmitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmitOptions")
            .field("skip_malformed", &self.skip_malformed)
            .field("progress", &self.progress.is_some())
            .field("gram_budget", &self.gram_budget)
            .field("sample_budget", &self.sample_budget)
            .field("chunk_bytes", &self.chunk_bytes)
            .field("threads", &self.threads)
            .finish()
    }
}

impl Default for AdmitOptions {
    fn default() -> Self {
        AdmitOptions {
            skip_malformed: false,
            progress: None,
            gram_budget: 2 << 20,
            sample_budget: 128 << 10,
            chunk_bytes: 2 << 20,
            threads: None,
        }
    }
}

/// One excluded sample, as listed in `exclusions.jsonl` and in reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exclusion {
    pub source: String,
    /// Line in the source (running across a directory's files).
    pub line: u64,
    /// The file (relative to the source path; empty for a single-file source) and its line.
    pub file: String,
    pub file_line: u64,
    /// The sample hash; for a malformed line, the SHA-256 of the raw line bytes.
    pub hash: String,
    /// `flagged` or `malformed`.
    pub reason: String,
    /// The flagger (`email`, `phone`, `card`, `regex:<id>`, `blocklist`) or the parse error.
    pub detail: String,
}

/// What an admission did.
#[derive(Debug, Clone)]
pub struct Admission {
    pub out_dir: PathBuf,
    /// `out_dir` already held this very admission (same declaration digest, complete, signed
    /// by this key): nothing was written.
    pub already_admitted: bool,
    pub body: DeclarationBody,
    /// SHA-256 of the signed declaration body.
    pub declaration_digest: Hash,
    pub root: Hash,
    /// The first exclusions (all are in `exclusions.jsonl`), for reports.
    pub first_exclusions: Vec<Exclusion>,
    pub elapsed: Duration,
}

const REPORTED_EXCLUSIONS: usize = 50;
const INDEX_BATCH: usize = 16 * 1024;

struct Chunk {
    data: Vec<u8>,
    records: Vec<ChunkRecord>,
    bytes_read: u64,
}

#[derive(Clone, Copy)]
struct ChunkRecord {
    span: RecordSpan,
    file_idx: u32,
    file_line: u64,
}

/// The reader thread's result: each file's line count.
type FileLines = Vec<u64>;

fn read_chunks(
    files: &[SourceFile],
    chunk_bytes: usize,
    tx: std::sync::mpsc::SyncSender<Chunk>,
    recycled: std::sync::mpsc::Receiver<Chunk>,
) -> Result<FileLines, CorpusError> {
    let mut line_base = 0u64;
    let mut lines = Vec::with_capacity(files.len());
    let fresh = |recycled: &std::sync::mpsc::Receiver<Chunk>| match recycled.try_recv() {
        Ok(mut chunk) => {
            chunk.data.clear();
            chunk.records.clear();
            chunk.bytes_read = 0;
            chunk
        }
        Err(_) => Chunk {
            data: Vec::with_capacity(chunk_bytes + (64 << 10)),
            records: Vec::new(),
            bytes_read: 0,
        },
    };
    let mut chunk = fresh(&recycled);
    for (file_idx, file) in files.iter().enumerate() {
        let mut splitter = Splitter::open(file, line_base)?;
        let mut read_before = 0;
        while let Some(span) = splitter.next_into(&mut chunk.data)? {
            chunk.records.push(ChunkRecord {
                span,
                file_idx: file_idx as u32,
                file_line: splitter.file_line(span.line),
            });
            if chunk.data.len() >= chunk_bytes {
                chunk.bytes_read = splitter.bytes_read() - read_before;
                read_before = splitter.bytes_read();
                let full = std::mem::replace(&mut chunk, fresh(&recycled));
                if tx.send(full).is_err() {
                    // The consumer stopped (it hit an error and reports it).
                    return Ok(lines);
                }
            }
        }
        chunk.bytes_read += splitter.bytes_read() - read_before;
        lines.push(splitter.lines_read() - line_base);
        line_base = splitter.lines_read();
    }
    if !chunk.records.is_empty() || chunk.bytes_read > 0 {
        let _ = tx.send(chunk);
    }
    Ok(lines)
}

/// A sample after the parallel stage.
struct Processed {
    record: ChunkRecord,
    hash: Hash,
    /// RFC 6962 leaf hash of `hash` (computed in the parallel stage).
    leaf: Hash,
    outcome: Outcome,
}

/// A run of processed samples with the grams of its admitted ones.
type Part = (Vec<Processed>, Vec<u64>);

enum Outcome {
    Admitted,
    Flagged(Flag),
    Malformed(String),
}

/// Removes the scratch directory however admission ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mkdir(path: &Path) -> Result<(), CorpusError> {
    std::fs::create_dir_all(path).map_err(|e| CorpusError::io(path, e))
}

/// Admits the corpus declared in `declaration` into `out_dir`, signing with `key`.
///
/// Crash safety: the admission is built in a temporary directory beside `out_dir`
/// (`.NAME.tmp-PID`) and renamed into place only once every file in it is durable, so a failed
/// or killed admission never leaves a partial `out_dir` (a killed one leaves its temporary
/// directory, which the next admission into `out_dir` removes). `out_dir` must be absent or
/// empty, or hold this very admission: then nothing is written and
/// [`Admission::already_admitted`] is set, so re-running an admission is idempotent. A
/// different admission in `out_dir` is refused naming both declaration digests; a non-empty
/// `out_dir` holding no admission is refused before any source is read. Concurrent admissions
/// into one `out_dir` are refused by an advisory lock on `.NAME.lock` beside it.
pub fn admit(
    declaration: &Path,
    out_dir: &Path,
    key: &SigningKey,
    options: &AdmitOptions,
) -> Result<Admission, CorpusError> {
    match options.threads {
        None => admit_in_pool(declaration, out_dir, key, options),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| {
                CorpusError::artifact(out_dir, format!("cannot start {n} worker threads: {e}"))
            })?
            .install(|| admit_in_pool(declaration, out_dir, key, options)),
    }
}

/// Checks, before anything is written, that `key` may sign corpus declarations: its role is
/// corpus-authority and `trust` trusts this very key (name, id and public key) for that role.
/// A key file relabelled from another role passes the first test and fails the second.
pub fn check_signing_key(key: &SigningKey, trust: &TrustStore) -> Result<(), CorpusError> {
    if key.role() != Role::CorpusAuthority {
        return Err(CorpusError::WrongRole {
            key: key.key_ref().to_string(),
            role: key.role().to_string(),
        });
    }
    let untrusted = |reason: String| CorpusError::UntrustedKey {
        key: key.key_ref().to_string(),
        reason,
    };
    let trusted = trust
        .trusted_for(&key.key_ref(), Role::CorpusAuthority)
        .map_err(|e| untrusted(e.to_string()))?;
    if trusted.to_bytes() != key.public().to_bytes() {
        return Err(untrusted(
            "the trust file holds a different public key under this name and id".into(),
        ));
    }
    Ok(())
}

/// What `out_dir` holds before the admission is moved there.
enum Existing {
    /// Absent or an empty directory: the admission can be renamed into place.
    Nothing,
    /// An admission whose `declaration.json` has this SHA-256.
    Admission(Hash),
}

fn existing_admission(out_dir: &Path) -> Result<Existing, CorpusError> {
    let not_empty = |reason: &str| CorpusError::OutNotEmpty {
        dir: out_dir.to_path_buf(),
        reason: reason.into(),
    };
    let meta = match std::fs::symlink_metadata(out_dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(CorpusError::io(out_dir, e)),
    };
    if !meta.is_dir() {
        return Err(not_empty("it is not a directory"));
    }
    let decl = out_dir.join(DECLARATION_FILE);
    if decl.exists() {
        return Ok(Existing::Admission(crate::fsio::sha256(
            &crate::fsio::read(&decl)?,
        )));
    }
    let mut entries = std::fs::read_dir(out_dir).map_err(|e| CorpusError::io(out_dir, e))?;
    if entries.next().is_some() {
        return Err(not_empty("it holds files but no declaration.json"));
    }
    Ok(Existing::Nothing)
}

/// `out_dir` holds this admission's declaration: it is reused only when it is complete (every
/// committed file matches its digest) and signed by `key`, so the lineage record appended for
/// it names the key that really signed it.
fn check_same_admission(out_dir: &Path, key: &SigningKey) -> Result<(), CorpusError> {
    let unusable = |reason: String| CorpusError::OutIncomplete {
        dir: out_dir.to_path_buf(),
        reason,
    };
    let mut only_this_key = TrustStore::new();
    only_this_key.add(Role::CorpusAuthority, key.public().clone());
    let (body, _, _) =
        read_verified(out_dir, &only_this_key).map_err(|e| unusable(e.to_string()))?;
    let mut committed = vec![body.sample_index.clone(), body.exclusions.file.clone()];
    committed.extend(body.sources.iter().filter_map(|s| s.leaves.clone()));
    committed.extend(
        body.classes
            .iter()
            .flat_map(|c| c.fingerprint.iter().chain(c.denied.iter()))
            .map(|f| FileRecord {
                file: f.file.clone(),
                sha256: f.sha256.clone(),
                bytes: 0,
            }),
    );
    for file in &committed {
        crate::corpus::read_committed(out_dir, file).map_err(|e| unusable(e.to_string()))?;
    }
    Ok(())
}

/// `out_dir` made absolute without requiring it to exist (its parent is created).
fn absolute_out_dir(out_dir: &Path) -> Result<PathBuf, CorpusError> {
    let name = match out_dir.components().next_back() {
        Some(Component::Normal(name)) => name.to_os_string(),
        _ => {
            // `.`, `..` or `/`: canonicalize the directory itself (it must exist).
            return std::fs::canonicalize(out_dir).map_err(|e| CorpusError::io(out_dir, e));
        }
    };
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    mkdir(parent)?;
    let parent = std::fs::canonicalize(parent).map_err(|e| CorpusError::io(parent, e))?;
    Ok(parent.join(name))
}

/// `to` relative to the directory `from` (both absolute and canonical), e.g. `../synth` from
/// `/a/admitted` to `/a/synth`. Recorded instead of an absolute path so that an admission and its
/// corpus can be moved together. Absolute `to` when they share no root (another drive).
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 {
        return to.to_path_buf();
    }
    let mut relative = PathBuf::new();
    for _ in common..from.len() {
        relative.push("..");
    }
    for part in &to_parts[common..] {
        relative.push(part.as_os_str());
    }
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    relative
}

/// The advisory lock serializing admissions into one `out_dir` (held until dropped).
struct OutLock(#[allow(dead_code)] std::fs::File);

fn lock_out_dir(out_dir: &Path) -> Result<OutLock, CorpusError> {
    let lock_path = sibling(out_dir, "lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| CorpusError::io(&lock_path, e))?;
    let locked = file.try_lock();
    match locked {
        Ok(()) => Ok(OutLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(CorpusError::OutNotEmpty {
            dir: out_dir.to_path_buf(),
            reason: format!(
                "another admission into it is running (it holds {})",
                lock_path.display()
            ),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(CorpusError::io(&lock_path, e)),
    }
}

/// `.NAME.SUFFIX` beside `out_dir` (absolute, with a file name).
fn sibling(out_dir: &Path, suffix: &str) -> PathBuf {
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out_dir.with_file_name(format!(".{name}.{suffix}"))
}

/// Removes temporary directories of admissions into `out_dir` that were killed; only called
/// under the lock, so none of them belongs to a running admission.
fn remove_stale_builds(out_dir: &Path) {
    let (Some(parent), Some(name)) = (out_dir.parent(), out_dir.file_name()) else {
        return;
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The directory an admission is built in; removed unless it was renamed into place.
struct BuildDir {
    path: PathBuf,
    placed: bool,
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn admit_in_pool(
    declaration: &Path,
    out_dir: &Path,
    key: &SigningKey,
    options: &AdmitOptions,
) -> Result<Admission, CorpusError> {
    let started = Instant::now();
    if key.role() != Role::CorpusAuthority {
        return Err(CorpusError::WrongRole {
            key: key.key_ref().to_string(),
            role: key.role().to_string(),
        });
    }
    let toml_bytes = crate::fsio::read(declaration)?;
    let toml_text =
        String::from_utf8(toml_bytes.clone()).map_err(|_| CorpusError::Declaration {
            file: declaration.to_path_buf(),
            line: 1,
            field: "toml".into(),
            message: "the declaration is not UTF-8".into(),
        })?;
    let mut decl = Declaration::parse(&toml_text, declaration)?;
    decl.base_dir =
        std::fs::canonicalize(&decl.base_dir).map_err(|e| CorpusError::io(&decl.base_dir, e))?;
    for s in &mut decl.sources {
        s.resolved_path = decl.base_dir.join(&s.path);
    }
    // A non-empty OUT holding no admission is refused before any source is read.
    let final_dir = absolute_out_dir(out_dir)?;
    existing_admission(&final_dir)?;
    let _lock = lock_out_dir(&final_dir)?;
    remove_stale_builds(&final_dir);
    let mut build_dir = BuildDir {
        path: warden_store::fs::temp_path_for(&final_dir)?,
        placed: false,
    };
    // Sources are recorded relative to the admission directory (the build directory is its
    // sibling, so the relative path is the same once renamed).
    let recorded_base_dir = relative_path(&final_dir, &decl.base_dir);
    let built = build(
        &decl,
        &toml_bytes,
        &recorded_base_dir,
        &build_dir.path,
        key,
        options,
    )?;
    let already_admitted = match existing_admission(&final_dir)? {
        Existing::Admission(existing) if existing == built.declaration_digest => {
            check_same_admission(&final_dir, key)?;
            true
        }
        Existing::Admission(existing) => {
            return Err(CorpusError::OutHoldsOther {
                dir: out_dir.to_path_buf(),
                existing: hex::encode(existing),
                new: hex::encode(built.declaration_digest),
            })
        }
        Existing::Nothing => {
            warden_store::fs::rename_durably(&build_dir.path, &final_dir)?;
            build_dir.placed = true;
            false
        }
    };
    Ok(Admission {
        out_dir: out_dir.to_path_buf(),
        already_admitted,
        body: built.body,
        declaration_digest: built.declaration_digest,
        root: built.root,
        first_exclusions: built.first_exclusions,
        elapsed: started.elapsed(),
    })
}

/// A complete, signed admission in its build directory.
struct Built {
    body: DeclarationBody,
    declaration_digest: Hash,
    root: Hash,
    first_exclusions: Vec<Exclusion>,
}

/// Streams every admitted source and writes the signed admission into `out_dir` (the build
/// directory).
fn build(
    decl: &Declaration,
    toml_bytes: &[u8],
    recorded_base_dir: &Path,
    out_dir: &Path,
    key: &SigningKey,
    options: &AdmitOptions,
) -> Result<Built, CorpusError> {
    let refusals = policy::refusals(decl);

    // List every admitted source's files up front: a missing path fails before any output.
    let mut source_files: Vec<Vec<SourceFile>> = Vec::new();
    for (s, refusal) in decl.sources.iter().zip(&refusals) {
        if refusal.is_some() {
            source_files.push(Vec::new());
            continue;
        }
        let files = list_files(&s.resolved_path, s.format).map_err(|e| match e {
            CorpusError::Io { path, source } => CorpusError::Declaration {
                file: decl.file.clone(),
                line: s.line,
                field: format!("source `{}` field `path`", s.id),
                message: format!("{}: {source}", path.display()),
            },
            other => other,
        })?;
        source_files.push(files);
    }
    // Sources refused because their class is excluded are read for the deny index: their
    // files are listed up front too (a missing path fails before any output).
    let mut deny_files: Vec<Vec<SourceFile>> = Vec::new();
    for s in &decl.sources {
        if !denied_class(decl, s) {
            deny_files.push(Vec::new());
            continue;
        }
        let files = list_files(&s.resolved_path, s.format).map_err(|e| match e {
            CorpusError::Io { path, source } => CorpusError::Declaration {
                file: decl.file.clone(),
                line: s.line,
                field: format!(
                    "source `{}` field `path` (its class is excluded: admission reads it for the deny index)",
                    s.id
                ),
                message: format!("{}: {source}", path.display()),
            },
            other => other,
        })?;
        deny_files.push(files);
    }
    let total_bytes: u64 = source_files.iter().flatten().map(|f| f.bytes).sum();
    let deny_bytes: u64 = deny_files.iter().flatten().map(|f| f.bytes).sum();

    mkdir(out_dir)?;
    mkdir(&out_dir.join("sources"))?;
    mkdir(&out_dir.join("fingerprints"))?;
    mkdir(&out_dir.join(DENIED_DIR))?;
    let scratch = Scratch(out_dir.join(format!(".admit-scratch-{}", std::process::id())));
    mkdir(&scratch.0)?;

    let progress = |event: AdmitProgress<'_>| {
        if let Some(report) = &options.progress {
            report(event);
        }
    };
    progress(AdmitProgress::Started { total_bytes });

    let mut pending_writes = Vec::new();
    let mut exclusions = AtomicFile::create(&out_dir.join(EXCLUSIONS_FILE))?;
    let mut first_exclusions = Vec::new();
    let mut samples: ExternalSorter<SampleRecord> =
        ExternalSorter::new(scratch.0.clone(), "samples", options.sample_budget);
    let mut grams = fingerprint::GramSets::new(
        scratch.0.clone(),
        total_bytes + deny_bytes,
        options.gram_budget,
    );
    let mut source_records = Vec::new();
    let mut totals = Totals {
        n_sources: decl.sources.len() as u64,
        n_refused_sources: 0,
        n_samples: 0,
        n_admitted: 0,
        n_unique_admitted: 0,
        n_flagged: 0,
        n_malformed: 0,
        bytes: 0,
    };

    for (source_idx, ((s, refusal), files)) in decl
        .sources
        .iter()
        .zip(&refusals)
        .zip(&source_files)
        .enumerate()
    {
        let mut record = SourceRecord {
            id: s.id.clone(),
            path: s.path.clone(),
            format: s.format.map(|f| f.as_str().to_string()),
            text_field: s.text_field.clone(),
            license: s.license.clone(),
            class: s.class.clone(),
            depth: s.depth.clone(),
            held_out: s.held_out,
            provenance: s.provenance.clone(),
            decision: if refusal.is_some() {
                "refused"
            } else {
                "admitted"
            }
            .into(),
            refusal: refusal.clone(),
            files: Vec::new(),
            n_samples: 0,
            n_flagged: 0,
            n_malformed: 0,
            bytes: 0,
            root: None,
            leaves: None,
        };
        if refusal.is_some() {
            totals.n_refused_sources += 1;
            source_records.push(record);
            if denied_class(decl, s) {
                fingerprint_denied(s, &deny_files[source_idx], &mut grams)?;
            }
            continue;
        }
        progress(AdmitProgress::Source { id: &s.id });
        let leaves_rel = format!("sources/{}.leaves", s.id);
        let mut leaves = AtomicFile::create(&out_dir.join(&leaves_rel))?;
        leaves.write(LEAVES_MAGIC)?;
        let mut root = RootBuilder::new();
        let ctx = SourceCtx {
            decl,
            source: s,
            files,
        };
        let file_lines = std::thread::scope(|scope| -> Result<FileLines, CorpusError> {
            let (tx, rx) = sync_channel::<Chunk>(2);
            let (back_tx, back_rx) = sync_channel::<Chunk>(4);
            let chunk_bytes = options.chunk_bytes;
            let reader = scope.spawn(move || read_chunks(files, chunk_bytes, tx, back_rx));
            let consumed = (|| -> Result<(), CorpusError> {
                let mut leaf_bytes = Vec::with_capacity(LEAF_ENTRY * 8192);
                // Folds a processed chunk, in file order, into the source's outputs.
                let mut fold = |parts: Vec<Part>, bytes_read: u64| -> Result<(), CorpusError> {
                    leaf_bytes.clear();
                    for (processed, chunk_grams) in parts {
                        grams.extend(&s.class, &chunk_grams)?;
                        for p in processed {
                            let (file, file_line) =
                                (&files[p.record.file_idx as usize], p.record.file_line);
                            let exclusion = |reason: &str, detail: String| Exclusion {
                                source: s.id.clone(),
                                line: p.record.span.line,
                                file: file.relative.clone(),
                                file_line,
                                hash: hex::encode(p.hash),
                                reason: reason.into(),
                                detail,
                            };
                            let excluded = match p.outcome {
                                Outcome::Malformed(message) => {
                                    if !options.skip_malformed {
                                        return Err(CorpusError::Malformed {
                                            file: file.path.clone(),
                                            line: file_line,
                                            message,
                                        });
                                    }
                                    record.n_malformed += 1;
                                    exclusion("malformed", message)
                                }
                                Outcome::Flagged(flag) => {
                                    leaf_bytes.extend_from_slice(&p.record.span.line.to_le_bytes());
                                    leaf_bytes.extend_from_slice(&p.hash);
                                    root.push(p.leaf);
                                    record.n_samples += 1;
                                    record.n_flagged += 1;
                                    exclusion("flagged", flag.name())
                                }
                                Outcome::Admitted => {
                                    leaf_bytes.extend_from_slice(&p.record.span.line.to_le_bytes());
                                    leaf_bytes.extend_from_slice(&p.hash);
                                    root.push(p.leaf);
                                    record.n_samples += 1;
                                    samples.push(SampleRecord {
                                        hash: p.hash,
                                        source: source_idx as u32,
                                        line: p.record.span.line,
                                        leaf: p.leaf,
                                    })?;
                                    continue;
                                }
                            };
                            let mut line = serde_json::to_vec(&excluded).unwrap_or_default();
                            line.push(b'\n');
                            exclusions.write(&line)?;
                            if first_exclusions.len() < REPORTED_EXCLUSIONS {
                                first_exclusions.push(excluded);
                            }
                        }
                    }
                    leaves.write(&leaf_bytes)?;
                    progress(AdmitProgress::Read { bytes: bytes_read });
                    Ok(())
                };
                // Pipelined: chunk N is folded (one core) while chunk N + 1 is processed (all
                // cores, work-stealing), so the sequential fold is off the critical path.
                let mut pending: Option<(Vec<Part>, u64)> = None;
                for chunk in rx.iter() {
                    let previous = pending.take();
                    let (folded, parts) = rayon::join(
                        || match previous {
                            Some((parts, bytes)) => fold(parts, bytes),
                            None => Ok(()),
                        },
                        || ctx.process(&chunk),
                    );
                    folded?;
                    pending = Some((parts, chunk.bytes_read));
                    // Hand the buffer back for reuse (fresh pages cost page faults).
                    let _ = back_tx.try_send(chunk);
                }
                if let Some((parts, bytes)) = pending.take() {
                    fold(parts, bytes)?;
                }
                Ok(())
            })();
            // Dropping the receiver first unblocks a reader waiting to send.
            drop(rx);
            let read = reader
                .join()
                .map_err(|_| CorpusError::artifact(&s.resolved_path, "reader thread panicked"))?;
            consumed?;
            read
        })?;
        record.files = files
            .iter()
            .zip(&file_lines)
            .map(|(f, lines)| SourceFileRecord {
                path: f.relative.clone(),
                format: f.format.as_str().into(),
                bytes: f.bytes,
                lines: *lines,
            })
            .collect();
        record.bytes = files.iter().map(|f| f.bytes).sum();
        record.root = Some(hex::encode(root.root()));
        let (digest, bytes, durable) = leaves.commit_in_background()?;
        pending_writes.push(durable);
        record.leaves = Some(FileRecord {
            file: leaves_rel,
            sha256: hex::encode(digest),
            bytes,
        });
        totals.n_samples += record.n_samples;
        totals.n_flagged += record.n_flagged;
        totals.n_malformed += record.n_malformed;
        totals.n_admitted += record.n_samples - record.n_flagged;
        totals.bytes += record.bytes;
        source_records.push(record);
    }
    progress(AdmitProgress::SourcesRead);
    let (exclusions_digest, exclusions_bytes, durable) = exclusions.commit_in_background()?;
    pending_writes.push(durable);

    // Per-class counts and fingerprint indexes, classes in first-declared order.
    let mut classes: Vec<ClassRecord> = Vec::new();
    for r in &source_records {
        let idx = match classes.iter().position(|c| c.class == r.class) {
            Some(i) => i,
            None => {
                classes.push(ClassRecord {
                    class: r.class.clone(),
                    n_sources: 0,
                    n_refused_sources: 0,
                    n_samples: 0,
                    n_admitted: 0,
                    n_flagged: 0,
                    fingerprint: None,
                    denied: None,
                });
                classes.len() - 1
            }
        };
        let c = &mut classes[idx];
        c.n_sources += 1;
        c.n_refused_sources += u64::from(r.decision == "refused");
        c.n_samples += r.n_samples;
        c.n_flagged += r.n_flagged;
        c.n_admitted += r.n_samples - r.n_flagged;
    }
    // The sample index (mostly one core: a merge) and the fingerprint indexes (sorting on all
    // cores) are independent: build them side by side.
    let (index, fingerprints) = rayon::join(
        || write_sample_index(out_dir, samples),
        || write_fingerprints(out_dir, &mut grams, &mut classes),
    );
    let (index_digest, index_bytes, durable, corpus_root) = index?;
    pending_writes.push(durable);
    pending_writes.extend(fingerprints?);
    totals.n_unique_admitted = corpus_root.len();
    let root = corpus_root.root();

    let body = DeclarationBody {
        format: FORMAT.into(),
        name: decl.name.clone(),
        description: decl.description.clone(),
        declaration_toml_sha256: hex::encode(crate::fsio::sha256(toml_bytes)),
        base_dir: recorded_base_dir.display().to_string(),
        sample_hash: SAMPLE_HASH.into(),
        policy: PolicyRecord {
            admitted_licenses: decl.policy.admitted_licenses.clone(),
            excluded_classes: decl.policy.excluded_classes.clone(),
            flaggers: FlaggersRecord {
                email: decl.policy.flaggers.email,
                phone: decl.policy.flaggers.phone,
                card: decl.policy.flaggers.card,
                regexes: decl
                    .policy
                    .flaggers
                    .regexes
                    .iter()
                    .map(|r| RegexRecord {
                        id: r.id.clone(),
                        pattern: r.pattern.clone(),
                    })
                    .collect(),
                blocklist: decl
                    .policy
                    .flaggers
                    .blocklist
                    .iter()
                    .map(hex::encode)
                    .collect(),
            },
        },
        sources: source_records,
        classes,
        totals,
        corpus_root: hex::encode(root),
        sample_index: FileRecord {
            file: SAMPLE_INDEX_FILE.into(),
            sha256: hex::encode(index_digest),
            bytes: index_bytes,
        },
        exclusions: ExclusionsRecord {
            file: FileRecord {
                file: EXCLUSIONS_FILE.into(),
                sha256: hex::encode(exclusions_digest),
                bytes: exclusions_bytes,
            },
            n_flagged: totals.n_flagged,
            n_malformed: totals.n_malformed,
        },
    };
    // Every file the declaration commits to is durable before the declaration is written.
    for durable in pending_writes {
        durable.wait()?;
    }
    let declaration_digest = write_signed(out_dir, &body, key)?;
    Ok(Built {
        body,
        declaration_digest,
        root,
        first_exclusions,
    })
}

/// Merges the sorted sample records into `samples.idx` and the corpus tree over its hashes.
fn write_sample_index(
    out_dir: &Path,
    samples: ExternalSorter<SampleRecord>,
) -> Result<(Hash, u64, crate::fsio::Pending, RootBuilder), CorpusError> {
    let mut index_file = AtomicFile::create(&out_dir.join(SAMPLE_INDEX_FILE))?;
    index_file.write(crate::index::MAGIC)?;
    let mut corpus_root = RootBuilder::new();
    let mut pending: Option<(IndexEntry, Hash)> = None;
    let mut buf = Vec::with_capacity(48 * INDEX_BATCH);
    for record in samples.finish()? {
        let record = record?;
        match &mut pending {
            Some((entry, _)) if entry.hash == record.hash => {
                entry.occurrences = entry.occurrences.saturating_add(1);
                continue;
            }
            _ => {}
        }
        if let Some((entry, leaf)) = pending.take() {
            entry.encode(&mut buf);
            corpus_root.push(leaf);
            if buf.len() >= 48 * INDEX_BATCH {
                index_file.write(&buf)?;
                buf.clear();
            }
        }
        let first = SampleRef {
            source: record.source,
            line: record.line,
        };
        pending = Some((
            IndexEntry {
                hash: record.hash,
                first,
                occurrences: 1,
            },
            record.leaf,
        ));
    }
    if let Some((entry, leaf)) = pending.take() {
        entry.encode(&mut buf);
        corpus_root.push(leaf);
    }
    index_file.write(&buf)?;
    let (digest, bytes, durable) = index_file.commit_in_background()?;
    Ok((digest, bytes, durable, corpus_root))
}

/// The directory of the deny indexes inside an admission.
pub const DENIED_DIR: &str = "fingerprints/denied";

/// The gram-set key of a class's deny index (`/` cannot occur in a class name, so it never
/// collides with an admitted class).
fn denied_key(class: &str) -> String {
    format!("denied/{class}")
}

/// Whether `source` is refused as excluded content (its class is excluded by the policy), and
/// so read into its class's deny index.
fn denied_class(decl: &Declaration, source: &SourceDecl) -> bool {
    decl.policy
        .excluded_classes
        .iter()
        .any(|c| c == &source.class)
}

/// Streams a refused excluded-class source and adds its text's grams to the class's deny
/// index. Malformed lines carry no text and are skipped (the source is refused as a whole).
fn fingerprint_denied(
    source: &SourceDecl,
    files: &[SourceFile],
    grams: &mut fingerprint::GramSets,
) -> Result<(), CorpusError> {
    const BATCH: usize = 64 << 10;
    let key = denied_key(&source.class);
    let mut buf = Vec::new();
    let mut batch = Vec::with_capacity(BATCH + 1024);
    let mut line_base = 0u64;
    for file in files {
        let mut splitter = Splitter::open(file, line_base)?;
        loop {
            buf.clear();
            let Some(span) = splitter.next_into(&mut buf)? else {
                break;
            };
            if let Ok(text) =
                decode_ref(file.format, &source.text_field, &buf[span.start..span.end])
            {
                fingerprint::ngram_hashes(&text, |g| batch.push(g));
            }
            if batch.len() >= BATCH {
                grams.extend(&key, &batch)?;
                batch.clear();
            }
        }
        line_base = splitter.lines_read();
    }
    if !batch.is_empty() {
        grams.extend(&key, &batch)?;
    }
    Ok(())
}

/// Writes each class's fingerprint index and deny index and records them in `classes`.
fn write_fingerprints(
    out_dir: &Path,
    grams: &mut fingerprint::GramSets,
    classes: &mut [ClassRecord],
) -> Result<Vec<crate::fsio::Pending>, CorpusError> {
    let mut pending = Vec::new();
    for c in classes.iter_mut() {
        let rel = format!("fingerprints/{}.fp", c.class);
        let mut file = AtomicFile::create(&out_dir.join(&rel))?;
        let Some(n) = grams.finish_class(&c.class, &mut file)? else {
            continue;
        };
        let (digest, _, durable) = file.commit_in_background()?;
        pending.push(durable);
        c.fingerprint = Some(FingerprintRecord {
            file: rel,
            sha256: hex::encode(digest),
            scheme: fingerprint::SCHEME.into(),
            n_grams: n,
            false_positive_rate: format!(
                "n/2^64 = {n}/2^64 = {:.3e} per queried gram",
                fingerprint::false_positive_rate(n, 64)
            ),
        });
    }
    for c in classes.iter_mut() {
        let rel = format!("{DENIED_DIR}/{}.fp", c.class);
        let mut file = AtomicFile::create(&out_dir.join(&rel))?;
        let Some(n) = grams.finish_class(&denied_key(&c.class), &mut file)? else {
            continue;
        };
        let (digest, _, durable) = file.commit_in_background()?;
        pending.push(durable);
        c.denied = Some(FingerprintRecord {
            file: rel,
            sha256: hex::encode(digest),
            scheme: fingerprint::SCHEME.into(),
            n_grams: n,
            false_positive_rate: format!(
                "n/2^64 = {n}/2^64 = {:.3e} per queried gram",
                fingerprint::false_positive_rate(n, 64)
            ),
        });
    }

    Ok(pending)
}

struct SourceCtx<'a> {
    decl: &'a Declaration,
    source: &'a SourceDecl,
    files: &'a [SourceFile],
}

impl SourceCtx<'_> {
    /// The parallel stage: decode, hash, flag and fingerprint; order preserved.
    fn process(&self, chunk: &Chunk) -> Vec<Part> {
        let flaggers = &self.decl.policy.flaggers;
        chunk
            .records
            .par_chunks(256)
            .map(|records| {
                let mut out = Vec::with_capacity(records.len());
                // About one gram per 5 bytes of text: avoid regrowing the vector.
                let text_bytes: usize = records.iter().map(|r| r.span.end - r.span.start).sum();
                let mut grams = Vec::with_capacity(text_bytes / 5 + 16);
                for r in records {
                    let bytes = &chunk.data[r.span.start..r.span.end];
                    let format = self.files[r.file_idx as usize].format;
                    let processed = match decode_ref(format, &self.source.text_field, bytes) {
                        Ok(text) => {
                            let hash = crate::sample_hash(&text);
                            match policy::flag(flaggers, &text, &hash) {
                                Some(flag) => Processed {
                                    record: *r,
                                    hash,
                                    leaf: warden_merkle::leaf_hash(&hash),
                                    outcome: Outcome::Flagged(flag),
                                },
                                None => {
                                    fingerprint::ngram_hashes(&text, |g| grams.push(g));
                                    Processed {
                                        record: *r,
                                        hash,
                                        leaf: warden_merkle::leaf_hash(&hash),
                                        outcome: Outcome::Admitted,
                                    }
                                }
                            }
                        }
                        Err(message) => Processed {
                            record: *r,
                            hash: crate::fsio::sha256(bytes),
                            leaf: [0u8; 32],
                            outcome: Outcome::Malformed(message),
                        },
                    };
                    out.push(processed);
                }
                (out, grams)
            })
            .collect()
    }
}

/// Text documents are already UTF-8 bytes in the chunk: borrow them instead of copying.
fn decode_ref<'a>(
    format: SourceFormat,
    text_field: &str,
    bytes: &'a [u8],
) -> Result<std::borrow::Cow<'a, str>, String> {
    match format {
        SourceFormat::Text => std::str::from_utf8(bytes)
            .map(std::borrow::Cow::Borrowed)
            .map_err(|e| format!("invalid UTF-8 at byte {} of the document", e.valid_up_to())),
        SourceFormat::Jsonl => decode(format, text_field, bytes).map(std::borrow::Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::relative_path;
    use std::path::{Path, PathBuf};

    #[test]
    fn base_dirs_are_recorded_relative_to_the_admission_directory() {
        let rel = |from: &str, to: &str| relative_path(Path::new(from), Path::new(to));
        assert_eq!(rel("/a/admitted", "/a/synth"), PathBuf::from("../synth"));
        assert_eq!(rel("/a/admitted", "/a/admitted"), PathBuf::from("."));
        assert_eq!(
            rel("/a/admitted", "/a/admitted/data"),
            PathBuf::from("data")
        );
        assert_eq!(rel("/a/b/admitted", "/c/d"), PathBuf::from("../../../c/d"));
    }
}
