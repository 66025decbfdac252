//! `warden policy …`: check, admit and evaluate policy bundles; `warden bench policy`; the demo's
//! policy stage.
//!
//! An output directory holds one bundle's admitted history (the layout, the write order and the
//! recovery rules are `warden_policy::admission`'s contract): this file supplies the directory's
//! files ([`DirFiles`]) and the lineage ([`LineageLog`]) to `admission::Workflow` and
//! `admission::resolve_head`, and prints.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sha2::{Digest as _, Sha256};
use warden_keys::{Role, SigningKey, TrustStore};
use warden_lineage::{RecordDraft, SignedRecord};
use warden_policy::admission::{
    self, BundleFiles, LoggedRecord, Outcome, PolicyLog, StorageError, Workflow,
};
use warden_policy::derive::Derived;
use warden_policy::gate::Finding;
use warden_policy::signing::{self, Statement};
use warden_policy::{evaluate, prove, AdmittedBundle, Bound, Bundle, Verdict, VerifiedBundle};
use warden_store::{fs, Lineage, StoreOptions};

/// Solver bound flags, shared by `check` and `admit`.
#[derive(Args, Clone, Copy)]
pub struct BoundArgs {
    /// Depth bound: total solver conflicts allowed for the whole admission.
    #[arg(long, default_value_t = Bound::default().max_conflicts)]
    pub max_conflicts: u64,
    /// Depth bound: refinement rounds allowed for the no-stranded-context check.
    #[arg(long, default_value_t = Bound::default().max_refinements)]
    pub max_refinements: u32,
}

