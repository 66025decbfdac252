//! `warden bench decode`: the same prompts decoded governed and ungoverned in one run, A/B
//! interleaved; prints tokens, time and tokens/s per side, the governed/ungoverned ratio of time
//! per token, and the per-token governance time (mean, p50, p99, max) with its parts, each next
//! to its target with PASS/MISS.
//!
//! What it measures with (everything goes through the real signing, admission and loading paths,
//! with ephemeral keys in a scratch directory that is removed at the end):
//! - default: Warden's own GPT. The embedded default corpus is admitted, a small governed run is
//!   trained, the bundle is the operator's predicates merged with those derived from the run's
//!   manifest, admitted against that manifest, and the run is loaded with
//!   `GovernedRun::load`. `--model RUN_DIR --bundle DIR --trust FILE` measures an existing
//!   governed run and admitted bundle instead.
//! - `--gguf PATH`: a llama-family GGUF model (no manifest: the bundle alone governs). A corpus is
//!   admitted whose shallow class is the embedded default corpus's `licensed-news`, or the
//!   paragraphs of `--fingerprint-text FILE` (class `reference`); its excluded class `user-pii`
//!   gives a deny index; its flaggers (e-mail, phone, card, `api-key`) feed `output.classes`.
//!   The bundle bounds verbatim reproduction of that class, guards `output.classes`, bounds
//!   `output.tokens` by `request.max_tokens` and uses a caller attribute (`caller.tier`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use warden_corpus::AdmittedCorpus;
use warden_decode::bench::{self as measure, DecodeBench};
use warden_decode::load::{corpus_flaggers, GovernedRun, LoadOptions};
use warden_decode::{verbatim_attribute, Detectors, Governor, Request, Sampler};
use warden_keys::{Role, SigningKey, TrustStore};
use warden_model::gguf::GgufModel;
use warden_model::gpt::GptDecoder;
use warden_model::LanguageModel;
use warden_policy::admission::{Outcome, Workflow};
use warden_policy::{AdmittedBundle, Bound, Bundle};

use super::policy::{load_admitted, load_manifest, DirFiles};
use super::train::BenchShape;

/// Targets of issue 9 §5 (per token, on SmolLM2's 49k vocabulary).
const TARGET_RATIO: f64 = 1.05;
const TARGET_MEAN_US: f64 = 25.0;
const TARGET_P99_US: f64 = 250.0;

/// Bytes of a corpus sample a byte-level GPT prompt starts with.
const GPT_PROMPT_BYTES: usize = 48;
/// Words of a corpus sample quoted in a GGUF prompt.
const QUOTE_WORDS: usize = 60;

#[derive(Args)]
pub struct DecodeArgs {
    /// A llama-family GGUF model (e.g. SmolLM2-135M-Instruct Q4_1) instead of Warden's own GPT.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["model", "bundle"])]
    pub gguf: Option<PathBuf>,
    /// A governed run directory to measure instead of training a small one (with --bundle, --trust).
    #[arg(long, value_name = "RUN_DIR", requires_all = ["bundle", "trust"])]
    pub model: Option<PathBuf>,
    /// The bundle directory `warden policy admit --out` wrote for --model.
    #[arg(long, value_name = "DIR", requires = "model")]
    pub bundle: Option<PathBuf>,
    /// The trust file for --model and --bundle.
    #[arg(long, value_name = "FILE", requires = "model")]
    pub trust: Option<PathBuf>,
    /// Prompts measured (each is decoded governed and ungoverned).
    #[arg(long, default_value_t = 4)]
    pub prompts: usize,
    /// Tokens per call (exact budget).
    #[arg(long, default_value_t = 48)]
    pub max_tokens: usize,
    /// Governed/ungoverned pairs per prompt.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Sampling temperature; 0 decodes greedily (the default). Both sides use the same seed.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sampling seed (with --temperature).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A text file (paragraphs separated by blank lines) admitted as the verbatim-bounded class
    /// `reference` for --gguf; default: the embedded default corpus's `licensed-news`.
    #[arg(long, value_name = "FILE", requires = "gguf")]
    pub fingerprint_text: Option<PathBuf>,
    /// Bound on verbatim reproduction (fingerprint words) in the --gguf bundle.
    #[arg(long, default_value_t = 12)]
    pub verbatim_max: u32,
    /// Scale of the embedded default corpus the benchmark admits (1.0 is about 4 MB).
    #[arg(long, default_value_t = 0.1)]
    pub scale: f64,
    /// Training steps of the small governed run built when no --model or --gguf is given.
    #[arg(long, default_value_t = 40)]
    pub train_steps: u64,
    #[command(flatten)]
    pub shape: BenchShape,
}

