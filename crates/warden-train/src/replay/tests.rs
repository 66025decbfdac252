//! A tiny real run recorded into a real lineage, then replayed: honest, a retained checkpoint
//! altered by one bit, a recorded parameter digest altered by one bit.

use std::path::Path;

use sha2::Digest as _;
use warden_keys::{Role, SigningKey};
use warden_store::{Cadence, Lineage, StoreOptions};

use super::*;
use crate::data::{MemoryCorpus, SourceInfo};
use crate::model::ModelConfig;
use crate::optim::AdamWConfig;
use crate::run::{train_into_lineage_with_canaries, Authority};
use crate::trainer::RETAINED_DIR;

const STEPS: u64 = 12;

fn corpus() -> Arc<dyn AdmissionIndex> {
    let source = |id: &str, class: &str, depth: &str, held_out: bool| SourceInfo {
        id: id.into(),
        class: class.into(),
        depth: depth.into(),
        license: "MIT".into(),
        held_out,
        admitted: true,
    };
    let lines = |prefix: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                format!(
                    "{prefix} sample {i}: the river {} runs past {} hills",
                    i * 7 % 13,
                    i % 5
                )
            })
            .collect()
    };
    Arc::new(MemoryCorpus::admit(vec![
        (source("web", "web", "deep", false), lines("web", 30)),
        (
            source("code", "code", "shallow", false),
            lines("fn code", 30),
        ),
        (source("heldout", "web", "deep", true), lines("held", 8)),
    ]))
}

/// checkpoint_every = 6 and retain_every = 4: digests at 4, 6, 8, 12; retained 0, 4, 8, 12.
const POLICY: &str = r#"
version = "r1"
failure = "halt"
checkpoint_every = 6
retain_every = 4
[[regions]]
match = "*"
max_norm = 5.0
[depths.shallow]
regions = ["head", "final_norm"]
[memorization]
ngram = 12
window = 64
threshold = 0.0
action = "reject"
"#;

fn config() -> TrainConfig {
    TrainConfig {
        corpus: "unused".into(),
        seed: 11,
        steps: STEPS,
        batch_size: 4,
        model: ModelConfig {
            layers: 1,
            width: 16,
            heads: 2,
            context: 16,
        },
        optimizer: AdamWConfig {
            learning_rate: 1e-2,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.01,
        },
        eval: None,
        lineage: Default::default(),
        policy: TrainingPolicy::parse(POLICY, "test policy").unwrap(),
    }
}

/// Trains the tiny run into `dir/run` with its lineage in `dir/lineage`; returns the records
/// and the lineage root.
fn recorded_run(dir: &Path) -> (Vec<SignedRecord>, [u8; 32]) {
    let key = Arc::new(SigningKey::generate(Role::TrainingAuthority, "replay-test").unwrap());
    let mut trust = TrustStore::new();
    trust.add(Role::TrainingAuthority, key.public().clone());
    let lineage = Lineage::create(
        &dir.join("lineage"),
        StoreOptions::new("replay-test").with_cadence(Cadence::Window {
            records: 1 << 20,
            millis: 3_600_000,
        }),
    )
    .unwrap();
    train_into_lineage_with_canaries(
        config(),
        corpus(),
        None,
        &dir.join("run"),
        &lineage,
        Authority { key, trust: &trust },
        &mut |_, _| {},
    )
    .unwrap();
    let records = lineage.read_range(0..lineage.len()).unwrap();
    let (_, root) = lineage.latest_checkpoint().unwrap().unwrap();
    (records, root)
}

fn iteration_record(records: &mut [SignedRecord], iteration: u64) -> &mut SignedRecord {
    records
        .iter_mut()
        .rev()
        .find(|r| r.record.kind == "train.iteration" && r.record.payload["iteration"] == iteration)
        .unwrap()
}

/// Flips the lowest bit of the first hex digit of `hex`.
fn flip_one_bit(hex: &str) -> String {
    let mut bytes = hex::decode(hex).unwrap();
    bytes[0] ^= 1;
    hex::encode(bytes)
}

#[test]
fn retention_keeps_every_kth_checkpoint_content_addressed_and_digests_only_at_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (records, _) = recorded_run(dir.path());
    let run = dir.path().join("run");
    let start = &records[0].record.payload;
    let initial = start["initial_checkpoint"]["sha256"].as_str().unwrap();
    assert!(start["build"]["target"].is_string());
    let mut retained = vec![initial.to_string()];
    for r in records
        .iter()
        .filter(|r| r.record.kind == "train.iteration")
    {
        let i = r.record.payload["iteration"].as_u64().unwrap();
        let p = &r.record.payload;
        assert_eq!(p.get("checkpoint").is_some(), i % 4 == 0, "iteration {i}");
        assert_eq!(
            p.get("param_digest").is_some(),
            i % 4 == 0 || i % 6 == 0 || i == STEPS,
            "iteration {i}"
        );
        if let Some(sha) = p["checkpoint"]["sha256"].as_str() {
            assert_eq!(
                p["checkpoint"]["file"],
                format!("checkpoints/retained/{sha}.safetensors")
            );
            retained.push(sha.to_string());
        }
    }
    assert_eq!(retained.len(), 4);
    for sha in &retained {
        let bytes =
            std::fs::read(run.join(RETAINED_DIR).join(format!("{sha}.safetensors"))).unwrap();
        assert_eq!(&hex::encode(Sha256::digest(&bytes)), sha);
    }
    // Resume keeps using the checkpoint_every files; superseded ones go, retained ones stay.
    let latest = std::fs::read_to_string(run.join("checkpoints/LATEST")).unwrap();
    assert_eq!(latest, "iter-00000012.safetensors");
    assert!(!run.join("checkpoints/iter-00000000.safetensors").exists());
    let mut resumed = Trainer::new(config(), corpus(), None).unwrap();
    assert_eq!(resumed.restore_latest(&run).unwrap(), STEPS);
}

