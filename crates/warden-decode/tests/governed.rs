//! The governed decode loop against a scripted fake model: rejections are never emitted,
//! verbatim reproduction (any casing) stops at the bound, decompose steers, budgets are exact,
//! sampling is reproducible, deny fingerprints and flaggers steer, and the per-candidate work does
//! not grow with the output.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use warden_corpus::declaration::{FlaggerConfig, RegexFlagger};
use warden_corpus::fingerprint::ngram_hashes;
use warden_corpus::FingerprintIndex;
use warden_decode::{
    call_record, generate_ungoverned, Action, DecodeError, Detectors, Generation, Governor,
    Request, Sampler, Stop,
};
use warden_keys::{Role, SigningKey, TrustStore};
use warden_model::{LanguageModel, ModelError};
use warden_policy::{admit_for_manifest, prove, AdmittedBundle, Bound, Bundle};

/// Public-domain text the "books" class was admitted (shallow) with.
const BOOKS: &str = "it was the best of times it was the worst of times it was the age of \
                     wisdom it was the age of foolishness it was the epoch of belief it was the \
                     epoch of incredulity it was the season of light";
/// Text of an excluded class, known only through its deny index.
const SECRET: &str = "the launch code for the vault is kept under the old oak tree near the river";
const FILLER: &[&str] = &[
    "zebra", "quantum", "marble", "violet", "harbor", "lantern", "copper",
];

/// A model over a word vocabulary that prefers a scripted continuation: at output position `p`
/// the token `script[p % len]` has the top logit; the rest are ranked by id (lower first), with
/// end-of-sequence last. `steps` counts incremental forwards.
struct ScriptModel {
    tokens: Vec<Vec<u8>>,
    eos: u32,
    script: Vec<u32>,
    position: usize,
    steps: usize,
    context_limit: usize,
    /// Logit of the scripted token (the rest are in [-1, 0]); low values make sampling diverse.
    preference: f32,
}

impl ScriptModel {
    fn new(extra: &[&str]) -> ScriptModel {
        let mut words: BTreeSet<String> = BTreeSet::new();
        for w in BOOKS
            .split(' ')
            .chain(SECRET.split(' '))
            .chain(FILLER.iter().copied())
        {
            words.insert(format!(" {w}"));
            words.insert(format!(" {}", w.to_uppercase()));
        }
        // Filler first so greedy alternatives are filler words.
        let mut tokens: Vec<Vec<u8>> = FILLER
            .iter()
            .map(|w| format!(" {w}").into_bytes())
            .collect();
        for w in words {
            if !tokens.iter().any(|t| t == w.as_bytes()) {
                tokens.push(w.into_bytes());
            }
        }
        for e in extra {
            tokens.push(e.as_bytes().to_vec());
        }
        tokens.push(Vec::new());
        let eos = (tokens.len() - 1) as u32;
        ScriptModel {
            tokens,
            eos,
            script: Vec::new(),
            position: 0,
            steps: 0,
            context_limit: 1 << 20,
            preference: 10.0,
        }
    }

    fn id(&self, token: &str) -> u32 {
        self.tokens
            .iter()
            .position(|t| t == token.as_bytes())
            .unwrap_or_else(|| panic!("no token {token:?}")) as u32
    }

    fn script_words(mut self, text: &str, upper: bool) -> ScriptModel {
        self.script = text
            .split(' ')
            .map(|w| {
                let w = if upper {
                    w.to_uppercase()
                } else {
                    w.to_string()
                };
                self.id(&format!(" {w}"))
            })
            .collect();
        self
    }

    fn script_tokens(mut self, tokens: &[&str]) -> ScriptModel {
        self.script = tokens.iter().map(|t| self.id(t)).collect();
        self
    }

    fn logits(&self) -> Vec<f32> {
        let n = self.tokens.len();
        let mut logits: Vec<f32> = (0..n).map(|i| -(i as f32) / n as f32).collect();
        logits[self.eos as usize] = -100.0;
        if !self.script.is_empty() {
            logits[self.script[self.position % self.script.len()] as usize] = self.preference;
        }
        logits
    }
}