impl BoundArgs {
    fn bound(self) -> Bound {
        Bound {
            max_conflicts: self.max_conflicts,
            max_refinements: self.max_refinements,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Parse a bundle and run the three admission checks; sign and record nothing.
    Check {
        bundle: PathBuf,
        #[command(flatten)]
        bound: BoundArgs,
    },
    /// Prove a bundle and, if all checks hold, sign it as the policy authority into DIR.
    Admit {
        bundle: PathBuf,
        /// The policy-authority private key file.
        #[arg(long)]
        key: PathBuf,
        /// The output directory (one bundle's admitted history).
        #[arg(long)]
        out: PathBuf,
        /// The lineage to record the admission or rejection in (created if missing). Once a
        /// directory's admissions are recorded in a lineage, later admissions need it too.
        #[arg(long)]
        lineage: Option<PathBuf>,
        /// Trust file: the key must be trusted as policy-authority (checked before anything is
        /// written), and so must the signers of what DIR already holds.
        #[arg(long)]
        trust: PathBuf,
        /// Required to resubmit a bundle digest the lineage already rejected: what was revisited.
        #[arg(long)]
        acknowledge: Option<String>,
        /// A training manifest (RUN_DIR/manifest.intoto.json, verified through the trust file):
        /// its derived predicates are merged into the bundle before the gate, and the signed
        /// statement and lineage record name its SHA-256.
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        bound: BoundArgs,
    },
    /// Verify a training manifest (training authority, through the trust file) and print the
    /// predicates it implies as bundle TOML on stdout.
    Derive {
        manifest: PathBuf,
        #[arg(long)]
        trust: PathBuf,
    },
    /// Evaluate one transition against the head of an admitted bundle directory (checked against
    /// its signed head record, its history and, with --lineage, the lineage).
    Eval {
        admitted: PathBuf,
        /// Trust file; the bundle's signer must be trusted as policy-authority.
        #[arg(long)]
        trust: PathBuf,
        /// Also refuse the head if the lineage admitted a later version (read-only).
        #[arg(long)]
        lineage: Option<PathBuf>,
        /// Attribute values, `name=value` (sets: comma-separated elements, may be empty).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
    /// Print an admitted bundle's statement: version, proof summary, signer. DIR is checked as
    /// for eval; a single statement file (e.g. from history/) only has its signature checked.
    Show {
        admitted: PathBuf,
        #[arg(long)]
        trust: PathBuf,
        /// Also refuse DIR's head if the lineage admitted a later version (read-only).
        #[arg(long)]
        lineage: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct BenchArgs {
    /// Admission is timed on generated consistent bundles of these sizes.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub sizes: Vec<usize>,
    /// Admissions timed per size (the median is printed).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Size of the bundle used for the evaluation benchmark.
    #[arg(long, default_value_t = 100)]
    pub eval_predicates: usize,
    /// Timing samples for evaluation (each times a batch of 1,000 transitions).
    #[arg(long, default_value_t = 300)]
    pub eval_samples: usize,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { bundle, bound } => {
            let parsed = read_bundle(&bundle)?;
            let started = Instant::now();
            let outcome = prove(&parsed, &bound.bound());
            let elapsed = started.elapsed();
            match outcome {
                Ok(proof) => {
                    outln!(
                        "{}: bundle `{}` version {} passes all checks ({} predicates, {:.1} ms)",
                        bundle.display(),
                        parsed.name,
                        parsed.version,
                        parsed.predicates.len(),
                        elapsed.as_secs_f64() * 1e3
                    );
                    for (check, line) in proof.check_lines() {
                        outln!("  {check:<20} {line}");
                    }
                    outln!(
                        "  prover: {} (bound: {})",
                        warden_policy::gate::PROVER,
                        proof.bound()
                    );
                    Ok(())
                }
                Err(rejection) => {
                    print_rejection(&rejection);
                    anyhow::bail!("{}: rejected: {rejection}", bundle.display())
                }
            }
        }
        Command::Admit {
            bundle,
            key,
            out,
            lineage,
            trust,
            acknowledge,
            manifest,
            bound,
        } => {
            let key = Arc::new(fs::load_signing_key(&key)?);
            let trust = fs::load_trust(&trust)?;
            // The key is checked against the trust file before anything (the lineage, DIR) is
            // created or written.
            admission::check_signing_key(&key, &trust)?;
            let lineage = match lineage {
                Some(dir) => Some(Lineage::open_or_create(
                    &dir,
                    // The origin is used only if the lineage is new; the trust store
                    // authenticates a tail an earlier process left unsealed.
                    StoreOptions::new("warden.local/lineage")
                        .with_trust(std::sync::Arc::new(trust.clone())),
                )?),
                None => None,
            };
            let request = AdmitRequest {
                bundle_path: &bundle,
                key: &key,
                trust: &trust,
                out: &out,
                lineage: lineage.as_ref(),
                acknowledge: acknowledge.as_deref(),
                manifest: manifest.as_deref(),
                bound: bound.bound(),
            };
            let outcome = admit_bundle(&request);
            if let Some(lineage) = &lineage {
                lineage.close()?;
            }
            match outcome? {
                Admission::Admitted => Ok(()),
                Admission::Rejected(message) => {
                    anyhow::bail!("{}: rejected: {message}", bundle.display())
                }
            }
        }
        Command::Derive { manifest, trust } => {
            let trust = fs::load_trust(&trust)?;
            let loaded = load_manifest(&manifest, &trust)?;
            outln!(
                "# derived from {} (sha256:{}), signed by {} (training-authority, verified)",
                manifest.display(),
                hex::encode(loaded.digest),
                loaded.signer
            );
            out!("{}", loaded.derived.to_toml());
            Ok(())
        }
        Command::Eval {
            admitted,
            trust,
            lineage,
            set,
        } => {
            let trust = fs::load_trust(&trust)?;
            let log = read_only_log(lineage.as_deref())?;
            let bundle = load_admitted(&admitted, &trust, log.as_ref().map(|l| l as _))?;
            let mut builder = bundle.transition();
            for item in &set {
                let (name, value) = item
                    .split_once('=')
                    .with_context(|| format!("--set {item}: expected NAME=VALUE"))?;
                builder = builder.set(name.trim(), value.trim())?;
            }
            let transition = builder.build()?;
            let verdict = evaluate(&bundle, &transition);
            outln!("{}", describe_verdict(&verdict));
            Ok(())
        }
        Command::Show {
            admitted,
            trust,
            lineage,
        } => {
            let trust = fs::load_trust(&trust)?;
            let verified = if admitted.is_dir() {
                let log = read_only_log(lineage.as_deref())?;
                admission::resolve_head(
                    &DirFiles { dir: &admitted },
                    &trust,
                    log.as_ref().map(|l| l as _),
                )?
            } else {
                let bytes = std::fs::read(&admitted)
                    .with_context(|| format!("{}: cannot read", admitted.display()))?;
                let verified =
                    VerifiedBundle::verify(&bytes, &admitted.display().to_string(), &trust)?;
                outln!("(a single statement file: its signature is checked, not whether it is the head)");
                verified
            };
            let statement = verified.statement();
            outln!(
                "bundle:      {} version {}",
                statement.name,
                statement.version
            );
            outln!("version id:  {}", statement.version_id);
            if let Some(succeeds) = statement.succeeds {
                outln!("succeeds:    version {succeeds}");
            }
            outln!("digest:      {}", statement.digest);
            if let Some(manifest) = &statement.manifest {
                outln!("manifest:    sha256:{manifest}");
            }
            outln!("admitted at: {}", statement.admitted_at);
            outln!(
                "signer:      {} (policy-authority, verified)",
                statement.signer
            );
            outln!(
                "prover:      {} (bound: {})",
                statement.proof.prover,
                statement.proof.bound
            );
            for (check, line) in &statement.proof.checks {
                outln!("  {check:<20} {line}");
            }
            let witness: Vec<String> = statement
                .proof
                .witness
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect();
            outln!("witness:     {}", witness.join(", "));
            if let Some(ack) = &statement.acknowledge {
                outln!("acknowledged: {ack}");
            }
            Ok(())
        }
    }
}

/// A training manifest whose DSSE envelope verified, and what it implies.
pub struct LoadedManifest {
    /// SHA-256 of the manifest file's bytes (what admitted bundles name).
    pub digest: [u8; 32],
    /// The training-authority key that signed it.
    pub signer: String,
    pub derived: Derived,
}

/// Reads a training manifest, verifies its DSSE envelope for the training authority through
/// `trust`, checks its predicate type and derives its constraints. Errors name the file.
pub fn load_manifest(path: &Path, trust: &TrustStore) -> anyhow::Result<LoadedManifest> {
    let shown = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("{shown}: cannot read"))?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("{shown}: not a DSSE envelope: not UTF-8"))?;
    let envelope = warden_attest::Envelope::from_json(text)
        .map_err(|e| anyhow::anyhow!("{shown}: not a DSSE envelope: {e}"))?;
    let verified = warden_attest::verify_envelope(&envelope, trust, Role::TrainingAuthority)
        .map_err(|e| {
            anyhow::anyhow!("{shown}: the manifest does not verify as signed by a training authority of the trust file: {e}")
        })?;
    let statement = verified.statement;
    if statement.predicate_type != warden_train::manifest::PREDICATE_TYPE {
        anyhow::bail!(
            "{shown}: predicate type `{}` is not a Warden training manifest ({})",
            statement.predicate_type,
            warden_train::manifest::PREDICATE_TYPE
        );
    }
    let derived = warden_policy::derive::derive(&statement.predicate)
        .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    Ok(LoadedManifest {
        digest,
        signer: verified.signer.to_string(),
        derived,
    })
}

fn read_bundle(path: &Path) -> anyhow::Result<Bundle> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(Bundle::parse(&text, &path.display().to_string())?)
}

/// Loads the head of an admitted bundle directory: verified, checked against the directory's
/// signed head record and history (and the lineage, if given), compiled.
pub fn load_admitted(
    dir: &Path,
    trust: &TrustStore,
    log: Option<&dyn PolicyLog>,
) -> anyhow::Result<AdmittedBundle> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: not a bundle directory (give the directory `policy admit --out` wrote: a single statement file cannot be checked against its signed head)",
            dir.display()
        );
    }
    let verified = admission::resolve_head(&DirFiles { dir }, trust, log)?;
    Ok(AdmittedBundle::compile(verified))
}

