//! The per-transition evaluator: predicates compiled to a flat node array, judged without
//! allocating.
//!
//! An [`AdmittedBundle`] can only be made by [`AdmittedBundle::load`], which verifies the
//! policy-authority signature (once) before compiling; so a tampered or unsigned bundle never
//! reaches [`evaluate`]. Evaluation order is structural predicates first (a strict structural
//! violation rejects at once), then the rest in bundle order. Strict violations give
//! [`Verdict::Reject`], advisory ones [`Verdict::Decompose`], otherwise [`Verdict::Admit`].
//!
//! Values use one encoding everywhere: enums as the variant index, ints as themselves, sets as a
//! bitmask of element indices.

use warden_keys::TrustStore;

use crate::bundle::{Category, Weight};
use crate::signing::VerifiedBundle;
use crate::types::{Atom, AttrType, Formula, LinOp};
use crate::PolicyError;

/// Sentinel for "no precondition".
const ALWAYS: u32 = u32::MAX;

/// How many violated predicate ids a verdict lists (the total is always counted).
pub const LISTED_VIOLATIONS: usize = 8;

#[derive(Debug, Clone, Copy)]
enum Node {
    Const(bool),
    Not(u32),
    And {
        start: u32,
        len: u32,
    },
    Or {
        start: u32,
        len: u32,
    },
    Linear {
        start: u32,
        len: u32,
        constant: i64,
        eq: bool,
    },
    EnumIn {
        slot: u32,
        mask: u64,
    },
    Contains {
        slot: u32,
        element: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Compiled {
    when: u32,
    require: u32,
    strict: bool,
}

/// A verified, compiled bundle: the only thing [`evaluate`] accepts.
#[derive(Debug, Clone)]
pub struct AdmittedBundle {
    verified: VerifiedBundle,
    nodes: Vec<Node>,
    children: Vec<u32>,
    terms: Vec<(u32, i64)>,
    predicates: Vec<Compiled>,
    /// Predicate indices: structural first, then the rest, each in bundle order.
    order: Vec<u32>,
    n_structural: usize,
    ids: Vec<String>,
    tag: [u8; 32],
}

impl AdmittedBundle {
    /// Verifies the signed envelope against `trust` (policy-authority) and compiles it.
    pub fn load(
        bytes: &[u8],
        origin: &str,
        trust: &TrustStore,
    ) -> Result<AdmittedBundle, PolicyError> {
        Ok(AdmittedBundle::compile(VerifiedBundle::verify(
            bytes, origin, trust,
        )?))
    }

    /// Compiles an already verified bundle.
    pub fn compile(verified: VerifiedBundle) -> AdmittedBundle {
        let mut admitted = AdmittedBundle {
            nodes: Vec::new(),
            children: Vec::new(),
            terms: Vec::new(),
            predicates: Vec::new(),
            order: Vec::new(),
            n_structural: 0,
            ids: Vec::new(),
            tag: verified.bundle().digest(),
            verified,
        };
        let predicates = admitted.verified.bundle().predicates.clone();
        for pred in &predicates {
            let when = match pred.when {
                Formula::Const(true) => ALWAYS,
                ref when => admitted.push_formula(when),
            };
            let require = admitted.push_formula(&pred.require);
            admitted.predicates.push(Compiled {
                when,
                require,
                strict: pred.weight == Weight::Strict,
            });
            admitted.ids.push(pred.id.clone());
        }
        let structural = |idx: &usize| predicates[*idx].category == Category::Structural;
        admitted.order = (0..predicates.len())
            .filter(structural)
            .chain((0..predicates.len()).filter(|i| !structural(i)))
            .map(|i| i as u32)
            .collect();
        admitted.n_structural = (0..predicates.len()).filter(structural).count();
        admitted
    }

    fn push_formula(&mut self, formula: &Formula) -> u32 {
        let node = match formula {
            Formula::Const(value) => Node::Const(*value),
            Formula::Not(inner) => Node::Not(self.push_formula(inner)),
            Formula::And(items) | Formula::Or(items) => {
                let kids: Vec<u32> = items.iter().map(|f| self.push_formula(f)).collect();
                let start = self.children.len() as u32;
                self.children.extend(&kids);
                let len = kids.len() as u32;
                if matches!(formula, Formula::And(_)) {
                    Node::And { start, len }
                } else {
                    Node::Or { start, len }
                }
            }
            Formula::Atom(Atom::Linear {
                terms,
                constant,
                op,
            }) => {
                let start = self.terms.len() as u32;
                self.terms.extend(terms.iter().copied());
                Node::Linear {
                    start,
                    len: terms.len() as u32,
                    constant: *constant,
                    eq: *op == LinOp::EqZero,
                }
            }
            Formula::Atom(Atom::EnumIn { attr, mask }) => Node::EnumIn {
                slot: *attr,
                mask: *mask,
            },
            Formula::Atom(Atom::SetContains { attr, element }) => Node::Contains {
                slot: *attr,
                element: *element,
            },
        };
        self.nodes.push(node);
        (self.nodes.len() - 1) as u32
    }

    pub fn verified(&self) -> &VerifiedBundle {
        &self.verified
    }

    /// The version id named in lineage records.
    pub fn version_id(&self) -> &str {
        &self.verified.statement().version_id
    }

    /// SHA-256 of the training manifest file the bundle was admitted against, if any (see
    /// [`VerifiedBundle::require_manifest`] to refuse a bundle for another model).
    pub fn manifest_digest(&self) -> Option<[u8; 32]> {
        self.verified.manifest_digest()
    }

    /// The index of an attribute (for [`Transition::set_int`]).
    pub fn attribute_index(&self, name: &str) -> Option<u32> {
        self.verified.bundle().vocabulary.lookup(name)
    }

    /// Starts a transition for this bundle; every attribute must be set before evaluation.
    pub fn transition(&self) -> TransitionBuilder<'_> {
        TransitionBuilder {
            bundle: self,
            values: vec![None; self.verified.bundle().vocabulary.len()],
        }
    }

    fn eval_node(&self, idx: u32, values: &[i64]) -> bool {
        match self.nodes[idx as usize] {
            Node::Const(value) => value,
            Node::Not(inner) => !self.eval_node(inner, values),
            Node::And { start, len } => self.children[start as usize..(start + len) as usize]
                .iter()
                .all(|kid| self.eval_node(*kid, values)),
            Node::Or { start, len } => self.children[start as usize..(start + len) as usize]
                .iter()
                .any(|kid| self.eval_node(*kid, values)),
            Node::Linear {
                start,
                len,
                constant,
                eq,
            } => {
                // Magnitudes are bounded by 2^48 at type-check time: no overflow.
                let sum = self.terms[start as usize..(start + len) as usize]
                    .iter()
                    .fold(constant, |acc, (slot, coeff)| {
                        acc + coeff * values[*slot as usize]
                    });
                if eq {
                    sum == 0
                } else {
                    sum <= 0
                }
            }
            Node::EnumIn { slot, mask } => (mask >> values[slot as usize]) & 1 == 1,
            Node::Contains { slot, element } => (values[slot as usize] as u64 >> element) & 1 == 1,
        }
    }
}

/// Collects the attribute values of a transition by name.
pub struct TransitionBuilder<'b> {
    bundle: &'b AdmittedBundle,
    values: Vec<Option<i64>>,
}

