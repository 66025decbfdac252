//! Property tests: the solver's verdict, cores and counterexamples agree with brute-force
//! enumeration of every assignment on small random bundles.

use proptest::prelude::*;
use warden_policy::gate::{Bound, Check, Finding};
use warden_policy::types::{AttrType, Formula};
use warden_policy::{prove, Bundle};

const VOCAB: &str = r#"
[vocabulary]
"ctx.c" = { enum = ["a", "b", "c"], context = true }
"ctx.k" = { int = [0, 3], context = true }
"out.x" = { int = [-2, 3] }
"out.y" = { int = [0, 2] }
"out.s" = { set = ["p", "q"] }
"out.e" = { enum = ["u", "v"] }
"#;

fn atom() -> impl Strategy<Value = String> {
    let int_term = prop_oneof![
        Just("out.x".to_string()),
        Just("out.y".to_string()),
        Just("ctx.k".to_string()),
        Just("2 * out.x".to_string()),
        Just("out.x + out.y".to_string()),
        Just("out.y - ctx.k".to_string()),
        Just("out.x - 3 * out.y".to_string()),
        Just("ctx.k + out.x".to_string()),
    ];
    let cmp = prop_oneof![
        Just("<"),
        Just("<="),
        Just("=="),
        Just("!="),
        Just(">="),
        Just(">")
    ];
    prop_oneof![
        (int_term, cmp, -4i64..7).prop_map(|(t, op, n)| format!("{t} {op} {n}")),
        prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(|v| format!("ctx.c == '{v}'")),
        Just("ctx.c in ['a', 'b']".to_string()),
        prop_oneof![Just("u"), Just("v")].prop_map(|v| format!("out.e != '{v}'")),
        prop_oneof![Just("p"), Just("q")].prop_map(|v| format!("out.s contains '{v}'")),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    atom().prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| format!("not ({e})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) => ({b})")),
        ]
    })
}

fn bundle_text() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::option::weighted(0.4, expr()), expr()), 1..5).prop_map(|preds| {
        let mut text = format!("[bundle]\nname = \"p\"\nversion = 1\n{VOCAB}");
        for (idx, (when, require)) in preds.into_iter().enumerate() {
            text.push_str(&format!(
                "\n[[predicate]]\nid = \"p{idx}\"\ncategory = \"task\"\n"
            ));
            if let Some(when) = when {
                text.push_str(&format!("when = \"{when}\"\n"));
            }
            text.push_str(&format!("require = \"{require}\"\n"));
        }
        text
    })
}

/// Every assignment, in the evaluator's value encoding, indexed like the vocabulary.
fn assignments(bundle: &Bundle) -> Vec<Vec<i64>> {
    let mut all = vec![Vec::new()];
    for attr in &bundle.vocabulary.attributes {
        let domain: Vec<i64> = match &attr.ty {
            AttrType::Enum(v) => (0..v.len() as i64).collect(),
            AttrType::Int { lo, hi } => (*lo..=*hi).collect(),
            AttrType::Set(e) => (0..1i64 << e.len()).collect(),
        };
        all = all
            .into_iter()
            .flat_map(|prefix| {
                domain.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push(*v);
                    next
                })
            })
            .collect();
    }
    all
}

struct Oracle {
    formulas: Vec<Formula>,
    all: Vec<Vec<i64>>,
    context: Vec<usize>,
}

impl Oracle {
    fn sat(&self, preds: &[usize], extra: impl Fn(&[i64]) -> bool) -> bool {
        self.all
            .iter()
            .any(|v| extra(v) && preds.iter().all(|p| self.formulas[*p].eval(v)))
    }

    fn same_context(&self, a: &[i64], b: &[i64]) -> bool {
        self.context.iter().all(|i| a[*i] == b[*i])
    }

