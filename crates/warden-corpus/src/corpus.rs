//! [`AdmittedCorpus`]: a signed admission loaded for use — by the training data gate (lookups,
//! streaming the sources) and by `corpus verify` / `corpus prove`.
//!
//! A value of this type only exists once the declaration's signature has been checked against
//! the trust store for the corpus-authority role and the sample index matched its signed digest,
//! so holding one means "this is what the corpus authority admitted".

use std::path::{Path, PathBuf};

use warden_keys::{KeyRef, TrustStore};

use crate::admit::{Exclusion, LEAF_ENTRY, LEAVES_MAGIC};
use crate::declaration::{Provenance, SourceFormat};
use crate::error::CorpusError;
use crate::fingerprint::FingerprintIndex;
use crate::index::{SampleIndex, SampleRef};
use crate::signed::{self, DeclarationBody, FileRecord, SourceFileRecord};
use crate::source::{SourceFile, SourceSamples};
use crate::{parse_hash, Hash};

/// One declared source as the signed declaration records it.
#[derive(Debug, Clone)]
pub struct AdmittedSource {
    pub id: String,
    pub class: String,
    /// `deep`, `shallow` or a depth profile named by the training policy.
    pub depth: String,
    pub license: String,
    /// Admitted, but for authorized evaluation only.
    pub held_out: bool,
    /// False when the source was refused (license or class); see `refusal`.
    pub admitted: bool,
    pub refusal: Option<String>,
    /// The declared path resolved against the signed base directory, itself resolved against
    /// where the admission directory is now.
    pub path: PathBuf,
    pub format: Option<SourceFormat>,
    pub text_field: String,
    pub provenance: Provenance,
    /// Samples read at admission (admitted plus flagged).
    pub n_samples: u64,
    pub n_flagged: u64,
    /// RFC 6962 root over the source's sample hashes in file order (admitted sources only).
    pub root: Option<Hash>,
    /// The files at admission, with their line counts.
    pub files: Vec<SourceFileRecord>,
}

/// A verified admission; see the crate docs for the contract with the training loop.
#[derive(Debug)]
pub struct AdmittedCorpus {
    dir: PathBuf,
    body: DeclarationBody,
    digest: Hash,
    signer: KeyRef,
    root: Hash,
    sources: Vec<AdmittedSource>,
    index: SampleIndex,
}

fn hex_field(file: &Path, what: &str, text: &str) -> Result<Hash, CorpusError> {
    parse_hash(text)
        .map_err(|_| CorpusError::artifact(file, format!("{what} `{text}` is not a hash")))
}

/// `base.join(relative)` with `.` and `..` resolved by name: `/a/admitted` + `../synth` is
/// `/a/synth`. Sound because `base` is canonical (no symlink for `..` to step out of); keeps
/// the paths reported for sources the same as at admission.
fn join_lexically(base: &Path, relative: &Path) -> PathBuf {
    let mut joined = base.to_path_buf();
    for part in relative.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                joined.pop();
            }
            other => joined.push(other.as_os_str()),
        }
    }
    joined
}

/// Reads an output file and checks it against the digest the declaration signed.
pub(crate) fn read_committed(dir: &Path, record: &FileRecord) -> Result<Vec<u8>, CorpusError> {
    let path = dir.join(&record.file);
    let bytes = crate::fsio::read(&path)?;
    let digest = hex::encode(crate::fsio::sha256(&bytes));
    if digest != record.sha256 {
        return Err(CorpusError::artifact(
            &path,
            format!(
                "has SHA-256 {digest} but the signed declaration commits to {}: it was modified after admission",
                record.sha256
            ),
        ));
    }
    Ok(bytes)
}

