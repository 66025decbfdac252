//! The embedded lineage store: an append-only directory of segment files plus a checkpoint file.
//!
//! ```text
//! DIR/seg-00000000000000000000.wlog   records 0.. (rotated at `segment_bytes`, named by first seq)
//! DIR/checkpoints.wlog                signed C2SP checkpoint notes, one frame each
//! ```
//! Both use the framing in [`frame`]. Guarantees:
//!
//! * A record is visible only when its whole frame is written (one `write` per record), so a
//!   crash or `kill -9` can leave at most a torn *prefix* of the last frame. [`Lineage::open`]
//!   detects it, reports it in [`OpenReport`], and cuts the file back to the last complete
//!   record; nothing before it is touched. Damage anywhere else is corruption: opening refuses.
//! * Appends from several threads are serialized by one mutex; sequence numbers, the hash chain
//!   and the Merkle tree advance together under it.
//! * Segments and the checkpoint file are fsynced before a checkpoint is written, so a signed
//!   checkpoint never covers records that could be lost by a power cut.
//! * [`verify`] only reads: it never repairs, so a torn tail is reported, not hidden.

pub mod frame;
pub mod fs;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use warden_keys::{KeyError, KeyRef, SigningKey, TrustStore};
use warden_lineage::{
    encode_entry, Checkpoint, EnvelopeView, LineageVerifier, Record, RecordDraft, RecordError,
    RecordFault, SignedCheckpoint, SignedRecord, UnsealedTail, VerifiedLineage, VerifyError,
};
use warden_merkle::{Hash, MerkleError, MerkleTree};

use frame::{FrameFault, FramedFile, CHECKPOINT_MAGIC, SEGMENT_MAGIC};

const CHECKPOINT_FILE: &str = "checkpoints.wlog";

/// Errors from the store. Every message names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Key {
        path: String,
        #[source]
        source: KeyError,
    },
    #[error("{0}")]
    Trust(KeyError),
    #[error("{path}: not a Warden lineage: {reason}")]
    NotALineage { path: String, reason: String },
    #[error("{path}: a lineage already exists here")]
    Exists { path: String },
    #[error("{path}: the lineage is damaged: {cause}")]
    Damaged {
        path: String,
        cause: Box<VerifyError>,
    },
    #[error("record for kind `{kind}`: {source}")]
    Record {
        kind: String,
        #[source]
        source: RecordError,
    },
    #[error("{path}: the lineage's origin is `{found}`, not `{expected}`")]
    OriginMismatch {
        path: String,
        expected: String,
        found: String,
    },
    #[error("{0}")]
    Proof(#[from] MerkleError),
    #[error("{path}: lineage store lock poisoned by a panic in another thread")]
    Poisoned { path: String },
}

/// When checkpoints are signed and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Every record carries its own signature and is followed by a checkpoint.
    EveryRecord,
    /// Records are unsigned; a checkpoint co-signed by every signer of the window seals them
    /// when `records` are pending or `millis` have passed since the first pending one (checked
    /// on append), and on [`Lineage::checkpoint`] / [`Lineage::close`].
    Window { records: u64, millis: u64 },
}

/// How a lineage is created or opened for appending.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The checkpoint origin line: a name unique to this log.
    pub origin: String,
    pub cadence: Cadence,
    /// A new segment file starts once the current one reaches this size.
    pub segment_bytes: u64,
    /// fsync segments and checkpoints at every checkpoint (turn off only for throwaway logs).
    pub fsync: bool,
}

impl StoreOptions {
    pub fn new(origin: impl Into<String>) -> StoreOptions {
        StoreOptions {
            origin: origin.into(),
            cadence: Cadence::Window {
                records: 1024,
                millis: 1000,
            },
            segment_bytes: 64 << 20,
            fsync: true,
        }
    }

    pub fn with_cadence(mut self, cadence: Cadence) -> StoreOptions {
        self.cadence = cadence;
        self
    }
}

/// What opening found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub records: u64,
    pub checkpoints: u64,
    /// A torn tail that was cut: (file, offset where it was cut, bytes removed).
    pub repaired: Vec<(String, u64, u64)>,
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub leaf_hash: Hash,
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
}