    /// The first failing check by enumeration, if any.
    fn first_failure(&self, bundle: &Bundle) -> Option<Check> {
        let every: Vec<usize> = (0..self.formulas.len()).collect();
        if !self.sat(&every, |_| true) {
            return Some(Check::Consistency);
        }
        for pred in bundle.predicates.iter().filter(|p| p.has_when()) {
            if !self.sat(&every, |v| pred.when.eval(v)) {
                return Some(Check::LivePreconditions);
            }
        }
        for ctx in &self.all {
            if !self.sat(&every, |v| self.same_context(v, ctx)) {
                return Some(Check::NoStrandedContext);
            }
        }
        None
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn solver_agrees_with_enumeration(text in bundle_text()) {
        let bundle = Bundle::parse(&text, "random.toml").unwrap();
        let oracle = Oracle {
            formulas: bundle.predicates.iter().map(|p| p.formula()).collect(),
            all: assignments(&bundle),
            context: bundle.vocabulary.attributes.iter().enumerate().filter(|(_, a)| a.context).map(|(i, _)| i).collect(),
        };
        let expected = oracle.first_failure(&bundle);
        let outcome = prove(&bundle, &Bound::default());
        match (&outcome, expected) {
            (Ok(proof), None) => {
                prop_assert_eq!(proof.witness().len(), bundle.vocabulary.len());
            }
            (Err(rejection), Some(check)) => {
                prop_assert_eq!(rejection.check, check, "{}", rejection);
                let Finding::Refuted { predicate, core, core_minimal, counterexample } = &rejection.finding else {
                    return Err(TestCaseError::fail(format!("undecided on a tiny bundle: {rejection}")));
                };
                prop_assert!(core_minimal);
                let idx: Vec<usize> = core.iter().map(|id| bundle.predicate_index(id).unwrap()).collect();
                // The extra condition of the check: a precondition, or the counterexample context.
                let when = predicate.as_ref().map(|p| bundle.predicates[bundle.predicate_index(p).unwrap()].when.clone());
                let ctx: Vec<(usize, i64)> = counterexample.iter().map(|(name, value)| {
                    let attr_idx = bundle.vocabulary.lookup(name).unwrap() as usize;
                    let attr = &bundle.vocabulary.attributes[attr_idx];
                    let v = match &attr.ty {
                        AttrType::Enum(values) => values.iter().position(|x| x == value).unwrap() as i64,
                        _ => value.parse().unwrap(),
                    };
                    (attr_idx, v)
                }).collect();
                let extra = |v: &[i64]| {
                    when.as_ref().is_none_or(|w| w.eval(v)) && ctx.iter().all(|(i, x)| v[*i] == *x)
                };
                // The core is unsatisfiable under the check's condition ...
                prop_assert!(!oracle.sat(&idx, extra), "core {:?} is satisfiable", core);
                // ... and minimal: dropping any member (other than the dead predicate) makes it satisfiable.
                for drop in &idx {
                    if predicate.as_deref() == Some(bundle.predicates[*drop].id.as_str()) {
                        continue;
                    }
                    let rest: Vec<usize> = idx.iter().copied().filter(|p| p != drop).collect();
                    prop_assert!(oracle.sat(&rest, extra), "core {:?} is not minimal: {} is redundant", core, bundle.predicates[*drop].id);
                }
            }
            (outcome, expected) => {
                return Err(TestCaseError::fail(format!(
                    "solver says {:?}, enumeration says {:?}",
                    outcome.as_ref().map(|_| "admitted").map_err(|r| r.to_string()),
                    expected
                )));
            }
        }
    }

    #[test]
    fn canonical_text_round_trips(text in bundle_text()) {
        let bundle = Bundle::parse(&text, "random.toml").unwrap();
        let canonical = bundle.canonical_text();
        let again = Bundle::parse(&canonical, "canonical.toml").unwrap();
        prop_assert_eq!(again.canonical_text(), canonical);
        let oracle_a: Vec<Formula> = bundle.predicates.iter().map(|p| p.formula()).collect();
        let oracle_b: Vec<Formula> = again.predicates.iter().map(|p| p.formula()).collect();
        prop_assert_eq!(oracle_a, oracle_b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Hostile expression text never panics the parser or the type checker.
    #[test]
    fn arbitrary_expressions_never_panic(expr in "\\PC{0,80}", glued in "[a-z.' ()<=>!+*0-9\\[\\],-]{0,60}") {
        for text in [expr.as_str(), glued.as_str()] {
            let _ = warden_policy::syntax::parse(text);
            let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
            let bundle = format!("[bundle]\nname = \"p\"\nversion = 1\n{VOCAB}\n[[predicate]]\nid = \"x\"\ncategory = \"task\"\nrequire = \"{escaped}\"\n");
            if let Err(err) = Bundle::parse(&bundle, "fuzz.toml") {
                prop_assert!(err.to_string().starts_with("fuzz.toml:"), "{}", err);
            }
        }
    }

    /// Arbitrary bytes are never accepted as a signed bundle, and never panic the loader.
    #[test]
    fn arbitrary_bytes_are_not_a_signed_bundle(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let trust = warden_keys::TrustStore::new();
        prop_assert!(warden_policy::AdmittedBundle::load(&bytes, "fuzz.json", &trust).is_err());
    }
}
