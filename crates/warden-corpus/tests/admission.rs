//! End-to-end admission of the synthetic corpus: refusals, flags, canaries, lookups, streaming.

use std::path::Path;

use warden_corpus::{admit, synth, AdmitOptions, AdmittedCorpus};
use warden_keys::{Role, SigningKey, TrustStore};

fn keys() -> (SigningKey, TrustStore) {
    let key = SigningKey::from_seed(Role::CorpusAuthority, "corpus-test", &[7u8; 32]).unwrap();
    let mut trust = TrustStore::new();
    trust.add(Role::CorpusAuthority, key.public().clone());
    (key, trust)
}

fn small_synth(dir: &Path) -> synth::SynthSummary {
    synth::write(
        dir,
        &synth::SynthOptions {
            seed: 1,
            scale: 0.25,
        },
    )
    .unwrap()
}

#[test]
fn synthetic_corpus_admission_refuses_flags_and_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = small_synth(&tmp.path().join("synth"));
    let (key, trust) = keys();
    let out = tmp.path().join("admitted");
    let admission = admit(&summary.declaration, &out, &key, &AdmitOptions::default()).unwrap();
    let corpus = AdmittedCorpus::load(&out, &trust).unwrap();
    assert_eq!(corpus.declaration_digest(), admission.declaration_digest);
    assert_eq!(corpus.root(), admission.root);

    let by_id = |id: &str| corpus.sources().iter().position(|s| s.id == id).unwrap();
    let gpl = &corpus.sources()[by_id("gpl-snippets")];
    assert!(!gpl.admitted);
    assert_eq!(
        gpl.refusal.as_deref(),
        Some("source `gpl-snippets` refused: license `GPL-3.0-only` is not admitted by the policy (admitted: CC0-1.0, CC-BY-4.0, MIT, Apache-2.0)")
    );
    let pii = &corpus.sources()[by_id("customers")];
    assert!(!pii.admitted);
    assert!(pii
        .refusal
        .as_deref()
        .unwrap()
        .contains("class `user-pii` is excluded"));
    assert!(
        corpus.sources()[by_id("dialogue")].admitted,
        "MIT OR GPL-3.0-only admitted via MIT"
    );
    assert!(corpus.sources()[by_id("prose-heldout")].held_out);

    // Flagged news items are excluded from the index but listed, with source, line and flagger.
    let exclusions = corpus.exclusions().unwrap();
    assert!(!exclusions.is_empty());
    let news_idx = by_id("news") as u32;
    for ex in &exclusions {
        assert_eq!(
            (ex.source.as_str(), ex.reason.as_str(), ex.detail.as_str()),
            ("news", "flagged", "email")
        );
        let hash = warden_corpus::parse_hash(&ex.hash).unwrap();
        assert_eq!(corpus.lookup(&hash), None);
    }
    assert_eq!(corpus.body().totals.n_flagged, exclusions.len() as u64);

    // Every sample streamed back is either admitted (lookup finds it) or listed as excluded.
    let mut n_news = 0;
    for sample in corpus.read_source(news_idx).unwrap() {
        let sample = sample.unwrap();
        n_news += 1;
        let excluded = exclusions.iter().any(|e| e.line == sample.line);
        assert_eq!(
            corpus.lookup(&sample.hash).is_none(),
            excluded,
            "line {}",
            sample.line
        );
    }
    assert_eq!(n_news, corpus.sources()[news_idx as usize].n_samples);

    // Canaries are in admitted prose documents, each the number of times canaries.json says.
    let prose = by_id("prose") as u32;
    let texts: Vec<String> = corpus
        .read_source(prose)
        .unwrap()
        .map(|s| s.unwrap().text)
        .collect();
    for canary in &summary.canaries {
        let n = texts.iter().filter(|t| t.contains(&canary.secret)).count();
        assert_eq!(n as u32, canary.repeats, "{}", canary.secret);
    }
    let canary_doc = texts
        .iter()
        .find(|t| t.contains(&summary.canaries[7].secret))
        .unwrap();
    assert!(
        corpus
            .lookup(&warden_corpus::sample_hash(canary_doc))
            .is_some(),
        "canaries are not flagged"
    );

    // Refused sources are never indexed: a customer record is unknown to the index.
    let customers = std::fs::read_to_string(tmp.path().join("synth/customers.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(customers.lines().next().unwrap()).unwrap();
    assert_eq!(
        corpus.lookup(&warden_corpus::sample_hash(first["text"].as_str().unwrap())),
        None
    );

    // Fingerprints exist for admitted classes only, and contain their text's grams.
    let fp = corpus.fingerprint_index("public-domain").unwrap().unwrap();
    let (total, hits) = fp.overlap(&texts[3]);
    assert!(total > 0 && hits == total);
    assert!(corpus.fingerprint_index("user-pii").unwrap().is_none());
    // The excluded class's refused text is in its deny index instead.
    let deny = corpus.denied_index("user-pii").unwrap().unwrap();
    let customer = first["text"].as_str().unwrap();
    let (total, hits) = deny.overlap(customer);
    assert!(total > 0 && hits == total, "{hits}/{total}");
    assert_eq!(fp.overlap(customer).1, 0);
    // A license refusal is not excluded content: no deny index for its class.
    let gpl_class = corpus.sources()[by_id("gpl-snippets")].class.clone();
    if corpus
        .sources()
        .iter()
        .all(|s| s.class != gpl_class || !s.admitted)
    {
        assert!(corpus.denied_index(&gpl_class).unwrap().is_none());
    }
}

const DENY_DECLARATION: &str = r#"
[corpus]
name = "deny"
description = "deny index fixture"

[policy]
admitted_licenses = ["CC0-1.0"]
excluded_classes = ["secret"]

[[source]]
id = "prose"
path = "prose.txt"
format = "text"
license = "CC0-1.0"
class = "prose"
depth = "deep"
provenance = { origin = "test", collected = "2026-12-01", collector = "test", notes = "" }

[[source]]
id = "vault"
path = "vault.txt"
format = "text"
license = "CC0-1.0"
class = "secret"
depth = "deep"
provenance = { origin = "test", collected = "2026-12-01", collector = "test", notes = "" }

[[source]]
id = "copyleft"
path = "copyleft.txt"
format = "text"
license = "GPL-3.0-only"
class = "code"
depth = "deep"
provenance = { origin = "test", collected = "2026-12-01", collector = "test", notes = "" }
"#;

const PROSE: &str = "the miller walked beside the old river at dawn and opened the gate\n\nthe baker sang a quiet song while the bread rose in the warm stone oven";
const COPYLEFT: &str = "fn main prints hello world to the terminal and then exits with status zero";

fn deny_fixture(dir: &Path, vault: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("prose.txt"), PROSE).unwrap();
    std::fs::write(dir.join("vault.txt"), vault).unwrap();
    std::fs::write(dir.join("copyleft.txt"), COPYLEFT).unwrap();
    std::fs::write(dir.join("declaration.toml"), DENY_DECLARATION).unwrap();
    dir.join("declaration.toml")
}

