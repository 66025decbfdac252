//! Standard output that never panics and never interrupts a command's durable work.
//!
//! `println!` panics when stdout is closed (`warden lineage show | head`), which killed commands
//! between two durable writes (a lineage record and the file that goes with it). Every command
//! prints through [`outln!`]/[`out!`] instead: a failed write is remembered, later writes are
//! skipped, the command finishes what it was doing, and `main` reports the failure at the end
//! (a closed pipe quietly, as exit status 141 like a tool killed by SIGPIPE; any other error,
//! such as a full disk behind a redirect, as an error naming stdout).

use std::io::{self, Write};
use std::sync::Mutex;

static FAILURE: Mutex<Option<io::ErrorKind>> = Mutex::new(None);

/// Writes formatted text to stdout unless an earlier write failed; remembers the first failure.
pub fn write_fmt(args: std::fmt::Arguments<'_>) {
    let mut failure = FAILURE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if failure.is_some() {
        return;
    }
    let mut stdout = io::stdout().lock();
    if let Err(err) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        *failure = Some(err.kind());
    }
}

/// Writes raw bytes to stdout under the same rules as [`write_fmt`].
pub fn write_bytes(bytes: &[u8]) {
    let mut failure = FAILURE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if failure.is_some() {
        return;
    }
    let mut stdout = io::stdout().lock();
    if let Err(err) = stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        *failure = Some(err.kind());
    }
}

/// The first stdout write failure of this process, if any.
pub fn failure() -> Option<io::ErrorKind> {
    *FAILURE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `println!` that cannot panic (see the module docs).
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that cannot panic (see the module docs).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write_fmt(format_args!($($arg)*)) };
}
