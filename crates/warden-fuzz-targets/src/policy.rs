//! Targets for policy bundles: the bundle text and the signed bundle envelope.

use sha2::{Digest as _, Sha256};
use warden_policy::{AdmittedBundle, Bundle};

use crate::{sections, trust_from, Outcome};

/// Input: a policy bundle (TOML with expressions).
///
/// A parsed bundle's canonical text (what is hashed and signed) parses again to a bundle with
/// the same digest and the same canonical text.
pub fn bundle(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Rejected;
    };
    let Ok(bundle) = Bundle::parse(text, "fuzz.toml") else {
        return Outcome::Rejected;
    };
    let canonical = bundle.canonical_text();
    let again = match Bundle::parse(&canonical, "canonical.toml") {
        Ok(again) => again,
        Err(e) => panic!("the canonical text of a parsed bundle does not parse: {e}\n{canonical}"),
    };
    assert_eq!(
        again.canonical_text(),
        canonical,
        "the canonical text is not a fixed point"
    );
    assert_eq!(
        again.digest(),
        bundle.digest(),
        "re-parsing changed the digest"
    );
    Outcome::Accepted
}

/// Input: a trust file, [`crate::SECTION`], a signed bundle envelope (`bundle.admitted.json`).
///
/// A bundle that verifies and compiles names the SHA-256 of its signed statement, and its
/// canonical text re-parses to the signed digest.
pub fn signed_bundle(data: &[u8]) -> Outcome {
    let [trust, envelope] = sections::<2>(data);
    let trust = trust_from(trust);
    let Ok(admitted) = AdmittedBundle::load(envelope, "fuzz.admitted.json", &trust) else {
        return Outcome::Rejected;
    };
    let verified = admitted.verified();
    let statement = verified.statement();
    assert_eq!(
        verified.statement_digest_hex(),
        hex(&Sha256::digest(statement.canonical_bytes())),
        "the statement digest is not the digest of the canonical statement"
    );
    let reparsed = match Bundle::parse(&statement.canonical_text, "signed.toml") {
        Ok(bundle) => bundle,
        Err(e) => panic!("a verified bundle's signed text does not parse: {e}"),
    };
    assert_eq!(reparsed.digest_hex(), statement.digest);
    Outcome::Accepted
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