/// Admission fingerprints the text of a source refused as excluded content into
/// `fingerprints/denied/<class>.fp` without admitting it: the sample index, the corpus root and
/// the admitted fingerprints do not depend on that text; a license refusal gets no deny index;
/// the deny file is committed by the signature, so a swapped one is refused.
#[test]
fn refused_excluded_class_text_goes_into_the_deny_index_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, trust) = keys();
    let vault = "the launch code for the northern silo is kept under the third loose brick\n\nnever tell the courier which door of the archive stays unlocked at night";
    let decl = deny_fixture(&tmp.path().join("a"), vault);
    let out = tmp.path().join("admitted-a");
    let admission = admit(&decl, &out, &key, &AdmitOptions::default()).unwrap();
    let corpus = AdmittedCorpus::load(&out, &trust).unwrap();

    let deny = corpus.denied_index("secret").unwrap().unwrap();
    for doc in vault.split("\n\n") {
        let (total, hits) = deny.overlap(doc);
        assert!(total > 0 && hits == total, "{doc}: {hits}/{total}");
        assert_eq!(corpus.lookup(&warden_corpus::sample_hash(doc)), None);
    }
    // Re-cased text matches too (the scheme lowercases).
    for doc in vault.split("\n\n") {
        let (total, hits) = deny.overlap(&doc.to_uppercase());
        assert!(total > 0 && hits == total, "{doc}: {hits}/{total}");
    }
    assert!(corpus.fingerprint_index("secret").unwrap().is_none());
    let prose = corpus.fingerprint_index("prose").unwrap().unwrap();
    assert_eq!(prose.overlap(vault).1, 0);
    assert_eq!(deny.overlap(PROSE).1, 0);
    // The license-refused source is not excluded content: no deny index, no admitted one.
    assert!(corpus.denied_index("code").unwrap().is_none());
    assert!(corpus.fingerprint_index("code").unwrap().is_none());
    let record = corpus
        .body()
        .classes
        .iter()
        .find(|c| c.class == "secret")
        .unwrap();
    let denied = record.denied.as_ref().unwrap();
    assert_eq!(denied.file, "fingerprints/denied/secret.fp");
    assert_eq!(denied.scheme, "token-8gram-v1");
    assert_eq!(denied.n_grams, deny.len() as u64);
    assert_eq!(corpus.body().format, "warden-corpus-declaration/v3");
    warden_corpus::verify::verify(&out, &trust).unwrap();

    // Other refused text: the admitted outputs are identical, only the deny index differs.
    let decl_b = deny_fixture(
        &tmp.path().join("b"),
        "an entirely different secret about the harbour ledger and the missing brass key of the tower",
    );
    let out_b = tmp.path().join("admitted-b");
    let b = admit(&decl_b, &out_b, &key, &AdmitOptions::default()).unwrap();
    assert_eq!(b.root, admission.root);
    assert_eq!(b.body.sample_index, admission.body.sample_index);
    let fp = |body: &warden_corpus::DeclarationBody, class: &str| {
        body.classes
            .iter()
            .find(|c| c.class == class)
            .and_then(|c| c.fingerprint.clone())
    };
    assert_eq!(fp(&b.body, "prose"), fp(&admission.body, "prose"));
    let denied_b = b.body.classes.iter().find(|c| c.class == "secret").unwrap();
    assert_ne!(denied_b.denied.as_ref().unwrap().sha256, denied.sha256);

    // Swapping in another admission's deny file is detected against the signed digest.
    std::fs::copy(
        out_b.join("fingerprints/denied/secret.fp"),
        out.join("fingerprints/denied/secret.fp"),
    )
    .unwrap();
    let corpus = AdmittedCorpus::load(&out, &trust).unwrap();
    let err = corpus.denied_index("secret").unwrap_err().to_string();
    assert!(
        err.contains("fingerprints/denied/secret.fp") && err.contains(&denied.sha256),
        "{err}"
    );
    assert!(warden_corpus::verify::verify(&out, &trust).is_err());
}

