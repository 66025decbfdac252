//! Known-answer tests from the Go `sumdb/note` and C2SP signed-note / tlog-checkpoint suites.
//!
//! `tests/data/signed_note_vectors.json` reproduces their keys, texts and signatures as data
//! (made and independently checked by `tests/data/gen_note_vectors.py`, which says where each
//! comes from). Warden must parse the keys they parse and refuse every mangling they refuse,
//! sign byte-for-byte as they do, and reach the same verdict on every checkpoint note, except
//! for the few cases the data file lists as divergences, each with its reason.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;
use warden_keys::{KeyRef, PublicKey, Role, Signature, SigningKey, TrustStore};
use warden_lineage::{Checkpoint, CheckpointFault, SignedCheckpoint};

fn vectors() -> Value {
    let path = format!(
        "{}/tests/data/signed_note_vectors.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn list<'a>(doc: &'a Value, field: &str) -> &'a [Value] {
    doc[field].as_array().unwrap()
}

fn text<'a>(entry: &'a Value, field: &str) -> &'a str {
    entry[field].as_str().unwrap()
}

/// A signer key string inside Warden's private key file (TOML with a role).
fn key_file(skey: &str) -> String {
    format!("role = \"corpus-authority\"\nsigner = \"{skey}\"\n")
}

/// Go's TestNewVerifier / TestNewSigner manglings: every proper substring, and every string
/// with one byte incremented.
fn manglings(key: &str) -> Vec<String> {
    let bytes = key.as_bytes();
    let mut out = Vec::new();
    for i in 0..=bytes.len() {
        for j in i + 1..=bytes.len() {
            if i != 0 || j != bytes.len() {
                out.extend(String::from_utf8(bytes[i..j].to_vec()).ok());
            }
        }
    }
    for i in 0..bytes.len() {
        let mut b = bytes.to_vec();
        b[i] = b[i].wrapping_add(1);
        out.extend(String::from_utf8(b).ok());
    }
    out
}

/// Splits a signature line `— name base64(id ‖ sig)\n` into the key it names and the signature.
fn signature_line(line: &str) -> (KeyRef, Signature) {
    let rest = line
        .strip_prefix("\u{2014} ")
        .and_then(|l| l.strip_suffix('\n'))
        .unwrap();
    let (name, blob) = rest.split_once(' ').unwrap();
    let raw = BASE64.decode(blob).unwrap();
    let key = KeyRef {
        name: name.to_string(),
        id: hex::encode(&raw[..4]),
    };
    (key, Signature::from_slice(&raw[4..]).unwrap())
}

/// The trust store a case names: each key trusted for one role.
const ROLE: Role = Role::CorpusAuthority;

fn trust(vkeys: &[Value]) -> TrustStore {
    let mut trust = TrustStore::new();
    for vkey in vkeys {
        trust.add(
            ROLE,
            PublicKey::parse_verifier(vkey.as_str().unwrap()).unwrap(),
        );
    }
    trust
}

/// Warden's checkpoint verification: strict parse, then every signature line through the
/// trust store. (The one call into the verifier, so an API change is adapted here.)
fn verify_note(note: &str, trust: &TrustStore) -> Result<(SignedCheckpoint, Vec<KeyRef>), String> {
    let parsed = SignedCheckpoint::parse(note).map_err(|e| e.to_string())?;
    let signers = parsed
        .verify_signatures(trust, &BTreeSet::from([ROLE]))
        .map_err(|e: CheckpointFault| e.to_string())?;
    Ok((parsed, signers))
}

#[test]
fn go_and_c2sp_verifier_keys_parse_with_their_names_and_ids() {
    let doc = vectors();
    let keys = list(&doc, "verifier_keys");
    assert_eq!(keys.len(), 4);
    for entry in keys {
        let vkey = text(entry, "vkey");
        let key = PublicKey::parse_verifier(vkey).unwrap_or_else(|e| panic!("{vkey}: {e}"));
        assert_eq!(key.name(), text(entry, "name"));
        assert_eq!(key.id().to_string(), text(entry, "id"));
        assert_eq!(key.verifier_string(), vkey, "re-encoding {vkey}");
    }
}

#[test]
fn every_mangled_verifier_key_is_refused_as_go_refuses_it() {
    let doc = vectors();
    let mut n_refused = 0;
    for entry in list(&doc, "verifier_keys") {
        for mangled in manglings(text(entry, "vkey")) {
            assert!(
                PublicKey::parse_verifier(&mangled).is_err(),
                "accepted mangled key {mangled:?}"
            );
            n_refused += 1;
        }
    }
    for entry in list(&doc, "bad_verifier_keys") {
        let vkey = text(entry, "vkey");
        assert!(
            PublicKey::parse_verifier(vkey).is_err(),
            "accepted {vkey} ({})",
            text(entry, "why")
        );
        n_refused += 1;
    }
    assert!(n_refused > 9_000, "only {n_refused} manglings tried");
}

