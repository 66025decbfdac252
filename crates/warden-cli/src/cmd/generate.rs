//! `warden generate`: one governed completion from a verified model under an admitted bundle,
//! optionally recorded as a `call.generate` lineage record; and the demo's decoding stage.
//!
//! Wiring only: the model is loaded by `warden_decode::load` (Warden run) or
//! `warden_model::gguf` (GGUF), the bundle by the policy admission directory rules
//! (`policy::load_admitted`), the loop and the record payload are `warden_decode`'s.
//!
//! Output contract (scripts depend on it): stdout carries the continuation's bytes exactly as
//! the model emitted them — nothing before, nothing after, no newline added (a token may end
//! inside a UTF-8 character, so the bytes are written as they are, not re-encoded). Everything
//! else goes to stderr. With `--json` stdout is one JSON object instead (its `text` is the lossy
//! UTF-8 view of the bytes; `output_sha256` is over the bytes). A call the policy stopped is
//! a successful command (stop reason `policy`); only errors exit non-zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{ArgGroup, Args};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use warden_decode::load::{GovernedRun, LoadOptions};
use warden_decode::{
    call_record, generate_ungoverned, Action, Detectors, Generation, Governor, Request, Sampler,
    CALL_GENERATE_KIND,
};
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::RecordDraft;
use warden_model::gguf::GgufModel;
use warden_model::gpt::GptDecoder;
use warden_model::{LanguageModel, ModelError};
use warden_store::{fs, Lineage, StoreOptions};

use super::policy::{load_admitted, LineageLog};

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["model", "gguf"])))]
#[command(group(ArgGroup::new("governance").required(true).args(["bundle", "ungoverned"])))]
pub struct GenerateArgs {
    /// A Warden training run directory: loaded only after its manifest (training authority),
    /// weights digest, lineage point and corpus verify through the trust file.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: Option<PathBuf>,
    /// A llama-family GGUF model. It has no Warden manifest: the bundle alone governs it, and
    /// the prompt is a user chat message rendered through the model's chat template.
    #[arg(long, value_name = "PATH")]
    pub gguf: Option<PathBuf>,
    /// An admitted bundle directory (`warden policy admit --out DIR`); for --model it must have
    /// been admitted with --manifest against this run's manifest.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// No bundle judges the call: the baseline for comparisons. Warns, and records nothing.
    #[arg(long)]
    pub ungoverned: bool,
    /// Trust file (training, policy and deployment authorities).
    #[arg(long, value_name = "FILE")]
    pub trust: PathBuf,
    /// The prompt: plain text for --model; one user chat message for --gguf.
    #[arg(long, value_name = "TEXT")]
    pub prompt: String,
    /// Most tokens to emit (exact).
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 or absent is greedy decoding.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Seed of the sampler (same seed and prompt, same output); unused when greedy.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sample only among the k most probable tokens (needs --temperature > 0).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only from the nucleus of this probability mass (needs --temperature > 0).
    #[arg(long)]
    pub top_p: Option<f32>,
    /// A caller or request attribute the bundle declares, `caller.tier=gold` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Candidates judged per step before the call ends with stop reason `policy`.
    #[arg(long, default_value_t = 32)]
    pub max_tries: usize,
    /// Append one `call.generate` record to this lineage (created if missing), signed by --key.
    #[arg(long, value_name = "DIR", requires = "key")]
    pub lineage: Option<PathBuf>,
    /// The deployment-authority private key that signs the record.
    #[arg(long, value_name = "FILE", requires = "lineage")]
    pub key: Option<PathBuf>,
    /// Put the prompt and output text in the record (by default only their SHA-256).
    #[arg(long, requires = "lineage")]
    pub record_text: bool,
    /// The lineage the run's manifest points into, when it moved from where training wrote it.
    #[arg(long, value_name = "DIR")]
    pub run_lineage: Option<PathBuf>,
    /// One JSON object on stdout (text, stop, summary, ...) instead of the bare continuation.
    #[arg(long)]
    pub json: bool,
}

