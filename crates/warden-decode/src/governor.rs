//! The governor (a bundle checked against the runtime's attribute vocabulary, with its
//! detectors) and the decode loop it judges; see the crate docs for the contract.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use warden_corpus::declaration::FlaggerConfig;
use warden_corpus::policy::flag;
use warden_corpus::FingerprintIndex;
use warden_model::LanguageModel;
use warden_policy::types::AttrType;
use warden_policy::{evaluate, AdmittedBundle, Transition, Verdict};

use crate::sampling::{CandidateOrder, Sampler};
use crate::state::{OutputState, Tracked};
use crate::DecodeError;

/// Bytes of already emitted output the flaggers see before each candidate.
pub const FLAGGER_TAIL_BYTES: usize = 320;

/// Default bound on candidates judged per step.
const DEFAULT_MAX_TRIES: usize = 32;

/// The attribute bounding verbatim reproduction of `class` (one definition, shared with
/// `warden policy derive`, so a derived bound always names the attribute the loop computes).
pub use warden_policy::derive::verbatim_attribute;

/// What the runtime detects with: per-class admitted fingerprint indexes (for
/// `output.verbatim.<class>`), deny indexes of excluded classes and the corpus flaggers (for
/// `output.classes`). Indexes for classes the bundle does not mention are ignored.
#[derive(Debug, Clone, Default)]
pub struct Detectors {
    /// Admitted class → its fingerprint index.
    pub verbatim: BTreeMap<String, FingerprintIndex>,
    /// Excluded class → the deny index of its refused text.
    pub deny: BTreeMap<String, FingerprintIndex>,
    /// The corpus's flagger settings (its blocklist is not used: it matches whole samples).
    pub flaggers: Option<FlaggerConfig>,
}

/// One call's parameters.
#[derive(Debug, Clone)]
pub struct Request {
    /// Most tokens to emit (exact).
    pub max_tokens: usize,
    pub sampler: Sampler,
    /// `caller.*` and `request.*` values, as text (enum value, integer, or comma-separated set).
    pub attributes: BTreeMap<String, String>,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    /// The model chose end-of-sequence.
    Stop,
    /// `max_tokens` reached, or the context is full.
    Length,
    /// No candidate within the bound satisfied the bundle.
    Policy,
}

impl Stop {
    pub fn as_str(&self) -> &'static str {
        match self {
            Stop::Stop => "stop",
            Stop::Length => "length",
            Stop::Policy => "policy",
        }
    }
}

/// What the loop did about a candidate that was not simply admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A strict predicate failed: masked, never emitted.
    Rejected,
    /// Only advisory predicates failed and a later candidate satisfying all was emitted instead.
    Replaced,
    /// Only advisory predicates failed, no candidate within the bound satisfied them: emitted.
    AdvisoryBreach,
}

/// One intervention: the step (index of the output token being chosen), the candidate, the
/// predicates it violated and what was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intervention {
    pub step: usize,
    pub candidate: u32,
    /// The candidate's bytes, lossily as text.
    pub candidate_text: String,
    pub predicates: Vec<String>,
    pub action: Action,
    /// For [`Action::Replaced`]: the token emitted instead.
    pub emitted: Option<u32>,
}

/// Why a call ended with [`Stop::Policy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub step: usize,
    /// Candidates judged at that step.
    pub tries: usize,
    /// Every strict predicate that rejected a candidate at that step.
    pub predicates: Vec<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictCounts {
    pub admit: u64,
    pub reject: u64,
    pub decompose: u64,
}

/// Time spent judging, in nanoseconds, and the deterministic work count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GovernanceTiming {
    /// Everything the governor adds to a call (attribute updates, flaggers, evaluation, commit,
    /// and ranking further candidates after a rejection).
    pub total_ns: u64,
    /// Rolling hash and fingerprint probes (verbatim runs, deny indexes).
    pub fingerprint_ns: u64,
    /// Flaggers over the bounded tail.
    pub flagger_ns: u64,
    /// Setting the transition's values and `evaluate`.
    pub evaluate_ns: u64,
    /// Producing further candidates after a rejection or an advisory failure (the sampler's
    /// ranking beyond its first pick, which the ungoverned loop pays too and is not counted).
    #[serde(default)]
    pub ranking_ns: u64,
    /// `total_ns / tokens` (0 for no tokens).
    pub per_token_ns: u64,
    /// Bytes hashed + index probes + bytes given to flaggers: a clock-free cost measure.
    pub work_units: u64,
}