#[test]
fn go_signer_keys_parse_to_their_verifier_keys_and_manglings_are_refused() {
    let doc = vectors();
    let keys = list(&doc, "signer_keys");
    assert_eq!(keys.len(), 2);
    for entry in keys {
        let skey = text(entry, "skey");
        let key = SigningKey::from_file_text(&key_file(skey)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.public().verifier_string(), text(entry, "vkey"));
        assert_eq!(key.signer_string(), skey);
        for mangled in manglings(skey) {
            assert!(
                SigningKey::from_file_text(&key_file(&mangled)).is_err(),
                "accepted mangled signer key {mangled:?}"
            );
        }
    }
}

#[test]
fn published_signatures_verify_and_our_signer_reproduces_them() {
    let doc = vectors();
    let cases = list(&doc, "signed_texts");
    assert_eq!(cases.len(), 5);
    for case in cases {
        let note_text = text(case, "text");
        let line = text(case, "line");
        let vkey = PublicKey::parse_verifier(text(case, "vkey")).unwrap();
        let (key, signature) = signature_line(line);
        assert_eq!(key, vkey.key_ref(), "{line}");
        let mut trust = TrustStore::new();
        trust.add(ROLE, vkey);
        trust
            .verify(&key, ROLE, note_text.as_bytes(), &signature)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        let mut edited = note_text.as_bytes().to_vec();
        edited[0] ^= 1;
        assert!(trust.verify(&key, ROLE, &edited, &signature).is_err());
        if let Some(skey) = case["skey"].as_str() {
            // Ed25519 is deterministic: the same key over the same text gives Go's bytes.
            let signer = SigningKey::from_file_text(&key_file(skey)).unwrap();
            assert_eq!(signer.sign(note_text.as_bytes()), signature, "{line}");
        }
    }
}

#[test]
fn our_checkpoint_writer_reproduces_the_go_sumdb_tree_notes() {
    let doc = vectors();
    let skey = text(&list(&doc, "signer_keys")[1], "skey");
    let key = SigningKey::from_file_text(&key_file(skey)).unwrap();
    let mut n_notes = 0;
    for case in list(&doc, "signed_texts") {
        if case["skey"].as_str() != Some(skey) {
            continue;
        }
        let note_text = text(case, "text");
        let lines: Vec<&str> = note_text.lines().collect();
        let checkpoint = Checkpoint {
            origin: lines[0].to_string(),
            size: lines[1].parse().unwrap(),
            root: BASE64.decode(lines[2]).unwrap().try_into().unwrap(),
        };
        let note = checkpoint.sign([&key]).to_note();
        assert_eq!(note, format!("{note_text}\n{}", text(case, "line")));
        n_notes += 1;
    }
    assert_eq!(n_notes, 2);
}

#[test]
fn checkpoint_notes_get_the_verdict_of_go_and_c2sp_except_listed_divergences() {
    let doc = vectors();
    let cases = list(&doc, "checkpoints");
    assert!(cases.len() >= 35, "only {} cases", cases.len());
    let mut n_agree = 0;
    let mut divergences = Vec::new();
    for case in cases {
        let name = text(case, "name");
        let note = text(case, "note");
        let expected = match case.get("warden") {
            Some(warden) => {
                divergences.push(name);
                text(warden, "outcome")
            }
            None => {
                n_agree += 1;
                text(case, "expect")
            }
        };
        let result = verify_note(note, &trust(list(case, "trusted")));
        match (expected, result) {
            ("accept", Ok((parsed, signers))) => {
                let want: BTreeSet<&str> = list(case, "signers")
                    .iter()
                    .map(|s| s.as_str().unwrap())
                    .collect();
                let got: Vec<String> = signers.iter().map(KeyRef::to_string).collect();
                let got: BTreeSet<&str> = got.iter().map(String::as_str).collect();
                assert_eq!(got, want, "case `{name}`: signers");
                assert_eq!(parsed.checkpoint.size, case["size"].as_u64().unwrap());
                assert_eq!(BASE64.encode(parsed.checkpoint.root), text(case, "root"));
            }
            ("reject", Err(_)) => {}
            (expected, result) => panic!(
                "case `{name}`: expected {expected}, got {:?}",
                result.map(|(_, signers)| signers)
            ),
        }
    }
    // The divergences are exactly the ones the data file documents; a fix (or a regression)
    // shows up here and the data file's `warden` entry must be updated with it.
    assert_eq!(n_agree + divergences.len(), cases.len());
    assert_eq!(divergences.len(), 8, "{divergences:#?}");
}
