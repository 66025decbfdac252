//! The training policy: depth profiles per region, depth assignment per class, memorization
//! detection, evaluation authorization, failure mode, checkpoint and lineage cadence.
//!
//! A policy is parsed once into checked types ([`TrainingPolicy::resolve`] → [`ResolvedPolicy`]);
//! the gates only ever see the resolved form, so an unknown depth, an empty version or a
//! non-positive bound is an error at load time, never a silent default at step 1234.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::TrainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Stop at the first failure, record it, exit non-zero naming the iteration.
    Halt,
    /// Roll parameters and optimizer back to the last admissible checkpoint, drop the batch,
    /// continue.
    Quarantine,
    /// Quarantine, but halt once `tolerance.failures` failures fall within `tolerance.window`
    /// iterations.
    Tolerance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    pub failures: u64,
    pub window: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExcessAction {
    Clip,
    Reject,
}

/// One `[[policy.regions]]` entry; later entries override the fields they set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionRule {
    /// Region pattern: `head`, `layer*.attn`, `*` (`*` matches any characters).
    #[serde(rename = "match")]
    pub pattern: String,
    pub max_norm: Option<f64>,
    pub on_excess: Option<ExcessAction>,
    /// Update at most every `every` iterations.
    pub every: Option<u64>,
    pub frozen: Option<bool>,
}

/// A depth: which regions a class admitted at this depth may update, and how strongly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepthRule {
    pub regions: Vec<String>,
    /// Bound on the norm of this depth's gradient contribution (over its regions); clipped.
    pub max_norm: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemorizationAction {
    Reject,
    Clip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorizationRule {
    /// Exact-match scanning: n-gram length in bytes.
    pub ngram: usize,
    /// Exact-match scanning: how many recent samples are remembered.
    pub window: usize,
    /// Exact-match scanning: a sample is detected when more than this fraction of its n-grams
    /// occurred in the window (0.0: any long repeat).
    pub threshold: f64,
    /// Loss signature: detected when a sample's loss is below `loss_ratio` × its class median
    /// (0 disables this detector).
    #[serde(default)]
    pub loss_ratio: f64,
    pub action: MemorizationAction,
    /// Sensitivity weight: the loss weight kept by a clipped contribution.
    #[serde(default)]
    pub weight: f64,
}

/// Which evaluations are authorized.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRule {
    /// Held-out source ids that may be evaluated.
    #[serde(default)]
    pub sources: Vec<String>,
    /// At least this many iterations between two evaluations.
    #[serde(default = "one")]
    pub min_interval: u64,
    /// Probes that may run: `loss`, `canary-exposure`.
    #[serde(default)]
    pub probes: Vec<String>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "cadence")]
pub enum LineageCadence {
    /// A signed lineage checkpoint after every iteration.
    Step,
    /// A signed lineage checkpoint every `steps` iterations (records are still chained).
    Window { steps: u64 },
}

/// The `[policy]` table as written (also the whole file given to `train resume --policy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingPolicy {
    pub version: String,
    pub failure: FailureMode,
    pub tolerance: Option<Tolerance>,
    #[serde(default = "ten")]
    pub checkpoint_every: u64,
    /// Every `retain_every`-th iteration's checkpoint is kept for good, content-addressed
    /// (`RUN_DIR/checkpoints/retained/<sha256>.safetensors`, its digest in that iteration's
    /// record), so a spot-check replay re-executes at most this many iterations. Default 4.
    #[serde(default = "four")]
    pub retain_every: u64,
    #[serde(default = "step_cadence")]
    pub lineage: LineageCadence,
    /// Allowed SPDX license ids; empty: any license the corpus admitted.
    #[serde(default)]
    pub licenses: Vec<String>,
    /// Classes refused at the data gate in addition to the corpus's excluded classes.
    #[serde(default)]
    pub excluded_classes: Vec<String>,
    #[serde(default)]
    pub regions: Vec<RegionRule>,
    #[serde(default)]
    pub depths: BTreeMap<String, DepthRule>,
    /// Class → depth overrides of the corpus declaration.
    #[serde(default)]
    pub classes: BTreeMap<String, String>,
    pub memorization: Option<MemorizationRule>,
    #[serde(default)]
    pub eval: EvalRule,
}

fn ten() -> u64 {
    10
}
fn four() -> u64 {
    4
}
fn step_cadence() -> LineageCadence {
    LineageCadence::Step
}

/// `*` matches any run of characters; everything else matches itself.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(remaining) = text.strip_prefix(head) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            (0..=remaining.len())
                .filter(|&i| remaining.is_char_boundary(i))
                .any(|i| pattern_matches(rest, &remaining[i..]))
        }
    }
}

/// The effective profile of one region.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionProfile {
    pub max_norm: Option<f64>,
    pub on_excess: ExcessAction,
    pub every: u64,
    pub frozen: bool,
}

/// The effective rule of one depth: the concrete regions it may update.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepthProfile {
    pub regions: Vec<String>,
    pub max_norm: Option<f64>,
}

