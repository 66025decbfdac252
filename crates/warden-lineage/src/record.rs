//! The record envelope, its canonical encoding (what is hashed and signed), and its JSON form.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use warden_keys::{KeyRef, Role, Signature, SigningKey};
use warden_merkle::{leaf_hash, Hash};

use crate::cbor::{self, CborError, Reader};

/// Version tag written first in every envelope; bumping it is a format change.
///
/// 2: payloads in RFC 8949 core deterministic CBOR (encoded-key map order, shortest floats).
/// Version 1 (text-order keys, binary64-only floats) is refused, not read: no released log uses it.
pub const ENVELOPE_VERSION: u64 = 2;

/// Domain separation for per-record signatures: `SIG_CONTEXT ‖ canonical body`.
pub const SIG_CONTEXT: &[u8] = b"warden/lineage-record/v1\n";

/// Record kinds are an open set of dotted names; these are the ones the spine itself writes.
pub mod kinds {
    /// A free-form note.
    pub const NOTE: &str = "note";
    /// A key event: a key was introduced or retired for a role.
    pub const KEY: &str = "key";
}

/// The role a kind must be signed under, by its dotted prefix; `None` means any trusted role.
///
/// This stops, say, a corpus-authority key from writing training records.
pub fn required_role(kind: &str) -> Option<Role> {
    let prefix = kind.split('.').next().unwrap_or(kind);
    match prefix {
        "corpus" => Some(Role::CorpusAuthority),
        "train" => Some(Role::TrainingAuthority),
        "policy" => Some(Role::PolicyAuthority),
        "deploy" | "call" | "serve" => Some(Role::DeploymentAuthority),
        _ => None,
    }
}

/// What a caller appends: the store fills in sequence, time, signer and chain.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordDraft {
    pub kind: String,
    pub policy_version: Option<String>,
    pub payload: Value,
}

impl RecordDraft {
    pub fn new(kind: impl Into<String>, payload: Value) -> RecordDraft {
        RecordDraft {
            kind: kind.into(),
            policy_version: None,
            payload,
        }
    }

    pub fn with_policy_version(mut self, version: impl Into<String>) -> RecordDraft {
        self.policy_version = Some(version.into());
        self
    }
}

/// One lineage record: the envelope fields and the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub kind: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub role: Role,
    pub signer: KeyRef,
    pub policy_version: Option<String>,
    /// The leaf hash of the previous record (all zeroes for record 0).
    pub prev: Hash,
    pub payload: Value,
}

/// Errors building or decoding records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("undecodable record: {0}")]
    Cbor(#[from] CborError),
    #[error(
        "undecodable record: envelope version {0} is not supported (this build reads version {current}; \
         version 1 predates RFC 8949 deterministic CBOR and such a log must be re-created)",
        current = ENVELOPE_VERSION
    )]
    Version(u64),
    #[error("undecodable record: field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("invalid record JSON: {0}")]
    Json(String),
}

impl Record {
    /// The canonical body: a CBOR array
    /// `[version, seq, kind, time_ms, role, signer name, signer id, policy version | null, prev, payload]`.
    pub fn encode_body(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::with_capacity(128);
        cbor::write_head(&mut out, 4, 10);
        cbor::write_head(&mut out, 0, ENVELOPE_VERSION);
        cbor::write_head(&mut out, 0, self.seq);
        cbor::write_text(&mut out, &self.kind);
        cbor::write_head(&mut out, 0, self.time_ms);
        cbor::write_text(&mut out, self.role.as_str());
        cbor::write_text(&mut out, &self.signer.name);
        cbor::write_text(&mut out, &self.signer.id);
        match &self.policy_version {
            Some(v) => cbor::write_text(&mut out, v),
            None => cbor::write_null(&mut out),
        }
        cbor::write_bytes(&mut out, &self.prev);
        cbor::write_value(&mut out, &self.payload)?;
        Ok(out)
    }

    /// Decodes a canonical body (strictly: any other encoding is refused).
    pub fn decode_body(body: &[u8]) -> Result<Record, RecordError> {
        let (view, payload_range) = EnvelopeView::parse(body)?;
        let mut reader = Reader::new(&body[payload_range]);
        let payload = reader.value()?;
        reader.finish()?;
        Ok(Record {
            seq: view.seq,
            kind: view.kind.to_string(),
            time_ms: view.time_ms,
            role: view.role,
            signer: KeyRef {
                name: view.signer_name.to_string(),
                id: view.signer_id.to_string(),
            },
            policy_version: view.policy_version.map(str::to_string),
            prev: view.prev,
            payload,
        })
    }
}

/// The envelope fields borrowed from a body without decoding the payload (verification's path).
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeView<'a> {
    pub seq: u64,
    pub kind: &'a str,
    pub time_ms: u64,
    pub role: Role,
    pub signer_name: &'a str,
    pub signer_id: &'a str,
    pub policy_version: Option<&'a str>,
    pub prev: Hash,
}

