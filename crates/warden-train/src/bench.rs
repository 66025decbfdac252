//! Measurements behind `warden bench train`, `warden bench memorization` and the model and
//! corpus of `warden bench regurgitation`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use warden_keys::{Role, SigningKey, TrustStore};

use crate::admitted::{load_canaries, Admitted};
use crate::config::TrainConfig;
use crate::data::AdmissionIndex;
use crate::trainer::{Canary, CanaryExposure, MemorySink, RecordSink, Timings, Trainer};
use crate::TrainError;

/// Writes the deterministic synthetic corpus at `scale` under `dir` and admits it with a fresh
/// corpus-authority key; returns the admitted corpus, its canaries and the trust store.
pub fn synthetic_corpus(
    dir: &Path,
    scale: f64,
) -> Result<(Arc<Admitted>, Vec<Canary>, TrustStore), TrainError> {
    let synth = dir.join("synth");
    let corpus_err = |e: warden_corpus::CorpusError| TrainError::Corpus(e.to_string());
    warden_corpus::synth::write(
        &synth,
        &warden_corpus::synth::SynthOptions {
            scale,
            ..Default::default()
        },
    )
    .map_err(corpus_err)?;
    let key = SigningKey::generate(Role::CorpusAuthority, "bench-corpus")
        .map_err(|e| TrainError::Internal(e.to_string()))?;
    let admitted_dir = dir.join("admitted");
    warden_corpus::admit(
        &synth.join("declaration.toml"),
        &admitted_dir,
        &key,
        &warden_corpus::AdmitOptions::default(),
    )
    .map_err(corpus_err)?;
    let mut trust = TrustStore::new();
    trust.add(Role::CorpusAuthority, key.public().clone());
    let corpus = Arc::new(Admitted::load(&admitted_dir, &trust)?);
    let canaries = load_canaries(&synth.join("canaries.json"))?;
    Ok((corpus, canaries, trust))
}

/// Governed vs ungoverned step times on the same batches.
pub struct OverheadReport {
    pub steps: u64,
    pub governed: Duration,
    pub ungoverned: Duration,
    /// Median over steps of governed/ungoverned step time.
    pub median_ratio: f64,
    pub timings: Timings,
    /// The ungoverned baseline's forward/backward and optimizer time.
    pub baseline: Timings,
    /// Depth groups (forward/backward passes) per governed step, on average.
    pub groups_per_step: f64,
}

/// Runs `steps` iterations twice from the same initialization — once through every gate (records
/// into `sink`; checkpoints, retained ones included, into `governed_run_dir` when given), once as
/// plain training — alternating which goes first, after `warmup` steps.
pub fn overhead(
    config: TrainConfig,
    corpus: Arc<dyn AdmissionIndex>,
    sink: &mut dyn RecordSink,
    governed_run_dir: Option<&Path>,
    warmup: u64,
    steps: u64,
) -> Result<OverheadReport, TrainError> {
    let mut governed = Trainer::new(
        config.clone(),
        corpus.clone(),
        governed_run_dir.map(Path::to_path_buf),
    )?;
    let mut plain = Trainer::new(config, corpus, None)?;
    let mut governed_time = Duration::ZERO;
    let mut plain_time = Duration::ZERO;
    let mut ratios = Vec::new();
    for step in 1..=warmup + steps {
        let mut run_governed = |g: &mut Trainer| -> Result<Duration, TrainError> {
            let t = Instant::now();
            g.iterate(sink)?;
            Ok(t.elapsed())
        };
        let (g, p) = if step % 2 == 0 {
            let g = run_governed(&mut governed)?;
            let t = Instant::now();
            plain.ungoverned_step(step)?;
            (g, t.elapsed())
        } else {
            let t = Instant::now();
            plain.ungoverned_step(step)?;
            let p = t.elapsed();
            (run_governed(&mut governed)?, p)
        };
        if step == warmup {
            governed.timings = Timings::default();
            plain.timings = Timings::default();
            governed.group_passes = 0;
        }
        if step > warmup {
            governed_time += g;
            plain_time += p;
            ratios.push(g.as_secs_f64() / p.as_secs_f64().max(1e-12));
        }
    }
    ratios.sort_by(f64::total_cmp);
    Ok(OverheadReport {
        steps,
        governed: governed_time,
        ungoverned: plain_time,
        median_ratio: ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN),
        timings: governed.timings.clone(),
        baseline: plain.timings.clone(),
        groups_per_step: governed.group_passes as f64 / steps.max(1) as f64,
    })
}

/// One trained model's memorization measurements.
pub struct MemorizationRow {
    pub exposures: Vec<(Canary, CanaryExposure)>,
    pub held_out_loss: f64,
    pub masked_spans: u64,
    pub seconds: f64,
}

