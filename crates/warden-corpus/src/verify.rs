//! `corpus verify`: check the signature and every committed output, then re-derive each admitted
//! source's root from the data on disk (when present) and name every sample that changed since
//! admission by source, file and line.
//!
//! Changes are found by a merge-join on line numbers between the signed leaf list and the samples
//! read now: a line whose hash differs is `modified`, a line only in the leaf list is `removed`,
//! a line only on disk is `added`, a line that no longer parses is `malformed`.

use std::path::PathBuf;

use warden_keys::TrustStore;

use crate::corpus::AdmittedCorpus;
use crate::error::CorpusError;
use crate::roots::RootBuilder;
use crate::Hash;

/// How many changes per source are listed (all are counted).
pub const LISTED_CHANGES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified,
    Added,
    Removed,
    Malformed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Modified => "modified",
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Malformed => "malformed",
        }
    }
}

/// One sample that differs from what was admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// Line in the source (running across a directory's files).
    pub line: u64,
    /// The file and the line within it, when the line maps to an admitted file.
    pub file: Option<PathBuf>,
    pub file_line: Option<u64>,
    pub admitted: Option<Hash>,
    pub now: Option<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStatus {
    /// Refused at admission: nothing to re-derive.
    Refused,
    /// The data is not present (moved or deleted); the signed root stands unchecked.
    Missing(String),
    /// The root re-derived from the data equals the signed root.
    Unchanged { n_samples: u64 },
    /// The data differs from what was admitted.
    Changed {
        n_changes: u64,
        /// The first [`LISTED_CHANGES`] changes.
        changes: Vec<Change>,
        root_now: Hash,
    },
}

#[derive(Debug, Clone)]
pub struct SourceCheck {
    pub id: String,
    pub status: SourceStatus,
}

/// The outcome of `corpus verify`.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub signer: String,
    pub declaration_digest: Hash,
    pub root: Hash,
    pub n_unique_admitted: u64,
    pub sources: Vec<SourceCheck>,
}

impl VerifyReport {
    /// Admitted sources whose data is not present: their roots were not re-derived, so the
    /// report proves nothing about their data. `corpus verify` fails on them unless told
    /// `--allow-missing-data`.
    pub fn missing(&self) -> Vec<&SourceCheck> {
        self.sources
            .iter()
            .filter(|s| matches!(s.status, SourceStatus::Missing(_)))
            .collect()
    }

    /// True when no admitted source changed. Missing data is not a change (see
    /// [`VerifyReport::missing`]).
    pub fn unchanged(&self) -> bool {
        !self
            .sources
            .iter()
            .any(|s| matches!(s.status, SourceStatus::Changed { .. }))
    }
}

/// Verifies an admission directory: signature, committed outputs, corpus root, and each admitted
/// source's data when present.
pub fn verify(dir: &std::path::Path, trust: &TrustStore) -> Result<VerifyReport, CorpusError> {
    let corpus = AdmittedCorpus::load(dir, trust)?;
    let decl_path = dir.join(crate::signed::DECLARATION_FILE);

    // The corpus root re-derived from the (digest-checked) sample index.
    let mut root = RootBuilder::new();
    for e in corpus.index().entries() {
        root.push(warden_merkle::leaf_hash(&e.hash));
    }
    if root.root() != corpus.root() {
        return Err(CorpusError::artifact(
            &decl_path,
            "the corpus root does not match the sample index it was derived from",
        ));
    }
    let exclusions = corpus.exclusions()?;
    for class in &corpus.body().classes {
        corpus.fingerprint_index(&class.class)?;
        corpus.denied_index(&class.class)?;
    }

    let mut sources = Vec::new();
    for (idx, source) in corpus.sources().iter().enumerate() {
        let idx = idx as u32;
        let status = if !source.admitted {
            SourceStatus::Refused
        } else {
            let leaves = corpus.leaves(idx)?;
            // The signed leaf list must itself give the signed root.
            let mut signed_root = RootBuilder::new();
            for (_, h) in &leaves {
                signed_root.push(warden_merkle::leaf_hash(h));
            }
            if Some(signed_root.root()) != source.root {
                return Err(CorpusError::artifact(
                    &decl_path,
                    format!(
                        "source `{}`: the leaf list does not give the signed root",
                        source.id
                    ),
                ));
            }
            let malformed_at_admission: std::collections::HashSet<u64> = exclusions
                .iter()
                .filter(|e| e.source == source.id && e.reason == "malformed")
                .map(|e| e.line)
                .collect();
            check_source(&corpus, idx, &leaves, &malformed_at_admission)?
        };
        sources.push(SourceCheck {
            id: source.id.clone(),
            status,
        });
    }
    Ok(VerifyReport {
        signer: corpus.signer().to_string(),
        declaration_digest: corpus.declaration_digest(),
        root: corpus.root(),
        n_unique_admitted: corpus.body().totals.n_unique_admitted,
        sources,
    })
}

