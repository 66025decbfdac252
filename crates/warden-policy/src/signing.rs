//! Signing admitted bundles, verifying them on load, and monotonic versions.
//!
//! The signed statement has exactly one encoding: [`Statement::canonical_bytes`] (compact JSON of
//! a struct with fixed field order, maps sorted, no floats). The signature covers
//! `b"warden/policy-bundle/v1\n" ‖ canonical bytes`. The file on disk is an envelope holding those
//! bytes in base64, the signer and the signature; verification checks the signature over the bytes
//! as stored, then insists that they are the canonical encoding of what they decode to, and that
//! the canonical predicate text inside re-parses to the same digest. The bytes that were signed
//! are the bytes that are verified.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use warden_keys::{KeyRef, Role, Signature, SigningKey, TrustStore};

use crate::bundle::Bundle;
use crate::gate::{Bound, Proof, Stats, PROVER};
use crate::PolicyError;

/// Domain separation for policy bundle signatures.
pub const SIGNING_DOMAIN: &[u8] = b"warden/policy-bundle/v1\n";

/// The statement `type` field.
pub const STATEMENT_TYPE: &str = "warden/policy-bundle/v1";

/// What was proven, as recorded in the signed statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofSummary {
    pub prover: String,
    pub bound: Bound,
    /// `(check, result)` for each of the three checks, in order.
    pub checks: Vec<(String, String)>,
    /// A satisfying assignment of every attribute.
    pub witness: BTreeMap<String, serde_json::Value>,
    pub stats: Stats,
}

/// The signed content of an admitted bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "type")]
    pub statement_type: String,
    pub name: String,
    pub version: u64,
    pub succeeds: Option<u64>,
    /// `name@vN+digest-prefix`: the policy version named in lineage records.
    pub version_id: String,
    /// SHA-256 (hex) of `canonical_text`.
    pub digest: String,
    pub canonical_text: String,
    pub proof: ProofSummary,
    /// RFC 3339, seconds.
    pub admitted_at: String,
    pub signer: KeyRef,
    /// Why an earlier rejection of this same digest was revisited, if it was.
    pub acknowledge: Option<String>,
    /// SHA-256 (hex) of the training manifest file the bundle was admitted against (its derived
    /// predicates are in `canonical_text`); absent for a bundle admitted without one. Omitted from
    /// the encoding when absent, so statements signed before this field existed still verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

impl Statement {
    /// The one canonical encoding: the bytes that are signed.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings, integers, options and sorted maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The message the policy authority signs.
    pub fn signing_message(canonical: &[u8]) -> Vec<u8> {
        let mut message = SIGNING_DOMAIN.to_vec();
        message.extend_from_slice(canonical);
        message
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    payload: String,
    signer: KeyRef,
    signature: String,
}

/// Signs `canonical` under `domain` and returns the envelope file's bytes (pretty JSON + newline).
pub(crate) fn seal(domain: &[u8], canonical: &[u8], key: &SigningKey) -> Vec<u8> {
    let mut message = domain.to_vec();
    message.extend_from_slice(canonical);
    let signature = key.sign(&message);
    let envelope = Envelope {
        payload: BASE64.encode(canonical),
        signer: key.key_ref(),
        signature: BASE64.encode(signature.0),
    };
    let mut bytes = serde_json::to_vec_pretty(&envelope).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Checks an envelope's policy-authority signature under `domain` through `trust`; returns the
/// signed payload bytes and the signer. `what` names the envelope kind in errors.
pub(crate) fn unseal(
    bytes: &[u8],
    domain: &[u8],
    what: &str,
    origin: &str,
    trust: &TrustStore,
) -> Result<(Vec<u8>, KeyRef), PolicyError> {
    let malformed = |reason: String| PolicyError::Malformed {
        origin: origin.to_string(),
        reason,
    };
    let envelope: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("not a signed {what} envelope: {e}")))?;
    let payload = BASE64
        .decode(&envelope.payload)
        .map_err(|_| malformed("payload is not base64".into()))?;
    let signature = BASE64
        .decode(&envelope.signature)
        .ok()
        .and_then(|s| Signature::from_slice(&s))
        .ok_or_else(|| malformed("signature is not 64 bytes of base64".into()))?;
    let mut message = domain.to_vec();
    message.extend_from_slice(&payload);
    trust
        .verify(
            &envelope.signer,
            Role::PolicyAuthority,
            &message,
            &signature,
        )
        .map_err(|source| PolicyError::Signature {
            origin: origin.to_string(),
            source,
        })?;
    Ok((payload, envelope.signer))
}