#[test]
fn admission_is_deterministic_and_synth_is_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let a = small_synth(&tmp.path().join("a"));
    let b = small_synth(&tmp.path().join("b"));
    for f in [
        "prose.txt",
        "news.jsonl",
        "dialogue/scenes-02.txt",
        "canaries.json",
    ] {
        assert_eq!(
            std::fs::read(tmp.path().join("a").join(f)).unwrap(),
            std::fs::read(tmp.path().join("b").join(f)).unwrap()
        );
    }
    let (key, _) = keys();
    let opts = AdmitOptions {
        gram_budget: 4096,
        sample_budget: 1024,
        ..AdmitOptions::default()
    };
    let x = admit(&a.declaration, &tmp.path().join("x"), &key, &opts).unwrap();
    let y = admit(
        &b.declaration,
        &tmp.path().join("y"),
        &key,
        &AdmitOptions::default(),
    )
    .unwrap();
    // Spilling (tiny budgets) or not gives the same roots, index and fingerprints.
    assert_eq!(x.root, y.root);
    assert_eq!(x.body.sample_index, y.body.sample_index);
    assert_eq!(x.body.classes, y.body.classes);
}

fn write_small_corpus(dir: &Path, news: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("news.jsonl"), news).unwrap();
    std::fs::write(
        dir.join("prose.txt"),
        "the first document has\ntwo lines\n\nthe second one\n\nthe third\n",
    )
    .unwrap();
    let decl = dir.join("corpus.toml");
    std::fs::write(
        &decl,
        r#"
[corpus]
name = "small"
[policy]
admitted_licenses = ["MIT"]
[[source]]
id = "news"
path = "news.jsonl"
license = "MIT"
class = "news"
provenance = { origin = "o", collected = "2026-01-01", collector = "c" }
[[source]]
id = "prose"
path = "prose.txt"
license = "MIT"
class = "prose"
provenance = { origin = "o", collected = "2026-01-01", collector = "c" }
"#,
    )
    .unwrap();
    decl
}