struct Inner {
    tree: MerkleTree,
    prev: Hash,
    segments: Vec<Segment>,
    /// (segment index, payload offset, payload length) per record.
    locations: Vec<(u32, u64, u32)>,
    writer: File,
    writer_len: u64,
    checkpoint_writer: File,
    n_checkpoints: u64,
    last_checkpoint_size: Option<u64>,
    pending: BTreeMap<KeyRef, Arc<SigningKey>>,
    window_started: Option<Instant>,
    frame_buf: Vec<u8>,
    entry_buf: Vec<u8>,
    dirty: bool,
}

/// An open lineage, ready for appends. `Send + Sync`: share it behind an `Arc`.
pub struct Lineage {
    dir: PathBuf,
    options: StoreOptions,
    inner: Mutex<Inner>,
    report: OpenReport,
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn segment_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.wlog")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Lists segment files in order, checking their names.
fn list_segments(dir: &Path) -> Result<Vec<Segment>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(io_at(dir))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(num) = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".wlog"))
        {
            let first_seq = num
                .parse::<u64>()
                .ok()
                .filter(|_| num.len() == 20)
                .ok_or_else(|| StoreError::NotALineage {
                    path: entry.path().display().to_string(),
                    reason: "segment file name is not seg-<20 digits>.wlog".into(),
                })?;
            segments.push(Segment {
                first_seq,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Everything read from a directory, before any repair.
struct Scan {
    segments: Vec<Segment>,
    files: Vec<FramedFile>,
    checkpoints: FramedFile,
    checkpoint_path: PathBuf,
}

fn scan_dir(dir: &Path) -> Result<Scan, StoreError> {
    let meta = std::fs::metadata(dir).map_err(io_at(dir))?;
    if !meta.is_dir() {
        return Err(StoreError::NotALineage {
            path: dir.display().to_string(),
            reason: "not a directory".into(),
        });
    }
    let segments = list_segments(dir)?;
    let checkpoint_path = dir.join(CHECKPOINT_FILE);
    if segments.is_empty() {
        return Err(StoreError::NotALineage {
            path: dir.display().to_string(),
            reason: "no segment files (seg-*.wlog)".into(),
        });
    }
    let mut files = Vec::with_capacity(segments.len());
    for seg in &segments {
        files.push(frame::read_framed(&seg.path, SEGMENT_MAGIC).map_err(io_at(&seg.path))?);
    }
    let checkpoints = if checkpoint_path.exists() {
        frame::read_framed(&checkpoint_path, CHECKPOINT_MAGIC).map_err(io_at(&checkpoint_path))?
    } else {
        return Err(StoreError::NotALineage {
            path: checkpoint_path.display().to_string(),
            reason: "checkpoint file is missing".into(),
        });
    };
    Ok(Scan {
        segments,
        files,
        checkpoints,
        checkpoint_path,
    })
}

/// Turns the frame-level state of segment files into the first record-level error, if any.
/// `allow_torn_tail` accepts a torn tail in the last segment (open repairs it).
fn segment_fault(scan: &Scan, allow_torn_tail: bool) -> Result<(), VerifyError> {
    let mut index = 0u64;
    let last = scan.files.len() - 1;
    for (i, (seg, file)) in scan.segments.iter().zip(&scan.files).enumerate() {
        let name = seg.path.display().to_string();
        if seg.first_seq != index {
            return Err(VerifyError::record(
                index,
                "missing",
                RecordFault::Corrupt(format!(
                    "segment {name} starts at record {} but record {index} comes next (segment missing or renamed)",
                    seg.first_seq
                )),
            ));
        }
        match &file.fault {
            None => {}
            Some(FrameFault::BadHeader(reason)) => {
                return Err(VerifyError::Storage(format!("{name}: {reason}")))
            }
            Some(FrameFault::Corrupt {
                frame,
                offset,
                reason,
            }) => {
                return Err(VerifyError::record(
                    index + frame,
                    "unknown",
                    RecordFault::Corrupt(format!("{reason} at byte {offset} of {name}")),
                ))
            }
            // A torn tail is tolerated only at the end of the last segment, and only when opening.
            Some(FrameFault::Torn { .. }) if allow_torn_tail && i == last => {}
            Some(FrameFault::Torn { frame, offset }) => {
                return Err(VerifyError::record(
                    index + frame,
                    "incomplete",
                    RecordFault::Torn {
                        file: name,
                        offset: *offset,
                    },
                ));
            }
        }
        index += file.frames.len() as u64;
    }
    Ok(())
}

fn checkpoint_fault(scan: &Scan, allow_torn_tail: bool) -> Result<(), VerifyError> {
    let name = scan.checkpoint_path.display().to_string();
    match &scan.checkpoints.fault {
        None => Ok(()),
        Some(FrameFault::BadHeader(reason)) => {
            Err(VerifyError::Storage(format!("{name}: {reason}")))
        }
        Some(FrameFault::Corrupt {
            frame,
            offset,
            reason,
        }) => Err(VerifyError::Checkpoint {
            index: *frame,
            size: None,
            fault: warden_lineage::CheckpointFault::Malformed(format!(
                "{reason} at byte {offset} of {name}"
            )),
        }),
        Some(FrameFault::Torn { frame, offset }) if !allow_torn_tail => {
            Err(VerifyError::Checkpoint {
                index: *frame,
                size: None,
                fault: warden_lineage::CheckpointFault::Malformed(format!(
                    "incomplete checkpoint at byte {offset} of {name} (torn write)"
                )),
            })
        }
        Some(FrameFault::Torn { .. }) => Ok(()),
    }
}

/// Options for [`verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Fail unless the log holds exactly this many records (catches a cut at a record boundary
    /// after the last checkpoint, which is otherwise a valid shorter log).
    pub expect_size: Option<u64>,
    /// Unsigned records after the last checkpoint are authenticated by nothing: refused by
    /// default, or accepted and reported in [`VerifiedLineage::unauthenticated`].
    pub unsealed_tail: UnsealedTail,
    /// A checkpoint seen earlier (e.g. by a witness): the log must contain it and extend it
    /// by a consistency proof, which catches a rollback of the records or the checkpoint file.
    pub pinned: Option<SignedCheckpoint>,
}

/// Verifies a lineage directory against a trust store, reading only.
pub fn verify(
    dir: &Path,
    trust: &TrustStore,
    options: &VerifyOptions,
) -> Result<VerifiedLineage, VerifyError> {
    let scan = scan_dir(dir).map_err(|e| VerifyError::Storage(e.to_string()))?;
    segment_fault(&scan, false)?;
    checkpoint_fault(&scan, false)?;
    let mut verifier = LineageVerifier::new(trust);
    if let Some(pinned) = &options.pinned {
        verifier = verifier.with_pinned(pinned.clone());
    }
    verify_scan(&scan, verifier)?.finish(options.expect_size, options.unsealed_tail)
}

/// Feeds every record and checkpoint of `scan` to `verifier`, in log order.
fn verify_scan<'t>(
    scan: &Scan,
    mut verifier: LineageVerifier<'t>,
) -> Result<LineageVerifier<'t>, VerifyError> {
    // Checkpoint notes with their claimed sizes, in file order.
    let mut notes = Vec::with_capacity(scan.checkpoints.frames.len());
    for idx in 0..scan.checkpoints.frames.len() {
        let raw = scan.checkpoints.payload(idx);
        let note = std::str::from_utf8(raw).map_err(|_| VerifyError::Checkpoint {
            index: idx as u64,
            size: None,
            fault: warden_lineage::CheckpointFault::Malformed("not UTF-8".into()),
        })?;
        let size = SignedCheckpoint::parse(note)
            .map_err(|e| VerifyError::Checkpoint {
                index: idx as u64,
                size: None,
                fault: warden_lineage::CheckpointFault::Malformed(e.0),
            })?
            .checkpoint
            .size;
        notes.push((idx as u64, note, size));
    }
    let mut next_note = 0usize;
    let mut apply_due = |verifier: &mut LineageVerifier<'_>| -> Result<(), VerifyError> {
        while let Some(&(idx, note, size)) = notes.get(next_note) {
            if size > verifier.len() {
                break;
            }
            verifier.checkpoint(idx, note)?;
            next_note += 1;
        }
        Ok(())
    };
    apply_due(&mut verifier)?;
    for (seg, file) in scan.segments.iter().zip(&scan.files) {
        for frame in 0..file.frames.len() {
            verifier.record(file.payload(frame)).map_err(|e| match e {
                // Name the file for undecodable records: the byte offsets live there.
                VerifyError::Record {
                    index,
                    kind,
                    fault: RecordFault::Undecodable(reason),
                } => VerifyError::record(
                    index,
                    kind,
                    RecordFault::Undecodable(format!("{reason} (in {})", seg.path.display())),
                ),
                other => other,
            })?;
            apply_due(&mut verifier)?;
        }
    }
    if let Some(&(idx, _, size)) = notes.get(next_note) {
        return Err(VerifyError::record(
            verifier.len(),
            "missing",
            RecordFault::Missing {
                checkpoint: idx,
                claimed: size,
            },
        ));
    }
    Ok(verifier)
}