/// A freshly signed bundle, ready to be written.
#[derive(Debug, Clone)]
pub struct SignedBundle {
    pub statement: Statement,
    envelope: Vec<u8>,
    statement_digest: [u8; 32],
}

impl SignedBundle {
    /// The envelope file's bytes.
    pub fn to_bytes(&self) -> &[u8] {
        &self.envelope
    }

    /// SHA-256 of the signed canonical statement bytes.
    pub fn statement_digest_hex(&self) -> String {
        hex::encode(self.statement_digest)
    }
}

/// The version id named in lineage records: `name@vN+<first 12 hex digits of the digest>`.
pub fn version_id(name: &str, version: u64, digest_hex: &str) -> String {
    format!(
        "{name}@v{version}+{}",
        &digest_hex[..12.min(digest_hex.len())]
    )
}

/// Signs a proven bundle as the policy authority.
pub fn admit(
    bundle: &Bundle,
    proof: &Proof,
    key: &SigningKey,
    at: SystemTime,
    acknowledge: Option<&str>,
) -> Result<SignedBundle, PolicyError> {
    admit_for_manifest(bundle, proof, key, at, acknowledge, None)
}

/// [`admit`], naming in the signed statement the SHA-256 of the training manifest file the
/// bundle was merged with ([`crate::derive::merge`]).
pub fn admit_for_manifest(
    bundle: &Bundle,
    proof: &Proof,
    key: &SigningKey,
    at: SystemTime,
    acknowledge: Option<&str>,
    manifest: Option<[u8; 32]>,
) -> Result<SignedBundle, PolicyError> {
    if key.role() != Role::PolicyAuthority {
        return Err(PolicyError::WrongRole {
            key: key.key_ref().to_string(),
            role: key.role(),
        });
    }
    if proof.bundle_digest() != bundle.digest() {
        return Err(PolicyError::Succession {
            name: bundle.name.clone(),
            version: bundle.version,
            reason: "the proof was made for a different bundle".into(),
        });
    }
    let digest = bundle.digest_hex();
    let statement = Statement {
        statement_type: STATEMENT_TYPE.to_string(),
        name: bundle.name.clone(),
        version: bundle.version,
        succeeds: bundle.succeeds,
        version_id: version_id(&bundle.name, bundle.version, &digest),
        digest,
        canonical_text: bundle.canonical_text(),
        proof: ProofSummary {
            prover: PROVER.to_string(),
            bound: proof.bound(),
            checks: proof
                .check_lines()
                .into_iter()
                .map(|(check, line)| (check.as_str().to_string(), line))
                .collect(),
            witness: proof.witness().iter().cloned().collect(),
            stats: proof.stats(),
        },
        admitted_at: humantime::format_rfc3339_seconds(at).to_string(),
        signer: key.key_ref(),
        acknowledge: acknowledge.map(str::to_string),
        manifest: manifest.map(hex::encode),
    };
    let canonical = statement.canonical_bytes();
    let bytes = seal(SIGNING_DOMAIN, &canonical, key);
    Ok(SignedBundle {
        statement,
        envelope: bytes,
        statement_digest: Sha256::digest(&canonical).into(),
    })
}

/// A bundle whose policy-authority signature has been verified against a trust store.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    statement: Statement,
    bundle: Bundle,
    statement_digest: [u8; 32],
    manifest: Option<[u8; 32]>,
}

/// 64 lowercase hex digits → 32 bytes.
fn parse_digest(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || text.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(text).ok()?.try_into().ok()
}