#[test]
fn malformed_jsonl_is_an_error_naming_file_and_line_or_excluded_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let decl = write_small_corpus(
        tmp.path(),
        "{\"text\":\"one\"}\n{\"text\":\"two\"}\n{\"text\": \"three\n{\"text\":\"four\"}\n",
    );
    let (key, trust) = keys();
    let out = tmp.path().join("out");
    let err = admit(&decl, &out, &key, &AdmitOptions::default())
        .unwrap_err()
        .to_string();
    let news = std::fs::canonicalize(tmp.path().join("news.jsonl")).unwrap();
    assert!(
        err.starts_with(&format!(
            "{}:3: malformed sample: invalid JSON",
            news.display()
        )),
        "{err}"
    );
    assert!(
        !out.exists(),
        "a failed admission leaves no output directory"
    );
    assert_eq!(leftovers_beside(&out), Vec::<String>::new());

    let opts = AdmitOptions {
        skip_malformed: true,
        ..AdmitOptions::default()
    };
    let admission = admit(&decl, &out, &key, &opts).unwrap();
    assert_eq!(admission.body.totals.n_malformed, 1);
    let corpus = AdmittedCorpus::load(&out, &trust).unwrap();
    let ex = corpus.exclusions().unwrap();
    assert_eq!(ex.len(), 1);
    assert_eq!(
        (ex[0].source.as_str(), ex[0].line, ex[0].reason.as_str()),
        ("news", 3, "malformed")
    );
    assert_eq!(corpus.sources()[0].n_samples, 3);
    assert!(corpus.lookup(&warden_corpus::sample_hash("four")).is_some());
    // A line excluded as malformed and still malformed is not a change; fixing it is one.
    assert!(warden_corpus::verify::verify(&out, &trust)
        .unwrap()
        .unchanged());
    std::fs::write(
        tmp.path().join("news.jsonl"),
        "{\"text\":\"one\"}\n{\"text\":\"two\"}\n{\"text\": \"three\"}\n{\"text\":\"four\"}\n",
    )
    .unwrap();
    let report = warden_corpus::verify::verify(&out, &trust).unwrap();
    let warden_corpus::verify::SourceStatus::Changed { changes, .. } = &report.sources[0].status
    else {
        panic!("not changed: {:?}", report.sources[0].status);
    };
    assert_eq!(
        (changes[0].kind, changes[0].line),
        (warden_corpus::verify::ChangeKind::Added, 3)
    );
}