impl Lineage {
    /// Creates a new lineage in `dir` (created if missing; refused if it already holds one).
    pub fn create(dir: &Path, options: StoreOptions) -> Result<Lineage, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        if !list_segments(dir)?.is_empty() || dir.join(CHECKPOINT_FILE).exists() {
            return Err(StoreError::Exists {
                path: dir.display().to_string(),
            });
        }
        let seg_path = dir.join(segment_name(0));
        let cp_path = dir.join(CHECKPOINT_FILE);
        // Write both headers via temp+rename so a crash never leaves a headerless file.
        fs::atomic_write(
            &cp_path,
            &frame::encode_header(CHECKPOINT_MAGIC, &options.origin),
        )?;
        fs::atomic_write(
            &seg_path,
            &frame::encode_header(SEGMENT_MAGIC, &options.origin),
        )?;
        Lineage::open_with(dir, Some(options))
    }

    /// Opens an existing lineage for appending with its stored origin and default options.
    pub fn open(dir: &Path) -> Result<Lineage, StoreError> {
        Lineage::open_with(dir, None)
    }

    /// Opens `dir` if it holds a lineage, else creates one.
    pub fn open_or_create(dir: &Path, options: StoreOptions) -> Result<Lineage, StoreError> {
        if dir.join(CHECKPOINT_FILE).exists() || !list_segments(dir).map_or(true, |s| s.is_empty())
        {
            Lineage::open_with(dir, Some(options))
        } else {
            Lineage::create(dir, options)
        }
    }

    /// Opens for appending: rebuilds the tree and chain, cuts a torn tail (reported), refuses
    /// anything else that is damaged.
    pub fn open_with(dir: &Path, options: Option<StoreOptions>) -> Result<Lineage, StoreError> {
        let scan = scan_dir(dir)?;
        let damaged = |cause| StoreError::Damaged {
            path: dir.display().to_string(),
            cause: Box::new(cause),
        };
        segment_fault(&scan, true).map_err(damaged)?;
        checkpoint_fault(&scan, true).map_err(damaged)?;
        let origin = scan.files[0].origin.clone();
        let options = match options {
            Some(o) if o.origin != origin => {
                return Err(StoreError::OriginMismatch {
                    path: dir.display().to_string(),
                    expected: o.origin,
                    found: origin,
                })
            }
            Some(o) => o,
            None => StoreOptions::new(origin),
        };

        let mut report = OpenReport::default();
        // Cut torn tails back to the last complete frame. Nothing before it is rewritten.
        let mut cut = |path: &Path, file: &FramedFile| -> Result<(), StoreError> {
            if let Some(FrameFault::Torn { offset, .. }) = file.fault {
                let removed = file.bytes.len() as u64 - offset;
                let handle = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_at(path))?;
                handle.set_len(offset).map_err(io_at(path))?;
                handle.sync_all().map_err(io_at(path))?;
                report
                    .repaired
                    .push((path.display().to_string(), offset, removed));
            }
            Ok(())
        };
        let last = scan.files.len() - 1;
        cut(&scan.segments[last].path, &scan.files[last])?;
        cut(&scan.checkpoint_path, &scan.checkpoints)?;

        // Rebuild the chain and the tree, checking structure as we go.
        let mut tree = MerkleTree::new();
        let mut prev = [0u8; 32];
        let mut locations = Vec::new();
        for (seg_idx, file) in scan.files.iter().enumerate() {
            for frame_idx in 0..file.frames.len() {
                let index = tree.len();
                let entry = file.payload(frame_idx);
                let (start, len) = file.frames[frame_idx];
                let (body, _) = warden_lineage::decode_entry(entry).map_err(|e| {
                    damaged(VerifyError::record(
                        index,
                        "unknown",
                        RecordFault::Undecodable(e.to_string()),
                    ))
                })?;
                let view = EnvelopeView::check(body).map_err(|e| {
                    damaged(VerifyError::record(
                        index,
                        "unknown",
                        RecordFault::Undecodable(e.to_string()),
                    ))
                })?;
                if view.seq != index {
                    return Err(damaged(VerifyError::record(
                        index,
                        view.kind,
                        RecordFault::Sequence {
                            expected: index,
                            found: view.seq,
                        },
                    )));
                }
                if view.prev != prev {
                    return Err(damaged(VerifyError::record(
                        index,
                        view.kind,
                        RecordFault::BrokenChain,
                    )));
                }
                let leaf = warden_merkle::leaf_hash(body);
                tree.push(leaf);
                prev = leaf;
                locations.push((seg_idx as u32, start as u64, len as u32));
            }
        }
        // Checkpoints must agree with the records we hold (sizes and roots; signatures are
        // `verify`'s job, it needs the trust file).
        let mut last_checkpoint_size = None;
        for idx in 0..scan.checkpoints.frames.len() {
            let bad = |reason: String| {
                damaged(VerifyError::Checkpoint {
                    index: idx as u64,
                    size: None,
                    fault: warden_lineage::CheckpointFault::Malformed(reason),
                })
            };
            let note = std::str::from_utf8(scan.checkpoints.payload(idx))
                .map_err(|_| bad("not UTF-8".into()))?;
            let cp = SignedCheckpoint::parse(note)
                .map_err(|e| bad(e.0))?
                .checkpoint;
            if cp.size > tree.len() {
                return Err(damaged(VerifyError::record(
                    tree.len(),
                    "missing",
                    RecordFault::Missing {
                        checkpoint: idx as u64,
                        claimed: cp.size,
                    },
                )));
            }
            if tree.root_at(cp.size)? != cp.root {
                return Err(bad(format!(
                    "root for tree size {} does not match the records",
                    cp.size
                )));
            }
            last_checkpoint_size = Some(cp.size);
        }
        report.records = tree.len();
        report.checkpoints = scan.checkpoints.frames.len() as u64;

        let seg_path = scan.segments[last].path.clone();
        let writer = OpenOptions::new()
            .append(true)
            .open(&seg_path)
            .map_err(io_at(&seg_path))?;
        let writer_len = writer.metadata().map_err(io_at(&seg_path))?.len();
        let checkpoint_writer = OpenOptions::new()
            .append(true)
            .open(&scan.checkpoint_path)
            .map_err(io_at(&scan.checkpoint_path))?;
        let Scan { segments, .. } = scan;
        Ok(Lineage {
            dir: dir.to_path_buf(),
            options,
            inner: Mutex::new(Inner {
                tree,
                prev,
                segments,
                locations,
                writer,
                writer_len,
                checkpoint_writer,
                n_checkpoints: report.checkpoints,
                last_checkpoint_size,
                pending: BTreeMap::new(),
                window_started: None,
                frame_buf: Vec::with_capacity(1024),
                entry_buf: Vec::with_capacity(1024),
                dirty: false,
            }),
            report,
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Poisoned {
            path: self.dir.display().to_string(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn origin(&self) -> &str {
        &self.options.origin
    }

    /// What opening found (records, checkpoints, torn tails cut).
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.lock().map_or(0, |g| g.tree.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a record signed (now, or at the next checkpoint) by `key` in `key.role()`.
    pub fn append(
        &self,
        draft: RecordDraft,
        key: &Arc<SigningKey>,
    ) -> Result<Appended, StoreError> {
        // `encode_body` below refuses payloads outside the JSON model (non-finite floats) before
        // anything is written, so no separate check pass is needed on this hot path.
        let mut guard = self.lock()?;
        let inner = &mut *guard;
        let index = inner.tree.len();
        let record = Record {
            seq: index,
            kind: draft.kind,
            time_ms: now_ms(),
            role: key.role(),
            signer: key.key_ref(),
            policy_version: draft.policy_version,
            prev: inner.prev,
            payload: draft.payload,
        };
        let every_record = self.options.cadence == Cadence::EveryRecord;
        let body = record.encode_body().map_err(|source| StoreError::Record {
            kind: record.kind.clone(),
            source,
        })?;
        let signature = every_record.then(|| key.sign(&warden_lineage::signing_message(&body)));
        inner.entry_buf.clear();
        encode_entry(&mut inner.entry_buf, &body, signature.as_ref());
        if inner.writer_len >= self.options.segment_bytes {
            self.rotate(inner, index)?;
        }
        inner.frame_buf.clear();
        frame::encode_frame(&mut inner.frame_buf, &inner.entry_buf);
        let seg_idx = inner.segments.len() - 1;
        let seg_path = inner.segments[seg_idx].path.clone();
        // One write per record: a crash leaves at most a torn prefix of this frame.
        inner
            .writer
            .write_all(&inner.frame_buf)
            .map_err(io_at(&seg_path))?;
        let payload_offset = inner.writer_len + 8;
        inner.writer_len += inner.frame_buf.len() as u64;
        inner
            .locations
            .push((seg_idx as u32, payload_offset, inner.entry_buf.len() as u32));
        let leaf = warden_merkle::leaf_hash(&body);
        inner.tree.push(leaf);
        inner.prev = leaf;
        inner.dirty = true;
        if !inner.pending.contains_key(&record.signer) {
            inner.pending.insert(record.signer.clone(), Arc::clone(key));
        }
        let started = *inner.window_started.get_or_insert_with(Instant::now);
        let due = match self.options.cadence {
            Cadence::EveryRecord => true,
            Cadence::Window { records, millis } => {
                let pending = index + 1 - inner.last_checkpoint_size.unwrap_or(0);
                pending >= records || started.elapsed().as_millis() as u64 >= millis
            }
        };
        if due {
            self.checkpoint_locked(inner)?;
        }
        Ok(Appended {
            index,
            leaf_hash: leaf,
        })
    }

    fn rotate(&self, inner: &mut Inner, first_seq: u64) -> Result<(), StoreError> {
        let old = inner.segments.last().map(|s| s.path.clone());
        if let Some(old) = old {
            inner.writer.sync_all().map_err(io_at(&old))?;
        }
        let path = self.dir.join(segment_name(first_seq));
        fs::atomic_write(
            &path,
            &frame::encode_header(SEGMENT_MAGIC, &self.options.origin),
        )?;
        inner.writer = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_at(&path))?;
        inner.writer_len = inner.writer.metadata().map_err(io_at(&path))?.len();
        inner.segments.push(Segment { first_seq, path });
        Ok(())
    }

    /// Signs and writes a checkpoint over every record so far, co-signed by each key with
    /// records since the last one. Returns `None` if nothing new needs sealing.
    pub fn checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        let mut guard = self.lock()?;
        self.checkpoint_locked(&mut guard)
    }

    fn checkpoint_locked(&self, inner: &mut Inner) -> Result<Option<SignedCheckpoint>, StoreError> {
        let size = inner.tree.len();
        if inner.pending.is_empty() || inner.last_checkpoint_size == Some(size) {
            return Ok(None);
        }
        if self.options.fsync && inner.dirty {
            if let Some(seg) = inner.segments.last() {
                inner.writer.sync_data().map_err(io_at(&seg.path))?;
            }
        }
        let signed = Checkpoint {
            origin: self.options.origin.clone(),
            size,
            root: inner.tree.root(),
        }
        .sign(inner.pending.values().map(|k| k.as_ref()));
        let note = signed.to_note();
        inner.frame_buf.clear();
        frame::encode_frame(&mut inner.frame_buf, note.as_bytes());
        let cp_path = self.dir.join(CHECKPOINT_FILE);
        inner
            .checkpoint_writer
            .write_all(&inner.frame_buf)
            .map_err(io_at(&cp_path))?;
        if self.options.fsync {
            inner
                .checkpoint_writer
                .sync_data()
                .map_err(io_at(&cp_path))?;
        }
        inner.n_checkpoints += 1;
        inner.last_checkpoint_size = Some(size);
        inner.pending.clear();
        inner.window_started = None;
        inner.dirty = false;
        Ok(Some(signed))
    }

    /// Writes a final checkpoint and syncs. Also attempted on drop.
    pub fn close(&self) -> Result<(), StoreError> {
        let mut guard = self.lock()?;
        self.checkpoint_locked(&mut guard)?;
        let path = guard
            .segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        guard.writer.sync_all().map_err(io_at(&path))?;
        Ok(())
    }

    /// Number of checkpoints written.
    pub fn n_checkpoints(&self) -> u64 {
        self.lock().map_or(0, |g| g.n_checkpoints)
    }

    /// The size and root of the latest checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, Hash)>, StoreError> {
        let guard = self.lock()?;
        match guard.last_checkpoint_size {
            Some(size) => Ok(Some((size, guard.tree.root_at(size)?))),
            None => Ok(None),
        }
    }

    /// The current root over all records.
    pub fn root(&self) -> Result<Hash, StoreError> {
        Ok(self.lock()?.tree.root())
    }

    /// The root at an earlier size.
    pub fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        Ok(self.lock()?.tree.root_at(size)?)
    }

    /// Reads records `range` back (decoded; bodies kept as stored).
    pub fn read_range(&self, range: Range<u64>) -> Result<Vec<SignedRecord>, StoreError> {
        let (locations, paths) = {
            let guard = self.lock()?;
            let end = range.end.min(guard.tree.len());
            let start = range.start.min(end);
            let locs: Vec<_> = guard.locations[start as usize..end as usize].to_vec();
            let paths: Vec<PathBuf> = guard.segments.iter().map(|s| s.path.clone()).collect();
            (locs, paths)
        };
        let mut out = Vec::with_capacity(locations.len());
        let mut open: Option<(u32, File)> = None;
        for (seg, offset, len) in locations {
            let path = &paths[seg as usize];
            if open.as_ref().map(|(s, _)| *s) != Some(seg) {
                open = Some((seg, File::open(path).map_err(io_at(path))?));
            }
            let Some((_, file)) = open.as_ref() else {
                continue;
            };
            let mut buf = vec![0u8; len as usize];
            read_exact_at(file, &mut buf, offset).map_err(io_at(path))?;
            let record = SignedRecord::from_cbor(&buf).map_err(|source| StoreError::Record {
                kind: "unknown".into(),
                source,
            })?;
            out.push(record);
        }
        Ok(out)
    }

    /// An inclusion proof for record `index` in the tree of `size` records.
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        Ok(self.lock()?.tree.inclusion_proof(index, size)?)
    }

    /// A consistency proof between tree sizes `old` and `new`.
    pub fn prove_consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        Ok(self.lock()?.tree.consistency_proof(old, new)?)
    }

    /// The leaf hash of record `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Option<Hash>, StoreError> {
        Ok(self.lock()?.tree.leaf(index))
    }
}