impl VerifiedBundle {
    /// Verifies an envelope file's bytes; `origin` (usually the path) is named in errors.
    pub fn verify(
        bytes: &[u8],
        origin: &str,
        trust: &TrustStore,
    ) -> Result<VerifiedBundle, PolicyError> {
        let malformed = |reason: String| PolicyError::Malformed {
            origin: origin.to_string(),
            reason,
        };
        let (payload, signer) = unseal(bytes, SIGNING_DOMAIN, "policy bundle", origin, trust)?;
        let statement: Statement = serde_json::from_slice(&payload)
            .map_err(|e| malformed(format!("signed statement does not decode: {e}")))?;
        if statement.canonical_bytes() != payload {
            return Err(malformed(
                "signed statement is not in canonical encoding".into(),
            ));
        }
        if statement.statement_type != STATEMENT_TYPE {
            return Err(malformed(format!(
                "statement type `{}` is not {STATEMENT_TYPE}",
                statement.statement_type
            )));
        }
        if statement.signer != signer {
            return Err(malformed(
                "the envelope's signer differs from the statement's".into(),
            ));
        }
        let bundle = Bundle::parse(
            &statement.canonical_text,
            &format!("{origin} (signed text)"),
        )?;
        if bundle.canonical_text() != statement.canonical_text
            || bundle.digest_hex() != statement.digest
            || bundle.name != statement.name
            || bundle.version != statement.version
            || bundle.succeeds != statement.succeeds
            || statement.version_id != version_id(&bundle.name, bundle.version, &statement.digest)
        {
            return Err(malformed(
                "signed statement does not match its canonical bundle text".into(),
            ));
        }
        let manifest = match &statement.manifest {
            None => None,
            Some(text) => Some(parse_digest(text).ok_or_else(|| {
                malformed(format!(
                    "manifest digest `{text}` is not 64 lowercase hex digits"
                ))
            })?),
        };
        Ok(VerifiedBundle {
            statement,
            bundle,
            statement_digest: Sha256::digest(&payload).into(),
            manifest,
        })
    }

    /// SHA-256 of the training manifest file this bundle was admitted against, if any. A
    /// runtime refuses the bundle for a model whose manifest has another digest
    /// ([`VerifiedBundle::require_manifest`]).
    pub fn manifest_digest(&self) -> Option<[u8; 32]> {
        self.manifest
    }

    /// Refuses this bundle unless it was admitted against the manifest whose file hashes to
    /// `manifest` (a bundle admitted without a manifest is refused too: its predicates were not
    /// checked against this model's training).
    pub fn require_manifest(&self, manifest: &[u8; 32]) -> Result<(), PolicyError> {
        let what = format!("bundle {}", self.statement.version_id);
        match self.manifest {
            Some(ours) if ours == *manifest => Ok(()),
            Some(ours) => Err(PolicyError::Manifest {
                what,
                reason: format!(
                    "it was admitted against manifest sha256:{}, but the model's manifest is sha256:{}: admit the bundle with --manifest for this model",
                    hex::encode(ours),
                    hex::encode(manifest)
                ),
            }),
            None => Err(PolicyError::Manifest {
                what,
                reason: format!(
                    "it was admitted without a manifest, but the model has one (sha256:{}): admit it with --manifest",
                    hex::encode(manifest)
                ),
            }),
        }
    }

    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    pub fn statement_digest_hex(&self) -> String {
        hex::encode(self.statement_digest)
    }
}

