//! Loading a governed model: Warden's byte-level GPT is used only after everything it was made
//! from verifies (issue 9 §1).
//!
//! [`GovernedRun::load`] checks, in order, and refuses naming what did not match:
//! 1. `RUN_DIR/manifest.intoto.json` is a DSSE envelope whose every signature verifies through
//!    the trust file for the **training-authority** role, holding an in-toto statement of
//!    predicate type [`warden_train::manifest::PREDICATE_TYPE`];
//! 2. the SHA-256 of `RUN_DIR/model.safetensors` equals the statement's subject digest;
//! 3. the manifest's lineage point: the lineage (the manifest's `lineage.dir`, as training
//!    recorded it — absolute, or relative to the working directory as it was given to
//!    `warden train` — or [`LoadOptions::lineage`]) holds a signed checkpoint of exactly the
//!    manifest's `size` whose root and origin are the manifest's, and the whole lineage verifies
//!    through the trust file (`warden_store::verify`) *pinned* to that checkpoint, i.e. the
//!    records prove that root at that size and the log extends it. A lineage cut or rolled back
//!    below `size` has no such checkpoint and is refused naming its record count;
//! 4. the corpus the run trained on (`corpus` in `RUN_DIR/config.toml`) loads through the trust
//!    file (corpus-authority signature), its declaration digest equals the manifest's
//!    `corpus.declaration_digest`, and every admitted and deny fingerprint file matches the
//!    digest the signed declaration commits to. `config.toml` itself is not trusted: it only
//!    says where to look, and the signed digests decide;
//! 5. the weights decode into [`Gpt`] with the shape the manifest's `model.config` states.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use warden_corpus::declaration::{FlaggerConfig, RegexFlagger};
use warden_corpus::{AdmittedCorpus, FingerprintIndex};
use warden_keys::{Role, TrustStore};
use warden_train::model::{Gpt, ModelConfig};

/// The manifest file of a run directory.
pub const MANIFEST_FILE: &str = "manifest.intoto.json";
/// The weights file of a run directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// The training config of a run directory (read only for the corpus path).
pub const CONFIG_FILE: &str = "config.toml";

/// Knobs of [`GovernedRun::load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Verify this lineage directory instead of the one the manifest names (a lineage moved
    /// with its run, or a copy).
    pub lineage: Option<PathBuf>,
}

/// Why a run was not loaded. Every variant names the file and what did not match.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: the manifest does not verify for the training-authority role: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("{}: {field}: {reason}", path.display())]
    ManifestContent {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{}: model digest mismatch: the manifest's subject is sha256 {expected}…, the file has sha256 {found}…", path.display())]
    ModelDigest {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("lineage {}: {reason}", dir.display())]
    Lineage { dir: PathBuf, reason: String },
    #[error("corpus {}: {reason}", dir.display())]
    Corpus { dir: PathBuf, reason: String },
    #[error("{}: the weights do not load: {reason}", path.display())]
    Weights { path: PathBuf, reason: String },
}

/// A model whose manifest, weights, lineage point and corpus all verified.
pub struct GovernedRun {
    pub gpt: Gpt,
    pub model_config: ModelConfig,
    /// SHA-256 of the manifest file's bytes (what bundles admitted for this model name).
    pub manifest_digest: [u8; 32],
    /// The verified statement's predicate (the training manifest).
    pub manifest: serde_json::Value,
    /// The admitted fingerprint index of every class that has admitted text.
    pub fingerprints: BTreeMap<String, FingerprintIndex>,
    /// The deny index of every excluded class whose refused text was fingerprinted.
    pub denied: BTreeMap<String, FingerprintIndex>,
    /// The corpus admission's sample flaggers, as signed in its declaration.
    pub flaggers: FlaggerConfig,
}