/// A GGUF model whose prompts are user chat messages: `encode` renders the text as one user
/// turn through the file's chat template (roles and content encoded as plain text, so a
/// prompt holding `<|im_end|>` cannot close its turn) and opens the assistant turn.
pub struct ChatGguf(pub GgufModel);

impl LanguageModel for ChatGguf {
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    fn token_bytes(&self, id: u32) -> &[u8] {
        self.0.token_bytes(id)
    }
    fn eos(&self) -> Option<u32> {
        self.0.eos()
    }
    fn context_limit(&self) -> usize {
        self.0.context_limit()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.0.chat_prompt_ids(&[("user", text)])
    }
    fn start(&mut self, prompt: &[u32]) -> Result<Vec<f32>, ModelError> {
        self.0.start(prompt)
    }
    fn step(&mut self, token: u32) -> Result<Vec<f32>, ModelError> {
        self.0.step(token)
    }
}

/// A loaded model, what identifies it in a record, and what its governor detects with.
struct Loaded {
    model: Box<dyn LanguageModel>,
    /// SHA-256 of the run's manifest file (Warden runs only).
    manifest_digest: Option<[u8; 32]>,
    detectors: Detectors,
    /// `{"kind": "warden-run", "manifest_sha256"}` or `{"kind": "gguf", "file", "sha256"}`.
    identity: serde_json::Value,
}

fn load_model(args: &GenerateArgs, trust: &TrustStore) -> anyhow::Result<Loaded> {
    if let Some(run_dir) = &args.model {
        let run = GovernedRun::load(
            run_dir,
            trust,
            LoadOptions {
                lineage: args.run_lineage.clone(),
            },
        )
        .with_context(|| format!("{}: the model is refused", run_dir.display()))?;
        let decoder = GptDecoder::new(&run.gpt);
        return Ok(Loaded {
            model: Box::new(decoder),
            manifest_digest: Some(run.manifest_digest),
            identity: json!({
                "kind": "warden-run",
                "manifest_sha256": hex::encode(run.manifest_digest),
            }),
            detectors: Detectors {
                verbatim: run.fingerprints,
                deny: run.denied,
                flaggers: Some(run.flaggers),
            },
        });
    }
    let Some(path) = &args.gguf else {
        anyhow::bail!("give --model RUN_DIR or --gguf PATH");
    };
    let model = GgufModel::load(path)?;
    eprintln!(
        "{}: no Warden manifest: governed by the bundle alone",
        path.display()
    );
    let sha256 = sha256_file(path)?;
    Ok(Loaded {
        model: Box::new(ChatGguf(model)),
        manifest_digest: None,
        identity: json!({
            "kind": "gguf",
            "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "sha256": sha256,
        }),
        detectors: Detectors::default(),
    })
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

/// The governor for `bundle_dir`: the head of the admitted directory (checked against the
/// lineage's later admissions when one is open), bound to the model's manifest.
fn governor(
    bundle_dir: &Path,
    trust: &TrustStore,
    log: Option<&LineageLog<'_>>,
    manifest_digest: Option<[u8; 32]>,
    detectors: Detectors,
    max_tries: usize,
) -> anyhow::Result<Governor> {
    let bundle = load_admitted(bundle_dir, trust, log.map(|l| l as _))?;
    // Governor::new refuses a bundle admitted for another manifest (or bound to one when the
    // model has none) and any attribute the runtime cannot provide.
    let governor = Governor::new(bundle, detectors, manifest_digest).map_err(|e| {
        let what = match e {
            warden_decode::DecodeError::Manifest(_) => "refused for this model",
            _ => "refused at load",
        };
        anyhow::Error::new(e).context(format!("{}: {what}", bundle_dir.display()))
    })?;
    Ok(governor.with_max_tries(max_tries))
}

/// `--set NAME=VALUE` items as attributes; a repeated name is an error.
fn attributes(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        let (name, value) = item
            .split_once('=')
            .with_context(|| format!("--set {item}: expected NAME=VALUE"))?;
        let name = name.trim().to_string();
        if out.insert(name.clone(), value.trim().to_string()).is_some() {
            anyhow::bail!("--set {name}: given twice");
        }
    }
    Ok(out)
}

