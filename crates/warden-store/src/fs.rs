//! Durable file helpers: atomic replacement (temp file, fsync, rename, fsync directory) and
//! loading of key and trust files with errors that name the path.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use warden_keys::{SigningKey, TrustStore};

use crate::StoreError;

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<(), StoreError> {
    let tmp = temp_path_for(path)?;
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        Ok(file)
    });
    match written {
        // The one commit step every atomic write shares: fsync, rename, fsync the directory.
        Ok(file) => commit_temp_file(file, &tmp, path),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(io_err(path, e))
        }
    }
}

/// The path of the temporary file (or directory) beside `target` that an atomic write builds
/// before renaming it into place: `.NAME.tmp-PID` in the same directory, so the rename never
/// crosses file systems.
pub fn temp_path_for(target: &Path) -> Result<std::path::PathBuf, StoreError> {
    let file_name = target
        .file_name()
        .ok_or_else(|| io_err(target, std::io::Error::other("path has no file name")))?;
    Ok(parent_or_dot(target).join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    )))
}

fn parent_or_dot(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Renames `from` over `to` and fsyncs the directory holding `to`, so the rename survives a
/// power cut. Works for a directory too (`to` absent or an empty directory).
pub fn rename_durably(from: &Path, to: &Path) -> Result<(), StoreError> {
    fs::rename(from, to).map_err(|e| io_err(to, e))?;
    sync_dir(parent_or_dot(to))
}

/// The last step of a streamed atomic write (callers that write large files through their own
/// buffered writer, e.g. warden-corpus's digesting output files): fsyncs `file` (written at
/// `tmp`), renames it over `target` and fsyncs the directory. `tmp` is removed on failure, so a
/// reader sees the old file or the new one, never a mix.
pub fn commit_temp_file(file: File, tmp: &Path, target: &Path) -> Result<(), StoreError> {
    let result = file.sync_all().map_err(|e| io_err(tmp, e)).and_then(|()| {
        drop(file);
        rename_durably(tmp, target)
    });
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// Replaces `path` with `bytes` atomically: readers see the old file or the new one, never a mix.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomically(path, bytes, false)
}

/// As [`atomic_write`], with mode 0600 (for private keys).
pub fn atomic_write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomically(path, bytes, true)
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Writes `header` followed by the bytes of `src` from offset `from` to its end into `dest`
/// atomically (temp file, fsync, rename, fsync directory), streaming. Returns the bytes copied.
pub fn atomic_copy_tail(
    src: &Path,
    from: u64,
    header: &[u8],
    dest: &Path,
) -> Result<u64, StoreError> {
    use std::io::{Seek, SeekFrom};
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = dest
        .file_name()
        .ok_or_else(|| io_err(dest, std::io::Error::other("path has no file name")))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let mut source = File::open(src).map_err(|e| io_err(src, e))?;
    source
        .seek(SeekFrom::Start(from))
        .map_err(|e| io_err(src, e))?;
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        out.write_all(header)?;
        let copied = std::io::copy(&mut source, &mut out)?;
        out.sync_all()?;
        drop(out);
        fs::rename(&tmp, dest)?;
        File::open(dir)?.sync_all()?;
        Ok(copied)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| io_err(dest, e))
}

/// Reads a whole (small) file, naming the path on error.
pub fn read_to_string(path: &Path) -> Result<String, StoreError> {
    fs::read_to_string(path).map_err(|e| io_err(path, e))
}

/// Loads a private key file written by `warden key new`.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, StoreError> {
    let text = read_to_string(path)?;
    SigningKey::from_file_text(&text).map_err(|e| StoreError::Key {
        path: path.display().to_string(),
        source: e,
    })
}

/// Loads a trust file.
pub fn load_trust(path: &Path) -> Result<TrustStore, StoreError> {
    let text = read_to_string(path)?;
    // The parse error already names the file.
    TrustStore::parse(&text, &path.display().to_string()).map_err(StoreError::Trust)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        atomic_write_private(&path, b"one").unwrap();
        atomic_write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }
}
