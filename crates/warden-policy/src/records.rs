//! The `policy.admission` and `policy.rejection` lineage record payloads, and the lookups the
//! resubmission rule the admission workflow applies to earlier records.
//!
//! The crate does no IO: callers pass `(record index, kind, payload)` triples read from the
//! lineage, and append the payloads built here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::gate::{Bound, Finding, Rejection, Stats, PROVER};
use crate::signing::Statement;
use crate::PolicyError;

pub const ADMISSION_KIND: &str = "policy.admission";
pub const REJECTION_KIND: &str = "policy.rejection";

/// Payload of a `policy.admission` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionPayload {
    pub bundle: String,
    pub version: u64,
    pub succeeds: Option<u64>,
    pub version_id: String,
    /// SHA-256 of the canonical bundle text.
    pub digest: String,
    /// SHA-256 of the signed statement bytes.
    pub statement_sha256: String,
    pub prover: String,
    pub bound: Bound,
    pub checks: Vec<String>,
    pub stats: Stats,
    pub acknowledge: Option<String>,
    /// SHA-256 (hex) of the training manifest file the bundle was admitted against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// Payload of a `policy.rejection` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionPayload {
    pub bundle: String,
    pub version: u64,
    pub digest: String,
    /// `consistency`, `live-preconditions` or `no-stranded-context`.
    pub check: String,
    pub undecided: bool,
    /// For live preconditions: the predicate whose precondition is dead.
    pub predicate: Option<String>,
    /// Minimal unsat core (predicate ids).
    pub core: Vec<String>,
    pub core_minimal: bool,
    /// For stranded contexts: the context values with no satisfying outputs.
    pub counterexample: BTreeMap<String, String>,
    /// The rejection as a sentence.
    pub detail: String,
    pub prover: String,
    pub bound: Bound,
    pub stats: Stats,
    pub acknowledge: Option<String>,
    /// SHA-256 (hex) of the training manifest file the bundle was merged with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// The `policy.admission` payload of a signed statement whose bytes hash to `statement_sha256`.
pub fn admission_payload(s: &Statement, statement_sha256: String) -> AdmissionPayload {
    AdmissionPayload {
        bundle: s.name.clone(),
        version: s.version,
        succeeds: s.succeeds,
        version_id: s.version_id.clone(),
        digest: s.digest.clone(),
        statement_sha256,
        prover: s.proof.prover.clone(),
        bound: s.proof.bound,
        checks: s
            .proof
            .checks
            .iter()
            .map(|(check, _)| check.clone())
            .collect(),
        stats: s.proof.stats,
        acknowledge: s.acknowledge.clone(),
        manifest: s.manifest.clone(),
    }
}

pub fn rejection_payload(
    bundle: &Bundle,
    rejection: &Rejection,
    acknowledge: Option<&str>,
) -> RejectionPayload {
    let (predicate, core, core_minimal, counterexample) = match &rejection.finding {
        Finding::Refuted {
            predicate,
            core,
            core_minimal,
            counterexample,
        } => (
            predicate.clone(),
            core.clone(),
            *core_minimal,
            counterexample.iter().cloned().collect(),
        ),
        Finding::Undecided { .. } => (None, Vec::new(), false, BTreeMap::new()),
    };
    RejectionPayload {
        bundle: bundle.name.clone(),
        version: bundle.version,
        digest: bundle.digest_hex(),
        check: rejection.check.as_str().to_string(),
        undecided: rejection.is_undecided(),
        predicate,
        core,
        core_minimal,
        counterexample,
        detail: rejection.to_string(),
        prover: PROVER.to_string(),
        bound: rejection.bound,
        stats: rejection.stats,
        acknowledge: acknowledge.map(str::to_string),
        manifest: None,
    }
}

/// A record as read back from the lineage: `(index, kind, payload)`.
pub type RecordView<'a> = (u64, &'a str, &'a serde_json::Value);

/// The index of the latest `policy.rejection` of this exact digest, if any.
pub fn prior_rejection<'a>(
    records: impl IntoIterator<Item = RecordView<'a>>,
    digest_hex: &str,
) -> Option<u64> {
    records
        .into_iter()
        .filter(|(_, kind, payload)| {
            *kind == REJECTION_KIND
                && payload.get("digest").and_then(|d| d.as_str()) == Some(digest_hex)
        })
        .map(|(idx, _, _)| idx)
        .max()
}

/// Refuses to re-run the gate on a digest that was rejected before, unless the author says what
/// was revisited.
pub fn check_resubmission<'a>(
    records: impl IntoIterator<Item = RecordView<'a>>,
    bundle: &Bundle,
    acknowledge: Option<&str>,
) -> Result<(), PolicyError> {
    let digest = bundle.digest_hex();
    match (prior_rejection(records, &digest), acknowledge.map(str::trim)) {
        (Some(idx), None) | (Some(idx), Some("")) => Err(PolicyError::Succession {
            name: bundle.name.clone(),
            version: bundle.version,
            reason: format!(
                "this exact bundle (digest {}) was rejected at lineage record {idx}; change it, or resubmit with --acknowledge \"what was revisited\"",
                &digest[..16]
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{prove, Bound};

    const TEXT: &str = "[bundle]\nname = \"b\"\nversion = 1\n[vocabulary]\n\"output.tokens\" = { int = [0, 100] }\n[[predicate]]\nid = \"lo\"\ncategory = \"task\"\nrequire = \"output.tokens >= 50\"\n[[predicate]]\nid = \"hi\"\ncategory = \"task\"\nrequire = \"output.tokens <= 40\"\n";

    #[test]
    fn a_rejected_digest_needs_an_acknowledgement_to_come_back() {
        let bundle = Bundle::parse(TEXT, "b.toml").unwrap();
        let rejection = prove(&bundle, &Bound::default()).unwrap_err();
        let payload = serde_json::to_value(rejection_payload(&bundle, &rejection, None)).unwrap();
        assert_eq!(payload["core"], serde_json::json!(["lo", "hi"]));
        assert_eq!(payload["check"], "consistency");
        let other = serde_json::json!({"digest": "00"});
        let records = [(3, "note", &other), (7, REJECTION_KIND, &payload)];
        let err = check_resubmission(records, &bundle, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("was rejected at lineage record 7"), "{err}");
        assert!(check_resubmission(records, &bundle, Some("  ")).is_err());
        assert!(check_resubmission(records, &bundle, Some("split the token budget")).is_ok());
        // A changed bundle is a different digest and needs no acknowledgement.
        let changed = Bundle::parse(&TEXT.replace("<= 40", "<= 60"), "b.toml").unwrap();
        assert!(check_resubmission(records, &changed, None).is_ok());
    }
}