/// A policy checked against a model's regions: what the gates consume.
#[derive(Debug, Clone)]
pub struct ResolvedPolicy {
    pub source: TrainingPolicy,
    pub regions: BTreeMap<String, RegionProfile>,
    pub depths: BTreeMap<String, DepthProfile>,
}

fn positive(value: Option<f64>, what: &str) -> Result<(), TrainError> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(TrainError::Config(format!(
            "policy: {what} must be a positive number (got {v})"
        ))),
        _ => Ok(()),
    }
}

impl TrainingPolicy {
    pub fn parse(text: &str, origin: &str) -> Result<TrainingPolicy, TrainError> {
        toml::from_str(text).map_err(|e| TrainError::Syntax {
            origin: origin.to_string(),
            reason: e.to_string().trim().replace('\n', " "),
        })
    }

    /// Checks the policy against the model's regions and resolves profiles and depths.
    pub fn resolve(&self, model_regions: &[String]) -> Result<ResolvedPolicy, TrainError> {
        if self.version.trim().is_empty() {
            return Err(TrainError::Config(
                "policy: version must not be empty".into(),
            ));
        }
        if self.checkpoint_every == 0 {
            return Err(TrainError::Config(
                "policy: checkpoint_every must be at least 1".into(),
            ));
        }
        if self.retain_every == 0 {
            return Err(TrainError::Config(
                "policy: retain_every must be at least 1".into(),
            ));
        }
        if let LineageCadence::Window { steps: 0 } = self.lineage {
            return Err(TrainError::Config(
                "policy: lineage window must be at least 1 step".into(),
            ));
        }
        match (self.failure, self.tolerance) {
            (FailureMode::Tolerance, None) => {
                return Err(TrainError::Config(
                    "policy: failure = \"tolerance\" needs tolerance = { failures, window }".into(),
                ))
            }
            (FailureMode::Tolerance, Some(t)) if t.failures == 0 || t.window == 0 => {
                return Err(TrainError::Config(
                    "policy: tolerance failures and window must be at least 1".into(),
                ))
            }
            _ => {}
        }
        let mut regions = BTreeMap::new();
        for region in model_regions {
            let mut profile = RegionProfile {
                max_norm: None,
                on_excess: ExcessAction::Clip,
                every: 1,
                frozen: false,
            };
            for rule in self
                .regions
                .iter()
                .filter(|r| pattern_matches(&r.pattern, region))
            {
                if let Some(v) = rule.max_norm {
                    profile.max_norm = Some(v);
                }
                if let Some(v) = rule.on_excess {
                    profile.on_excess = v;
                }
                if let Some(v) = rule.every {
                    profile.every = v;
                }
                if let Some(v) = rule.frozen {
                    profile.frozen = v;
                }
            }
            regions.insert(region.clone(), profile);
        }
        for (idx, rule) in self.regions.iter().enumerate() {
            positive(
                rule.max_norm,
                &format!("regions[{idx}] ({}) max_norm", rule.pattern),
            )?;
            if rule.every == Some(0) {
                return Err(TrainError::Config(format!(
                    "policy: regions[{idx}] ({}) every must be at least 1",
                    rule.pattern
                )));
            }
            if !model_regions
                .iter()
                .any(|r| pattern_matches(&rule.pattern, r))
            {
                return Err(TrainError::Config(format!(
                    "policy: regions[{idx}] pattern {:?} matches no model region",
                    rule.pattern
                )));
            }
        }
        let mut depth_rules = self.depths.clone();
        depth_rules.entry("deep".into()).or_insert(DepthRule {
            regions: vec!["*".into()],
            max_norm: None,
        });
        depth_rules.entry("shallow".into()).or_insert(DepthRule {
            regions: vec!["head".into()],
            max_norm: None,
        });
        let mut depths = BTreeMap::new();
        for (name, rule) in &depth_rules {
            positive(rule.max_norm, &format!("depths.{name}.max_norm"))?;
            let admitted: Vec<String> = model_regions
                .iter()
                .filter(|r| rule.regions.iter().any(|p| pattern_matches(p, r)))
                .cloned()
                .collect();
            if admitted.is_empty() {
                return Err(TrainError::Config(format!(
                    "policy: depths.{name} admits no model region (patterns {:?})",
                    rule.regions
                )));
            }
            depths.insert(
                name.clone(),
                DepthProfile {
                    regions: admitted,
                    max_norm: rule.max_norm,
                },
            );
        }
        for (class, depth) in &self.classes {
            if !depths.contains_key(depth) {
                return Err(TrainError::Config(format!(
                    "policy: classes.{class} names depth {depth:?}, which is not defined"
                )));
            }
        }
        if let Some(m) = &self.memorization {
            if m.ngram < 4 || m.window == 0 || !(0.0..1.0).contains(&m.threshold) {
                return Err(TrainError::Config(
                    "policy: memorization needs ngram >= 4, window >= 1, 0 <= threshold < 1".into(),
                ));
            }
            if !(0.0..=1.0).contains(&m.weight) || !(0.0..1.0).contains(&m.loss_ratio) {
                return Err(TrainError::Config(
                    "policy: memorization weight must lie in [0, 1] and loss_ratio in [0, 1)"
                        .into(),
                ));
            }
        }
        for probe in &self.eval.probes {
            if probe != "loss" && probe != "canary-exposure" {
                return Err(TrainError::Config(format!(
                    "policy: eval probe {probe:?} is unknown (known: loss, canary-exposure)"
                )));
            }
        }
        Ok(ResolvedPolicy {
            source: self.clone(),
            regions,
            depths,
        })
    }
}

