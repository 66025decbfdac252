//! The policy-admission workflow over one bundle directory, and the head check a runtime makes
//! before it uses a bundle.
//!
//! # The bundle directory
//!
//! One directory holds one bundle name's admitted history (names relative to it):
//!
//! | file | what | written |
//! | --- | --- | --- |
//! | `history/vN.admitted.json` | the signed statement of version N | once, never replaced ([`BundleFiles::create_new`]) |
//! | `bundle.canonical.toml` | the head's canonical text, for reading | replaced |
//! | `head.json` | the **signed head record** ([`HeadRecord`]): name, version, digests and the lineage record of the admission; its version never goes down | replaced |
//! | `bundle.admitted.json` | the head's signed statement (what a runtime loads) | replaced, last |
//! | `rejected/<digest>.json` | the gate's rejection of that exact bundle text | replaced |
//!
//! # The contract of [`Workflow::admit`]
//!
//! Inputs: the parsed candidate [`Bundle`], the directory ([`BundleFiles`]), optionally the
//! lineage ([`PolicyLog`]), the policy-authority key and the trust file.
//!
//! It refuses, before writing anything:
//! - a signing key that is not a policy-authority key trusted as such by the trust file
//!   ([`check_signing_key`], also done by [`Workflow::new`]);
//! - a directory whose signed head, installed statement or history files do not verify, or hold
//!   another bundle name, or whose head names a lineage record while no lineage is given, or
//!   whose head's lineage record is not that admission (another lineage);
//! - a different bundle while an admission is incomplete (see crash recovery);
//! - a digest rejected before (lineage record or `rejected/` file) without an acknowledgement;
//! - a version that does not succeed the highest admitted version — the highest of the signed
//!   head, every verified history file above it and every `policy.admission` record of the name
//!   in the lineage after the head's own record ([`crate::check_succession`]: no equal or lower
//!   version, no fork).
//!
//! Then it runs the gate. A rejection is appended to the lineage (`policy.rejection`), then
//! written to `rejected/<digest>.json`. An admission is written in this order: (1)
//! `history/vN.admitted.json` (create-new: an existing file with other bytes is a fork and is
//! refused), (2) the `policy.admission` lineage record, (3) `bundle.canonical.toml`, (4) the signed
//! `head.json`, (5) `bundle.admitted.json`.
//!
//! # Crash recovery
//!
//! A crash after step 1 leaves a history file above the head; after step 2 also a lineage record.
//! Until the admission completes, [`resolve_head`] refuses the directory (fail closed, naming
//! both versions), and `admit` refuses any other bundle. Re-running the admission of the same
//! bundle text completes it from the statement already in `history/` (it is not re-signed, so the
//! lineage record, which names the statement's SHA-256, still matches) and skips the lineage
//! record if it is already there. Every step is therefore redone or skipped idempotently.
//!
//! # Cost
//!
//! `admit` and `resolve_head` read the directory's head files, the history files *above* the
//! head (normally none), and the policy records the [`PolicyLog`] returns from the head's own
//! admission record on (all of them when the directory has no head yet, i.e. on its first
//! admission). The CLI's log scans the lineage from that record, so the cost is bounded by the
//! records appended since this bundle's head was admitted; a store with a kind index can answer
//! [`PolicyLog::policy_records_from`] in the number of `policy.*` records instead.
//!
//! # What a directory alone cannot show
//!
//! Without a lineage, the signed head and the history files catch a head replaced by an older
//! signed file, an older head record replayed, and a rewritten history file. Replacing the whole
//! directory with an older copy is only caught against the lineage (`--lineage`), which is
//! append-only and checkpointed.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use warden_keys::{Role, SigningKey, TrustStore};

use crate::bundle::Bundle;
use crate::gate::{prove, Bound, Rejection};
use crate::records::{self, AdmissionPayload, ADMISSION_KIND, REJECTION_KIND};
use crate::signing::{self, VerifiedBundle};
use crate::PolicyError;

/// An error from the caller's storage (file system, lineage store).
pub type StorageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The installed head: what a runtime loads.
pub const INSTALLED_FILE: &str = "bundle.admitted.json";
/// The signed head record.
pub const HEAD_RECORD_FILE: &str = "head.json";
/// The head's canonical text, for reading.
pub const CANONICAL_FILE: &str = "bundle.canonical.toml";

/// `history/vN.admitted.json`.
pub fn history_file(version: u64) -> String {
    format!("history/v{version}.admitted.json")
}

/// `rejected/<digest>.json`.
pub fn rejected_file(digest_hex: &str) -> String {
    format!("rejected/{digest_hex}.json")
}