impl std::fmt::Debug for GovernedRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernedRun")
            .field("model_config", &self.model_config)
            .field("manifest_digest", &hex::encode(self.manifest_digest))
            .field(
                "fingerprints",
                &self.fingerprints.keys().collect::<Vec<_>>(),
            )
            .field("denied", &self.denied.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The first 16 hex digits of a digest, for messages.
fn prefix(hex: &str) -> String {
    hex.chars().take(16).collect()
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl GovernedRun {
    /// Loads `run_dir` only if every check in the module docs passes.
    pub fn load(
        run_dir: &Path,
        trust: &TrustStore,
        opts: LoadOptions,
    ) -> Result<GovernedRun, LoadError> {
        // 1. The manifest.
        let manifest_path = run_dir.join(MANIFEST_FILE);
        let manifest_bytes = read(&manifest_path)?;
        let manifest_digest: [u8; 32] = Sha256::digest(&manifest_bytes).into();
        let bad_manifest = |reason: String| LoadError::Manifest {
            path: manifest_path.clone(),
            reason,
        };
        let text = std::str::from_utf8(&manifest_bytes)
            .map_err(|e| bad_manifest(format!("not UTF-8: {e}")))?;
        let envelope =
            warden_attest::Envelope::from_json(text).map_err(|e| bad_manifest(e.to_string()))?;
        let verified = warden_attest::verify_envelope(&envelope, trust, Role::TrainingAuthority)
            .map_err(|e| {
                let mut reason = e.to_string();
                if let warden_attest::AttestError::BadSignature { keyid, .. } = &e {
                    // Say what the key is trusted for instead, if anything.
                    if let Some((name, id)) = keyid.rsplit_once('+') {
                        let key = warden_keys::KeyRef {
                            name: name.to_string(),
                            id: id.to_string(),
                        };
                        let roles: Vec<String> =
                            trust.roles_of(&key).iter().map(|r| r.to_string()).collect();
                        if !roles.is_empty() {
                            reason.push_str(&format!(
                                " (the trust file trusts {keyid} only as: {})",
                                roles.join(", ")
                            ));
                        }
                    }
                }
                bad_manifest(reason)
            })?;
        let statement = verified.statement;
        let content = |field: &str, reason: String| LoadError::ManifestContent {
            path: manifest_path.clone(),
            field: field.to_string(),
            reason,
        };
        if statement.predicate_type != warden_train::manifest::PREDICATE_TYPE {
            return Err(content(
                "predicateType",
                format!(
                    "is {:?}, expected Warden's training manifest {:?}",
                    statement.predicate_type,
                    warden_train::manifest::PREDICATE_TYPE
                ),
            ));
        }
        let predicate = statement.predicate;
        let str_field = |pointer: &str| -> Result<String, LoadError> {
            predicate
                .pointer(pointer)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| content(pointer, "missing or not a string".into()))
        };

        // 2. The weights' digest.
        let subject = statement
            .subject
            .iter()
            .find(|s| s.name == MODEL_FILE)
            .ok_or_else(|| content("subject", format!("names no {MODEL_FILE}")))?;
        let expected = subject
            .digest
            .get("sha256")
            .ok_or_else(|| content("subject", format!("{MODEL_FILE} has no sha256 digest")))?;
        let model_path = run_dir.join(MODEL_FILE);
        let model_bytes = read(&model_path)?;
        let found = hex::encode(Sha256::digest(&model_bytes));
        if &found != expected {
            return Err(LoadError::ModelDigest {
                path: model_path,
                expected: prefix(expected),
                found: prefix(&found),
            });
        }

        // 3. The lineage point.
        let size = predicate
            .pointer("/lineage/size")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| content("/lineage/size", "missing or not an integer".into()))?;
        let root = str_field("/lineage/root")?;
        let origin = str_field("/lineage/origin")?;
        let lineage_dir = match opts.lineage {
            Some(dir) => dir,
            None => PathBuf::from(str_field("/lineage/dir")?),
        };
        verify_lineage_point(&lineage_dir, trust, size, &root, &origin)?;

        // 4. The corpus and its fingerprint files.
        let corpus_dir = corpus_dir(run_dir)?;
        let corpus_err = |reason: String| LoadError::Corpus {
            dir: corpus_dir.clone(),
            reason,
        };
        let corpus =
            AdmittedCorpus::load(&corpus_dir, trust).map_err(|e| corpus_err(e.to_string()))?;
        let declared = str_field("/corpus/declaration_digest")?;
        let found = hex::encode(corpus.declaration_digest());
        if found != declared {
            return Err(corpus_err(format!(
                "declaration digest mismatch: the manifest names sha256 {}…, the signed declaration there is sha256 {}…",
                prefix(&declared),
                prefix(&found)
            )));
        }
        let (fingerprints, denied) = corpus
            .all_indexes()
            .map_err(|e| corpus_err(e.to_string()))?;
        let flaggers = corpus_flaggers(&corpus).map_err(corpus_err)?;

        // 5. The weights.
        let model_config: ModelConfig = predicate
            .pointer("/model/config")
            .cloned()
            .ok_or_else(|| content("/model/config", "missing".into()))
            .and_then(|v| {
                serde_json::from_value(v).map_err(|e| content("/model/config", e.to_string()))
            })?;
        let weights_err = |reason: String| LoadError::Weights {
            path: model_path.clone(),
            reason,
        };
        let (tensors, _) =
            warden_train::io::read_safetensors(&model_bytes, &model_path.display().to_string())
                .map_err(|e| weights_err(e.to_string()))?;
        let gpt =
            Gpt::from_tensors(&model_config, &tensors).map_err(|e| weights_err(e.to_string()))?;

        Ok(GovernedRun {
            gpt,
            model_config,
            manifest_digest,
            manifest: predicate,
            fingerprints,
            denied,
            flaggers,
        })
    }
}

