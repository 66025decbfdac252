//! Targets for keys, trust files and DSSE envelopes.

use warden_attest::{verify_envelope, Envelope, Statement};
use warden_keys::{PublicKey, Role, SigningKey, TrustStore};

use crate::{sections, trust_from, Outcome};

/// Input: a trust file, [`crate::SECTION`], a DSSE envelope (`manifest.intoto.json`).
///
/// An envelope that parses writes back to JSON that parses to the same envelope; one that
/// verifies for the training authority holds a statement whose canonical JSON decodes to the
/// same statement.
pub fn dsse_envelope(data: &[u8]) -> Outcome {
    let [trust, envelope] = sections::<2>(data);
    let Ok(text) = std::str::from_utf8(envelope) else {
        return Outcome::Rejected;
    };
    let Ok(envelope) = Envelope::from_json(text) else {
        return Outcome::Rejected;
    };
    match Envelope::from_json(&envelope.to_json_pretty()) {
        Ok(again) => assert_eq!(again, envelope, "envelope JSON round trip changed it"),
        Err(e) => panic!("a parsed envelope's JSON does not parse: {e}"),
    }
    let trust = trust_from(trust);
    let Ok(verified) = verify_envelope(&envelope, &trust, Role::TrainingAuthority) else {
        return Outcome::Rejected;
    };
    let canonical = verified.statement.to_canonical_json();
    match serde_json::from_slice::<Statement>(&canonical) {
        Ok(again) => assert_eq!(again, verified.statement, "statement round trip changed it"),
        Err(e) => panic!("a verified statement's canonical JSON does not decode: {e}"),
    }
    Outcome::Accepted
}

/// Input: a key file: a private key file (`warden key new`), a `.pub` file, or a bare
/// signed-note verifier key.
///
/// A private key that parses writes back to a file that parses to the same key; a verifier key
/// (the whole input, or the `verifier = "…"` of a key file) re-renders to its text.
pub fn key_file(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Rejected;
    };
    let mut outcome = Outcome::Rejected;
    if let Ok(key) = SigningKey::from_file_text(text) {
        let again = match SigningKey::from_file_text(&key.to_file_text()) {
            Ok(again) => again,
            Err(e) => panic!("a parsed private key's file text does not parse: {e}"),
        };
        assert_eq!(again.role(), key.role());
        assert_eq!(again.key_ref(), key.key_ref());
        assert_eq!(again.public().to_bytes(), key.public().to_bytes());
        outcome = Outcome::Accepted;
    }
    #[derive(serde::Deserialize)]
    struct PubFile {
        role: String,
        verifier: String,
    }
    let verifier = match toml::from_str::<PubFile>(text) {
        Ok(file) => {
            let _ = file.role.parse::<Role>();
            file.verifier
        }
        Err(_) => text.to_string(),
    };
    if let Ok(public) = PublicKey::parse_verifier(&verifier) {
        assert_eq!(
            public.verifier_string(),
            verifier.trim(),
            "a parsed verifier key re-renders differently"
        );
        outcome = Outcome::Accepted;
    }
    outcome
}

/// Input: a trust file.
///
/// A parsed trust file's canonical text parses to a store with the same text and entries.
pub fn trust_file(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Rejected;
    };
    let Ok(trust) = TrustStore::parse(text, "fuzz-trust.toml") else {
        return Outcome::Rejected;
    };
    let canonical = trust.to_toml();
    let again = match TrustStore::parse(&canonical, "canonical") {
        Ok(again) => again,
        Err(e) => panic!("a trust store's own text does not parse: {e}\n{canonical}"),
    };
    assert_eq!(
        again.to_toml(),
        canonical,
        "trust text is not a fixed point"
    );
    assert_eq!(again.entries().count(), trust.entries().count());
    // The section reader used by the other targets agrees with the parser.
    assert_eq!(trust_from(data).to_toml(), canonical);
    Outcome::Accepted
}
