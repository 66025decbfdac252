//! Fuzzes the binary record decoder and the verifier's fast path: never panic, and anything that
//! decodes must re-encode to the same bytes (one canonical encoding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_lineage::{EnvelopeView, LineageVerifier, SignedRecord};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = SignedRecord::from_cbor(data) {
        assert_eq!(record.to_cbor(), data, "decoded bytes must be canonical");
        assert!(EnvelopeView::check(&record.body).is_ok());
    }
    let trust = warden_keys::TrustStore::new();
    let mut verifier = LineageVerifier::new(&trust);
    let _ = verifier.record(data);
});
