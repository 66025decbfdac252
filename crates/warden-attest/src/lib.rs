//! in-toto Statement v1 inside a DSSE envelope, signed and verified with Warden authority keys.
//!
//! The envelope follows the DSSE protocol (<https://github.com/secure-systems-lab/dsse>): the
//! signature covers `PAE(payloadType, payload)`, never the JSON around it, so the bytes that were
//! signed are exactly the base64-decoded `payload` that a verifier reads back. Verification always
//! goes through [`TrustStore::verify`] with the role the caller expects, so a key that is merely
//! *known* but not trusted for that role is refused.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use warden_keys::{KeyRef, Role, Signature, SigningKey, TrustStore};

/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE_V1: &str = "https://in-toto.io/Statement/v1";

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("envelope is not valid dsse json: {0}")]
    EnvelopeJson(String),
    #[error("envelope payload is not valid base64: {0}")]
    PayloadBase64(String),
    #[error("envelope payload type is {found:?}, expected {expected:?}")]
    PayloadType { found: String, expected: String },
    #[error("envelope has no signature")]
    Unsigned,
    #[error("signature {index} has a malformed keyid {keyid:?} (expected name+id)")]
    KeyId { index: usize, keyid: String },
    #[error("signature {index} by {keyid} is not valid base64 or not 64 bytes")]
    SignatureEncoding { index: usize, keyid: String },
    #[error("signature {index} by {keyid} does not verify as {role}: {reason}")]
    BadSignature {
        index: usize,
        keyid: String,
        role: Role,
        reason: String,
    },
    #[error("payload is not an in-toto statement: {0}")]
    StatementJson(String),
    #[error("statement _type is {0:?}, expected {STATEMENT_TYPE_V1:?}")]
    StatementType(String),
    #[error("statement has no subject")]
    NoSubject,
}

/// DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// An artifact the statement is about: a name and its digests (`{"sha256": "<hex>"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// A subject identified by the SHA-256 of its bytes.
    pub fn sha256(name: impl Into<String>, digest: &[u8; 32]) -> Subject {
        let mut map = BTreeMap::new();
        map.insert("sha256".to_string(), hex::encode(digest));
        Subject {
            name: name.into(),
            digest: map,
        }
    }
}

/// An in-toto Statement v1 (<https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: serde_json::Value,
}

impl Statement {
    pub fn new(
        subject: Vec<Subject>,
        predicate_type: impl Into<String>,
        predicate: serde_json::Value,
    ) -> Statement {
        Statement {
            statement_type: STATEMENT_TYPE_V1.to_string(),
            subject,
            predicate_type: predicate_type.into(),
            predicate,
        }
    }

    /// The one canonical encoding of a statement: serde_json with struct fields in declaration
    /// order and object keys sorted (serde_json's default map is ordered).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// One DSSE signature: `keyid` is the Warden key reference `name+id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    pub keyid: String,
    pub sig: String,
}

/// A DSSE envelope in its standard JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

impl Envelope {
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Envelope, AttestError> {
        serde_json::from_str(text).map_err(|e| AttestError::EnvelopeJson(e.to_string()))
    }
}

/// A statement whose envelope verified against the trust store for the expected role.
#[derive(Debug, Clone)]
pub struct VerifiedStatement {
    pub statement: Statement,
    pub signer: KeyRef,
}

/// Signs `statement` as a DSSE envelope with `key`.
pub fn sign_statement(statement: &Statement, key: &SigningKey) -> Envelope {
    let payload = statement.to_canonical_json();
    let signature = key.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &payload));
    Envelope {
        payload: BASE64.encode(&payload),
        payload_type: IN_TOTO_PAYLOAD_TYPE.to_string(),
        signatures: vec![EnvelopeSignature {
            keyid: key.key_ref().to_string(),
            sig: BASE64.encode(signature.0),
        }],
    }
}

fn parse_key_ref(keyid: &str) -> Option<KeyRef> {
    let (name, id) = keyid.rsplit_once('+')?;
    if name.is_empty() || id.is_empty() {
        return None;
    }
    Some(KeyRef {
        name: name.to_string(),
        id: id.to_string(),
    })
}