/// The per-call summary (serialised into the `call.generate` record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallSummary {
    pub governed: bool,
    /// Bundle name and version id (`None` ungoverned).
    pub bundle: Option<String>,
    pub bundle_version: Option<String>,
    pub manifest_digest: Option<String>,
    /// The caller and request attributes the call was judged with.
    pub attributes: BTreeMap<String, String>,
    pub prompt_tokens: usize,
    pub tokens: usize,
    pub stop: Stop,
    pub verdicts: VerdictCounts,
    pub interventions: Vec<Intervention>,
    pub timing: Option<GovernanceTiming>,
    pub refusal: Option<Refusal>,
}

/// A call's result. The output is kept as bytes (tokens may split UTF-8 characters); `text` is
/// the lossy conversion done once at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generation {
    pub text: String,
    pub bytes: Vec<u8>,
    pub tokens: Vec<u32>,
    pub stop: Stop,
    pub summary: CallSummary,
    /// Governance time per emitted token (for percentiles in benchmarks; not in the record).
    #[serde(skip)]
    pub step_governance_ns: Vec<u64>,
}

/// A flagger run on its own (so every one that fires is seen), and the class bit it sets.
#[derive(Debug)]
struct SingleFlagger {
    bit: u64,
    config: FlaggerConfig,
}

/// A bundle checked against the runtime vocabulary, with its detectors. Shareable across calls
/// (`generate` takes `&self`).
#[derive(Debug)]
pub struct Governor {
    bundle: AdmittedBundle,
    tracked: Tracked,
    tokens_attr: Option<u32>,
    classes_attr: Option<(u32, Vec<String>)>,
    flaggers: Vec<SingleFlagger>,
    /// Declared `caller.*` / `request.*` attributes.
    context_attrs: Vec<String>,
    manifest_digest: Option<String>,
    max_tries: usize,
}

fn no_flag_hash() -> warden_corpus::Hash {
    [0; 32]
}