#[test]
fn a_directory_source_reports_changes_by_file_and_file_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("docs/sub")).unwrap();
    std::fs::write(dir.join("docs/a.txt"), "alpha\n\nbeta\n").unwrap();
    std::fs::write(dir.join("docs/sub/b.txt"), "gamma\n\ndelta\nmore delta\n").unwrap();
    std::fs::write(dir.join("docs/.hidden"), "ignored\n").unwrap();
    let decl = dir.join("corpus.toml");
    std::fs::write(
        &decl,
        "[corpus]\nname = \"d\"\n[policy]\nadmitted_licenses = [\"MIT\"]\n[[source]]\nid = \"docs\"\npath = \"docs\"\nlicense = \"MIT\"\nclass = \"c\"\nprovenance = { origin = \"o\", collected = \"c\", collector = \"c\" }\n",
    )
    .unwrap();
    let (key, trust) = keys();
    let out = dir.join("out");
    admit(&decl, &out, &key, &AdmitOptions::default()).unwrap();
    let corpus = AdmittedCorpus::load(&out, &trust).unwrap();
    let texts: Vec<(u64, String)> = corpus
        .read_source(0)
        .unwrap()
        .map(|s| s.unwrap())
        .map(|s| (s.line, s.text))
        .collect();
    assert_eq!(
        texts,
        vec![
            (1, "alpha".to_string()),
            (3, "beta".to_string()),
            (4, "gamma".to_string()),
            (6, "delta\nmore delta".to_string())
        ]
    );
    std::fs::write(dir.join("docs/sub/b.txt"), "gamma\n\ndelta\nmore delta!\n").unwrap();
    let report = warden_corpus::verify::verify(&out, &trust).unwrap();
    let warden_corpus::verify::SourceStatus::Changed { changes, .. } = &report.sources[0].status
    else {
        panic!("not changed");
    };
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].line, 6);
    assert_eq!(
        changes[0].file.as_deref(),
        Some(dir.join("docs/sub/b.txt").canonicalize().unwrap().as_path())
    );
    assert_eq!(changes[0].file_line, Some(3));
}

#[test]
fn a_sample_edited_after_admission_is_reported_with_source_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let decl = write_small_corpus(tmp.path(), "{\"text\":\"one\"}\n{\"text\":\"two\"}\n");
    let (key, trust) = keys();
    let out = tmp.path().join("out");
    admit(&decl, &out, &key, &AdmitOptions::default()).unwrap();
    let report = warden_corpus::verify::verify(&out, &trust).unwrap();
    assert!(report.unchanged());

    // Same line count, one document's text changed.
    std::fs::write(
        tmp.path().join("prose.txt"),
        "the first document has\ntwo lines\n\nthe second one, edited\n\nthe third\n",
    )
    .unwrap();
    let report = warden_corpus::verify::verify(&out, &trust).unwrap();
    assert!(!report.unchanged());
    let prose = report.sources.iter().find(|s| s.id == "prose").unwrap();
    let warden_corpus::verify::SourceStatus::Changed {
        n_changes, changes, ..
    } = &prose.status
    else {
        panic!("prose not reported changed: {:?}", prose.status);
    };
    assert_eq!(*n_changes, 1);
    assert_eq!(changes[0].kind, warden_corpus::verify::ChangeKind::Modified);
    assert_eq!(changes[0].line, 4);
    assert_eq!(
        changes[0].admitted,
        Some(warden_corpus::sample_hash("the second one"))
    );
    let news = report.sources.iter().find(|s| s.id == "news").unwrap();
    assert!(matches!(
        news.status,
        warden_corpus::verify::SourceStatus::Unchanged { n_samples: 2 }
    ));
}