/// A bundle directory on disk.
pub struct DirFiles<'a> {
    pub dir: &'a Path,
}

impl BundleFiles for DirFiles<'_> {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match std::fs::read(self.dir.join(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(Box::new(err)),
        }
    }

    fn history_versions(&self) -> Result<Vec<u64>, StorageError> {
        let entries = match std::fs::read_dir(self.dir.join("history")) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(Box::new(err)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let version = name
                .to_str()
                .and_then(|n| n.strip_prefix('v')?.strip_suffix(".admitted.json"))
                .and_then(|v| v.parse::<u64>().ok());
            versions.extend(version);
        }
        Ok(versions)
    }

    /// Temp file, fsync, then a hard link to the final name (which fails if it exists), so the
    /// file appears complete or not at all and is never replaced.
    fn create_new(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        use std::io::Write as _;
        let path = self.dir.join(name);
        let parent = path.parent().unwrap_or(self.dir);
        std::fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(".new-{}.tmp", std::process::id()));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::hard_link(&tmp, &path)?;
            std::fs::File::open(parent)?.sync_all()
        })();
        let _ = std::fs::remove_file(&tmp);
        Ok(result?)
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(self.dir))?;
        Ok(fs::atomic_write(&path, bytes)?)
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

/// The lineage as the policy workflow sees it: an open lineage it appends to, or the records of
/// one read without opening it for appending (eval, show).
pub enum LineageLog<'a> {
    Append {
        lineage: &'a Lineage,
        key: &'a Arc<SigningKey>,
    },
    ReadOnly(Vec<SignedRecord>),
}

