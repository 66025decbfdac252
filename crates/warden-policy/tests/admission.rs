//! The admission gate on bundles written for the test: each verdict and each minimal core exactly.

use warden_policy::gate::{Bound, Check, Finding};
use warden_policy::{prove, Bundle};

const VOCAB: &str = r#"
[vocabulary]
"caller.tier"    = { enum = ["anonymous", "free", "verified", "internal"], context = true }
"caller.trust"   = { int = [0, 100], context = true }
"request.domain" = { enum = ["general", "medical", "legal"], context = true }
"output.tokens"  = { int = [0, 8192] }
"output.classes" = { set = ["pii", "medical-advice", "violence"] }
"output.verbatim_run" = { int = [0, 8192] }
"#;

fn bundle(predicates: &[(&str, Option<&str>, &str)]) -> Bundle {
    let mut text = format!("[bundle]\nname = \"test\"\nversion = 1\n{VOCAB}");
    for (id, when, require) in predicates {
        text.push_str(&format!(
            "\n[[predicate]]\nid = \"{id}\"\ncategory = \"task\"\n"
        ));
        if let Some(when) = when {
            text.push_str(&format!("when = \"{when}\"\n"));
        }
        text.push_str(&format!("require = \"{require}\"\n"));
    }
    Bundle::parse(&text, "test.toml").unwrap()
}

/// (check, dead predicate, minimal core, counterexample context)
type Refutation = (Check, Option<String>, Vec<String>, Vec<(String, String)>);