fn parse_value(attr: &crate::types::Attribute, text: &str) -> Result<i64, PolicyError> {
    let bad = |what: String| PolicyError::Transition(format!("`{}`: {what}", attr.name));
    match &attr.ty {
        AttrType::Enum(values) => values
            .iter()
            .position(|v| v == text)
            .map(|i| i as i64)
            .ok_or_else(|| bad(format!("'{text}' is not one of {}", values.join(", ")))),
        AttrType::Int { lo, hi } => {
            let value: i64 = text
                .trim()
                .parse()
                .map_err(|_| bad(format!("expected an integer, got '{text}'")))?;
            if value < *lo || value > *hi {
                return Err(bad(format!(
                    "{value} is outside the declared range [{lo}, {hi}]"
                )));
            }
            Ok(value)
        }
        AttrType::Set(elements) => {
            let mut mask = 0i64;
            for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let idx = elements.iter().position(|e| e == item).ok_or_else(|| {
                    bad(format!("'{item}' is not one of {}", elements.join(", ")))
                })?;
                mask |= 1 << idx;
            }
            Ok(mask)
        }
    }
}

impl TransitionBuilder<'_> {
    /// Sets an attribute from text: an enum value, an integer, or comma-separated set elements.
    pub fn set(mut self, name: &str, value: &str) -> Result<Self, PolicyError> {
        let vocab = &self.bundle.verified.bundle().vocabulary;
        let idx = vocab
            .lookup(name)
            .ok_or_else(|| PolicyError::Transition(format!("unknown attribute `{name}`")))?;
        self.values[idx as usize] = Some(parse_value(vocab.attr(idx), value)?);
        Ok(self)
    }

    /// Finishes the transition; every attribute of the vocabulary must have been set.
    pub fn build(self) -> Result<Transition, PolicyError> {
        let vocab = &self.bundle.verified.bundle().vocabulary;
        let missing: Vec<&str> = self
            .values
            .iter()
            .zip(&vocab.attributes)
            .filter(|(v, _)| v.is_none())
            .map(|(_, a)| a.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(PolicyError::Transition(format!(
                "missing values for {}",
                missing.join(", ")
            )));
        }
        Ok(Transition {
            tag: self.bundle.tag,
            values: self
                .values
                .into_iter()
                .map(|v| v.unwrap_or_default())
                .collect(),
        })
    }
}

