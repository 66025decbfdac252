//! `warden demo`: the whole pipeline on the embedded default, in a fresh directory.
//!
//! Stages share one [`DemoContext`]: the keys, the trust file and the ONE lineage every stage
//! appends to. Order: lineage spine → corpus → policy → training → governed decoding → final
//! verification.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::{kinds, RecordDraft};
use warden_store::{fs, Cadence, Lineage, StoreOptions, VerifyOptions};

/// Marks a directory as created by `warden demo`, so a rerun may replace it.
const MARKER: &str = ".warden-demo";

/// The checkpoint origin of the demo's lineage (C2SP tlog-checkpoint: a URL-like name).
const DEMO_ORIGIN: &str = "warden.local/demo";

#[derive(Args)]
pub struct DemoArgs {
    /// The demo directory (replaced if it holds an earlier demo; refused if it holds anything else).
    #[arg(long, default_value = "warden-demo")]
    pub dir: PathBuf,
}

/// The demo's signing keys for the stages that follow the spine. (The deployment authority's
/// key signs only spine records here; its file is in `key_paths`.)
pub struct DemoKeys {
    pub corpus: Arc<SigningKey>,
    pub training: Arc<SigningKey>,
    pub policy: Arc<SigningKey>,
}

/// Paths of the private key files, one per role.
pub struct DemoKeyPaths {
    pub corpus: PathBuf,
    pub training: PathBuf,
    pub policy: PathBuf,
    pub deployment: PathBuf,
}

/// What every demo stage shares.
pub struct DemoContext {
    pub dir: PathBuf,
    pub keys: DemoKeys,
    pub key_paths: DemoKeyPaths,
    pub trust: TrustStore,
    pub trust_path: PathBuf,
    /// The demo's one lineage, held open for appending (`None` only while a stage lets another
    /// writer, such as `warden_train::run::start`, open the same directory).
    pub lineage: Option<Lineage>,
    pub lineage_dir: PathBuf,
    /// Set by the corpus stage: the admitted corpus output directory.
    pub corpus_dir: Option<PathBuf>,
    /// Set by the corpus stage: the synthetic corpus directory.
    pub synth_dir: Option<PathBuf>,
    /// Set by the training stage: the run directory (model, manifest).
    pub run_dir: Option<PathBuf>,
}

impl DemoContext {
    /// The open lineage.
    pub fn lineage(&self) -> anyhow::Result<&Lineage> {
        self.lineage
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the demo lineage is not open"))
    }

    /// Seals and closes the lineage so another writer can take its lock (one appender at a
    /// time); [`DemoContext::reopen_lineage`] takes it back.
    pub fn release_lineage(&mut self) -> anyhow::Result<()> {
        if let Some(lineage) = self.lineage.take() {
            lineage.close()?;
        }
        Ok(())
    }

    /// Opens the lineage again for appending (its tail authenticated through the trust file).
    pub fn reopen_lineage(&mut self) -> anyhow::Result<()> {
        let options = StoreOptions::new(DEMO_ORIGIN).with_trust(Arc::new(self.trust.clone()));
        self.lineage = Some(Lineage::open_with(&self.lineage_dir, Some(options))?);
        Ok(())
    }
}

pub fn heading(text: &str) {
    outln!("\n== {text}");
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let is_empty = std::fs::read_dir(dir)
            .with_context(|| dir.display().to_string())?
            .next()
            .is_none();
        if !is_empty {
            if !dir.join(MARKER).exists() {
                anyhow::bail!(
                    "{}: exists and was not made by `warden demo`; pass another --dir",
                    dir.display()
                );
            }
            std::fs::remove_dir_all(dir).with_context(|| dir.display().to_string())?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    fs::atomic_write(&dir.join(MARKER), b"created by warden demo\n")?;
    Ok(())
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    prepare_dir(&args.dir)?;
    // Absolute from here on: paths written into files (the training config's corpus) must not
    // depend on the working directory.
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| args.dir.display().to_string())?;
    outln!("warden demo in {}", dir.display());

    let mut ctx = lineage_stage(&dir)?;
    super::corpus::demo_stage(&mut ctx)?;
    super::policy::demo_stage(&mut ctx)?;
    super::train::demo_stage(&mut ctx)?;
    super::generate::demo_stage(&mut ctx)?;
    super::audit::demo_stage(&mut ctx)?;

    heading("final: verify the whole lineage");
    let n_records = ctx.lineage()?.len();
    ctx.release_lineage()?;
    let verified = warden_store::verify(
        &ctx.lineage_dir,
        &ctx.trust,
        &VerifyOptions {
            expect_size: Some(n_records),
            ..Default::default()
        },
    )?;
    outln!(
        "ok: {} records, {} checkpoints, root {}",
        verified.records,
        verified.checkpoints,
        hex::encode(verified.root)
    );
    for (kind, n) in &verified.kinds {
        outln!("  {kind:<24} {n:>6}");
    }
    let paths = &ctx.key_paths;
    outln!("\nkeys (private, 0600; public next to each as .pub):");
    for (role, path) in [
        (Role::CorpusAuthority, &paths.corpus),
        (Role::TrainingAuthority, &paths.training),
        (Role::PolicyAuthority, &paths.policy),
        (Role::DeploymentAuthority, &paths.deployment),
    ] {
        outln!("  {role:<21} {}", path.display());
    }
    outln!("trust file: {}", ctx.trust_path.display());
    outln!(
        "\ndone in {:.1} s. Try: warden lineage verify {} | warden lineage show {} --range 0..10",
        started.elapsed().as_secs_f64(),
        ctx.lineage_dir.display(),
        ctx.lineage_dir.display()
    );
    Ok(())
}

