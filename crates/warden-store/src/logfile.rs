//! The three operations the append path performs on a log file, behind a trait so tests can
//! inject faults (short writes, ENOSPC, EIO) at every write, fsync and truncation of an append
//! or a checkpoint, and check that the store keeps its promises under each of them.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// An append-only file as the store writes it.
pub(crate) trait LogFile: Send {
    /// One `write(2)`: may write fewer bytes than given.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file back to `len` bytes (undoing a partial write).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl LogFile for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// Opens a file for appending; the real one, or a fault-injecting one in tests.
pub(crate) type Opener = Arc<dyn Fn(&Path) -> io::Result<Box<dyn LogFile>> + Send + Sync>;

pub(crate) fn real_opener() -> Opener {
    Arc::new(|path: &Path| {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(file) as Box<dyn LogFile>)
    })
}

/// `write_all` over [`LogFile::write`]: stops at the first error, having written a prefix.
pub(crate) fn write_all(file: &mut dyn LogFile, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write(buf) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod faults {
    //! A fault-injecting [`LogFile`]: operation number `k` (counted over every file it opened)
    //! fails as the schedule says; everything else goes to the real file.

    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// A write writes half its bytes (at least one) and reports that count.
        Short,
        /// The operation fails with ENOSPC, writing nothing.
        NoSpace,
        /// The operation fails with EIO, writing or truncating nothing.
        Eio,
    }

    #[derive(Default)]
    pub struct Plan {
        pub next_op: u64,
        pub schedule: BTreeMap<u64, Fault>,
        pub injected: u64,
    }

    struct FaultyFile {
        file: File,
        plan: Arc<Mutex<Plan>>,
    }

    impl FaultyFile {
        fn fault(&self) -> Option<Fault> {
            let mut plan = self.plan.lock().ok()?;
            let op = plan.next_op;
            plan.next_op += 1;
            let fault = plan.schedule.get(&op).copied();
            if fault.is_some() {
                plan.injected += 1;
            }
            fault
        }
    }

    fn os_error(fault: Fault) -> io::Error {
        match fault {
            Fault::NoSpace => io::Error::from_raw_os_error(28),
            _ => io::Error::from_raw_os_error(5),
        }
    }

    impl LogFile for FaultyFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self.fault() {
                Some(Fault::Short) if buf.len() > 1 => {
                    Write::write(&mut self.file, &buf[..buf.len() / 2])
                }
                Some(Fault::Short) | None => Write::write(&mut self.file, buf),
                Some(fault) => Err(os_error(fault)),
            }
        }

        fn sync_data(&mut self) -> io::Result<()> {
            match self.fault() {
                Some(fault @ (Fault::NoSpace | Fault::Eio)) => Err(os_error(fault)),
                _ => self.file.sync_data(),
            }
        }

        fn set_len(&mut self, len: u64) -> io::Result<()> {
            match self.fault() {
                Some(fault @ (Fault::NoSpace | Fault::Eio)) => Err(os_error(fault)),
                _ => self.file.set_len(len),
            }
        }
    }

    pub fn opener(plan: Arc<Mutex<Plan>>) -> Opener {
        Arc::new(move |path: &Path| {
            let file = OpenOptions::new().append(true).open(path)?;
            Ok(Box::new(FaultyFile {
                file,
                plan: Arc::clone(&plan),
            }) as Box<dyn LogFile>)
        })
    }
}