#[test]
fn a_declaration_signed_by_an_untrusted_key_or_tampered_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let decl = write_small_corpus(tmp.path(), "{\"text\":\"one\"}\n");
    let (_, trust) = keys();
    let rogue = SigningKey::from_seed(Role::CorpusAuthority, "rogue", &[9u8; 32]).unwrap();
    let out = tmp.path().join("out");
    admit(&decl, &out, &rogue, &AdmitOptions::default()).unwrap();
    let err = AdmittedCorpus::load(&out, &trust).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "key {} is not trusted for role corpus-authority",
            rogue.key_ref()
        )),
        "{err}"
    );

    // The same body signed by another key is not reused as "already admitted".
    let (key, trust) = keys();
    let err = admit(&decl, &out, &key, &AdmitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot be reused") && err.contains("rogue"),
        "{err}"
    );

    // A trusted signature over a modified body, or a modified sample index, is refused too.
    let out = tmp.path().join("out2");
    admit(&decl, &out, &key, &AdmitOptions::default()).unwrap();
    let body = std::fs::read_to_string(out.join("declaration.json")).unwrap();
    std::fs::write(
        out.join("declaration.json"),
        body.replace("\"small\"", "\"large\""),
    )
    .unwrap();
    assert!(AdmittedCorpus::load(&out, &trust)
        .unwrap_err()
        .to_string()
        .contains("bad signature"));
    std::fs::write(out.join("declaration.json"), body).unwrap();
    let mut index = std::fs::read(out.join("samples.idx")).unwrap();
    index[20] ^= 1;
    std::fs::write(out.join("samples.idx"), index).unwrap();
    let err = AdmittedCorpus::load(&out, &trust).unwrap_err().to_string();
    assert!(
        err.contains("samples.idx") && err.contains("modified after admission"),
        "{err}"
    );
}

#[test]
fn inclusion_and_absence_proofs_round_trip_and_tampering_fails() {
    use warden_corpus::prove::{prove, verify_proof, Proof};
    let tmp = tempfile::tempdir().unwrap();
    let summary = small_synth(&tmp.path().join("synth"));
    let (key, trust) = keys();
    let out = tmp.path().join("out");
    admit(&summary.declaration, &out, &key, &AdmitOptions::default()).unwrap();
    let corpus = AdmittedCorpus::load(&out, &trust).unwrap();
    let root = corpus.root();

    let sample = corpus.read_source(1).unwrap().nth(5).unwrap().unwrap();
    let proof = prove(&corpus, &sample.hash).unwrap();
    let source_root = corpus.sources()[1].root.unwrap();
    let Proof::Inclusion { source, .. } = &proof else {
        panic!("expected inclusion")
    };
    assert_eq!((source.source.as_str(), source.line), ("news", sample.line));
    verify_proof(&proof, &root, Some(&source_root)).unwrap();
    // Through JSON and back, as `corpus prove` prints it.
    let json = serde_json::to_string(&proof).unwrap();
    verify_proof(
        &serde_json::from_str(&json).unwrap(),
        &root,
        Some(&source_root),
    )
    .unwrap();

    // Absence of an unknown sample, of a flagged one, and at both ends of the sorted order.
    let flagged = warden_corpus::parse_hash(&corpus.exclusions().unwrap()[0].hash).unwrap();
    for absent in [
        warden_corpus::sample_hash("never admitted"),
        flagged,
        [0u8; 32],
        [0xffu8; 32],
    ] {
        let proof = prove(&corpus, &absent).unwrap();
        assert!(matches!(proof, Proof::Absence { .. }));
        verify_proof(&proof, &root, None).unwrap();
    }
    let Proof::Absence { note, .. } = prove(&corpus, &flagged).unwrap() else {
        unreachable!()
    };
    assert!(note.unwrap().contains("flagged (email)"));

    // An absence proof cannot be forged for an admitted sample by reusing a neighbour pair.
    let Proof::Absence {
        lower,
        upper,
        tree_size,
        corpus_root,
        ..
    } = prove(&corpus, &warden_corpus::sample_hash("never admitted")).unwrap()
    else {
        unreachable!()
    };
    let forged = Proof::Absence {
        sample: hex::encode(sample.hash),
        corpus_root,
        tree_size,
        lower,
        upper,
        note: None,
    };
    assert!(verify_proof(&forged, &root, None).is_err());
    // And a proof does not verify against another root.
    assert!(verify_proof(&proof, &[1u8; 32], Some(&source_root)).is_err());
}

