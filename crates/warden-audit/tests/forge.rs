//! Forged lineages: an honest tiny run, then one record rewritten per test and re-signed with the
//! real training key (with everything after it, new lineage checkpoints and a re-signed
//! manifest), so `lineage verify` passes. The audit must name each broken rule and the record.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use warden_audit::{audit, AuditInputs, Check, Report};
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::RecordDraft;
use warden_store::{Cadence, Lineage, StoreOptions, VerifyOptions};

const DECLARATION: &str = r#"
[corpus]
name = "tiny"
description = "audit fixture"

[policy]
admitted_licenses = ["CC0-1.0", "MIT"]
excluded_classes = []

[[source]]
id = "prose"
path = "prose.txt"
format = "text"
license = "CC0-1.0"
class = "public-domain"
depth = "deep"
provenance = { origin = "test", collected = "2026-11-22", collector = "test", notes = "" }

[[source]]
id = "notes"
path = "notes.txt"
format = "text"
license = "MIT"
class = "notes"
depth = "shallow"
provenance = { origin = "test", collected = "2026-11-22", collector = "test", notes = "" }

[[source]]
id = "heldout"
path = "heldout.txt"
format = "text"
license = "CC0-1.0"
class = "public-domain"
depth = "deep"
held_out = true
provenance = { origin = "test", collected = "2026-11-22", collector = "test", notes = "" }
"#;

/// Six iterations, a checkpoint every three, evaluations every two (authorized at most every
/// two), `embed` frozen, every region bounded, quarantine on failure.
const CONFIG: &str = r#"corpus = "admitted"
seed = 5
steps = 6
batch_size = 4

[model]
layers = 1
width = 16
heads = 2
context = 32

[optimizer]
learning_rate = 0.01

[eval]
every = 2
sources = ["heldout"]
probes = ["loss"]
max_samples = 4

[policy]
version = "train-v1"
failure = "quarantine"
checkpoint_every = 3
lineage = { cadence = "step" }

[policy.eval]
sources = ["heldout"]
probes = ["loss"]
min_interval = 2

[[policy.regions]]
match = "*"
max_norm = 5.0

[[policy.regions]]
match = "embed"
frozen = true
"#;

struct Fixture {
    root: PathBuf,
    trust: TrustStore,
    training: Arc<SigningKey>,
}

fn paragraphs(tag: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{tag} {i}: the miller walked beside the {} river at dawn and {} the gate",
                ["old", "grey", "quiet", "pale"][i % 4],
                ["opened", "closed", "watched"][i % 3]
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The honest run, trained once per test binary.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let src = root.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("prose.txt"), paragraphs("prose", 40)).unwrap();
        std::fs::write(src.join("notes.txt"), paragraphs("note", 30)).unwrap();
        std::fs::write(src.join("heldout.txt"), paragraphs("held", 10)).unwrap();
        std::fs::write(src.join("declaration.toml"), DECLARATION).unwrap();
        let corpus_key = SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[7; 32]).unwrap();
        let training =
            Arc::new(SigningKey::from_seed(Role::TrainingAuthority, "trainer", &[9; 32]).unwrap());
        let mut trust = TrustStore::new();
        trust.add(Role::CorpusAuthority, corpus_key.public().clone());
        trust.add(Role::TrainingAuthority, training.public().clone());
        warden_corpus::admit(
            &src.join("declaration.toml"),
            &root.join("admitted"),
            &corpus_key,
            &warden_corpus::AdmitOptions::default(),
        )
        .unwrap();
        std::fs::write(root.join("config.toml"), CONFIG).unwrap();
        warden_train::run::start(
            &root.join("config.toml"),
            &root.join("run"),
            training.clone(),
            &trust,
            None,
            &mut |_, _| {},
        )
        .unwrap();
        Fixture {
            root,
            trust,
            training,
        }
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A private copy of the honest run.
fn honest_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    copy_dir(&fixture().root.join("run"), &run);
    (dir, run)
}

/// One record as the forger rewrites it.
struct Draft {
    kind: String,
    version: Option<String>,
    payload: Value,
}