/// The files of one bundle directory, supplied by the caller (this crate does no IO).
pub trait BundleFiles {
    /// The bytes of `name`, or `None` if it does not exist.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Every `N` with a `history/vN.admitted.json`, in any order.
    fn history_versions(&self) -> Result<Vec<u64>, StorageError>;
    /// Creates `name` durably and atomically; fails if it exists (never replaces it).
    fn create_new(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Replaces `name` durably and atomically (readers see the old or the new bytes).
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Where the files are, for messages (a directory path).
    fn location(&self) -> String;
}

/// A `policy.*` record read back from the lineage.
#[derive(Debug, Clone)]
pub struct LoggedRecord {
    pub index: u64,
    pub kind: String,
    pub payload: serde_json::Value,
}

/// The lineage, as far as the policy workflow needs it.
pub trait PolicyLog {
    /// Every record whose kind starts with `policy.` and whose index is `from` or above, in
    /// index order (the workflow filters by bundle name).
    fn policy_records_from(&self, from: u64) -> Result<Vec<LoggedRecord>, StorageError>;
    /// Appends a record signed by the policy authority; returns its index.
    fn append(
        &self,
        kind: &str,
        payload: serde_json::Value,
        policy_version: &str,
    ) -> Result<u64, StorageError>;
}

/// Domain separation for head record signatures.
pub const HEAD_DOMAIN: &[u8] = b"warden/policy-head/v1\n";
/// The head record's `type` field.
pub const HEAD_TYPE: &str = "warden/policy-head/v1";

/// The signed head record (`head.json`): which admitted version a runtime must use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadRecord {
    #[serde(rename = "type")]
    pub head_type: String,
    pub bundle: String,
    pub version: u64,
    pub version_id: String,
    /// SHA-256 of the canonical bundle text.
    pub digest: String,
    /// SHA-256 of the signed statement bytes (`history/vN.admitted.json`'s payload).
    pub statement_sha256: String,
    /// The index of the `policy.admission` record, when admitted with a lineage.
    pub lineage_record: Option<u64>,
}

impl HeadRecord {
    fn of(verified: &VerifiedBundle, lineage_record: Option<u64>) -> HeadRecord {
        let s = verified.statement();
        HeadRecord {
            head_type: HEAD_TYPE.to_string(),
            bundle: s.name.clone(),
            version: s.version,
            version_id: s.version_id.clone(),
            digest: s.digest.clone(),
            statement_sha256: verified.statement_digest_hex(),
            lineage_record,
        }
    }

    /// The one canonical encoding (compact JSON, fixed field order).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // A struct of strings, integers and options always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The signed envelope's bytes.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        signing::seal(HEAD_DOMAIN, &self.canonical_bytes(), key)
    }

    /// Verifies a signed head record (policy-authority, through `trust`) and its encoding.
    pub fn verify(
        bytes: &[u8],
        origin: &str,
        trust: &TrustStore,
    ) -> Result<HeadRecord, PolicyError> {
        let (payload, _) = signing::unseal(bytes, HEAD_DOMAIN, "policy head", origin, trust)?;
        let malformed = |reason: String| PolicyError::Malformed {
            origin: origin.to_string(),
            reason,
        };
        let head: HeadRecord = serde_json::from_slice(&payload)
            .map_err(|e| malformed(format!("signed head record does not decode: {e}")))?;
        if head.canonical_bytes() != payload || head.head_type != HEAD_TYPE {
            return Err(malformed(format!(
                "signed head record is not a canonical {HEAD_TYPE}"
            )));
        }
        Ok(head)
    }
}

/// Refuses a signing key that is not a policy-authority key trusted for that role by `trust`.
pub fn check_signing_key(key: &SigningKey, trust: &TrustStore) -> Result<(), PolicyError> {
    if key.role() != Role::PolicyAuthority {
        return Err(PolicyError::WrongRole {
            key: key.key_ref().to_string(),
            role: key.role(),
        });
    }
    trust
        .trusted_for(&key.key_ref(), Role::PolicyAuthority)
        .map_err(|source| PolicyError::UntrustedSigner {
            key: key.key_ref().to_string(),
            source,
        })?;
    Ok(())
}

/// Checks that `candidate` may replace `current` (a hot swap): same bundle name, a higher
/// version, and `succeeds` naming `current`'s version. Both are already signature-verified.
pub fn verify_successor(
    current: &VerifiedBundle,
    candidate: &VerifiedBundle,
) -> Result<(), PolicyError> {
    let (cur, cand) = (current.statement(), candidate.statement());
    if cur.name != cand.name {
        return Err(PolicyError::Succession {
            name: cand.name.clone(),
            version: cand.version,
            reason: format!("it is not a version of the running bundle `{}`", cur.name),
        });
    }
    if current.manifest_digest() != candidate.manifest_digest() {
        let name = |d: Option<[u8; 32]>| {
            d.map_or("no manifest".to_string(), |d| {
                format!("manifest sha256:{}", hex::encode(d))
            })
        };
        return Err(PolicyError::Succession {
            name: cand.name.clone(),
            version: cand.version,
            reason: format!(
                "it was admitted against {}, the running version against {}: a successor must be admitted for the running model's manifest (a bundle for another model is loaded with that model, not hot-swapped)",
                name(candidate.manifest_digest()),
                name(current.manifest_digest())
            ),
        });
    }
    signing::check_succession(candidate.bundle(), Some(cur.version))
}

fn storage(what: String) -> impl FnOnce(StorageError) -> PolicyError {
    move |source| PolicyError::Storage { what, source }
}

/// What the directory and the lineage say about one bundle name.
struct Survey {
    location: String,
    head: Option<HeadRecord>,
    installed: Option<VerifiedBundle>,
    /// Verified history statements above the head's version (all of them without a head).
    above: Vec<VerifiedBundle>,
    /// `policy.admission` records of this name after the head's own record.
    admissions: Vec<(u64, AdmissionPayload)>,
    /// `policy.rejection` records of this name after the head's own record (raw payloads).
    rejections: Vec<(u64, serde_json::Value)>,
}

