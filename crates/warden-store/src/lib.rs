//! The embedded lineage store: an append-only directory of segment files plus a checkpoint file.
//!
//! ```text
//! DIR/seg-00000000000000000000.wlog   records 0.. (rotated at `segment_bytes`, named by first seq)
//! DIR/checkpoints.wlog                signed C2SP checkpoint notes, one frame each
//! DIR/cadence                         `record` or `window`: how records are signed (chosen once)
//! DIR/lock                            advisory lock held while a `Lineage` is open (holder's pid)
//! DIR/append-state                    cache: where the log stood at a checkpoint (see `state`)
//! DIR/unauthenticated-<seq>-<ms>.wlog a tail moved aside by `Lineage::recover` (never deleted)
//! ```
//! Segments and the checkpoint file use the framing in [`frame`]. Guarantees:
//!
//! * A record is visible only when its whole frame is written. A failed append puts the file
//!   back to its previous length (or, if even that fails, refuses every later append until the
//!   lineage is reopened); its error says whether the record is in the log
//!   ([`StoreError::appended`]), so a caller never writes a record twice.
//! * A crash or `kill -9` can leave at most a torn *prefix* of the last frame. [`Lineage::open`]
//!   cuts it and reports it, but only after the last checkpoint: a sealed record is never cut,
//!   and damage anywhere else makes opening refuse without changing a byte.
//! * Opening for append never seals records it did not write: every record after the last
//!   checkpoint must carry a per-record signature that the trust store accepts for its kind's
//!   role, or opening refuses naming the records ([`Lineage::recover`] moves them aside).
//! * One writer: an advisory lock on `DIR/lock` is held while a `Lineage` is open; appends from
//!   several threads are serialized by one mutex.
//! * Bounded memory: open, [`verify`] and reads stream the segments frame by frame; open starts
//!   from the cached state of the last checkpoint plus the Merkle frontier, so its cost does not
//!   grow with the log. Proofs build the full tree on first use.
//! * Segments are fsynced before a checkpoint is written, so a signed checkpoint never covers
//!   records that could be lost by a power cut.
//! * [`verify`] only reads: it never repairs, so a torn tail is reported, not hidden.

pub mod frame;
pub mod fs;
mod logfile;
mod state;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use warden_keys::{KeyError, KeyRef, SigningKey, TrustStore};
use warden_lineage::{
    decode_entry, encode_entry, signing_message, Checkpoint, EnvelopeView, LineageVerifier, Record,
    RecordDraft, RecordError, RecordFault, SignedCheckpoint, SignedRecord, UnsealedTail,
    VerifiedLineage, VerifyError,
};
use warden_merkle::{CompactTree, Hash, MerkleError, MerkleTree};

use frame::{FrameFault, FrameReader, CHECKPOINT_MAGIC, SEGMENT_MAGIC};
use logfile::{LogFile, Opener};
use state::AppendState;

const CHECKPOINT_FILE: &str = "checkpoints.wlog";
const LOCK_FILE: &str = "lock";
const STATE_FILE: &str = "append-state";
const CADENCE_FILE: &str = "cadence";
const SIDE_PREFIX: &str = "unauthenticated-";
/// The append-state cache is refreshed at the first checkpoint after this many new records
/// (and at close), which bounds what opening has to read after a crash.
const STATE_INTERVAL: u64 = 1 << 16;

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
    #[error("`{origin}` is not a usable lineage origin: {reason} (use a URL-like name such as example.com/warden)")]
    BadOrigin { origin: String, reason: String },
    #[error("{0}")]
    Proof(#[from] MerkleError),
    #[error("{path}: lineage store lock poisoned by a panic in another thread")]
    Poisoned { path: String },
    #[error("{path}: the lineage is open for appending by another process{}", holder_text(.holder))]
    Locked { path: String, holder: Option<u32> },
    #[error("{path}: records {first}..{end} after the last checkpoint are not authenticated ({reason}); nothing was changed: `warden lineage recover {path}` moves them aside")]
    UnauthenticatedTail {
        path: String,
        first: u64,
        end: u64,
        reason: String,
    },
    #[error("record {index} was not appended and the log is unchanged (appending it again is safe): {source}")]
    NotAppended {
        index: u64,
        #[source]
        source: Box<StoreError>,
    },
    #[error("record {} is in the log but was not sealed (do not append it again): {source}", .appended.index)]
    AppendedNotSealed {
        appended: Appended,
        #[source]
        source: Box<StoreError>,
    },
    #[error("{path}: an earlier write failed and left the files in a state this handle cannot continue from ({reason}); reopen the lineage")]
    Broken { path: String, reason: String },
}

fn holder_text(holder: &Option<u32>) -> String {
    holder.map_or_else(String::new, |pid| format!(" (pid {pid})"))
}

impl StoreError {
    /// For a failed append: the record if it is in the log anyway (never append it again).
    pub fn appended(&self) -> Option<Appended> {
        match self {
            StoreError::AppendedNotSealed { appended, .. } => Some(*appended),
            _ => None,
        }
    }
}

/// How records are signed and when checkpoints are signed and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Every record carries its own signature and is followed by a checkpoint.
    EveryRecord,
    /// Every record carries its own signature (so a crash leaves an authenticated tail); a
    /// checkpoint co-signed by every signer of the window seals them when `records` are
    /// pending or `millis` have passed since the first pending one (checked on append), and on
    /// [`Lineage::checkpoint`] / [`Lineage::close`]. The default.
    SignedWindow { records: u64, millis: u64 },
    /// As `SignedWindow`, but records are unsigned until the checkpoint seals them: faster, and
    /// a crash leaves a tail that cannot be authenticated (opening refuses it until
    /// [`Lineage::recover`] moves it aside). For high-rate logs and benchmarks.
    Window { records: u64, millis: u64 },
}

impl Cadence {
    /// The default window: 1024 records or one second.
    pub const DEFAULT: Cadence = Cadence::SignedWindow {
        records: 1024,
        millis: 1000,
    };

    /// Whether each record carries its own signature.
    pub fn signs_records(self) -> bool {
        !matches!(self, Cadence::Window { .. })
    }

    /// The same window with or without per-record signatures.
    pub fn with_record_signatures(self, signed: bool) -> Cadence {
        match (self, signed) {
            (Cadence::Window { records, millis }, true) => {
                Cadence::SignedWindow { records, millis }
            }
            (Cadence::SignedWindow { records, millis }, false) => {
                Cadence::Window { records, millis }
            }
            (Cadence::EveryRecord, false) => Cadence::DEFAULT.with_record_signatures(false),
            (other, _) => other,
        }
    }

    /// The name stored in `DIR/cadence` and taken by `warden lineage init --cadence`.
    pub fn name(self) -> &'static str {
        if self.signs_records() {
            "record"
        } else {
            "window"
        }
    }

    /// `record` (every record signed, checkpoint per window) or `window` (unsigned records).
    pub fn from_name(name: &str) -> Option<Cadence> {
        match name {
            "record" => Some(Cadence::DEFAULT),
            "window" => Some(Cadence::DEFAULT.with_record_signatures(false)),
            _ => None,
        }
    }
}

/// How a lineage is created or opened for appending.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The checkpoint origin line, used only when the lineage is created: an existing lineage
    /// keeps the origin it was created with.
    pub origin: String,
    /// Used as given, except that a lineage's stored choice of signed or unsigned records
    /// (`DIR/cadence`) wins.
    pub cadence: Cadence,
    /// A new segment file starts once the current one reaches this size.
    pub segment_bytes: u64,
    /// fsync segments and checkpoints at every checkpoint (turn off only for throwaway logs).
    pub fsync: bool,
    /// Checks the signatures of records after the last checkpoint when opening (a tail left by
    /// a crash). Without it, opening refuses a lineage with such a tail.
    pub trust: Option<Arc<TrustStore>>,
}