/// Trains `config` for its steps and measures canary exposure, greedy extraction and held-out
/// loss on `held_out` source texts.
pub fn memorization_run(
    config: TrainConfig,
    corpus: Arc<dyn AdmissionIndex>,
    canaries: &[Canary],
    held_out_source: &str,
    candidates: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<MemorizationRow, TrainError> {
    let started = Instant::now();
    let mut trainer = Trainer::new(config, corpus.clone(), None)?;
    trainer.set_canaries_from_pool(canaries.to_vec());
    let mut sink = MemorySink::default();
    while trainer.iteration() < trainer.config.steps {
        trainer.iterate(&mut sink)?;
        // Records are not needed here; keep memory flat.
        sink.records.clear();
        progress(trainer.iteration());
    }
    let canaries = trainer.canaries().to_vec();
    let mut exposures = Vec::new();
    for (idx, canary) in canaries.iter().enumerate() {
        exposures.push((
            canary.clone(),
            trainer.canary_exposure(canary, candidates, idx as u64)?,
        ));
    }
    let idx = corpus
        .sources()
        .iter()
        .position(|s| s.id == held_out_source)
        .ok_or_else(|| TrainError::Corpus(format!("no source {held_out_source}")))?;
    let texts = corpus.read_source(idx as u32)?;
    let texts: Vec<&str> = texts.iter().take(256).map(|s| s.text.as_str()).collect();
    Ok(MemorizationRow {
        exposures,
        held_out_loss: trainer.mean_loss(&texts)?,
        masked_spans: trainer.counts().spans_masked_memorization,
        seconds: started.elapsed().as_secs_f64(),
    })
}

// ---------------------------------------------------------------------------------------------
// `warden bench regurgitation`: a corpus whose restricted-depth class the model memorizes.

/// The class of the documents the benchmark model memorizes (trained at a restricted depth).
pub const MEMORIZED_CLASS: &str = "licensed-lyrics";
/// The class trained at full depth, with a held-out source.
pub const DEEP_CLASS: &str = "public-prose";

/// Shape of the regurgitation corpus.
#[derive(Debug, Clone)]
pub struct RegurgitationOptions {
    pub seed: u64,
    /// Distinct documents of the memorized class.
    pub memorized_docs: usize,
    /// How many times each memorized document is written into its source (duplicates in a
    /// corpus are what models memorize).
    pub repeats: usize,
    /// How many of those copies are written in ALL CAPS (re-cased duplicates occur in real
    /// corpora; they teach the model to continue a re-cased prompt verbatim, re-cased).
    pub recased_repeats: usize,
    /// Documents of the deep class that are trained on.
    pub deep_docs: usize,
    /// Documents of the deep class in the held-out source (never trained on).
    pub heldout_docs: usize,
    /// Every memorized document is at least this long (bytes).
    pub min_doc_bytes: usize,
}

/// What [`regurgitation_corpus`] wrote.
#[derive(Debug, Clone)]
pub struct RegurgitationCorpus {
    pub declaration: std::path::PathBuf,
    /// The memorized class's distinct documents, in source order.
    pub memorized: Vec<String>,
    /// The held-out deep documents, in source order.
    pub heldout: Vec<String>,
}

// The two classes draw from disjoint vocabularies, as two genres do: a continuation of held-out
// prose that reproduces eight consecutive lyric words is then a real reproduction, not a
// coincidence of shared filler words. The lyric words are short, as real lyrics' are (mostly two
// to five letters): the inference bound counts fingerprint words, so how many bytes a bounded
// run spans depends on word length, and the benchmark should see a realistic one.
const LYRIC_WORDS: &[&str] = &[
    "love", "baby", "night", "heart", "you", "me", "my", "your", "so", "oh", "we", "all", "go",
    "now", "know", "feel", "way", "down", "home", "fire", "rain", "dance", "dream", "kiss", "hold",
    "light", "gone", "run", "fly", "cry", "sky", "blue", "gold", "stay", "fall", "wild", "sweet",
    "again", "never", "alone", "girl", "boy", "yeah", "hey", "slow", "high", "low", "moon", "star",
    "soul", "true", "lie", "cold", "burn", "shine", "ride", "free", "tears", "young", "lost",
    "call", "wait", "come", "back",
];
const PROSE_PERSON: &[&str] = &[
    "farmer",
    "baker",
    "teacher",
    "carpenter",
    "nurse",
    "fisherman",
    "mayor",
    "weaver",
    "potter",
    "surveyor",
    "clerk",
    "cook",
];
const PROSE_VERB: &[&str] = &[
    "mended", "carried", "painted", "counted", "sold", "repaired", "cleaned", "measured",
    "borrowed", "stacked", "ordered", "checked",
];
const PROSE_ADJ: &[&str] = &[
    "wooden", "rusty", "narrow", "heavy", "small", "green", "spare", "second", "cheap", "tall",
];
const PROSE_OBJECT: &[&str] = &[
    "fence",
    "barn door",
    "boat",
    "oven",
    "ledger",
    "roof",
    "cart",
    "ladder",
    "basket",
    "table",
    "kettle",
    "window",
];
const PROSE_PLACE: &[&str] = &[
    "near the market",
    "behind the school",
    "by the station",
    "at the harbor",
    "across the square",
    "beside the church",
    "in the workshop",
    "on the hill farm",
];
const PROSE_TIME: &[&str] = &[
    "on Tuesday",
    "before noon",
    "in the spring",
    "after the storm",
    "last winter",
    "every morning",
    "during the fair",
    "at harvest time",
];

fn pick<'a>(rng: &mut ChaCha20Rng, words: &[&'a str]) -> &'a str {
    words[rng.gen_range(0..words.len())]
}

