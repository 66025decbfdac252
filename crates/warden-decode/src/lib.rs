//! Governed decoding: every candidate token is judged against the admitted policy bundle and the
//! model's training manifest inside the decode loop (admit / reject / decompose).
//!
//! The loop ([`Governor::generate`], and [`generate_ungoverned`] for baselines) is
//! model-agnostic: it drives a [`warden_model::LanguageModel`] and sees only token ids, their
//! bytes and logits. For each step it takes candidates in the sampler's order ([`Sampler`]), computes
//! the generated attributes *as if the candidate were emitted*, and evaluates the bundle:
//!
//! * **admit** — the candidate is emitted;
//! * **reject** (a strict predicate fails) — the candidate is masked and never emitted; the next
//!   candidate is judged. After [`Governor::max_tries`] judged candidates (or the vocabulary) the
//!   call ends with stop reason [`Stop::Policy`] and a [`Refusal`] naming the predicates;
//! * **decompose** (only advisory predicates fail) — the next candidates, within the same bound,
//!   are searched for one that satisfies every predicate; if one does it is emitted instead
//!   ([`Action::Replaced`]), otherwise the original is emitted and the breach recorded
//!   ([`Action::AdvisoryBreach`]).
//!
//! The end-of-sequence token is never judged: when it comes up as a candidate the call ends with
//! [`Stop::Stop`] (ending never adds output). Every call returns a [`Generation`] with a
//! serialisable [`CallSummary`]; [`record::call_record`] builds the `call.generate` lineage
//! payload from it.
//!
//! # Attribute vocabulary the runtime provides
//!
//! A bundle may declare only these attributes; any other is refused by [`Governor::new`], naming
//! it (fail closed), as is a declared attribute of the wrong type or one the runtime was given no
//! detector for.
//!
//! * `output.tokens` (int): tokens emitted so far **including the candidate**.
//! * `output.verbatim.<class>` (int): over the output with the candidate, taken as if the output
//!   ended there (a trailing partial word counts as a word): the number of word tokens in the
//!   longest suffix whose every word 8-gram is in `<class>`'s admitted fingerprint index — `0` if
//!   the last 8-gram is not in it (or there are fewer than 8 words), else `7 +` the number of
//!   consecutive matching grams ending at the last one. Word tokens and grams are those of the
//!   corpus fingerprint scheme `token-8gram-v1` (ASCII letters lowercased), so reproduction in
//!   other casing (ALL CAPS) counts the same. The attribute name is
//!   [`verbatim_attribute`]`(class)`; one index per class must be supplied in [`Detectors`].
//! * `output.classes` (set): classes detected on the output so far (sticky once detected):
//!   - an excluded class whose deny fingerprint index ([`Detectors::deny`]) holds an 8-gram of the
//!     output (a trailing partial word counts, as above);
//!   - the corpus flaggers ([`Detectors::flaggers`]): `email`, `phone` and `card` contribute the
//!     class `pii`; a regex flagger contributes the class named by its id. Flaggers run over a
//!     bounded tail: the last [`FLAGGER_TAIL_BYTES`] bytes of output before the candidate plus the
//!     candidate's bytes, so a match of up to that many bytes ending in the candidate is found
//!     (the card and phone patterns are under 40 bytes; an e-mail address may have up to 254).
//!     The blocklist flagger matches whole corpus samples by hash and does not apply to output.
//!
//!   Every element of the declared set must have a detector (a deny index, possibly empty, or a
//!   flagger contributing it): a guardrail that can never fire is refused, not silently passed.
//! * `caller.*` and `request.*`: supplied per call as strings ([`Request::attributes`]); every one
//!   the bundle declares must be supplied (a missing one is an error, never a default), except
//!   `request.max_tokens`, which the runtime fills from [`Request::max_tokens`] (if supplied it
//!   must agree). Supplying an attribute the bundle does not declare is an error (a typo must not
//!   silently drop a constraint).
//!
//! A generated value outside the range the bundle declares for it rejects the candidate with the
//! pseudo-predicate `range:<attribute>` (the bundle cannot judge it, so it is not admitted).
//!
//! # Budgets
//!
//! `max_tokens` is exact: after `max_tokens` emitted tokens the call ends with [`Stop::Length`]
//! and the model is not stepped again. A token bound in the bundle (`output.tokens <= N`) is also
//! exact: candidate `N + 1` is rejected whatever it is, so the call ends with [`Stop::Policy`]
//! (its refusal naming the bound's predicate) — or [`Stop::Stop`] if end-of-sequence is among
//! the candidates tried. When `max_tokens <= N` the call ends with `length` first. A full context
//! (`prompt + output = context_limit`) also ends the call with [`Stop::Length`].
//!
//! # Cost
//!
//! Per candidate: the candidate's bytes through the rolling hash, one binary-search probe per
//! completed gram and tracked class, the flaggers over the bounded tail, and one `evaluate`
//! (allocation-free) — independent of the output length. [`GovernanceTiming::work_units`] counts
//! the bytes and probes so this is testable without clocks.

pub mod bench;
pub mod load;
pub mod record;
pub mod sampling;
mod state;

mod governor;

pub use governor::{
    generate_ungoverned, verbatim_attribute, Action, CallSummary, Detectors, Generation,
    GovernanceTiming, Governor, Intervention, Refusal, Request, Stop, VerdictCounts,
    FLAGGER_TAIL_BYTES,
};
pub use record::{call_record, CallRecord, CALL_GENERATE_KIND};
pub use sampling::Sampler;

/// Errors from building a governor or running a call. A policy stop is not an error: it is a
/// [`Generation`] with [`Stop::Policy`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("model: {0}")]
    Model(#[from] warden_model::ModelError),
    /// The bundle needs something the runtime cannot provide (fail closed).
    #[error("bundle `{bundle}` refused: attribute `{attribute}`: {reason}")]
    Unsupported {
        bundle: String,
        attribute: String,
        reason: String,
    },
    /// The bundle was admitted for another model's manifest (or for none, or the model has none).
    #[error("manifest: {0}")]
    Manifest(String),
    /// A caller or request attribute is missing, unknown or ill-typed.
    #[error("attribute `{attribute}`: {reason}")]
    Attribute { attribute: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}