impl LanguageModel for ScriptModel {
    fn vocab_size(&self) -> usize {
        self.tokens.len()
    }
    fn token_bytes(&self, id: u32) -> &[u8] {
        &self.tokens[id as usize]
    }
    fn eos(&self) -> Option<u32> {
        Some(self.eos)
    }
    fn context_limit(&self) -> usize {
        self.context_limit
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        Ok(vec![0; text.split_whitespace().count().max(1)])
    }
    fn start(&mut self, _prompt: &[u32]) -> Result<Vec<f32>, ModelError> {
        self.position = 0;
        Ok(self.logits())
    }
    fn step(&mut self, _token: u32) -> Result<Vec<f32>, ModelError> {
        self.position += 1;
        self.steps += 1;
        Ok(self.logits())
    }
}

fn admitted(vocabulary: &str, predicates: &str) -> AdmittedBundle {
    admitted_for(vocabulary, predicates, None)
}

/// [`admitted`], bound to the training manifest whose file hashes to `manifest`.
fn admitted_for(vocabulary: &str, predicates: &str, manifest: Option<[u8; 32]>) -> AdmittedBundle {
    let text =
        format!("[bundle]\nname = \"test\"\nversion = 1\n[vocabulary]\n{vocabulary}\n{predicates}");
    let bundle = Bundle::parse(&text, "test.toml").unwrap();
    let proof = prove(&bundle, &Bound::default()).unwrap();
    let key = SigningKey::from_seed(Role::PolicyAuthority, "policy", &[3; 32]).unwrap();
    let signed = admit_for_manifest(
        &bundle,
        &proof,
        &key,
        SystemTime::UNIX_EPOCH,
        None,
        manifest,
    )
    .unwrap();
    let mut trust = TrustStore::new();
    trust.add(Role::PolicyAuthority, key.public().clone());
    AdmittedBundle::load(signed.to_bytes(), "test.json", &trust).unwrap()
}

fn index_of(text: &str) -> FingerprintIndex {
    let mut grams = Vec::new();
    ngram_hashes(text, |g| grams.push(g));
    FingerprintIndex::from_grams(grams)
}

fn books_detectors() -> Detectors {
    let mut detectors = Detectors::default();
    detectors.verbatim.insert("books".into(), index_of(BOOKS));
    detectors
}

fn request(max_tokens: usize) -> Request {
    Request {
        max_tokens,
        sampler: Sampler::Greedy,
        attributes: BTreeMap::new(),
    }
}

/// The longest run of words of `text` whose consecutive 8-grams are all in `index`.
fn longest_run(text: &str, index: &FingerprintIndex) -> usize {
    let (mut best, mut grams) = (0, 0);
    ngram_hashes(text, |g| {
        grams = if index.contains(g) { grams + 1 } else { 0 };
        best = best.max(if grams == 0 { 0 } else { 7 + grams });
    });
    best
}

/// Every rejected candidate differs from the token emitted at its step.
fn assert_rejections_not_emitted(generation: &Generation) {
    for i in &generation.summary.interventions {
        if i.action == Action::Rejected {
            assert_ne!(
                generation.tokens.get(i.step),
                Some(&i.candidate),
                "rejected candidate {} was emitted at step {}",
                i.candidate,
                i.step
            );
        }
    }
}

const BOOKS_VOCAB: &str = r#""output.tokens" = { int = [0, 100000] }
"output.verbatim.books" = { int = [0, 100000] }"#;

fn verbatim_bound(bound: u32, weight: &str) -> AdmittedBundle {
    verbatim_bound_for(bound, weight, None)
}

/// [`verbatim_bound`] admitted against the training manifest that hashes to `manifest`.
fn verbatim_bound_for(bound: u32, weight: &str, manifest: Option<[u8; 32]>) -> AdmittedBundle {
    // Safety predicates are always strict; an advisory bound is a task predicate.
    let category = if weight == "strict" { "safety" } else { "task" };
    admitted_for(
        BOOKS_VOCAB,
        &format!(
            "[[predicate]]\nid = \"memorization.books\"\ncategory = \"{category}\"\nweight = \"{weight}\"\nrequire = \"output.verbatim.books <= {bound}\"\n"
        ),
        manifest,
    )
}