impl Survey {
    fn read(
        files: &dyn BundleFiles,
        log: Option<&dyn PolicyLog>,
        trust: &TrustStore,
        expected_name: Option<&str>,
    ) -> Result<Survey, PolicyError> {
        let location = files.location();
        let origin = |name: &str| format!("{location}/{name}");
        let read = |name: &str| {
            files
                .read(name)
                .map_err(storage(format!("reading {}", origin(name))))
        };
        let head = read(HEAD_RECORD_FILE)?
            .map(|bytes| HeadRecord::verify(&bytes, &origin(HEAD_RECORD_FILE), trust))
            .transpose()?;
        let installed = read(INSTALLED_FILE)?
            .map(|bytes| VerifiedBundle::verify(&bytes, &origin(INSTALLED_FILE), trust))
            .transpose()?;
        let mut name = match (expected_name, &head, &installed) {
            (Some(name), _, _) => Some(name.to_string()),
            (None, Some(head), _) => Some(head.bundle.clone()),
            (None, None, Some(installed)) => Some(installed.statement().name.clone()),
            (None, None, None) => None,
        };
        let other_name = |found: &str| PolicyError::Directory {
            location: location.clone(),
            reason: format!(
                "it holds bundle `{found}`, not `{}`: use another directory",
                name.as_deref().unwrap_or_default()
            ),
        };
        if let Some(found) = head.as_ref().map(|h| h.bundle.as_str()) {
            if Some(found) != name.as_deref() {
                return Err(other_name(found));
            }
        }
        if let Some(found) = installed.as_ref().map(|i| i.statement().name.as_str()) {
            if Some(found) != name.as_deref() {
                return Err(other_name(found));
            }
        }
        let floor = head.as_ref().map_or(0, |h| h.version);
        let mut versions = files
            .history_versions()
            .map_err(storage(format!("listing {location}/history")))?;
        versions.retain(|v| head.is_none() || *v > floor);
        versions.sort_unstable();
        let mut above = Vec::with_capacity(versions.len());
        for version in versions {
            let file = history_file(version);
            let bytes = read(&file)?.ok_or_else(|| PolicyError::Directory {
                location: location.clone(),
                reason: format!("{file} was listed but cannot be read"),
            })?;
            let verified = VerifiedBundle::verify(&bytes, &origin(&file), trust)?;
            let s = verified.statement();
            // With neither a head nor an installed statement, the history names the bundle.
            let name = name.get_or_insert_with(|| s.name.clone());
            if s.name != *name || s.version != version {
                return Err(PolicyError::Directory {
                    location: location.clone(),
                    reason: format!(
                        "{file} holds bundle `{}` version {}, not what its name says",
                        s.name, s.version
                    ),
                });
            }
            above.push(verified);
        }

        let mut admissions = Vec::new();
        let mut rejections = Vec::new();
        if let (Some(log), Some(name)) = (log, name.as_deref()) {
            let from = head.as_ref().and_then(|h| h.lineage_record).unwrap_or(0);
            let records = log
                .policy_records_from(from)
                .map_err(storage(format!("reading the lineage from record {from}")))?;
            if let Some(anchor) = head.as_ref().and_then(|h| h.lineage_record.map(|i| (h, i))) {
                let (head, index) = anchor;
                let matches = records.first().is_some_and(|r| {
                    r.index == index
                        && r.kind == ADMISSION_KIND
                        && r.payload.get("statement_sha256").and_then(|v| v.as_str())
                            == Some(head.statement_sha256.as_str())
                });
                if !matches {
                    return Err(PolicyError::Directory {
                        location: location.clone(),
                        reason: format!(
                            "its signed head names lineage record {index} as the admission of {}, but that record in this lineage is not it (another lineage?)",
                            head.version_id
                        ),
                    });
                }
            }
            for record in records {
                if record.payload.get("bundle").and_then(|b| b.as_str()) != Some(name) {
                    continue;
                }
                let malformed = |e: serde_json::Error| PolicyError::Malformed {
                    origin: format!("lineage record {}", record.index),
                    reason: format!("{} payload does not decode: {e}", record.kind),
                };
                let index = record.index;
                if record.kind == ADMISSION_KIND {
                    let payload: AdmissionPayload =
                        serde_json::from_value(record.payload).map_err(malformed)?;
                    if head.as_ref().and_then(|h| h.lineage_record) != Some(index) {
                        admissions.push((index, payload));
                    }
                } else if record.kind == REJECTION_KIND {
                    rejections.push((index, record.payload));
                }
            }
        }
        Ok(Survey {
            location,
            head,
            installed,
            above,
            admissions,
            rejections,
        })
    }

    /// The highest admitted version any source shows, with where it was seen.
    fn top(&self) -> Option<(u64, String)> {
        let mut top: Option<(u64, String)> = None;
        let mut consider = |version: u64, source: String| {
            if top.as_ref().is_none_or(|(v, _)| version > *v) {
                top = Some((version, source));
            }
        };
        if let Some(head) = &self.head {
            consider(head.version, HEAD_RECORD_FILE.to_string());
        }
        if let Some(installed) = &self.installed {
            consider(installed.statement().version, INSTALLED_FILE.to_string());
        }
        for verified in &self.above {
            let version = verified.statement().version;
            consider(version, history_file(version));
        }
        for (index, payload) in &self.admissions {
            consider(payload.version, format!("lineage record {index}"));
        }
        top
    }

    /// Whether the head record, the installed statement and every other source agree.
    fn is_complete(&self) -> bool {
        match (&self.head, &self.installed, self.top()) {
            (Some(head), Some(installed), Some((top, _))) => {
                head.version == top && installed.statement_digest_hex() == head.statement_sha256
            }
            _ => false,
        }
    }
}