impl StoreOptions {
    pub fn new(origin: impl Into<String>) -> StoreOptions {
        StoreOptions {
            origin: origin.into(),
            cadence: Cadence::DEFAULT,
            segment_bytes: 64 << 20,
            fsync: true,
            trust: None,
        }
    }

    pub fn with_cadence(mut self, cadence: Cadence) -> StoreOptions {
        self.cadence = cadence;
        self
    }

    pub fn with_trust(mut self, trust: Arc<TrustStore>) -> StoreOptions {
        self.trust = Some(trust);
        self
    }
}

/// Checks a checkpoint origin: a URL-like name (C2SP tlog-checkpoint), e.g. `example.com/warden`.
pub fn validate_origin(origin: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| {
        Err(StoreError::BadOrigin {
            origin: origin.escape_debug().to_string(),
            reason: reason.to_string(),
        })
    };
    if origin.is_empty() {
        return bad("it is empty");
    }
    if origin.len() > 255 {
        return bad("it is longer than 255 bytes");
    }
    if origin.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains whitespace or a control character");
    }
    if origin.contains('+') {
        return bad("it contains `+`");
    }
    Ok(())
}

/// What opening found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub records: u64,
    pub checkpoints: u64,
    /// A torn tail that was cut: (file, offset where it was cut, bytes removed).
    pub repaired: Vec<(String, u64, u64)>,
    /// Records read while opening (those after the cached state, or all without one).
    pub scanned: u64,
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub leaf_hash: Hash,
}

/// A tail moved aside by [`Lineage::recover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedTail {
    /// The side file now holding the bytes.
    pub file: PathBuf,
    /// The first record it held, and the bytes moved (complete frames and any torn rest).
    pub first: u64,
    pub bytes: u64,
}

/// What [`Lineage::recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverReport {
    /// The records moved aside (`first..end`), empty if the tail was already authenticated.
    pub records: Range<u64>,
    /// Why the first of them was refused.
    pub reason: String,
    pub moved: Vec<MovedTail>,
}

#[derive(Debug, Clone)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
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

/// Checks `dir` is a lineage directory and lists its segments.
fn lineage_files(dir: &Path) -> Result<Vec<Segment>, StoreError> {
    let meta = std::fs::metadata(dir).map_err(io_at(dir))?;
    if !meta.is_dir() {
        return Err(StoreError::NotALineage {
            path: dir.display().to_string(),
            reason: "not a directory".into(),
        });
    }
    let segments = list_segments(dir)?;
    if segments.is_empty() {
        return Err(StoreError::NotALineage {
            path: dir.display().to_string(),
            reason: "no segment files (seg-*.wlog)".into(),
        });
    }
    let checkpoint_path = dir.join(CHECKPOINT_FILE);
    if !checkpoint_path.exists() {
        return Err(StoreError::NotALineage {
            path: checkpoint_path.display().to_string(),
            reason: "checkpoint file is missing".into(),
        });
    }
    Ok(segments)
}

/// The record-level error for a frame fault at record `index` of file `name`.
fn frame_fault_error(index: u64, name: &str, fault: FrameFault) -> VerifyError {
    match fault {
        FrameFault::BadHeader(reason) => VerifyError::Storage(format!("{name}: {reason}")),
        FrameFault::Corrupt { offset, reason, .. } => VerifyError::record(
            index,
            "unknown",
            RecordFault::Corrupt(format!("{reason} at byte {offset} of {name}")),
        ),
        FrameFault::Torn { offset, .. } => VerifyError::record(
            index,
            "incomplete",
            RecordFault::Torn {
                file: name.to_string(),
                offset,
            },
        ),
    }
}

fn gap_error(index: u64, segment: &Segment) -> VerifyError {
    VerifyError::record(
        index,
        "missing",
        RecordFault::Corrupt(format!(
            "segment {} starts at record {} but record {index} comes next (segment missing or renamed)",
            segment.path.display(),
            segment.first_seq
        )),
    )
}

fn checkpoint_error(index: u64, name: &str, fault: FrameFault) -> VerifyError {
    let malformed = |text: String| VerifyError::Checkpoint {
        index,
        size: None,
        fault: warden_lineage::CheckpointFault::Malformed(text),
    };
    match fault {
        FrameFault::BadHeader(reason) => VerifyError::Storage(format!("{name}: {reason}")),
        FrameFault::Corrupt { offset, reason, .. } => {
            malformed(format!("{reason} at byte {offset} of {name}"))
        }
        FrameFault::Torn { offset, .. } => malformed(format!(
            "incomplete checkpoint at byte {offset} of {name} (torn write)"
        )),
    }
}

/// One step of a [`Walker`].
enum Step {
    /// A complete frame; its payload is in the walker's buffer.
    Entry {
        index: u64,
        offset: u64,
    },
    End,
    /// The frame holding record `index` of segment `segment` is damaged or torn.
    Fault {
        index: u64,
        segment: usize,
        fault: FrameFault,
    },
    /// Segment `segment` does not start at record `index`.
    Gap {
        index: u64,
        segment: usize,
    },
}

/// Reads the records of a list of segments in order, one frame in memory at a time.
struct Walker {
    segments: Vec<Segment>,
    segment: usize,
    reader: Option<FrameReader>,
    /// Where to start in the first segment read (a frame boundary), if not after its header.
    start_offset: Option<u64>,
    index: u64,
    buf: Vec<u8>,
    done: bool,
}

impl Walker {
    fn new(segments: Vec<Segment>) -> Walker {
        Walker::starting_at(segments, 0, None, 0)
    }

    /// Starts at record `index`, found at `offset` of segment number `segment`.
    fn starting_at(
        segments: Vec<Segment>,
        segment: usize,
        offset: Option<u64>,
        index: u64,
    ) -> Walker {
        Walker {
            segments,
            segment,
            reader: None,
            start_offset: offset,
            index,
            buf: Vec::with_capacity(4096),
            done: false,
        }
    }

    fn entry(&self) -> &[u8] {
        &self.buf
    }

    fn path(&self) -> &Path {
        self.segments
            .get(self.segment)
            .map_or(Path::new(""), |s| s.path.as_path())
    }

    fn step(&mut self) -> Result<Step, StoreError> {
        loop {
            if self.done {
                return Ok(Step::End);
            }
            if self.reader.is_none() {
                let Some(segment) = self.segments.get(self.segment) else {
                    self.done = true;
                    return Ok(Step::End);
                };
                let resume = self.start_offset.take();
                if resume.is_none() && segment.first_seq != self.index {
                    self.done = true;
                    return Ok(Step::Gap {
                        index: self.index,
                        segment: self.segment,
                    });
                }
                let path = segment.path.clone();
                match FrameReader::open(&path, SEGMENT_MAGIC).map_err(io_at(&path))? {
                    Ok(mut reader) => {
                        if let Some(offset) = resume {
                            reader.seek_to(offset, 0).map_err(io_at(&path))?;
                        }
                        self.reader = Some(reader);
                    }
                    Err(fault) => {
                        self.done = true;
                        return Ok(Step::Fault {
                            index: self.index,
                            segment: self.segment,
                            fault,
                        });
                    }
                }
            }
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            let path = &self.segments[self.segment].path;
            match reader.next_frame(&mut self.buf).map_err(io_at(path))? {
                None => {
                    self.reader = None;
                    self.segment += 1;
                }
                Some(Ok(offset)) => {
                    let index = self.index;
                    self.index += 1;
                    return Ok(Step::Entry { index, offset });
                }
                Some(Err(fault)) => {
                    self.done = true;
                    return Ok(Step::Fault {
                        index: self.index,
                        segment: self.segment,
                        fault,
                    });
                }
            }
        }
    }