#[test]
fn verbatim_reproduction_stops_at_the_bound_in_any_casing() {
    let index = index_of(BOOKS);
    for upper in [false, true] {
        let mut model = ScriptModel::new(&[]).script_words(BOOKS, upper);
        let baseline = generate_ungoverned(&mut model, "it was", &request(40)).unwrap();
        assert!(
            longest_run(&baseline.text, &index) >= 40,
            "the baseline reproduces the source: {}",
            baseline.text
        );
        let governor =
            Governor::new(verbatim_bound(12, "strict"), books_detectors(), None).unwrap();
        let mut model = ScriptModel::new(&[]).script_words(BOOKS, upper);
        let governed = governor
            .generate(&mut model, "it was", &request(40))
            .unwrap();
        assert_eq!(
            governed.stop,
            Stop::Length,
            "{:?}",
            governed.summary.refusal
        );
        assert_eq!(governed.tokens.len(), 40);
        let run = longest_run(&governed.text, &index);
        assert!(
            (8..=12).contains(&run),
            "longest run {run}: {}",
            governed.text
        );
        let rejected: Vec<_> = governed
            .summary
            .interventions
            .iter()
            .filter(|i| i.action == Action::Rejected)
            .collect();
        assert!(!rejected.is_empty());
        assert!(rejected
            .iter()
            .all(|i| i.predicates == ["memorization.books"]));
        assert_rejections_not_emitted(&governed);
        assert_eq!(governed.summary.verdicts.reject as usize, rejected.len());
    }
}

#[test]
fn decompose_emits_a_candidate_that_satisfies_the_advisory_predicate() {
    let index = index_of(BOOKS);
    let governor = Governor::new(verbatim_bound(10, "advisory"), books_detectors(), None).unwrap();
    let mut model = ScriptModel::new(&[]).script_words(BOOKS, false);
    let governed = governor
        .generate(&mut model, "it was", &request(40))
        .unwrap();
    assert_eq!(governed.stop, Stop::Length);
    assert!(
        longest_run(&governed.text, &index) <= 10,
        "{}",
        governed.text
    );
    let replaced: Vec<_> = governed
        .summary
        .interventions
        .iter()
        .filter(|i| i.action == Action::Replaced)
        .collect();
    assert!(!replaced.is_empty());
    for i in &replaced {
        assert_eq!(governed.tokens[i.step], i.emitted.unwrap());
        assert_ne!(i.emitted, Some(i.candidate));
        assert_eq!(i.predicates, ["memorization.books"]);
    }
    assert!(governed.summary.verdicts.decompose > 0);

    // With no room to search, the original is emitted and the breach recorded.
    let governor = Governor::new(verbatim_bound(10, "advisory"), books_detectors(), None)
        .unwrap()
        .with_max_tries(1);
    let mut model = ScriptModel::new(&[]).script_words(BOOKS, false);
    let breached = governor
        .generate(&mut model, "it was", &request(40))
        .unwrap();
    let mut model = ScriptModel::new(&[]).script_words(BOOKS, false);
    let baseline = generate_ungoverned(&mut model, "it was", &request(40)).unwrap();
    assert_eq!(breached.tokens, baseline.tokens);
    assert!(breached
        .summary
        .interventions
        .iter()
        .any(|i| i.action == Action::AdvisoryBreach && i.emitted == Some(i.candidate)));
}