/// Issue 2's stage: keys, trust file, a lineage of a few hundred records, checkpoints,
/// verification and an inclusion proof.
fn lineage_stage(dir: &Path) -> anyhow::Result<DemoContext> {
    heading("keys and trust");
    let keys_dir = dir.join("keys");
    let mut trust = TrustStore::new();
    let mut make = |role: Role, file: &str| -> anyhow::Result<(Arc<SigningKey>, PathBuf)> {
        let path = keys_dir.join(file);
        let key = super::key::new_key(role, &format!("demo.{role}"), &path)?;
        trust.add(role, key.public().clone());
        outln!("  {role:<21} {}  ({})", key.key_ref(), path.display());
        Ok((Arc::new(key), path))
    };
    let (corpus, corpus_path) = make(Role::CorpusAuthority, "corpus.key")?;
    let (training, training_path) = make(Role::TrainingAuthority, "training.key")?;
    let (policy, policy_path) = make(Role::PolicyAuthority, "policy.key")?;
    let (deployment, deployment_path) = make(Role::DeploymentAuthority, "deployment.key")?;
    let trust_path = dir.join("trust.toml");
    fs::atomic_write(&trust_path, trust.to_toml().as_bytes())?;
    outln!("  trust file: {}", trust_path.display());

    heading("lineage: append, checkpoint, verify, prove");
    let lineage_dir = dir.join("lineage");
    let options = StoreOptions::new(DEMO_ORIGIN).with_cadence(Cadence::Window {
        records: 64,
        millis: 1000,
    });
    let lineage = Lineage::create(&lineage_dir, options)?;
    for key in [&corpus, &training, &policy, &deployment] {
        lineage.append(
            RecordDraft::new(kinds::KEY, json!({"event": "introduced", "role": key.role().as_str(), "verifier": key.public().verifier_string()})),
            key,
        )?;
    }
    let topics = [
        "retention review",
        "access grant",
        "incident drill",
        "model card draft",
        "data request",
    ];
    for i in 0..300u64 {
        let (kind, key, payload) = match i % 4 {
            0 | 1 => (
                kinds::NOTE,
                &policy,
                json!({"topic": topics[(i % 5) as usize], "n": i}),
            ),
            2 => (
                "deploy.heartbeat",
                &deployment,
                json!({"replica": i % 3, "healthy": true, "p50_ms": 12.5 + (i % 7) as f64}),
            ),
            _ => (
                kinds::NOTE,
                &corpus,
                json!({"topic": "source inventory", "sources_seen": i / 4}),
            ),
        };
        lineage.append(
            RecordDraft::new(kind, payload).with_policy_version("demo-v1"),
            key,
        )?;
    }
    lineage.checkpoint()?;
    let n = lineage.len();
    outln!("  appended {n} records (kinds: key, note, deploy.heartbeat) by 4 keys; {} signed checkpoints", lineage.n_checkpoints());
    let verified = warden_store::verify(
        &lineage_dir,
        &trust,
        &VerifyOptions {
            expect_size: Some(n),
            ..Default::default()
        },
    )?;
    outln!(
        "  verified: {} records, {} checkpoints, root {}",
        verified.records,
        verified.checkpoints,
        hex::encode(verified.root)
    );
    let index = 123.min(n - 1);
    let proof = lineage.prove_inclusion(index, n)?;
    let leaf = lineage
        .leaf_hash(index)?
        .ok_or_else(|| anyhow::anyhow!("record {index} missing"))?;
    warden_merkle::verify_inclusion(&leaf, index, n, &proof, &verified.root)?;
    outln!(
        "  inclusion proof for record {index} in tree size {n} ({} hashes) verifies:",
        proof.len()
    );
    for h in &proof {
        outln!("    {}", hex::encode(h));
    }
    let old = n / 2;
    let consistency = lineage.prove_consistency(old, n)?;
    warden_merkle::verify_consistency(
        old,
        n,
        &lineage.root_at(old)?,
        &verified.root,
        &consistency,
    )?;
    outln!(
        "  consistency proof {old} -> {n} ({} hashes) verifies",
        consistency.len()
    );

    Ok(DemoContext {
        dir: dir.to_path_buf(),
        keys: DemoKeys {
            corpus,
            training,
            policy,
        },
        key_paths: DemoKeyPaths {
            corpus: corpus_path,
            training: training_path,
            policy: policy_path,
            deployment: deployment_path,
        },
        trust,
        trust_path,
        lineage: Some(lineage),
        lineage_dir,
        corpus_dir: None,
        synth_dir: None,
        run_dir: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_replaces_an_earlier_demo_but_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo");
        prepare_dir(&dir).unwrap();
        std::fs::write(dir.join("leftover"), b"from the first run").unwrap();
        prepare_dir(&dir).unwrap();
        assert!(
            !dir.join("leftover").exists(),
            "the earlier demo is replaced"
        );
        assert!(dir.join(MARKER).exists());

        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("precious"), b"keep").unwrap();
        assert!(prepare_dir(&other).is_err());
        assert_eq!(std::fs::read(other.join("precious")).unwrap(), b"keep");
    }
}
