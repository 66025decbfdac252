//! A bounded-memory external sort for fixed-size records, so that admission's peak memory does
//! not grow with the corpus: records are buffered up to a budget, sorted (on both cores) and
//! deduplicated, spilled to run files in a scratch directory, and merged at the end.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use rayon::slice::ParallelSliceMut;

use crate::error::CorpusError;

/// A fixed-size, totally ordered record.
pub(crate) trait Record: Copy + Ord + Send + Sync {
    const SIZE: usize;
    fn write_to(&self, out: &mut Vec<u8>);
    fn read_from(bytes: &[u8]) -> Self;
}

impl Record for u64 {
    const SIZE: usize = 8;
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn read_from(bytes: &[u8]) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[..8]);
        u64::from_le_bytes(b)
    }
}

pub(crate) struct ExternalSorter<R: Record> {
    buffer: Vec<R>,
    budget: usize,
    runs: Vec<PathBuf>,
    scratch: PathBuf,
    name: String,
}

impl<R: Record> ExternalSorter<R> {
    /// `budget`: records held in memory before a spill. Run files go to `scratch/name.N.run`.
    pub(crate) fn new(scratch: PathBuf, name: &str, budget: usize) -> Self {
        ExternalSorter {
            buffer: Vec::new(),
            budget: budget.max(1024),
            runs: Vec::new(),
            scratch,
            name: name.to_string(),
        }
    }

    pub(crate) fn extend(&mut self, records: &[R]) -> Result<(), CorpusError> {
        let mut rest = records;
        while !rest.is_empty() {
            if self.buffer.capacity() == 0 {
                // Pages of an untouched reservation are not resident: small corpora pay nothing.
                self.buffer.reserve_exact(self.budget);
            }
            let room = self.budget - self.buffer.len();
            let take = room.min(rest.len());
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buffer.len() >= self.budget {
                self.spill()?;
            }
        }
        Ok(())
    }

    pub(crate) fn push(&mut self, record: R) -> Result<(), CorpusError> {
        self.extend(std::slice::from_ref(&record))
    }

    fn sort_buffer(&mut self) {
        self.buffer.par_sort_unstable();
        self.buffer.dedup();
    }

    /// Sorts the buffer and writes it as a run file (not fsynced: runs are scratch).
    pub(crate) fn spill(&mut self) -> Result<(), CorpusError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.sort_buffer();
        let path = self
            .scratch
            .join(format!("{}.{}.run", self.name, self.runs.len()));
        let file = File::create(&path).map_err(|e| CorpusError::io(&path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut bytes = Vec::with_capacity(R::SIZE * 4096);
        for chunk in self.buffer.chunks(4096) {
            bytes.clear();
            for r in chunk {
                r.write_to(&mut bytes);
            }
            out.write_all(&bytes)
                .map_err(|e| CorpusError::io(&path, e))?;
        }
        out.flush().map_err(|e| CorpusError::io(&path, e))?;
        self.runs.push(path);
        self.buffer.clear();
        Ok(())
    }

    /// All records in ascending order, duplicates removed.
    pub(crate) fn finish(mut self) -> Result<Sorted<R>, CorpusError> {
        if self.runs.is_empty() {
            self.sort_buffer();
            let buffer = std::mem::take(&mut self.buffer);
            return Ok(Sorted::Memory(buffer.into_iter()));
        }
        self.spill()?;
        let mut readers = Vec::with_capacity(self.runs.len());
        let mut heap = BinaryHeap::new();
        for (idx, path) in self.runs.iter().enumerate() {
            let file = File::open(path).map_err(|e| CorpusError::io(path, e))?;
            let mut reader = RunReader {
                reader: BufReader::with_capacity(256 << 10, file),
                path: path.clone(),
                buf: vec![0u8; R::SIZE],
            };
            if let Some(r) = reader.next_record::<R>()? {
                heap.push(Reverse((r, idx)));
            }
            readers.push(reader);
        }
        Ok(Sorted::Merge {
            readers,
            heap,
            last: None,
            runs: std::mem::take(&mut self.runs),
        })
    }
}

impl<R: Record> Drop for ExternalSorter<R> {
    fn drop(&mut self) {
        for run in &self.runs {
            let _ = std::fs::remove_file(run);
        }
    }
}

pub(crate) struct RunReader {
    reader: BufReader<File>,
    path: PathBuf,
    buf: Vec<u8>,
}

impl RunReader {
    fn next_record<R: Record>(&mut self) -> Result<Option<R>, CorpusError> {
        match self.reader.read_exact(&mut self.buf) {
            Ok(()) => Ok(Some(R::read_from(&self.buf))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(CorpusError::io(&self.path, e)),
        }
    }
}

/// The sorted, deduplicated output of an [`ExternalSorter`].
pub(crate) enum Sorted<R: Record> {
    Memory(std::vec::IntoIter<R>),
    Merge {
        readers: Vec<RunReader>,
        heap: BinaryHeap<Reverse<(R, usize)>>,
        last: Option<R>,
        runs: Vec<PathBuf>,
    },
}

impl<R: Record> Iterator for Sorted<R> {
    type Item = Result<R, CorpusError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Sorted::Memory(it) => it.next().map(Ok),
            Sorted::Merge {
                readers,
                heap,
                last,
                ..
            } => loop {
                let Reverse((record, idx)) = heap.pop()?;
                match readers[idx].next_record::<R>() {
                    Ok(Some(next)) => heap.push(Reverse((next, idx))),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
                if *last == Some(record) {
                    continue;
                }
                *last = Some(record);
                return Some(Ok(record));
            },
        }
    }
}

impl<R: Record> Drop for Sorted<R> {
    fn drop(&mut self) {
        if let Sorted::Merge { runs, .. } = self {
            for run in runs.iter() {
                let _ = std::fs::remove_file(run);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn spilled_runs_merge_to_the_same_sorted_set_as_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let values: Vec<u64> = (0..50_000).map(|_| rng.gen_range(0..20_000u64)).collect();
        let mut small = ExternalSorter::<u64>::new(dir.path().to_path_buf(), "g", 1024);
        let mut big = ExternalSorter::<u64>::new(dir.path().to_path_buf(), "h", 1 << 20);
        for chunk in values.chunks(777) {
            small.extend(chunk).unwrap();
            big.extend(chunk).unwrap();
        }
        assert!(small.runs.len() > 10);
        let a: Vec<u64> = small.finish().unwrap().map(Result::unwrap).collect();
        let b: Vec<u64> = big.finish().unwrap().map(Result::unwrap).collect();
        let mut expected = values.clone();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(a, expected);
        assert_eq!(b, expected);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "runs removed"
        );
    }
}
