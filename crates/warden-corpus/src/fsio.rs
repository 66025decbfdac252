//! Output files of an admission, streamed through [`AtomicFile`]: written to a temporary file
//! beside the target while their SHA-256 (the digest the signed declaration commits to) is
//! computed, then made durable and renamed into place.
//!
//! Why this is not a second atomic-write implementation: the durable steps (temporary path, fsync,
//! rename, directory fsync) are `warden_store::fs` (`temp_path_for`, `commit_temp_file`,
//! `atomic_write`), the one implementation in the workspace. What lives here is what the store has
//! no use for: a buffered writer that digests while it streams gigabytes, and a commit whose fsync
//! runs on a background thread while admission keeps computing.

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
        let tmp = warden_store::fs::temp_path_for(target)?;
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

    /// Flushes the data to the kernel and returns its SHA-256 and length at once; the fsync and
    /// rename run on a background thread, so the disk works while admission computes. The
    /// returned [`Pending`] must be completed before anything that commits to this file (the
    /// signed declaration) is written.
    pub(crate) fn commit_in_background(mut self) -> Result<(Hash, u64, Pending), CorpusError> {
        let Some(out) = self.out.take() else {
            return Err(CorpusError::artifact(&self.target, "committed twice"));
        };
        let file = out
            .into_inner()
            .map_err(|e| CorpusError::io(&self.tmp, e.into_error()))?;
        let digest = std::mem::take(&mut self.hasher).finalize().into();
        let (tmp, target) = (self.tmp.clone(), self.target.clone());
        let handle = std::thread::spawn(move || {
            warden_store::fs::commit_temp_file(file, &tmp, &target).map_err(CorpusError::from)
        });
        Ok((
            digest,
            self.bytes,
            Pending {
                target: self.target.clone(),
                handle,
            },
        ))
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

/// Writes a small file atomically (through `warden_store::fs`); returns its SHA-256.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<Hash, CorpusError> {
    warden_store::fs::atomic_write(path, bytes)?;
    Ok(sha256(bytes))
}

/// Reads a whole (small, or digest-checked) file, naming it on error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, CorpusError> {
    std::fs::read(path).map_err(|e| CorpusError::io(path, e))
}

pub(crate) fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}