    /// The offset just after the last complete frame of the segment being read.
    fn offset(&self) -> Option<u64> {
        self.reader.as_ref().map(FrameReader::offset)
    }
}

/// A note, or why its frame could not be used (the frame fault and the error to report).
type NoteRead = Result<Note, (FrameFault, VerifyError)>;

/// Reads the checkpoint notes in order, one in memory at a time.
struct Notes {
    reader: FrameReader,
    path: PathBuf,
    /// Number of the next checkpoint.
    index: u64,
    buf: Vec<u8>,
}

/// One checkpoint note as read: number, frame offset, size, root and text.
struct Note {
    index: u64,
    offset: u64,
    size: u64,
    root: Hash,
    text: String,
}

impl Notes {
    fn open(path: &Path) -> Result<Result<Notes, VerifyError>, StoreError> {
        let name = path.display().to_string();
        Ok(
            match FrameReader::open(path, CHECKPOINT_MAGIC).map_err(io_at(path))? {
                Ok(reader) => Ok(Notes {
                    reader,
                    path: path.to_path_buf(),
                    index: 0,
                    buf: Vec::new(),
                }),
                Err(fault) => Err(checkpoint_error(0, &name, fault)),
            },
        )
    }

    fn seek_to(&mut self, offset: u64, index: u64) -> Result<(), StoreError> {
        self.index = index;
        self.reader
            .seek_to(offset, index)
            .map_err(io_at(&self.path))
    }

    /// The next note; `Err(Ok(fault))` for a frame fault (torn or corrupt), `Err(Err(..))` for
    /// a note that does not parse.
    fn next(&mut self) -> Result<Option<NoteRead>, StoreError> {
        let name = self.path.display().to_string();
        let index = self.index;
        let offset = match self
            .reader
            .next_frame(&mut self.buf)
            .map_err(io_at(&self.path))?
        {
            None => return Ok(None),
            Some(Ok(offset)) => offset,
            Some(Err(fault)) => {
                let error = checkpoint_error(index, &name, fault.clone());
                return Ok(Some(Err((fault, error))));
            }
        };
        self.index += 1;
        let malformed = |text: String| {
            (
                FrameFault::Corrupt {
                    frame: index,
                    offset,
                    reason: text.clone(),
                },
                VerifyError::Checkpoint {
                    index,
                    size: None,
                    fault: warden_lineage::CheckpointFault::Malformed(text),
                },
            )
        };
        let Ok(text) = std::str::from_utf8(&self.buf) else {
            return Ok(Some(Err(malformed("not UTF-8".into()))));
        };
        let parsed = match SignedCheckpoint::parse(text) {
            Ok(p) => p,
            Err(e) => return Ok(Some(Err(malformed(e.0)))),
        };
        Ok(Some(Ok(Note {
            index,
            offset,
            size: parsed.checkpoint.size,
            root: parsed.checkpoint.root,
            text: text.to_string(),
        })))
    }

    /// The offset just after the last complete frame read.
    fn offset(&self) -> u64 {
        self.reader.offset()
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
    let mut verifier = LineageVerifier::new(trust);
    if let Some(pinned) = &options.pinned {
        verifier = verifier.with_pinned(pinned.clone());
    }
    verify_streaming(dir, verifier)?.finish(options.expect_size, options.unsealed_tail)
}

/// Feeds the segments and checkpoints to a [`LineageVerifier`], one frame in memory at a time:
/// memory does not grow with the log.
fn verify_streaming<'t>(
    dir: &Path,
    mut verifier: LineageVerifier<'t>,
) -> Result<LineageVerifier<'t>, VerifyError> {
    let storage = |e: StoreError| VerifyError::Storage(e.to_string());
    let segments = lineage_files(dir).map_err(storage)?;
    // Segments are judged first: a bad segment header is the more useful message.
    let first = &segments[0].path;
    if let Err(fault) =
        FrameReader::open(first, SEGMENT_MAGIC).map_err(|e| storage(io_at(first)(e)))?
    {
        return Err(frame_fault_error(0, &first.display().to_string(), fault));
    }
    let mut notes = Notes::open(&dir.join(CHECKPOINT_FILE)).map_err(storage)??;
    let mut walker = Walker::new(segments);
    let read_note = |notes: &mut Notes| -> Result<Option<Note>, VerifyError> {
        match notes.next().map_err(storage)? {
            None => Ok(None),
            Some(Ok(note)) => Ok(Some(note)),
            Some(Err((_, error))) => Err(error),
        }
    };
    // The next checkpoint not yet applied.
    let mut next_note = read_note(&mut notes)?;
    loop {
        while let Some(note) = next_note.take() {
            if note.size > verifier.len() {
                next_note = Some(note);
                break;
            }
            verifier.checkpoint(note.index, &note.text)?;
            next_note = read_note(&mut notes)?;
        }
        match walker.step().map_err(storage)? {
            Step::End => break,
            Step::Gap { index, segment } => {
                return Err(gap_error(index, &walker.segments[segment]))
            }
            Step::Fault {
                index,
                segment,
                fault,
            } => {
                let name = walker.segments[segment].path.display().to_string();
                return Err(frame_fault_error(index, &name, fault));
            }
            Step::Entry { .. } => {
                verifier.record(walker.entry()).map_err(|e| match e {
                    // Name the file for undecodable records: the byte offsets live there.
                    VerifyError::Record {
                        index,
                        kind,
                        fault: RecordFault::Undecodable(reason),
                    } => VerifyError::record(
                        index,
                        kind,
                        RecordFault::Undecodable(format!(
                            "{reason} (in {})",
                            walker.path().display()
                        )),
                    ),
                    other => other,
                })?;
            }
        }
    }
    if let Some(note) = next_note {
        return Err(VerifyError::record(
            verifier.len(),
            "missing",
            RecordFault::Missing {
                checkpoint: note.index,
                claimed: note.size,
            },
        ));
    }
    Ok(verifier)
}

/// Where reading for append starts: after the cached state, or at the beginning.
struct Start {
    segment: usize,
    offset: Option<u64>,
    checkpoint_offset: Option<u64>,
    /// The number of the first checkpoint read.
    checkpoint_index: u64,
    tree: CompactTree,
    prev: Hash,
    last_frame: Option<(u64, u64)>,
    cached: bool,
}

impl Start {
    fn beginning() -> Start {
        Start {
            segment: 0,
            offset: None,
            checkpoint_offset: None,
            checkpoint_index: 0,
            tree: CompactTree::new(),
            prev: [0; 32],
            last_frame: None,
            cached: false,
        }
    }
}

/// Reads and checks the append-state cache against the files; `None` if it cannot be used.
fn load_state(dir: &Path, segments: &[Segment]) -> Option<Start> {
    let bytes = std::fs::read(dir.join(STATE_FILE)).ok()?;
    let state = AppendState::decode(&bytes)?;
    let tree = CompactTree::from_frontier(state.size, state.frontier.clone()).ok()?;
    let segment = segments.iter().position(|s| s.first_seq == state.segment)?;
    let segment_len = std::fs::metadata(&segments[segment].path).ok()?.len();
    if segment_len < state.segment_offset {
        return None;
    }
    // The checkpoint it names must seal exactly this tree.
    let mut notes = Notes::open(&dir.join(CHECKPOINT_FILE)).ok()?.ok()?;
    let checkpoint_index = state.checkpoints.checked_sub(1)?;
    notes
        .seek_to(state.checkpoint_offset, checkpoint_index)
        .ok()?;
    let note = notes.next().ok()??.ok()?;
    if note.size != state.size || note.root != tree.root() {
        return None;
    }
    // The record before it must be where the state says, and hash to `prev`.
    if state.size > 0 {
        let holder = segments
            .iter()
            .find(|s| s.first_seq == state.prev_segment)?;
        let mut reader = FrameReader::open(&holder.path, SEGMENT_MAGIC).ok()?.ok()?;
        reader.seek_to(state.prev_offset, 0).ok()?;
        let mut buf = Vec::new();
        reader.next_frame(&mut buf).ok()??.ok()?;
        if holder.first_seq == state.segment && reader.offset() != state.segment_offset {
            return None;
        }
        let (body, _) = decode_entry(&buf).ok()?;
        let (view, _) = EnvelopeView::parse(body).ok()?;
        if view.seq + 1 != state.size || warden_merkle::leaf_hash(body) != state.prev {
            return None;
        }
    } else if state.prev != [0; 32] {
        return None;
    }
    Some(Start {
        segment,
        offset: Some(state.segment_offset),
        checkpoint_offset: Some(state.checkpoint_offset),
        checkpoint_index,
        tree,
        prev: state.prev,
        last_frame: (state.size > 0).then_some((state.prev_segment, state.prev_offset)),
        cached: true,
    })
}

