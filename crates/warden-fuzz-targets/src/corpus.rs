//! Targets for the corpus formats: the declaration TOML, the source splitter, and the files an
//! admission writes (signed declaration, sample index, fingerprint index).

use std::path::Path;

use sha2::{Digest as _, Sha256};
use warden_corpus::fingerprint::FingerprintIndex;
use warden_corpus::index::SampleIndex;
use warden_corpus::source::{list_files, SourceSamples};
use warden_corpus::{sample_hash, AdmittedCorpus, Declaration, DeclarationBody, SourceFormat};

use crate::{scratch_dir, sections, trust_from, write_scratch, Outcome};

/// Input: a corpus declaration (`corpus admit DECLARATION`).
pub fn declaration(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Rejected;
    };
    match Declaration::parse(text, Path::new("fuzz/declaration.toml")) {
        Ok(_) => Outcome::Accepted,
        Err(_) => Outcome::Rejected,
    }
}

/// Input: a text source file (documents separated by blank lines).
///
/// Every sample is a non-empty document without a blank line in it, lines strictly increase
/// and stay inside the file, and each sample's hash is the hash of its text.
pub fn source_text(data: &[u8]) -> Outcome {
    split_source(data, SourceFormat::Text, |text| {
        // Blank means ASCII whitespace only, as the splitter defines it (a vertical tab, which
        // Unicode counts as white space, is content).
        assert!(
            !text
                .split('\n')
                .any(|line| line.bytes().all(|b| b.is_ascii_whitespace())),
            "a text sample holds a blank line: {text:?}"
        );
    })
}

/// Input: a JSONL source file (the `text` field of each non-blank line).
pub fn source_jsonl(data: &[u8]) -> Outcome {
    split_source(data, SourceFormat::Jsonl, |_| {})
}

fn split_source(data: &[u8], format: SourceFormat, check: impl Fn(&str)) -> Outcome {
    let dir = scratch_dir();
    let path = dir.path().join("source");
    write_scratch(&path, data);
    let files = match list_files(&path, Some(format)) {
        Ok(files) => files,
        Err(e) => panic!("fuzz harness: cannot list the scratch source: {e}"),
    };
    // Lines are counted as the splitter counts them: `\n`-terminated, the last one unterminated.
    let n_lines = data.split(|&b| b == b'\n').count() as u64;
    let mut last_line = 0u64;
    for sample in SourceSamples::from_files(files, "text") {
        let Ok(sample) = sample else {
            return Outcome::Rejected;
        };
        assert!(sample.line > last_line, "sample lines do not increase");
        assert!(
            sample.line <= n_lines,
            "sample line past the end of the file"
        );
        assert_eq!(sample.hash, sample_hash(&sample.text));
        check(&sample.text);
        last_line = sample.line;
    }
    Outcome::Accepted
}

/// Input: a trust file, `declaration.json`, `declaration.sig` and `samples.idx`, as
/// [`crate::SECTION`]-separated sections.
///
/// Any `declaration.json` body that decodes re-encodes canonically to a body that decodes to the
/// same value; an admission directory that loads (signature through the trust file, canonical
/// bytes, committed sample index) names the digest of its declaration and finds every sample
/// in its index.
pub fn signed_declaration(data: &[u8]) -> Outcome {
    let [trust, declaration, signature, index] = sections::<4>(data);
    if let Ok(body) = serde_json::from_slice::<DeclarationBody>(declaration) {
        let canonical = body.canonical_bytes();
        match serde_json::from_slice::<DeclarationBody>(&canonical) {
            Ok(again) => assert_eq!(again, body, "canonical round trip changed the body"),
            Err(e) => panic!("the canonical bytes of a declaration body do not decode: {e}"),
        }
    }
    let trust = trust_from(trust);
    let dir = scratch_dir();
    write_scratch(&dir.path().join("declaration.json"), declaration);
    write_scratch(&dir.path().join("declaration.sig"), signature);
    write_scratch(&dir.path().join("samples.idx"), index);
    let Ok(corpus) = AdmittedCorpus::load(dir.path(), &trust) else {
        return Outcome::Rejected;
    };
    let digest: [u8; 32] = Sha256::digest(declaration).into();
    assert_eq!(corpus.declaration_digest(), digest);
    assert_eq!(corpus.body().canonical_bytes(), declaration);
    for entry in corpus.index().entries() {
        assert!(
            corpus.lookup(&entry.hash).is_some(),
            "indexed sample not found"
        );
    }
    Outcome::Accepted
}

/// Input: a `samples.idx` file (checked against 16 sources).
///
/// A parsed index, written out again in its documented layout, is the input; every entry is
/// found by lookup at its position.
pub fn sample_index(data: &[u8]) -> Outcome {
    let Ok(index) = SampleIndex::parse(data, 16) else {
        return Outcome::Rejected;
    };
    let mut again = b"WSMPIDX1".to_vec();
    for (position, entry) in index.entries().iter().enumerate() {
        again.extend_from_slice(&entry.hash);
        again.extend_from_slice(&entry.first.source.to_le_bytes());
        again.extend_from_slice(&entry.first.line.to_le_bytes());
        again.extend_from_slice(&entry.occurrences.to_le_bytes());
        assert_eq!(index.position(&entry.hash), Ok(position));
        assert!(index.get(&entry.hash).is_some_and(|e| e == entry));
    }
    assert_eq!(
        again, data,
        "re-encoding the parsed index changed its bytes"
    );
    Outcome::Accepted
}

/// Input: a fingerprint index file (`fingerprints/<class>.fp`).
///
/// A parsed index holds exactly the grams of the file: its length is the trailer's count, every
/// gram in the file is contained, and the value just above each gram is contained only if it is
/// the next gram.
pub fn fingerprint_index(data: &[u8]) -> Outcome {
    let Ok(index) = FingerprintIndex::parse(data) else {
        return Outcome::Rejected;
    };
    let grams: Vec<u64> = data[8..data.len() - 8]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    assert_eq!(index.len(), grams.len());
    for (i, &gram) in grams.iter().enumerate() {
        assert!(index.contains(gram), "gram {gram:#x} not found");
        if let Some(above) = gram.checked_add(1) {
            let next_is_above = grams.get(i + 1) == Some(&above);
            assert_eq!(index.contains(above), next_is_above, "gram {above:#x}");
        }
    }
    Outcome::Accepted
}