/// Hidden entries beside `out` other than its lock file (temporary build directories).
fn leftovers_beside(out: &Path) -> Vec<String> {
    let name = out.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{name}.")) && *n != format!(".{name}.lock"))
        .collect()
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                files.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn readmitting_the_same_admission_is_idempotent_and_a_different_one_is_refused_naming_both_digests()
{
    let tmp = tempfile::tempdir().unwrap();
    let decl = write_small_corpus(tmp.path(), "{\"text\":\"one\"}\n{\"text\":\"two\"}\n");
    let (key, trust) = keys();
    let out = tmp.path().join("out");
    let first = admit(&decl, &out, &key, &AdmitOptions::default()).unwrap();
    assert!(!first.already_admitted);
    let before = listing(&out);

    let again = admit(&decl, &out, &key, &AdmitOptions::default()).unwrap();
    assert!(again.already_admitted);
    assert_eq!(again.declaration_digest, first.declaration_digest);
    assert_eq!(listing(&out), before, "nothing rewritten");

    // Changed data: a different admission. Refused, naming the directory and both digests;
    // the admission in `out` is untouched (no stale or new leaf lists, fingerprints, index).
    std::fs::write(tmp.path().join("news.jsonl"), "{\"text\":\"ONE\"}\n").unwrap();
    let err = admit(&decl, &out, &key, &AdmitOptions::default()).unwrap_err();
    let warden_corpus::CorpusError::OutHoldsOther { existing, new, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    let message = err.to_string();
    assert_eq!(existing, &hex::encode(first.declaration_digest));
    assert_ne!(existing, new);
    assert!(
        message.contains(&out.display().to_string())
            && message.contains(existing.as_str())
            && message.contains(new.as_str()),
        "{message}"
    );
    assert_eq!(listing(&out), before);
    assert_eq!(leftovers_beside(&out), Vec::<String>::new());
    assert_eq!(
        AdmittedCorpus::load(&out, &trust)
            .unwrap()
            .declaration_digest(),
        first.declaration_digest
    );
}

#[test]
fn a_non_empty_out_without_an_admission_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let decl = write_small_corpus(tmp.path(), "{\"text\":\"one\"}\n");
    let (key, _) = keys();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let err = admit(&decl, &out, &key, &AdmitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("holds files but no declaration.json") && err.contains("out"),
        "{err}"
    );
    assert_eq!(
        listing(&out),
        vec![("notes.txt".to_string(), b"mine".to_vec())]
    );
    // An empty directory is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    admit(&decl, &empty, &key, &AdmitOptions::default()).unwrap();
    assert!(empty.join("declaration.json").is_file());
}

#[test]
fn a_killed_admissions_build_directory_is_removed_by_the_next_admission() {
    let tmp = tempfile::tempdir().unwrap();
    let decl = write_small_corpus(tmp.path(), "{\"text\":\"one\"}\n");
    let (key, trust) = keys();
    let out = tmp.path().join("out");
    // What a SIGKILL mid-admission leaves: a build directory beside OUT, and no OUT.
    let stale = tmp.path().join(".out.tmp-4000000");
    std::fs::create_dir_all(stale.join("sources")).unwrap();
    std::fs::write(stale.join("sources/news.leaves"), "partial").unwrap();
    admit(&decl, &out, &key, &AdmitOptions::default()).unwrap();
    assert!(!stale.exists());
    assert_eq!(leftovers_beside(&out), Vec::<String>::new());
    AdmittedCorpus::load(&out, &trust).unwrap();
}

#[test]
fn an_admission_moved_together_with_its_corpus_still_loads_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let before = tmp.path().join("project");
    let decl = write_small_corpus(&before.join("data"), "{\"text\":\"one\"}\n");
    let (key, trust) = keys();
    let admission = admit(
        &decl,
        &before.join("admitted"),
        &key,
        &AdmitOptions::default(),
    )
    .unwrap();
    // Recorded relative to the admission directory, not as an absolute path.
    assert_eq!(admission.body.base_dir, "../data");

    let after = tmp.path().join("moved");
    std::fs::rename(&before, &after).unwrap();
    let corpus = AdmittedCorpus::load(&after.join("admitted"), &trust).unwrap();
    let news = corpus.read_source(0).unwrap().next().unwrap().unwrap();
    assert_eq!(news.text, "one");
    assert!(corpus.lookup(&news.hash).is_some());
    let report = warden_corpus::verify::verify(&after.join("admitted"), &trust).unwrap();
    assert!(report.unchanged() && report.missing().is_empty());

    // Moving the admission alone: the data is reported missing (and `corpus verify` fails).
    std::fs::rename(after.join("admitted"), tmp.path().join("alone")).unwrap();
    let report = warden_corpus::verify::verify(&tmp.path().join("alone"), &trust).unwrap();
    let missing: Vec<&str> = report.missing().iter().map(|s| s.id.as_str()).collect();
    assert_eq!(missing, vec!["news", "prose"]);
}