/// The first record after the last checkpoint that cannot be authenticated, and where it is.
struct BadTail {
    first: u64,
    /// One past the last complete frame after it.
    end: u64,
    segment: usize,
    offset: u64,
    reason: String,
}

/// What opening for append learns from the files, before it changes anything.
struct AppendScan {
    segments: Vec<Segment>,
    origin: String,
    tree: CompactTree,
    prev: Hash,
    last_frame: Option<(u64, u64)>,
    /// End of the last complete frame of the last segment, and the file length if more follows
    /// (a torn tail).
    segment_end: u64,
    segment_torn: Option<u64>,
    checkpoint_end: u64,
    checkpoint_torn: Option<u64>,
    checkpoints: u64,
    /// (size, root, frame offset) of the last checkpoint.
    last_checkpoint: Option<(u64, Hash, u64)>,
    bad_tail: Option<BadTail>,
    scanned: u64,
    cached: bool,
}

/// Checks one stored entry as the next record of the chain; records after the last checkpoint
/// (`authenticate`) must also carry a signature the trust store accepts for their kind's role.
fn check_record(
    entry: &[u8],
    index: u64,
    prev: &Hash,
    authenticate: bool,
    trust: Option<&TrustStore>,
) -> Result<Hash, VerifyError> {
    let undecodable = |e: RecordError| {
        VerifyError::record(index, "unknown", RecordFault::Undecodable(e.to_string()))
    };
    let (body, signature) = decode_entry(entry).map_err(undecodable)?;
    let view = EnvelopeView::check(body).map_err(undecodable)?;
    let fail = |fault| VerifyError::record(index, view.kind, fault);
    if view.seq != index {
        return Err(fail(RecordFault::Sequence {
            expected: index,
            found: view.seq,
        }));
    }
    if view.prev != *prev {
        return Err(fail(RecordFault::BrokenChain));
    }
    if authenticate {
        let Some(signature) = signature else {
            return Err(fail(RecordFault::Corrupt(
                "it carries no signature and no checkpoint seals it".into(),
            )));
        };
        let Some(trust) = trust else {
            return Err(fail(RecordFault::Corrupt(
                "no trust store was given to check its signature".into(),
            )));
        };
        // The same checks the verifier makes (one place decides what authenticates a record).
        let signer = warden_lineage::check_signer(&view, trust).map_err(fail)?;
        warden_lineage::check_signature(&view, &signer, body, &signature, trust).map_err(fail)?;
    }
    Ok(warden_merkle::leaf_hash(body))
}

/// Reads what opening for append (or recovering) needs, changing nothing. With `recovering`,
/// a damaged frame after the last checkpoint starts the bad tail instead of refusing.
fn scan_for_append(
    dir: &Path,
    trust: Option<&TrustStore>,
    recovering: bool,
) -> Result<AppendScan, StoreError> {
    let damaged = |cause: VerifyError| StoreError::Damaged {
        path: dir.display().to_string(),
        cause: Box::new(cause),
    };
    let segments = lineage_files(dir)?;
    let checkpoint_path = dir.join(CHECKPOINT_FILE);
    let first = &segments[0].path;
    let origin = match FrameReader::open(first, SEGMENT_MAGIC).map_err(io_at(first))? {
        Ok(reader) => reader.origin,
        Err(fault) => {
            return Err(damaged(frame_fault_error(
                0,
                &first.display().to_string(),
                fault,
            )))
        }
    };
    let start = load_state(dir, &segments).unwrap_or_else(Start::beginning);
    let open_notes = || -> Result<Notes, StoreError> {
        let mut notes = Notes::open(&checkpoint_path)?.map_err(damaged)?;
        if let Some(offset) = start.checkpoint_offset {
            notes.seek_to(offset, start.checkpoint_index)?;
        }
        Ok(notes)
    };

    // Pass 1 over the checkpoints: the last one, and whether the file ends torn.
    let mut notes = open_notes()?;
    let mut last_checkpoint: Option<(u64, Hash, u64)> = None;
    let mut last_note: Option<Note> = None;
    let mut checkpoint_torn = None;
    let mut checkpoints = start.checkpoint_index;
    loop {
        match notes.next()? {
            None => break,
            Some(Ok(note)) => {
                if let Some((previous, _, _)) = last_checkpoint {
                    if note.size <= previous {
                        return Err(damaged(VerifyError::Checkpoint {
                            index: note.index,
                            size: Some(note.size),
                            fault: warden_lineage::CheckpointFault::NotIncreasing {
                                size: note.size,
                                previous,
                            },
                        }));
                    }
                }
                last_checkpoint = Some((note.size, note.root, note.offset));
                checkpoints += 1;
                last_note = Some(note);
            }
            Some(Err((FrameFault::Torn { .. }, _))) => {
                checkpoint_torn = Some(notes.reader.file_len());
                break;
            }
            Some(Err((_, error))) => return Err(damaged(error)),
        }
    }
    // The last checkpoint decides which records count as sealed: a note nobody signed (added
    // by someone who can write the files, with records under it) must not make this writer
    // seal those records under its own signature next. Every signature line must be valid and
    // by a key the trust file lists. Earlier notes need no check here: pass 2 recomputes the
    // tree and each checkpoint's root, so the last (authentic) note vouches for all of them.
    if let (Some(trust), Some(note)) = (trust, &last_note) {
        let signed = SignedCheckpoint::parse(&note.text).map_err(|e| {
            damaged(VerifyError::Checkpoint {
                index: note.index,
                size: Some(note.size),
                fault: warden_lineage::CheckpointFault::Malformed(e.0),
            })
        })?;
        let any_role = std::collections::BTreeSet::from(warden_keys::Role::ALL);
        signed
            .verify_signatures(trust, &any_role)
            .map_err(|fault| {
                damaged(VerifyError::Checkpoint {
                    index: note.index,
                    size: Some(note.size),
                    fault,
                })
            })?;
    }
    let checkpoint_end = notes.offset();
    let sealed = last_checkpoint.map_or(0, |(size, _, _)| size);

    // Pass 2 over the records, checking each checkpoint's root as the tree reaches its size.
    let mut notes = open_notes()?;
    let mut next_note = match notes.next()? {
        Some(Ok(note)) => Some(note),
        _ => None,
    };
    let mut tree = start.tree;
    let mut prev = start.prev;
    let mut last_frame = start.last_frame;
    let mut walker = Walker::starting_at(segments, start.segment, start.offset, tree.len());
    let last_segment = walker.segments.len() - 1;
    let mut segment_end = if start.segment == last_segment {
        start.offset
    } else {
        None
    };
    let mut segment_torn = None;
    let mut bad_tail: Option<BadTail> = None;
    let mut scanned = 0u64;
    loop {
        // Checkpoints whose size the tree has reached must match its root.
        while let Some(note) = next_note.take() {
            if note.size > tree.len() {
                next_note = Some(note);
                break;
            }
            if note.size == tree.len() && note.root != tree.root() {
                return Err(damaged(VerifyError::Checkpoint {
                    index: note.index,
                    size: Some(note.size),
                    fault: warden_lineage::CheckpointFault::RootMismatch {
                        expected: hex::encode(tree.root()),
                        found: hex::encode(note.root),
                    },
                }));
            }
            next_note = match notes.next()? {
                Some(Ok(note)) => Some(note),
                _ => None,
            };
        }
        let step = walker.step()?;
        if walker.segment == last_segment {
            segment_end = walker.offset().or(segment_end);
        }
        match step {
            Step::End => break,
            Step::Gap { index, segment } => {
                if bad_tail.is_some() {
                    break;
                }
                return Err(damaged(gap_error(index, &walker.segments[segment])));
            }
            Step::Fault {
                index,
                segment,
                fault,
            } => {
                if bad_tail.is_some() {
                    break;
                }
                let name = walker.segments[segment].path.display().to_string();
                match fault {
                    // A torn write after the last checkpoint: the only thing opening cuts.
                    FrameFault::Torn { offset, .. }
                        if segment == last_segment && index >= sealed && !recovering =>
                    {
                        segment_end = Some(offset);
                        segment_torn = Some(
                            std::fs::metadata(&walker.segments[segment].path)
                                .map_err(io_at(&walker.segments[segment].path))?
                                .len(),
                        );
                        break;
                    }
                    FrameFault::Torn { offset, .. } | FrameFault::Corrupt { offset, .. }
                        if recovering && index >= sealed =>
                    {
                        let reason = frame_fault_error(index, &name, fault).to_string();
                        bad_tail = Some(BadTail {
                            first: index,
                            end: index,
                            segment,
                            offset,
                            reason,
                        });
                        break;
                    }
                    fault => return Err(damaged(frame_fault_error(index, &name, fault))),
                }
            }
            Step::Entry { index, offset } => {
                if let Some(bad) = bad_tail.as_mut() {
                    bad.end = index + 1;
                    continue;
                }
                match check_record(walker.entry(), index, &prev, index >= sealed, trust) {
                    Ok(leaf) => {
                        tree.push(leaf);
                        prev = leaf;
                        last_frame = Some((walker.segments[walker.segment].first_seq, offset));
                        scanned += 1;
                    }
                    Err(error) if index >= sealed => {
                        bad_tail = Some(BadTail {
                            first: index,
                            end: index + 1,
                            segment: walker.segment,
                            offset,
                            reason: error.to_string(),
                        });
                    }
                    Err(error) => return Err(damaged(error)),
                }
            }
        }
    }
    if let Some(note) = next_note {
        return Err(damaged(VerifyError::record(
            tree.len(),
            "missing",
            RecordFault::Missing {
                checkpoint: note.index,
                claimed: note.size,
            },
        )));
    }
    let segments = walker.segments;
    let segment_end = match segment_end {
        Some(end) => end,
        // The last segment was never reached with a frame: it holds only its header.
        None => {
            let path = &segments[last_segment].path;
            match FrameReader::open(path, SEGMENT_MAGIC).map_err(io_at(path))? {
                Ok(reader) => reader.header_len,
                Err(fault) => {
                    return Err(damaged(frame_fault_error(
                        tree.len(),
                        &path.display().to_string(),
                        fault,
                    )))
                }
            }
        }
    };
    Ok(AppendScan {
        segments,
        origin,
        tree,
        prev,
        last_frame,
        segment_end,
        segment_torn,
        checkpoint_end,
        checkpoint_torn,
        checkpoints,
        last_checkpoint,
        bad_tail,
        scanned,
        cached: start.cached,
    })
}

