//! Fuzzes the segment-file scanner: never panic, and frames found lie inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_store::frame::{scan, SEGMENT_MAGIC};

fuzz_target!(|data: &[u8]| {
    let file = scan(data.to_vec(), SEGMENT_MAGIC);
    for &(start, len) in &file.frames {
        assert!(start + len <= data.len());
    }
    assert!(file.valid_len as usize <= data.len());
});
