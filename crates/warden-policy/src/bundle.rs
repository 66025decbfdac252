//! The bundle file (TOML): `[bundle]`, `[vocabulary]` and `[[predicate]]`, parsed and type-checked
//! into a [`Bundle`], and its one canonical text form.
//!
//! Errors name the file, line and column, the predicate id and what was expected. Positions inside
//! an expression string are mapped back to the file when the TOML string has no escapes (the
//! common case); otherwise the string's own position is reported.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use toml::Spanned;

use crate::syntax::{self, is_plain_value_char};
use crate::types::{self, AttrType, Attribute, Formula, Vocabulary, MAX_MEMBERS};
use crate::PolicyError;

/// The most predicates a bundle may hold (admission time grows with the bundle).
pub const MAX_PREDICATES: usize = 20_000;

/// The category of a predicate; structural predicates are evaluated first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Domain,
    Safety,
    Structural,
    Task,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Domain => "domain",
            Category::Safety => "safety",
            Category::Structural => "structural",
            Category::Task => "task",
        }
    }
}

/// Strict violations reject a transition; advisory ones route it to sub-deliberation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weight {
    Strict,
    Advisory,
}

impl Weight {
    pub fn as_str(self) -> &'static str {
        match self {
            Weight::Strict => "strict",
            Weight::Advisory => "advisory",
        }
    }
}

/// A type-checked predicate: `when => require`.
#[derive(Debug, Clone)]
pub struct Predicate {
    pub id: String,
    pub category: Category,
    pub weight: Weight,
    /// Canonical text of `when`, if the predicate has one.
    pub when_text: Option<String>,
    pub require_text: String,
    pub when: Formula,
    pub require: Formula,
}

impl Predicate {
    /// The predicate's meaning: `not when or require`.
    pub fn formula(&self) -> Formula {
        match &self.when {
            Formula::Const(true) => self.require.clone(),
            when => Formula::Or(vec![
                Formula::Not(Box::new(when.clone())),
                self.require.clone(),
            ]),
        }
    }

    /// Whether the predicate has a non-trivial precondition.
    pub fn has_when(&self) -> bool {
        self.when_text.is_some()
    }
}

/// A parsed, type-checked bundle. Not yet proven: see [`crate::gate`].
#[derive(Debug, Clone)]
pub struct Bundle {
    pub name: String,
    pub version: u64,
    pub succeeds: Option<u64>,
    pub vocabulary: Vocabulary,
    pub predicates: Vec<Predicate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    bundle: Spanned<RawHeader>,
    #[serde(default)]
    vocabulary: BTreeMap<String, Spanned<RawAttr>>,
    #[serde(default)]
    predicate: Vec<Spanned<RawPredicate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: Spanned<String>,
    version: Spanned<i64>,
    succeeds: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttr {
    #[serde(rename = "enum")]
    enum_values: Option<Vec<String>>,
    int: Option<Vec<i64>>,
    set: Option<Vec<String>>,
    #[serde(default)]
    context: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPredicate {
    id: Spanned<String>,
    category: Spanned<String>,
    weight: Option<Spanned<String>>,
    when: Option<Spanned<String>>,
    require: Spanned<String>,
}

/// Maps byte offsets of the source to 1-based lines and columns (columns count characters).
struct Source<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    fn error(
        &self,
        offset: usize,
        predicate: Option<&str>,
        message: impl Into<String>,
    ) -> PolicyError {
        let (line, column) = self.line_col(offset);
        PolicyError::Parse {
            file: self.origin.to_string(),
            line,
            column,
            predicate: predicate.map(str::to_string),
            message: message.into(),
        }
    }

    /// The file offset of byte `inner` of a TOML string value at `span`, when the string's raw
    /// text equals its value (no escapes); otherwise the start of the string.
    fn string_offset(&self, span: &std::ops::Range<usize>, value: &str, inner: usize) -> usize {
        let raw = self.text.get(span.clone()).unwrap_or("");
        for quote in ["\"\"\"", "'''", "\"", "'"] {
            if raw.len() >= 2 * quote.len() && raw.starts_with(quote) && raw.ends_with(quote) {
                let body = &raw[quote.len()..raw.len() - quote.len()];
                if body == value {
                    return span.start + quote.len() + inner;
                }
                break;
            }
        }
        span.start
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !matches!(
            name,
            "and" | "or" | "not" | "in" | "contains" | "true" | "false"
        )
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn valid_value(value: &str) -> bool {
    !value.is_empty() && value.len() <= 128 && value.chars().all(is_plain_value_char)
}

impl Bundle {
    /// Parses and type-checks bundle text; `origin` (usually the path) is named in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Bundle, PolicyError> {
        let source = Source { origin, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            source.error(offset, None, e.message().trim().to_string())
        })?;
        let header = raw.bundle.into_inner();

        let name = header.name.get_ref().clone();
        if !valid_id(&name) {
            return Err(source.error(
                header.name.span().start,
                None,
                "expected a bundle name of letters, digits, '.', '-' or '_'",
            ));
        }
        let version = u64::try_from(*header.version.get_ref())
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                source.error(
                    header.version.span().start,
                    None,
                    "expected a version of 1 or more",
                )
            })?;
        let succeeds = match &header.succeeds {
            None => None,
            Some(s) => {
                let value = u64::try_from(*s.get_ref())
                    .ok()
                    .filter(|v| *v >= 1)
                    .ok_or_else(|| {
                        source.error(
                            s.span().start,
                            None,
                            "expected `succeeds` to be a version of 1 or more",
                        )
                    })?;
                if value >= version {
                    return Err(source.error(
                        s.span().start,
                        None,
                        format!("`succeeds = {value}` must name a lower version than `version = {version}`"),
                    ));
                }
                Some(value)
            }
        };

