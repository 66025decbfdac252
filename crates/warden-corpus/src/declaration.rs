//! The corpus declaration a user writes (TOML): its sources and the admission policy.
//!
//! Parsing is "parse, don't validate": [`Declaration::parse`] returns a value whose ids, classes,
//! formats, license expressions, regexes and blocklist hashes have all been checked, and every
//! error names the file, the line and the field (`corpus.toml:14: source `news` field `license`:
//! ...`). The format is documented with a complete example in README.md ("The declaration").

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::CorpusError;
use crate::Hash;

/// How a source's files are split into samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// One JSON object per line; the sample is the string in the text field.
    Jsonl,
    /// Plain text; documents are separated by one or more blank lines.
    Text,
}

impl SourceFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Jsonl => "jsonl",
            SourceFormat::Text => "text",
        }
    }

    /// The format a file name implies when the declaration does not say: `.jsonl`/`.ndjson` are
    /// JSONL, everything else is text.
    pub fn from_extension(path: &Path) -> SourceFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") | Some("ndjson") => SourceFormat::Jsonl,
            _ => SourceFormat::Text,
        }
    }
}

/// Where a source came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    pub origin: String,
    pub collected: String,
    pub collector: String,
    pub notes: String,
}

/// One declared source, checked.
#[derive(Debug, Clone)]
pub struct SourceDecl {
    pub id: String,
    /// As written in the declaration.
    pub path: String,
    /// `path` resolved against the declaration's directory.
    pub resolved_path: PathBuf,
    /// `None`: decided per file by extension (see [`SourceFormat::from_extension`]).
    pub format: Option<SourceFormat>,
    pub text_field: String,
    pub license: String,
    pub license_expr: spdx::Expression,
    pub provenance: Provenance,
    pub class: String,
    pub depth: String,
    pub held_out: bool,
    /// The declaration line of this source's `id`, for messages.
    pub line: usize,
}

/// A user-supplied regular expression flagger.
#[derive(Debug, Clone)]
pub struct RegexFlagger {
    pub id: String,
    pub pattern: String,
    pub regex: regex::Regex,
}

/// Which sample flaggers run; see [`crate::policy`].
#[derive(Debug, Clone)]
pub struct FlaggerConfig {
    pub email: bool,
    pub phone: bool,
    pub card: bool,
    pub regexes: Vec<RegexFlagger>,
    /// Sample hashes that are excluded whatever their content.
    pub blocklist: BTreeSet<Hash>,
}

/// The admission policy, checked.
#[derive(Debug, Clone)]
pub struct PolicyDecl {
    /// As written (each a single SPDX license, optionally `WITH` an exception).
    pub admitted_licenses: Vec<String>,
    pub licensees: Vec<spdx::Licensee>,
    pub excluded_classes: Vec<String>,
    pub flaggers: FlaggerConfig,
}

