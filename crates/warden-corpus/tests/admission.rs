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
