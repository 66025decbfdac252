//! Property tests: the JSON and CBOR forms of any record decode to the same record, re-encode
//! to the same canonical body, and verify against the same signature.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::{signing_message, Record, SignedRecord};

fn payload() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn record() -> impl Strategy<Value = (Record, bool)> {
    (
        any::<u64>(),
        "[a-z]{1,8}(\\.[a-z]{1,8})?",
        any::<u64>(),
        prop::option::of("[0-9a-z.-]{1,10}"),
        any::<[u8; 32]>(),
        payload(),
        any::<bool>(),
    )
        .prop_map(
            |(seq, kind, time_ms, policy_version, prev, payload, signed)| {
                let key = signer();
                (
                    Record {
                        seq,
                        kind,
                        time_ms,
                        role: key.role(),
                        signer: key.key_ref(),
                        policy_version,
                        prev,
                        payload,
                    },
                    signed,
                )
            },
        )
}

fn signer() -> SigningKey {
    SigningKey::from_seed(Role::PolicyAuthority, "policy", &[3; 32]).unwrap()
}

fn trust() -> TrustStore {
    let mut trust = TrustStore::new();
    trust.add(Role::PolicyAuthority, signer().public().clone());
    trust
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn json_and_cbor_forms_decode_to_the_same_record((record, signed) in record()) {
        let key = signer();
        let sealed = SignedRecord::seal(record.clone(), &key, signed).unwrap();

        let from_cbor = SignedRecord::from_cbor(&sealed.to_cbor()).unwrap();
        let json_text = serde_json::to_string(&sealed.to_json()).unwrap();
        let from_json = SignedRecord::from_json(&serde_json::from_str(&json_text).unwrap()).unwrap();

        prop_assert_eq!(&from_cbor.record, &record);
        prop_assert_eq!(&from_json.record, &record);
        prop_assert_eq!(&from_json.body, &sealed.body);
        prop_assert_eq!(&from_cbor.body, &sealed.body);
        prop_assert_eq!(from_json.to_cbor(), sealed.to_cbor());
        if let Some(sig) = from_json.signature {
            trust()
                .verify(&key.key_ref(), Role::PolicyAuthority, &signing_message(&from_json.body), &sig)
                .unwrap();
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = SignedRecord::from_cbor(&bytes);
        let _ = Record::decode_body(&bytes);
    }
}

#[test]
fn an_edited_json_record_no_longer_verifies() {
    let key = signer();
    let record = Record {
        seq: 7,
        kind: "note".into(),
        time_ms: 1,
        role: key.role(),
        signer: key.key_ref(),
        policy_version: None,
        prev: [0; 32],
        payload: serde_json::json!({"text": "hello"}),
    };
    let sealed = SignedRecord::seal(record, &key, true).unwrap();
    let mut json = sealed.to_json();
    json["payload"]["text"] = "hullo".into();
    json.as_object_mut().unwrap().remove("leaf_hash");
    let edited = SignedRecord::from_json(&json).unwrap();
    let sig = edited.signature.unwrap();
    assert!(trust()
        .verify(
            &key.key_ref(),
            Role::PolicyAuthority,
            &signing_message(&edited.body),
            &sig
        )
        .is_err());
}

/// Regression (fuzz target `lineage_entry`): a body whose signer id held a `+` decoded, and its
/// JSON form `name+5c1+467d` then decoded to another signer, so the JSON twin of a stored record
/// failed its leaf-hash check. The decoder now refuses signer names and ids that no key has.
#[test]
fn a_signer_that_no_key_can_have_is_refused_by_the_decoder() {
    let key = signer();
    let good = Record {
        seq: 0,
        kind: "key".into(),
        time_ms: 1,
        role: Role::CorpusAuthority,
        signer: key.key_ref(),
        policy_version: None,
        prev: [0; 32],
        payload: serde_json::json!({"event": "introduced"}),
    };
    assert!(Record::decode_body(&good.encode_body().unwrap()).is_ok());
    let cases = [
        ("demo.corpus-authority", "5c1+467d", "signer id"),
        ("demo.corpus-authority", "5C13467D", "signer id"),
        ("demo.corpus-authority", "+5c1346", "signer id"),
        ("demo+corpus", "5c13467d", "signer name"),
        ("", "5c13467d", "signer name"),
    ];
    for (name, id, field) in cases {
        let mut bad = good.clone();
        bad.signer.name = name.into();
        bad.signer.id = id.into();
        let err = Record::decode_body(&bad.encode_body().unwrap())
            .expect_err("a signer no key can have must be refused");
        let message = err.to_string();
        assert!(
            message.contains(field)
                && message.contains(if field == "signer id" { id } else { name }),
            "{name}+{id}: {message}"
        );
    }
}

/// Regression (found by fuzzing `lineage_json`): the JSON decoder accepted a signer name with a
/// `+` (`"signer": "demo.training-a+uthority+xxxxxxxx"` splits at the last `+`), so a JSON
/// record decoded to a body the strict CBOR decoder refuses. Both decoders apply one rule now.
#[test]
fn the_json_decoder_refuses_every_signer_the_cbor_decoder_refuses() {
    let key = signer();
    let good = Record {
        seq: 0,
        kind: "key".into(),
        time_ms: 1,
        role: Role::CorpusAuthority,
        signer: key.key_ref(),
        policy_version: None,
        prev: [0; 32],
        payload: serde_json::json!({"event": "introduced"}),
    };
    let json = SignedRecord::seal(good, &key, true).unwrap().to_json();
    assert!(SignedRecord::from_json(&json).is_ok());
    for signer in [
        "demo.training-a+uthority+5c13467d",
        "demo.corpus-authority+5C13467D",
        "demo.corpus-authority+5c1346",
        "+5c13467d",
    ] {
        let mut bad = json.clone();
        bad["signer"] = serde_json::Value::String(signer.into());
        // As in the fuzzer's input: without `leaf_hash` nothing else catches the signer.
        bad.as_object_mut().unwrap().remove("leaf_hash");
        let err = SignedRecord::from_json(&bad)
            .expect_err("a signer the CBOR decoder refuses must be refused from JSON too");
        assert!(err.to_string().contains("signer"), "{signer}: {err}");
    }
}
