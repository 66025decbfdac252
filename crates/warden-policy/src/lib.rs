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
//! This crate does no IO: the CLI reads and writes files and appends the `policy.admission` /
//! `policy.rejection` records described in [`records`].

pub mod bundle;
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
pub use signing::{admit, check_succession, VerifiedBundle};

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
    #[error("transition: {0}")]
    Transition(String),
}