/// Loads the bundle a runtime must use from a bundle directory: the installed statement, checked
/// against the signed head record, against every history file above it and — when a lineage is
/// given — against every later `policy.admission` record of the name. A lower version than the
/// highest admitted one is refused naming both versions.
pub fn resolve_head(
    files: &dyn BundleFiles,
    trust: &TrustStore,
    log: Option<&dyn PolicyLog>,
) -> Result<VerifiedBundle, PolicyError> {
    let survey = Survey::read(files, log, trust, None)?;
    let location = survey.location.clone();
    let Some(installed) = &survey.installed else {
        return Err(PolicyError::Directory {
            location,
            reason: format!(
                "no {INSTALLED_FILE}: nothing is admitted here, or an admission was interrupted (re-run it to complete it)"
            ),
        });
    };
    let running = installed.statement().version;
    if let Some((top, source)) = survey.top() {
        if top > running {
            return Err(PolicyError::RolledBack {
                location,
                name: installed.statement().name.clone(),
                running,
                admitted: top,
                evidence: source,
            });
        }
    }
    let Some(head) = &survey.head else {
        return Err(PolicyError::Directory {
            location,
            reason: format!(
                "no signed head record ({HEAD_RECORD_FILE}): an admission was interrupted (re-run it to complete it)"
            ),
        });
    };
    if installed.statement_digest_hex() != head.statement_sha256 {
        return Err(PolicyError::Directory {
            location,
            reason: format!(
                "{INSTALLED_FILE} holds {} but the signed head names {}: refusing it",
                installed.statement().version_id,
                head.version_id
            ),
        });
    }
    Ok(installed.clone())
}

/// The admission workflow over one bundle directory (see the module documentation for the
/// contract, the write order and crash recovery).
pub struct Workflow<'a> {
    files: &'a dyn BundleFiles,
    log: Option<&'a dyn PolicyLog>,
    key: &'a SigningKey,
    trust: &'a TrustStore,
    manifest: Option<[u8; 32]>,
}

/// What an admission did.
#[derive(Debug)]
pub enum Outcome {
    /// Admitted and written (or an interrupted admission of the same bundle completed).
    Admitted {
        verified: Box<VerifiedBundle>,
        n_predicates: usize,
        lineage_record: Option<u64>,
        /// `true` when this run completed an admission an earlier run had begun.
        completed_interrupted: bool,
    },
    /// Rejected by the gate; recorded.
    Rejected {
        rejection: Box<Rejection>,
        lineage_record: Option<u64>,
    },
}

