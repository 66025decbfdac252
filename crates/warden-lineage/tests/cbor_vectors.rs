//! The canonical encoding against an outside encoder: every byte string in `tests/data/` was
//! written by Python `cbor2` (canonical mode, RFC 8949 §4.2.1), never by Warden
//! (`tests/data/gen_cbor_vectors.py` makes them and says how to re-run it).

use proptest::prelude::*;
use serde_json::{Number, Value};
use warden_keys::{Role, SigningKey};
use warden_lineage::cbor::{self, CborError, Reader};
use warden_lineage::{EnvelopeView, Record, RecordError, SignedRecord};

fn data(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn entries<'a>(doc: &'a Value, field: &str) -> &'a [Value] {
    doc[field].as_array().unwrap()
}

fn hex_of(entry: &Value, field: &str) -> Vec<u8> {
    hex::decode(entry[field].as_str().unwrap()).unwrap()
}

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    cbor::write_value(&mut out, value).unwrap();
    out
}

/// The strict decoder over a whole byte string: one value, nothing after it.
fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let mut reader = Reader::new(bytes);
    let value = reader.value()?;
    reader.finish()?;
    Ok(value)
}

/// The verifier's path (checks without building) over a whole byte string.
fn check(bytes: &[u8]) -> Result<(), CborError> {
    let mut reader = Reader::new(bytes);
    reader.skip_value()?;
    reader.finish()
}

/// `Value` equality plus float sign: `-0.0 == 0.0` for `f64`, not for CBOR.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn our_encoder_writes_exactly_what_cbor2_canonical_writes() {
    let doc = data("cbor_vectors.json");
    let vectors = entries(&doc, "vectors");
    assert!(vectors.len() >= 90, "only {} vectors", vectors.len());
    for vector in vectors {
        let name = vector["name"].as_str().unwrap();
        let expected = hex_of(vector, "hex");
        let value = &vector["value"];
        assert_eq!(
            hex::encode(encode(value)),
            hex::encode(&expected),
            "vector `{name}`"
        );
        let decoded = decode(&expected).unwrap_or_else(|e| panic!("vector `{name}`: {e}"));
        assert!(
            same(&decoded, value),
            "vector `{name}` decoded to {decoded}"
        );
        check(&expected).unwrap_or_else(|e| panic!("vector `{name}`: {e}"));
    }
}

#[test]
fn every_other_encoding_of_the_same_value_is_refused_where_it_differs() {
    let doc = data("cbor_vectors.json");
    let cases = entries(&doc, "non_canonical");
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let bytes = hex_of(case, "hex");
        let at = case["at"].as_u64().unwrap() as usize;
        // The generator checked with cbor2 that these bytes decode to `value`; ours refuse
        // them, naming the offending item's byte, and accept the canonical twin.
        for result in [decode(&bytes).map(drop), check(&bytes)] {
            match result {
                Err(CborError::NonCanonical(pos, _)) => assert_eq!(pos, at, "case `{name}`"),
                other => panic!("case `{name}` ({}): {other:?}", hex::encode(&bytes)),
            }
        }
        let twin = hex_of(case, "canonical_hex");
        assert_eq!(encode(&case["value"]), twin, "case `{name}`");
        assert!(
            same(&decode(&twin).unwrap(), &case["value"]),
            "case `{name}`"
        );
    }
}

#[test]
fn items_outside_the_json_model_are_refused() {
    let doc = data("cbor_vectors.json");
    let cases = entries(&doc, "refused");
    assert!(cases.len() >= 15, "only {} cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let bytes = hex_of(case, "hex");
        assert!(decode(&bytes).is_err(), "case `{name}` decoded");
        assert!(check(&bytes).is_err(), "case `{name}` passed the check");
    }
}

#[test]
fn non_finite_floats_are_refused_by_name() {
    for bytes in [
        &[0xf9, 0x7e, 0x00][..],
        &[0xf9, 0x7c, 0x00],
        &[0xfa, 0xff, 0x80, 0x00, 0x00],
        &[0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0],
    ] {
        assert_eq!(decode(bytes), Err(CborError::NonFinite), "{bytes:02x?}");
        assert_eq!(check(bytes), Err(CborError::NonFinite), "{bytes:02x?}");
    }
}