fn sampler(args: &GenerateArgs) -> anyhow::Result<Sampler> {
    match args.temperature {
        None | Some(0.0) => greedy(args),
        Some(temperature) => {
            let sampler = Sampler::Sample {
                temperature,
                top_k: args.top_k,
                top_p: args.top_p,
                seed: args.seed,
            };
            sampler.validate()?;
            Ok(sampler)
        }
    }
}

fn greedy(args: &GenerateArgs) -> anyhow::Result<Sampler> {
    if args.top_k.is_some() || args.top_p.is_some() {
        anyhow::bail!("--top-k and --top-p need --temperature > 0 (greedy decoding takes the most probable token)");
    }
    Ok(Sampler::Greedy)
}

/// The deployment-authority key, checked against the trust file before anything is written.
fn deployment_key(path: &Path, trust: &TrustStore) -> anyhow::Result<Arc<SigningKey>> {
    let key = fs::load_signing_key(path)?;
    if key.role() != Role::DeploymentAuthority {
        anyhow::bail!(
            "{}: key {} is a {} key; call records are signed by the deployment-authority",
            path.display(),
            key.key_ref(),
            key.role()
        );
    }
    trust
        .trusted_for(&key.key_ref(), Role::DeploymentAuthority)
        .with_context(|| format!("{}: not trusted by the trust file", path.display()))?;
    Ok(Arc::new(key))
}

/// One call: governed if a governor is given. Returns the generation and its wall time.
fn call(
    governor: Option<&Governor>,
    model: &mut dyn LanguageModel,
    prompt: &str,
    request: &Request,
) -> anyhow::Result<(Generation, Duration)> {
    let started = Instant::now();
    let generation = match governor {
        Some(governor) => governor.generate(model, prompt, request)?,
        None => generate_ungoverned(model, prompt, request)?,
    };
    Ok((generation, started.elapsed()))
}

/// The `call.generate` payload: `warden_decode::CallRecord` plus the model's identity.
fn record_payload(
    prompt: &str,
    generation: &Generation,
    include_text: bool,
    identity: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let mut payload = serde_json::to_value(call_record(prompt, generation, include_text))?;
    if let Some(object) = payload.as_object_mut() {
        object.insert("model".into(), identity.clone());
    }
    Ok(payload)
}

fn append_record(
    lineage: &Lineage,
    key: &Arc<SigningKey>,
    payload: serde_json::Value,
    bundle_version: Option<&str>,
) -> anyhow::Result<u64> {
    let mut draft = RecordDraft::new(CALL_GENERATE_KIND, payload);
    if let Some(version) = bundle_version {
        draft = draft.with_policy_version(version.to_string());
    }
    Ok(lineage.append(draft, key)?.index)
}

fn tokens_per_second(generation: &Generation, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        generation.tokens.len() as f64 / secs
    } else {
        0.0
    }
}

