//! The training manifest becomes constraints: [`derive`] reads the predicate of a Warden training
//! manifest (`https://warden.dev/attestations/training-manifest/v1`, written by
//! `warden_train::manifest`) and returns the vocabulary and predicates it implies; [`merge`] adds
//! them to an operator's bundle before the admission gate.
//!
//! # Rules
//!
//! * **Restricted depth → verbatim bound.** A class of `classes` whose `regions` do not include
//!   every region of the model is bounded: `output.verbatim.<class> <= N` (id
//!   `derived.verbatim.<class>`, category `safety`, strict). The model's regions are computed
//!   from `model.config.layers` exactly as `warden_train::model::ModelConfig::regions` does
//!   (`embed`, `layer{i}.{norm1,attn,norm2,ffn}`, `final_norm`, `head`); a class naming a region
//!   outside that list is an error (the manifest and this derivation disagree). A class with no
//!   regions (`null`) is bounded too (it reaches nothing).
//! * **Excluded class → guardrail.** Every class in `excluded_classes` (refused by the corpus or
//!   by the training policy) and every class of `classes` with `excluded_by_policy = true` gives
//!   `not (output.classes contains '<class>')` (id `derived.excluded.<class>`, category
//!   `safety`, strict).
//!
//! # N, the verbatim bound
//!
//! `output.verbatim.<class>` counts fingerprint word-tokens (scheme `token-8gram-v1`). N is the
//! training memorization rule's n-gram length converted to tokens:
//! `N = max(8, memorization.rule.ngram / 5)` (`ngram` is in bytes; [`BYTES_PER_TOKEN`] = 5, rounded
//! down so the bound is never looser than what training treated as memorised; 8 = the fingerprint
//! window, the shortest run the fingerprints can see). Without a memorization rule
//! (`memorization.rule` null or absent), N = [`DEFAULT_VERBATIM_MAX`] = 8.
//!
//! # Vocabulary
//!
//! `output.verbatim.<segment>` is `int = [0, 1000000]` ([`VERBATIM_MAX_VALUE`]); `output.classes`
//! is a `set` of the excluded class names. Neither is a context attribute. The attribute segment
//! of a class is [`verbatim_attribute`]'s mapping.
//!
//! # Merging ([`merge`])
//!
//! The derived attributes and predicates are added to the operator's bundle; the result is
//! re-parsed (so every predicate is type-checked against the merged vocabulary). An attribute
//! declared by both must have the same kind and the same `context` flag; `int` ranges are widened
//! to cover both (the runtime may produce any value of either), `set` and `enum` members are
//! unioned (at most 64). The operator's predicates may not use ids starting with `derived.`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Deserialize;

use crate::bundle::{attribute_line, header, predicate_block, Bundle, Category};
use crate::types::{AttrType, Attribute, MAX_MEMBERS};
use crate::PolicyError;

/// The verbatim bound without a memorization rule in the manifest (fingerprint word-tokens).
pub const DEFAULT_VERBATIM_MAX: i64 = 8;
/// Bytes per fingerprint word-token used to convert the training rule's byte n-gram length.
pub const BYTES_PER_TOKEN: i64 = 5;
/// Upper end of the declared range of every `output.verbatim.<class>` attribute.
pub const VERBATIM_MAX_VALUE: i64 = 1_000_000;
/// The set attribute of classes detected on the output.
pub const CLASSES_ATTRIBUTE: &str = "output.classes";
/// Prefix of every derived predicate id (reserved: operator bundles may not use it).
pub const DERIVED_PREFIX: &str = "derived.";

/// The attribute that measures verbatim reproduction of `class`: `output.verbatim.` followed by
/// the class name with every character other than ASCII letters, digits and `_` replaced by `_`
/// (so `public-domain` → `output.verbatim.public_domain`). Two classes that map to the same name
/// are refused by [`derive`].
pub fn verbatim_attribute(class: &str) -> String {
    let segment: String = class
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("output.verbatim.{segment}")
}

/// One derived predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedPredicate {
    pub id: String,
    pub category: Category,
    /// The `require` expression (no `when`: derived predicates always apply).
    pub require: String,
    /// Why the manifest implies it, one line.
    pub reason: String,
}