        let mut attributes = Vec::new();
        for (attr_name, decl) in &raw.vocabulary {
            let at = decl.span().start;
            if !valid_name(attr_name) {
                return Err(source.error(
                    at,
                    None,
                    format!("attribute name `{attr_name}` must be dotted identifiers (letters, digits, '_', '.')"),
                ));
            }
            let decl = decl.get_ref();
            let ty = match (&decl.enum_values, &decl.int, &decl.set) {
                (Some(values), None, None) | (None, None, Some(values)) => {
                    let is_enum = decl.enum_values.is_some();
                    if values.is_empty() && is_enum {
                        return Err(source.error(at, None, format!("enum `{attr_name}` must declare at least one value")));
                    }
                    if values.len() > MAX_MEMBERS {
                        return Err(source.error(at, None, format!("`{attr_name}` declares more than {MAX_MEMBERS} values")));
                    }
                    for (idx, value) in values.iter().enumerate() {
                        if !valid_value(value) {
                            return Err(source.error(at, None, format!("value {value:?} of `{attr_name}` must be non-empty, printable and without quotes or backslashes")));
                        }
                        if values[..idx].contains(value) {
                            return Err(source.error(at, None, format!("value '{value}' of `{attr_name}` is declared twice")));
                        }
                    }
                    if is_enum {
                        AttrType::Enum(values.clone())
                    } else {
                        AttrType::Set(values.clone())
                    }
                }
                (None, Some(range), None) => match range.as_slice() {
                    [lo, hi] if lo <= hi && lo.abs() <= syntax::MAX_LITERAL && hi.abs() <= syntax::MAX_LITERAL => {
                        AttrType::Int { lo: *lo, hi: *hi }
                    }
                    _ => {
                        return Err(source.error(
                            at,
                            None,
                            format!("`{attr_name}`: expected `int = [low, high]` with low <= high, both within ±2^31"),
                        ))
                    }
                },
                _ => {
                    return Err(source.error(
                        at,
                        None,
                        format!("`{attr_name}`: expected exactly one of `enum = [..]`, `int = [low, high]` or `set = [..]`"),
                    ))
                }
            };
            attributes.push(Attribute {
                name: attr_name.clone(),
                ty,
                context: decl.context,
            });
        }
        let vocabulary = Vocabulary::new(attributes);

