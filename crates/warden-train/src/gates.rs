//! The admissibility evaluator: every gate's decision as a function of the resolved policy, the
//! signed admission index and the observed statistics — no tensors, no IO, no records.
//!
//! The training loop gathers evidence (a sample's current hash, a region's gradient norm, an
//! evaluation request) and asks [`Admissibility`]; it acts only on the verdict it gets back. The
//! verdicts are types, not booleans, so a caller cannot treat "refused" as "failed" or forget to
//! scale a clipped region.

use crate::config::EvalRequest;
use crate::data::{AdmissionIndex, PoolSample};
use crate::policy::{ExcessAction, MemorizationAction, ResolvedPolicy};

/// The data gate's decision about one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleVerdict {
    /// Trains at `depth`.
    Admit { depth: String, class: String },
    /// Never reaches the forward pass; recorded in the iteration (excluded class, license,
    /// flagged at admission).
    Refuse(String),
    /// An integrity failure (content changed after admission, held-out content in a training
    /// source, a flagged source, an undefined depth): the policy's failure mode applies.
    Fail(String),
}

/// Summary statistics of one region's gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionStats {
    pub norm: f64,
    pub max_abs: f64,
    pub finite: bool,
}

/// The gradient gate's decision about one region.
#[derive(Debug, Clone, PartialEq)]
pub enum RegionVerdict {
    Admit,
    /// Update with the gradient scaled by `scale` (< 1).
    Clip {
        scale: f64,
        reason: String,
    },
    /// No update at all: no optimizer call, moments untouched.
    Reject {
        reason: String,
    },
    /// Non-finite gradient: the policy's failure mode applies.
    Fail(String),
}

impl RegionVerdict {
    pub fn name(&self) -> &'static str {
        match self {
            RegionVerdict::Admit => "admit",
            RegionVerdict::Clip { .. } => "clip",
            RegionVerdict::Reject { .. } => "reject",
            RegionVerdict::Fail(_) => "fail",
        }
    }

    /// The factor applied to the gradient, if the region is updated at all.
    pub fn scale(&self) -> Option<f64> {
        match self {
            RegionVerdict::Admit => Some(1.0),
            RegionVerdict::Clip { scale, .. } => Some(*scale),
            RegionVerdict::Reject { .. } | RegionVerdict::Fail(_) => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            RegionVerdict::Admit => None,
            RegionVerdict::Clip { reason, .. } | RegionVerdict::Reject { reason } => Some(reason),
            RegionVerdict::Fail(reason) => Some(reason),
        }
    }
}

/// The one evaluator all gates go through.
pub struct Admissibility<'a> {
    pub policy: &'a ResolvedPolicy,
    pub corpus: &'a dyn AdmissionIndex,
}