/// What a manifest implies: attributes and predicates (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub attributes: Vec<Attribute>,
    pub predicates: Vec<DerivedPredicate>,
    /// N of the verbatim bounds.
    pub verbatim_max: i64,
    /// Where N came from, one line.
    pub verbatim_source: String,
}

#[derive(Deserialize)]
struct RawPredicate {
    model: RawModel,
    #[serde(default)]
    classes: BTreeMap<String, RawClass>,
    #[serde(default)]
    excluded_classes: Vec<String>,
    #[serde(default)]
    memorization: Option<RawMemorization>,
}

#[derive(Deserialize)]
struct RawModel {
    config: RawConfig,
}

#[derive(Deserialize)]
struct RawConfig {
    layers: usize,
}

#[derive(Deserialize)]
struct RawClass {
    depth: Option<String>,
    regions: Option<Vec<String>>,
    #[serde(default)]
    excluded_by_policy: bool,
}

#[derive(Deserialize)]
struct RawMemorization {
    rule: Option<RawRule>,
}

#[derive(Deserialize)]
struct RawRule {
    ngram: i64,
}

fn manifest_error(reason: impl Into<String>) -> PolicyError {
    PolicyError::Manifest {
        what: "training manifest".into(),
        reason: reason.into(),
    }
}

/// The model's regions, in data-flow order, as `warden_train::model::ModelConfig::regions`.
fn model_regions(layers: usize) -> Vec<String> {
    let mut regions = vec!["embed".to_string()];
    for i in 0..layers {
        for part in ["norm1", "attn", "norm2", "ffn"] {
            regions.push(format!("layer{i}.{part}"));
        }
    }
    regions.push("final_norm".to_string());
    regions.push("head".to_string());
    regions
}