/// The human summary of a call, one line per item (stderr for the command, stdout in the demo).
pub fn summary_lines(generation: &Generation, elapsed: Duration) -> Vec<String> {
    let summary = &generation.summary;
    let mut lines = Vec::new();
    let stop = match &summary.refusal {
        Some(refusal) => format!("stop: policy ({})", refusal.message),
        None => format!("stop: {}", generation.stop.as_str()),
    };
    lines.push(stop);
    lines.push(format!(
        "tokens: {} (prompt {}) in {:.3} s: {:.0} tokens/s",
        summary.tokens,
        summary.prompt_tokens,
        elapsed.as_secs_f64(),
        tokens_per_second(generation, elapsed)
    ));
    if !summary.governed {
        lines.push("ungoverned: no verdicts".into());
        return lines;
    }
    if let (Some(bundle), Some(version)) = (&summary.bundle, &summary.bundle_version) {
        let manifest = summary
            .manifest_digest
            .as_deref()
            .map_or("no manifest".to_string(), |d| {
                format!("manifest sha256:{d}")
            });
        lines.push(format!("bundle: {bundle} ({version}), {manifest}"));
    }
    let v = summary.verdicts;
    lines.push(format!(
        "verdicts: admit {}, reject {}, decompose {}",
        v.admit, v.reject, v.decompose
    ));
    if let Some(timing) = summary.timing {
        let per_token = |ns: u64| {
            if summary.tokens == 0 {
                0.0
            } else {
                ns as f64 / summary.tokens as f64 / 1e3
            }
        };
        lines.push(format!(
            "governance: {:.1} µs/token (fingerprints {:.1}, flaggers {:.1}, evaluate {:.1})",
            timing.per_token_ns as f64 / 1e3,
            per_token(timing.fingerprint_ns),
            per_token(timing.flagger_ns),
            per_token(timing.evaluate_ns)
        ));
    }
    lines.push(format!("interventions: {}", summary.interventions.len()));
    // Every intervention, one line per run of same-step, same-action, same-predicate ones (a
    // policy stop rejects every candidate tried at its step for the same reason).
    let mut idx = 0;
    while idx < summary.interventions.len() {
        let first = &summary.interventions[idx];
        let mut candidates = Vec::new();
        let mut end = idx;
        while let Some(i) = summary.interventions.get(end) {
            if i.step != first.step || i.action != first.action || i.predicates != first.predicates
            {
                break;
            }
            candidates.push(format!("{} {:?}", i.candidate, i.candidate_text));
            end += 1;
            if first.action != Action::Rejected {
                break;
            }
        }
        let action = match (first.action, first.emitted) {
            (Action::Rejected, _) => "rejected".to_string(),
            (Action::Replaced, Some(emitted)) => format!("replaced by token {emitted}"),
            (Action::Replaced, None) => "replaced".to_string(),
            (Action::AdvisoryBreach, _) => "emitted (advisory breach)".to_string(),
        };
        lines.push(format!(
            "  step {}: token{} {} {action} by {}",
            first.step,
            if candidates.len() > 1 { "s" } else { "" },
            candidates.join(", "),
            first.predicates.join(", ")
        ));
        idx = end;
    }
    lines
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if args.ungoverned && args.lineage.is_some() {
        anyhow::bail!(
            "--ungoverned records nothing: drop --lineage (a baseline call is not a governed call)"
        );
    }
    let trust = fs::load_trust(&args.trust)?;
    let request = Request {
        max_tokens: args.max_tokens,
        sampler: sampler(&args)?,
        attributes: attributes(&args.set)?,
    };
    // The signer and the lineage are checked before the model runs, so a call that cannot be
    // recorded is never made.
    let recorder = match (&args.lineage, &args.key) {
        (Some(dir), Some(key_path)) => {
            let key = deployment_key(key_path, &trust)?;
            let lineage = Lineage::open_or_create(
                dir,
                StoreOptions::new("warden.local/lineage").with_trust(Arc::new(trust.clone())),
            )?;
            Some((lineage, key, dir.clone()))
        }
        _ => None,
    };
    let result = run_with(&args, &trust, &request, recorder.as_ref());
    // Sealed whatever happened; the call's own error, if any, is the one reported.
    let closed = match &recorder {
        Some((lineage, _, _)) => lineage.close(),
        None => Ok(()),
    };
    result?;
    Ok(closed?)
}

