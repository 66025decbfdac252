//! `GovernedRun::load` on a real tiny run (admitted corpus with an excluded class, four training
//! steps, a signed manifest and lineage): the honest run loads; each tampering is refused naming
//! what did not match.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use warden_decode::load::{GovernedRun, LoadError, LoadOptions};
use warden_keys::{Role, SigningKey, TrustStore};

const DECLARATION: &str = r#"
[corpus]
name = "tiny"
description = "load fixture"

[policy]
admitted_licenses = ["CC0-1.0", "MIT"]
excluded_classes = ["secret"]

[[source]]
id = "prose"
path = "prose.txt"
format = "text"
license = "CC0-1.0"
class = "public-domain"
depth = "deep"
provenance = { origin = "test", collected = "2026-12-01", collector = "test", notes = "" }

[[source]]
id = "notes"
path = "notes.txt"
format = "text"
license = "MIT"
class = "notes"
depth = "shallow"
provenance = { origin = "test", collected = "2026-12-01", collector = "test", notes = "" }

[[source]]
id = "vault"
path = "vault.txt"
format = "text"
license = "CC0-1.0"
class = "secret"
depth = "deep"
provenance = { origin = "test", collected = "2026-12-01", collector = "test", notes = "" }
"#;

const CONFIG: &str = r#"corpus = "admitted"
seed = 11
steps = 4
batch_size = 4

[model]
layers = 1
width = 16
heads = 2
context = 32

[optimizer]
learning_rate = 0.01

[policy]
version = "train-v1"
failure = "halt"
checkpoint_every = 3
lineage = { cadence = "step" }

[[policy.regions]]
match = "*"
max_norm = 5.0
"#;

const VAULT: &str = "the launch code for the northern silo is kept under the third loose brick";

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

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    run: PathBuf,
    trust: TrustStore,
    corpus_key: SigningKey,
    /// A copy of the lineage taken after two iterations (a rollback below the manifest's size).
    early_lineage: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let src = root.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("prose.txt"), paragraphs("prose", 24)).unwrap();
    std::fs::write(src.join("notes.txt"), paragraphs("note", 12)).unwrap();
    std::fs::write(src.join("vault.txt"), VAULT).unwrap();
    std::fs::write(src.join("declaration.toml"), DECLARATION).unwrap();
    let corpus_key = SigningKey::from_seed(Role::CorpusAuthority, "corpus", &[7; 32]).unwrap();
    let training_key = SigningKey::from_seed(Role::TrainingAuthority, "trainer", &[8; 32]).unwrap();
    let mut trust = TrustStore::new();
    trust.add(Role::CorpusAuthority, corpus_key.public().clone());
    trust.add(Role::TrainingAuthority, training_key.public().clone());
    warden_corpus::admit(
        &src.join("declaration.toml"),
        &root.join("admitted"),
        &corpus_key,
        &warden_corpus::AdmitOptions::default(),
    )
    .unwrap();
    std::fs::write(root.join("config.toml"), CONFIG).unwrap();
    let run = root.join("run");
    let early_lineage = root.join("early-lineage");
    let lineage = run.join("lineage");
    warden_train::run::start(
        &root.join("config.toml"),
        &run,
        Arc::new(training_key),
        &trust,
        None,
        &mut |t: &warden_train::trainer::Trainer, _| {
            if t.iteration() == 2 {
                copy_dir(&lineage, &early_lineage);
            }
        },
    )
    .unwrap();
    Fixture {
        _dir: dir,
        root,
        run,
        trust,
        corpus_key,
        early_lineage,
    }
}

fn load(f: &Fixture) -> Result<GovernedRun, LoadError> {
    GovernedRun::load(&f.run, &f.trust, LoadOptions::default())
}

/// Runs `check` with `path` holding `bytes`, then puts the original back.
fn with_file(path: &Path, bytes: &[u8], check: impl FnOnce()) {
    let original = std::fs::read(path).unwrap();
    std::fs::write(path, bytes).unwrap();
    check();
    std::fs::write(path, original).unwrap();
}