fn check_class_name(class: &str) -> Result<(), PolicyError> {
    let ok = !class.is_empty()
        && class.len() <= 100
        && class
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(manifest_error(format!(
            "class name {class:?} must be 1 to 100 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Derives the constraints a training manifest's predicate implies (see the module
/// documentation for the rules, N and the vocabulary).
pub fn derive(manifest_predicate: &serde_json::Value) -> Result<Derived, PolicyError> {
    let raw: RawPredicate = serde_json::from_value(manifest_predicate.clone()).map_err(|e| {
        manifest_error(format!(
            "the predicate does not have the expected shape: {e}"
        ))
    })?;
    if raw.model.config.layers > 4096 {
        return Err(manifest_error(format!(
            "model.config.layers = {} is implausible",
            raw.model.config.layers
        )));
    }
    let all_regions = model_regions(raw.model.config.layers);
    let (verbatim_max, verbatim_source) = match raw.memorization.and_then(|m| m.rule) {
        Some(rule) if rule.ngram >= 1 => {
            let n = (rule.ngram / BYTES_PER_TOKEN).max(DEFAULT_VERBATIM_MAX);
            (
                n,
                format!("memorization.rule.ngram = {} bytes / {BYTES_PER_TOKEN} bytes per token, at least {DEFAULT_VERBATIM_MAX}", rule.ngram),
            )
        }
        Some(rule) => {
            return Err(manifest_error(format!(
                "memorization.rule.ngram = {} must be positive",
                rule.ngram
            )))
        }
        None => (
            DEFAULT_VERBATIM_MAX,
            format!("no memorization rule in the manifest: default {DEFAULT_VERBATIM_MAX}"),
        ),
    };

    let mut attributes = Vec::new();
    let mut predicates = Vec::new();
    let mut by_attribute: BTreeMap<String, &str> = BTreeMap::new();
    for (class, info) in &raw.classes {
        check_class_name(class)?;
        let regions = info.regions.clone().unwrap_or_default();
        if let Some(region) = regions.iter().find(|r| !all_regions.contains(r)) {
            return Err(manifest_error(format!(
                "classes.{class}.regions names `{region}`, which is not a region of the model ({} layers: {} regions)",
                raw.model.config.layers,
                all_regions.len()
            )));
        }
        let reached: BTreeSet<&String> = regions.iter().collect();
        if reached.len() == all_regions.len() {
            continue;
        }
        let attribute = verbatim_attribute(class);
        if let Some(other) = by_attribute.insert(attribute.clone(), class) {
            return Err(manifest_error(format!(
                "classes `{other}` and `{class}` both map to the attribute `{attribute}`: rename one of them"
            )));
        }
        attributes.push(Attribute {
            name: attribute.clone(),
            ty: AttrType::Int {
                lo: 0,
                hi: VERBATIM_MAX_VALUE,
            },
            context: false,
        });
        predicates.push(DerivedPredicate {
            id: format!("{DERIVED_PREFIX}verbatim.{class}"),
            category: Category::Safety,
            require: format!("{attribute} <= {verbatim_max}"),
            reason: format!(
                "class `{class}` was trained at depth `{}`, reaching {} of the model's {} regions",
                info.depth.as_deref().unwrap_or("none"),
                reached.len(),
                all_regions.len()
            ),
        });
    }

    let mut excluded: BTreeMap<String, &str> = BTreeMap::new();
    for class in &raw.excluded_classes {
        excluded.insert(class.clone(), "refused from the training data");
    }
    for (class, info) in &raw.classes {
        if info.excluded_by_policy {
            excluded
                .entry(class.clone())
                .or_insert("excluded by the training policy");
        }
    }
    if excluded.len() > MAX_MEMBERS {
        return Err(manifest_error(format!(
            "{} excluded classes: a set attribute holds at most {MAX_MEMBERS}",
            excluded.len()
        )));
    }
    for (class, why) in &excluded {
        check_class_name(class)?;
        predicates.push(DerivedPredicate {
            id: format!("{DERIVED_PREFIX}excluded.{class}"),
            category: Category::Safety,
            require: format!("not ({CLASSES_ATTRIBUTE} contains '{class}')"),
            reason: format!("class `{class}` is excluded ({why})"),
        });
    }
    if !excluded.is_empty() {
        attributes.push(Attribute {
            name: CLASSES_ATTRIBUTE.to_string(),
            ty: AttrType::Set(excluded.keys().cloned().collect()),
            context: false,
        });
    }
    attributes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Derived {
        attributes,
        predicates,
        verbatim_max,
        verbatim_source,
    })
}

impl Derived {
    /// The derived constraints as bundle TOML (bundle `manifest-derived`, version 1), each
    /// predicate preceded by a `#` comment saying why. With no derived predicate the text says so
    /// in a comment and has no `[[predicate]]` (so it is not an admissible bundle on its own).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# verbatim bound N = {} fingerprint word-tokens ({})",
            self.verbatim_max, self.verbatim_source
        );
        out.push_str("[bundle]\nname = \"manifest-derived\"\nversion = 1\n\n[vocabulary]\n");
        for attr in &self.attributes {
            let _ = writeln!(out, "{}", attribute_line(attr));
        }
        if self.predicates.is_empty() {
            out.push_str("\n# the manifest implies no constraints\n");
        }
        for pred in &self.predicates {
            let _ = write!(out, "\n# {}", pred.reason);
            predicate_block(
                &mut out,
                &pred.id,
                pred.category.as_str(),
                "strict",
                None,
                &pred.require,
            );
        }
        out
    }
}

fn merge_attribute(
    ours: &Attribute,
    derived: &Attribute,
    origin: &str,
) -> Result<Attribute, PolicyError> {
    let conflict = |reason: String| PolicyError::Manifest {
        what: origin.to_string(),
        reason: format!(
            "attribute `{}`: the bundle declares {}, the manifest derives {}: {reason}",
            ours.name,
            attribute_line(ours),
            attribute_line(derived)
        ),
    };
    if ours.context != derived.context {
        return Err(conflict("their `context` flags differ".into()));
    }
    let union = |a: &[String], b: &[String]| -> Result<Vec<String>, PolicyError> {
        let mut all = a.to_vec();
        all.extend(b.iter().filter(|v| !a.contains(v)).cloned());
        if all.len() > MAX_MEMBERS {
            return Err(conflict(format!(
                "together they have more than {MAX_MEMBERS} members"
            )));
        }
        Ok(all)
    };
    let ty = match (&ours.ty, &derived.ty) {
        (AttrType::Int { lo, hi }, AttrType::Int { lo: dlo, hi: dhi }) => AttrType::Int {
            lo: (*lo).min(*dlo),
            hi: (*hi).max(*dhi),
        },
        (AttrType::Set(a), AttrType::Set(b)) => AttrType::Set(union(a, b)?),
        (AttrType::Enum(a), AttrType::Enum(b)) => AttrType::Enum(union(a, b)?),
        _ => return Err(conflict("their types differ".into())),
    };
    Ok(Attribute {
        name: ours.name.clone(),
        ty,
        context: ours.context,
    })
}

/// The operator's `bundle` with the derived vocabulary and predicates added (see the module
/// documentation), re-parsed and type-checked; `origin` names the merge in errors (e.g.
/// `bundle.toml + manifest.intoto.json`). Same name, version and `succeeds` as `bundle`.
pub fn merge(bundle: &Bundle, derived: &Derived, origin: &str) -> Result<Bundle, PolicyError> {
    if let Some(pred) = bundle
        .predicates
        .iter()
        .find(|p| p.id.starts_with(DERIVED_PREFIX))
    {
        return Err(PolicyError::Manifest {
            what: origin.to_string(),
            reason: format!(
                "the bundle's predicate `{}` uses the prefix `{DERIVED_PREFIX}`, which is reserved for predicates derived from the manifest: rename it",
                pred.id
            ),
        });
    }
    let mut attributes: BTreeMap<String, Attribute> = bundle
        .vocabulary
        .attributes
        .iter()
        .map(|a| (a.name.clone(), a.clone()))
        .collect();
    for attr in &derived.attributes {
        let merged = match attributes.get(&attr.name) {
            Some(ours) => merge_attribute(ours, attr, origin)?,
            None => attr.clone(),
        };
        attributes.insert(attr.name.clone(), merged);
    }
    let mut out = String::new();
    header(&mut out, &bundle.name, bundle.version, bundle.succeeds);
    for attr in attributes.values() {
        let _ = writeln!(out, "{}", attribute_line(attr));
    }
    for pred in &bundle.predicates {
        predicate_block(
            &mut out,
            &pred.id,
            pred.category.as_str(),
            pred.weight.as_str(),
            pred.when_text.as_deref(),
            &pred.require_text,
        );
    }
    for pred in &derived.predicates {
        predicate_block(
            &mut out,
            &pred.id,
            pred.category.as_str(),
            "strict",
            None,
            &pred.require,
        );
    }
    Bundle::parse(&out, origin)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gate::{prove, Bound, Finding};

    /// A predicate in the shape `warden_train::manifest::statement` writes (one layer: the model
    /// has 7 regions).
    fn manifest(rule: serde_json::Value) -> serde_json::Value {
        let all: Vec<String> = model_regions(1);
        json!({
            "model": {"config": {"layers": 1, "width": 16, "heads": 2, "context": 32},
                      "parameters": 1000, "parameter_digest": "00", "weight_digests": {}},
            "corpus": {"declaration_digest": "00", "root": "00"},
            "classes": {
                "public-domain": {"depth": "deep", "regions": all, "max_norm": null,
                                  "excluded_by_policy": false, "sources": []},
                "notes": {"depth": "shallow", "regions": ["head"], "max_norm": null,
                          "excluded_by_policy": false, "sources": []},
                "forum": {"depth": "deep", "regions": all, "max_norm": null,
                          "excluded_by_policy": true, "sources": []},
            },
            "excluded_classes": ["medical"],
            "memorization": {"rule": rule, "detectors": []},
            "policy": {"versions": ["v1"], "current": {}},
        })
    }

    fn rule(ngram: i64) -> serde_json::Value {
        json!({"ngram": ngram, "window": 64, "threshold": 0.0, "loss_ratio": 0.0,
               "action": "reject", "weight": 0.0})
    }

    #[test]
    fn restricted_depths_are_bounded_and_excluded_classes_guarded() {
        let derived = derive(&manifest(rule(40))).unwrap();
        let preds: Vec<(&str, &str)> = derived
            .predicates
            .iter()
            .map(|p| (p.id.as_str(), p.require.as_str()))
            .collect();
        assert_eq!(
            preds,
            [
                ("derived.verbatim.notes", "output.verbatim.notes <= 8"),
                (
                    "derived.excluded.forum",
                    "not (output.classes contains 'forum')"
                ),
                (
                    "derived.excluded.medical",
                    "not (output.classes contains 'medical')"
                ),
            ]
        );
        assert!(derived
            .predicates
            .iter()
            .all(|p| p.category == Category::Safety));
        let names: Vec<&str> = derived.attributes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["output.classes", "output.verbatim.notes"]);
        assert_eq!(
            derived.attributes[0].ty,
            AttrType::Set(vec!["forum".into(), "medical".into()])
        );
        // The TOML is an admissible bundle on its own.
        let text = derived.to_toml();
        let bundle = Bundle::parse(&text, "derived.toml").unwrap();
        assert_eq!(bundle.predicates.len(), 3);
        prove(&bundle, &Bound::default()).unwrap();
        assert!(text.contains("# class `notes` was trained at depth `shallow`, reaching 1 of the model's 7 regions"), "{text}");
    }

    #[test]
    fn n_comes_from_the_memorization_rule_or_the_default() {
        assert_eq!(derive(&manifest(rule(64))).unwrap().verbatim_max, 12);
        assert_eq!(derive(&manifest(rule(12))).unwrap().verbatim_max, 8);
        let none = derive(&manifest(serde_json::Value::Null)).unwrap();
        assert_eq!(none.verbatim_max, DEFAULT_VERBATIM_MAX);
        assert!(none.verbatim_source.contains("default"));
        let mut no_section = manifest(rule(40));
        no_section.as_object_mut().unwrap().remove("memorization");
        assert_eq!(derive(&no_section).unwrap().verbatim_max, 8);
        let err = derive(&manifest(rule(0))).unwrap_err().to_string();
        assert!(err.contains("memorization.rule.ngram = 0"), "{err}");
    }

    #[test]
    fn attribute_names_map_invalid_characters_and_collisions_are_refused() {
        assert_eq!(verbatim_attribute("notes"), "output.verbatim.notes");
        assert_eq!(
            verbatim_attribute("public-domain.v2"),
            "output.verbatim.public_domain_v2"
        );
        let mut m = manifest(rule(40));
        m["classes"]["public-domain"]["regions"] = json!(["head"]);
        m["classes"]["public_domain"] = json!({"depth": "shallow", "regions": ["head"]});
        let err = derive(&m).unwrap_err().to_string();
        assert_eq!(err, "training manifest: classes `public-domain` and `public_domain` both map to the attribute `output.verbatim.public_domain`: rename one of them");
        // The mapped name is a valid attribute: the derived bundle parses.
        let mut m = manifest(rule(40));
        m["classes"]["public-domain"]["regions"] = json!(["embed", "head"]);
        let derived = derive(&m).unwrap();
        Bundle::parse(&derived.to_toml(), "d.toml").unwrap();
        assert!(derived
            .predicates
            .iter()
            .any(|p| p.id == "derived.verbatim.public-domain"
                && p.require == "output.verbatim.public_domain <= 8"));
    }

    #[test]
    fn manifests_that_disagree_with_the_model_or_lack_fields_are_refused() {
        let mut m = manifest(rule(40));
        m["classes"]["notes"]["regions"] = json!(["layer7.attn"]);
        let err = derive(&m).unwrap_err().to_string();
        assert!(err.contains("classes.notes.regions names `layer7.attn`, which is not a region of the model (1 layers: 7 regions)"), "{err}");
        let mut m = manifest(rule(40));
        m.as_object_mut().unwrap().remove("model");
        let err = derive(&m).unwrap_err().to_string();
        assert!(err.contains("missing field `model`"), "{err}");
        let mut m = manifest(rule(40));
        m["excluded_classes"] = json!(["it's"]);
        let err = derive(&m).unwrap_err().to_string();
        assert!(err.contains("class name \"it's\""), "{err}");
    }

    const OPERATOR: &str = "[bundle]\nname = \"op\"\nversion = 1\n[vocabulary]\n\"caller.tier\" = { enum = [\"free\", \"paid\"], context = true }\n\"output.classes\" = { set = [\"pii\"] }\n\"output.verbatim.notes\" = { int = [0, 500] }\n[[predicate]]\nid = \"op.no-pii\"\ncategory = \"safety\"\nrequire = \"not (output.classes contains 'pii')\"\n";

    #[test]
    fn merging_unions_domains_and_a_contradiction_names_both_predicates() {
        let derived = derive(&manifest(rule(40))).unwrap();
        let ok = Bundle::parse(OPERATOR, "op.toml").unwrap();
        let merged = merge(&ok, &derived, "op.toml + manifest").unwrap();
        assert_eq!(merged.predicates.len(), 4);
        let classes = merged.vocabulary.lookup("output.classes").unwrap();
        assert_eq!(
            merged.vocabulary.attr(classes).ty,
            AttrType::Set(vec!["pii".into(), "forum".into(), "medical".into()])
        );
        let verbatim = merged.vocabulary.lookup("output.verbatim.notes").unwrap();
        assert_eq!(
            merged.vocabulary.attr(verbatim).ty,
            AttrType::Int {
                lo: 0,
                hi: VERBATIM_MAX_VALUE
            }
        );
        prove(&merged, &Bound::default()).unwrap();

        // Free callers must get long verbatim notes: the model's training forbids it.
        for (when, check) in [
            ("when = \"caller.tier == 'free'\"\n", "no-stranded-context"),
            ("", "consistency"),
        ] {
            let bad = format!("{OPERATOR}[[predicate]]\nid = \"op.quote-notes\"\ncategory = \"task\"\n{when}require = \"output.verbatim.notes >= 200\"\n");
            let bad = Bundle::parse(&bad, "op.toml").unwrap();
            prove(&bad, &Bound::default()).unwrap();
            let merged = merge(&bad, &derived, "op.toml + manifest").unwrap();
            let rejection = prove(&merged, &Bound::default()).unwrap_err();
            let Finding::Refuted {
                core, core_minimal, ..
            } = &rejection.finding
            else {
                panic!("expected a refutation: {rejection}");
            };
            let mut core = core.clone();
            core.sort();
            assert_eq!(
                core,
                ["derived.verbatim.notes", "op.quote-notes"],
                "{rejection}"
            );
            assert!(core_minimal);
            if !when.is_empty() {
                assert!(
                    matches!(
                        rejection.check.as_str(),
                        "live-preconditions" | "no-stranded-context"
                    ),
                    "{check}: {rejection}"
                );
            }
        }
    }

    #[test]
    fn merge_conflicts_name_both_sides() {
        let derived = derive(&manifest(rule(40))).unwrap();
        let text = OPERATOR
            .replace(
                "\"output.classes\" = { set = [\"pii\"] }",
                "\"output.classes\" = { int = [0, 3] }",
            )
            .replace("not (output.classes contains 'pii')", "output.classes <= 2");
        let bundle = Bundle::parse(&text, "op.toml").unwrap();
        let err = merge(&bundle, &derived, "op.toml + m.json")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "op.toml + m.json: attribute `output.classes`: the bundle declares \"output.classes\" = { int = [0, 3] }, the manifest derives \"output.classes\" = { set = [\"forum\", \"medical\"] }: their types differ");
        let text = OPERATOR.replace("int = [0, 500] }", "int = [0, 500], context = true }");
        let bundle = Bundle::parse(&text, "op.toml").unwrap();
        let err = merge(&bundle, &derived, "m").unwrap_err().to_string();
        assert!(err.contains("their `context` flags differ"), "{err}");
        let text = OPERATOR.replace("id = \"op.no-pii\"", "id = \"derived.mine\"");
        let bundle = Bundle::parse(&text, "op.toml").unwrap();
        let err = merge(&bundle, &derived, "m").unwrap_err().to_string();
        assert!(
            err.contains("predicate `derived.mine` uses the prefix `derived.`"),
            "{err}"
        );
    }
}