#[test]
fn a_bundle_with_an_attribute_the_runtime_lacks_is_refused_naming_it() {
    let bundle = admitted(
        "\"output.sentiment\" = { int = [0, 10] }",
        "[[predicate]]\nid = \"tone\"\ncategory = \"task\"\nrequire = \"output.sentiment <= 5\"\n",
    );
    let err = Governor::new(bundle, Detectors::default(), None).unwrap_err();
    assert!(matches!(err, DecodeError::Unsupported { .. }));
    assert!(err.to_string().contains("`output.sentiment`"), "{err}");

    // A verbatim bound without its class's index is refused too.
    let err = Governor::new(verbatim_bound(10, "strict"), Detectors::default(), None).unwrap_err();
    assert!(err.to_string().contains("output.verbatim.books"), "{err}");

    // A guardrail element with no detector is refused, naming the element.
    let bundle = admitted(
        "\"output.classes\" = { set = [\"pii\", \"violence\"] }",
        "[[predicate]]\nid = \"safety.no-violence\"\ncategory = \"safety\"\nrequire = \"not (output.classes contains 'violence')\"\n",
    );
    let detectors = Detectors {
        flaggers: Some(email_only()),
        ..Detectors::default()
    };
    let err = Governor::new(bundle, detectors, None).unwrap_err();
    assert!(
        err.to_string().contains("'violence' has no detector"),
        "{err}"
    );
}

#[test]
fn caller_attributes_are_required_and_checked() {
    let bundle = admitted(
        "\"caller.tier\" = { enum = [\"free\", \"verified\"], context = true }\n\"request.max_tokens\" = { int = [0, 4096], context = true }\n\"output.tokens\" = { int = [0, 100000] }",
        "[[predicate]]\nid = \"task.free-is-short\"\ncategory = \"task\"\nwhen = \"caller.tier == 'free'\"\nrequire = \"output.tokens <= 3\"\n",
    );
    let governor = Governor::new(bundle, Detectors::default(), None).unwrap();
    let mut model = ScriptModel::new(&[]).script_words(BOOKS, false);
    let err = governor
        .generate(&mut model, "it", &request(10))
        .unwrap_err();
    assert!(
        err.to_string().contains("`caller.tier`") && err.to_string().contains("not supplied"),
        "{err}"
    );
    let mut req = request(10);
    req.attributes.insert("caller.teir".into(), "free".into());
    let err = governor.generate(&mut model, "it", &req).unwrap_err();
    assert!(err.to_string().contains("`caller.teir`"), "{err}");

    let mut req = request(10);
    req.attributes.insert("caller.tier".into(), "root".into());
    let err = governor.generate(&mut model, "it", &req).unwrap_err();
    assert!(
        err.to_string()
            .contains("'root' is not one of free, verified"),
        "{err}"
    );

    let mut req = request(10);
    req.attributes.insert("caller.tier".into(), "free".into());
    let free = governor.generate(&mut model, "it", &req).unwrap();
    assert_eq!((free.tokens.len(), free.stop), (3, Stop::Policy));
    // request.max_tokens was filled from the call's max_tokens.
    assert_eq!(free.summary.attributes["request.max_tokens"], "10");
    req.attributes
        .insert("caller.tier".into(), "verified".into());
    let verified = governor.generate(&mut model, "it", &req).unwrap();
    assert_eq!((verified.tokens.len(), verified.stop), (10, Stop::Length));
    req.attributes
        .insert("request.max_tokens".into(), "11".into());
    let err = governor.generate(&mut model, "it", &req).unwrap_err();
    assert!(err.to_string().contains("max_tokens is 10"), "{err}");
}

#[test]
fn budgets_are_exact() {
    let bundle = || {
        admitted(
            "\"output.tokens\" = { int = [0, 100000] }",
            "[[predicate]]\nid = \"structural.max-length\"\ncategory = \"structural\"\nrequire = \"output.tokens <= 7\"\n",
        )
    };
    let governor = Governor::new(bundle(), Detectors::default(), None).unwrap();
    for max_tokens in [0, 1, 5, 7] {
        let mut model = ScriptModel::new(&[]).script_words(BOOKS, false);
        let g = governor
            .generate(&mut model, "it", &request(max_tokens))
            .unwrap();
        assert_eq!((g.tokens.len(), g.stop), (max_tokens, Stop::Length));
        // No forward beyond the last token needed: max_tokens - 1 incremental steps.
        assert_eq!(model.steps, max_tokens.saturating_sub(1));
        let mut model = ScriptModel::new(&[]).script_words(BOOKS, false);
        let u = generate_ungoverned(&mut model, "it", &request(max_tokens)).unwrap();
        assert_eq!(u.tokens.len(), max_tokens);
    }
    let mut model = ScriptModel::new(&[]).script_words(BOOKS, false);
    let g = governor.generate(&mut model, "it", &request(20)).unwrap();
    assert_eq!((g.tokens.len(), g.stop), (7, Stop::Policy));
    let refusal = g.summary.refusal.clone().unwrap();
    assert_eq!(refusal.predicates, ["structural.max-length"]);
    assert_eq!((refusal.step, refusal.tries), (7, governor.max_tries()));
    assert_rejections_not_emitted(&g);

    // The context limit ends the call too, exactly.
    let mut model = ScriptModel::new(&[]).script_words(BOOKS, false);
    model.context_limit = 4;
    let g = generate_ungoverned(&mut model, "it was", &request(20)).unwrap();
    assert_eq!((g.tokens.len(), g.stop), (2, Stop::Length));
}