impl AdmittedCorpus {
    /// Loads an admission directory: verifies the corpus-authority signature through `trust`,
    /// and loads the sample index after checking it against its signed digest.
    pub fn load(dir: &Path, trust: &TrustStore) -> Result<AdmittedCorpus, CorpusError> {
        let (body, digest, signer) = signed::read_verified(dir, trust)?;
        let decl_path = dir.join(signed::DECLARATION_FILE);
        // Source paths resolve against the admission directory's location now, so an admission
        // moved together with its corpus still finds it (v1 declarations recorded an absolute
        // base directory, which `join` keeps as it is).
        let here = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let base_dir = join_lexically(&here, Path::new(&body.base_dir));
        let mut sources = Vec::with_capacity(body.sources.len());
        for s in &body.sources {
            let format = match s.format.as_deref() {
                None => None,
                Some("jsonl") => Some(SourceFormat::Jsonl),
                Some("text") => Some(SourceFormat::Text),
                Some(other) => {
                    return Err(CorpusError::artifact(
                        &decl_path,
                        format!("source `{}` has unknown format `{other}`", s.id),
                    ))
                }
            };
            sources.push(AdmittedSource {
                id: s.id.clone(),
                class: s.class.clone(),
                depth: s.depth.clone(),
                license: s.license.clone(),
                held_out: s.held_out,
                admitted: s.decision == "admitted",
                refusal: s.refusal.clone(),
                path: base_dir.join(&s.path),
                format,
                text_field: s.text_field.clone(),
                provenance: s.provenance.clone(),
                n_samples: s.n_samples,
                n_flagged: s.n_flagged,
                root: s
                    .root
                    .as_deref()
                    .map(|r| hex_field(&decl_path, "source root", r))
                    .transpose()?,
                files: s.files.clone(),
            });
        }
        let root = hex_field(&decl_path, "corpus root", &body.corpus_root)?;
        let index_bytes = read_committed(dir, &body.sample_index)?;
        let index = crate::index::check(
            &dir.join(&body.sample_index.file),
            &index_bytes,
            sources.len(),
        )?;
        Ok(AdmittedCorpus {
            dir: dir.to_path_buf(),
            body,
            digest,
            signer,
            root,
            sources,
            index,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SHA-256 of the signed declaration body (`declaration.json`).
    pub fn declaration_digest(&self) -> [u8; 32] {
        self.digest
    }

    /// RFC 6962 root over the distinct admitted sample hashes in ascending order.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    pub fn name(&self) -> &str {
        &self.body.name
    }

    pub fn signer(&self) -> &KeyRef {
        &self.signer
    }

    /// The whole signed declaration.
    pub fn body(&self) -> &DeclarationBody {
        &self.body
    }

    pub fn sources(&self) -> &[AdmittedSource] {
        &self.sources
    }

    pub fn excluded_classes(&self) -> &[String] {
        &self.body.policy.excluded_classes
    }

    pub fn index(&self) -> &SampleIndex {
        &self.index
    }

    /// Where an admitted sample first occurs, in O(1) expected time; `None` for a sample that
    /// was never admitted: unknown, flagged, malformed, or only in refused sources.
    pub fn lookup(&self, hash: &[u8; 32]) -> Option<SampleRef> {
        self.index.get(hash).map(|e| e.first)
    }

    /// The files of a source as admitted (the declared order), resolved to paths.
    fn source_files(&self, source: &AdmittedSource) -> Vec<SourceFile> {
        source
            .files
            .iter()
            .map(|f| SourceFile {
                path: if f.path.is_empty() {
                    source.path.clone()
                } else {
                    source.path.join(&f.path)
                },
                relative: f.path.clone(),
                format: if f.format == "jsonl" {
                    SourceFormat::Jsonl
                } else {
                    SourceFormat::Text
                },
                bytes: f.bytes,
            })
            .collect()
    }

    /// Streams the current bytes on disk of a source's files, as samples. It does not filter:
    /// the data gate calls [`AdmittedCorpus::lookup`] on each sample's hash. A refused source
    /// has no admitted files recorded and yields nothing (an excluded-class one was read only
    /// into its class's deny index).
    pub fn read_source(&self, source_idx: u32) -> Result<SourceSamples, CorpusError> {
        let source = self
            .sources
            .get(source_idx as usize)
            .ok_or(CorpusError::NoSuchSource(source_idx))?;
        Ok(SourceSamples::new(
            source_idx,
            self.source_files(source),
            source.text_field.clone(),
        ))
    }

    /// Maps a source line to (file path, line within that file) using the admitted line counts.
    pub fn locate(&self, source_idx: u32, line: u64) -> Option<(PathBuf, u64)> {
        let source = self.sources.get(source_idx as usize)?;
        let mut base = 0;
        for f in &source.files {
            if line <= base + f.lines {
                let path = if f.path.is_empty() {
                    source.path.clone()
                } else {
                    source.path.join(&f.path)
                };
                return Some((path, line - base));
            }
            base += f.lines;
        }
        None
    }

    /// The `(line, sample hash)` leaves of an admitted source, in file order, checked against
    /// their signed digest.
    pub fn leaves(&self, source_idx: u32) -> Result<Vec<(u64, Hash)>, CorpusError> {
        let record = self
            .body
            .sources
            .get(source_idx as usize)
            .ok_or(CorpusError::NoSuchSource(source_idx))?;
        let Some(file) = &record.leaves else {
            return Ok(Vec::new());
        };
        let bytes = read_committed(&self.dir, file)?;
        let path = self.dir.join(&file.file);
        if bytes.len() < 8 || &bytes[..8] != LEAVES_MAGIC || (bytes.len() - 8) % LEAF_ENTRY != 0 {
            return Err(CorpusError::artifact(&path, "not a leaf list"));
        }
        Ok(bytes[8..]
            .chunks_exact(LEAF_ENTRY)
            .map(|c| {
                let mut line = [0u8; 8];
                line.copy_from_slice(&c[..8]);
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&c[8..40]);
                (u64::from_le_bytes(line), hash)
            })
            .collect())
    }

    /// Every excluded sample (flagged or malformed), checked against its signed digest.
    pub fn exclusions(&self) -> Result<Vec<Exclusion>, CorpusError> {
        let file = &self.body.exclusions.file;
        let bytes = read_committed(&self.dir, file)?;
        let path = self.dir.join(&file.file);
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_slice(l)
                    .map_err(|e| CorpusError::artifact(&path, format!("line {}: {e}", i + 1)))
            })
            .collect()
    }

    /// The fingerprint index of a class, checked against its signed digest (`None` when the
    /// class has no admitted text).
    pub fn fingerprint_index(&self, class: &str) -> Result<Option<FingerprintIndex>, CorpusError> {
        self.committed_index(class, |c| c.fingerprint.as_ref())
    }

    /// The deny index of a class: the fingerprints of its text in sources refused because the
    /// class is excluded, checked against its signed digest (`None` when there is none).
    pub fn denied_index(&self, class: &str) -> Result<Option<FingerprintIndex>, CorpusError> {
        self.committed_index(class, |c| c.denied.as_ref())
    }

    /// Every class's fingerprint index and every deny index, each checked against its signed
    /// digest: `(admitted, denied)` keyed by class.
    #[allow(clippy::type_complexity)]
    pub fn all_indexes(
        &self,
    ) -> Result<
        (
            std::collections::BTreeMap<String, FingerprintIndex>,
            std::collections::BTreeMap<String, FingerprintIndex>,
        ),
        CorpusError,
    > {
        let mut admitted = std::collections::BTreeMap::new();
        let mut denied = std::collections::BTreeMap::new();
        for c in &self.body.classes {
            if let Some(index) = self.fingerprint_index(&c.class)? {
                admitted.insert(c.class.clone(), index);
            }
            if let Some(index) = self.denied_index(&c.class)? {
                denied.insert(c.class.clone(), index);
            }
        }
        Ok((admitted, denied))
    }

    fn committed_index(
        &self,
        class: &str,
        pick: impl Fn(&crate::signed::ClassRecord) -> Option<&crate::signed::FingerprintRecord>,
    ) -> Result<Option<FingerprintIndex>, CorpusError> {
        let Some(record) = self
            .body
            .classes
            .iter()
            .find(|c| c.class == class)
            .and_then(pick)
        else {
            return Ok(None);
        };
        if record.scheme != crate::fingerprint::SCHEME {
            return Err(CorpusError::artifact(
                self.dir.join(&record.file),
                format!(
                    "uses fingerprint scheme `{}`, this build reads `{}`",
                    record.scheme,
                    crate::fingerprint::SCHEME
                ),
            ));
        }
        let file = FileRecord {
            file: record.file.clone(),
            sha256: record.sha256.clone(),
            bytes: 0,
        };
        let bytes = read_committed(&self.dir, &file)?;
        FingerprintIndex::parse(&bytes)
            .map(Some)
            .map_err(|m| CorpusError::artifact(self.dir.join(&record.file), m))
    }

    /// The `corpus.admission` lineage record payload for this admission.
    pub fn lineage_payload(&self) -> serde_json::Value {
        self.body.lineage_payload(&self.digest, &self.signer)
    }
}