fn run_with(
    args: &GenerateArgs,
    trust: &TrustStore,
    request: &Request,
    recorder: Option<&(Lineage, Arc<SigningKey>, PathBuf)>,
) -> anyhow::Result<()> {
    let mut loaded = load_model(args, trust)?;
    let log = recorder.map(|(lineage, key, _)| LineageLog::Append { lineage, key });
    let governor = match &args.bundle {
        Some(dir) => Some(governor(
            dir,
            trust,
            log.as_ref(),
            loaded.manifest_digest,
            std::mem::take(&mut loaded.detectors),
            args.max_tries,
        )?),
        None => {
            eprintln!("warning: --ungoverned: no bundle judges this call and nothing is recorded (a baseline for comparisons)");
            None
        }
    };
    let (generation, elapsed) = call(
        governor.as_ref(),
        loaded.model.as_mut(),
        &args.prompt,
        request,
    )?;
    // Recorded before it is shown: an output the lineage does not hold is never handed out.
    let record = match recorder {
        Some((lineage, key, dir)) => {
            let payload = record_payload(
                &args.prompt,
                &generation,
                args.record_text,
                &loaded.identity,
            )?;
            let index = append_record(
                lineage,
                key,
                payload,
                generation.summary.bundle_version.as_deref(),
            )
            .with_context(|| format!("{}: recording the call", dir.display()))?;
            // Sealed (fsync, signed checkpoint) before the output is shown: a kill after the
            // print must not leave the call's record unauthenticated.
            lineage
                .checkpoint()
                .with_context(|| format!("{}: sealing the call's record", dir.display()))?;
            Some(index)
        }
        None => None,
    };
    if args.json {
        let object = json!({
            "text": generation.text,
            "stop": generation.stop,
            "output_sha256": hex::encode(Sha256::digest(&generation.bytes)),
            "tokens_per_second": tokens_per_second(&generation, elapsed),
            "record": record,
            "model": loaded.identity,
            "summary": generation.summary,
        });
        outln!("{}", serde_json::to_string(&object)?);
    } else {
        crate::out::write_bytes(&generation.bytes);
    }
    if args.json {
        return Ok(());
    }
    for line in summary_lines(&generation, elapsed) {
        eprintln!("{line}");
    }
    if let (Some(index), Some((_, _, dir))) = (record, recorder) {
        eprintln!(
            "recorded as lineage record {index} ({CALL_GENERATE_KIND}) in {}",
            dir.display()
        );
    }
    Ok(())
}

/// The demo's operator bundle: free callers get short answers; nobody gets an e-mail address,
/// phone or card number (the corpus flaggers, run on the output).
const DEMO_BUNDLE: &str = r#"# The demo assistant's operator policy (the manifest's predicates are merged in at admission).
[bundle]
name = "demo-assistant"
version = 1

[vocabulary]
"caller.tier"    = { enum = ["free", "gold"], context = true }
"output.tokens"  = { int = [0, 4096] }
"output.classes" = { set = ["pii", "stutter"] }

[[predicate]]
id = "task.free-short"
category = "task"
when = "caller.tier == 'free'"
require = "output.tokens <= 24"

[[predicate]]
id = "safety.no-pii"
category = "safety"
require = "not (output.classes contains 'pii')"

# The corpus declaration's `stutter` flagger (a stuttered "the the"): the demo's stand-in for a
# content guardrail. Strict, so a candidate that completes a stutter is rejected and the next
# one taken.
[[predicate]]
id = "safety.no-stutter"
category = "safety"
require = "not (output.classes contains 'stutter')"
"#;

/// One demo call: what it shows, its prompt, caller tier and sampling (`None`: greedy;
/// `Some((temperature, seed))`).
struct DemoCase {
    label: &'static str,
    prompt: String,
    tier: &'static str,
    max_tokens: usize,
    sampled: Option<(f32, u64)>,
}