/// The attribute values of one candidate generation step, complete and in range.
#[derive(Debug, Clone)]
pub struct Transition {
    tag: [u8; 32],
    values: Vec<i64>,
}

impl Transition {
    /// Changes one attribute in place (for evaluating many steps without rebuilding).
    pub fn update(
        &mut self,
        bundle: &AdmittedBundle,
        name: &str,
        value: &str,
    ) -> Result<(), PolicyError> {
        let vocab = &bundle.verified.bundle().vocabulary;
        let idx = vocab
            .lookup(name)
            .ok_or_else(|| PolicyError::Transition(format!("unknown attribute `{name}`")))?;
        self.values[idx as usize] = parse_value(vocab.attr(idx), value)?;
        Ok(())
    }

    /// Sets an integer attribute by its index (fast path; range-checked).
    pub fn set_int(
        &mut self,
        bundle: &AdmittedBundle,
        attr_idx: u32,
        value: i64,
    ) -> Result<(), PolicyError> {
        let attr = bundle
            .verified
            .bundle()
            .vocabulary
            .attributes
            .get(attr_idx as usize)
            .ok_or_else(|| PolicyError::Transition(format!("no attribute #{attr_idx}")))?;
        match attr.ty {
            AttrType::Int { lo, hi } if (lo..=hi).contains(&value) => {
                self.values[attr_idx as usize] = value;
                Ok(())
            }
            _ => Err(PolicyError::Transition(format!(
                "`{}`: {value} is not a value of this attribute",
                attr.name
            ))),
        }
    }
}

/// The predicate ids a verdict names: the first [`LISTED_VIOLATIONS`] in evaluation order, plus
/// the total count. Borrowed from the bundle; no allocation.
#[derive(Debug, Clone, Copy)]
pub struct Violations<'b> {
    ids: &'b [String],
    listed: [u32; LISTED_VIOLATIONS],
    n_listed: u8,
    total: u32,
}

impl<'b> Violations<'b> {
    fn new(ids: &'b [String]) -> Violations<'b> {
        Violations {
            ids,
            listed: [0; LISTED_VIOLATIONS],
            n_listed: 0,
            total: 0,
        }
    }

    fn push(&mut self, pred: u32) {
        if (self.n_listed as usize) < LISTED_VIOLATIONS {
            self.listed[self.n_listed as usize] = pred;
            self.n_listed += 1;
        }
        self.total += 1;
    }

    /// The listed predicate ids.
    pub fn ids(&self) -> impl Iterator<Item = &'b str> + '_ {
        self.listed[..self.n_listed as usize]
            .iter()
            .map(move |idx| self.ids[*idx as usize].as_str())
    }

    /// How many predicates were violated (may exceed the listed ids).
    pub fn total(&self) -> usize {
        self.total as usize
    }
}

/// The judgement on one transition.
#[derive(Debug, Clone, Copy)]
pub enum Verdict<'b> {
    Admit,
    /// Strict predicates were violated. An empty list means the transition was built for another
    /// bundle: the evaluator fails closed.
    Reject(Violations<'b>),
    /// Only advisory predicates were violated: route to sub-deliberation.
    Decompose(Violations<'b>),
}

impl Verdict<'_> {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Admit => "admit",
            Verdict::Reject(_) => "reject",
            Verdict::Decompose(_) => "decompose",
        }
    }

    /// The predicate ids involved (empty for admit).
    pub fn ids(&self) -> Vec<String> {
        match self {
            Verdict::Admit => Vec::new(),
            Verdict::Reject(v) | Verdict::Decompose(v) => v.ids().map(str::to_string).collect(),
        }
    }
}