fn refuted(b: &Bundle) -> Refutation {
    let rejection = prove(b, &Bound::default()).unwrap_err();
    match rejection.finding {
        Finding::Refuted {
            predicate,
            core,
            core_minimal,
            counterexample,
        } => {
            assert!(core_minimal, "core should be proven minimal");
            (rejection.check, predicate, core, counterexample)
        }
        Finding::Undecided { detail } => panic!("unexpectedly undecided: {detail}"),
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn global_contradiction_names_exactly_the_two_clashing_predicates() {
    let b = bundle(&[
        ("short", None, "output.tokens <= 100"),
        ("no-pii", None, "not (output.classes contains 'pii')"),
        ("long", None, "output.tokens >= 200"),
        ("bounded-run", None, "output.verbatim_run <= output.tokens"),
    ]);
    let (check, predicate, core, counterexample) = refuted(&b);
    assert_eq!(check, Check::Consistency);
    assert_eq!(predicate, None);
    assert_eq!(core, ids(&["short", "long"]));
    assert!(counterexample.is_empty());
}

#[test]
fn dead_precondition_names_the_predicate_and_what_kills_it() {
    let b = bundle(&[
        ("cap", None, "output.tokens <= 1024"),
        (
            "long-needs-no-run",
            Some("output.tokens > 2000"),
            "output.verbatim_run == 0",
        ),
        (
            "no-violence",
            None,
            "not (output.classes contains 'violence')",
        ),
    ]);
    let (check, predicate, core, _) = refuted(&b);
    assert_eq!(check, Check::LivePreconditions);
    assert_eq!(predicate.as_deref(), Some("long-needs-no-run"));
    assert_eq!(core, ids(&["cap", "long-needs-no-run"]));
}

#[test]
fn stranded_context_gives_the_counterexample_context_and_the_clash() {
    let b = bundle(&[
        (
            "free-is-short",
            Some("caller.tier == 'free'"),
            "output.tokens <= 10",
        ),
        (
            "general-ok",
            Some("request.domain == 'general'"),
            "output.tokens <= 4000",
        ),
        (
            "medical-is-long",
            Some("request.domain == 'medical'"),
            "output.tokens >= 50",
        ),
        ("no-pii", None, "not (output.classes contains 'pii')"),
    ]);
    let (check, predicate, core, counterexample) = refuted(&b);
    assert_eq!(check, Check::NoStrandedContext);
    assert_eq!(predicate, None);
    assert_eq!(core, ids(&["free-is-short", "medical-is-long"]));
    assert_eq!(
        counterexample,
        vec![
            ("caller.tier".to_string(), "free".to_string()),
            ("request.domain".to_string(), "medical".to_string()),
        ]
    );
    // Consistency and live preconditions hold: this bundle fails only the ∀∃ check.
    let text = prove(&b, &Bound::default()).unwrap_err().to_string();
    assert_eq!(
        text,
        "no-stranded-context: context caller.tier = free, request.domain = medical has no output satisfying every predicate (minimal core: `free-is-short`, `medical-is-long`)"
    );
}

#[test]
fn pure_context_restrictions_strand_the_excluded_contexts() {
    let b = bundle(&[
        ("trusted-only", None, "caller.trust >= 30"),
        ("cap", None, "output.tokens <= 10"),
    ]);
    let (check, _, core, counterexample) = refuted(&b);
    assert_eq!(check, Check::NoStrandedContext);
    assert_eq!(core, ids(&["trusted-only"]));
    assert_eq!(counterexample.len(), 1);
    assert_eq!(counterexample[0].0, "caller.trust");
    let trust: i64 = counterexample[0].1.parse().unwrap();
    assert!(
        (0..30).contains(&trust),
        "counterexample trust {trust} must be below 30"
    );
}

#[test]
fn contradiction_through_a_chain_of_preconditions_names_every_link() {
    let b = bundle(&[
        ("a-long", None, "output.tokens >= 1000"),
        ("distractor-1", None, "output.tokens <= 5000"),
        (
            "b-long-means-medical",
            Some("output.tokens >= 1000"),
            "output.classes contains 'medical-advice'",
        ),
        (
            "distractor-2",
            Some("output.classes contains 'pii'"),
            "output.verbatim_run <= 3",
        ),
        (
            "c-medical-means-quoted",
            Some("output.classes contains 'medical-advice'"),
            "output.verbatim_run >= 2 * output.tokens",
        ),
        ("d-run-cap", None, "output.verbatim_run <= 1500"),
        (
            "distractor-3",
            None,
            "output.verbatim_run + output.tokens <= 8192",
        ),
    ]);
    let (check, _, core, _) = refuted(&b);
    assert_eq!(check, Check::Consistency);
    assert_eq!(
        core,
        ids(&[
            "a-long",
            "b-long-means-medical",
            "c-medical-means-quoted",
            "d-run-cap"
        ])
    );
    // Drop the middle link: the rest is consistent, but `c`'s precondition is now dead.
    let b = bundle(&[
        ("a-long", None, "output.tokens >= 1000"),
        (
            "c-medical-means-quoted",
            Some("output.classes contains 'medical-advice'"),
            "output.verbatim_run >= 2 * output.tokens",
        ),
        ("d-run-cap", None, "output.verbatim_run <= 1500"),
    ]);
    let (check, predicate, core, _) = refuted(&b);
    assert_eq!(check, Check::LivePreconditions);
    assert_eq!(predicate.as_deref(), Some("c-medical-means-quoted"));
    assert_eq!(
        core,
        ids(&["a-long", "c-medical-means-quoted", "d-run-cap"])
    );
}

#[test]
fn chain_of_exactly_three_each_pair_consistent() {
    let b = bundle(&[
        ("x", None, "output.tokens >= 1000"),
        ("y", None, "output.verbatim_run >= 2 * output.tokens"),
        ("z", None, "output.verbatim_run <= 1500"),
        ("w", None, "output.verbatim_run <= 8000"),
    ]);
    let (check, _, core, _) = refuted(&b);
    assert_eq!(check, Check::Consistency);
    assert_eq!(core, ids(&["x", "y", "z"]));
    for drop in ["x", "y", "z"] {
        let kept: Vec<_> = [
            ("x", None, "output.tokens >= 1000"),
            ("y", None, "output.verbatim_run >= 2 * output.tokens"),
            ("z", None, "output.verbatim_run <= 1500"),
        ]
        .into_iter()
        .filter(|p| p.0 != drop)
        .collect();
        assert!(
            prove(&bundle(&kept), &Bound::default()).is_ok(),
            "without {drop}"
        );
    }
}

#[test]
fn integer_range_edges_are_exact() {
    // The top of the range is reachable, one past it is not.
    assert!(prove(
        &bundle(&[("top", None, "output.tokens >= 8192")]),
        &Bound::default()
    )
    .is_ok());
    let (check, _, core, _) = refuted(&bundle(&[("over", None, "output.tokens > 8192")]));
    assert_eq!((check, core), (Check::Consistency, ids(&["over"])));
    // The bottom likewise.
    assert!(prove(
        &bundle(&[("zero", None, "output.tokens <= 0")]),
        &Bound::default()
    )
    .is_ok());
    let (_, _, core, _) = refuted(&bundle(&[("under", None, "output.tokens < 0")]));
    assert_eq!(core, ids(&["under"]));
    // Constant multiples: 3x == 7 has no integer solution, 3x == 6 has x = 2.
    let (_, _, core, _) = refuted(&bundle(&[("thirds", None, "3 * output.tokens == 7")]));
    assert_eq!(core, ids(&["thirds"]));
    let proof = prove(
        &bundle(&[("two", None, "output.tokens * 3 == 6")]),
        &Bound::default(),
    )
    .unwrap();
    assert!(proof
        .witness()
        .contains(&("output.tokens".to_string(), serde_json::json!(2))));
    // Sum at both maxima: 8192 + 8192 is reachable only at the corner.
    let proof = prove(
        &bundle(&[(
            "corner",
            None,
            "output.tokens + output.verbatim_run >= 16384",
        )]),
        &Bound::default(),
    )
    .unwrap();
    assert!(proof
        .witness()
        .contains(&("output.tokens".to_string(), serde_json::json!(8192))));
    assert!(proof
        .witness()
        .contains(&("output.verbatim_run".to_string(), serde_json::json!(8192))));
    let (_, _, core, _) = refuted(&bundle(&[(
        "past-corner",
        None,
        "output.tokens + output.verbatim_run > 16384",
    )]));
    assert_eq!(core, ids(&["past-corner"]));
    // Subtraction reaches the negative side exactly.
    assert!(prove(
        &bundle(&[("neg", None, "output.tokens - output.verbatim_run <= -8192")]),
        &Bound::default()
    )
    .is_ok());
    let (_, _, core, _) = refuted(&bundle(&[(
        "too-neg",
        None,
        "output.tokens - output.verbatim_run < -8192",
    )]));
    assert_eq!(core, ids(&["too-neg"]));
}

#[test]
fn negative_ranges_and_context_edges() {
    let text = r#"
[bundle]
name = "neg"
version = 1
[vocabulary]
"request.offset" = { int = [-10, 10], context = true }
"output.shift" = { int = [-5, 5] }
[[predicate]]
id = "cancel"
category = "task"
require = "request.offset + output.shift >= -5 and request.offset + output.shift <= 5"
"#;
    // Every offset in [-10, 10] can be brought into [-5, 5] by a shift in [-5, 5].
    assert!(prove(&Bundle::parse(text, "neg.toml").unwrap(), &Bound::default()).is_ok());
    // Narrow the shift and the extreme offsets are stranded.
    let narrowed = text.replace("[-5, 5] }", "[-4, 4] }");
    let rejection = prove(
        &Bundle::parse(&narrowed, "neg.toml").unwrap(),
        &Bound::default(),
    )
    .unwrap_err();
    assert_eq!(rejection.check, Check::NoStrandedContext);
    let Finding::Refuted {
        counterexample,
        core,
        ..
    } = rejection.finding
    else {
        panic!("expected a refutation")
    };
    assert_eq!(core, ids(&["cancel"]));
    let offset: i64 = counterexample[0].1.parse().unwrap();
    assert!(
        offset == -10 || offset == 10,
        "only ±10 are stranded, got {offset}"
    );
}

#[test]
fn a_zero_budget_is_undecided_never_admitted() {
    let b = bundle(&[
        ("x", None, "output.tokens >= 1000"),
        ("y", None, "output.verbatim_run >= 2 * output.tokens"),
        ("z", None, "output.verbatim_run <= 1500"),
    ]);
    let bound = Bound {
        max_conflicts: 0,
        max_refinements: 10,
    };
    let rejection = prove(&b, &bound).unwrap_err();
    assert!(rejection.is_undecided(), "{rejection}");
    assert_eq!(rejection.bound, bound);
    assert!(rejection
        .to_string()
        .contains("undecided within the bound (0 conflicts, 10 refinement rounds)"));
}

#[test]
fn refinement_budget_bounds_the_forall_exists_check() {
    let b = bundle(&[
        (
            "a",
            Some("caller.trust >= 50"),
            "output.tokens >= caller.trust",
        ),
        (
            "b",
            Some("caller.trust < 50"),
            "output.tokens <= caller.trust",
        ),
    ]);
    assert!(prove(&b, &Bound::default()).is_ok());
    let bound = Bound {
        max_conflicts: 1_000_000,
        max_refinements: 0,
    };
    let rejection = prove(&b, &bound).unwrap_err();
    assert_eq!(rejection.check, Check::NoStrandedContext);
    assert!(rejection.is_undecided());
}

#[test]
fn a_precondition_outside_the_declared_range_is_dead_on_its_own() {
    let b = bundle(&[
        ("cap", None, "output.tokens <= 1024"),
        (
            "never",
            Some("output.tokens > 8192"),
            "output.verbatim_run == 0",
        ),
    ]);
    let (check, predicate, core, _) = refuted(&b);
    assert_eq!(check, Check::LivePreconditions);
    assert_eq!(predicate.as_deref(), Some("never"));
    assert_eq!(core, ids(&["never"]));
    // A precondition that contradicts its own requirement is dead without help from the others.
    let b = bundle(&[(
        "self-defeating",
        Some("output.tokens >= 10"),
        "output.tokens < 5",
    )]);
    let (check, predicate, core, _) = refuted(&b);
    assert_eq!(
        (check, predicate.as_deref()),
        (Check::LivePreconditions, Some("self-defeating"))
    );
    assert_eq!(core, ids(&["self-defeating"]));
}

#[test]
fn enum_and_set_atoms_clash_exactly() {
    let b = bundle(&[
        ("medical-only", None, "request.domain in ['medical']"),
        (
            "no-advice",
            None,
            "not (output.classes contains 'medical-advice')",
        ),
        (
            "advice-when-medical",
            Some("request.domain == 'medical'"),
            "output.classes contains 'medical-advice'",
        ),
    ]);
    let (check, _, core, _) = refuted(&b);
    // The three together are inconsistent; `medical-only` alone also strands other domains,
    // but consistency is checked first.
    assert_eq!(check, Check::Consistency);
    assert_eq!(
        core,
        ids(&["medical-only", "no-advice", "advice-when-medical"])
    );
}
