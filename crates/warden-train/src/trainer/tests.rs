//! Real training on tiny in-memory corpora: each test asserts what a governance user relies on.

use super::*;
use crate::config::EvalRequest;
use crate::data::{MemoryCorpus, SourceInfo};
use crate::model::ModelConfig;
use crate::optim::AdamWConfig;
use crate::policy::TrainingPolicy;

fn source(id: &str, class: &str, depth: &str, held_out: bool) -> SourceInfo {
    SourceInfo {
        id: id.into(),
        class: class.into(),
        depth: depth.into(),
        license: "MIT".into(),
        held_out,
        admitted: true,
    }
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{prefix} sample {i}: the river {} runs past {} hills",
                i * 7 % 13,
                i % 5
            )
        })
        .collect()
}

fn corpus(with_web: bool, with_code: bool) -> MemoryCorpus {
    let mut sources = Vec::new();
    if with_web {
        sources.push((source("web", "web", "deep", false), lines("web", 30)));
    }
    if with_code {
        sources.push((
            source("code", "code", "shallow", false),
            lines("fn code", 30),
        ));
    }
    sources.push((source("heldout", "web", "deep", true), lines("held", 8)));
    MemoryCorpus::admit(sources)
}

const POLICY: &str = r#"
version = "t1"
failure = "halt"
checkpoint_every = 2
[[regions]]
match = "*"
max_norm = 5.0
"#;

fn config(policy: &str) -> TrainConfig {
    TrainConfig {
        corpus: "unused".into(),
        seed: 7,
        steps: 6,
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
        policy: TrainingPolicy::parse(policy, "test policy").unwrap(),
    }
}

fn run(trainer: &mut Trainer, sink: &mut MemorySink, steps: u64) -> Result<(), TrainError> {
    for _ in 0..steps {
        trainer.iterate(sink)?;
    }
    Ok(())
}