/// The first words (at most 48 bytes: the demo model's context is 64) of the synthetic corpus's
/// first news item, and where they came from.
fn news_prompt(synth_dir: Option<&Path>) -> (String, String) {
    let fallback = "HIGHFIELD, June 10 — The chamber of commerce".to_string();
    let Some(path) = synth_dir.map(|d| d.join("news.jsonl")) else {
        return (
            fallback,
            "a fixed news-like line (no synthetic corpus in this demo)".into(),
        );
    };
    let first = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.lines().next().map(str::to_string))
        .and_then(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
        .and_then(|item| item["text"].as_str().map(str::to_string));
    let Some(text) = first else {
        return (
            fallback,
            format!("a fixed news-like line ({} unreadable)", path.display()),
        );
    };
    let mut prompt = String::new();
    for word in text.split(' ') {
        if prompt.len() + word.len() + 1 > 48 {
            break;
        }
        prompt.push_str(word);
        prompt.push(' ');
    }
    (
        prompt,
        format!("the first words of the first item of {}", path.display()),
    )
}

/// What a call showed.
fn shows(generation: &Generation) -> (bool, bool, bool) {
    let summary = &generation.summary;
    let resampled = summary.interventions.iter().any(|i| {
        i.action == Action::Rejected && summary.refusal.as_ref().is_none_or(|r| r.step != i.step)
    });
    let admitted =
        generation.stop != warden_decode::Stop::Policy && summary.interventions.is_empty();
    (
        admitted,
        resampled,
        generation.stop == warden_decode::Stop::Policy,
    )
}