/// The forger, who holds the real training key: rewrites the run's lineage with `edit` applied
/// to its records, signing every record again, sealing each with a new lineage checkpoint (the
/// policy's step cadence) and re-signing the manifest over the new lineage, so that
/// `lineage verify` passes. Returns the drafts as written.
fn forge(run: &Path, edit: impl FnOnce(&mut Vec<Draft>)) -> Vec<Draft> {
    let fx = fixture();
    let lineage_dir = run.join("lineage");
    let mut drafts: Vec<Draft> = warden_store::read_all(&lineage_dir)
        .unwrap()
        .into_iter()
        .map(|r| Draft {
            kind: r.record.kind,
            version: r.record.policy_version,
            payload: r.record.payload,
        })
        .collect();
    edit(&mut drafts);
    std::fs::remove_dir_all(&lineage_dir).unwrap();
    let options = StoreOptions::new("warden.local/lineage")
        .with_cadence(Cadence::SignedWindow {
            records: 1 << 20,
            millis: 24 * 3_600_000,
        })
        .with_trust(Arc::new(fx.trust.clone()));
    let lineage = Lineage::create(&lineage_dir, options).unwrap();
    for draft in &mut drafts {
        if draft.kind == "train.complete" {
            draft.payload["manifest_sha256"] = json!(remake_manifest(run, &lineage));
        }
        let mut record = RecordDraft::new(draft.kind.clone(), draft.payload.clone());
        if let Some(version) = &draft.version {
            record = record.with_policy_version(version.clone());
        }
        lineage.append(record, &fx.training).unwrap();
        lineage.checkpoint().unwrap();
    }
    lineage.close().unwrap();
    drop(lineage);
    warden_store::verify(&lineage_dir, &fx.trust, &VerifyOptions::default())
        .expect("the forged lineage verifies: every record is signed by the real key");
    drafts
}