#[test]
fn an_honest_run_replays_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let (records, root) = recorded_run(dir.path());
    let run = dir.path().join("run");
    let run_only = run_records(&records, &run).unwrap();
    let selection = select(run_only, 4, &root).unwrap();
    let chosen = selection.all();
    assert_eq!(chosen.len(), 4);
    assert_eq!(
        selection,
        select(run_only, 4, &root).unwrap(),
        "selection is a function of the root"
    );
    let other_root: [u8; 32] = Sha256::digest(root).into();
    assert_ne!(
        selection.by_lineage_root,
        select(run_only, 4, &other_root).unwrap().by_lineage_root,
        "another root draws other iterations"
    );
    // The two largest update norms are the ones chosen by norm.
    let mut norms: Vec<(f64, u64)> = run_only
        .iter()
        .filter(|r| r.record.kind == "train.iteration")
        .map(|r| {
            (
                update_norm(&r.record.payload),
                r.record.payload["iteration"].as_u64().unwrap(),
            )
        })
        .collect();
    norms.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut largest = vec![norms[0].1, norms[1].1];
    largest.sort_unstable();
    assert_eq!(selection.by_update_norm, largest);

    let report = replay_with_corpus(&run, &records, corpus(), &chosen).unwrap();
    assert!(report.passed(), "{report:#?}");
    assert!(report.same_build() && report.warnings().is_empty());
    for r in &report.iterations {
        assert_eq!(r.recorded_digest, r.recomputed_digest);
        assert!(r.executed >= 1 && r.executed <= 4, "{r:?}");
    }
    // Every iteration, every window (also the one a checkpoint_every digest ends).
    let all: Vec<u64> = (1..=STEPS).collect();
    let report = replay_with_corpus(&run, &records, corpus(), &all).unwrap();
    assert!(report.passed(), "{report:#?}");
    assert_eq!(report.executed, STEPS);
    assert_eq!(report.cost(), 1.0);
    let one = replay_with_corpus(&run, &records, corpus(), &[5]).unwrap();
    assert_eq!(
        (one.iterations[0].from_checkpoint, one.iterations[0].through),
        (4, 6)
    );
    assert_eq!(one.executed, 2);
}

#[test]
fn a_retained_checkpoint_altered_by_one_bit_fails_replay_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (records, _) = recorded_run(dir.path());
    let run = dir.path().join("run");
    let sha = records
        .iter()
        .find(|r| r.record.kind == "train.iteration" && r.record.payload["iteration"] == 4)
        .unwrap()
        .record
        .payload["checkpoint"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let path = run.join(RETAINED_DIR).join(format!("{sha}.safetensors"));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // one bit of the last parameter value
    std::fs::write(&path, &bytes).unwrap();
    let report = replay_with_corpus(&run, &records, corpus(), &[5, 10]).unwrap();
    assert!(!report.passed());
    let five = &report.iterations[0];
    assert!(!five.equal);
    let why = five.failure.as_deref().unwrap();
    assert!(why.contains(&sha) && why.contains("altered"), "{why}");
    // Iteration 10 replays from the untouched checkpoint of iteration 8.
    assert!(report.iterations[1].equal, "{report:#?}");
}

#[test]
fn a_recorded_parameter_digest_altered_by_one_bit_fails_replay_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut records, _) = recorded_run(dir.path());
    let run = dir.path().join("run");
    let record = iteration_record(&mut records, 6);
    let digest = record.record.payload["param_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = flip_one_bit(&digest);
    record.record.payload["param_digest"] = json!(forged);
    let report = replay_with_corpus(&run, &records, corpus(), &[5]).unwrap();
    assert!(!report.passed());
    let five = &report.iterations[0];
    assert_eq!(five.through, 6);
    assert_eq!(five.recorded_digest.as_deref(), Some(forged.as_str()));
    assert_eq!(five.recomputed_digest.as_deref(), Some(digest.as_str()));
    let why = five.failure.as_deref().unwrap();
    assert!(
        why.contains("iteration 6") && why.contains("param_digest"),
        "{why}"
    );
}

#[test]
fn a_recorded_gate_statistic_changed_in_a_window_fails_replay_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (mut records, _) = recorded_run(dir.path());
    let run = dir.path().join("run");
    // Iteration 9 carries no parameter digest; its record is still replayed exactly.
    let record = iteration_record(&mut records, 9);
    assert!(record.record.payload.get("param_digest").is_none());
    let loss = record.record.payload["loss"].as_f64().unwrap();
    record.record.payload["loss"] = json!(f64::from_bits(loss.to_bits() ^ 1));
    let report = replay_with_corpus(&run, &records, corpus(), &[10]).unwrap();
    let why = report.iterations[0].failure.as_deref().unwrap();
    assert!(
        why.contains("iteration 9") && why.contains("payload.loss"),
        "{why}"
    );
}
