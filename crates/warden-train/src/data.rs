//! What the training loop needs from an admitted corpus, as a small trait.
//!
//! The loop reads sample bytes as they are on disk *now* and asks the signed admission index
//! whether that exact content was admitted; it never trusts a file because of its name. The real
//! implementation wraps `warden_corpus::AdmittedCorpus`; [`MemoryCorpus`] serves unit tests.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};

use crate::TrainError;

/// One admitted source as the declaration describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub id: String,
    pub class: String,
    pub depth: String,
    pub license: String,
    pub held_out: bool,
    pub admitted: bool,
}

/// Where an admitted sample sits: source index and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleLocation {
    pub source: u32,
    pub line: u64,
}

/// A sample as read from disk now, with the hash of its current bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSample {
    pub source: u32,
    pub line: u64,
    pub text: String,
    pub hash: [u8; 32],
}

pub trait AdmissionIndex: Send + Sync {
    fn sources(&self) -> &[SourceInfo];
    /// O(1): where the sample with this content hash was admitted, if it was.
    fn lookup(&self, hash: &[u8; 32]) -> Option<SampleLocation>;
    fn excluded_classes(&self) -> &[String];
    fn declaration_digest(&self) -> [u8; 32];
    fn root(&self) -> [u8; 32];
    /// The samples of one source as they are now (not filtered: the data gate filters).
    fn read_source(&self, source: u32) -> Result<Vec<PoolSample>, TrainError>;
    /// Why admission excluded a sample with this hash (`flagged: email`), if it listed it.
    /// Such a sample is refused at the data gate; a hash that is neither admitted nor listed is
    /// an integrity failure (content changed after admission).
    fn exclusion(&self, _hash: &[u8; 32]) -> Option<String> {
        None
    }
}

/// SHA-256 of a sample's bytes (the in-memory corpus's content hash).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// An in-memory admitted corpus for tests: admission hashes every sample once; `edit` changes
/// the current text afterwards without touching the admission index, like an edit on disk.
pub struct MemoryCorpus {
    sources: Vec<SourceInfo>,
    texts: Vec<Vec<String>>,
    index: HashMap<[u8; 32], SampleLocation>,
    excluded: Vec<String>,
    flagged: HashMap<[u8; 32], String>,
    digest: [u8; 32],
}

impl MemoryCorpus {
    pub fn admit(sources: Vec<(SourceInfo, Vec<String>)>) -> MemoryCorpus {
        let mut index = HashMap::new();
        let mut hasher = Sha256::new();
        let mut infos = Vec::new();
        let mut texts = Vec::new();
        for (source_idx, (info, lines)) in sources.into_iter().enumerate() {
            hasher.update(info.id.as_bytes());
            for (line, text) in lines.iter().enumerate() {
                let hash = sha256(text.as_bytes());
                hasher.update(hash);
                index.entry(hash).or_insert(SampleLocation {
                    source: source_idx as u32,
                    line: line as u64,
                });
            }
            infos.push(info);
            texts.push(lines);
        }
        MemoryCorpus {
            sources: infos,
            texts,
            index,
            excluded: Vec::new(),
            flagged: HashMap::new(),
            digest: hasher.finalize().into(),
        }
    }

    pub fn edit(&mut self, source: usize, line: usize, text: &str) {
        self.texts[source][line] = text.to_string();
    }

    /// Excludes a sample as admission does for a flagger hit: not admitted, but listed.
    pub fn flag(&mut self, source: usize, line: usize, reason: &str) {
        let hash = sha256(self.texts[source][line].as_bytes());
        self.index.remove(&hash);
        self.flagged.insert(hash, reason.to_string());
    }
}

impl AdmissionIndex for MemoryCorpus {
    fn sources(&self) -> &[SourceInfo] {
        &self.sources
    }
    fn lookup(&self, hash: &[u8; 32]) -> Option<SampleLocation> {
        self.index.get(hash).copied()
    }
    fn excluded_classes(&self) -> &[String] {
        &self.excluded
    }
    fn declaration_digest(&self) -> [u8; 32] {
        self.digest
    }
    fn root(&self) -> [u8; 32] {
        self.digest
    }
    fn exclusion(&self, hash: &[u8; 32]) -> Option<String> {
        self.flagged.get(hash).cloned()
    }
    fn read_source(&self, source: u32) -> Result<Vec<PoolSample>, TrainError> {
        let lines = self
            .texts
            .get(source as usize)
            .ok_or_else(|| TrainError::Corpus(format!("no source {source}")))?;
        Ok(lines
            .iter()
            .enumerate()
            .map(|(line, text)| PoolSample {
                source,
                line: line as u64,
                text: text.clone(),
                hash: sha256(text.as_bytes()),
            })
            .collect())
    }
}