        let mut predicates: Vec<Predicate> = Vec::new();
        if raw.predicate.len() > MAX_PREDICATES {
            return Err(source.error(
                0,
                None,
                format!(
                    "a bundle may hold at most {MAX_PREDICATES} predicates, this one has {}",
                    raw.predicate.len()
                ),
            ));
        }
        for raw_pred in &raw.predicate {
            let pred_start = raw_pred.span().start;
            let raw_pred = raw_pred.get_ref();
            let id = raw_pred.id.get_ref().clone();
            if !valid_id(&id) {
                return Err(source.error(
                    raw_pred.id.span().start,
                    None,
                    format!("predicate id {id:?} must be letters, digits, '.', '-' or '_'"),
                ));
            }
            if predicates.iter().any(|p| p.id == id) {
                return Err(source.error(
                    pred_start,
                    Some(&id),
                    format!("predicate id `{id}` is used twice"),
                ));
            }
            let category = match raw_pred.category.get_ref().as_str() {
                "domain" => Category::Domain,
                "safety" => Category::Safety,
                "structural" => Category::Structural,
                "task" => Category::Task,
                other => {
                    return Err(source.error(
                        raw_pred.category.span().start,
                        Some(&id),
                        format!(
                        "unknown category `{other}` (expected domain, safety, structural or task)"
                    ),
                    ))
                }
            };
            let weight = match raw_pred
                .weight
                .as_ref()
                .map(|w| (w.get_ref().as_str(), w.span()))
            {
                None | Some(("strict", _)) => Weight::Strict,
                Some(("advisory", span)) => {
                    if category == Category::Safety {
                        return Err(source.error(
                            span.start,
                            Some(&id),
                            "safety predicates are always strict: remove `weight = \"advisory\"`",
                        ));
                    }
                    Weight::Advisory
                }
                Some((other, span)) => {
                    return Err(source.error(
                        span.start,
                        Some(&id),
                        format!("unknown weight `{other}` (expected strict or advisory)"),
                    ))
                }
            };
            let expression =
                |field: &Spanned<String>, what: &str| -> Result<(String, Formula), PolicyError> {
                    let text = field.get_ref();
                    let span = field.span();
                    let tree = syntax::parse(text).map_err(|e| {
                        source.error(
                            source.string_offset(&span, text, e.offset),
                            Some(&id),
                            format!("in `{what}`: {}", e.message),
                        )
                    })?;
                    let formula = types::check_bool(&tree, &vocabulary).map_err(|e| {
                        source.error(
                            source.string_offset(&span, text, e.offset),
                            Some(&id),
                            format!("in `{what}`: {}", e.message),
                        )
                    })?;
                    Ok((syntax::to_canonical(&tree), formula))
                };
            let (when_text, when) = match &raw_pred.when {
                Some(field) => {
                    let (text, formula) = expression(field, "when")?;
                    (Some(text), formula)
                }
                None => (None, Formula::Const(true)),
            };
            let (require_text, require) = expression(&raw_pred.require, "require")?;
            predicates.push(Predicate {
                id,
                category,
                weight,
                when_text,
                require_text,
                when,
                require,
            });
        }
        if predicates.is_empty() {
            return Err(source.error(0, None, "expected at least one [[predicate]]"));
        }
        Ok(Bundle {
            name,
            version,
            succeeds,
            vocabulary,
            predicates,
        })
    }

    /// The one canonical text of the bundle: what is hashed, signed and re-parsed on load.
    pub fn canonical_text(&self) -> String {
        let mut out = String::new();
        header(&mut out, &self.name, self.version, self.succeeds);
        for attr in &self.vocabulary.attributes {
            let _ = writeln!(out, "{}", attribute_line(attr));
        }
        for pred in &self.predicates {
            predicate_block(
                &mut out,
                &pred.id,
                pred.category.as_str(),
                pred.weight.as_str(),
                pred.when_text.as_deref(),
                &pred.require_text,
            );
        }
        out
    }

    /// SHA-256 of the canonical text: the bundle's identity for resubmission checks.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_text().as_bytes()).into()
    }

    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest())
    }

    /// Index of a predicate by id.
    pub fn predicate_index(&self, id: &str) -> Option<usize> {
        self.predicates.iter().position(|p| p.id == id)
    }
}

/// The canonical `[bundle]` header and the `[vocabulary]` table heading (one writer of the
/// signed format: [`Bundle::canonical_text`] and `derive::merge` both use it).
pub(crate) fn header(out: &mut String, name: &str, version: u64, succeeds: Option<u64>) {
    let _ = writeln!(out, "[bundle]\nname = \"{name}\"\nversion = {version}");
    if let Some(succeeds) = succeeds {
        let _ = writeln!(out, "succeeds = {succeeds}");
    }
    out.push_str("\n[vocabulary]\n");
}

/// One `[vocabulary]` line in canonical form.
pub(crate) fn attribute_line(attr: &Attribute) -> String {
    let quoted = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ty = match &attr.ty {
        AttrType::Enum(values) => format!("enum = [{}]", quoted(values)),
        AttrType::Int { lo, hi } => format!("int = [{lo}, {hi}]"),
        AttrType::Set(values) => format!("set = [{}]", quoted(values)),
    };
    let context = if attr.context { ", context = true" } else { "" };
    format!("\"{}\" = {{ {ty}{context} }}", attr.name)
}