fn check_source(
    corpus: &AdmittedCorpus,
    idx: u32,
    leaves: &[(u64, Hash)],
    malformed_at_admission: &std::collections::HashSet<u64>,
) -> Result<SourceStatus, CorpusError> {
    let source = &corpus.sources()[idx as usize];
    if !source.path.exists() {
        return Ok(SourceStatus::Missing(format!(
            "{} does not exist",
            source.path.display()
        )));
    }
    for f in &source.files {
        let path = if f.path.is_empty() {
            source.path.clone()
        } else {
            source.path.join(&f.path)
        };
        if !path.is_file() {
            return Ok(SourceStatus::Missing(format!(
                "{} does not exist",
                path.display()
            )));
        }
    }
    let mut root = RootBuilder::new();
    let mut changes = Vec::new();
    let mut n_changes = 0u64;
    let mut record = |kind: ChangeKind, line: u64, admitted: Option<Hash>, now: Option<Hash>| {
        n_changes += 1;
        if changes.len() < LISTED_CHANGES {
            let located = corpus.locate(idx, line);
            changes.push(Change {
                kind,
                line,
                file: located.as_ref().map(|(p, _)| p.clone()),
                file_line: located.map(|(_, l)| l),
                admitted,
                now,
            });
        }
    };
    let mut old = leaves.iter().peekable();
    for sample in corpus.read_source(idx)? {
        let (line, hash) = match sample {
            Ok(s) => (s.line, Some(s.hash)),
            Err(CorpusError::Malformed { file, line, .. }) => {
                (source_line(source, &file, line), None)
            }
            Err(e) => return Err(e),
        };
        if let Some(hash) = hash {
            root.push(warden_merkle::leaf_hash(&hash));
        }
        while let Some(&&(old_line, old_hash)) = old.peek() {
            if old_line < line {
                record(ChangeKind::Removed, old_line, Some(old_hash), None);
                old.next();
            } else {
                break;
            }
        }
        let admitted = match old.peek() {
            Some(&&(old_line, old_hash)) if old_line == line => {
                old.next();
                Some(old_hash)
            }
            _ => None,
        };
        match (admitted, hash) {
            // Excluded as malformed at admission (--skip-malformed) and still malformed: as
            // admitted, not a change.
            (None, None) if malformed_at_admission.contains(&line) => {}
            (admitted, None) => record(ChangeKind::Malformed, line, admitted, None),
            (None, Some(now)) => record(ChangeKind::Added, line, None, Some(now)),
            (Some(a), Some(now)) if a != now => {
                record(ChangeKind::Modified, line, Some(a), Some(now))
            }
            _ => {}
        }
    }
    for &(old_line, old_hash) in old {
        record(ChangeKind::Removed, old_line, Some(old_hash), None);
    }
    let root_now = root.root();
    if n_changes == 0 && Some(root_now) == source.root {
        Ok(SourceStatus::Unchanged {
            n_samples: root.len(),
        })
    } else {
        Ok(SourceStatus::Changed {
            n_changes: n_changes.max(1),
            changes,
            root_now,
        })
    }
}

/// The source line of a line within one of the source's files (by the admitted line counts).
fn source_line(
    source: &crate::corpus::AdmittedSource,
    file: &std::path::Path,
    file_line: u64,
) -> u64 {
    let mut base = 0;
    for f in &source.files {
        let path = if f.path.is_empty() {
            source.path.clone()
        } else {
            source.path.join(&f.path)
        };
        if path == file {
            return base + file_line;
        }
        base += f.lines;
    }
    file_line
}