impl Governor {
    /// Checks that `bundle` was admitted for this model and every attribute it declares against
    /// the runtime vocabulary (see the crate docs), and keeps the detectors it needs.
    ///
    /// `manifest_digest` is the SHA-256 of the model's training manifest (`None`: a model
    /// without one, such as a GGUF file). A bundle admitted against another manifest, or against
    /// none, is refused for a Warden model; a bundle bound to a manifest is refused for a model
    /// without one. The digest is recorded in every summary.
    pub fn new(
        bundle: AdmittedBundle,
        detectors: Detectors,
        manifest_digest: Option<[u8; 32]>,
    ) -> Result<Governor, DecodeError> {
        let name = bundle.verified().bundle().name.clone();
        match (manifest_digest, bundle.manifest_digest()) {
            (Some(manifest), _) => bundle
                .verified()
                .require_manifest(&manifest)
                .map_err(|e| DecodeError::Manifest(e.to_string()))?,
            (None, Some(bound)) => {
                return Err(DecodeError::Manifest(format!(
                    "bundle {} was admitted against the Warden manifest sha256:{}; this model has no manifest: admit a bundle without --manifest for it",
                    bundle.version_id(),
                    hex::encode(bound)
                )))
            }
            (None, None) => {}
        }
        let manifest_digest = manifest_digest.map(hex::encode);
        let refuse = |attribute: &str, reason: String| DecodeError::Unsupported {
            bundle: name.clone(),
            attribute: attribute.to_string(),
            reason,
        };
        // Indexes are moved out of `detectors`, never copied (they can hold 10^8 grams).
        let mut detectors = detectors;
        let supplied_verbatim = list(detectors.verbatim.keys());
        let mut class_by_attr: BTreeMap<String, String> = BTreeMap::new();
        for class in detectors.verbatim.keys() {
            let attr = verbatim_attribute(class);
            if let Some(other) = class_by_attr.insert(attr.clone(), class.clone()) {
                return Err(refuse(
                    &attr,
                    format!("classes `{other}` and `{class}` share this attribute name"),
                ));
            }
        }
        let mut tracked = Tracked {
            verbatim: Vec::new(),
            deny: Vec::new(),
        };
        let mut tokens_attr = None;
        let mut classes_attr = None;
        let mut flaggers = Vec::new();
        let mut context_attrs = Vec::new();
        let vocabulary = &bundle.verified().bundle().vocabulary;
        for (idx, attr) in vocabulary.attributes.iter().enumerate() {
            let idx = idx as u32;
            let is_int = matches!(attr.ty, AttrType::Int { .. });
            let name = attr.name.as_str();
            if name == "output.tokens" {
                if !is_int {
                    return Err(refuse(name, "must be declared as an int".into()));
                }
                tokens_attr = Some(idx);
            } else if name.starts_with("output.verbatim.") {
                if !is_int {
                    return Err(refuse(name, "must be declared as an int".into()));
                }
                let index = class_by_attr
                    .get(name)
                    .and_then(|class| detectors.verbatim.remove(class));
                let Some(index) = index else {
                    return Err(refuse(
                        name,
                        format!(
                            "no fingerprint index was supplied for its class (supplied: {supplied_verbatim})"
                        ),
                    ));
                };
                tracked.verbatim.push((idx, index));
            } else if name == "output.classes" {
                let AttrType::Set(elements) = &attr.ty else {
                    return Err(refuse(name, "must be declared as a set".into()));
                };
                for (bit_idx, element) in elements.iter().enumerate() {
                    let bit = 1u64 << bit_idx;
                    let mut detected = false;
                    if let Some(index) = detectors.deny.remove(element) {
                        tracked.deny.push((bit, index));
                        detected = true;
                    }
                    if let Some(config) = &detectors.flaggers {
                        for single in split_flaggers(config, element) {
                            flaggers.push(SingleFlagger {
                                bit,
                                config: single,
                            });
                            detected = true;
                        }
                    }
                    if !detected {
                        return Err(refuse(
                            name,
                            format!(
                                "element '{element}' has no detector: supply a deny fingerprint index for class `{element}` or a flagger contributing it (email, phone and card contribute 'pii'; a regex flagger contributes its id)"
                            ),
                        ));
                    }
                }
                classes_attr = Some((idx, elements.clone()));
            } else if name.starts_with("caller.") || name.starts_with("request.") {
                context_attrs.push(name.to_string());
            } else {
                return Err(refuse(
                    name,
                    "the runtime cannot provide it (it provides output.tokens, output.verbatim.<class>, output.classes; callers supply caller.* and request.*)".into(),
                ));
            }
        }
        Ok(Governor {
            bundle,
            tracked,
            tokens_attr,
            classes_attr,
            flaggers,
            context_attrs,
            manifest_digest,
            max_tries: DEFAULT_MAX_TRIES,
        })
    }

    /// Sets the bound on candidates judged per step (at least 1).
    pub fn with_max_tries(mut self, max_tries: usize) -> Governor {
        self.max_tries = max_tries.max(1);
        self
    }

    pub fn max_tries(&self) -> usize {
        self.max_tries
    }

    pub fn bundle(&self) -> &AdmittedBundle {
        &self.bundle
    }

    /// Runs one governed call: `prompt` is encoded with the model's plain encoder.
    pub fn generate(
        &self,
        model: &mut dyn LanguageModel,
        prompt: &str,
        request: &Request,
    ) -> Result<Generation, DecodeError> {
        run(model, prompt, request, Some(self))
    }