/// Checks that `candidate` may follow the admitted head version `head` of the same bundle name
/// (`None`: nothing admitted yet). Versions only go up, one line of history, no forks.
pub fn check_succession(candidate: &Bundle, head: Option<u64>) -> Result<(), PolicyError> {
    let refuse = |reason: String| PolicyError::Succession {
        name: candidate.name.clone(),
        version: candidate.version,
        reason,
    };
    match (head, candidate.succeeds) {
        (None, None) => Ok(()),
        (None, Some(s)) => Err(refuse(format!(
            "it succeeds version {s}, but no version of `{}` has been admitted",
            candidate.name
        ))),
        (Some(h), _) if candidate.version <= h => Err(refuse(format!(
            "version {} is not above the admitted version {h}",
            candidate.version
        ))),
        (Some(h), None) => Err(refuse(format!(
            "version {h} is admitted, so the successor must say `succeeds = {h}`"
        ))),
        (Some(h), Some(s)) if s != h => Err(refuse(format!(
            "it succeeds version {s}, but the admitted head is version {h}: that would fork the history"
        ))),
        (Some(_), Some(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{prove, Bound};

    const TEXT: &str = "[bundle]\nname = \"b\"\nversion = 2\nsucceeds = 1\n[vocabulary]\n\"output.tokens\" = { int = [0, 100] }\n[[predicate]]\nid = \"cap\"\ncategory = \"structural\"\nrequire = \"output.tokens <= 10\"\n";

    fn key(role: Role, name: &str) -> SigningKey {
        SigningKey::from_seed(role, name, &[7u8; 32]).unwrap()
    }

    fn signed() -> (SignedBundle, TrustStore) {
        let bundle = Bundle::parse(TEXT, "b.toml").unwrap();
        let proof = prove(&bundle, &Bound::default()).unwrap();
        let key = key(Role::PolicyAuthority, "policy");
        let signed = admit(&bundle, &proof, &key, SystemTime::UNIX_EPOCH, None).unwrap();
        let mut trust = TrustStore::new();
        trust.add(Role::PolicyAuthority, key.public().clone());
        (signed, trust)
    }

    #[test]
    fn signed_bundle_verifies_and_carries_the_proof() {
        let (signed, trust) = signed();
        let verified = VerifiedBundle::verify(signed.to_bytes(), "b.json", &trust).unwrap();
        let statement = verified.statement();
        assert_eq!(
            statement.version_id,
            format!("b@v2+{}", &statement.digest[..12])
        );
        assert_eq!(statement.admitted_at, "1970-01-01T00:00:00Z");
        assert_eq!(statement.proof.checks.len(), 3);
        let tokens = statement.proof.witness["output.tokens"].as_i64().unwrap();
        assert!(
            (0..=10).contains(&tokens),
            "witness {tokens} must satisfy `cap`"
        );
        assert_eq!(
            verified.statement_digest_hex(),
            signed.statement_digest_hex()
        );
    }

    #[test]
    fn a_changed_byte_of_the_payload_is_refused() {
        let (signed, trust) = signed();
        let mut envelope: Envelope = serde_json::from_slice(signed.to_bytes()).unwrap();
        let mut payload = BASE64.decode(&envelope.payload).unwrap();
        let text = String::from_utf8(payload.clone()).unwrap();
        let at = text.find("<= 10").unwrap() + 3;
        payload[at] = b'9';
        envelope.payload = BASE64.encode(&payload);
        let bytes = serde_json::to_vec(&envelope).unwrap();
        let err = VerifiedBundle::verify(&bytes, "b.json", &trust).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("b.json: signature check failed: bad signature by key policy+"),
            "{err}"
        );
    }

    #[test]
    fn untrusted_or_wrong_role_signers_are_refused() {
        let (signed, _) = signed();
        let mut trust = TrustStore::new();
        trust.add(
            Role::CorpusAuthority,
            key(Role::PolicyAuthority, "policy").public().clone(),
        );
        let err = VerifiedBundle::verify(signed.to_bytes(), "b.json", &trust).unwrap_err();
        assert!(
            err.to_string()
                .contains("is not trusted for role policy-authority"),
            "{err}"
        );
        let bundle = Bundle::parse(TEXT, "b.toml").unwrap();
        let proof = prove(&bundle, &Bound::default()).unwrap();
        let err = admit(
            &bundle,
            &proof,
            &key(Role::CorpusAuthority, "corpus"),
            SystemTime::UNIX_EPOCH,
            None,
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("has role corpus-authority, but bundles are signed by the policy-authority"));
    }

    #[test]
    fn unsigned_text_is_refused() {
        let (_, trust) = signed();
        let err = VerifiedBundle::verify(TEXT.as_bytes(), "b.toml", &trust).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("b.toml: not a signed policy bundle envelope"),
            "{err}"
        );
    }

    #[test]
    fn versions_are_monotonic_and_never_fork() {
        let parse = |version: u64, succeeds: Option<u64>| {
            let head = match succeeds {
                Some(s) => format!("version = {version}\nsucceeds = {s}"),
                None => format!("version = {version}"),
            };
            Bundle::parse(&TEXT.replace("version = 2\nsucceeds = 1", &head), "b.toml").unwrap()
        };
        assert!(check_succession(&parse(1, None), None).is_ok());
        assert!(check_succession(&parse(2, Some(1)), Some(1)).is_ok());
        let refused = |b: Bundle, head| check_succession(&b, head).unwrap_err().to_string();
        assert_eq!(refused(parse(2, Some(1)), None), "bundle `b` version 2 refused: it succeeds version 1, but no version of `b` has been admitted");
        assert_eq!(
            refused(parse(3, Some(2)), Some(3)),
            "bundle `b` version 3 refused: version 3 is not above the admitted version 3"
        );
        assert_eq!(
            refused(parse(2, Some(1)), Some(3)),
            "bundle `b` version 2 refused: version 2 is not above the admitted version 3"
        );
        assert_eq!(refused(parse(5, Some(3)), Some(4)), "bundle `b` version 5 refused: it succeeds version 3, but the admitted head is version 4: that would fork the history");
        assert_eq!(refused(parse(5, None), Some(4)), "bundle `b` version 5 refused: version 4 is admitted, so the successor must say `succeeds = 4`");
    }
}