/// The lineage holds a signed checkpoint at `size` with the manifest's root and origin, and
/// verifies (pinned to it) through `trust`.
fn verify_lineage_point(
    dir: &Path,
    trust: &TrustStore,
    size: u64,
    root: &str,
    origin: &str,
) -> Result<(), LoadError> {
    let err = |reason: String| LoadError::Lineage {
        dir: dir.to_path_buf(),
        reason,
    };
    let checkpoints = warden_store::read_checkpoints(dir).map_err(|e| err(e.to_string()))?;
    let Some(pinned) = checkpoints.into_iter().find(|c| c.checkpoint.size == size) else {
        // Say how far the lineage goes (and whether it verifies at all).
        let options = warden_store::VerifyOptions {
            unsealed_tail: warden_lineage::UnsealedTail::Allow,
            ..Default::default()
        };
        let reason = match warden_store::verify(dir, trust, &options) {
            Ok(v) if v.records < size => format!(
                "holds {} records, fewer than the manifest's lineage size {size}: it was cut or rolled back",
                v.records
            ),
            Ok(v) => format!(
                "holds no signed checkpoint at the manifest's lineage size {size} ({} records, latest checkpoint at {})",
                v.records,
                v.latest_checkpoint.map_or("none".to_string(), |(s, _)| s.to_string())
            ),
            Err(e) => format!("does not verify: {e}"),
        };
        return Err(err(reason));
    };
    let found_root = hex::encode(pinned.checkpoint.root);
    if found_root != root {
        return Err(err(format!(
            "root mismatch at size {size}: the manifest names {}…, the lineage's checkpoint has {}…",
            prefix(root),
            prefix(&found_root)
        )));
    }
    if pinned.checkpoint.origin != origin {
        return Err(err(format!(
            "origin mismatch: the manifest names {origin:?}, the lineage's checkpoint has {:?}",
            pinned.checkpoint.origin
        )));
    }
    // Records appended after the manifest's point (by later runs sharing the lineage) do not
    // bear on it: an unsealed tail is allowed, the pinned point itself is sealed by a signed
    // checkpoint the verification checks.
    let options = warden_store::VerifyOptions {
        pinned: Some(pinned),
        unsealed_tail: warden_lineage::UnsealedTail::Allow,
        ..Default::default()
    };
    let verified = warden_store::verify(dir, trust, &options)
        .map_err(|e| err(format!("does not verify: {e}")))?;
    if verified.records < size {
        return Err(err(format!(
            "holds {} records, fewer than the manifest's lineage size {size}",
            verified.records
        )));
    }
    Ok(())
}

/// The corpus directory named in the run's `config.toml`.
fn corpus_dir(run_dir: &Path) -> Result<PathBuf, LoadError> {
    let path = run_dir.join(CONFIG_FILE);
    let bytes = read(&path)?;
    let bad = |reason: String| LoadError::ManifestContent {
        path: path.clone(),
        field: "corpus".into(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    let table: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let corpus = table
        .get("corpus")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("missing or not a path".into()))?;
    let corpus = PathBuf::from(corpus);
    // Training records an absolute path; a relative one resolves like the config's own.
    Ok(if corpus.is_relative() {
        run_dir.join(corpus)
    } else {
        corpus
    })
}

/// The flaggers `corpus`'s signed declaration records, compiled (what
/// [`crate::Detectors::flaggers`] takes). Errors name the regex that does not compile.
pub fn corpus_flaggers(corpus: &AdmittedCorpus) -> Result<FlaggerConfig, String> {
    let record = &corpus.body().policy.flaggers;
    let mut regexes = Vec::with_capacity(record.regexes.len());
    for r in &record.regexes {
        let regex = regex::Regex::new(&r.pattern)
            .map_err(|e| format!("flagger regex `{}` does not compile: {e}", r.id))?;
        regexes.push(RegexFlagger {
            id: r.id.clone(),
            pattern: r.pattern.clone(),
            regex,
        });
    }
    let mut blocklist = std::collections::BTreeSet::new();
    for h in &record.blocklist {
        blocklist
            .insert(warden_corpus::parse_hash(h).map_err(|e| format!("flagger blocklist: {e}"))?);
    }
    Ok(FlaggerConfig {
        email: record.email,
        phone: record.phone,
        card: record.card,
        regexes,
        blocklist,
    })
}