#[test]
fn the_same_seed_and_prompt_give_the_same_output() {
    let sampler = |seed| Sampler::Sample {
        temperature: 1.0,
        top_k: Some(20),
        top_p: Some(0.95),
        seed,
    };
    let run = |seed| {
        let governor = Governor::new(verbatim_bound(9, "strict"), books_detectors(), None).unwrap();
        let mut model = ScriptModel::new(&[]).script_words(BOOKS, false);
        model.preference = 0.5;
        let req = Request {
            sampler: sampler(seed),
            ..request(30)
        };
        governor.generate(&mut model, "it", &req).unwrap().tokens
    };
    assert_eq!(run(7), run(7));
    assert!((8..12).any(|seed| run(seed) != run(7)));
}

fn secret_bundle() -> AdmittedBundle {
    admitted(
        "\"output.classes\" = { set = [\"secret\"] }",
        "[[predicate]]\nid = \"safety.no-secret\"\ncategory = \"safety\"\nrequire = \"not (output.classes contains 'secret')\"\n",
    )
}

#[test]
fn an_excluded_class_deny_fingerprint_steers_or_ends_the_call() {
    let deny = index_of(SECRET);
    let detectors = || Detectors {
        deny: BTreeMap::from([("secret".to_string(), index_of(SECRET))]),
        ..Detectors::default()
    };
    let mut model = ScriptModel::new(&[]).script_words(SECRET, true);
    let baseline = generate_ungoverned(&mut model, "the", &request(30)).unwrap();
    assert!(deny.overlap(&baseline.text).1 > 0);

    let governor = Governor::new(secret_bundle(), detectors(), None).unwrap();
    let mut model = ScriptModel::new(&[]).script_words(SECRET, true);
    let steered = governor.generate(&mut model, "the", &request(30)).unwrap();
    assert_eq!(steered.stop, Stop::Length);
    assert_eq!(deny.overlap(&steered.text).1, 0, "{}", steered.text);
    assert!(steered
        .summary
        .interventions
        .iter()
        .any(|i| i.predicates == ["safety.no-secret"]));
    assert_rejections_not_emitted(&steered);

    let governor = Governor::new(secret_bundle(), detectors(), None)
        .unwrap()
        .with_max_tries(1);
    let mut model = ScriptModel::new(&[]).script_words(SECRET, false);
    let ended = governor.generate(&mut model, "the", &request(30)).unwrap();
    assert_eq!(ended.stop, Stop::Policy);
    // The 8th word would complete the first secret gram.
    assert_eq!(ended.tokens.len(), 7);
    assert_eq!(
        ended.summary.refusal.unwrap().predicates,
        ["safety.no-secret"]
    );
}

fn email_only() -> FlaggerConfig {
    FlaggerConfig {
        email: true,
        phone: false,
        card: false,
        regexes: vec![],
        blocklist: BTreeSet::new(),
    }
}