fn read_only_log(dir: Option<&Path>) -> anyhow::Result<Option<LineageLog<'static>>> {
    Ok(match dir {
        Some(dir) => Some(LineageLog::ReadOnly(warden_store::read_all(dir)?)),
        None => None,
    })
}

fn logged(record: &SignedRecord) -> Option<LoggedRecord> {
    record
        .record
        .kind
        .starts_with("policy.")
        .then(|| LoggedRecord {
            index: record.record.seq,
            kind: record.record.kind.clone(),
            payload: record.record.payload.clone(),
        })
}

impl PolicyLog for LineageLog<'_> {
    fn policy_records_from(&self, from: u64) -> Result<Vec<LoggedRecord>, StorageError> {
        match self {
            LineageLog::Append { lineage, .. } => {
                let len = lineage.len();
                if from >= len {
                    return Ok(Vec::new());
                }
                Ok(lineage
                    .read_range(from..len)?
                    .iter()
                    .filter_map(logged)
                    .collect())
            }
            LineageLog::ReadOnly(records) => Ok(records
                .iter()
                .filter(|r| r.record.seq >= from)
                .filter_map(logged)
                .collect()),
        }
    }

    fn append(
        &self,
        kind: &str,
        payload: serde_json::Value,
        policy_version: &str,
    ) -> Result<u64, StorageError> {
        match self {
            LineageLog::Append { lineage, key } => {
                let draft =
                    RecordDraft::new(kind, payload).with_policy_version(policy_version.to_string());
                Ok(lineage.append(draft, key)?.index)
            }
            LineageLog::ReadOnly(_) => Err("the lineage was opened read-only".into()),
        }
    }
}

fn describe_verdict(verdict: &Verdict<'_>) -> String {
    match verdict {
        Verdict::Admit => "admit".to_string(),
        Verdict::Reject(v) if v.total() == 0 => {
            "reject (transition does not belong to this bundle)".to_string()
        }
        Verdict::Reject(v) | Verdict::Decompose(v) => {
            let ids: Vec<&str> = v.ids().collect();
            let more = v.total().saturating_sub(ids.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{}: {}{more}", verdict.as_str(), ids.join(", "))
        }
    }
}

fn print_rejection(rejection: &warden_policy::Rejection) {
    outln!("rejected by the {} check", rejection.check);
    match &rejection.finding {
        Finding::Refuted {
            predicate,
            core,
            core_minimal,
            counterexample,
        } => {
            if let Some(p) = predicate {
                outln!("  dead precondition:  {p}");
            }
            outln!(
                "  {}: {}",
                if *core_minimal {
                    "minimal core"
                } else {
                    "core (not minimal)"
                },
                core.join(", ")
            );
            if !counterexample.is_empty() {
                let ctx: Vec<String> = counterexample
                    .iter()
                    .map(|(a, v)| format!("{a} = {v}"))
                    .collect();
                outln!("  counterexample context: {}", ctx.join(", "));
            }
        }
        Finding::Undecided { detail } => {
            outln!("  undecided: {detail} (bound: {})", rejection.bound)
        }
    }
}

fn print_admission(statement: &Statement, n_predicates: usize, out: &Path) {
    outln!(
        "admitted {} ({n_predicates} predicates) into {}",
        statement.version_id,
        out.display()
    );
    for (check, line) in &statement.proof.checks {
        outln!("  {check:<20} {line}");
    }
    if let Some(manifest) = &statement.manifest {
        outln!("  against manifest sha256:{manifest}");
    }
    outln!(
        "  signed by {} at {}",
        statement.signer,
        statement.admitted_at
    );
}

/// Everything an admission needs.
pub struct AdmitRequest<'a> {
    pub bundle_path: &'a Path,
    pub key: &'a Arc<SigningKey>,
    pub trust: &'a TrustStore,
    pub out: &'a Path,
    pub lineage: Option<&'a Lineage>,
    pub acknowledge: Option<&'a str>,
    /// A training manifest to merge the derived predicates of (`policy admit --manifest`).
    pub manifest: Option<&'a Path>,
    pub bound: Bound,
}

