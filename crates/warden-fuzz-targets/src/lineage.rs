//! Targets for the lineage formats: stored entries, JSON records, checkpoint notes, segment
//! framing, and a whole lineage directory read back through the store.

use warden_lineage::record::encode_entry;
use warden_lineage::{EnvelopeView, LineageVerifier, SignedCheckpoint, SignedRecord};
use warden_store::frame::{encode_frame, scan, CHECKPOINT_MAGIC, SEGMENT_MAGIC};
use warden_store::{Lineage, VerifyOptions};

use crate::{scratch_dir, sections, trust_from, write_scratch, Outcome};

/// Input: one stored entry, CBOR `[body, signature | null]`.
///
/// Anything that decodes must be the one canonical encoding: the *decoded record*, encoded again
/// by `Record::encode_body`, gives back the body, and the entry around it gives back the input.
/// Its JSON audit form decodes to the same body and signature.
pub fn entry(data: &[u8]) -> Outcome {
    // The verifier's fast path runs on everything (an empty trust store refuses every signer,
    // after the envelope checks).
    let trust = warden_keys::TrustStore::new();
    let _ = LineageVerifier::new(&trust).record(data);

    let Ok(record) = SignedRecord::from_cbor(data) else {
        return Outcome::Rejected;
    };
    let body = match record.record.encode_body() {
        Ok(body) => body,
        Err(e) => panic!("a decoded record does not encode again: {e}"),
    };
    assert_eq!(
        body, record.body,
        "re-encoding the decoded record changed the body"
    );
    let mut entry = Vec::new();
    encode_entry(&mut entry, &body, record.signature.as_ref());
    assert_eq!(
        entry, data,
        "re-encoding the decoded entry changed its bytes"
    );
    assert!(
        EnvelopeView::check(&record.body).is_ok(),
        "the fast envelope view refuses a body the full decoder accepts"
    );
    check_json_twin(&record);
    Outcome::Accepted
}

/// Decodes a record's JSON form and checks it names the same body and signature.
fn check_json_twin(record: &SignedRecord) {
    let json = record.to_json();
    let back = match SignedRecord::from_json(&json) {
        Ok(back) => back,
        Err(e) => panic!("the JSON form of a decoded record does not decode: {e}"),
    };
    assert_eq!(back.body, record.body, "JSON round trip changed the body");
    assert!(
        back.signature == record.signature,
        "JSON round trip changed the signature"
    );
}

/// Input: one record in the JSON audit form (`lineage export --format json`).
///
/// Decoding re-encodes the body canonically; the decoded record's CBOR entry must decode to
/// the same body, and its JSON form must decode to the same record again.
pub fn json(data: &[u8]) -> Outcome {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return Outcome::Rejected;
    };
    let Ok(record) = SignedRecord::from_json(&value) else {
        return Outcome::Rejected;
    };
    let cbor = record.to_cbor();
    let back = match SignedRecord::from_cbor(&cbor) {
        Ok(back) => back,
        Err(e) => panic!("the CBOR entry of a decoded JSON record does not decode: {e}"),
    };
    assert_eq!(back.body, record.body, "CBOR round trip changed the body");
    check_json_twin(&record);
    Outcome::Accepted
}

/// Input: a trust file, [`crate::SECTION`], a checkpoint note (a bare note is also accepted).
///
/// A parsed note re-renders to exactly its text; its co-signatures are checked against the
/// trust file.
pub fn checkpoint_note(data: &[u8]) -> Outcome {
    let [first, second] = sections::<2>(data);
    let (trust, note) = if second.is_empty() {
        (warden_keys::TrustStore::new(), first)
    } else {
        (trust_from(first), second)
    };
    let Ok(text) = std::str::from_utf8(note) else {
        return Outcome::Rejected;
    };
    let Ok(parsed) = SignedCheckpoint::parse(text) else {
        return Outcome::Rejected;
    };
    assert_eq!(
        parsed.to_note(),
        text,
        "a parsed note re-renders differently"
    );
    // Every role may have signed a record in the window: the fuzzer explores the signature
    // checks, not the role binding (which the lineage's unit tests pin).
    let roles = std::collections::BTreeSet::from(warden_keys::Role::ALL);
    match parsed.verify_signatures(&trust, &roles) {
        Ok(signers) => {
            assert_eq!(signers.len(), parsed.signatures.len());
            Outcome::Accepted
        }
        Err(_) => Outcome::Rejected,
    }
}

/// Input: a segment file or a checkpoint file (its magic says which).
///
/// Every frame found lies inside the file, and the header followed by the frames, framed again
/// by `encode_frame`, gives back exactly the valid prefix of the file.
pub fn segment_frames(data: &[u8]) -> Outcome {
    let magic = if data.starts_with(CHECKPOINT_MAGIC) {
        CHECKPOINT_MAGIC
    } else {
        SEGMENT_MAGIC
    };
    let file = scan(data.to_vec(), magic);
    let valid_len = usize::try_from(file.valid_len).unwrap_or(usize::MAX);
    assert!(
        valid_len <= data.len(),
        "valid length past the end of the file"
    );
    for &(start, len) in &file.frames {
        assert!(start + len <= data.len(), "frame past the end of the file");
    }
    if file.fault.is_some() && file.frames.is_empty() && valid_len == 0 {
        return Outcome::Rejected;
    }
    // The header is everything before the first frame's length and checksum words.
    let header_len = match file.frames.first() {
        Some(&(start, _)) => start - 8,
        None => valid_len,
    };
    let mut again = data[..header_len].to_vec();
    for frame in 0..file.frames.len() {
        encode_frame(&mut again, file.payload(frame));
    }
    assert_eq!(
        again,
        &data[..valid_len],
        "re-framing the frames found does not give back the valid prefix"
    );
    if file.fault.is_some() {
        Outcome::Rejected
    } else {
        Outcome::Accepted
    }
}

/// Input: a trust file, a segment file and a checkpoint file, as [`crate::SECTION`]-separated
/// sections, written as a lineage directory and read back through the store.
///
/// Properties: a directory that verifies is read whole by `read_all` (same record count, each
/// record re-encoding to its stored entry) and opens for appending with the same size.
pub fn store_read(data: &[u8]) -> Outcome {
    let [trust, segment, checkpoints] = sections::<3>(data);
    let trust = trust_from(trust);
    let dir = scratch_dir();
    write_scratch(&dir.path().join("seg-00000000000000000000.wlog"), segment);
    write_scratch(&dir.path().join("checkpoints.wlog"), checkpoints);

    let verified = warden_store::verify(dir.path(), &trust, &VerifyOptions::default());
    let records = warden_store::read_all(dir.path());
    let _ = warden_store::read_checkpoints(dir.path());
    if let Ok(records) = &records {
        for record in records {
            // Each record read decodes strictly, so its entry re-encodes to the same bytes.
            let entry = record.to_cbor();
            let back = SignedRecord::from_cbor(&entry).map(|r| r.body);
            assert!(back.ok() == Some(record.body.clone()));
        }
    }
    let Ok(verified) = verified else {
        // Opening for append may cut a torn tail in the scratch copy: it must not panic.
        let _ = Lineage::open(dir.path());
        return Outcome::Rejected;
    };
    let records = match records {
        Ok(records) => records,
        Err(e) => panic!("a lineage that verifies cannot be read: {e}"),
    };
    assert_eq!(records.len() as u64, verified.records);
    match Lineage::open(dir.path()) {
        Ok(lineage) => assert_eq!(lineage.len(), verified.records),
        Err(e) => panic!("a lineage that verifies does not open for appending: {e}"),
    }
    Outcome::Accepted
}