#[test]
fn flaggers_on_the_tail_keep_pii_out_of_the_output() {
    let pii_bundle = admitted(
        "\"output.classes\" = { set = [\"pii\", \"ticket\"] }",
        "[[predicate]]\nid = \"safety.no-pii\"\ncategory = \"safety\"\nrequire = \"not (output.classes contains 'pii')\"\n[[predicate]]\nid = \"safety.no-ticket\"\ncategory = \"safety\"\nrequire = \"not (output.classes contains 'ticket')\"\n",
    );
    let mut flaggers = email_only();
    flaggers.regexes.push(RegexFlagger {
        id: "ticket".into(),
        pattern: "TICKET-[0-9]{3}".into(),
        regex: regex::Regex::new("TICKET-[0-9]{3}").unwrap(),
    });
    let detectors = Detectors {
        flaggers: Some(flaggers.clone()),
        ..Detectors::default()
    };
    let governor = Governor::new(pii_bundle, detectors, None).unwrap();
    let extra = [" jane", "@", "example", ".org", " TICKET-", "12", "3"];
    let script = [
        " jane", "@", "example", ".org", " zebra", " TICKET-", "12", "3", " zebra",
    ];
    let mut model = ScriptModel::new(&extra).script_tokens(&script);
    let baseline = generate_ungoverned(&mut model, "mail", &request(9)).unwrap();
    assert!(baseline.text.contains("jane@example.org") && baseline.text.contains("TICKET-123"));
    let mut model = ScriptModel::new(&extra).script_tokens(&script);
    let governed = governor.generate(&mut model, "mail", &request(9)).unwrap();
    assert!(!governed.text.contains("@example.org"), "{}", governed.text);
    assert!(!governed.text.contains("TICKET-123"), "{}", governed.text);
    let rejected: BTreeSet<(String, String)> = governed
        .summary
        .interventions
        .iter()
        .map(|i| (i.candidate_text.clone(), i.predicates.join(",")))
        .collect();
    assert!(rejected.contains(&(".org".to_string(), "safety.no-pii".to_string())));
    assert!(rejected.contains(&("3".to_string(), "safety.no-ticket".to_string())));
    assert_rejections_not_emitted(&governed);
}

#[test]
fn per_candidate_work_does_not_grow_with_the_output() {
    let bundle = admitted(
        &format!("{BOOKS_VOCAB}\n\"output.classes\" = {{ set = [\"pii\", \"secret\"] }}"),
        "[[predicate]]\nid = \"memorization.books\"\ncategory = \"safety\"\nrequire = \"output.verbatim.books <= 100000\"\n[[predicate]]\nid = \"safety.no-pii\"\ncategory = \"safety\"\nrequire = \"not (output.classes contains 'pii')\"\n",
    );
    let mut detectors = books_detectors();
    detectors.deny.insert("secret".into(), index_of(SECRET));
    detectors.flaggers = Some(FlaggerConfig {
        phone: true,
        card: true,
        ..email_only()
    });
    let governor = Governor::new(bundle, detectors, None).unwrap();
    let cycle = BOOKS.split(' ').count();
    let work = |n: usize| {
        let mut model = ScriptModel::new(&[]).script_words(BOOKS, false);
        let g = governor.generate(&mut model, "it", &request(n)).unwrap();
        assert_eq!(g.tokens.len(), n);
        assert!(g.summary.interventions.is_empty());
        g.summary.timing.unwrap().work_units
    };
    // Same phase of the scripted cycle, early (~100 tokens) and late (~10,000 tokens).
    let early = 4 * cycle;
    let late = early + (10_000 / cycle) * cycle;
    let span = 4 * cycle;
    let early_work = work(early + span) - work(early);
    let late_work = work(late + span) - work(late);
    assert!(early_work > 0);
    assert_eq!(
        early_work, late_work,
        "work per {span} tokens, early vs late"
    );
}

#[test]
fn the_call_record_hashes_the_texts_and_carries_the_summary() {
    let manifest = [0xab; 32];
    let governor = Governor::new(
        verbatim_bound_for(12, "strict", Some(manifest)),
        books_detectors(),
        Some(manifest),
    )
    .unwrap();
    let mut model = ScriptModel::new(&[]).script_words(BOOKS, false);
    let g = governor
        .generate(&mut model, "it was", &request(30))
        .unwrap();
    let record = call_record("it was", &g, false);
    // `printf "it was" | sha256sum`
    assert_eq!(
        record.prompt_sha256,
        "9994e4243d2bd61d47cfdae7e1c432439d6b40893b62d11fdf663a2d3dddc82c"
    );
    assert_ne!(record.prompt_sha256, record.output_sha256);
    assert!(record.prompt.is_none() && record.output.is_none());
    assert_eq!(record.summary.manifest_digest, Some(hex::encode(manifest)));
    assert_eq!(
        record.summary.bundle_version.as_deref(),
        Some(governor.bundle().version_id())
    );
    let json = serde_json::to_string(&record).unwrap();
    assert!(!json.contains("best of times"), "no text unless asked");
    let back: warden_decode::CallRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, record);
    let with_text = call_record("it was", &g, true);
    assert_eq!(with_text.output.as_deref(), Some(g.text.as_str()));
}