impl Drop for Lineage {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.inner.lock() {
            let _ = self.checkpoint_locked(&mut guard);
        }
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

/// Reads every record of a lineage directory without opening it for appending (read-only).
pub fn read_all(dir: &Path) -> Result<Vec<SignedRecord>, StoreError> {
    let scan = scan_dir(dir)?;
    segment_fault(&scan, false).map_err(|cause| StoreError::Damaged {
        path: dir.display().to_string(),
        cause: Box::new(cause),
    })?;
    let mut out = Vec::new();
    for file in &scan.files {
        for frame in 0..file.frames.len() {
            out.push(
                SignedRecord::from_cbor(file.payload(frame)).map_err(|source| {
                    StoreError::Record {
                        kind: "unknown".into(),
                        source,
                    }
                })?,
            );
        }
    }
    Ok(out)
}

/// Reads every checkpoint note of a lineage directory (read-only).
pub fn read_checkpoints(dir: &Path) -> Result<Vec<SignedCheckpoint>, StoreError> {
    let scan = scan_dir(dir)?;
    let mut out = Vec::new();
    for frame in 0..scan.checkpoints.frames.len() {
        let note = std::str::from_utf8(scan.checkpoints.payload(frame)).map_err(|_| {
            StoreError::NotALineage {
                path: scan.checkpoint_path.display().to_string(),
                reason: format!("checkpoint {frame} is not UTF-8"),
            }
        })?;
        out.push(
            SignedCheckpoint::parse(note).map_err(|e| StoreError::NotALineage {
                path: scan.checkpoint_path.display().to_string(),
                reason: format!("checkpoint {frame}: {}", e.0),
            })?,
        );
    }
    Ok(out)
}