fn refusal(f: &Fixture) -> String {
    match load(f) {
        Ok(_) => panic!("a tampered run loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_governed_run_loads_only_when_everything_verifies() {
    let f = fixture();

    // The honest run loads, with its fingerprints, deny index and flaggers.
    let run = load(&f).unwrap();
    let manifest_bytes = std::fs::read(f.run.join("manifest.intoto.json")).unwrap();
    assert_eq!(
        run.manifest_digest,
        <[u8; 32]>::from(Sha256::digest(&manifest_bytes))
    );
    assert_eq!(
        run.manifest["model"]["parameter_digest"].as_str().unwrap(),
        hex::encode(run.gpt.digest().unwrap())
    );
    assert_eq!(run.model_config.width, 16);
    assert_eq!(
        run.fingerprints.keys().collect::<Vec<_>>(),
        ["notes", "public-domain"]
    );
    assert_eq!(run.denied.keys().collect::<Vec<_>>(), ["secret"]);
    let (total, hits) = run.denied["secret"].overlap(VAULT);
    assert!(total > 0 && hits == total);
    assert_eq!(run.fingerprints["public-domain"].overlap(VAULT).1, 0);
    assert!(run.flaggers.email && run.flaggers.phone && run.flaggers.card);

    // One byte of the weights flipped: refused naming the model digest.
    let model = f.run.join("model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    with_file(&model, &bytes, || {
        let err = refusal(&f);
        assert!(
            err.contains("model.safetensors") && err.contains("model digest mismatch"),
            "{err}"
        );
    });

    // One byte of the manifest changed (inside the signed payload): the signature fails.
    let manifest = f.run.join("manifest.intoto.json");
    let text = String::from_utf8(manifest_bytes.clone()).unwrap();
    let at = text.find("\"payload\": \"").unwrap() + "\"payload\": \"".len() + 40;
    let mut tampered = text.clone().into_bytes();
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    with_file(&manifest, &tampered, || {
        let err = refusal(&f);
        assert!(
            err.contains("manifest.intoto.json") && err.contains("does not verify"),
            "{err}"
        );
    });

    // The same statement signed by a key the trust file trusts only as corpus authority.
    let envelope = warden_attest::Envelope::from_json(&text).unwrap();
    let statement = warden_attest::verify_envelope(&envelope, &f.trust, Role::TrainingAuthority)
        .unwrap()
        .statement;
    let relabelled = SigningKey::from_seed(Role::TrainingAuthority, "corpus", &[7; 32]).unwrap();
    assert_eq!(relabelled.key_ref(), f.corpus_key.key_ref());
    let forged = warden_attest::sign_statement(&statement, &relabelled).to_json_pretty();
    with_file(&manifest, forged.as_bytes(), || {
        let err = refusal(&f);
        assert!(
            err.contains("training-authority") && err.contains("only as: corpus-authority"),
            "{err}"
        );
    });

    // A lineage rolled back below the manifest's size.
    let err = GovernedRun::load(
        &f.run,
        &f.trust,
        LoadOptions {
            lineage: Some(f.early_lineage.clone()),
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("early-lineage") && err.contains("fewer than the manifest's lineage size"),
        "{err}"
    );
    // The override is honoured: a full copy of the lineage elsewhere verifies.
    let copy = f.root.join("lineage-copy");
    copy_dir(&f.run.join("lineage"), &copy);
    GovernedRun::load(
        &f.run,
        &f.trust,
        LoadOptions {
            lineage: Some(copy),
        },
    )
    .unwrap();

    // A swapped admitted fingerprint file, then a swapped deny file.
    let admitted = f.root.join("admitted");
    let notes_fp = std::fs::read(admitted.join("fingerprints/notes.fp")).unwrap();
    with_file(
        &admitted.join("fingerprints/public-domain.fp"),
        &notes_fp,
        || {
            let err = refusal(&f);
            assert!(
                err.contains("fingerprints/public-domain.fp")
                    && err.contains("modified after admission"),
                "{err}"
            );
        },
    );
    with_file(
        &admitted.join("fingerprints/denied/secret.fp"),
        &notes_fp,
        || {
            let err = refusal(&f);
            assert!(
                err.contains("fingerprints/denied/secret.fp")
                    && err.contains("modified after admission"),
                "{err}"
            );
        },
    );

    // And everything put back loads again.
    load(&f).unwrap();
}