    /// Checks the caller/request attributes and builds the call's transition.
    fn context(
        &self,
        request: &Request,
    ) -> Result<(Transition, BTreeMap<String, String>), DecodeError> {
        let mut values = BTreeMap::new();
        for (name, value) in &request.attributes {
            if !(name.starts_with("caller.") || name.starts_with("request.")) {
                return Err(DecodeError::Attribute {
                    attribute: name.clone(),
                    reason: "only caller.* and request.* attributes can be set by the caller"
                        .into(),
                });
            }
            if !self.context_attrs.contains(name) {
                return Err(DecodeError::Attribute {
                    attribute: name.clone(),
                    reason: format!(
                        "bundle `{}` declares no such attribute (it declares: {})",
                        self.bundle.verified().bundle().name,
                        list(self.context_attrs.iter())
                    ),
                });
            }
            values.insert(name.clone(), value.clone());
        }
        let runtime_max = request.max_tokens.to_string();
        let mut missing = Vec::new();
        for name in &self.context_attrs {
            let supplied = values.get(name).cloned();
            match supplied {
                Some(value) if name == "request.max_tokens" && value.trim() != runtime_max => {
                    return Err(DecodeError::Attribute {
                        attribute: name.clone(),
                        reason: format!(
                            "set to {value} but the call's max_tokens is {runtime_max}"
                        ),
                    });
                }
                Some(_) => {}
                None if name == "request.max_tokens" => {
                    values.insert(name.clone(), runtime_max.clone());
                }
                None => missing.push(name.as_str()),
            }
        }
        if !missing.is_empty() {
            return Err(DecodeError::Attribute {
                attribute: missing.join(", "),
                reason: format!(
                    "required by bundle `{}` but not supplied (pass --set {}=VALUE); caller attributes have no defaults",
                    self.bundle.verified().bundle().name,
                    missing[0]
                ),
            });
        }
        let mut builder = self.bundle.transition();
        for attr in &self.bundle.verified().bundle().vocabulary.attributes {
            let value = match values.get(&attr.name) {
                Some(value) => value.clone(),
                // Generated attributes: placeholders, overwritten before every evaluation.
                None => match &attr.ty {
                    AttrType::Int { lo, .. } => lo.to_string(),
                    AttrType::Set(_) => String::new(),
                    AttrType::Enum(values) => values.first().cloned().unwrap_or_default(),
                },
            };
            builder = builder
                .set(&attr.name, &value)
                .map_err(|e| DecodeError::Attribute {
                    attribute: attr.name.clone(),
                    reason: e.to_string(),
                })?;
        }
        let transition = builder.build().map_err(|e| DecodeError::Attribute {
            attribute: "(transition)".into(),
            reason: e.to_string(),
        })?;
        Ok((transition, values))
    }
}

/// The flaggers of `config` that contribute `class`, each alone in its own config.
fn split_flaggers(config: &FlaggerConfig, class: &str) -> Vec<FlaggerConfig> {
    let empty = FlaggerConfig {
        email: false,
        phone: false,
        card: false,
        regexes: Vec::new(),
        blocklist: Default::default(),
    };
    let mut out = Vec::new();
    if class == "pii" {
        if config.email {
            out.push(FlaggerConfig {
                email: true,
                ..empty.clone()
            });
        }
        if config.phone {
            out.push(FlaggerConfig {
                phone: true,
                ..empty.clone()
            });
        }
        if config.card {
            out.push(FlaggerConfig {
                card: true,
                ..empty.clone()
            });
        }
    }
    for regex in config.regexes.iter().filter(|r| r.id == class) {
        out.push(FlaggerConfig {
            regexes: vec![regex.clone()],
            ..empty.clone()
        });
    }
    out
}

fn list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let items: Vec<&str> = items.map(String::as_str).collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// The outcome of judging one candidate.
enum Judgement {
    Admit,
    Reject(Vec<String>),
    Decompose(Vec<String>),
}

/// Per-call judging state.
struct Judge<'g> {
    gov: &'g Governor,
    transition: Transition,
    committed: OutputState,
    scratch: OutputState,
    /// The `output.classes` mask currently in `transition`.
    classes_in_transition: u64,
    tail: Vec<u8>,
    timing: GovernanceTiming,
    verdicts: VerdictCounts,
}