/// The gate's answer: admitted (signed, written and printed), or rejected by a check (recorded).
pub enum Admission {
    Admitted,
    Rejected(String),
}

/// Runs `admission::Workflow` over the output directory and the lineage, and prints. Refusals
/// before the gate (parse errors, untrusted keys, version order, unacknowledged resubmission, an
/// inconsistent directory) are errors; the gate's rejections are recorded and returned.
pub fn admit_bundle(request: &AdmitRequest<'_>) -> anyhow::Result<Admission> {
    let mut bundle = read_bundle(request.bundle_path)?;
    let mut manifest_digest = None;
    if let Some(path) = request.manifest {
        let loaded = load_manifest(path, request.trust)?;
        let origin = format!(
            "{} + predicates derived from {}",
            request.bundle_path.display(),
            path.display()
        );
        bundle = warden_policy::derive::merge(&bundle, &loaded.derived, &origin)?;
        outln!(
            "merged {} predicates derived from {} (sha256:{}) before the gate",
            loaded.derived.predicates.len(),
            path.display(),
            hex::encode(loaded.digest)
        );
        manifest_digest = Some(loaded.digest);
    }
    let files = DirFiles { dir: request.out };
    let log = request.lineage.map(|lineage| LineageLog::Append {
        lineage,
        key: request.key,
    });
    let mut workflow = Workflow::new(
        &files,
        log.as_ref().map(|l| l as _),
        request.key,
        request.trust,
    )?;
    if let Some(digest) = manifest_digest {
        workflow = workflow.with_manifest(digest);
    }
    let outcome = workflow.admit(
        &bundle,
        request.acknowledge,
        &request.bound,
        SystemTime::now(),
    )?;
    match outcome {
        Outcome::Rejected {
            rejection,
            lineage_record,
        } => {
            print_rejection(&rejection);
            if let Some(index) = lineage_record {
                outln!(
                    "  recorded as lineage record {index} ({})",
                    warden_policy::records::REJECTION_KIND
                );
            }
            Ok(Admission::Rejected(rejection.to_string()))
        }
        Outcome::Admitted {
            verified,
            n_predicates,
            lineage_record,
            completed_interrupted,
        } => {
            if completed_interrupted {
                outln!(
                    "completing the interrupted admission of {} (statement from history/, not re-signed)",
                    verified.statement().version_id
                );
            }
            if let Some(index) = lineage_record {
                outln!(
                    "recorded as lineage record {index} ({})",
                    warden_policy::records::ADMISSION_KIND
                );
            }
            print_admission(verified.statement(), n_predicates, request.out);
            Ok(Admission::Admitted)
        }
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    outln!(
        "policy admission (generated consistent bundles; median of {} runs)",
        args.repeats
    );
    outln!(
        "  {:>10} {:>12} {:>10} {:>10} {:>10} {:>8}",
        "predicates",
        "admit ms",
        "vars",
        "clauses",
        "calls",
        "rounds"
    );
    let mut at_1000 = None;
    for &n in &args.sizes {
        let text = warden_policy::generate::consistent_bundle("bench", n, 42);
        let bundle = Bundle::parse(&text, "generated")?;
        let mut times = Vec::new();
        let mut stats = None;
        for _ in 0..args.repeats.max(1) {
            let started = Instant::now();
            let proof = prove(&bundle, &Bound::default())
                .map_err(|r| anyhow::anyhow!("generated bundle rejected: {r}"))?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            stats = Some(proof.stats());
        }
        let ms = median(times);
        if n == 1000 {
            at_1000 = Some(ms);
        }
        if let Some(s) = stats {
            outln!(
                "  {n:>10} {ms:>12.2} {:>10} {:>10} {:>10} {:>8}",
                s.n_vars,
                s.n_clauses,
                s.solver_calls,
                s.refinements
            );
        }
    }
    if let Some(ms) = at_1000 {
        outln!(
            "  admission of 1,000 predicates: {ms:.1} ms (target <= 1000 ms: {})",
            if ms <= 1000.0 { "met" } else { "MISSED" }
        );
    }

    // Evaluation: a signed, verified, compiled bundle, judged on pre-built random transitions.
    let text = warden_policy::generate::consistent_bundle("bench-eval", args.eval_predicates, 7);
    let bundle = Bundle::parse(&text, "generated")?;
    let proof = prove(&bundle, &Bound::default())
        .map_err(|r| anyhow::anyhow!("generated bundle rejected: {r}"))?;
    let key = SigningKey::generate(Role::PolicyAuthority, "bench.policy")?;
    let signed = signing::admit(&bundle, &proof, &key, SystemTime::now(), None)?;
    let mut trust = TrustStore::new();
    trust.add(Role::PolicyAuthority, key.public().clone());
    let admitted = AdmittedBundle::load(signed.to_bytes(), "bench", &trust)?;
    let transitions = random_transitions(&admitted, 1024)?;
    let mut verdicts = [0usize; 3];
    let batch = 1000;
    let mut samples = Vec::with_capacity(args.eval_samples);
    let mut cursor = 0;
    for _ in 0..args.eval_samples.max(1) {
        let started = Instant::now();
        for _ in 0..batch {
            let verdict = evaluate(
                &admitted,
                std::hint::black_box(&transitions[cursor % transitions.len()]),
            );
            verdicts[match verdict {
                Verdict::Admit => 0,
                Verdict::Reject(_) => 1,
                Verdict::Decompose(_) => 2,
            }] += 1;
            cursor += 1;
        }
        samples.push(started.elapsed().as_secs_f64() * 1e9 / batch as f64);
    }
    let mut sorted = samples.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let p99 = sorted
        .get(sorted.len() * 99 / 100)
        .copied()
        .unwrap_or(f64::NAN);
    let med = median(samples);
    outln!(
        "\npolicy evaluation ({} predicates, {} transitions; verdicts admit/reject/decompose = {}/{}/{})",
        args.eval_predicates, cursor, verdicts[0], verdicts[1], verdicts[2]
    );
    outln!(
        "  median {med:.0} ns/transition, p99 {p99:.0} ns (target <= 2000 ns: {})",
        if med <= 2000.0 { "met" } else { "MISSED" }
    );
    Ok(())
}

/// Deterministic pseudo-random transitions over the bundle's vocabulary: random contexts; for
/// half of them the outputs are the admission witness's (which mostly pass), for the other half
/// random (which mostly fail), so every verdict and both evaluation paths are exercised.
fn random_transitions(
    bundle: &AdmittedBundle,
    n: usize,
) -> anyhow::Result<Vec<warden_policy::Transition>> {
    use warden_policy::types::AttrType;
    let vocab = &bundle.verified().bundle().vocabulary;
    let witness = &bundle.verified().statement().proof.witness;
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut out = Vec::with_capacity(n);
    for idx in 0..n {
        let mut builder = bundle.transition();
        for attr in &vocab.attributes {
            let r = next();
            let from_witness = match witness.get(&attr.name) {
                Some(value) if idx % 2 == 0 && !attr.context => Some(value),
                _ => None,
            };
            let value = match (&attr.ty, from_witness) {
                (_, Some(serde_json::Value::String(text))) => text.clone(),
                (_, Some(serde_json::Value::Number(number))) => number.to_string(),
                (_, Some(serde_json::Value::Array(items))) => items
                    .iter()
                    .filter_map(|item| item.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                (ty, _) => match ty {
                    AttrType::Enum(values) => values[(r % values.len() as u64) as usize].clone(),
                    AttrType::Int { lo, hi } => {
                        let span = ((hi - lo) as u64 / if attr.context { 1 } else { 8 }).max(1);
                        (lo + (r % (span + 1)) as i64).to_string()
                    }
                    AttrType::Set(elements) => elements
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| (r >> i) & 1 == 1 && r % 4 == 0)
                        .map(|(_, e)| e.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                },
            };
            builder = builder.set(&attr.name, &value)?;
        }
        out.push(builder.build()?);
    }
    Ok(out)
}

/// The demo's sample bundle: the issue's example, extended.
const SAMPLE: &str = r#"# The support assistant's policy: who may get what, and what no output may contain.
[bundle]
name = "support-assistant"
version = 1

[vocabulary]
"caller.tier"    = { enum = ["anonymous", "free", "verified", "internal"], context = true }
"caller.trust"   = { int = [0, 100], context = true }
"request.domain" = { enum = ["general", "medical", "legal"], context = true }
"output.tokens"  = { int = [0, 8192] }
"output.classes" = { set = ["pii", "medical-advice", "violence"] }
"output.verbatim_run" = { int = [0, 8192] }

[[predicate]]
id = "structural.max-length"
category = "structural"
require = "output.tokens <= 1024"

[[predicate]]
id = "safety.no-pii"
category = "safety"
require = "not (output.classes contains 'pii')"

[[predicate]]
id = "safety.no-violence"
category = "safety"
require = "not (output.classes contains 'violence')"

[[predicate]]
id = "domain.medical-needs-verified"
category = "domain"
weight = "advisory"
when = "request.domain == 'medical'"
require = "caller.tier in ['verified', 'internal'] or output.tokens <= 64"

[[predicate]]
id = "domain.advice-only-in-medical"
category = "domain"
when = "output.classes contains 'medical-advice'"
require = "request.domain == 'medical' and caller.tier != 'anonymous'"

[[predicate]]
id = "task.anonymous-short"
category = "task"
when = "caller.tier == 'anonymous'"
require = "output.tokens <= 256"

[[predicate]]
id = "task.verbatim-cap"
category = "task"
require = "output.verbatim_run * 4 <= output.tokens + 200 - caller.trust"
"#;

pub fn demo_stage(ctx: &mut super::demo::DemoContext) -> anyhow::Result<()> {
    super::demo::heading(
        "policy: admit a bundle, reject contradictory ones with minimal cores, version, evaluate",
    );
    let dir = ctx.dir.join("policy");
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let sample_path = dir.join("support-assistant.toml");
    fs::atomic_write(&sample_path, SAMPLE.as_bytes())?;
    let out = dir.join("admitted");
    let request = |path: &Path, ack: Option<&'static str>| -> anyhow::Result<Admission> {
        admit_bundle(&AdmitRequest {
            bundle_path: path,
            key: &ctx.keys.policy,
            trust: &ctx.trust,
            out: &out,
            lineage: Some(ctx.lineage()?),
            acknowledge: ack,
            manifest: None,
            bound: Bound::default(),
        })
    };
    outln!(
        "$ warden policy admit {} --key {} --out {} --trust {}",
        sample_path.display(),
        ctx.key_paths.policy.display(),
        out.display(),
        ctx.trust_path.display()
    );
    if let Admission::Rejected(message) = request(&sample_path, None)? {
        anyhow::bail!("the demo's sample bundle was rejected: {message}")
    }

    // Version 2 adds a minimum length that contradicts the structural maximum.
    let contradictory = SAMPLE.replace("version = 1", "version = 2\nsucceeds = 1")
        + "\n[[predicate]]\nid = \"task.thorough-answers\"\ncategory = \"task\"\nrequire = \"output.tokens >= 2048\"\n";
    let contradictory_path = dir.join("contradictory.toml");
    fs::atomic_write(&contradictory_path, contradictory.as_bytes())?;
    outln!(
        "\n$ warden policy admit {} ...   (adds `output.tokens >= 2048`)",
        contradictory_path.display()
    );
    if let Admission::Admitted = request(&contradictory_path, None)? {
        anyhow::bail!("a contradictory bundle was admitted");
    }
    outln!(
        "\n$ warden policy admit {} ...   (again, unchanged)",
        contradictory_path.display()
    );
    match request(&contradictory_path, None) {
        Err(err) => outln!("refused: {err:#}"),
        Ok(_) => {
            anyhow::bail!("an unchanged rejected bundle was resubmitted without --acknowledge")
        }
    }

    // Version 2 again, with a context nobody can serve: anonymous legal requests.
    let stranded = SAMPLE.replace("version = 1", "version = 2\nsucceeds = 1")
        + "\n[[predicate]]\nid = \"domain.legal-needs-citations\"\ncategory = \"domain\"\nwhen = \"request.domain == 'legal'\"\nrequire = \"output.tokens >= 300\"\n";
    let stranded_path = dir.join("stranded.toml");
    fs::atomic_write(&stranded_path, stranded.as_bytes())?;
    outln!(
        "\n$ warden policy admit {} ...   (legal answers need >= 300 tokens)",
        stranded_path.display()
    );
    if let Admission::Admitted = request(&stranded_path, None)? {
        anyhow::bail!("a bundle with a stranded context was admitted");
    }

    // The fix: long legal answers for identified callers only. Version 2 succeeds version 1.
    let fixed = stranded.replace(
        "when = \"request.domain == 'legal'\"",
        "when = \"request.domain == 'legal' and caller.tier != 'anonymous'\"",
    );
    let fixed_path = dir.join("support-assistant-v2.toml");
    fs::atomic_write(&fixed_path, fixed.as_bytes())?;
    outln!(
        "\n$ warden policy admit {} ...   (legal rule for identified callers only)",
        fixed_path.display()
    );
    if let Admission::Rejected(message) = request(&fixed_path, None)? {
        anyhow::bail!("the fixed version 2 was rejected: {message}")
    }
    let fork = fixed.replace("version = 2\nsucceeds = 1", "version = 3\nsucceeds = 1");
    let fork_path = dir.join("fork.toml");
    fs::atomic_write(&fork_path, fork.as_bytes())?;
    outln!(
        "\n$ warden policy admit {} ...   (version 3 claiming to succeed version 1)",
        fork_path.display()
    );
    match request(&fork_path, None) {
        Err(err) => outln!("refused: {err:#}"),
        Ok(_) => anyhow::bail!("a fork of the version history was accepted"),
    }

    outln!(
        "\n$ warden policy eval {} --trust {} --lineage {} --set ...",
        out.display(),
        ctx.trust_path.display(),
        ctx.lineage_dir.display()
    );
    let log = LineageLog::Append {
        lineage: ctx.lineage()?,
        key: &ctx.keys.policy,
    };
    let admitted = load_admitted(&out, &ctx.trust, Some(&log))?;
    let cases: [(&str, &[(&str, &str)]); 4] = [
        (
            "verified medical answer, 400 tokens",
            &[
                ("caller.tier", "verified"),
                ("request.domain", "medical"),
                ("output.tokens", "400"),
                ("output.classes", "medical-advice"),
            ],
        ),
        (
            "free medical answer, 400 tokens",
            &[
                ("caller.tier", "free"),
                ("request.domain", "medical"),
                ("output.tokens", "400"),
                ("output.classes", ""),
            ],
        ),
        (
            "general answer leaking pii",
            &[
                ("caller.tier", "internal"),
                ("request.domain", "general"),
                ("output.tokens", "120"),
                ("output.classes", "pii"),
            ],
        ),
        (
            "anonymous, 5000 tokens",
            &[
                ("caller.tier", "anonymous"),
                ("request.domain", "general"),
                ("output.tokens", "5000"),
                ("output.classes", ""),
            ],
        ),
    ];
    for (label, values) in cases {
        let mut builder = admitted
            .transition()
            .set("caller.trust", "60")?
            .set("output.verbatim_run", "10")?;
        for (name, value) in values {
            builder = builder.set(name, value)?;
        }
        let verdict = evaluate(&admitted, &builder.build()?);
        outln!("  {label:<40} -> {}", describe_verdict(&verdict));
    }
    Ok(())
}