/// The demo's decoding stage (after training): derive the manifest's constraints, admit the
/// operator bundle against the manifest, run governed completions on the trained model and
/// record each as a `call.generate` record in the demo lineage.
pub fn demo_stage(ctx: &mut super::demo::DemoContext) -> anyhow::Result<()> {
    super::demo::heading(
        "generate: the manifest becomes constraints; every token is judged in the loop",
    );
    let run_dir = ctx
        .run_dir
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the generate stage needs the training stage's run"))?;
    let manifest = run_dir.join(warden_decode::load::MANIFEST_FILE);
    outln!(
        "$ warden policy derive {} --trust {}",
        manifest.display(),
        ctx.trust_path.display()
    );
    let loaded_manifest = super::policy::load_manifest(&manifest, &ctx.trust)?;
    for predicate in &loaded_manifest.derived.predicates {
        outln!("  {:<34} {}", predicate.id, predicate.require);
    }
    outln!("  ({})", loaded_manifest.derived.verbatim_source);

    let dir = ctx.dir.join("generate");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let bundle_path = dir.join("assistant.toml");
    fs::atomic_write(&bundle_path, DEMO_BUNDLE.as_bytes())?;
    let bundle_dir = dir.join("bundle");
    outln!(
        "\n$ warden policy admit {} --manifest {} --key {} --out {} --trust {} --lineage {}",
        bundle_path.display(),
        manifest.display(),
        ctx.key_paths.policy.display(),
        bundle_dir.display(),
        ctx.trust_path.display(),
        ctx.lineage_dir.display()
    );
    let admission = super::policy::admit_bundle(&super::policy::AdmitRequest {
        bundle_path: &bundle_path,
        key: &ctx.keys.policy,
        trust: &ctx.trust,
        out: &bundle_dir,
        lineage: Some(ctx.lineage()?),
        acknowledge: None,
        manifest: Some(&manifest),
        bound: warden_policy::Bound::default(),
    })?;
    if let super::policy::Admission::Rejected(message) = admission {
        anyhow::bail!("the demo's operator bundle was rejected against the manifest: {message}");
    }

    let run = GovernedRun::load(
        &run_dir,
        &ctx.trust,
        LoadOptions {
            lineage: Some(ctx.lineage_dir.clone()),
        },
    )?;
    outln!(
        "\nloaded {} (manifest sha256:{}, weights, lineage point and corpus verified)",
        run_dir.display(),
        hex::encode(run.manifest_digest)
    );
    let deployment = deployment_key(&ctx.key_paths.deployment, &ctx.trust)?;
    let lineage = ctx.lineage()?;
    let log = LineageLog::Append {
        lineage,
        key: &ctx.keys.policy,
    };
    let governor = governor(
        &bundle_dir,
        &ctx.trust,
        Some(&log),
        Some(run.manifest_digest),
        Detectors {
            verbatim: run.fingerprints,
            deny: run.denied,
            flaggers: Some(run.flaggers),
        },
        32,
    )?;
    let mut model = GptDecoder::new(&run.gpt);
    let identity = json!({
        "kind": "warden-run",
        "manifest_sha256": hex::encode(run.manifest_digest),
    });
    let (news, news_source) = news_prompt(ctx.synth_dir.as_deref());
    // Greedily this small model stutters ("the the the ...") whatever the prompt, so a greedy
    // call always meets `safety.no-stutter`; the admitted case samples (seeded: same output on
    // every run). Whether each case showed what it set out to is checked below, not assumed.
    let cases = [
        DemoCase {
            label: "a gold caller, sampled: every token admitted",
            prompt: "The harbour keeper wrote that the ".into(),
            tier: "gold",
            max_tokens: 40,
            sampled: Some((0.7, 0)),
        },
        DemoCase {
            label: "a gold caller prompted with the start of a shallow-class (licensed-news) document, greedy: each candidate completing a stutter (the corpus's `stutter` flagger) is rejected by `safety.no-stutter` and the next one taken; every candidate is judged against the derived verbatim bound too",
            prompt: news,
            tier: "gold",
            max_tokens: 48,
            sampled: None,
        },
        DemoCase {
            label: "a free caller, greedy: the call ends at the bundle's token bound (stop `policy`)",
            prompt: "The harbour keeper wrote that the ".into(),
            tier: "free",
            max_tokens: 40,
            sampled: None,
        },
    ];
    outln!("(the news prompt is {news_source})");
    let mut shown = [false; 3];
    for case in &cases {
        outln!("\n-- {}", case.label);
        let (sampler, sampling_flags) = match case.sampled {
            None => (Sampler::Greedy, String::new()),
            Some((temperature, seed)) => (
                Sampler::Sample {
                    temperature,
                    top_k: None,
                    top_p: None,
                    seed,
                },
                format!(" --temperature {temperature} --seed {seed}"),
            ),
        };
        outln!(
            "$ warden generate --model {} --bundle {} --trust {} --prompt {:?} --set caller.tier={} --max-tokens {}{} --lineage {} --key {}",
            run_dir.display(),
            bundle_dir.display(),
            ctx.trust_path.display(),
            case.prompt,
            case.tier,
            case.max_tokens,
            sampling_flags,
            ctx.lineage_dir.display(),
            ctx.key_paths.deployment.display()
        );
        let request = Request {
            max_tokens: case.max_tokens,
            sampler,
            attributes: BTreeMap::from([("caller.tier".to_string(), case.tier.to_string())]),
        };
        let (generation, elapsed) = call(Some(&governor), &mut model, &case.prompt, &request)?;
        outln!("  output: {:?}", generation.text);
        for line in summary_lines(&generation, elapsed) {
            outln!("  {line}");
        }
        let payload = record_payload(&case.prompt, &generation, false, &identity)?;
        let index = append_record(
            lineage,
            &deployment,
            payload,
            generation.summary.bundle_version.as_deref(),
        )?;
        outln!("  recorded as lineage record {index} ({CALL_GENERATE_KIND})");
        let (admitted, resampled, stopped) = shows(&generation);
        shown[0] |= admitted;
        shown[1] |= resampled;
        shown[2] |= stopped;
    }
    // Seal what this stage appended (the bundle admission and the calls): a record no signed
    // checkpoint covers is unauthenticated, and the audit stage verifies the lineage next.
    lineage.checkpoint()?;
    outln!();
    for (what, was_shown) in [
        ("a call with every token admitted", shown[0]),
        ("a rejected candidate replaced by the next one", shown[1]),
        ("a policy stop", shown[2]),
    ] {
        if was_shown {
            outln!("shown: {what}");
        } else {
            outln!("NOT shown: {what} (this model did not produce it for these prompts)");
        }
    }
    Ok(())
}