impl<'g> Judge<'g> {
    /// Computes the candidate's attributes into `scratch` and the transition; returns a range
    /// violation as a rejection.
    fn prepare(&mut self, candidate: &[u8], output: &[u8], n_tokens: usize) -> Option<Judgement> {
        let gov = self.gov;
        let start = Instant::now();
        self.scratch.clone_from(&self.committed);
        self.timing.work_units += self.scratch.apply(&gov.tracked, candidate);
        let (classes, probes) = self.scratch.classes_if_ended(&gov.tracked);
        self.scratch.classes = classes;
        self.timing.work_units += probes;
        let fingerprinted = Instant::now();
        self.timing.fingerprint_ns += (fingerprinted - start).as_nanos() as u64;

        if gov
            .flaggers
            .iter()
            .any(|f| self.scratch.classes & f.bit == 0)
        {
            self.tail.clear();
            self.tail
                .extend_from_slice(&output[output.len().saturating_sub(FLAGGER_TAIL_BYTES)..]);
            self.tail.extend_from_slice(candidate);
            let hash = no_flag_hash();
            for flagger in &gov.flaggers {
                if self.scratch.classes & flagger.bit != 0 {
                    continue;
                }
                self.timing.work_units += self.tail.len() as u64;
                let fired = self
                    .tail
                    .utf8_chunks()
                    .any(|chunk| flag(&flagger.config, chunk.valid(), &hash).is_some());
                if fired {
                    self.scratch.classes |= flagger.bit;
                }
            }
        }
        let flagged = Instant::now();
        self.timing.flagger_ns += (flagged - fingerprinted).as_nanos() as u64;

        let mut violation = None;
        let vocabulary = &gov.bundle.verified().bundle().vocabulary;
        if let Some(idx) = gov.tokens_attr {
            let value = i64::try_from(n_tokens).unwrap_or(i64::MAX);
            if self.transition.set_int(&gov.bundle, idx, value).is_err() {
                violation = Some(idx);
            }
        }
        for k in 0..gov.tracked.verbatim.len() {
            let (value, probes) = self.scratch.verbatim(&gov.tracked, k);
            self.timing.work_units += probes;
            let idx = gov.tracked.verbatim[k].0;
            if self
                .transition
                .set_int(&gov.bundle, idx, i64::from(value))
                .is_err()
            {
                violation = violation.or(Some(idx));
            }
        }
        if let Some((idx, elements)) = &gov.classes_attr {
            if self.scratch.classes != self.classes_in_transition {
                // Rare (a detection, or a candidate differing from the last in one): the set
                // is passed as text, the only way the evaluator's API sets a set value.
                let text = elements
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| self.scratch.classes & (1u64 << bit) != 0)
                    .map(|(_, e)| e.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                let name = &vocabulary.attr(*idx).name;
                if self.transition.update(&gov.bundle, name, &text).is_err() {
                    violation = violation.or(Some(*idx));
                }
                self.classes_in_transition = self.scratch.classes;
            }
        }
        self.timing.evaluate_ns += flagged.elapsed().as_nanos() as u64;
        violation.map(|idx| Judgement::Reject(vec![format!("range:{}", vocabulary.attr(idx).name)]))
    }

    fn judge(&mut self, candidate: &[u8], output: &[u8], n_tokens: usize) -> Judgement {
        let gov = self.gov;
        let judgement = match self.prepare(candidate, output, n_tokens) {
            Some(range_violation) => range_violation,
            None => {
                let start = Instant::now();
                let verdict = evaluate(&gov.bundle, &self.transition);
                let judgement = match verdict {
                    Verdict::Admit => Judgement::Admit,
                    Verdict::Reject(_) => Judgement::Reject(verdict.ids()),
                    Verdict::Decompose(_) => Judgement::Decompose(verdict.ids()),
                };
                self.timing.evaluate_ns += start.elapsed().as_nanos() as u64;
                judgement
            }
        };
        match judgement {
            Judgement::Admit => self.verdicts.admit += 1,
            Judgement::Reject(_) => self.verdicts.reject += 1,
            Judgement::Decompose(_) => self.verdicts.decompose += 1,
        }
        judgement
    }