impl<'a> EnvelopeView<'a> {
    /// Parses the envelope and returns it with the byte range of the payload. The payload is
    /// not checked here; call [`EnvelopeView::check`] for the full strict check.
    pub fn parse(
        body: &'a [u8],
    ) -> Result<(EnvelopeView<'a>, std::ops::Range<usize>), RecordError> {
        let mut r = Reader::new(body);
        let n = r.array_len()?;
        if n != 10 {
            return Err(RecordError::Field {
                field: "envelope",
                reason: format!("expected 10 fields, found {n}"),
            });
        }
        let version = r.u64()?;
        if version != ENVELOPE_VERSION {
            return Err(RecordError::Version(version));
        }
        let seq = r.u64()?;
        let kind = r.text()?;
        let time_ms = r.u64()?;
        let role_text = r.text()?;
        let role: Role = role_text.parse().map_err(|_| RecordError::Field {
            field: "role",
            reason: format!("unknown role `{role_text}`"),
        })?;
        let signer_name = r.text()?;
        let signer_id = r.text()?;
        check_signer_fields(signer_name, signer_id)?;
        let policy_version = r.optional_text()?;
        let prev_bytes = r.bytes()?;
        let prev: Hash = prev_bytes.try_into().map_err(|_| RecordError::Field {
            field: "prev",
            reason: format!("expected 32 bytes, found {}", prev_bytes.len()),
        })?;
        let start = r.position();
        Ok((
            EnvelopeView {
                seq,
                kind,
                time_ms,
                role,
                signer_name,
                signer_id,
                policy_version,
                prev,
            },
            start..body.len(),
        ))
    }

    /// Parses the envelope and checks the payload is canonical, without building it.
    pub fn check(body: &'a [u8]) -> Result<EnvelopeView<'a>, RecordError> {
        let (view, payload) = EnvelopeView::parse(body)?;
        let mut reader = Reader::new(&body[payload]);
        reader.skip_value()?;
        reader.finish()?;
        Ok(view)
    }

    pub fn signer(&self) -> KeyRef {
        KeyRef {
            name: self.signer_name.to_string(),
            id: self.signer_id.to_string(),
        }
    }
}

/// A record as stored: canonical body bytes plus an optional per-record signature.
///
/// The body bytes are kept as read, so the bytes that were signed are the bytes that are verified.
#[derive(Clone, PartialEq)]
pub struct SignedRecord {
    pub record: Record,
    pub body: Vec<u8>,
    pub signature: Option<Signature>,
}

impl fmt::Debug for SignedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SignedRecord(#{} {} by {})",
            self.record.seq, self.record.kind, self.record.signer
        )
    }
}

impl SignedRecord {
    /// Builds a record's body and, when `sign` is set, signs it with `key`.
    pub fn seal(record: Record, key: &SigningKey, sign: bool) -> Result<SignedRecord, RecordError> {
        let body = record.encode_body()?;
        let signature = sign.then(|| key.sign(&signing_message(&body)));
        Ok(SignedRecord {
            record,
            body,
            signature,
        })
    }

    /// The RFC 6962 leaf hash of the body: the Merkle leaf and the next record's `prev`.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.body)
    }

    /// The compact binary form: CBOR array `[body (bstr), signature (bstr 64) | null]`.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 80);
        encode_entry(&mut out, &self.body, self.signature.as_ref());
        out
    }

    /// Decodes the compact binary form strictly.
    pub fn from_cbor(bytes: &[u8]) -> Result<SignedRecord, RecordError> {
        let (body, signature) = decode_entry(bytes)?;
        Ok(SignedRecord {
            record: Record::decode_body(body)?,
            body: body.to_vec(),
            signature,
        })
    }

    /// The verbose audit form. Decoding it re-encodes the body canonically, so a JSON record
    /// verifies against the same signature as its CBOR twin.
    pub fn to_json(&self) -> Value {
        let r = &self.record;
        json!({
            "seq": r.seq,
            "kind": r.kind,
            "time": rfc3339(r.time_ms),
            "time_ms": r.time_ms,
            "role": r.role.as_str(),
            "signer": r.signer.to_string(),
            "policy_version": r.policy_version,
            "prev": hex::encode(r.prev),
            "payload": r.payload,
            "leaf_hash": hex::encode(self.leaf_hash()),
            "signature": self.signature.map(|s| BASE64.encode(s.0)),
        })
    }

    pub fn from_json(value: &Value) -> Result<SignedRecord, RecordError> {
        let obj = value
            .as_object()
            .ok_or_else(|| RecordError::Json("a record must be a JSON object".into()))?;
        let field = |name: &'static str| {
            obj.get(name)
                .ok_or_else(|| RecordError::Json(format!("missing field `{name}`")))
        };
        let text = |name: &'static str| -> Result<&str, RecordError> {
            field(name)?
                .as_str()
                .ok_or_else(|| RecordError::Json(format!("field `{name}` must be a string")))
        };
        let uint = |name: &'static str| -> Result<u64, RecordError> {
            field(name)?.as_u64().ok_or_else(|| {
                RecordError::Json(format!("field `{name}` must be an unsigned integer"))
            })
        };
        let role: Role = text("role")?
            .parse()
            .map_err(|e: warden_keys::KeyError| RecordError::Json(e.to_string()))?;
        let signer_text = text("signer")?;
        let (name, id) = signer_text
            .rsplit_once('+')
            .ok_or_else(|| RecordError::Json(format!("signer `{signer_text}` is not name+id")))?;
        check_signer_fields(name, id)?;
        let prev_hex = text("prev")?;
        let prev: Hash = hex::decode(prev_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| RecordError::Json("field `prev` must be 64 hex digits".into()))?;
        let policy_version = match field("policy_version")? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => {
                return Err(RecordError::Json(
                    "field `policy_version` must be a string or null".into(),
                ))
            }
        };
        let record = Record {
            seq: uint("seq")?,
            kind: text("kind")?.to_string(),
            time_ms: uint("time_ms")?,
            role,
            signer: KeyRef {
                name: name.to_string(),
                id: id.to_string(),
            },
            policy_version,
            prev,
            payload: field("payload")?.clone(),
        };
        let signature = match obj.get("signature") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                BASE64
                    .decode(s)
                    .ok()
                    .and_then(|b| Signature::from_slice(&b))
                    .ok_or_else(|| {
                        RecordError::Json(
                            "field `signature` is not a base64 Ed25519 signature".into(),
                        )
                    })?,
            ),
            Some(_) => {
                return Err(RecordError::Json(
                    "field `signature` must be a string or null".into(),
                ))
            }
        };
        let body = record.encode_body()?;
        let signed = SignedRecord {
            record,
            body,
            signature,
        };
        // Derived fields, if present, must agree: a mismatch means the JSON was edited.
        if let Some(Value::String(h)) = obj.get("leaf_hash") {
            if *h != hex::encode(signed.leaf_hash()) {
                return Err(RecordError::Json(format!(
                    "record {}: `leaf_hash` does not match the record's content",
                    signed.record.seq
                )));
            }
        }
        Ok(signed)
    }
}

