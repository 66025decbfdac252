//! Policy bundles: a typed predicate language, a SAT-backed admission gate, signing, and a
//! per-transition evaluator.
//!
//! The life of a bundle:
//!
//! 1. [`Bundle::parse`] reads the TOML text and type-checks every predicate against the
//!    `[vocabulary]` (errors name file, line, column and predicate id).
//! 2. [`gate::prove`] runs the three admission checks with a real SAT solver under a
//!    [`gate::Bound`]; only it can produce a [`gate::Proof`]. Undecided is a rejection.
//! 3. [`signing::admit`] signs the canonical text with the proof summary (policy-authority key);
//!    [`signing::check_succession`] enforces monotonic versions.
//! 4. [`AdmittedBundle::load`] verifies the signature once and compiles the predicates to a flat
//!    form; [`evaluate`] then judges transitions without allocating.
//!
//! With a training manifest, [`derive::derive`] turns it into predicates and [`derive::merge`]
//! adds them to the operator's bundle before step 2; the signed statement then names the
//! manifest's digest ([`VerifiedBundle::manifest_digest`]).
//!
//! 5. [`admission::Workflow`] runs steps 1–3 over one bundle directory and the lineage (head
//!    resolution, rejection memory, write order, crash recovery), and [`admission::resolve_head`]
//!    is what a runtime loads: never a lower version than the highest it can verify.
//!
//! This crate does no IO: the caller supplies the directory's files and the lineage through
//! [`admission::BundleFiles`] and [`admission::PolicyLog`]; the record payloads are in [`records`].
//!
//! ```
//! use std::time::SystemTime;
//! use warden_keys::{Role, SigningKey, TrustStore};
//! use warden_policy::{admit, evaluate, prove, AdmittedBundle, Bound, Bundle, Verdict};
//!
//! let text = r#"
//! [bundle]
//! name = "example"
//! version = 1
//! [vocabulary]
//! "caller.tier"   = { enum = ["free", "verified"], context = true }
//! "output.tokens" = { int = [0, 8192] }
//! [[predicate]]
//! id = "structural.max-length"
//! category = "structural"
//! require = "output.tokens <= 1024"
//! [[predicate]]
//! id = "task.free-is-short"
//! category = "task"
//! weight = "advisory"
//! when = "caller.tier == 'free'"
//! require = "output.tokens <= 256"
//! "#;
//! let bundle = Bundle::parse(text, "example.toml")?;
//! let proof = prove(&bundle, &Bound::default()).map_err(|r| r.to_string())?;
//! let key = SigningKey::from_seed(Role::PolicyAuthority, "policy", &[1; 32])?;
//! let signed = admit(&bundle, &proof, &key, SystemTime::now(), None)?;
//!
//! // The consumer side: verify once at load, then evaluate many transitions.
//! let mut trust = TrustStore::new();
//! trust.add(Role::PolicyAuthority, key.public().clone());
//! let admitted = AdmittedBundle::load(signed.to_bytes(), "example.admitted.json", &trust)?;
//! let mut step = admitted
//!     .transition()
//!     .set("caller.tier", "free")?
//!     .set("output.tokens", "100")?
//!     .build()?;
//! assert!(matches!(evaluate(&admitted, &step), Verdict::Admit));
//! let tokens = admitted.attribute_index("output.tokens").ok_or("no such attribute")?;
//! step.set_int(&admitted, tokens, 512)?;
//! let verdict = evaluate(&admitted, &step);
//! assert_eq!(verdict.as_str(), "decompose");
//! assert_eq!(verdict.ids(), ["task.free-is-short"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod admission;
pub mod bundle;
pub mod derive;
mod encode;
pub mod eval;
pub mod gate;
pub mod generate;
pub mod records;
pub mod signing;
pub mod syntax;
pub mod types;

pub use bundle::{Bundle, Category, Predicate, Weight};
pub use eval::{evaluate, AdmittedBundle, Transition, Verdict};
pub use gate::{prove, Bound, Check, Proof, Rejection};
pub use signing::{admit, admit_for_manifest, check_succession, VerifiedBundle};

/// Errors from parsing, admitting, signing and loading bundles.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}:{line}:{column}: {}{message}", predicate.as_ref().map(|p| format!("predicate `{p}`: ")).unwrap_or_default())]
    Parse {
        file: String,
        line: usize,
        column: usize,
        predicate: Option<String>,
        message: String,
    },
    #[error("{origin}: {reason}")]
    Malformed { origin: String, reason: String },
    #[error("{origin}: signature check failed: {source}")]
    Signature {
        origin: String,
        #[source]
        source: warden_keys::KeyError,
    },
    #[error("signing key {key} has role {role}, but bundles are signed by the policy-authority")]
    WrongRole {
        key: String,
        role: warden_keys::Role,
    },
    #[error("bundle `{name}` version {version} refused: {reason}")]
    Succession {
        name: String,
        version: u64,
        reason: String,
    },
    #[error("signing key {key} is refused: {source}")]
    UntrustedSigner {
        key: String,
        #[source]
        source: warden_keys::KeyError,
    },
    #[error("{location}: {reason}")]
    Directory { location: String, reason: String },
    #[error("{location}: bundle `{name}` version {running} is not the highest admitted version: version {admitted} is admitted ({evidence}); refusing version {running} (if the admission of version {admitted} was interrupted, re-run it to complete it)")]
    RolledBack {
        location: String,
        name: String,
        running: u64,
        admitted: u64,
        evidence: String,
    },
    #[error("{location}: version {version} would fork the history: {reason}")]
    Fork {
        location: String,
        version: u64,
        reason: String,
    },
    #[error("{what}: {source}")]
    Storage {
        what: String,
        #[source]
        source: admission::StorageError,
    },
    #[error("transition: {0}")]
    Transition(String),
    /// A training manifest that cannot be derived from, a derived vocabulary that conflicts with
    /// the operator's, or a bundle admitted for another manifest.
    #[error("{what}: {reason}")]
    Manifest { what: String, reason: String },
}