impl ResolvedPolicy {
    pub fn version(&self) -> &str {
        &self.source.version
    }

    /// The depth a class trains at: the policy's override, else the declaration's depth.
    pub fn depth_for<'a>(&'a self, class: &str, declared: &'a str) -> Option<&'a str> {
        let name = self
            .source
            .classes
            .get(class)
            .map(String::as_str)
            .unwrap_or(declared);
        self.depths.get_key_value(name).map(|(k, _)| k.as_str())
    }

    /// Whether an SPDX expression is allowed: some `OR` branch whose ids (joined by `AND`/`WITH`)
    /// are all on the allow-list. Parentheses are flattened, which can only refuse more. Empty
    /// allow-list: every license the corpus admitted.
    pub fn license_allowed(&self, expression: &str) -> bool {
        if self.source.licenses.is_empty() {
            return true;
        }
        let flat = expression.replace(['(', ')'], " ");
        flat.split(" OR ").any(|branch| {
            branch
                .split_whitespace()
                .filter(|t| !matches!(*t, "AND" | "WITH"))
                .all(|id| self.source.licenses.iter().any(|a| a == id))
        })
    }

    pub fn class_excluded(&self, class: &str, corpus_excluded: &[String]) -> bool {
        self.source.excluded_classes.iter().any(|c| c == class)
            || corpus_excluded.iter().any(|c| c == class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
version = "p1"
failure = "tolerance"
tolerance = { failures = 2, window = 5 }
checkpoint_every = 4
lineage = { cadence = "window", steps = 8 }
licenses = ["MIT", "CC-BY-4.0"]

[[regions]]
match = "*"
max_norm = 1.0

[[regions]]
match = "layer*.attn"
every = 2
on_excess = "reject"

[[regions]]
match = "embed"
frozen = true

[depths.shallow]
regions = ["head"]
max_norm = 0.1

[classes]
code = "shallow"
"#;

    fn regions() -> Vec<String> {
        crate::model::ModelConfig {
            layers: 2,
            width: 8,
            heads: 2,
            context: 8,
        }
        .regions()
    }

    #[test]
    fn later_rules_override_earlier_ones_per_field() {
        let policy = TrainingPolicy::parse(POLICY, "p.toml")
            .unwrap()
            .resolve(&regions())
            .unwrap();
        let attn = &policy.regions["layer1.attn"];
        assert_eq!(attn.every, 2);
        assert_eq!(attn.on_excess, ExcessAction::Reject);
        assert_eq!(attn.max_norm, Some(1.0));
        assert!(policy.regions["embed"].frozen);
        assert!(!policy.regions["head"].frozen);
        assert_eq!(policy.depth_for("code", "deep"), Some("shallow"));
        assert_eq!(policy.depth_for("news", "deep"), Some("deep"));
        assert_eq!(policy.depth_for("news", "medium"), None);
        assert_eq!(policy.depths["shallow"].regions, vec!["head".to_string()]);
        assert_eq!(policy.depths["deep"].regions.len(), regions().len());
        assert!(policy.license_allowed("MIT"));
        assert!(policy.license_allowed("MIT OR GPL-3.0-only"));
        assert!(!policy.license_allowed("MIT AND GPL-3.0-only"));
        assert!(!policy.license_allowed("GPL-3.0-only"));
    }

    #[test]
    fn policies_naming_nothing_are_refused_with_the_reason() {
        let bad = POLICY.replace("match = \"embed\"", "match = \"embedding\"");
        let err = TrainingPolicy::parse(&bad, "p.toml")
            .unwrap()
            .resolve(&regions())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("\"embedding\" matches no model region"),
            "{err}"
        );
        let bad = POLICY.replace("code = \"shallow\"", "code = \"medium\"");
        let err = TrainingPolicy::parse(&bad, "p.toml")
            .unwrap()
            .resolve(&regions())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("classes.code names depth \"medium\""),
            "{err}"
        );
        let err = TrainingPolicy::parse("version = 1", "bad.toml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid configuration: bad.toml"),
            "{err}"
        );
    }

    #[test]
    fn glob_patterns() {
        assert!(pattern_matches("layer*.attn", "layer12.attn"));
        assert!(!pattern_matches("layer*.attn", "layer1.ffn"));
        assert!(pattern_matches("*", "head"));
        assert!(pattern_matches("head", "head"));
        assert!(!pattern_matches("head", "heads"));
    }
}