/// Takes the advisory lock on `DIR/lock` (released when the file is closed) and notes our pid.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_at(&path))?;
    // A lock released a moment ago can still be held by a process this one is spawning (the
    // child holds a copy of the descriptor until its exec closes it): retry briefly.
    let mut attempt = 0;
    let locked = loop {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) if attempt < 20 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    match locked {
        Ok(()) => {
            // Informational only (a stale pid is harmless: the lock is the open file).
            let _ = file
                .set_len(0)
                .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()));
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Err(StoreError::Locked {
                path: dir.display().to_string(),
                holder: text.trim().parse().ok(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io_at(&path)(e)),
    }
}

/// Whether `dir` holds a lineage. Creation writes the segment last, so a directory with no
/// segment and a checkpoint file without a single checkpoint is a creation that was interrupted
/// (a crash or a kill), which creating again completes; any checkpoint makes it a lineage
/// (whose segments are missing: opening it reports that, creating refuses).
fn has_lineage(dir: &Path) -> bool {
    if !list_segments(dir).map_or(true, |s| s.is_empty()) {
        return true;
    }
    let checkpoint_path = dir.join(CHECKPOINT_FILE);
    if !checkpoint_path.exists() {
        return false;
    }
    match FrameReader::open(&checkpoint_path, CHECKPOINT_MAGIC) {
        Ok(Ok(reader)) => reader.file_len() > reader.header_len,
        _ => true,
    }
}

/// The stored choice of signed (`record`) or unsigned (`window`) records, if any.
fn stored_signing(dir: &Path) -> Result<Option<bool>, StoreError> {
    let path = dir.join(CADENCE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path)?;
    match Cadence::from_name(text.trim()) {
        Some(cadence) => Ok(Some(cadence.signs_records())),
        None => Err(StoreError::NotALineage {
            path: path.display().to_string(),
            reason: format!("unknown cadence `{}` (record or window)", text.trim()),
        }),
    }
}

struct Inner {
    tree: CompactTree,
    /// Every leaf: built by the first proof request, kept up to date after it.
    full: Option<MerkleTree>,
    prev: Hash,
    segments: Vec<Segment>,
    /// (segment first seq, frame offset) of the last record.
    last_frame: Option<(u64, u64)>,
    writer: Box<dyn LogFile>,
    writer_len: u64,
    checkpoint_writer: Box<dyn LogFile>,
    checkpoint_len: u64,
    n_checkpoints: u64,
    /// (size, root, frame offset) of the last checkpoint.
    last_checkpoint: Option<(u64, Hash, u64)>,
    /// The size the append-state cache was last written at.
    state_size: Option<u64>,
    pending: BTreeMap<KeyRef, Arc<SigningKey>>,
    window_started: Option<Instant>,
    frame_buf: Vec<u8>,
    entry_buf: Vec<u8>,
    dirty: bool,
    /// Set when a failed write could not be undone: every later write is refused.
    broken: Option<String>,
}

/// An open lineage, ready for appends. `Send + Sync`: share it behind an `Arc`. Holds the
/// directory's advisory lock until dropped.
pub struct Lineage {
    dir: PathBuf,
    options: StoreOptions,
    inner: Mutex<Inner>,
    report: OpenReport,
    n_records: AtomicU64,
    n_checkpoints: AtomicU64,
    opener: Opener,
    _lock: File,
}

impl Lineage {
    /// Creates a new lineage in `dir` (created if missing; refused if it already holds one).
    /// The origin must be URL-like ([`validate_origin`]); the cadence's choice of signed or
    /// unsigned records is stored in the directory and kept by every later open.
    pub fn create(dir: &Path, options: StoreOptions) -> Result<Lineage, StoreError> {
        validate_origin(&options.origin)?;
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock = lock_dir(dir)?;
        Lineage::create_locked(dir, options, lock, logfile::real_opener())
    }