fn region_values(trainer: &Trainer, region: &str) -> Vec<f32> {
    trainer
        .model()
        .vars()
        .iter()
        .filter(|(name, _)| region_of(name) == region)
        .flat_map(|(_, v)| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

#[test]
fn same_seed_gives_bit_identical_weights_and_records() {
    let mut digests = Vec::new();
    for seed in [7, 7, 8] {
        let mut c = config(POLICY);
        c.seed = seed;
        let mut trainer = Trainer::new(c, Arc::new(corpus(true, true)), None).unwrap();
        let mut sink = MemorySink::default();
        run(&mut trainer, &mut sink, 4).unwrap();
        assert_eq!(sink.records.len(), 4);
        assert!(sink
            .records
            .iter()
            .all(|r| r.0 == "train.iteration" && r.2 == "t1"));
        digests.push((trainer.model().digest().unwrap(), sink.records));
    }
    assert_eq!(digests[0].0, digests[1].0);
    assert_eq!(digests[0].1, digests[1].1);
    assert_ne!(digests[0].0, digests[2].0);
}

#[test]
fn a_frozen_region_is_bit_identical_after_training() {
    let policy = format!("{POLICY}\n[[regions]]\nmatch = \"layer0.attn\"\nfrozen = true\n");
    let mut trainer = Trainer::new(config(&policy), Arc::new(corpus(true, false)), None).unwrap();
    let before_attn = region_values(&trainer, "layer0.attn");
    let before_ffn = region_values(&trainer, "layer0.ffn");
    let mut sink = MemorySink::default();
    run(&mut trainer, &mut sink, 4).unwrap();
    assert_eq!(region_values(&trainer, "layer0.attn"), before_attn);
    assert_ne!(region_values(&trainer, "layer0.ffn"), before_ffn);
    let verdict = sink.records[0].1["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "layer0.attn")
        .unwrap()
        .clone();
    assert_eq!(verdict["verdict"], "reject");
    assert_eq!(verdict["reason"], "frozen");
    // The optimizer never touched it either.
    assert!(trainer
        .optimizer
        .state()
        .iter()
        .filter(|(n, _)| region_of(n) == "layer0.attn")
        .all(|(_, m)| m.steps == 0));
}

#[test]
fn a_shallow_class_never_changes_regions_it_is_not_admitted_to() {
    let mut trainer = Trainer::new(config(POLICY), Arc::new(corpus(false, true)), None).unwrap();
    let regions = trainer.config.model.regions();
    let before: Vec<Vec<f32>> = regions.iter().map(|r| region_values(&trainer, r)).collect();
    let mut sink = MemorySink::default();
    run(&mut trainer, &mut sink, 4).unwrap();
    for (region, before) in regions.iter().zip(before) {
        let after = region_values(&trainer, region);
        if region == "head" {
            assert_ne!(after, before, "head should learn from shallow content");
        } else {
            assert_eq!(after, before, "{region} changed from shallow content");
        }
    }
}

#[test]
fn routing_keeps_shallow_gradients_out_of_deep_regions_in_a_mixed_batch() {
    // Mixed run vs. a run where the shallow class is excluded: every region except the head
    // must evolve identically (the shallow samples' gradient never reached them). The loss
    // normalization is per admitted batch, so compare with shallow samples weighted to zero.
    let policy = format!("{POLICY}\n[depths.shallow]\nregions = [\"head\"]\nmax_norm = 0.5\n");
    let mut mixed = Trainer::new(config(&policy), Arc::new(corpus(true, true)), None).unwrap();
    let mut sink = MemorySink::default();
    run(&mut mixed, &mut sink, 3).unwrap();
    let depths: BTreeSet<String> = sink
        .records
        .iter()
        .flat_map(|r| r.1["groups"].as_array().unwrap().clone())
        .map(|g| g["depth"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(depths.len(), 2, "the batches mixed both depths: {depths:?}");
    for record in &sink.records {
        for group in record.1["groups"].as_array().unwrap() {
            if group["depth"] == "shallow" {
                assert_eq!(group["regions"], 1);
            }
        }
    }
}

#[test]
fn a_sample_edited_after_admission_halts_naming_iteration_and_sample() {
    let mut edited = corpus(true, false);
    for line in 0..30 {
        if line % 3 == 0 {
            edited.edit(0, line, &format!("tampered line {line}"));
        }
    }
    let mut trainer = Trainer::new(config(POLICY), Arc::new(edited), None).unwrap();
    let mut sink = MemorySink::default();
    let err = run(&mut trainer, &mut sink, 6).unwrap_err();
    let TrainError::Halted {
        iteration,
        gate,
        detail,
    } = &err
    else {
        panic!("expected a halt, got {err}");
    };
    assert_eq!(*gate, Gate::Data);
    assert!(detail.contains("sample web line"), "{detail}");
    assert!(
        detail.contains("not in the signed corpus declaration"),
        "{detail}"
    );
    let last = sink.records.last().unwrap();
    assert_eq!(last.0, "train.failure");
    assert_eq!(last.1["iteration"], *iteration);
    assert_eq!(last.1["action"], "halt");
    // The halted batch left no iteration record and no update.
    assert_eq!(sink.records.len() as u64, *iteration);
    assert!(sink.records[..sink.records.len() - 1]
        .iter()
        .all(|r| r.0 == "train.iteration"));
    assert!(err.to_string().contains(&format!("iteration {iteration}")));
}

#[test]
fn quarantine_rolls_back_and_continues_without_the_edited_sample() {
    let policy = POLICY.replace("failure = \"halt\"", "failure = \"quarantine\"");
    let mut edited = corpus(true, false);
    edited.edit(0, 4, "this line was edited after admission");
    let bad_hash = hex::encode(crate::data::sha256(b"this line was edited after admission"));
    let mut trainer = Trainer::new(config(&policy), Arc::new(edited), None).unwrap();
    let mut sink = MemorySink::default();
    let mut failures = 0;
    for _ in 0..30 {
        let before = trainer.snapshot.params.clone();
        let snapshot_iteration = trainer.snapshot.iteration;
        if let Outcome::Quarantined { gate, .. } = trainer.iterate(&mut sink).unwrap() {
            failures += 1;
            assert_eq!(gate, Gate::Data);
            let record = &sink.records.last().unwrap().1;
            assert_eq!(record["rolled_back_to"], snapshot_iteration);
            assert_eq!(record["sample"]["hash"], bad_hash);
            // Parameters are exactly the last admissible checkpoint's.
            assert_eq!(
                io::parameter_digest(&before).unwrap(),
                trainer.model().digest().unwrap()
            );
        }
    }
    assert_eq!(
        failures, 1,
        "the edited sample is quarantined once, then skipped"
    );
    let mut skipped = 0;
    for (kind, payload, _) in &sink.records {
        if kind != "train.iteration" {
            continue;
        }
        for s in payload["batch"]["samples"].as_array().unwrap() {
            if s["hash"] == bad_hash {
                assert!(s["status"]
                    .as_str()
                    .unwrap()
                    .starts_with("skipped: quarantined"));
                assert!(
                    s.get("loss").is_none(),
                    "a quarantined sample reached the forward pass"
                );
                skipped += 1;
            }
        }
    }
    assert!(skipped > 0, "the test draws the quarantined sample again");
    assert_eq!(trainer.iteration(), 30);
}

#[test]
fn a_sample_flagged_at_admission_is_refused_but_is_no_failure() {
    let mut flagged = corpus(true, false);
    for line in 0..30 {
        if line % 2 == 0 {
            flagged.flag(0, line, "flagged: email");
        }
    }
    let mut trainer = Trainer::new(config(POLICY), Arc::new(flagged), None).unwrap();
    let mut sink = MemorySink::default();
    run(&mut trainer, &mut sink, 5).unwrap();
    let mut refused = 0;
    for record in &sink.records {
        assert_eq!(record.0, "train.iteration");
        for s in record.1["batch"]["samples"].as_array().unwrap() {
            if s["status"].as_str().unwrap().starts_with("refused") {
                assert_eq!(
                    s["status"],
                    "refused: excluded at admission (flagged: email)"
                );
                assert!(
                    s.get("loss").is_none(),
                    "a flagged sample reached the forward pass"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 0);
    assert_eq!(trainer.counts().samples_refused, refused);
}

#[test]
fn tolerance_window_halts_after_k_failures() {
    let policy = POLICY.replace(
        "failure = \"halt\"",
        "failure = \"tolerance\"\ntolerance = { failures = 2, window = 50 }",
    );
    let mut edited = corpus(true, false);
    edited.edit(0, 1, "edited one");
    edited.edit(0, 2, "edited two");
    edited.edit(0, 3, "edited three");
    let mut trainer = Trainer::new(config(&policy), Arc::new(edited), None).unwrap();
    let mut sink = MemorySink::default();
    let err = run(&mut trainer, &mut sink, 60).unwrap_err();
    assert!(
        err.to_string().contains("2 failures within 50 iterations"),
        "{err}"
    );
    let failures: Vec<_> = sink
        .records
        .iter()
        .filter(|r| r.0 == "train.failure")
        .collect();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].1["action"], "quarantine");
    assert_eq!(failures[1].1["action"], "halt");
}

#[test]
fn unauthorized_evaluation_is_refused_and_authorized_one_runs() {
    let request = EvalRequest {
        every: 2,
        sources: vec!["heldout".into()],
        probes: vec!["loss".into()],
        max_samples: 4,
        candidates: 8,
        canaries: None,
    };
    let mut c = config(POLICY);
    c.eval = Some(request.clone());
    let mut trainer = Trainer::new(c, Arc::new(corpus(true, false)), None).unwrap();
    let mut sink = MemorySink::default();
    run(&mut trainer, &mut sink, 2).unwrap();
    let evaluation = &sink.records[1].1["evaluation"];
    assert_eq!(
        evaluation["refused"][0],
        "source heldout is not authorized for evaluation"
    );
    assert!(
        evaluation.get("sources").is_none(),
        "no metric was computed"
    );
    assert_eq!(trainer.counts().evals_refused, 1);

    let authorized = format!(
        "{POLICY}\n[eval]\nsources = [\"heldout\"]\nprobes = [\"loss\"]\nmin_interval = 4\n"
    );
    let mut c = config(&authorized);
    c.eval = Some(request);
    let mut trainer = Trainer::new(c, Arc::new(corpus(true, false)), None).unwrap();
    let mut sink = MemorySink::default();
    run(&mut trainer, &mut sink, 4).unwrap();
    let loss = &sink.records[1].1["evaluation"]["sources"]["heldout"]["loss"];
    assert!(loss.as_f64().unwrap() > 0.0);
    // Iteration 4 asks again, but the policy allows one evaluation per 4 iterations.
    let refused = &sink.records[3].1["evaluation"]["refused"][0];
    assert!(
        refused.as_str().unwrap().contains("at most every 4"),
        "{refused}"
    );
}

#[test]
fn update_frequency_cap_and_norm_reject_withhold_updates() {
    let policy = format!(
        "{POLICY}\n[[regions]]\nmatch = \"layer0.ffn\"\nevery = 3\n[[regions]]\nmatch = \"head\"\nmax_norm = 1e-6\non_excess = \"reject\"\n"
    );
    let mut trainer = Trainer::new(config(&policy), Arc::new(corpus(true, false)), None).unwrap();
    let head = region_values(&trainer, "head");
    let mut sink = MemorySink::default();
    run(&mut trainer, &mut sink, 4).unwrap();
    assert_eq!(region_values(&trainer, "head"), head);
    let verdicts: Vec<String> = sink
        .records
        .iter()
        .map(|r| {
            let regions = r.1["regions"].as_array().unwrap();
            let ffn = regions
                .iter()
                .find(|x| x["region"] == "layer0.ffn")
                .unwrap();
            ffn["verdict"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(verdicts, ["admit", "reject", "reject", "admit"]);
}

#[test]
fn repeated_secret_spans_are_masked_so_the_secret_is_learned_less() {
    let memorization =
        "\n[memorization]\nngram = 12\nwindow = 64\nthreshold = 0.0\naction = \"reject\"\n";
    let secret = "the secret pin of the vault is 8812-4471 ok";
    let run_with = |policy: &str| {
        let mut sources = vec![(source("web", "web", "deep", false), lines("web", 10))];
        sources.push((
            source("secrets", "web", "deep", false),
            vec![secret.to_string(); 10],
        ));
        let mut c = config(policy);
        c.model.context = 48;
        let mut trainer = Trainer::new(c, Arc::new(MemoryCorpus::admit(sources)), None).unwrap();
        let mut sink = MemorySink::default();
        run(&mut trainer, &mut sink, 8).unwrap();
        let loss = trainer.mean_loss(&[secret]).unwrap();
        (trainer, sink, loss)
    };
    let (plain, _, plain_loss) = run_with(POLICY);
    let (governed, sink, governed_loss) = run_with(&format!("{POLICY}{memorization}"));
    assert_eq!(plain.counts().spans_masked_memorization, 0);
    assert!(governed.counts().spans_masked_memorization > 0);
    let mut secret_seen = 0;
    for record in &sink.records {
        for s in record.1["batch"]["samples"].as_array().unwrap() {
            if s["source"] == "secrets" {
                secret_seen += 1;
                if secret_seen > 1 {
                    // Every later copy has its repeated bytes masked before the step.
                    assert!(s["masked_bytes"].as_u64().unwrap() > 30, "{s}");
                }
            }
        }
    }
    assert!(secret_seen > 5);
    assert!(
        governed_loss > plain_loss + 0.3,
        "governed {governed_loss} vs ungoverned {plain_loss}"
    );
}

#[test]
fn checkpoint_on_disk_restores_the_exact_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Trainer::new(
        config(POLICY),
        Arc::new(corpus(true, true)),
        Some(dir.path().into()),
    )
    .unwrap();
    let mut sink = MemorySink::default();
    run(&mut a, &mut sink, 4).unwrap();
    let mut b = Trainer::new(config(POLICY), Arc::new(corpus(true, true)), None).unwrap();
    assert_eq!(b.restore_latest(dir.path()).unwrap(), 4);
    run(&mut a, &mut sink, 2).unwrap();
    let mut other = MemorySink::default();
    run(&mut b, &mut other, 2).unwrap();
    assert_eq!(a.model().digest().unwrap(), b.model().digest().unwrap());
    assert_eq!(sink.records[4..], other.records[..]);
}

#[test]
fn loss_signature_rejects_samples_far_below_their_class_median_before_the_step() {
    // An aggressive ratio (0.99 x median) so that the test sees detections within a few steps.
    let policy = format!(
        "{POLICY}\n[memorization]\nngram = 64\nwindow = 16\nthreshold = 0.0\nloss_ratio = 0.99\naction = \"reject\"\n"
    );
    let mut trainer = Trainer::new(config(&policy), Arc::new(corpus(true, true)), None).unwrap();
    let mut sink = MemorySink::default();
    run(&mut trainer, &mut sink, 8).unwrap();
    let mut detected = 0;
    for record in &sink.records {
        let samples = record.1["batch"]["samples"].as_array().unwrap();
        for finding in record.1["memorization"].as_array().unwrap() {
            if finding["detector"] == "loss-signature" {
                detected += 1;
                assert_eq!(finding["scope"], "sample");
                let sample = &samples[finding["sample"].as_u64().unwrap() as usize];
                assert_eq!(
                    sample["weight"], 0.0,
                    "a flagged sample kept its weight: {sample}"
                );
            }
        }
    }
    assert!(detected > 0);
    assert_eq!(trainer.counts().samples_rejected_memorization, detected);
}

#[test]
fn detector_state_lives_in_a_digest_committed_sidecar_and_resume_stays_bit_identical() {
    let policy = format!(
        "{POLICY}\n[memorization]\nngram = 8\nwindow = 64\nthreshold = 0.0\nloss_ratio = 0.2\naction = \"reject\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let corpus = || Arc::new(corpus(true, true));
    let mut a = Trainer::new(config(&policy), corpus(), Some(dir.path().into())).unwrap();
    let mut sink = MemorySink::default();
    run(&mut a, &mut sink, 4).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let sidecar = checkpoints.join("iter-00000004.detectors");
    assert!(sidecar.exists());
    // The safetensors header holds the run state and a digest, not the detector memory.
    let bytes = std::fs::read(checkpoints.join("iter-00000004.safetensors")).unwrap();
    let (_, meta) = io::read_safetensors(&bytes, "checkpoint").unwrap();
    let state: Value = serde_json::from_str(&meta["warden.state"]).unwrap();
    assert_eq!(
        state["detectors"]["sha256"],
        hex::encode(Sha256::digest(std::fs::read(&sidecar).unwrap()))
    );
    assert!(
        meta["warden.state"].len() < 4096,
        "{}",
        meta["warden.state"]
    );

    let mut b = Trainer::new(config(&policy), corpus(), None).unwrap();
    assert_eq!(b.restore_latest(dir.path()).unwrap(), 4);
    run(&mut a, &mut sink, 3).unwrap();
    let mut other = MemorySink::default();
    run(&mut b, &mut other, 3).unwrap();
    assert_eq!(a.model().digest().unwrap(), b.model().digest().unwrap());
    assert_eq!(sink.records[4..], other.records[..]);

    // One changed byte in the sidecar is refused, naming the file and both digests.
    let latest = std::fs::read_to_string(checkpoints.join("LATEST")).unwrap();
    let stem = latest.trim().trim_end_matches(".safetensors");
    let sidecar = checkpoints.join(format!("{stem}.detectors"));
    let mut tampered = std::fs::read(&sidecar).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(&sidecar, &tampered).unwrap();
    let mut c = Trainer::new(config(&policy), corpus(), None).unwrap();
    let err = c.restore_latest(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(&format!("{stem}.detectors has sha256")),
        "{err}"
    );
    // Superseded checkpoints go with their sidecars: the latest two remain, beside LATEST and
    // the retained checkpoints' directory (never pruned).
    let mut files: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "LATEST",
            "iter-00000004.detectors",
            "iter-00000004.safetensors",
            "iter-00000006.detectors",
            "iter-00000006.safetensors",
            "retained"
        ]
    );
}

#[test]
fn sample_statuses_are_recorded_as_the_same_strings() {
    assert_eq!(json!(SampleStatus::Admitted), json!("admitted"));
    assert_eq!(
        json!(SampleStatus::Refused(
            "license GPL-3.0 is not admitted".into()
        )),
        json!("refused: license GPL-3.0 is not admitted")
    );
    assert_eq!(
        json!(SampleStatus::Quarantined { at: 12 }),
        json!("skipped: quarantined at iteration 12")
    );
    assert_eq!(json!(Gate::Gradient), json!("gradient"));
}