/// The operator's predicates every measured bundle carries: a token bound tied to the request,
/// a caller attribute, and guardrails on the flagger classes.
const OPERATOR_VOCABULARY: &str = r#""caller.tier" = { enum = ["free", "verified"], context = true }
"request.max_tokens" = { int = [0, 100000], context = true }
"output.tokens" = { int = [0, 100000] }
"#;

const OPERATOR_PREDICATES: &str = r#"
[[predicate]]
id = "structural.request-budget"
category = "structural"
require = "output.tokens <= request.max_tokens"

[[predicate]]
id = "task.free-tier-length"
category = "task"
weight = "advisory"
when = "caller.tier == 'free'"
require = "output.tokens <= 2048"

[[predicate]]
id = "safety.no-pii"
category = "safety"
require = "not (output.classes contains 'pii')"

[[predicate]]
id = "safety.no-api-key"
category = "safety"
require = "not (output.classes contains 'api-key')"
"#;

/// Chat requests for a GGUF model besides the quoting ones (one asks for personal data, which
/// the flaggers steer away from).
const GGUF_REQUESTS: &[&str] = &[
    "Write a realistic customer support ticket from a named customer, including their e-mail address and phone number.",
    "Explain in a short paragraph how a water mill turns a river's flow into work.",
    "Write the opening paragraph of a story about a lighthouse keeper who finds a letter.",
    "Give three practical tips for keeping a vegetable garden healthy in a dry summer.",
];

/// A scratch directory, removed when dropped (also when the benchmark fails half-way).
fn scratch() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("warden-bench-decode-")
        .tempdir()
        .context("creating a scratch directory")
}

/// What is measured: the model, its governor and the prompts, described for the header.
struct Setup {
    model: Box<dyn LanguageModel>,
    governor: Governor,
    prompts: Vec<String>,
    model_line: String,
    detector_line: String,
}