    fn create_locked(
        dir: &Path,
        options: StoreOptions,
        lock: File,
        opener: Opener,
    ) -> Result<Lineage, StoreError> {
        validate_origin(&options.origin)?;
        if has_lineage(dir) {
            return Err(StoreError::Exists {
                path: dir.display().to_string(),
            });
        }
        // Headers via temp+rename so a crash never leaves a headerless file; the segment last,
        // as its presence is what makes the directory a lineage.
        fs::atomic_write(
            &dir.join(CADENCE_FILE),
            format!("{}\n", options.cadence.name()).as_bytes(),
        )?;
        fs::atomic_write(
            &dir.join(CHECKPOINT_FILE),
            &frame::encode_header(CHECKPOINT_MAGIC, &options.origin),
        )?;
        fs::atomic_write(
            &dir.join(segment_name(0)),
            &frame::encode_header(SEGMENT_MAGIC, &options.origin),
        )?;
        Lineage::open_locked(dir, Some(options), lock, opener)
    }

    /// Opens an existing lineage for appending with its stored origin and default options.
    pub fn open(dir: &Path) -> Result<Lineage, StoreError> {
        Lineage::open_with(dir, None)
    }

    /// Opens `dir` if it holds a lineage, else creates one.
    pub fn open_or_create(dir: &Path, options: StoreOptions) -> Result<Lineage, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock = lock_dir(dir)?;
        if has_lineage(dir) {
            Lineage::open_locked(dir, Some(options), lock, logfile::real_opener())
        } else {
            Lineage::create_locked(dir, options, lock, logfile::real_opener())
        }
    }

    /// Opens for appending: cuts a torn tail after the last checkpoint (reported), refuses
    /// anything else that is damaged and any record after the last checkpoint that is not
    /// authenticated by `options.trust`. The stored origin wins over `options.origin`.
    pub fn open_with(dir: &Path, options: Option<StoreOptions>) -> Result<Lineage, StoreError> {
        lineage_files(dir)?;
        let lock = lock_dir(dir)?;
        Lineage::open_locked(dir, options, lock, logfile::real_opener())
    }

    fn open_locked(
        dir: &Path,
        options: Option<StoreOptions>,
        lock: File,
        opener: Opener,
    ) -> Result<Lineage, StoreError> {
        let mut options = options.unwrap_or_else(|| StoreOptions::new(""));
        let scan = scan_for_append(dir, options.trust.as_deref(), false)?;
        if let Some(bad) = scan.bad_tail {
            return Err(StoreError::UnauthenticatedTail {
                path: dir.display().to_string(),
                first: bad.first,
                end: bad.end,
                reason: bad.reason,
            });
        }
        options.origin = scan.origin.clone();
        if let Some(signed) = stored_signing(dir)? {
            options.cadence = options.cadence.with_record_signatures(signed);
        }
        let mut report = OpenReport::default();
        // Cut torn tails back to the last complete frame. Nothing before it is rewritten, and
        // the scan refused a torn record that a checkpoint seals.
        let mut cut = |path: &Path, offset: u64, file_len: u64| -> Result<(), StoreError> {
            let handle = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_at(path))?;
            handle.set_len(offset).map_err(io_at(path))?;
            handle.sync_all().map_err(io_at(path))?;
            report
                .repaired
                .push((path.display().to_string(), offset, file_len - offset));
            Ok(())
        };
        let segment_path = scan
            .segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let checkpoint_path = dir.join(CHECKPOINT_FILE);
        if let Some(file_len) = scan.segment_torn {
            cut(&segment_path, scan.segment_end, file_len)?;
        }
        if let Some(file_len) = scan.checkpoint_torn {
            cut(&checkpoint_path, scan.checkpoint_end, file_len)?;
        }
        report.records = scan.tree.len();
        report.checkpoints = scan.checkpoints;
        report.scanned = scan.scanned;
        let writer = opener(&segment_path).map_err(io_at(&segment_path))?;
        let checkpoint_writer = opener(&checkpoint_path).map_err(io_at(&checkpoint_path))?;
        let state_size = scan
            .cached
            .then(|| scan.last_checkpoint.map(|c| c.0))
            .flatten();
        Ok(Lineage {
            dir: dir.to_path_buf(),
            options,
            n_records: AtomicU64::new(scan.tree.len()),
            n_checkpoints: AtomicU64::new(scan.checkpoints),
            inner: Mutex::new(Inner {
                tree: scan.tree,
                full: None,
                prev: scan.prev,
                segments: scan.segments,
                last_frame: scan.last_frame,
                writer,
                writer_len: scan.segment_end,
                checkpoint_writer,
                checkpoint_len: scan.checkpoint_end,
                n_checkpoints: scan.checkpoints,
                last_checkpoint: scan.last_checkpoint,
                state_size,
                pending: BTreeMap::new(),
                window_started: None,
                frame_buf: Vec::with_capacity(1024),
                entry_buf: Vec::with_capacity(1024),
                dirty: false,
                broken: None,
            }),
            report,
            opener,
            _lock: lock,
        })
    }

    /// Moves a tail that cannot be authenticated (records after the last checkpoint without a
    /// signature `trust` accepts, or damaged frames there) into a side file
    /// `DIR/unauthenticated-<first seq>-<ms>.wlog`, so the log can continue. Nothing is
    /// deleted; sealed records are never touched (damage there is refused).
    pub fn recover(dir: &Path, trust: Option<&TrustStore>) -> Result<RecoverReport, StoreError> {
        lineage_files(dir)?;
        let _lock = lock_dir(dir)?;
        let scan = scan_for_append(dir, trust, true)?;
        let Some(bad) = scan.bad_tail else {
            return Ok(RecoverReport::default());
        };
        let stamp = now_ms();
        let side_name = |first: u64| dir.join(format!("{SIDE_PREFIX}{first:020}-{stamp}.wlog"));
        let mut moved = Vec::new();
        let cut_segment = &scan.segments[bad.segment];
        // Copy first (durably), then move later segments, then cut: a crash in between leaves
        // the bytes in both places, never in neither.
        let side = side_name(bad.first);
        let bytes = fs::atomic_copy_tail(
            &cut_segment.path,
            bad.offset,
            &frame::encode_header(SEGMENT_MAGIC, &scan.origin),
            &side,
        )?;
        moved.push(MovedTail {
            file: side,
            first: bad.first,
            bytes,
        });
        for later in &scan.segments[bad.segment + 1..] {
            let side = side_name(later.first_seq);
            let bytes = std::fs::metadata(&later.path)
                .map_err(io_at(&later.path))?
                .len();
            std::fs::rename(&later.path, &side).map_err(io_at(&later.path))?;
            moved.push(MovedTail {
                file: side,
                first: later.first_seq,
                bytes,
            });
        }
        let handle = OpenOptions::new()
            .write(true)
            .open(&cut_segment.path)
            .map_err(io_at(&cut_segment.path))?;
        handle
            .set_len(bad.offset)
            .map_err(io_at(&cut_segment.path))?;
        handle.sync_all().map_err(io_at(&cut_segment.path))?;
        fs::sync_dir(dir)?;
        Ok(RecoverReport {
            records: bad.first..bad.end,
            reason: bad.reason,
            moved,
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Poisoned {
            path: self.dir.display().to_string(),
        })
    }

    fn broken(&self, reason: &str) -> StoreError {
        StoreError::Broken {
            path: self.dir.display().to_string(),
            reason: reason.to_string(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lineage's origin (as stored when it was created).
    pub fn origin(&self) -> &str {
        &self.options.origin
    }

    /// The cadence in force (the stored signed/unsigned choice applied).
    pub fn cadence(&self) -> Cadence {
        self.options.cadence
    }

    /// What opening found (records, checkpoints, torn tails cut).
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Number of records appended and acknowledged. Needs no lock, so it stays right even
    /// after a panic poisoned the store's mutex.
    pub fn len(&self) -> u64 {
        self.n_records.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a record signed (now, or at the next checkpoint) by `key` in `key.role()`.
    ///
    /// On error the log is as it was before the call ([`StoreError::NotAppended`]), or the
    /// record is in the log but its checkpoint failed ([`StoreError::AppendedNotSealed`],
    /// see [`StoreError::appended`]): never retry that one.
    pub fn append(
        &self,
        draft: RecordDraft,
        key: &Arc<SigningKey>,
    ) -> Result<Appended, StoreError> {
        // `encode_body` below refuses payloads outside the JSON model (non-finite floats) before
        // anything is written, so no separate check pass is needed on this hot path.
        let mut guard = self.lock()?;
        let inner = &mut *guard;
        if let Some(reason) = &inner.broken {
            return Err(self.broken(reason));
        }
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
        let body = record.encode_body().map_err(|source| StoreError::Record {
            kind: record.kind.clone(),
            source,
        })?;
        let signature = self
            .options
            .cadence
            .signs_records()
            .then(|| key.sign(&signing_message(&body)));
        inner.entry_buf.clear();
        encode_entry(&mut inner.entry_buf, &body, signature.as_ref());
        let not_appended = |source: StoreError| StoreError::NotAppended {
            index,
            source: Box::new(source),
        };
        if inner.writer_len >= self.options.segment_bytes {
            self.rotate(inner, index).map_err(not_appended)?;
        }
        inner.frame_buf.clear();
        frame::encode_frame(&mut inner.frame_buf, &inner.entry_buf);
        let segment = inner.segments.len() - 1;
        let seg_path = inner.segments[segment].path.clone();
        let offset = inner.writer_len;
        // One frame per record: a crash leaves at most a torn prefix of it.
        if let Err(error) = logfile::write_all(inner.writer.as_mut(), &inner.frame_buf) {
            // Put the file back as it was, so the next append does not write after a fragment.
            if let Err(undo) = inner.writer.set_len(offset) {
                inner.broken = Some(format!(
                    "{}: a partial record could not be cut back ({undo})",
                    seg_path.display()
                ));
            }
            return Err(not_appended(io_at(&seg_path)(error)));
        }
        inner.writer_len += inner.frame_buf.len() as u64;
        inner.last_frame = Some((inner.segments[segment].first_seq, offset));
        let leaf = warden_merkle::leaf_hash(&body);
        inner.tree.push(leaf);
        if let Some(full) = inner.full.as_mut() {
            full.push(leaf);
        }
        inner.prev = leaf;
        inner.dirty = true;
        self.n_records.store(inner.tree.len(), Ordering::Release);
        if !inner.pending.contains_key(&record.signer) {
            inner.pending.insert(record.signer.clone(), Arc::clone(key));
        }
        let started = *inner.window_started.get_or_insert_with(Instant::now);
        let due = match self.options.cadence {
            Cadence::EveryRecord => true,
            Cadence::SignedWindow { records, millis } | Cadence::Window { records, millis } => {
                let pending = index + 1 - inner.last_checkpoint.map_or(0, |c| c.0);
                pending >= records || started.elapsed().as_millis() as u64 >= millis
            }
        };
        let appended = Appended {
            index,
            leaf_hash: leaf,
        };
        if due {
            self.checkpoint_locked(inner)
                .map_err(|source| StoreError::AppendedNotSealed {
                    appended,
                    source: Box::new(source),
                })?;
        }
        Ok(appended)
    }

    fn rotate(&self, inner: &mut Inner, first_seq: u64) -> Result<(), StoreError> {
        if self.options.fsync {
            if let Some(old) = inner.segments.last() {
                inner.writer.sync_data().map_err(io_at(&old.path))?;
            }
        }
        let path = self.dir.join(segment_name(first_seq));
        let header = frame::encode_header(SEGMENT_MAGIC, &self.options.origin);
        fs::atomic_write(&path, &header)?;
        inner.writer = (self.opener)(&path).map_err(io_at(&path))?;
        inner.writer_len = header.len() as u64;
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
        if let Some(reason) = &inner.broken {
            return Err(self.broken(reason));
        }
        let size = inner.tree.len();
        if inner.pending.is_empty() || inner.last_checkpoint.map(|c| c.0) == Some(size) {
            return Ok(None);
        }
        if self.options.fsync && inner.dirty {
            if let Some(seg) = inner.segments.last() {
                if let Err(error) = inner.writer.sync_data() {
                    // After a failed fsync the page cache may no longer match the disk.
                    inner.broken = Some(format!("{}: fsync failed ({error})", seg.path.display()));
                    return Err(io_at(&seg.path)(error));
                }
            }
        }
        let root = inner.tree.root();
        let signed = Checkpoint {
            origin: self.options.origin.clone(),
            size,
            root,
        }
        .sign(inner.pending.values().map(|k| k.as_ref()));
        let note = signed.to_note();
        inner.frame_buf.clear();
        frame::encode_frame(&mut inner.frame_buf, note.as_bytes());
        let cp_path = self.dir.join(CHECKPOINT_FILE);
        let offset = inner.checkpoint_len;
        if let Err(error) = logfile::write_all(inner.checkpoint_writer.as_mut(), &inner.frame_buf) {
            if let Err(undo) = inner.checkpoint_writer.set_len(offset) {
                inner.broken = Some(format!(
                    "{}: a partial checkpoint could not be cut back ({undo})",
                    cp_path.display()
                ));
            }
            return Err(io_at(&cp_path)(error));
        }
        inner.checkpoint_len += inner.frame_buf.len() as u64;
        if self.options.fsync {
            if let Err(error) = inner.checkpoint_writer.sync_data() {
                inner.broken = Some(format!("{}: fsync failed ({error})", cp_path.display()));
                return Err(io_at(&cp_path)(error));
            }
        }
        inner.n_checkpoints += 1;
        self.n_checkpoints
            .store(inner.n_checkpoints, Ordering::Release);
        inner.last_checkpoint = Some((size, root, offset));
        inner.pending.clear();
        inner.window_started = None;
        inner.dirty = false;
        if size - inner.state_size.unwrap_or(0) >= STATE_INTERVAL {
            self.write_state(inner);
        }
        Ok(Some(signed))
    }

    /// Refreshes the append-state cache at the last checkpoint, if it covers every record.
    /// A failure only costs the next open a longer read, so it is not an error.
    fn write_state(&self, inner: &mut Inner) {
        let Some((size, _, checkpoint_offset)) = inner.last_checkpoint else {
            return;
        };
        let Some(segment) = inner.segments.last() else {
            return;
        };
        if size != inner.tree.len() {
            return;
        }
        let (prev_segment, prev_offset) = inner.last_frame.unwrap_or((0, 0));
        let state = AppendState {
            size,
            prev: inner.prev,
            prev_segment,
            prev_offset,
            segment: segment.first_seq,
            segment_offset: inner.writer_len,
            checkpoint_offset,
            checkpoints: inner.n_checkpoints,
            frontier: inner.tree.frontier().to_vec(),
        };
        if fs::atomic_write(&self.dir.join(STATE_FILE), &state.encode()).is_ok() {
            inner.state_size = Some(size);
        }
    }

    /// Writes a final checkpoint and syncs. Also attempted on drop.
    pub fn close(&self) -> Result<(), StoreError> {
        let mut guard = self.lock()?;
        let inner = &mut *guard;
        self.checkpoint_locked(inner)?;
        if let Some(seg) = inner.segments.last() {
            inner.writer.sync_data().map_err(io_at(&seg.path))?;
        }
        if inner.state_size != Some(inner.tree.len()) {
            self.write_state(inner);
        }
        Ok(())
    }

    /// Number of checkpoints written.
    pub fn n_checkpoints(&self) -> u64 {
        self.n_checkpoints.load(Ordering::Acquire)
    }

    /// The size and root of the latest checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, Hash)>, StoreError> {
        Ok(self
            .lock()?
            .last_checkpoint
            .map(|(size, root, _)| (size, root)))
    }

    /// The current root over all records.
    pub fn root(&self) -> Result<Hash, StoreError> {
        Ok(self.lock()?.tree.root())
    }

    /// The root at an earlier size (the first call for an older size reads the log once).
    pub fn root_at(&self, size: u64) -> Result<Hash, StoreError> {
        let mut guard = self.lock()?;
        if size == guard.tree.len() {
            return Ok(guard.tree.root());
        }
        if let Some((checkpoint_size, root, _)) = guard.last_checkpoint {
            if checkpoint_size == size {
                return Ok(root);
            }
        }
        Ok(self.full_tree(&mut guard)?.root_at(size)?)
    }

    /// The full Merkle tree, read from the segments on first use (one streaming pass).
    fn full_tree<'a>(&self, inner: &'a mut Inner) -> Result<&'a MerkleTree, StoreError> {
        if inner.full.is_none() {
            let damaged = |cause: VerifyError| StoreError::Damaged {
                path: self.dir.display().to_string(),
                cause: Box::new(cause),
            };
            let n = inner.tree.len();
            let mut tree = MerkleTree::new();
            let mut walker = Walker::new(inner.segments.clone());
            while tree.len() < n {
                match walker.step()? {
                    Step::Entry { index, .. } => {
                        let (body, _) = decode_entry(walker.entry()).map_err(|e| {
                            damaged(VerifyError::record(
                                index,
                                "unknown",
                                RecordFault::Undecodable(e.to_string()),
                            ))
                        })?;
                        tree.push(warden_merkle::leaf_hash(body));
                    }
                    Step::End => break,
                    Step::Gap { index, segment } => {
                        return Err(damaged(gap_error(index, &walker.segments[segment])))
                    }
                    Step::Fault {
                        index,
                        segment,
                        fault,
                    } => {
                        let name = walker.segments[segment].path.display().to_string();
                        return Err(damaged(frame_fault_error(index, &name, fault)));
                    }
                }
            }
            if tree.len() != n || tree.root() != inner.tree.root() {
                return Err(damaged(VerifyError::Storage(
                    "the segment files no longer hold the records this handle appended".into(),
                )));
            }
            inner.full = Some(tree);
        }
        inner
            .full
            .as_ref()
            .ok_or_else(|| self.broken("the Merkle tree could not be built"))
    }

    /// Reads records `range` back (decoded; bodies kept as stored), streaming from the
    /// segment that holds `range.start`.
    pub fn read_range(&self, range: Range<u64>) -> Result<Vec<SignedRecord>, StoreError> {
        let (segments, end) = {
            let guard = self.lock()?;
            (guard.segments.clone(), range.end.min(guard.tree.len()))
        };
        let start = range.start.min(end);
        Records::new(&self.dir, segments, start..end).collect()
    }

    /// An inclusion proof for record `index` in the tree of `size` records.
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let mut guard = self.lock()?;
        Ok(self.full_tree(&mut guard)?.inclusion_proof(index, size)?)
    }

    /// A consistency proof between tree sizes `old` and `new`.
    pub fn prove_consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        let mut guard = self.lock()?;
        Ok(self.full_tree(&mut guard)?.consistency_proof(old, new)?)
    }

    /// The leaf hash of record `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Option<Hash>, StoreError> {
        let mut guard = self.lock()?;
        Ok(self.full_tree(&mut guard)?.leaf(index))
    }
}