/// A parsed and checked declaration file.
#[derive(Debug, Clone)]
pub struct Declaration {
    pub file: PathBuf,
    /// The directory relative source paths resolve against (the declaration's directory).
    pub base_dir: PathBuf,
    pub name: String,
    pub description: String,
    pub policy: PolicyDecl,
    pub sources: Vec<SourceDecl>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    corpus: RawCorpus,
    policy: Spanned<RawPolicy>,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCorpus {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    admitted_licenses: Vec<Spanned<String>>,
    #[serde(default)]
    excluded_classes: Vec<Spanned<String>>,
    #[serde(default)]
    flaggers: RawFlaggers,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlaggers {
    #[serde(default = "yes")]
    email: bool,
    #[serde(default = "yes")]
    phone: bool,
    #[serde(default = "yes")]
    card: bool,
    #[serde(default)]
    regex: Vec<RawRegex>,
    #[serde(default)]
    blocklist: Vec<Spanned<String>>,
}

impl Default for RawFlaggers {
    fn default() -> Self {
        RawFlaggers {
            email: true,
            phone: true,
            card: true,
            regex: Vec::new(),
            blocklist: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegex {
    id: Spanned<String>,
    pattern: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    id: Spanned<String>,
    path: Spanned<String>,
    #[serde(default)]
    format: Option<Spanned<String>>,
    #[serde(default)]
    text_field: Option<Spanned<String>>,
    license: Spanned<String>,
    class: Spanned<String>,
    #[serde(default)]
    depth: Option<Spanned<String>>,
    #[serde(default)]
    held_out: bool,
    provenance: RawProvenance,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvenance {
    origin: String,
    collected: String,
    collector: String,
    #[serde(default)]
    notes: String,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Ids and class names end up in file names and messages: keep them to a safe alphabet.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Declaration {
    /// Reads and checks a declaration file.
    pub fn load(path: &Path) -> Result<Declaration, CorpusError> {
        let text = std::fs::read_to_string(path).map_err(|e| CorpusError::io(path, e))?;
        Declaration::parse(&text, path)
    }

    /// Checks declaration `text`; `file` is named in errors and anchors relative source paths.
    pub fn parse(text: &str, file: &Path) -> Result<Declaration, CorpusError> {
        let err =
            |span: std::ops::Range<usize>, field: &str, message: String| CorpusError::Declaration {
                file: file.to_path_buf(),
                line: line_of(text, span.start),
                field: field.to_string(),
                message,
            };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            err(span, "toml", e.message().trim().replace('\n', " "))
        })?;
        // `corpus.toml` has the parent `""`: relative paths resolve against the current directory.
        let base_dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };

        if raw.corpus.name.get_ref().trim().is_empty() {
            return Err(err(
                raw.corpus.name.span(),
                "corpus.name",
                "must not be empty".into(),
            ));
        }

        let policy_span = raw.policy.span();
        let raw_policy = raw.policy.into_inner();
        if raw_policy.admitted_licenses.is_empty() {
            return Err(err(
                policy_span,
                "policy.admitted_licenses",
                "lists no license: nothing could be admitted".into(),
            ));
        }
        let mut licensees = Vec::new();
        let mut admitted_licenses = Vec::new();
        for lic in &raw_policy.admitted_licenses {
            let licensee = spdx::Licensee::parse_mode(lic.get_ref(), spdx::ParseMode::LAX)
                .map_err(|e| {
                    err(
                        lic.span(),
                        "policy.admitted_licenses",
                        format!(
                            "`{}` is not a single SPDX license (optionally WITH an exception): {}",
                            lic.get_ref(),
                            e.reason
                        ),
                    )
                })?;
            licensees.push(licensee);
            admitted_licenses.push(lic.get_ref().clone());
        }
        let mut excluded_classes = Vec::new();
        for class in &raw_policy.excluded_classes {
            if !is_valid_name(class.get_ref()) {
                return Err(err(
                    class.span(),
                    "policy.excluded_classes",
                    format!(
                        "`{}` is not a valid class name (letters, digits, `-`, `_`, `.`)",
                        class.get_ref()
                    ),
                ));
            }
            excluded_classes.push(class.get_ref().clone());
        }
        let raw_flaggers = raw_policy.flaggers;
        let mut regexes = Vec::new();
        for r in raw_flaggers.regex {
            if !is_valid_name(r.id.get_ref()) {
                return Err(err(
                    r.id.span(),
                    "policy.flaggers.regex.id",
                    format!("`{}` is not a valid flagger id", r.id.get_ref()),
                ));
            }
            let regex = regex::Regex::new(r.pattern.get_ref()).map_err(|e| {
                err(
                    r.pattern.span(),
                    "policy.flaggers.regex.pattern",
                    format!(
                        "flagger `{}`: invalid regex: {}",
                        r.id.get_ref(),
                        e.to_string().replace('\n', " ")
                    ),
                )
            })?;
            regexes.push(RegexFlagger {
                id: r.id.into_inner(),
                pattern: r.pattern.into_inner(),
                regex,
            });
        }
        let mut blocklist = BTreeSet::new();
        for h in &raw_flaggers.blocklist {
            let hash = crate::parse_hash(h.get_ref()).map_err(|_| {
                err(
                    h.span(),
                    "policy.flaggers.blocklist",
                    format!("`{}` is not a sample hash (64 hex digits)", h.get_ref()),
                )
            })?;
            blocklist.insert(hash);
        }

        let mut sources = Vec::new();
        let mut seen_ids = BTreeSet::new();
        for spanned in raw.source {
            let src = spanned.into_inner();
            let id = src.id.get_ref().clone();
            let line = line_of(text, src.id.span().start);
            let field = |name: &str| format!("source `{id}` field `{name}`");
            if !is_valid_name(&id) {
                return Err(err(
                    src.id.span(),
                    "source.id",
                    format!("`{id}` is not a valid source id (letters, digits, `-`, `_`, `.`)"),
                ));
            }
            if !seen_ids.insert(id.clone()) {
                return Err(err(
                    src.id.span(),
                    "source.id",
                    format!("source id `{id}` is declared twice"),
                ));
            }
            if src.path.get_ref().is_empty() {
                return Err(err(
                    src.path.span(),
                    &field("path"),
                    "must not be empty".into(),
                ));
            }
            let format = match &src.format {
                None => None,
                Some(f) => Some(match f.get_ref().as_str() {
                    "jsonl" => SourceFormat::Jsonl,
                    "text" => SourceFormat::Text,
                    other => {
                        return Err(err(
                            f.span(),
                            &field("format"),
                            format!("`{other}` is not a format (expected `jsonl` or `text`)"),
                        ))
                    }
                }),
            };
            let text_field = match &src.text_field {
                None => "text".to_string(),
                Some(t) if t.get_ref().is_empty() => {
                    return Err(err(
                        t.span(),
                        &field("text_field"),
                        "must not be empty".into(),
                    ))
                }
                Some(t) => t.get_ref().clone(),
            };
            let license_expr =
                spdx::Expression::parse_mode(src.license.get_ref(), spdx::ParseMode::LAX).map_err(
                    |e| {
                        err(
                            src.license.span(),
                            &field("license"),
                            format!(
                                "`{}` is not a valid SPDX license expression: {}",
                                src.license.get_ref(),
                                e.reason
                            ),
                        )
                    },
                )?;
            if !is_valid_name(src.class.get_ref()) {
                return Err(err(
                    src.class.span(),
                    &field("class"),
                    format!(
                        "`{}` is not a valid class name (letters, digits, `-`, `_`, `.`)",
                        src.class.get_ref()
                    ),
                ));
            }
            let depth = match &src.depth {
                None => "deep".to_string(),
                Some(d) if !is_valid_name(d.get_ref()) => {
                    return Err(err(
                        d.span(),
                        &field("depth"),
                        format!(
                            "`{}` is not `deep`, `shallow` or a profile name",
                            d.get_ref()
                        ),
                    ))
                }
                Some(d) => d.get_ref().clone(),
            };
            let resolved_path = base_dir.join(src.path.get_ref());
            sources.push(SourceDecl {
                id,
                path: src.path.get_ref().clone(),
                resolved_path,
                format,
                text_field,
                license: src.license.get_ref().clone(),
                license_expr,
                provenance: Provenance {
                    origin: src.provenance.origin,
                    collected: src.provenance.collected,
                    collector: src.provenance.collector,
                    notes: src.provenance.notes,
                },
                class: src.class.get_ref().clone(),
                depth,
                held_out: src.held_out,
                line,
            });
        }
        if sources.is_empty() {
            return Err(CorpusError::Declaration {
                file: file.to_path_buf(),
                line: 1,
                field: "source".into(),
                message: "declares no source (add a [[source]] table)".into(),
            });
        }
        Ok(Declaration {
            file: file.to_path_buf(),
            base_dir,
            name: raw.corpus.name.into_inner(),
            description: raw.corpus.description,
            policy: PolicyDecl {
                admitted_licenses,
                licensees,
                excluded_classes,
                flaggers: FlaggerConfig {
                    email: raw_flaggers.email,
                    phone: raw_flaggers.phone,
                    card: raw_flaggers.card,
                    regexes,
                    blocklist,
                },
            },
            sources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[corpus]
name = "t"

[policy]
admitted_licenses = ["MIT"]
excluded_classes = ["user-pii"]

[[source]]
id = "a"
path = "a.jsonl"
license = "MIT"
class = "public-domain"
provenance = { origin = "o", collected = "2026-01-01", collector = "c" }
"#;

    #[test]
    fn a_good_declaration_parses_with_defaults() {
        let d = Declaration::parse(GOOD, Path::new("/x/corpus.toml")).unwrap();
        assert_eq!(d.sources[0].depth, "deep");
        assert_eq!(d.sources[0].text_field, "text");
        assert!(!d.sources[0].held_out);
        assert_eq!(d.sources[0].resolved_path, PathBuf::from("/x/a.jsonl"));
        assert!(d.policy.flaggers.email && d.policy.flaggers.card);
    }

    #[test]
    fn a_bare_file_name_resolves_sources_against_the_current_directory() {
        let d = Declaration::parse(GOOD, Path::new("corpus.toml")).unwrap();
        assert_eq!(d.base_dir, PathBuf::from("."));
    }

    #[test]
    fn a_bad_license_names_file_line_and_field() {
        let text = GOOD.replace("license = \"MIT\"", "license = \"MIT OR Frobnicate-9\"");
        let e = Declaration::parse(&text, Path::new("corpus.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("corpus.toml:12: source `a` field `license`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_and_duplicate_ids_are_errors_with_lines() {
        let text = GOOD.replace(
            "class = \"public-domain\"",
            "class = \"public-domain\"\nklass = 1",
        );
        let e = Declaration::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml:") && e.contains("klass"), "{e}");
        let twice = format!("{GOOD}\n{}", &GOOD[GOOD.find("[[source]]").unwrap()..]);
        let e = Declaration::parse(&twice, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml:17: source.id: source id `a` is declared twice"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_regex_flagger_is_located() {
        let text = GOOD.replace(
            "excluded_classes = [\"user-pii\"]",
            "excluded_classes = [\"user-pii\"]\n[[policy.flaggers.regex]]\nid = \"x\"\npattern = \"(\"",
        );
        let e = Declaration::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml:10: policy.flaggers.regex.pattern: flagger `x`"),
            "{e}"
        );
    }
}