impl<'a> Workflow<'a> {
    /// Refuses a key the trust file does not trust as policy-authority, before anything is read
    /// or written.
    pub fn new(
        files: &'a dyn BundleFiles,
        log: Option<&'a dyn PolicyLog>,
        key: &'a SigningKey,
        trust: &'a TrustStore,
    ) -> Result<Workflow<'a>, PolicyError> {
        check_signing_key(key, trust)?;
        Ok(Workflow {
            files,
            log,
            key,
            trust,
            manifest: None,
        })
    }

    /// Admits against a training manifest: `digest` is the SHA-256 of the manifest file, named in
    /// the signed statement, the `policy.admission` record and a `policy.rejection` record. The
    /// bundle given to [`Workflow::admit`] is expected to be merged with the manifest's derived
    /// predicates already ([`crate::derive::merge`]). Once a directory's head names a manifest,
    /// admitting a successor without one is refused (it would silently drop the derived
    /// constraints); a successor for another manifest (a retrained model) is admitted, and
    /// [`verify_successor`] refuses to hot-swap it into a runtime serving the old model.
    pub fn with_manifest(mut self, digest: [u8; 32]) -> Workflow<'a> {
        self.manifest = Some(digest);
        self
    }

    /// Admits `bundle` into the directory (and the lineage), or records the gate's rejection.
    pub fn admit(
        &self,
        bundle: &Bundle,
        acknowledge: Option<&str>,
        bound: &Bound,
        now: SystemTime,
    ) -> Result<Outcome, PolicyError> {
        let survey = Survey::read(self.files, self.log, self.trust, Some(&bundle.name))?;
        let location = survey.location.clone();
        if let (Some(head), None) = (&survey.head, self.log) {
            if let Some(index) = head.lineage_record {
                return Err(PolicyError::Directory {
                    location,
                    reason: format!(
                        "its admissions are recorded in a lineage (record {index} admits {}): give that lineage",
                        head.version_id
                    ),
                });
            }
        }
        let digest = bundle.digest_hex();
        let top = survey.top();

        // An interrupted admission: complete it if this is the same bundle text, else refuse.
        if let (false, Some((top_version, _))) = (survey.is_complete(), &top) {
            let pending = self.pending_statement(&survey, *top_version)?;
            let recorded = survey
                .admissions
                .iter()
                .find(|(_, p)| p.version == *top_version)
                .map(|(index, p)| (*index, p.statement_sha256.clone()))
                .or_else(|| {
                    let head = survey.head.as_ref()?;
                    (head.version == *top_version)
                        .then_some((head.lineage_record?, head.statement_sha256.clone()))
                });
            if let Some((index, sha)) = &recorded {
                if *sha != pending.statement_digest_hex() {
                    return Err(PolicyError::Fork {
                        location,
                        version: *top_version,
                        reason: format!(
                            "lineage record {index} admits another statement than {}",
                            history_file(*top_version)
                        ),
                    });
                }
            }
            if pending.statement().digest != digest || pending.manifest_digest() != self.manifest {
                return Err(PolicyError::Directory {
                    location,
                    reason: format!(
                        "the admission of {} was interrupted: re-run the admission of that bundle (digest {}) to complete it before admitting another",
                        pending.statement().version_id,
                        &pending.statement().digest[..16]
                    ),
                });
            }
            let lineage_record = self.finish(&pending, recorded.map(|(index, _)| index))?;
            return Ok(Outcome::Admitted {
                n_predicates: pending.bundle().predicates.len(),
                verified: Box::new(pending),
                lineage_record,
                completed_interrupted: true,
            });
        }

        // Rejection memory: the lineage's records, and the directory's file without a lineage.
        let views = survey
            .rejections
            .iter()
            .map(|(index, payload)| (*index, REJECTION_KIND, payload));
        records::check_resubmission(views, bundle, acknowledge)?;
        let acknowledged = acknowledge.is_some_and(|a| !a.trim().is_empty());
        let rejected = rejected_file(&digest);
        let was_rejected = self
            .files
            .read(&rejected)
            .map_err(storage(format!("reading {location}/{rejected}")))?
            .is_some();
        if was_rejected && !acknowledged {
            return Err(PolicyError::Succession {
                name: bundle.name.clone(),
                version: bundle.version,
                reason: format!(
                    "this exact bundle was rejected before ({location}/{rejected}); change it, or resubmit with --acknowledge \"what was revisited\""
                ),
            });
        }
        signing::check_succession(bundle, top.as_ref().map(|(v, _)| *v))?;
        if let (Some(head), None) = (&survey.installed, self.manifest) {
            if let Some(manifest) = head.manifest_digest() {
                return Err(PolicyError::Succession {
                    name: bundle.name.clone(),
                    version: bundle.version,
                    reason: format!(
                        "the admitted {} was admitted against manifest sha256:{}: admit its successor with --manifest (without it the constraints derived from the model's training would be dropped)",
                        head.statement().version_id,
                        hex::encode(manifest)
                    ),
                });
            }
        }

        match prove(bundle, bound) {
            Err(rejection) => {
                let mut payload = records::rejection_payload(bundle, &rejection, acknowledge);
                payload.manifest = self.manifest.map(hex::encode);
                let value = serde_json::to_value(&payload).map_err(|e| PolicyError::Malformed {
                    origin: rejected.clone(),
                    reason: e.to_string(),
                })?;
                // The lineage is the memory; the file is the directory's copy of it.
                let lineage_record = match self.log {
                    Some(log) => Some(
                        log.append(
                            REJECTION_KIND,
                            value,
                            &signing::version_id(&bundle.name, bundle.version, &digest),
                        )
                        .map_err(storage(format!("appending {REJECTION_KIND}")))?,
                    ),
                    None => None,
                };
                let mut json = serde_json::to_vec_pretty(&payload).unwrap_or_default();
                json.push(b'\n');
                self.files
                    .replace(&rejected, &json)
                    .map_err(storage(format!("writing {location}/{rejected}")))?;
                Ok(Outcome::Rejected {
                    rejection,
                    lineage_record,
                })
            }
            Ok(proof) => {
                let signed = signing::admit_for_manifest(
                    bundle,
                    &proof,
                    self.key,
                    now,
                    acknowledge,
                    self.manifest,
                )?;
                let file = history_file(bundle.version);
                let verified = VerifiedBundle::verify(
                    signed.to_bytes(),
                    &format!("{location}/{file}"),
                    self.trust,
                )?;
                self.write_history(&file, signed.to_bytes(), bundle.version)?;
                let lineage_record = self.finish(&verified, None)?;
                Ok(Outcome::Admitted {
                    n_predicates: bundle.predicates.len(),
                    verified: Box::new(verified),
                    lineage_record,
                    completed_interrupted: false,
                })
            }
        }
    }

    /// The signed statement of the interrupted admission of `version` (from `history/`).
    fn pending_statement(
        &self,
        survey: &Survey,
        version: u64,
    ) -> Result<VerifiedBundle, PolicyError> {
        if let Some(found) = survey
            .above
            .iter()
            .find(|v| v.statement().version == version)
        {
            return Ok(found.clone());
        }
        let location = &survey.location;
        let file = history_file(version);
        let bytes = self
            .files
            .read(&file)
            .map_err(storage(format!("reading {location}/{file}")))?
            .ok_or_else(|| PolicyError::Directory {
                location: location.clone(),
                reason: format!(
                    "version {version} is admitted but {file} is missing: restore it (its statement is what the admission signed)"
                ),
            })?;
        VerifiedBundle::verify(&bytes, &format!("{location}/{file}"), self.trust)
    }

    /// Creates a history file, never replacing one: the same bytes are accepted (a re-run), other
    /// bytes are a fork.
    fn write_history(&self, file: &str, bytes: &[u8], version: u64) -> Result<(), PolicyError> {
        let location = self.files.location();
        let existing = self
            .files
            .read(file)
            .map_err(storage(format!("reading {location}/{file}")))?;
        match existing {
            Some(existing) if existing == bytes => Ok(()),
            Some(_) => Err(PolicyError::Fork {
                location,
                version,
                reason: format!("{file} already holds another signed statement"),
            }),
            None => self
                .files
                .create_new(file, bytes)
                .map_err(storage(format!("creating {location}/{file}"))),
        }
    }

    /// Steps 2–5 of an admission whose history file is written: the lineage record (unless
    /// `recorded`), the canonical text, the signed head record, the installed statement.
    fn finish(
        &self,
        verified: &VerifiedBundle,
        recorded: Option<u64>,
    ) -> Result<Option<u64>, PolicyError> {
        let location = self.files.location();
        let statement = verified.statement();
        let file = history_file(statement.version);
        let bytes = self
            .files
            .read(&file)
            .map_err(storage(format!("reading {location}/{file}")))?
            .ok_or_else(|| PolicyError::Directory {
                location: location.clone(),
                reason: format!("{file} disappeared during the admission"),
            })?;
        let lineage_record = match (recorded, self.log) {
            (Some(index), _) => Some(index),
            (None, Some(log)) => {
                let payload =
                    records::admission_payload(statement, verified.statement_digest_hex());
                let value = serde_json::to_value(&payload).map_err(|e| PolicyError::Malformed {
                    origin: file.clone(),
                    reason: e.to_string(),
                })?;
                Some(
                    log.append(ADMISSION_KIND, value, &statement.version_id)
                        .map_err(storage(format!("appending {ADMISSION_KIND}")))?,
                )
            }
            (None, None) => None,
        };
        self.files
            .replace(CANONICAL_FILE, statement.canonical_text.as_bytes())
            .map_err(storage(format!("writing {location}/{CANONICAL_FILE}")))?;
        // The head record never goes down: re-check the one on disk right before replacing it.
        let head_origin = format!("{location}/{HEAD_RECORD_FILE}");
        if let Some(old) = self
            .files
            .read(HEAD_RECORD_FILE)
            .map_err(storage(format!("reading {head_origin}")))?
        {
            let old = HeadRecord::verify(&old, &head_origin, self.trust)?;
            if old.version > statement.version {
                return Err(PolicyError::RolledBack {
                    location,
                    name: statement.name.clone(),
                    running: statement.version,
                    admitted: old.version,
                    evidence: HEAD_RECORD_FILE.to_string(),
                });
            }
        }
        let head = HeadRecord::of(verified, lineage_record);
        self.files
            .replace(HEAD_RECORD_FILE, &head.sign(self.key))
            .map_err(storage(format!("writing {head_origin}")))?;
        self.files
            .replace(INSTALLED_FILE, &bytes)
            .map_err(storage(format!("writing {location}/{INSTALLED_FILE}")))?;
        Ok(lineage_record)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::BTreeMap;

    use super::*;

    /// A bundle directory and a lineage in memory; the `fail_at`-th write (counting directory
    /// writes and lineage appends together, from 0) fails, as a crash there would stop the run.
    #[derive(Default, Clone)]
    struct Mem {
        files: RefCell<BTreeMap<String, Vec<u8>>>,
        log: RefCell<Vec<LoggedRecord>>,
        writes: Cell<usize>,
        fail_at: Cell<Option<usize>>,
    }

    impl Mem {
        fn write(&self) -> Result<(), StorageError> {
            let n = self.writes.get();
            self.writes.set(n + 1);
            if self.fail_at.get() == Some(n) {
                return Err("injected fault".into());
            }
            Ok(())
        }

        fn admissions(&self) -> Vec<u64> {
            let log = self.log.borrow();
            let admitted = log.iter().filter(|r| r.kind == ADMISSION_KIND);
            admitted
                .map(|r| r.payload["version"].as_u64().unwrap())
                .collect()
        }
    }

    impl BundleFiles for Mem {
        fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
            Ok(self.files.borrow().get(name).cloned())
        }
        fn history_versions(&self) -> Result<Vec<u64>, StorageError> {
            let files = self.files.borrow();
            let versions = files.keys().filter_map(|name| {
                name.strip_prefix("history/v")?
                    .strip_suffix(".admitted.json")?
                    .parse()
                    .ok()
            });
            Ok(versions.collect())
        }
        fn create_new(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
            self.write()?;
            if self.files.borrow().contains_key(name) {
                return Err(format!("{name} exists").into());
            }
            self.files.borrow_mut().insert(name.into(), bytes.to_vec());
            Ok(())
        }
        fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
            self.write()?;
            self.files.borrow_mut().insert(name.into(), bytes.to_vec());
            Ok(())
        }
        fn location(&self) -> String {
            "dir".into()
        }
    }

    impl PolicyLog for Mem {
        fn policy_records_from(&self, from: u64) -> Result<Vec<LoggedRecord>, StorageError> {
            let log = self.log.borrow();
            Ok(log.iter().filter(|r| r.index >= from).cloned().collect())
        }
        fn append(
            &self,
            kind: &str,
            payload: serde_json::Value,
            _policy_version: &str,
        ) -> Result<u64, StorageError> {
            self.write()?;
            let index = self.log.borrow().len() as u64;
            self.log.borrow_mut().push(LoggedRecord {
                index,
                kind: kind.into(),
                payload,
            });
            Ok(index)
        }
    }

    fn text(version: &str, cap: u32) -> Bundle {
        let text = format!("[bundle]\nname = \"b\"\n{version}\n[vocabulary]\n\"output.tokens\" = {{ int = [0, 100] }}\n[[predicate]]\nid = \"cap\"\ncategory = \"structural\"\nrequire = \"output.tokens <= {cap}\"\n");
        Bundle::parse(&text, "b.toml").unwrap()
    }

    fn v1() -> Bundle {
        text("version = 1", 10)
    }

    fn v2() -> Bundle {
        text("version = 2\nsucceeds = 1", 20)
    }

    fn authority() -> (SigningKey, TrustStore) {
        let key = SigningKey::from_seed(Role::PolicyAuthority, "policy", &[3; 32]).unwrap();
        let mut trust = TrustStore::new();
        trust.add(Role::PolicyAuthority, key.public().clone());
        (key, trust)
    }

    fn admit(mem: &Mem, lineage: bool, bundle: &Bundle) -> Result<Outcome, PolicyError> {
        let (key, trust) = authority();
        let log = lineage.then_some(mem as &dyn PolicyLog);
        Workflow::new(mem, log, &key, &trust)?.admit(
            bundle,
            None,
            &Bound::default(),
            SystemTime::UNIX_EPOCH,
        )
    }

    fn resolve(mem: &Mem, lineage: bool) -> Result<u64, String> {
        let (_, trust) = authority();
        let log = lineage.then_some(mem as &dyn PolicyLog);
        resolve_head(mem, &trust, log)
            .map(|v| v.statement().version)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_admission_interrupted_at_any_write_is_completed_by_running_it_again() {
        let base = Mem::default();
        admit(&base, true, &v1()).unwrap();
        // Admitting v2 writes five times: history, lineage record, canonical text, head, installed.
        for fail_at in 0..5 {
            let mem = base.clone();
            mem.writes.set(0);
            mem.fail_at.set(Some(fail_at));
            let err = admit(&mem, true, &v2()).unwrap_err().to_string();
            assert!(err.contains("injected fault"), "{err}");
            mem.fail_at.set(None);
            let history = mem.files.borrow().get("history/v2.admitted.json").cloned();
            if fail_at == 0 {
                assert_eq!(resolve(&mem, true), Ok(1));
            } else {
                // Fail closed: the directory is refused until the admission completes.
                let err = resolve(&mem, true).unwrap_err();
                assert!(err.contains("version 2"), "write {fail_at}: {err}");
                // Another bundle cannot slip in while the admission is incomplete.
                let other = admit(&mem, true, &text("version = 2\nsucceeds = 1", 30));
                let err = other.unwrap_err().to_string();
                assert!(err.contains("was interrupted"), "write {fail_at}: {err}");
            }
            let Outcome::Admitted {
                completed_interrupted,
                ..
            } = admit(&mem, true, &v2()).unwrap()
            else {
                panic!("v2 must be admitted");
            };
            assert_eq!(completed_interrupted, fail_at > 0);
            assert_eq!(resolve(&mem, true), Ok(2));
            assert_eq!(resolve(&mem, false), Ok(2));
            assert_eq!(mem.admissions(), [1, 2], "write {fail_at}: one record each");
            if let Some(history) = history {
                let now = mem.files.borrow()["history/v2.admitted.json"].clone();
                assert_eq!(history, now, "a history file is never rewritten");
            }
        }
    }

    #[test]
    fn a_first_admission_interrupted_is_refused_until_it_is_completed() {
        for fail_at in 1..5 {
            let mem = Mem::default();
            mem.fail_at.set(Some(fail_at));
            assert!(admit(&mem, true, &v1()).is_err());
            mem.fail_at.set(None);
            let err = resolve(&mem, true).unwrap_err();
            assert!(err.contains("an admission was interrupted"), "{err}");
            assert!(matches!(
                admit(&mem, true, &v1()),
                Ok(Outcome::Admitted {
                    completed_interrupted: true,
                    ..
                })
            ));
            assert_eq!(resolve(&mem, true), Ok(1));
            assert_eq!(mem.admissions(), [1]);
        }
    }

    #[test]
    fn a_head_rolled_back_on_disk_is_refused_naming_both_versions() {
        for lineage in [false, true] {
            let mem = Mem::default();
            admit(&mem, lineage, &v1()).unwrap();
            let v1_head = mem.files.borrow()[HEAD_RECORD_FILE].clone();
            admit(&mem, lineage, &v2()).unwrap();
            let v1_statement = mem.files.borrow()["history/v1.admitted.json"].clone();
            // The history file copied over the installed head.
            mem.files
                .borrow_mut()
                .insert(INSTALLED_FILE.into(), v1_statement);
            let err = resolve(&mem, lineage).unwrap_err();
            assert!(err.contains("bundle `b` version 1 is not the highest admitted version: version 2 is admitted (head.json)"), "{err}");
            // ... and the older signed head record replayed too: the history file still shows v2.
            mem.files
                .borrow_mut()
                .insert(HEAD_RECORD_FILE.into(), v1_head);
            let err = resolve(&mem, lineage).unwrap_err();
            assert!(
                err.contains("version 2 is admitted (history/v2.admitted.json)"),
                "{err}"
            );
            // A different version 2 cannot be admitted over it: history is never overwritten.
            let err = admit(&mem, lineage, &text("version = 2\nsucceeds = 1", 30))
                .unwrap_err()
                .to_string();
            assert!(err.contains("admission of b@v2+"), "{err}");
            if lineage {
                // The whole directory rolled back: only the lineage still knows version 2.
                mem.files.borrow_mut().remove("history/v2.admitted.json");
                let err = resolve(&mem, true).unwrap_err();
                assert!(
                    err.contains("version 2 is admitted (lineage record 1)"),
                    "{err}"
                );
                let err = admit(&mem, true, &text("version = 2\nsucceeds = 1", 30))
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("history/v2.admitted.json is missing"), "{err}");
            }
        }
    }

    #[test]
    fn an_existing_history_file_with_other_bytes_is_a_fork() {
        let mem = Mem::default();
        admit(&mem, false, &v1()).unwrap();
        let (key, trust) = authority();
        let workflow = Workflow::new(&mem, None, &key, &trust).unwrap();
        let err = workflow
            .write_history("history/v1.admitted.json", b"other", 1)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "dir: version 1 would fork the history: history/v1.admitted.json already holds another signed statement"
        );
    }

    #[test]
    fn a_key_the_trust_file_holds_for_another_role_is_refused_before_any_write() {
        let mem = Mem::default();
        // A corpus key relabelled as policy-authority: the trust file still says corpus.
        let key = SigningKey::from_seed(Role::PolicyAuthority, "corpus", &[9; 32]).unwrap();
        let mut trust = TrustStore::new();
        trust.add(Role::CorpusAuthority, key.public().clone());
        let err = Workflow::new(&mem, Some(&mem), &key, &trust)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("signing key corpus+") && err.contains("policy-authority"),
            "{err}"
        );
        assert_eq!(mem.writes.get(), 0);
        assert!(mem.files.borrow().is_empty() && mem.log.borrow().is_empty());
    }

    #[test]
    fn a_rejected_digest_is_remembered_by_the_lineage_and_the_directory() {
        for lineage in [false, true] {
            let mem = Mem::default();
            let bad = Bundle::parse(
                &format!("{}[[predicate]]\nid = \"lo\"\ncategory = \"task\"\nrequire = \"output.tokens >= 50\"\n", v1().canonical_text()),
                "bad.toml",
            )
            .unwrap();
            assert!(matches!(
                admit(&mem, lineage, &bad),
                Ok(Outcome::Rejected { .. })
            ));
            let err = admit(&mem, lineage, &bad).unwrap_err().to_string();
            let expected = if lineage {
                "was rejected at lineage record 0"
            } else {
                "was rejected before (dir/rejected/"
            };
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn a_successor_must_name_the_running_version() {
        let mem = Mem::default();
        admit(&mem, false, &v1()).unwrap();
        admit(&mem, false, &v2()).unwrap();
        let (_, trust) = authority();
        let load =
            |file: &str| VerifiedBundle::verify(&mem.files.borrow()[file], file, &trust).unwrap();
        let (one, two) = (
            load("history/v1.admitted.json"),
            load("history/v2.admitted.json"),
        );
        assert!(verify_successor(&one, &two).is_ok());
        let err = verify_successor(&two, &one).unwrap_err().to_string();
        assert_eq!(
            err,
            "bundle `b` version 1 refused: version 1 is not above the admitted version 2"
        );
    }

    #[test]
    fn the_manifest_digest_is_signed_recorded_and_checked_on_succession() {
        let mem = Mem::default();
        let (key, trust) = authority();
        let manifest = [9u8; 32];
        let admit_for = |bundle: &Bundle, digest: [u8; 32]| {
            Workflow::new(&mem, Some(&mem as &dyn PolicyLog), &key, &trust)
                .unwrap()
                .with_manifest(digest)
                .admit(bundle, None, &Bound::default(), SystemTime::UNIX_EPOCH)
                .unwrap()
        };
        let Outcome::Admitted { verified, .. } = admit_for(&v1(), manifest) else {
            panic!("v1 must be admitted");
        };
        assert_eq!(verified.manifest_digest(), Some(manifest));
        assert_eq!(
            verified.statement().manifest.as_deref(),
            Some(hex::encode(manifest).as_str())
        );
        let record = mem.log.borrow()[0].clone();
        assert_eq!(record.kind, ADMISSION_KIND);
        assert_eq!(record.payload["manifest"], hex::encode(manifest));
        // Through the signed file a runtime loads.
        let installed = mem.files.borrow()[INSTALLED_FILE].clone();
        let loaded = crate::AdmittedBundle::load(&installed, "installed", &trust).unwrap();
        assert_eq!(loaded.manifest_digest(), Some(manifest));
        loaded.verified().require_manifest(&manifest).unwrap();
        let err = loaded
            .verified()
            .require_manifest(&[8; 32])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "it was admitted against manifest sha256:{}, but the model's manifest is sha256:{}",
                hex::encode(manifest),
                hex::encode([8u8; 32])
            )),
            "{err}"
        );
        // A successor without the manifest would drop the derived predicates: refused.
        let err = admit(&mem, true, &v2()).unwrap_err().to_string();
        assert!(err.contains("admit its successor with --manifest"), "{err}");
        // A successor for another model's manifest is admitted, but never hot-swapped in.
        let Outcome::Admitted { verified: next, .. } = admit_for(&v2(), [8; 32]) else {
            panic!("v2 must be admitted");
        };
        let err = verify_successor(&verified, &next).unwrap_err().to_string();
        assert!(
            err.contains("a successor must be admitted for the running model's manifest"),
            "{err}"
        );
        let Outcome::Admitted { verified: same, .. } =
            admit_for(&text("version = 3\nsucceeds = 2", 30), [8; 32])
        else {
            panic!("v3 must be admitted");
        };
        verify_successor(&next, &same).unwrap();

        // A rejection names the manifest too.
        let bad = Bundle::parse(
            "[bundle]\nname = \"b\"\nversion = 4\nsucceeds = 3\n[vocabulary]\n\"output.tokens\" = { int = [0, 100] }\n[[predicate]]\nid = \"low\"\ncategory = \"structural\"\nrequire = \"output.tokens <= 10\"\n[[predicate]]\nid = \"high\"\ncategory = \"structural\"\nrequire = \"output.tokens >= 20\"\n",
            "bad.toml",
        )
        .unwrap();
        assert!(matches!(admit_for(&bad, [8; 32]), Outcome::Rejected { .. }));
        let log = mem.log.borrow();
        let rejection = log.last().unwrap();
        assert_eq!(rejection.kind, REJECTION_KIND);
        assert_eq!(rejection.payload["manifest"], hex::encode([8u8; 32]));
    }

    #[test]
    fn a_bundle_admitted_without_a_manifest_encodes_as_before() {
        let mem = Mem::default();
        let Outcome::Admitted { verified, .. } = admit(&mem, true, &v1()).unwrap() else {
            panic!("v1 must be admitted");
        };
        assert_eq!(verified.manifest_digest(), None);
        assert!(
            !String::from_utf8_lossy(&verified.statement().canonical_bytes()).contains("manifest")
        );
        assert!(mem.log.borrow()[0].payload.get("manifest").is_none());
        let err = verified.require_manifest(&[1; 32]).unwrap_err().to_string();
        assert!(err.contains("it was admitted without a manifest"), "{err}");
    }
}