impl Drop for Lineage {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.inner.lock() {
            let inner = &mut *guard;
            if inner.broken.is_none()
                && self.checkpoint_locked(inner).is_ok()
                && inner.state_size != Some(inner.tree.len())
            {
                self.write_state(inner);
            }
        }
    }
}

/// Records read in order from a lineage directory, one frame in memory at a time.
pub struct Records {
    dir: PathBuf,
    walker: Walker,
    skip_to: u64,
    end: u64,
}

impl Records {
    fn new(dir: &Path, segments: Vec<Segment>, range: Range<u64>) -> Records {
        // Start in the segment that holds `range.start`.
        let segment = segments
            .partition_point(|s| s.first_seq <= range.start)
            .saturating_sub(1);
        let first = segments.get(segment).map_or(0, |s| s.first_seq);
        Records {
            dir: dir.to_path_buf(),
            walker: Walker::starting_at(segments, segment, None, first),
            skip_to: range.start,
            end: range.end,
        }
    }

    fn fail(&mut self, cause: VerifyError) -> Option<Result<SignedRecord, StoreError>> {
        self.end = 0;
        Some(Err(StoreError::Damaged {
            path: self.dir.display().to_string(),
            cause: Box::new(cause),
        }))
    }
}

impl Iterator for Records {
    type Item = Result<SignedRecord, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.walker.index >= self.end {
                return None;
            }
            let step = match self.walker.step() {
                Ok(step) => step,
                Err(e) => {
                    self.end = 0;
                    return Some(Err(e));
                }
            };
            match step {
                Step::End => return None,
                Step::Gap { index, segment } => {
                    let cause = gap_error(index, &self.walker.segments[segment]);
                    return self.fail(cause);
                }
                Step::Fault {
                    index,
                    segment,
                    fault,
                } => {
                    let name = self.walker.segments[segment].path.display().to_string();
                    return self.fail(frame_fault_error(index, &name, fault));
                }
                Step::Entry { index, .. } if index < self.skip_to => {}
                Step::Entry { .. } => {
                    return Some(
                        SignedRecord::from_cbor(self.walker.entry()).map_err(|source| {
                            StoreError::Record {
                                kind: "unknown".into(),
                                source,
                            }
                        }),
                    )
                }
            }
        }
    }
}

