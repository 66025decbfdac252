//! Durable, atomic output files: written to a temporary file beside the target, fsynced, renamed
//! over the target, and the directory fsynced, so a reader sees the old file or the new one.
//! Large outputs (sample index, leaf lists, fingerprint indexes) are streamed through
//! [`AtomicFile`], which also computes the SHA-256 the signed declaration commits to.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::CorpusError;
use crate::Hash;

pub(crate) struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    hasher: Sha256,
    bytes: u64,
}

impl AtomicFile {
    pub(crate) fn create(target: &Path) -> Result<AtomicFile, CorpusError> {
        let dir = parent_dir(target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| CorpusError::io(&tmp, e))?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), CorpusError> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        match self.out.as_mut() {
            Some(out) => out
                .write_all(bytes)
                .map_err(|e| CorpusError::io(&self.tmp, e)),
            None => Err(CorpusError::artifact(&self.target, "write after commit")),
        }
    }

    /// Makes the file durable and visible at its target path; returns its SHA-256 and length.
    pub(crate) fn commit(self) -> Result<(Hash, u64), CorpusError> {
        let (digest, bytes, durable) = self.finish()?;
        durable.complete()?;
        Ok((digest, bytes))
    }

    /// Flushes the data to the kernel and returns its SHA-256 and length at once; the fsync and
    /// rename run on a background thread, so the disk works while admission computes. The
    /// returned [`Pending`] must be completed before anything that commits to this file (the
    /// signed declaration) is written.
    pub(crate) fn commit_in_background(self) -> Result<(Hash, u64, Pending), CorpusError> {
        let (digest, bytes, durable) = self.finish()?;
        let target = durable.target.clone();
        let handle = std::thread::spawn(move || durable.complete());
        Ok((digest, bytes, Pending { target, handle }))
    }

    fn finish(mut self) -> Result<(Hash, u64, Durable), CorpusError> {
        let Some(out) = self.out.take() else {
            return Err(CorpusError::artifact(&self.target, "committed twice"));
        };
        let file = out
            .into_inner()
            .map_err(|e| CorpusError::io(&self.tmp, e.into_error()))?;
        let digest = std::mem::take(&mut self.hasher).finalize().into();
        Ok((
            digest,
            self.bytes,
            Durable {
                file,
                tmp: self.tmp.clone(),
                target: self.target.clone(),
            },
        ))
    }
}

/// A fully written temporary file waiting for fsync and rename.
struct Durable {
    file: File,
    tmp: PathBuf,
    target: PathBuf,
}

impl Durable {
    fn complete(self) -> Result<(), CorpusError> {
        let result = (|| {
            self.file
                .sync_all()
                .map_err(|e| CorpusError::io(&self.tmp, e))?;
            std::fs::rename(&self.tmp, &self.target)
                .map_err(|e| CorpusError::io(&self.target, e))?;
            sync_dir(&self.target)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        result
    }
}

/// A background commit; see [`AtomicFile::commit_in_background`].
pub(crate) struct Pending {
    target: PathBuf,
    handle: std::thread::JoinHandle<Result<(), CorpusError>>,
}

impl Pending {
    pub(crate) fn wait(self) -> Result<(), CorpusError> {
        self.handle.join().map_err(|_| {
            CorpusError::artifact(&self.target, "the thread making it durable panicked")
        })?
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(target: &Path) -> Result<(), CorpusError> {
    let dir = parent_dir(target);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CorpusError::io(&dir, e))
}

/// Writes a small file atomically; returns its SHA-256.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<Hash, CorpusError> {
    let mut f = AtomicFile::create(path)?;
    f.write(bytes)?;
    Ok(f.commit()?.0)
}

/// Reads a whole (small, or digest-checked) file, naming it on error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, CorpusError> {
    std::fs::read(path).map_err(|e| CorpusError::io(path, e))
}

pub(crate) fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}