/// Re-signs the manifest over the rewritten lineage (size and root at its latest checkpoint);
/// returns the new manifest's SHA-256.
fn remake_manifest(run: &Path, lineage: &Lineage) -> String {
    let fx = fixture();
    let path = run.join("manifest.intoto.json");
    let envelope =
        warden_attest::Envelope::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut statement =
        warden_attest::verify_envelope(&envelope, &fx.trust, Role::TrainingAuthority)
            .unwrap()
            .statement;
    let (size, root) = lineage.latest_checkpoint().unwrap().unwrap();
    statement.predicate["lineage"]["size"] = json!(size);
    statement.predicate["lineage"]["root"] = json!(hex::encode(root));
    let text = warden_attest::sign_statement(&statement, &fx.training).to_json_pretty();
    std::fs::write(&path, &text).unwrap();
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn run_audit(run: &Path) -> Report {
    audit(
        &AuditInputs {
            run_dir: run.to_path_buf(),
            lineage_dir: None,
        },
        &fixture().trust,
    )
    .unwrap()
}

/// The record index of iteration `n`'s record.
fn seq_of_iteration(drafts: &[Draft], n: u64) -> usize {
    drafts
        .iter()
        .position(|d| d.kind == "train.iteration" && d.payload["iteration"] == n)
        .unwrap()
}

/// Asserts the audit fails and the first finding of `check` names record `seq`.
fn assert_named(report: &Report, check: Check, seq: usize, needle: &str) {
    assert!(!report.passed(), "the forged run must fail the audit");
    let first = report
        .findings_of(check)
        .next()
        .unwrap_or_else(|| panic!("no {check} finding; findings: {:#?}", report.findings));
    assert_eq!(
        first.seq,
        Some(seq as u64),
        "the {check} finding names the wrong record: {first}"
    );
    assert!(
        first.message.contains(needle),
        "the {check} finding does not say {needle:?}: {first}"
    );
    let summary = report.checks.iter().find(|c| c.check == check).unwrap();
    assert!(!summary.passed && summary.first.as_ref() == Some(first));
}

#[test]
fn the_honest_run_passes_every_check_also_after_an_identity_forge() {
    let (_dir, run) = honest_copy();
    let report = run_audit(&run);
    assert!(report.passed(), "findings: {:#?}", report.findings);
    assert_eq!(report.checks.len(), 7);
    for check in &report.checks {
        assert!(check.examined > 0, "{} examined nothing", check.check);
    }
    // The forging helper itself introduces nothing: every violation below is the edit's.
    forge(&run, |_| {});
    let report = run_audit(&run);
    assert!(report.passed(), "findings: {:#?}", report.findings);
    // The report saw the whole run.
    assert_eq!(report.timeline.iterations.len(), 6);
    assert!(report.timeline.classes.contains_key("notes"));
}

#[test]
fn a_gradient_above_its_bound_marked_admit_is_named() {
    let (_dir, run) = honest_copy();
    let mut at = 0;
    forge(&run, |drafts| {
        let (seq, k) = drafts
            .iter()
            .enumerate()
            .find_map(|(seq, d)| {
                let regions = d.payload["regions"].as_array()?;
                let k = regions.iter().position(|r| r["verdict"] == "admit")?;
                Some((seq, k))
            })
            .unwrap();
        drafts[seq].payload["regions"][k]["grad_norm"] = json!(9.5);
        at = seq;
    });
    let report = run_audit(&run);
    assert_named(&report, Check::Gradients, at, "mandates clip");
}

#[test]
fn a_frozen_region_updated_is_named() {
    let (_dir, run) = honest_copy();
    let mut at = 0;
    forge(&run, |drafts| {
        let (seq, k) = drafts
            .iter()
            .enumerate()
            .find_map(|(seq, d)| {
                let regions = d.payload["regions"].as_array()?;
                let k = regions
                    .iter()
                    .position(|r| r["region"] == "embed" && r["verdict"] == "reject")?;
                Some((seq, k))
            })
            .unwrap();
        let region = &mut drafts[seq].payload["regions"][k];
        region["verdict"] = json!("admit");
        region["scale"] = json!(1.0);
        if let Some(map) = region.as_object_mut() {
            map.remove("reason");
        }
        at = seq;
    });
    let report = run_audit(&run);
    assert_named(&report, Check::Gradients, at, "frozen");
}

#[test]
fn a_sample_not_in_the_declaration_is_named() {
    let (_dir, run) = honest_copy();
    let mut at = 0;
    forge(&run, |drafts| {
        at = seq_of_iteration(drafts, 2);
        let batch = &mut drafts[at].payload["batch"];
        let samples = batch["samples"].as_array_mut().unwrap();
        let i = samples
            .iter()
            .position(|s| s["status"] == "admitted")
            .unwrap();
        samples[i]["hash"] = json!(hex::encode(Sha256::digest(b"never declared")));
        // A careful forger also fixes the batch root.
        let leaves: Vec<_> = samples
            .iter()
            .map(|s| {
                let hash: [u8; 32] = hex::decode(s["hash"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap();
                warden_merkle::leaf_hash(&hash)
            })
            .collect();
        batch["merkle_root"] = json!(hex::encode(warden_merkle::root(&leaves)));
    });
    let report = run_audit(&run);
    assert_named(&report, Check::Data, at, "not in the signed sample index");
}

#[test]
fn a_shallow_sample_routed_into_a_deep_region_is_named() {
    let (_dir, run) = honest_copy();
    let mut at = 0;
    forge(&run, |drafts| {
        let (seq, i) = drafts
            .iter()
            .enumerate()
            .find_map(|(seq, d)| {
                let samples = d.payload["batch"]["samples"].as_array()?;
                let i = samples.iter().position(|s| s["depth"] == "shallow")?;
                Some((seq, i))
            })
            .expect("the honest run trains some shallow sample");
        let payload = &mut drafts[seq].payload;
        payload["batch"]["samples"][i]["depth"] = json!("deep");
        for group in payload["groups"].as_array_mut().unwrap() {
            let n = group["samples"].as_u64().unwrap();
            match group["depth"].as_str() {
                Some("deep") => group["samples"] = json!(n + 1),
                Some("shallow") => group["samples"] = json!(n.saturating_sub(1)),
                _ => {}
            }
        }
        at = seq;
    });
    let report = run_audit(&run);
    assert_named(&report, Check::Gradients, at, "routed at depth \"deep\"");
}

#[test]
fn an_unauthorized_evaluation_is_named() {
    let (_dir, run) = honest_copy();
    let mut at = 0;
    forge(&run, |drafts| {
        let ran = drafts[seq_of_iteration(drafts, 2)].payload["evaluation"].clone();
        assert!(ran["sources"].is_object(), "the honest run evaluates at 2");
        at = seq_of_iteration(drafts, 3);
        drafts[at].payload["evaluation"] = ran;
    });
    let report = run_audit(&run);
    assert_named(&report, Check::Evaluation, at, "not authorized");
}

#[test]
fn a_quarantine_that_does_not_roll_back_is_named() {
    let (_dir, run) = honest_copy();
    let mut at = 0;
    forge(&run, |drafts| {
        // Iteration 4 is the latest admissible checkpoint (retain_every = 4 by default).
        at = seq_of_iteration(drafts, 5);
        drafts[at].kind = "train.failure".into();
        drafts[at].payload = json!({
            "iteration": 5,
            "gate": "gradient",
            "detail": "non-finite gradient in region head",
            "sample": null,
            "mode": "quarantine",
            "action": "quarantine",
            "rolled_back_to": 4,
            // Not the digest of checkpoint 4: the parameters stayed where a faulty update left them.
            "param_digest": hex::encode(Sha256::digest(b"not rolled back")),
        });
    });
    let report = run_audit(&run);
    assert_named(&report, Check::Failures, at, "does not roll back");
}

#[test]
fn a_parameter_digest_that_does_not_chain_is_named() {
    let (_dir, run) = honest_copy();
    let mut at = 0;
    forge(&run, |drafts| {
        at = seq_of_iteration(drafts, 3);
        drafts[at].payload["param_digest"] = json!(hex::encode(Sha256::digest(b"invented")));
    });
    let report = run_audit(&run);
    assert_named(&report, Check::Outcome, at, "does not chain");
}

#[test]
fn a_model_file_that_differs_from_the_manifest_is_named() {
    let (_dir, run) = honest_copy();
    let path = run.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let records = warden_store::read_all(&run.join("lineage")).unwrap();
    let complete = records
        .iter()
        .position(|r| r.record.kind == "train.complete")
        .unwrap();
    let report = run_audit(&run);
    assert_named(&report, Check::Outcome, complete, "model.safetensors");
    assert!(report
        .findings_of(Check::Outcome)
        .any(|f| f.field == "manifest.subject"));
}

#[test]
fn a_skipped_iteration_is_named() {
    let (_dir, run) = honest_copy();
    let mut at = 0;
    forge(&run, |drafts| {
        at = seq_of_iteration(drafts, 4);
        drafts.remove(at);
    });
    let report = run_audit(&run);
    // Iteration 5's record now sits where iteration 4's was.
    assert_named(&report, Check::Outcome, at, "iteration 4 has no record");
}

#[test]
fn a_changed_policy_without_a_transition_is_named() {
    let (_dir, run) = honest_copy();
    let mut at = 0;
    forge(&run, |drafts| {
        at = seq_of_iteration(drafts, 2);
        drafts[at].version = Some("train-v2".into());
    });
    let report = run_audit(&run);
    assert_named(&report, Check::Policy, at, "no train.transition");
}

#[test]
fn inclusion_proofs_verify_for_trained_samples_and_expose_an_undeclared_one() {
    let (_dir, run) = honest_copy();
    let inputs = AuditInputs {
        run_dir: run.clone(),
        lineage_dir: None,
    };
    let proofs = warden_audit::proofs::prove_trained_samples(&inputs, &fixture().trust, 3).unwrap();
    assert_eq!(proofs.len(), 3);
    for p in &proofs {
        assert_eq!(p.problem, None, "{p:?}");
        assert!(matches!(
            p.proof,
            Some(warden_corpus::prove::Proof::Inclusion { .. })
        ));
    }
    // The same lineage root picks the same samples.
    let again = warden_audit::proofs::prove_trained_samples(&inputs, &fixture().trust, 3).unwrap();
    assert_eq!(proofs, again);

    // A printed proof is checked against the signed roots, never against the roots it carries:
    // each tampering below is refused.
    let corpus =
        warden_corpus::AdmittedCorpus::load(&fixture().root.join("admitted"), &fixture().trust)
            .unwrap();
    let honest = proofs[0].proof.clone().unwrap();
    warden_audit::proofs::verify_sample_proof(&corpus, &honest).unwrap();
    let other_sample = proofs
        .iter()
        .map(|p| p.hash.clone())
        .find(|h| *h != proofs[0].hash)
        .expect("two distinct trained samples");
    let flip = |hex_text: &mut String| {
        let mut bytes = hex::decode(&*hex_text).unwrap();
        bytes[0] ^= 1;
        *hex_text = hex::encode(bytes);
    };
    type Tamper = Box<dyn Fn(&mut warden_corpus::prove::Proof)>;
    let tamperings: Vec<(&str, Tamper)> = vec![
        (
            "one bit of the corpus audit path",
            Box::new(move |p| {
                if let warden_corpus::prove::Proof::Inclusion { leaf, .. } = p {
                    flip(&mut leaf.path[0]);
                }
            }),
        ),
        (
            "another leaf index",
            Box::new(|p| {
                if let warden_corpus::prove::Proof::Inclusion { leaf, .. } = p {
                    leaf.index ^= 1;
                }
            }),
        ),
        (
            "another sample with the same paths",
            Box::new(move |p| {
                if let warden_corpus::prove::Proof::Inclusion { sample, leaf, .. } = p {
                    sample.clone_from(&other_sample);
                    leaf.hash.clone_from(&other_sample);
                }
            }),
        ),
        (
            "a source root of the prover's choosing",
            Box::new(move |p| {
                if let warden_corpus::prove::Proof::Inclusion { source, .. } = p {
                    flip(&mut source.source_root);
                }
            }),
        ),
        (
            "one bit of the source audit path",
            Box::new(move |p| {
                if let warden_corpus::prove::Proof::Inclusion { source, .. } = p {
                    flip(&mut source.path[0]);
                }
            }),
        ),
        (
            "a source the declaration does not hold",
            Box::new(|p| {
                if let warden_corpus::prove::Proof::Inclusion { source, .. } = p {
                    source.source = "elsewhere".into();
                }
            }),
        ),
    ];
    for (what, tamper) in &tamperings {
        let mut proof = honest.clone();
        tamper(&mut proof);
        assert_ne!(proof, honest, "{what}: the tampering changed nothing");
        let refused = warden_audit::proofs::verify_sample_proof(&corpus, &proof);
        assert!(refused.is_err(), "{what}: a tampered proof verified");
    }

    let mut at = 0;
    forge(&run, |drafts| {
        at = seq_of_iteration(drafts, 1);
        let samples = drafts[at].payload["batch"]["samples"]
            .as_array_mut()
            .unwrap();
        let i = samples
            .iter()
            .position(|s| s["status"] == "admitted")
            .unwrap();
        samples[i]["hash"] = json!(hex::encode(Sha256::digest(b"never declared")));
    });
    // Asking for every trained sample proves the forged one absent.
    let proofs =
        warden_audit::proofs::prove_trained_samples(&inputs, &fixture().trust, 1000).unwrap();
    let bad: Vec<_> = proofs.iter().filter(|p| p.problem.is_some()).collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].seq, at as u64);
    let mut report = run_audit(&run);
    report.attach_inclusion_proofs(proofs);
    assert!(report
        .findings_of(Check::Data)
        .any(|f| f.message.contains("proves it absent") && f.seq == Some(at as u64)));
}