/// Streams every record of a lineage directory without opening it for appending (read-only).
/// A torn or damaged frame ends the stream with an error naming the record.
pub fn records(dir: &Path) -> Result<Records, StoreError> {
    let segments = lineage_files(dir)?;
    Ok(Records::new(dir, segments, 0..u64::MAX))
}

/// Reads every record of a lineage directory into memory (small logs; see [`records`]).
pub fn read_all(dir: &Path) -> Result<Vec<SignedRecord>, StoreError> {
    records(dir)?.collect()
}

/// Reads every checkpoint note of a lineage directory (read-only), up to the first damaged one.
pub fn read_checkpoints(dir: &Path) -> Result<Vec<SignedCheckpoint>, StoreError> {
    lineage_files(dir)?;
    let path = dir.join(CHECKPOINT_FILE);
    let not_a_lineage = |reason: String| StoreError::NotALineage {
        path: path.display().to_string(),
        reason,
    };
    let mut notes = Notes::open(&path)?.map_err(|e| not_a_lineage(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(Ok(note)) = notes.next()? {
        out.push(
            SignedCheckpoint::parse(&note.text)
                .map_err(|e| not_a_lineage(format!("checkpoint {}: {}", note.index, e.0)))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
impl Lineage {
    /// As [`Lineage::open_or_create`], writing through `opener` (fault injection).
    fn open_or_create_through(
        dir: &Path,
        options: StoreOptions,
        opener: Opener,
    ) -> Result<Lineage, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let lock = lock_dir(dir)?;
        if has_lineage(dir) {
            Lineage::open_locked(dir, Some(options), lock, opener)
        } else {
            Lineage::create_locked(dir, options, lock, opener)
        }
    }

    /// Ends this handle like a crash would: no final checkpoint, no state written.
    fn crash(self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.broken = Some("crashed".into());
        }
    }
}

#[cfg(test)]
mod tests;