#[test]
fn demo_record_bodies_are_the_bytes_cbor2_writes() {
    let input = data("demo_records_in.json");
    let output = data("demo_records.json");
    let records = entries(&input, "records");
    let bodies = entries(&output, "records");
    assert_eq!(records.len(), bodies.len());
    assert!(records.len() >= 20, "only {} demo records", records.len());
    let mut kinds = std::collections::BTreeSet::new();
    for (json, expected) in records.iter().zip(bodies) {
        let seq = json["seq"].as_u64().unwrap();
        assert_eq!(expected["seq"].as_u64(), Some(seq));
        let body = hex_of(expected, "body_hex");
        // `from_json` re-encodes the body with our encoder and checks it against the leaf hash
        // that the generator computed over cbor2's bytes.
        let mut json = json.clone();
        json["leaf_hash"] = expected["leaf_hash"].clone();
        json["signature"] = Value::Null;
        let record = SignedRecord::from_json(&json).unwrap_or_else(|e| panic!("record {seq}: {e}"));
        assert_eq!(
            hex::encode(&record.body),
            hex::encode(&body),
            "record {seq}"
        );
        let decoded = Record::decode_body(&body).unwrap_or_else(|e| panic!("record {seq}: {e}"));
        assert_eq!(decoded, record.record, "record {seq}");
        EnvelopeView::check(&body).unwrap_or_else(|e| panic!("record {seq}: {e}"));
        kinds.insert(record.record.kind.clone());
    }
    assert!(kinds.len() >= 8, "demo kinds covered: {kinds:?}");
}

#[test]
fn an_envelope_version_1_record_is_refused_with_a_clear_message() {
    let output = data("demo_records.json");
    let mut body = hex_of(&entries(&output, "records")[0], "body_hex");
    assert_eq!(&body[..2], &[0x8a, 0x02], "array of 10, version 2");
    body[1] = 0x01;
    let err = Record::decode_body(&body).unwrap_err();
    assert_eq!(err, RecordError::Version(1));
    let message = err.to_string();
    assert!(
        message.contains("envelope version 1")
            && message.contains("reads version 2")
            && message.contains("re-created"),
        "{message}"
    );
    assert!(EnvelopeView::check(&body).is_err());
}

fn payload() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        // Floats of every width: short mantissas land in binary16 or binary32.
        (any::<i16>(), -30i32..30)
            .prop_map(|(m, e)| Value::Number(Number::from_f64(m as f64 * 2f64.powi(e)).unwrap())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        "[a-c]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]{0,3}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// "Decodes" means "re-encodes identically": flip any byte of a canonical encoding; if the
    /// result still decodes, it is the canonical encoding of what it decodes to.
    #[test]
    fn a_mutated_encoding_that_decodes_is_canonical(
        value in payload(),
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = encode(&value);
        prop_assert!(same(&decode(&bytes).unwrap(), &value));
        let at = index.index(bytes.len());
        bytes[at] = byte;
        let decoded = decode(&bytes);
        prop_assert_eq!(decoded.is_ok(), check(&bytes).is_ok());
        if let Ok(decoded) = decoded {
            prop_assert_eq!(encode(&decoded), bytes);
        }
    }

    /// Encoded bodies of signed records decode to the same record whatever the payload.
    #[test]
    fn records_round_trip_with_any_payload(payload in payload(), seq in any::<u64>()) {
        let key = SigningKey::from_seed(Role::TrainingAuthority, "train", &[9; 32]).unwrap();
        let record = Record {
            seq,
            kind: "train.iteration".into(),
            time_ms: 1_700_000_000_000,
            role: key.role(),
            signer: key.key_ref(),
            policy_version: Some("train-v2".into()),
            prev: [7; 32],
            payload,
        };
        let sealed = SignedRecord::seal(record.clone(), &key, true).unwrap();
        let back = SignedRecord::from_cbor(&sealed.to_cbor()).unwrap();
        prop_assert_eq!(back.body, sealed.body);
        prop_assert_eq!(back.record, record);
    }
}
