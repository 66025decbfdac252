//! Measurements behind `warden bench train` and `warden bench memorization`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_keys::{Role, SigningKey, TrustStore};

use crate::admitted::{load_canaries, Admitted};
use crate::config::TrainConfig;
use crate::data::AdmissionIndex;
use crate::trainer::{Canary, CanaryExposure, MemorySink, RecordSink, Timings, Trainer};
use crate::TrainError;

/// Writes the deterministic synthetic corpus at `scale` under `dir` and admits it with a fresh
/// corpus-authority key; returns the admitted corpus, its canaries and the trust store.
pub fn synthetic_corpus(
    dir: &Path,
    scale: f64,
) -> Result<(Arc<Admitted>, Vec<Canary>, TrustStore), TrainError> {
    let synth = dir.join("synth");
    let corpus_err = |e: warden_corpus::CorpusError| TrainError::Corpus(e.to_string());
    warden_corpus::synth::write(
        &synth,
        &warden_corpus::synth::SynthOptions {
            scale,
            ..Default::default()
        },
    )
    .map_err(corpus_err)?;
    let key = SigningKey::generate(Role::CorpusAuthority, "bench-corpus")
        .map_err(|e| TrainError::Internal(e.to_string()))?;
    let admitted_dir = dir.join("admitted");
    warden_corpus::admit(
        &synth.join("declaration.toml"),
        &admitted_dir,
        &key,
        &warden_corpus::AdmitOptions::default(),
    )
    .map_err(corpus_err)?;
    let mut trust = TrustStore::new();
    trust.add(Role::CorpusAuthority, key.public().clone());
    let corpus = Arc::new(Admitted::load(&admitted_dir, &trust)?);
    let canaries = load_canaries(&synth.join("canaries.json"))?;
    Ok((corpus, canaries, trust))
}

/// Governed vs ungoverned step times on the same batches.
pub struct OverheadReport {
    pub steps: u64,
    pub governed: Duration,
    pub ungoverned: Duration,
    /// Median over steps of governed/ungoverned step time.
    pub median_ratio: f64,
    pub timings: Timings,
    /// The ungoverned baseline's forward/backward and optimizer time.
    pub baseline: Timings,
    /// Depth groups (forward/backward passes) per governed step, on average.
    pub groups_per_step: f64,
}

/// Runs `steps` iterations twice from the same initialization — once through every gate (records
/// into `sink`; checkpoints, retained ones included, into `governed_run_dir` when given), once as
/// plain training — alternating which goes first, after `warmup` steps.
pub fn overhead(
    config: TrainConfig,
    corpus: Arc<dyn AdmissionIndex>,
    sink: &mut dyn RecordSink,
    governed_run_dir: Option<&Path>,
    warmup: u64,
    steps: u64,
) -> Result<OverheadReport, TrainError> {
    let mut governed = Trainer::new(
        config.clone(),
        corpus.clone(),
        governed_run_dir.map(Path::to_path_buf),
    )?;
    let mut plain = Trainer::new(config, corpus, None)?;
    let mut governed_time = Duration::ZERO;
    let mut plain_time = Duration::ZERO;
    let mut ratios = Vec::new();
    for step in 1..=warmup + steps {
        let mut run_governed = |g: &mut Trainer| -> Result<Duration, TrainError> {
            let t = Instant::now();
            g.iterate(sink)?;
            Ok(t.elapsed())
        };
        let (g, p) = if step % 2 == 0 {
            let g = run_governed(&mut governed)?;
            let t = Instant::now();
            plain.ungoverned_step(step)?;
            (g, t.elapsed())
        } else {
            let t = Instant::now();
            plain.ungoverned_step(step)?;
            let p = t.elapsed();
            (run_governed(&mut governed)?, p)
        };
        if step == warmup {
            governed.timings = Timings::default();
            plain.timings = Timings::default();
            governed.group_passes = 0;
        }
        if step > warmup {
            governed_time += g;
            plain_time += p;
            ratios.push(g.as_secs_f64() / p.as_secs_f64().max(1e-12));
        }
    }
    ratios.sort_by(f64::total_cmp);
    Ok(OverheadReport {
        steps,
        governed: governed_time,
        ungoverned: plain_time,
        median_ratio: ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN),
        timings: governed.timings.clone(),
        baseline: plain.timings.clone(),
        groups_per_step: governed.group_passes as f64 / steps.max(1) as f64,
    })
}

/// One trained model's memorization measurements.
pub struct MemorizationRow {
    pub exposures: Vec<(Canary, CanaryExposure)>,
    pub held_out_loss: f64,
    pub masked_spans: u64,
    pub seconds: f64,
}

/// Trains `config` for its steps and measures canary exposure, greedy extraction and held-out
/// loss on `held_out` source texts.
pub fn memorization_run(
    config: TrainConfig,
    corpus: Arc<dyn AdmissionIndex>,
    canaries: &[Canary],
    held_out_source: &str,
    candidates: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<MemorizationRow, TrainError> {
    let started = Instant::now();
    let mut trainer = Trainer::new(config, corpus.clone(), None)?;
    trainer.set_canaries_from_pool(canaries.to_vec());
    let mut sink = MemorySink::default();
    while trainer.iteration() < trainer.config.steps {
        trainer.iterate(&mut sink)?;
        // Records are not needed here; keep memory flat.
        sink.records.clear();
        progress(trainer.iteration());
    }
    let canaries = trainer.canaries().to_vec();
    let mut exposures = Vec::new();
    for (idx, canary) in canaries.iter().enumerate() {
        exposures.push((
            canary.clone(),
            trainer.canary_exposure(canary, candidates, idx as u64)?,
        ));
    }
    let idx = corpus
        .sources()
        .iter()
        .position(|s| s.id == held_out_source)
        .ok_or_else(|| TrainError::Corpus(format!("no source {held_out_source}")))?;
    let texts = corpus.read_source(idx as u32)?;
    let texts: Vec<&str> = texts.iter().take(256).map(|s| s.text.as_str()).collect();
    Ok(MemorizationRow {
        exposures,
        held_out_loss: trainer.mean_loss(&texts)?,
        masked_spans: trainer.counts().spans_masked_memorization,
        seconds: started.elapsed().as_secs_f64(),
    })
}