/// Judges a transition against an admitted bundle. Allocation-free.
pub fn evaluate<'b>(bundle: &'b AdmittedBundle, transition: &Transition) -> Verdict<'b> {
    let mut strict = Violations::new(&bundle.ids);
    if transition.tag != bundle.tag
        || transition.values.len() != bundle.verified.bundle().vocabulary.len()
    {
        return Verdict::Reject(strict);
    }
    let mut advisory = Violations::new(&bundle.ids);
    let values = transition.values.as_slice();
    for (position, &pred_idx) in bundle.order.iter().enumerate() {
        if position == bundle.n_structural && strict.total > 0 {
            // Structural violations are decided before anything else is looked at.
            return Verdict::Reject(strict);
        }
        let pred = bundle.predicates[pred_idx as usize];
        if pred.when != ALWAYS && !bundle.eval_node(pred.when, values) {
            continue;
        }
        if !bundle.eval_node(pred.require, values) {
            if pred.strict {
                strict.push(pred_idx);
            } else {
                advisory.push(pred_idx);
            }
        }
    }
    if strict.total > 0 {
        Verdict::Reject(strict)
    } else if advisory.total > 0 {
        Verdict::Decompose(advisory)
    } else {
        Verdict::Admit
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use warden_keys::{Role, SigningKey};

    use super::*;
    use crate::signing::admit;
    use crate::{prove, Bound, Bundle};

    const TEXT: &str = r#"
[bundle]
name = "support-assistant"
version = 1

[vocabulary]
"caller.tier"    = { enum = ["anonymous", "free", "verified", "internal"], context = true }
"request.domain" = { enum = ["general", "medical", "legal"], context = true }
"output.tokens"  = { int = [0, 8192] }
"output.classes" = { set = ["pii", "medical-advice", "violence"] }

[[predicate]]
id = "safety.no-pii"
category = "safety"
require = "not (output.classes contains 'pii')"

[[predicate]]
id = "domain.medical-needs-verified"
category = "domain"
weight = "advisory"
when = "request.domain == 'medical'"
require = "caller.tier in ['verified', 'internal'] or output.tokens <= 64"

[[predicate]]
id = "structural.max-length"
category = "structural"
require = "output.tokens <= 1024"
"#;

    fn loaded() -> (AdmittedBundle, Vec<u8>, TrustStore) {
        let bundle = Bundle::parse(TEXT, "b.toml").unwrap();
        let proof = prove(&bundle, &Bound::default()).unwrap();
        let key = SigningKey::from_seed(Role::PolicyAuthority, "policy", &[3; 32]).unwrap();
        let signed = admit(&bundle, &proof, &key, SystemTime::UNIX_EPOCH, None).unwrap();
        let mut trust = TrustStore::new();
        trust.add(Role::PolicyAuthority, key.public().clone());
        let bytes = signed.to_bytes().to_vec();
        (
            AdmittedBundle::load(&bytes, "b.json", &trust).unwrap(),
            bytes,
            trust,
        )
    }

    fn judge(
        bundle: &AdmittedBundle,
        tier: &str,
        domain: &str,
        tokens: &str,
        classes: &str,
    ) -> (String, Vec<String>) {
        let t = bundle
            .transition()
            .set("caller.tier", tier)
            .and_then(|b| b.set("request.domain", domain))
            .and_then(|b| b.set("output.tokens", tokens))
            .and_then(|b| b.set("output.classes", classes))
            .and_then(|b| b.build())
            .unwrap();
        let verdict = evaluate(bundle, &t);
        (verdict.as_str().to_string(), verdict.ids())
    }

    #[test]
    fn verdicts_name_the_predicates_involved() {
        let (b, _, _) = loaded();
        assert_eq!(
            judge(&b, "free", "general", "500", ""),
            ("admit".into(), vec![])
        );
        assert_eq!(
            judge(&b, "free", "general", "500", "pii"),
            ("reject".into(), vec!["safety.no-pii".to_string()])
        );
        assert_eq!(
            judge(&b, "free", "medical", "500", ""),
            (
                "decompose".into(),
                vec!["domain.medical-needs-verified".to_string()]
            )
        );
        assert_eq!(
            judge(&b, "verified", "medical", "500", ""),
            ("admit".into(), vec![])
        );
        assert_eq!(
            judge(&b, "free", "medical", "64", "medical-advice"),
            ("admit".into(), vec![])
        );
    }

    #[test]
    fn transitions_can_be_updated_in_place() {
        let (b, _, _) = loaded();
        let mut t = b
            .transition()
            .set("caller.tier", "free")
            .and_then(|t| t.set("request.domain", "general"))
            .and_then(|t| t.set("output.tokens", "10"))
            .and_then(|t| t.set("output.classes", ""))
            .and_then(|t| t.build())
            .unwrap();
        assert_eq!(evaluate(&b, &t).as_str(), "admit");
        let tokens = b.attribute_index("output.tokens").unwrap();
        t.set_int(&b, tokens, 4000).unwrap();
        assert_eq!(
            evaluate(&b, &t).ids(),
            vec!["structural.max-length".to_string()]
        );
        assert!(t.set_int(&b, tokens, 9000).is_err());
        t.update(&b, "output.tokens", "20").unwrap();
        t.update(&b, "output.classes", "pii").unwrap();
        assert_eq!(evaluate(&b, &t).ids(), vec!["safety.no-pii".to_string()]);
    }

    #[test]
    fn structural_violations_reject_before_the_rest_is_evaluated() {
        let (b, _, _) = loaded();
        // Too long AND leaking pii AND advisory-violating: only the structural id is reported.
        assert_eq!(
            judge(&b, "free", "medical", "2000", "pii,violence"),
            ("reject".into(), vec!["structural.max-length".to_string()])
        );
    }

    #[test]
    fn a_tampered_bundle_is_refused_at_load() {
        let (_, bytes, trust) = loaded();
        let mut text = String::from_utf8(bytes).unwrap();
        // Swap the signature for another valid-looking one.
        let at = text.find("\"signature\": \"").unwrap() + 14;
        let replacement = if &text[at..at + 1] == "A" { "B" } else { "A" };
        text.replace_range(at..at + 1, replacement);
        let err = AdmittedBundle::load(text.as_bytes(), "b.json", &trust).unwrap_err();
        assert!(err.to_string().contains("signature check failed"), "{err}");
    }

    #[test]
    fn incomplete_or_out_of_range_transitions_are_errors() {
        let (b, _, _) = loaded();
        let err = b
            .transition()
            .set("caller.tier", "free")
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "transition: missing values for output.classes, output.tokens, request.domain"
        );
        let err = b.transition().set("output.tokens", "9000").err().unwrap();
        assert_eq!(
            err.to_string(),
            "transition: `output.tokens`: 9000 is outside the declared range [0, 8192]"
        );
        let err = b.transition().set("caller.tier", "root").err().unwrap();
        assert!(err
            .to_string()
            .contains("'root' is not one of anonymous, free, verified, internal"));
    }

    #[test]
    fn evaluation_agrees_with_the_formula_semantics() {
        let text = crate::generate::consistent_bundle("g", 100, 5);
        let bundle = Bundle::parse(&text, "g.toml").unwrap();
        let proof = prove(&bundle, &Bound::default()).unwrap();
        let key = SigningKey::from_seed(Role::PolicyAuthority, "policy", &[4; 32]).unwrap();
        let signed = admit(&bundle, &proof, &key, SystemTime::UNIX_EPOCH, None).unwrap();
        let mut trust = TrustStore::new();
        trust.add(Role::PolicyAuthority, key.public().clone());
        let admitted = AdmittedBundle::load(signed.to_bytes(), "g.json", &trust).unwrap();
        let mut state = 0x1234_5678u64;
        for _ in 0..300 {
            let mut values = Vec::new();
            for attr in &bundle.vocabulary.attributes {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let r = (state >> 33) as i64;
                values.push(match &attr.ty {
                    AttrType::Enum(v) => r % v.len() as i64,
                    AttrType::Int { lo, hi } => lo + r % (hi - lo + 1),
                    AttrType::Set(e) => r % (1 << e.len()),
                });
            }
            let t = Transition {
                tag: admitted.tag,
                values: values.clone(),
            };
            let violated: Vec<&crate::Predicate> = bundle
                .predicates
                .iter()
                .filter(|p| !p.formula().eval(&values))
                .collect();
            let structural_strict = violated
                .iter()
                .any(|p| p.category == Category::Structural && p.weight == Weight::Strict);
            let any_strict = violated.iter().any(|p| p.weight == Weight::Strict);
            let expected = if any_strict {
                "reject"
            } else if !violated.is_empty() {
                "decompose"
            } else {
                "admit"
            };
            let verdict = evaluate(&admitted, &t);
            assert_eq!(verdict.as_str(), expected);
            if let Verdict::Reject(v) = verdict {
                let expected_total = violated
                    .iter()
                    .filter(|p| {
                        p.weight == Weight::Strict
                            && (!structural_strict || p.category == Category::Structural)
                    })
                    .count();
                assert_eq!(v.total(), expected_total);
            }
        }
    }
}