    /// Makes the last prepared candidate's state the committed one.
    fn commit_prepared(&mut self) {
        std::mem::swap(&mut self.committed, &mut self.scratch);
    }
}

/// Runs one call with no judging: the same loop and sampler, for baselines.
pub fn generate_ungoverned(
    model: &mut dyn LanguageModel,
    prompt: &str,
    request: &Request,
) -> Result<Generation, DecodeError> {
    run(model, prompt, request, None)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(
    model: &mut dyn LanguageModel,
    prompt: &str,
    request: &Request,
    governor: Option<&Governor>,
) -> Result<Generation, DecodeError> {
    request.sampler.validate()?;
    let (mut judge, attributes) = match governor {
        Some(gov) => {
            let (transition, attributes) = gov.context(request)?;
            let committed = OutputState::new(&gov.tracked);
            let judge = Judge {
                gov,
                transition,
                scratch: committed.clone(),
                committed,
                classes_in_transition: 0,
                tail: Vec::with_capacity(FLAGGER_TAIL_BYTES + 64),
                timing: GovernanceTiming::default(),
                verdicts: VerdictCounts::default(),
            };
            (Some(judge), attributes)
        }
        // Nothing judges them; accepted so a baseline can run the same command line.
        None => (None, request.attributes.clone()),
    };
    let prompt_ids = model.encode(prompt)?;
    if prompt_ids.is_empty() {
        return Err(DecodeError::Invalid(
            "the prompt encodes to no tokens; give a non-empty prompt".into(),
        ));
    }
    let context_limit = model.context_limit();
    if prompt_ids.len() >= context_limit {
        return Err(DecodeError::Invalid(format!(
            "the prompt is {} tokens but the model's context holds {context_limit}: no room for output",
            prompt_ids.len()
        )));
    }
    let vocab = model.vocab_size();
    let eos = model.eos();
    let max_tries = governor.map_or(1, |g| g.max_tries);
    let mut order = CandidateOrder::new(request.sampler, max_tries + 1);
    let mut tokens: Vec<u32> = Vec::new();
    let mut output: Vec<u8> = Vec::new();
    let mut interventions = Vec::new();
    let mut refusal = None;
    let mut step_ns = Vec::new();
    let mut logits = if request.max_tokens > 0 {
        model.start(&prompt_ids)?
    } else {
        Vec::new()
    };
    let stop = loop {
        if tokens.len() >= request.max_tokens || prompt_ids.len() + tokens.len() >= context_limit {
            break Stop::Length;
        }
        if logits.len() != vocab || vocab == 0 {
            return Err(DecodeError::Invalid(format!(
                "the model returned {} logits for a vocabulary of {vocab}",
                logits.len()
            )));
        }
        let step = tokens.len();
        order.begin(&logits);
        let Some(judge) = judge.as_mut() else {
            let id = match order.next(&logits) {
                Some(id) if Some(id) != eos => id,
                _ => break Stop::Stop,
            };
            tokens.push(id);
            output.extend_from_slice(model.token_bytes(id));
            if tokens.len() < request.max_tokens && prompt_ids.len() + tokens.len() < context_limit
            {
                logits = model.step(id)?;
            }
            continue;
        };
        // Governance time excludes the first candidate's selection (the ungoverned loop pays
        // it too) and includes everything else: judging, commit, further candidates.
        let step_start = Instant::now();
        let mut first_selection_ns = 0u64;
        let mut tries = 0;
        let mut chosen = None;
        let mut ended = false;
        let mut pending: Option<(u32, Vec<String>)> = None;
        let mut rejected_by = BTreeSet::new();
        while tries < max_tries {
            let selection = Instant::now();
            let next = order.next(&logits);
            let selection_ns = selection.elapsed().as_nanos() as u64;
            if tries == 0 {
                first_selection_ns = selection_ns;
            } else {
                judge.timing.ranking_ns += selection_ns;
            }
            let Some(candidate) = next else {
                break;
            };
            if Some(candidate) == eos {
                ended = true;
                break;
            }
            tries += 1;
            let bytes = model.token_bytes(candidate);
            match judge.judge(bytes, &output, tokens.len() + 1) {
                Judgement::Admit => {
                    chosen = Some(candidate);
                    if let Some((original, predicates)) = pending.take() {
                        interventions.push(Intervention {
                            step,
                            candidate: original,
                            candidate_text: lossy(model.token_bytes(original)),
                            predicates,
                            action: Action::Replaced,
                            emitted: Some(candidate),
                        });
                    }
                    break;
                }
                Judgement::Reject(predicates) => {
                    rejected_by.extend(predicates.iter().cloned());
                    interventions.push(Intervention {
                        step,
                        candidate,
                        candidate_text: lossy(bytes),
                        predicates,
                        action: Action::Rejected,
                        emitted: None,
                    });
                }
                Judgement::Decompose(predicates) => {
                    if pending.is_none() {
                        pending = Some((candidate, predicates));
                    }
                }
            }
        }
        let governance_ns =
            |start: Instant| (start.elapsed().as_nanos() as u64).saturating_sub(first_selection_ns);
        if ended {
            judge.timing.total_ns += governance_ns(step_start);
            break Stop::Stop;
        }
        let emitted = match (chosen, pending) {
            (Some(candidate), _) => {
                judge.commit_prepared();
                candidate
            }
            (None, Some((original, predicates))) => {
                // The last prepared state is another candidate's: recompute the original's.
                let bytes = model.token_bytes(original);
                let _ = judge.prepare(bytes, &output, tokens.len() + 1);
                judge.commit_prepared();
                interventions.push(Intervention {
                    step,
                    candidate: original,
                    candidate_text: lossy(bytes),
                    predicates,
                    action: Action::AdvisoryBreach,
                    emitted: Some(original),
                });
                original
            }
            (None, None) => {
                let predicates: Vec<String> = rejected_by.into_iter().collect();
                refusal = Some(Refusal {
                    step,
                    tries,
                    message: format!(
                        "no candidate among {tries} tried at step {step} satisfies the bundle; rejected by {}",
                        if predicates.is_empty() {
                            "nothing (no candidates)".to_string()
                        } else {
                            predicates.join(", ")
                        }
                    ),
                    predicates,
                });
                judge.timing.total_ns += governance_ns(step_start);
                break Stop::Policy;
            }
        };
        let elapsed = governance_ns(step_start);
        judge.timing.total_ns += elapsed;
        step_ns.push(elapsed);
        tokens.push(emitted);
        output.extend_from_slice(model.token_bytes(emitted));
        if tokens.len() < request.max_tokens && prompt_ids.len() + tokens.len() < context_limit {
            logits = model.step(emitted)?;
        }
    };
    let n_tokens = tokens.len();
    let (verdicts, timing) = match &judge {
        Some(judge) => {
            let mut timing = judge.timing;
            timing.per_token_ns = if n_tokens == 0 {
                0
            } else {
                timing.total_ns / n_tokens as u64
            };
            (judge.verdicts, Some(timing))
        }
        None => (VerdictCounts::default(), None),
    };
    let summary = CallSummary {
        governed: governor.is_some(),
        bundle: governor.map(|g| g.bundle.verified().bundle().name.clone()),
        bundle_version: governor.map(|g| g.bundle.version_id().to_string()),
        manifest_digest: governor.and_then(|g| g.manifest_digest.clone()),
        attributes,
        prompt_tokens: prompt_ids.len(),
        tokens: n_tokens,
        stop,
        verdicts,
        interventions,
        timing,
        refusal,
    };
    Ok(Generation {
        text: lossy(&output),
        bytes: output,
        tokens,
        stop,
        summary,
        step_governance_ns: step_ns,
    })
}