/// One `[[predicate]]` block in canonical form.
pub(crate) fn predicate_block(
    out: &mut String,
    id: &str,
    category: &str,
    weight: &str,
    when: Option<&str>,
    require: &str,
) {
    let _ = write!(
        out,
        "\n[[predicate]]\nid = \"{id}\"\ncategory = \"{category}\"\nweight = \"{weight}\"\n"
    );
    if let Some(when) = when {
        let _ = writeln!(out, "when = \"{when}\"");
    }
    let _ = writeln!(out, "require = \"{require}\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "[bundle]\nname = \"t\"\nversion = 1\n\n[vocabulary]\n\"caller.tier\" = { enum = [\"free\", \"paid\"], context = true }\n\"output.tokens\" = { int = [0, 100] }\n\"output.classes\" = { set = [\"pii\"] }\n";

    fn parse_err(predicates: &str) -> String {
        Bundle::parse(&format!("{HEAD}{predicates}"), "b.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parse_error_names_file_line_column_predicate_and_expectation() {
        // Line 12 is the `require` line; column 12 is the first character inside the quotes.
        let msg = parse_err(
            "[[predicate]]\nid = \"p1\"\ncategory = \"task\"\nrequire = \"output.tokens <=\"\n",
        );
        assert_eq!(
            msg,
            "b.toml:12:28: predicate `p1`: in `require`: expected an attribute, a literal, `not` or `(`, found end of expression"
        );
    }

    #[test]
    fn type_errors_point_at_the_offending_token() {
        let msg = parse_err("[[predicate]]\nid = \"p2\"\ncategory = \"task\"\nrequire = \"output.tokens <= 5 and caller.tier == 'gold'\"\n");
        assert_eq!(
            msg,
            "b.toml:12:50: predicate `p2`: in `require`: 'gold' is not a value of `caller.tier` (expected one of 'free', 'paid')"
        );
        let msg = parse_err("[[predicate]]\nid = \"p3\"\ncategory = \"task\"\nwhen = \"output.classes < 3\"\nrequire = \"true\"\n");
        assert_eq!(
            msg,
            "b.toml:12:9: predicate `p3`: in `when`: expected an integer, found set attribute `output.classes`"
        );
        let msg = parse_err("[[predicate]]\nid = \"p4\"\ncategory = \"task\"\nrequire = \"output.tokens * output.tokens == 4\"\n");
        assert!(msg.starts_with("b.toml:12:12: predicate `p4`: in `require`: expected a constant on one side of `*`"), "{msg}");
        let msg = parse_err(
            "[[predicate]]\nid = \"p5\"\ncategory = \"task\"\nrequire = \"model.size > 3\"\n",
        );
        assert_eq!(msg, "b.toml:12:12: predicate `p5`: in `require`: unknown attribute `model.size` (not declared in [vocabulary])");
    }

    #[test]
    fn safety_is_always_strict_and_ids_are_unique() {
        let msg = parse_err("[[predicate]]\nid = \"s\"\ncategory = \"safety\"\nweight = \"advisory\"\nrequire = \"true\"\n");
        assert_eq!(msg, "b.toml:12:10: predicate `s`: safety predicates are always strict: remove `weight = \"advisory\"`");
        let msg = parse_err("[[predicate]]\nid = \"a\"\ncategory = \"task\"\nrequire = \"true\"\n\n[[predicate]]\nid = \"a\"\ncategory = \"task\"\nrequire = \"true\"\n");
        assert!(
            msg.contains("predicate `a`: predicate id `a` is used twice"),
            "{msg}"
        );
    }

    #[test]
    fn toml_errors_name_line_and_column() {
        let msg = Bundle::parse("[bundle]\nname = \"x\"\nversion = \"two\"\n", "b.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("b.toml:3:11: "), "{msg}");
    }

    #[test]
    fn vocabulary_and_field_errors_name_their_line() {
        let msg = Bundle::parse(
            "[bundle]\nname = \"t\"\nversion = 1\n[vocabulary]\n\"a.b\" = { int = [5, 1] }\n",
            "v.toml",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            msg,
            "v.toml:5:9: `a.b`: expected `int = [low, high]` with low <= high, both within ±2^31"
        );
        let msg = parse_err("[[predicate]]\nid = \"w\"\ncategory = \"task\"\nwieght = \"advisory\"\nrequire = \"true\"\n");
        assert!(
            msg.starts_with("b.toml:12:1: unknown field `wieght`"),
            "{msg}"
        );
    }

    #[test]
    fn canonical_text_is_a_fixed_point() {
        let text = format!("{HEAD}[[predicate]]\nid = \"p\"\ncategory = \"domain\"\nweight = \"advisory\"\nwhen = \"caller.tier=='free'\"\nrequire = \"(output.tokens+2)*3<=90 and not(output.classes contains 'pii')\"\n");
        let bundle = Bundle::parse(&text, "b.toml").unwrap();
        let canonical = bundle.canonical_text();
        assert!(canonical.contains(
            "require = \"(output.tokens + 2) * 3 <= 90 and not (output.classes contains 'pii')\""
        ));
        let again = Bundle::parse(&canonical, "canonical").unwrap();
        assert_eq!(again.canonical_text(), canonical);
        assert_eq!(again.digest(), bundle.digest());
    }
}