impl Admissibility<'_> {
    /// Data gate: the sample's current content hash against the signed admission index, then
    /// its source, class, license and depth against the policy.
    pub fn sample(&self, sample: &PoolSample) -> SampleVerdict {
        let Some(location) = self.corpus.lookup(&sample.hash) else {
            if let Some(reason) = self.corpus.exclusion(&sample.hash) {
                return SampleVerdict::Refuse(format!("excluded at admission ({reason})"));
            }
            return SampleVerdict::Fail(
                "content hash is not in the signed corpus declaration (edited after admission or never admitted)"
                    .to_string(),
            );
        };
        let Some(source) = self.corpus.sources().get(location.source as usize) else {
            return SampleVerdict::Fail(format!(
                "admission index names unknown source {}",
                location.source
            ));
        };
        if !source.admitted {
            return SampleVerdict::Fail(format!("source {} is flagged (not admitted)", source.id));
        }
        if source.held_out {
            return SampleVerdict::Fail(format!(
                "content is admitted only in held-out source {} and may not be trained on",
                source.id
            ));
        }
        if self
            .policy
            .class_excluded(&source.class, self.corpus.excluded_classes())
        {
            return SampleVerdict::Refuse(format!("class {} is excluded", source.class));
        }
        if !self.policy.license_allowed(&source.license) {
            return SampleVerdict::Refuse(format!(
                "license {} is not allowed by policy",
                source.license
            ));
        }
        match self.policy.depth_for(&source.class, &source.depth) {
            Some(depth) => SampleVerdict::Admit {
                depth: depth.to_string(),
                class: source.class.clone(),
            },
            None => SampleVerdict::Fail(format!(
                "class {} has depth {:?}, which the policy does not define",
                source.class, source.depth
            )),
        }
    }

    /// What a detected (memorized) contribution keeps: the weight of its loss terms and the
    /// action's name. `reject` keeps nothing; `clip` keeps the policy's sensitivity weight.
    pub fn memorization(&self) -> (f64, &'static str) {
        match self
            .policy
            .source
            .memorization
            .as_ref()
            .map(|r| (r.action, r.weight))
        {
            Some((MemorizationAction::Clip, weight)) => (weight, "clip"),
            _ => (0.0, "reject"),
        }
    }

    /// How strongly a depth group's contribution may move its regions: the scale that brings
    /// the group's gradient norm within the depth's bound.
    pub fn depth_scale(&self, depth: &str, norm: f64) -> f64 {
        match self.policy.depths.get(depth).and_then(|d| d.max_norm) {
            Some(bound) if norm > bound => bound / norm,
            _ => 1.0,
        }
    }

    /// Gradient gate for one region: finiteness, frozen, update-frequency cap, norm bound.
    pub fn region(
        &self,
        region: &str,
        stats: &RegionStats,
        last_update: Option<u64>,
        iteration: u64,
    ) -> RegionVerdict {
        if !stats.finite || !stats.norm.is_finite() {
            return RegionVerdict::Fail(format!("non-finite gradient in region {region}"));
        }
        let Some(profile) = self.policy.regions.get(region) else {
            return RegionVerdict::Reject {
                reason: format!("region {region} has no profile"),
            };
        };
        if profile.frozen {
            return RegionVerdict::Reject {
                reason: "frozen".to_string(),
            };
        }
        if let Some(last) = last_update.filter(|l| iteration.saturating_sub(*l) < profile.every) {
            return RegionVerdict::Reject {
                reason: format!(
                    "update-frequency cap: last update at iteration {last}, at most every {}",
                    profile.every
                ),
            };
        }
        match profile.max_norm {
            Some(bound) if stats.norm > bound => match profile.on_excess {
                ExcessAction::Clip => RegionVerdict::Clip {
                    scale: bound / stats.norm,
                    reason: format!("norm {:.4} clipped to {bound}", stats.norm),
                },
                ExcessAction::Reject => RegionVerdict::Reject {
                    reason: format!("norm {:.4} exceeds bound {bound}", stats.norm),
                },
            },
            _ => RegionVerdict::Admit,
        }
    }

    /// Evaluation gate: every requested source must be an authorized, admitted held-out source,
    /// every probe authorized, and the minimum interval respected. `Err` lists every reason.
    pub fn evaluation(
        &self,
        request: &EvalRequest,
        iteration: u64,
        last_eval: Option<u64>,
    ) -> Result<(), Vec<String>> {
        let rule = &self.policy.source.eval;
        let mut refusals = Vec::new();
        for source in &request.sources {
            let held_out = self
                .corpus
                .sources()
                .iter()
                .any(|s| &s.id == source && s.held_out && s.admitted);
            if !rule.sources.contains(source) {
                refusals.push(format!("source {source} is not authorized for evaluation"));
            } else if !held_out {
                refusals.push(format!(
                    "source {source} is not an admitted held-out source"
                ));
            }
        }
        for probe in &request.probes {
            if !rule.probes.contains(probe) {
                refusals.push(format!("probe {probe} is not authorized"));
            }
        }
        if let Some(last) = last_eval {
            if iteration.saturating_sub(last) < rule.min_interval {
                refusals.push(format!(
                    "last evaluation at iteration {last}; at most every {} iterations",
                    rule.min_interval
                ));
            }
        }
        if refusals.is_empty() {
            Ok(())
        } else {
            Err(refusals)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{sha256, MemoryCorpus, SourceInfo};
    use crate::model::ModelConfig;
    use crate::policy::TrainingPolicy;

    fn source(id: &str, class: &str, license: &str, held_out: bool) -> SourceInfo {
        SourceInfo {
            id: id.into(),
            class: class.into(),
            depth: "deep".into(),
            license: license.into(),
            held_out,
            admitted: true,
        }
    }

    fn fixture() -> (MemoryCorpus, ResolvedPolicy) {
        let mut corpus = MemoryCorpus::admit(vec![
            (
                source("web", "web", "MIT", false),
                vec!["a".into(), "b".into(), "c".into()],
            ),
            (
                source("gpl", "code", "GPL-3.0-only", false),
                vec!["g".into()],
            ),
            (source("held", "web", "MIT", true), vec!["h".into()]),
            (source("pii", "user-pii", "MIT", false), vec!["p".into()]),
        ]);
        corpus.flag(0, 2, "flagged: email");
        let policy = TrainingPolicy::parse(
            r#"
version = "g1"
failure = "halt"
licenses = ["MIT"]
excluded_classes = ["user-pii"]
[[regions]]
match = "*"
max_norm = 1.0
[[regions]]
match = "head"
on_excess = "reject"
[[regions]]
match = "embed"
frozen = true
[[regions]]
match = "layer0.ffn"
every = 3
[eval]
sources = ["held", "web"]
probes = ["loss"]
min_interval = 5
"#,
            "gates test",
        )
        .unwrap()
        .resolve(
            &ModelConfig {
                layers: 1,
                width: 8,
                heads: 2,
                context: 8,
            }
            .regions(),
        )
        .unwrap();
        (corpus, policy)
    }

    fn sample(text: &str) -> PoolSample {
        PoolSample {
            source: 0,
            line: 0,
            text: text.into(),
            hash: sha256(text.as_bytes()),
        }
    }

    #[test]
    fn data_gate_separates_refusals_from_integrity_failures() {
        let (corpus, policy) = fixture();
        let gate = Admissibility {
            policy: &policy,
            corpus: &corpus,
        };
        assert_eq!(
            gate.sample(&sample("a")),
            SampleVerdict::Admit {
                depth: "deep".into(),
                class: "web".into()
            }
        );
        assert!(
            matches!(gate.sample(&sample("a, edited")), SampleVerdict::Fail(r) if r.contains("edited after admission"))
        );
        assert_eq!(
            gate.sample(&sample("c")),
            SampleVerdict::Refuse("excluded at admission (flagged: email)".into())
        );
        assert_eq!(
            gate.sample(&sample("g")),
            SampleVerdict::Refuse("license GPL-3.0-only is not allowed by policy".into())
        );
        assert_eq!(
            gate.sample(&sample("p")),
            SampleVerdict::Refuse("class user-pii is excluded".into())
        );
        assert!(
            matches!(gate.sample(&sample("h")), SampleVerdict::Fail(r) if r.contains("held-out source held"))
        );
    }

    #[test]
    fn detected_contributions_keep_the_policy_weight() {
        let (corpus, mut policy) = fixture();
        let gate = Admissibility {
            policy: &policy,
            corpus: &corpus,
        };
        assert_eq!(gate.memorization(), (0.0, "reject"));
        policy.source.memorization = Some(crate::policy::MemorizationRule {
            ngram: 8,
            window: 4,
            threshold: 0.0,
            loss_ratio: 0.0,
            action: MemorizationAction::Clip,
            weight: 0.25,
        });
        let gate = Admissibility {
            policy: &policy,
            corpus: &corpus,
        };
        assert_eq!(gate.memorization(), (0.25, "clip"));
    }

    #[test]
    fn gradient_gate_verdicts() {
        let (corpus, policy) = fixture();
        let gate = Admissibility {
            policy: &policy,
            corpus: &corpus,
        };
        let small = RegionStats {
            norm: 0.5,
            max_abs: 0.1,
            finite: true,
        };
        let large = RegionStats { norm: 4.0, ..small };
        assert_eq!(
            gate.region("layer0.attn", &small, None, 1),
            RegionVerdict::Admit
        );
        assert_eq!(
            gate.region("layer0.attn", &large, None, 1).scale(),
            Some(0.25)
        );
        assert_eq!(gate.region("head", &large, None, 1).name(), "reject");
        assert_eq!(
            gate.region("embed", &small, None, 1).reason(),
            Some("frozen")
        );
        assert_eq!(
            gate.region("layer0.ffn", &small, Some(4), 6).name(),
            "reject"
        );
        assert_eq!(
            gate.region("layer0.ffn", &small, Some(4), 7),
            RegionVerdict::Admit
        );
        let nan = RegionStats {
            norm: f64::NAN,
            ..small
        };
        assert_eq!(gate.region("layer0.attn", &nan, None, 1).name(), "fail");
        let infinite = RegionStats {
            finite: false,
            ..small
        };
        assert_eq!(gate.region("head", &infinite, None, 1).name(), "fail");
    }

    #[test]
    fn evaluation_gate_lists_every_reason() {
        let (corpus, policy) = fixture();
        let gate = Admissibility {
            policy: &policy,
            corpus: &corpus,
        };
        let request = |sources: &[&str], probes: &[&str]| EvalRequest {
            every: 1,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            probes: probes.iter().map(|s| s.to_string()).collect(),
            max_samples: 1,
            candidates: 1,
            canaries: None,
        };
        assert_eq!(
            gate.evaluation(&request(&["held"], &["loss"]), 10, Some(5)),
            Ok(())
        );
        let refused = gate
            .evaluation(&request(&["web", "pii"], &["canary-exposure"]), 10, Some(8))
            .unwrap_err();
        assert_eq!(
            refused,
            vec![
                "source web is not an admitted held-out source".to_string(),
                "source pii is not authorized for evaluation".to_string(),
                "probe canary-exposure is not authorized".to_string(),
                "last evaluation at iteration 8; at most every 5 iterations".to_string(),
            ]
        );
    }
}
