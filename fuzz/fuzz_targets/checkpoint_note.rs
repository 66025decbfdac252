//! Fuzzes the signed-note checkpoint parser: never panic; parsed notes re-render identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_lineage::SignedCheckpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(note) = SignedCheckpoint::parse(text) {
            assert_eq!(note.to_note(), text);
        }
    }
});
