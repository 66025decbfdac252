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
    pub(crate) fn commit(mut self) -> Result<(Hash, u64), CorpusError> {
        let Some(out) = self.out.take() else {
            return Err(CorpusError::artifact(&self.target, "committed twice"));
        };
        let file = out
            .into_inner()
            .map_err(|e| CorpusError::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| CorpusError::io(&self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target).map_err(|e| CorpusError::io(&self.target, e))?;
        sync_dir(&self.target)?;
        let digest = std::mem::take(&mut self.hasher).finalize().into();
        Ok((digest, self.bytes))
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