/// Verifies an envelope: every signature must verify for `role` under `trust` (at least one
/// signature is required), then the payload must be an in-toto Statement v1.
pub fn verify_envelope(
    envelope: &Envelope,
    trust: &TrustStore,
    role: Role,
) -> Result<VerifiedStatement, AttestError> {
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(AttestError::PayloadType {
            found: envelope.payload_type.clone(),
            expected: IN_TOTO_PAYLOAD_TYPE.to_string(),
        });
    }
    let payload = BASE64
        .decode(envelope.payload.as_bytes())
        .map_err(|e| AttestError::PayloadBase64(e.to_string()))?;
    let message = pae(&envelope.payload_type, &payload);
    let mut signer = None;
    for (index, entry) in envelope.signatures.iter().enumerate() {
        let key_ref = parse_key_ref(&entry.keyid).ok_or_else(|| AttestError::KeyId {
            index,
            keyid: entry.keyid.clone(),
        })?;
        let signature = BASE64
            .decode(entry.sig.as_bytes())
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes))
            .ok_or_else(|| AttestError::SignatureEncoding {
                index,
                keyid: entry.keyid.clone(),
            })?;
        trust
            .verify(&key_ref, role, &message, &signature)
            .map_err(|e| AttestError::BadSignature {
                index,
                keyid: entry.keyid.clone(),
                role,
                reason: e.to_string(),
            })?;
        signer.get_or_insert(key_ref);
    }
    let signer = signer.ok_or(AttestError::Unsigned)?;
    let statement: Statement =
        serde_json::from_slice(&payload).map_err(|e| AttestError::StatementJson(e.to_string()))?;
    if statement.statement_type != STATEMENT_TYPE_V1 {
        return Err(AttestError::StatementType(statement.statement_type));
    }
    if statement.subject.is_empty() {
        return Err(AttestError::NoSubject);
    }
    Ok(VerifiedStatement { statement, signer })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answer from the DSSE protocol spec ("Test vector" in protocol.md).
    #[test]
    fn pae_matches_the_dsse_spec_vector() {
        let encoded = pae("http://example.com/HelloWorld", b"hello world");
        assert_eq!(
            encoded,
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    fn fixture() -> (SigningKey, TrustStore, Statement) {
        let key = SigningKey::from_seed(Role::TrainingAuthority, "trainer", &[7u8; 32])
            .expect("fixed test key");
        let mut trust = TrustStore::new();
        trust.add(Role::TrainingAuthority, key.public().clone());
        let statement = Statement::new(
            vec![Subject::sha256("model.safetensors", &[1u8; 32])],
            "https://warden.dev/training-manifest/v1",
            serde_json::json!({"policy_versions": ["v1"], "steps": 3}),
        );
        (key, trust, statement)
    }

    #[test]
    fn signed_statement_round_trips_through_json_and_verifies() {
        let (key, trust, statement) = fixture();
        let envelope = sign_statement(&statement, &key);
        let parsed = Envelope::from_json(&envelope.to_json_pretty()).expect("own json parses");
        let verified = verify_envelope(&parsed, &trust, Role::TrainingAuthority).expect("verifies");
        assert_eq!(verified.statement, statement);
        assert_eq!(verified.signer, key.key_ref());
    }

    #[test]
    fn tampered_payload_and_wrong_role_are_refused() {
        let (key, trust, statement) = fixture();
        let mut envelope = sign_statement(&statement, &key);
        assert!(matches!(
            verify_envelope(&envelope, &trust, Role::CorpusAuthority),
            Err(AttestError::BadSignature { index: 0, .. })
        ));
        let mut tampered = statement.clone();
        tampered.predicate = serde_json::json!({"policy_versions": ["v2"], "steps": 3});
        envelope.payload = BASE64.encode(tampered.to_canonical_json());
        let err = verify_envelope(&envelope, &trust, Role::TrainingAuthority).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn unsigned_and_untrusted_envelopes_are_refused() {
        let (key, trust, statement) = fixture();
        let mut envelope = sign_statement(&statement, &key);
        envelope.signatures.clear();
        assert!(matches!(
            verify_envelope(&envelope, &trust, Role::TrainingAuthority),
            Err(AttestError::Unsigned)
        ));
        let stranger = SigningKey::from_seed(Role::TrainingAuthority, "stranger", &[9u8; 32])
            .expect("fixed test key");
        let foreign = sign_statement(&statement, &stranger);
        assert!(verify_envelope(&foreign, &trust, Role::TrainingAuthority).is_err());
    }
}