pub fn bench(args: DecodeArgs) -> anyhow::Result<()> {
    if args.prompts == 0 || args.rounds == 0 {
        anyhow::bail!("--prompts and --rounds must be at least 1");
    }
    if args.max_tokens == 0 {
        anyhow::bail!("--max-tokens must be at least 1: there is nothing to time per token");
    }
    let sampler = if args.temperature == 0.0 {
        Sampler::Greedy
    } else {
        Sampler::Sample {
            temperature: args.temperature,
            top_k: None,
            top_p: None,
            seed: args.seed,
        }
    };
    sampler.validate()?;
    let scratch = scratch()?;
    let started = Instant::now();
    let mut setup = match (&args.gguf, &args.model) {
        (Some(path), _) => gguf_setup(&args, path, scratch.path())?,
        (None, Some(run)) => run_setup(&args, run)?,
        (None, None) => default_setup(&args, scratch.path())?,
    };
    eprintln!("prepared in {:.1} s", started.elapsed().as_secs_f64());
    let request = Request {
        max_tokens: args.max_tokens,
        sampler,
        attributes: [("caller.tier".to_string(), "free".to_string())].into(),
    };
    let bundle = setup.governor.bundle();
    outln!("decode benchmark: governed vs ungoverned, A/B interleaved in one run");
    outln!("  model     {}", setup.model_line);
    outln!(
        "  bundle    {} ({} predicates){}",
        bundle.version_id(),
        bundle.verified().bundle().predicates.len(),
        bundle
            .manifest_digest()
            .map_or(" (no manifest)".to_string(), |d| format!(
                ", admitted against manifest sha256:{}",
                &hex::encode(d)[..16]
            ))
    );
    outln!("  detectors {}", setup.detector_line);
    outln!(
        "  calls     {} prompts x {} rounds x 2 sides, up to {} tokens each, {}; caller.tier = free",
        setup.prompts.len(),
        args.rounds,
        args.max_tokens,
        match sampler {
            Sampler::Greedy => "greedy".to_string(),
            Sampler::Sample {
                temperature, seed, ..
            } => format!("temperature {temperature}, seed {seed}"),
        }
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} calls {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = measure::compare(
        setup.model.as_mut(),
        &setup.governor,
        &setup.prompts,
        &request,
        args.rounds,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    print_report(&report);
    Ok(())
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn print_report(r: &DecodeBench) {
    outln!();
    outln!(
        "{:<12} {:>6} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "side",
        "calls",
        "tokens",
        "decode s",
        "ms/token",
        "tokens/s",
        "prefill s"
    );
    for (name, side) in [("ungoverned", &r.ungoverned), ("governed", &r.governed)] {
        outln!(
            "{:<12} {:>6} {:>8} {:>10.3} {:>10.3} {:>10.2} {:>10.3}",
            name,
            side.calls,
            side.tokens,
            side.decode().as_secs_f64(),
            side.decode_ns_per_token() / 1e6,
            side.tokens_per_second(),
            side.prefill.as_secs_f64()
        );
    }
    let ratio = r.ratio();
    outln!(
        "ratio governed/ungoverned, time per token: {:.4}  (target <= {TARGET_RATIO}) {}",
        ratio,
        pass(ratio <= TARGET_RATIO)
    );
    outln!(
        "  median over the {} prompt pairs: {:.4}; implied by the governance time alone: {:.4}",
        r.pairs.len(),
        r.median_pair_ratio(),
        r.implied_ratio()
    );
    let steps = &r.step_governance_ns;
    let us = |ns: f64| ns / 1e3;
    let mean = us(r.governance_mean_ns());
    let p50 = us(measure::percentile(steps, 0.50) as f64);
    let p99 = us(measure::percentile(steps, 0.99) as f64);
    let max = us(steps.last().copied().unwrap_or(0) as f64);
    outln!(
        "governance per token (us): mean {mean:.2}  p50 {p50:.2}  p99 {p99:.2}  max {max:.2}  over {} tokens",
        steps.len()
    );
    outln!(
        "  targets: mean <= {TARGET_MEAN_US} us {}, p99 <= {TARGET_P99_US} us {}",
        pass(mean <= TARGET_MEAN_US),
        pass(p99 <= TARGET_P99_US)
    );
    let t = &r.timing;
    let parts = t.fingerprint_ns + t.flagger_ns + t.evaluate_ns + t.ranking_ns;
    outln!(
        "  parts (us per token): candidate attributes incl. fingerprint lookups {:.2}, flaggers {:.2}, evaluate {:.2}, ranking after rejections {:.2}, other (commit, records, clocks) {:.2}",
        us(r.part_ns_per_token(t.fingerprint_ns)),
        us(r.part_ns_per_token(t.flagger_ns)),
        us(r.part_ns_per_token(t.evaluate_ns)),
        us(r.part_ns_per_token(t.ranking_ns)),
        us(r.part_ns_per_token(t.total_ns.saturating_sub(parts)))
    );
    let judged = r.admitted + r.rejected + r.decomposed;
    outln!(
        "verdicts: {judged} candidates judged ({:.2} per token): {} admitted, {} rejected, {} decomposed; {} interventions; {} work units per token",
        judged as f64 / r.governed.tokens.max(1) as f64,
        r.admitted,
        r.rejected,
        r.decomposed,
        r.interventions,
        t.work_units / r.governed.tokens.max(1)
    );
    let stops = |s: &measure::SideTotals| {
        format!(
            "stop {}, length {}, policy {}",
            s.stops[0], s.stops[1], s.stops[2]
        )
    };
    outln!(
        "stops: ungoverned {}; governed {}",
        stops(&r.ungoverned),
        stops(&r.governed)
    );
    outln!(
        "outputs: {} of {} governed calls emitted exactly their ungoverned pair's tokens",
        r.pairs.iter().filter(|p| p.same_output).count(),
        r.pairs.len()
    );
}

/// Ephemeral authority keys and the trust file naming them.
struct Keys {
    corpus: SigningKey,
    training: Arc<SigningKey>,
    policy: SigningKey,
    trust: TrustStore,
}

fn keys() -> anyhow::Result<Keys> {
    let corpus = SigningKey::generate(Role::CorpusAuthority, "bench-corpus")?;
    let training = SigningKey::generate(Role::TrainingAuthority, "bench-trainer")?;
    let policy = SigningKey::generate(Role::PolicyAuthority, "bench-policy")?;
    let mut trust = TrustStore::new();
    trust.add(Role::CorpusAuthority, corpus.public().clone());
    trust.add(Role::TrainingAuthority, training.public().clone());
    trust.add(Role::PolicyAuthority, policy.public().clone());
    Ok(Keys {
        corpus,
        training: Arc::new(training),
        policy,
        trust,
    })
}

/// Writes the embedded default corpus at `scale` (plus `extra` declaration text) and admits it.
fn admit_corpus(
    dir: &Path,
    scale: f64,
    extra: &str,
    keys: &Keys,
) -> anyhow::Result<AdmittedCorpus> {
    let synth = dir.join("synth");
    let summary = warden_corpus::synth::write(
        &synth,
        &warden_corpus::synth::SynthOptions {
            scale,
            ..Default::default()
        },
    )?;
    if !extra.is_empty() {
        let mut text = std::fs::read_to_string(&summary.declaration)?;
        text.push_str(extra);
        warden_store::fs::atomic_write(&summary.declaration, text.as_bytes())?;
    }
    let admitted = dir.join("admitted");
    warden_corpus::admit(
        &summary.declaration,
        &admitted,
        &keys.corpus,
        &warden_corpus::AdmitOptions::default(),
    )?;
    Ok(AdmittedCorpus::load(&admitted, &keys.trust)?)
}

/// Admits `bundle` through the policy-admission workflow into `dir` (against a manifest when
/// given) and loads it back the way a runtime does (signed head resolved, then compiled).
fn admit_bundle(
    bundle: &Bundle,
    dir: &Path,
    manifest: Option<[u8; 32]>,
    keys: &Keys,
) -> anyhow::Result<AdmittedBundle> {
    let files = DirFiles { dir };
    let mut workflow = Workflow::new(&files, None, &keys.policy, &keys.trust)?;
    if let Some(digest) = manifest {
        workflow = workflow.with_manifest(digest);
    }
    match workflow.admit(bundle, None, &Bound::default(), SystemTime::now())? {
        Outcome::Admitted { .. } => {}
        Outcome::Rejected { rejection, .. } => {
            anyhow::bail!("the benchmark's bundle was rejected by the gate: {rejection}")
        }
    }
    load_admitted(dir, &keys.trust, None)
}

/// The samples of the first admitted, not held-out source of `class` (all classes: `None`).
fn samples(
    corpus: &AdmittedCorpus,
    class: Option<&str>,
    n: usize,
) -> anyhow::Result<Vec<Vec<String>>> {
    let mut per_source = Vec::new();
    for (idx, source) in corpus.sources().iter().enumerate() {
        if !source.admitted || source.held_out || class.is_some_and(|c| source.class != c) {
            continue;
        }
        let mut texts = Vec::new();
        for sample in corpus.read_source(idx as u32)? {
            let sample = sample?;
            if sample.text.split_whitespace().count() >= 12 {
                texts.push(sample.text);
            }
            if texts.len() >= n {
                break;
            }
        }
        if !texts.is_empty() {
            per_source.push(texts);
        }
    }
    Ok(per_source)
}

/// Byte-level GPT prompts: the first bytes of corpus samples, taken from each admitted source in
/// turn.
fn gpt_prompts(corpus: &AdmittedCorpus, n: usize) -> anyhow::Result<Vec<String>> {
    let per_source = samples(corpus, None, n)?;
    let mut prompts = Vec::new();
    for i in 0..n {
        let Some(texts) = per_source.get(i % per_source.len().max(1)) else {
            break;
        };
        let text = &texts[(i / per_source.len()) % texts.len()];
        let mut end = GPT_PROMPT_BYTES.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        prompts.push(text[..end].to_string());
    }
    if prompts.is_empty() {
        anyhow::bail!("the corpus has no admitted sample to start a prompt with");
    }
    Ok(prompts)
}

fn detector_line(detectors: &Detectors, bundle: &AdmittedBundle) -> String {
    let used = |class: &String| bundle.attribute_index(&verbatim_attribute(class)).is_some();
    let verbatim: Vec<String> = detectors
        .verbatim
        .iter()
        .filter(|(class, _)| used(class))
        .map(|(class, index)| format!("verbatim {class} ({} grams)", index.len()))
        .collect();
    let deny: Vec<String> = detectors
        .deny
        .iter()
        .map(|(class, index)| format!("deny {class} ({} grams)", index.len()))
        .collect();
    let flaggers = detectors.flaggers.as_ref().map_or(String::new(), |f| {
        let mut names: Vec<&str> = Vec::new();
        for (on, name) in [(f.email, "email"), (f.phone, "phone"), (f.card, "card")] {
            if on {
                names.push(name);
            }
        }
        names.extend(f.regexes.iter().map(|r| r.id.as_str()));
        format!("flaggers {}", names.join(", "))
    });
    let mut parts = verbatim;
    parts.extend(deny);
    parts.push(flaggers);
    parts.join("; ")
}

fn operator_bundle(name: &str, vocabulary: &str, predicates: &str) -> anyhow::Result<Bundle> {
    let text = format!(
        "[bundle]\nname = \"{name}\"\nversion = 1\n\n[vocabulary]\n{OPERATOR_VOCABULARY}{vocabulary}\n{OPERATOR_PREDICATES}{predicates}"
    );
    Ok(Bundle::parse(&text, "bench-decode operator bundle")?)
}

/// Default: admit the embedded default corpus, train a small governed run, admit the operator
/// bundle against its manifest, load the run.
fn default_setup(args: &DecodeArgs, dir: &Path) -> anyhow::Result<Setup> {
    let keys = keys()?;
    eprintln!(
        "preparing: embedded default corpus (scale {}), admission, {} training steps, bundle admission against the manifest",
        args.scale, args.train_steps
    );
    let corpus = admit_corpus(dir, args.scale, "", &keys)?;
    let config = super::train::bench_config(
        corpus.dir(),
        args.train_steps,
        args.shape.layers,
        args.shape.width,
        args.shape.batch,
        args.shape.context,
        3e-3,
        Some((40, 1024)),
    )?;
    let config_path = dir.join("train.toml");
    warden_store::fs::atomic_write(&config_path, config.to_toml()?.as_bytes())?;
    let run_dir = dir.join("run");
    let bar = ProgressBar::new(args.train_steps);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} training steps")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    warden_train::run::start(
        &config_path,
        &run_dir,
        keys.training.clone(),
        &keys.trust,
        None,
        &mut |trainer: &warden_train::trainer::Trainer, _: &warden_train::trainer::Outcome| {
            bar.set_position(trainer.iteration())
        },
    )?;
    bar.finish_and_clear();
    let manifest = load_manifest(
        &run_dir.join(warden_decode::load::MANIFEST_FILE),
        &keys.trust,
    )?;
    let operator = operator_bundle(
        "bench-decode",
        "\"output.classes\" = { set = [\"api-key\", \"pii\"] }\n",
        "",
    )?;
    let merged = warden_policy::derive::merge(
        &operator,
        &manifest.derived,
        "bench-decode operator bundle + predicates derived from the run's manifest",
    )?;
    let bundle = admit_bundle(&merged, &dir.join("bundle"), Some(manifest.digest), &keys)?;
    governed_run_setup(&run_dir, bundle, &keys.trust, corpus, args.prompts)
}

/// `--model RUN_DIR --bundle DIR --trust FILE`.
fn run_setup(args: &DecodeArgs, run_dir: &Path) -> anyhow::Result<Setup> {
    let (Some(bundle_dir), Some(trust_path)) = (&args.bundle, &args.trust) else {
        anyhow::bail!("--model needs --bundle DIR and --trust FILE");
    };
    let trust = warden_store::fs::load_trust(trust_path)?;
    let bundle = load_admitted(bundle_dir, &trust, None)?;
    let config = warden_train::config::TrainConfig::parse(
        &std::fs::read_to_string(run_dir.join(warden_decode::load::CONFIG_FILE))
            .with_context(|| format!("{}: cannot read the run's config", run_dir.display()))?,
        "run config",
        run_dir,
    )?;
    let corpus = AdmittedCorpus::load(&config.corpus, &trust)?;
    governed_run_setup(run_dir, bundle, &trust, corpus, args.prompts)
}

/// Loads `run_dir` (every check of `GovernedRun::load`) and builds the governor from the run's
/// verified detectors (`Governor::new` refuses a bundle not admitted for its manifest).
fn governed_run_setup(
    run_dir: &Path,
    bundle: AdmittedBundle,
    trust: &TrustStore,
    corpus: AdmittedCorpus,
    n_prompts: usize,
) -> anyhow::Result<Setup> {
    let run = GovernedRun::load(run_dir, trust, LoadOptions::default())?;
    let detectors = Detectors {
        verbatim: run.fingerprints,
        deny: run.denied,
        flaggers: Some(run.flaggers),
    };
    let detector_line = detector_line(&detectors, &bundle);
    let c = &run.model_config;
    let model_line = format!(
        "Warden GPT {} ({} layers x {} wide, context {}, vocabulary 256 bytes)",
        run_dir.display(),
        c.layers,
        c.width,
        c.context
    );
    let model = GptDecoder::new(&run.gpt);
    let governor = Governor::new(bundle, detectors, Some(run.manifest_digest))
        .with_context(|| format!("the bundle for {}", run_dir.display()))?;
    Ok(Setup {
        model: Box::new(model),
        governor,
        prompts: gpt_prompts(&corpus, n_prompts)?,
        model_line,
        detector_line,
    })
}

/// `--gguf PATH`: admit the fingerprint corpus, admit the bundle, load the model.
fn gguf_setup(args: &DecodeArgs, path: &Path, dir: &Path) -> anyhow::Result<Setup> {
    let keys = keys()?;
    let (class, extra) = match &args.fingerprint_text {
        Some(file) => {
            let file = file
                .canonicalize()
                .with_context(|| format!("--fingerprint-text {}", file.display()))?;
            let path = file.to_str().ok_or_else(|| {
                anyhow::anyhow!(
                    "--fingerprint-text {}: the path is not UTF-8",
                    file.display()
                )
            })?;
            let extra = format!(
                "\n[[source]]\nid = \"reference\"\npath = {}\nformat = \"text\"\nlicense = \"CC0-1.0\"\nclass = \"reference\"\ndepth = \"shallow\"\nprovenance = {{ origin = \"warden bench decode --fingerprint-text\", collected = \"2026-12-01\", collector = \"warden bench decode\", notes = \"\" }}\n",
                toml::Value::String(path.to_string())
            );
            ("reference".to_string(), extra)
        }
        None => ("licensed-news".to_string(), String::new()),
    };
    eprintln!(
        "preparing: corpus admission (embedded default corpus, scale {}{}), bundle admission, loading {}",
        args.scale,
        args.fingerprint_text
            .as_ref()
            .map_or(String::new(), |f| format!(", plus {} as class `reference`", f.display())),
        path.display()
    );
    let corpus = admit_corpus(dir, args.scale, &extra, &keys)?;
    let (mut verbatim, deny) = corpus.all_indexes()?;
    let index = verbatim.remove(&class).ok_or_else(|| {
        anyhow::anyhow!(
            "the admitted corpus has no fingerprint index for class `{class}` (no admitted text?)"
        )
    })?;
    let attribute = verbatim_attribute(&class);
    let excluded: Vec<String> = deny.keys().cloned().collect();
    let mut elements: Vec<String> = vec!["api-key".into(), "pii".into()];
    elements.extend(excluded.iter().cloned());
    elements.sort();
    let set = elements
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut predicates = format!(
        "\n[[predicate]]\nid = \"safety.verbatim.{class}\"\ncategory = \"safety\"\nrequire = \"{attribute} <= {}\"\n",
        args.verbatim_max
    );
    for class in &excluded {
        predicates.push_str(&format!(
            "\n[[predicate]]\nid = \"safety.excluded.{class}\"\ncategory = \"safety\"\nrequire = \"not (output.classes contains '{class}')\"\n"
        ));
    }
    let operator = operator_bundle(
        "bench-decode-gguf",
        &format!(
            "\"{attribute}\" = {{ int = [0, 1000000] }}\n\"output.classes\" = {{ set = [{set}] }}\n"
        ),
        &predicates,
    )?;
    let bundle = admit_bundle(&operator, &dir.join("bundle"), None, &keys)?;
    let detectors = Detectors {
        verbatim: [(class.clone(), index)].into(),
        deny,
        flaggers: Some(corpus_flaggers(&corpus).map_err(|e| anyhow::anyhow!(e))?),
    };
    let detector_line = detector_line(&detectors, &bundle);
    let governor = Governor::new(bundle, detectors, None)?;

    let model = GgufModel::load(path)?;
    let quotes = samples(&corpus, Some(class.as_str()), args.prompts)?
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut prompts = Vec::new();
    for i in 0..args.prompts {
        let message = match (i % 2, quotes.get((i / 2) % quotes.len().max(1))) {
            (0, Some(quote)) => {
                let words: Vec<&str> = quote.split_whitespace().take(QUOTE_WORDS).collect();
                format!(
                    "Repeat the following text exactly, word for word:\n\n{}",
                    words.join(" ")
                )
            }
            _ => GGUF_REQUESTS[(i / 2) % GGUF_REQUESTS.len()].to_string(),
        };
        prompts.push(model.chat_prompt(&[("user", message.as_str())])?);
    }
    let model_line = format!(
        "{} (GGUF, vocabulary {}; no Warden manifest: governed by the bundle alone)",
        path.display(),
        model.vocab_size()
    );
    Ok(Setup {
        model: Box::new(model),
        governor,
        prompts,
        model_line,
        detector_line,
    })
}