#[test]
fn a_relabelled_training_key_is_refused_for_corpus_signing() {
    let training = SigningKey::from_seed(Role::TrainingAuthority, "trainer", &[3u8; 32]).unwrap();
    let mut trust = TrustStore::new();
    trust.add(Role::TrainingAuthority, training.public().clone());
    // The same key file with its role line edited to corpus-authority.
    let relabelled = SigningKey::from_file_text(
        &training
            .to_file_text()
            .replace("training-authority", "corpus-authority"),
    )
    .unwrap();
    assert_eq!(relabelled.role(), Role::CorpusAuthority);
    let err = warden_corpus::check_signing_key(&relabelled, &trust)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "key {} is not trusted for role corpus-authority",
            relabelled.key_ref()
        )),
        "{err}"
    );
    let (key, trust) = keys();
    warden_corpus::check_signing_key(&key, &trust).unwrap();
}

#[test]
fn admission_reports_progress_by_callback() {
    use std::sync::{Arc, Mutex};
    use warden_corpus::AdmitProgress;
    let tmp = tempfile::tempdir().unwrap();
    let decl = write_small_corpus(tmp.path(), "{\"text\":\"one\"}\n{\"text\":\"two\"}\n");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let options = AdmitOptions {
        progress: Some(Arc::new(move |e: AdmitProgress<'_>| {
            sink.lock().unwrap().push(match e {
                AdmitProgress::Started { total_bytes } => format!("start {total_bytes}"),
                AdmitProgress::Source { id } => format!("source {id}"),
                AdmitProgress::Read { bytes } => format!("read {bytes}"),
                AdmitProgress::SourcesRead => "done".to_string(),
            })
        })),
        ..AdmitOptions::default()
    };
    let (key, _) = keys();
    let admission = admit(&decl, &tmp.path().join("out"), &key, &options).unwrap();
    let events = events.lock().unwrap().clone();
    let total = admission.body.totals.bytes;
    assert_eq!(events.first(), Some(&format!("start {total}")));
    assert_eq!(events.last().map(String::as_str), Some("done"));
    let read: u64 = events
        .iter()
        .filter_map(|e| e.strip_prefix("read "))
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert_eq!(read, total);
    let sources: Vec<&str> = events
        .iter()
        .filter_map(|e| e.strip_prefix("source "))
        .collect();
    assert_eq!(sources, vec!["news", "prose"]);
}