/// Measurement, not a check (tests never assert wall-clock time): governance time per token on a
/// 49,152-token vocabulary with a verbatim bound that intervenes, a deny index and the PII
/// flaggers. `cargo test --release -p warden-decode --test governed -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_governance_time_per_token() {
    let names: Vec<String> = (0..49_000).map(|i| format!(" w{i}")).collect();
    let extra: Vec<&str> = names.iter().map(String::as_str).collect();
    let bundle = admitted(
        &format!("{BOOKS_VOCAB}\n\"output.classes\" = {{ set = [\"pii\", \"secret\"] }}"),
        "[[predicate]]\nid = \"memorization.books\"\ncategory = \"safety\"\nrequire = \"output.verbatim.books <= 12\"\n[[predicate]]\nid = \"safety.no-pii\"\ncategory = \"safety\"\nrequire = \"not (output.classes contains 'pii')\"\n[[predicate]]\nid = \"safety.no-secret\"\ncategory = \"safety\"\nrequire = \"not (output.classes contains 'secret')\"\n",
    );
    let mut detectors = books_detectors();
    detectors.deny.insert("secret".into(), index_of(SECRET));
    detectors.flaggers = Some(FlaggerConfig {
        phone: true,
        card: true,
        ..email_only()
    });
    let governor = Governor::new(bundle, detectors, None).unwrap();
    let mut model = ScriptModel::new(&extra).script_words(BOOKS, false);
    println!("vocabulary {}", model.vocab_size());
    let g = governor.generate(&mut model, "it", &request(2000)).unwrap();
    let timing = g.summary.timing.unwrap();
    let mut steps = g.step_governance_ns.clone();
    steps.sort_unstable();
    let (p50, p99, max) = (
        steps[steps.len() / 2],
        steps[steps.len() * 99 / 100],
        steps[steps.len() - 1],
    );
    println!(
        "tokens {} interventions {} | governance per token: mean {} ns, p50 {p50} ns, p99 {p99} ns, max {max} ns | parts (total ns): fingerprints {}, flaggers {}, evaluate {}",
        g.tokens.len(),
        g.summary.interventions.len(),
        timing.per_token_ns,
        timing.fingerprint_ns,
        timing.flagger_ns,
        timing.evaluate_ns
    );
}

#[test]
fn a_bundle_is_refused_for_a_model_it_was_not_admitted_for() {
    let ours = [0xab; 32];
    let other = [0xcd; 32];
    let refused = |bundle, manifest| {
        Governor::new(bundle, books_detectors(), manifest)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    // Admitted against another run's manifest.
    let err = refused(verbatim_bound_for(12, "strict", Some(other)), Some(ours));
    assert!(err.starts_with("manifest: "), "{err}");
    // Admitted without a manifest: its predicates were not checked against this model's training.
    let err = refused(verbatim_bound_for(12, "strict", None), Some(ours));
    assert!(err.starts_with("manifest: "), "{err}");
    // Bound to a manifest, run on a model without one (a GGUF file).
    let err = refused(verbatim_bound_for(12, "strict", Some(ours)), None);
    assert!(err.contains("this model has no manifest"), "{err}");
    // The matching pairs load.
    assert!(Governor::new(
        verbatim_bound_for(12, "strict", Some(ours)),
        books_detectors(),
        Some(ours)
    )
    .is_ok());
    assert!(Governor::new(verbatim_bound(12, "strict"), books_detectors(), None).is_ok());
}
