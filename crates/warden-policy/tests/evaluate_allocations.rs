//! `evaluate` does not allocate (ARCHITECTURE.md, warden-policy invariants): every verdict of
//! a loaded bundle — admit, decompose, reject on a structural or a safety predicate, and a
//! transition built for another bundle — is reached with zero heap allocations, counted by a
//! counting global allocator installed for this test binary only.

use std::time::SystemTime;

use warden_keys::{Role, SigningKey, TrustStore};
use warden_policy::{admit, evaluate, prove, AdmittedBundle, Bound, Bundle};

const TEXT: &str = r#"
[bundle]
name = "support-assistant"
version = 1

[vocabulary]
"caller.tier"    = { enum = ["anonymous", "free", "verified", "internal"], context = true }
"caller.trust"   = { int = [0, 100], context = true }
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
id = "budget.by-trust"
category = "domain"
require = "output.tokens <= 10 * caller.trust + 100"

[[predicate]]
id = "structural.max-length"
category = "structural"
require = "output.tokens <= 1024"
"#;

fn load(text: &str) -> AdmittedBundle {
    let bundle = Bundle::parse(text, "b.toml").unwrap();
    let proof = prove(&bundle, &Bound::default()).unwrap();
    let key = SigningKey::from_seed(Role::PolicyAuthority, "policy", &[3; 32]).unwrap();
    let signed = admit(&bundle, &proof, &key, SystemTime::UNIX_EPOCH, None).unwrap();
    let mut trust = TrustStore::new();
    trust.add(Role::PolicyAuthority, key.public().clone());
    AdmittedBundle::load(signed.to_bytes(), "b.json", &trust).unwrap()
}

#[test]
fn evaluate_makes_no_heap_allocation_for_any_verdict() {
    let bundle = load(TEXT);
    let other = load(&TEXT.replace("version = 1", "version = 2"));
    let cases = [
        ("verified", "90", "medical", "500", "", "admit"),
        ("free", "90", "medical", "500", "", "decompose"),
        ("free", "90", "general", "500", "pii", "reject"),
        ("anonymous", "0", "general", "5000", "", "reject"),
        ("free", "1", "general", "900", "violence", "reject"),
    ];
    for (tier, trust, domain, tokens, classes, expected) in cases {
        let transition = bundle
            .transition()
            .set("caller.tier", tier)
            .and_then(|b| b.set("caller.trust", trust))
            .and_then(|b| b.set("request.domain", domain))
            .and_then(|b| b.set("output.tokens", tokens))
            .and_then(|b| b.set("output.classes", classes))
            .and_then(|b| b.build())
            .unwrap();
        // The counter proves it can see allocations at all (so a zero below means something).
        let control = allocation_counter::measure(|| {
            std::hint::black_box(vec![0u8; 16]);
        });
        assert!(control.count_total >= 1, "the counter sees allocations");
        let mut verdict_name = "";
        let counted = allocation_counter::measure(|| {
            let verdict = evaluate(&bundle, std::hint::black_box(&transition));
            verdict_name = verdict.as_str();
            std::hint::black_box(&verdict);
        });
        assert_eq!(
            verdict_name, expected,
            "{tier} {trust} {domain} {tokens} {classes}"
        );
        assert_eq!(
            counted.count_total, 0,
            "evaluate allocated {} times ({} bytes) for {tier}/{domain}/{tokens}/{classes}",
            counted.count_total, counted.bytes_total
        );
        // A transition built for another bundle fails closed, also without allocating.
        let counted = allocation_counter::measure(|| {
            let verdict = evaluate(&other, std::hint::black_box(&transition));
            assert_eq!(verdict.as_str(), "reject");
        });
        assert_eq!(counted.count_total, 0);
    }
}