/// RFC 3339 rendering of a record time, for humans only (decoding reads `time_ms`). Times past
/// year 9999 cannot be written in RFC 3339 and render as `null` instead of failing.
pub fn rfc3339(time_ms: u64) -> Option<String> {
    const MAX_RFC3339_MS: u64 = 253_402_300_799_999;
    (time_ms <= MAX_RFC3339_MS).then(|| {
        humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(time_ms),
        )
        .to_string()
    })
}

/// The message a per-record signature covers.
pub fn signing_message(body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIG_CONTEXT.len() + body.len());
    msg.extend_from_slice(SIG_CONTEXT);
    msg.extend_from_slice(body);
    msg
}

/// Writes an entry `[body, signature | null]` without copying the body twice.
pub fn encode_entry(out: &mut Vec<u8>, body: &[u8], signature: Option<&Signature>) {
    cbor::write_head(out, 4, 2);
    cbor::write_bytes(out, body);
    match signature {
        Some(sig) => cbor::write_bytes(out, &sig.0),
        None => cbor::write_null(out),
    }
}

/// The signer is a key name and the key id as keys write it (8 lowercase hex digits). The JSON
/// form and key lookups join them as `name+id`: a `+` in either, or another spelling of the id,
/// would decode to a different record (found by fuzzing). Both decoders (CBOR and JSON) apply
/// this one rule, so a record one accepts the other accepts too.
fn check_signer_fields(signer_name: &str, signer_id: &str) -> Result<(), RecordError> {
    if signer_name.is_empty()
        || signer_name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
    {
        return Err(RecordError::Field {
            field: "signer name",
            reason: format!("`{signer_name}` is not a key name"),
        });
    }
    if signer_id.len() != 8
        || !signer_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(RecordError::Field {
            field: "signer id",
            reason: format!("`{signer_id}` is not 8 lowercase hex digits"),
        });
    }
    Ok(())
}

/// Splits an entry into its body bytes and signature.
pub fn decode_entry(bytes: &[u8]) -> Result<(&[u8], Option<Signature>), RecordError> {
    let mut r = Reader::new(bytes);
    let n = r.array_len()?;
    if n != 2 {
        return Err(RecordError::Field {
            field: "entry",
            reason: format!("expected [body, signature], found {n} items"),
        });
    }
    let body = r.bytes()?;
    let signature = match r.optional_bytes()? {
        None => None,
        Some(raw) => Some(
            Signature::from_slice(raw).ok_or_else(|| RecordError::Field {
                field: "signature",
                reason: format!("expected 64 bytes, found {}", raw.len()),
            })?,
        ),
    };
    r.finish()?;
    Ok((body, signature))
}

/// A payload must stay inside the JSON data model with finite numbers; check before appending.
pub fn check_payload(payload: &Value) -> Result<(), RecordError> {
    let mut sink = Vec::new();
    cbor::write_value(&mut sink, payload)?;
    Ok(())
}

/// Builds a JSON object payload from pairs (a small convenience for notes and tests).
pub fn payload_of(pairs: &[(&str, Value)]) -> Value {
    let mut map = Map::new();
    for (k, v) in pairs {
        map.insert((*k).to_string(), v.clone());
    }
    Value::Object(map)
}