/// A lyric of random words in comma-separated lines of 4 to 7 words, at least `min_bytes`
/// long, on one line (a text source splits documents at blank lines).
fn lyric(rng: &mut ChaCha20Rng, min_bytes: usize) -> String {
    let mut text = String::new();
    while text.len() < min_bytes {
        if !text.is_empty() {
            text.push_str(", ");
        }
        let n = rng.gen_range(4..8);
        let words: Vec<&str> = (0..n).map(|_| pick(rng, LYRIC_WORDS)).collect();
        text.push_str(&words.join(" "));
    }
    text.push('.');
    text
}

/// A paragraph of 3 to 5 templated sentences.
fn prose(rng: &mut ChaCha20Rng) -> String {
    let n = rng.gen_range(3..6);
    (0..n)
        .map(|_| {
            format!(
                "The {} {} the {} {} {} {}.",
                pick(rng, PROSE_PERSON),
                pick(rng, PROSE_VERB),
                pick(rng, PROSE_ADJ),
                pick(rng, PROSE_OBJECT),
                pick(rng, PROSE_PLACE),
                pick(rng, PROSE_TIME)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes the regurgitation corpus (three text sources and `declaration.toml`) into `dir`:
/// `lyrics.txt` (class [`MEMORIZED_CLASS`], declared depth `shallow`, every document written
/// `repeats` times, `recased_repeats` of them in ALL CAPS), `prose.txt` (class [`DEEP_CLASS`], depth `deep`) and
/// `heldout/prose-heldout.txt` (same class, `held_out = true`). Deterministic in `seed`.
pub fn regurgitation_corpus(
    dir: &Path,
    options: &RegurgitationOptions,
) -> Result<RegurgitationCorpus, TrainError> {
    if options.memorized_docs == 0 || options.repeats == 0 || options.heldout_docs == 0 {
        return Err(TrainError::Config(
            "regurgitation corpus: memorized documents, repeats and held-out documents must be at least 1".into(),
        ));
    }
    if options.recased_repeats > options.repeats {
        return Err(TrainError::Config(format!(
            "regurgitation corpus: {} re-cased copies of each document exceed its {} repeats",
            options.recased_repeats, options.repeats
        )));
    }
    let mut rng = ChaCha20Rng::seed_from_u64(options.seed);
    let memorized: Vec<String> = (0..options.memorized_docs)
        .map(|_| lyric(&mut rng, options.min_doc_bytes))
        .collect();
    let deep: Vec<String> = (0..options.deep_docs.max(1))
        .map(|_| prose(&mut rng))
        .collect();
    let heldout: Vec<String> = (0..options.heldout_docs).map(|_| prose(&mut rng)).collect();
    // Interleave the repeats (round by round) rather than writing copies side by side.
    let mut lyrics = String::new();
    for round in 0..options.repeats {
        let recased = round >= options.repeats - options.recased_repeats;
        for doc in &memorized {
            if recased {
                lyrics.push_str(&doc.to_ascii_uppercase());
            } else {
                lyrics.push_str(doc);
            }
            lyrics.push_str("\n\n");
        }
    }
    let joined = |docs: &[String]| docs.join("\n\n") + "\n";
    let heldout_dir = dir.join("heldout");
    std::fs::create_dir_all(&heldout_dir).map_err(|e| TrainError::io(&heldout_dir, e))?;
    crate::io::atomic_write(&dir.join("lyrics.txt"), lyrics.as_bytes())?;
    crate::io::atomic_write(&dir.join("prose.txt"), joined(&deep).as_bytes())?;
    crate::io::atomic_write(
        &heldout_dir.join("prose-heldout.txt"),
        joined(&heldout).as_bytes(),
    )?;
    let declaration = dir.join("declaration.toml");
    crate::io::atomic_write(&declaration, regurgitation_declaration(options).as_bytes())?;
    Ok(RegurgitationCorpus {
        declaration,
        memorized,
        heldout,
    })
}

fn regurgitation_declaration(options: &RegurgitationOptions) -> String {
    format!(
        r#"# The corpus of `warden bench regurgitation` (seed {seed}).

[corpus]
name = "warden-regurgitation"
description = "Song lyrics repeated {repeats} times each ({recased} of them in capitals; trained at a restricted depth) and templated prose with a held-out part."

[policy]
admitted_licenses = ["CC0-1.0", "CC-BY-4.0"]
excluded_classes = []

[[source]]
id = "lyrics"
path = "lyrics.txt"
format = "text"
license = "CC-BY-4.0"
class = "{memorized}"
depth = "shallow"
provenance = {{ origin = "warden bench regurgitation", collected = "2026-12-01", collector = "warden bench regurgitation", notes = "{n} random lyrics, each written {repeats} times" }}

[[source]]
id = "prose"
path = "prose.txt"
format = "text"
license = "CC0-1.0"
class = "{deep}"
depth = "deep"
provenance = {{ origin = "warden bench regurgitation", collected = "2026-12-01", collector = "warden bench regurgitation", notes = "templated prose" }}

[[source]]
id = "prose-heldout"
path = "heldout/prose-heldout.txt"
format = "text"
license = "CC0-1.0"
class = "{deep}"
depth = "deep"
held_out = true
provenance = {{ origin = "warden bench regurgitation", collected = "2026-12-01", collector = "warden bench regurgitation", notes = "held out: prompts for the false-refusal measurement" }}
"#,
        seed = options.seed,
        repeats = options.repeats,
        recased = options.recased_repeats,
        n = options.memorized_docs,
        memorized = MEMORIZED_CLASS,
        deep = DEEP_CLASS,
    )
}

/// The longest run of bytes of `output` that also occurs in `source`, comparing ASCII letters
/// case-insensitively (as the corpus fingerprints do): a re-cased reproduction counts.
pub fn longest_verbatim_run(output: &[u8], source: &[u8]) -> usize {
    // Longest common substring by dynamic programming over one row: O(|output|·|source|) time,
    // O(|source|) memory; both are a few hundred bytes here.
    let mut row = vec![0usize; source.len() + 1];
    let mut best = 0;
    for &a in output {
        let mut diagonal = 0;
        for (j, &b) in source.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if a.eq_ignore_ascii_case(&b) {
                diagonal + 1
            } else {
                0
            };
            best = best.max(row[j + 1]);
            diagonal = above;
        }
    }
    best
}

#[cfg(test)]
mod regurgitation_tests {
    use super::*;

    #[test]
    fn verbatim_run_is_the_longest_common_substring_ignoring_ascii_case() {
        assert_eq!(
            longest_verbatim_run(b"xxHELLO worldyy", b"say hello world!"),
            11
        );
        assert_eq!(longest_verbatim_run(b"abc", b"xyz"), 0);
        assert_eq!(longest_verbatim_run(b"", b"xyz"), 0);
        // Two separate matches: the longer one counts, not their sum.
        assert_eq!(longest_verbatim_run(b"abcd-wxyz12", b"abcd wxyz12"), 6);
    }

    #[test]
    fn corpus_is_deterministic_and_repeats_each_lyric() {
        let options = RegurgitationOptions {
            seed: 7,
            memorized_docs: 3,
            repeats: 3,
            recased_repeats: 1,
            deep_docs: 4,
            heldout_docs: 2,
            min_doc_bytes: 150,
        };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = regurgitation_corpus(a.path(), &options).unwrap();
        let second = regurgitation_corpus(b.path(), &options).unwrap();
        assert_eq!(first.memorized, second.memorized);
        assert!(first.memorized.iter().all(|d| d.len() >= 150));
        let lyrics = std::fs::read_to_string(a.path().join("lyrics.txt")).unwrap();
        for doc in &first.memorized {
            assert_eq!(lyrics.matches(doc.as_str()).count(), 2);
            assert_eq!(lyrics.matches(&doc.to_ascii_uppercase()).count(), 1);
        }
        let declaration =
            warden_corpus::Declaration::load(&first.declaration).expect("declaration parses");
        assert_eq!(declaration.sources.len(), 3);
    }
}
