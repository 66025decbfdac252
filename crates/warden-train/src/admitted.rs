//! The real corpus behind [`AdmissionIndex`]: a `warden_corpus::AdmittedCorpus` whose signature
//! was verified by `AdmittedCorpus::load` through the trust store.

use std::collections::HashMap;
use std::path::Path;

use warden_corpus::AdmittedCorpus;
use warden_keys::TrustStore;

use crate::data::{AdmissionIndex, PoolSample, SampleLocation, SourceInfo};
use crate::trainer::Canary;
use crate::TrainError;

pub struct Admitted {
    corpus: AdmittedCorpus,
    sources: Vec<SourceInfo>,
    /// Samples admission listed as excluded (flagged, malformed), by hash.
    exclusions: HashMap<[u8; 32], String>,
}

impl Admitted {
    /// Loads and verifies an admitted corpus directory.
    pub fn load(dir: &Path, trust: &TrustStore) -> Result<Admitted, TrainError> {
        let corpus = AdmittedCorpus::load(dir, trust)
            .map_err(|e| TrainError::Corpus(format!("{}: {e}", dir.display())))?;
        let sources = corpus
            .sources()
            .iter()
            .map(|s| SourceInfo {
                id: s.id.clone(),
                class: s.class.clone(),
                depth: s.depth.clone(),
                license: s.license.clone(),
                held_out: s.held_out,
                admitted: s.admitted,
            })
            .collect();
        let mut exclusions = HashMap::new();
        for exclusion in corpus
            .exclusions()
            .map_err(|e| TrainError::Corpus(format!("{}: {e}", dir.display())))?
        {
            if let Ok(hash) = warden_corpus::parse_hash(&exclusion.hash) {
                exclusions.insert(hash, format!("{}: {}", exclusion.reason, exclusion.detail));
            }
        }
        Ok(Admitted {
            corpus,
            sources,
            exclusions,
        })
    }

    pub fn corpus(&self) -> &AdmittedCorpus {
        &self.corpus
    }
}

impl AdmissionIndex for Admitted {
    fn sources(&self) -> &[SourceInfo] {
        &self.sources
    }
    fn lookup(&self, hash: &[u8; 32]) -> Option<SampleLocation> {
        self.corpus.lookup(hash).map(|r| SampleLocation {
            source: r.source,
            line: r.line,
        })
    }
    fn excluded_classes(&self) -> &[String] {
        self.corpus.excluded_classes()
    }
    fn declaration_digest(&self) -> [u8; 32] {
        self.corpus.declaration_digest()
    }
    fn root(&self) -> [u8; 32] {
        self.corpus.root()
    }
    fn exclusion(&self, hash: &[u8; 32]) -> Option<String> {
        self.exclusions.get(hash).cloned()
    }
    fn read_source(&self, source: u32) -> Result<Vec<PoolSample>, TrainError> {
        let id = self
            .sources
            .get(source as usize)
            .map_or("?", |s| s.id.as_str());
        let samples = self
            .corpus
            .read_source(source)
            .map_err(|e| TrainError::Corpus(format!("source {id}: {e}")))?;
        samples
            .map(|sample| {
                sample
                    .map(|s| PoolSample {
                        source: s.source,
                        line: s.line,
                        text: s.text,
                        hash: s.hash,
                    })
                    .map_err(|e| TrainError::Corpus(format!("source {id}: {e}")))
            })
            .collect()
    }
}

/// Reads a `canaries.json` (`[{"secret": "...", "format": "..."}]`).
pub fn load_canaries(path: &Path) -> Result<Vec<Canary>, TrainError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        secret: String,
        #[serde(default)]
        format: String,
    }
    let bytes = crate::io::read(path)?;
    let entries: Vec<Entry> = serde_json::from_slice(&bytes).map_err(|e| {
        TrainError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a canaries list: {e}"),
            ),
        )
    })?;
    Ok(entries
        .iter()
        .map(|e| Canary::from_format(&e.secret, &e.format))
        .collect())
}
