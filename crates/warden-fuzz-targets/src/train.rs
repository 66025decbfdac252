//! Targets for the training inputs: config and policy TOML, canaries, safetensors checkpoints.

use std::collections::BTreeMap;
use std::path::Path;

use warden_corpus::synth::Canary;
use warden_train::config::TrainConfig;
use warden_train::io::{read_safetensors, safetensors_bytes};
use warden_train::model::{Gpt, ModelConfig};
use warden_train::policy::TrainingPolicy;

use crate::{scratch_dir, write_scratch, Outcome};

/// Models larger than this are not built by the harness (the config parser accepts them; the
/// trainer would allocate them): region lists and model loads stay cheap.
const MAX_HARNESS_LAYERS: usize = 64;

/// Input: a training config (`warden train CONFIG`).
///
/// A config that parses has a canonical text (`config.toml` in the run directory, digested into
/// every record) that parses and validates again to the same canonical text; its policy
/// resolves against the model's regions or is refused, never panics.
pub fn config(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Rejected;
    };
    let base = Path::new("/fuzz-base");
    let Ok(config) = TrainConfig::parse(text, "fuzz.toml", base) else {
        return Outcome::Rejected;
    };
    let canonical = match config.to_toml() {
        Ok(canonical) => canonical,
        Err(e) => panic!("a parsed config has no canonical text: {e}"),
    };
    let again = match TrainConfig::parse(&canonical, "config.toml", base) {
        Ok(again) => again,
        Err(e) => panic!("the canonical text of a parsed config does not parse: {e}\n{canonical}"),
    };
    assert_eq!(
        again.to_toml().ok().as_deref(),
        Some(canonical.as_str()),
        "the canonical config text is not a fixed point"
    );
    if config.model.layers <= MAX_HARNESS_LAYERS {
        let _ = config.policy.resolve(&config.model.regions());
    }
    Outcome::Accepted
}

/// Input: a training policy, the `[policy]` table on its own (`train resume --policy FILE`).
///
/// A parsed policy written as the run directory writes `policy.toml` parses again to the same
/// text; resolving it against a two-layer model gives a result or an error, never a panic.
pub fn policy(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Rejected;
    };
    let Ok(policy) = TrainingPolicy::parse(text, "fuzz-policy.toml") else {
        return Outcome::Rejected;
    };
    let written = match toml::to_string(&policy) {
        Ok(written) => written,
        Err(e) => panic!("a parsed policy cannot be written as policy.toml: {e}"),
    };
    let again = match TrainingPolicy::parse(&written, "policy.toml") {
        Ok(again) => again,
        Err(e) => panic!("policy.toml as written does not parse: {e}\n{written}"),
    };
    assert_eq!(
        toml::to_string(&again).ok().as_deref(),
        Some(written.as_str()),
        "policy.toml is not a fixed point"
    );
    let model = ModelConfig {
        layers: 2,
        width: 8,
        heads: 2,
        context: 8,
    };
    match policy.resolve(&model.regions()) {
        Ok(_) => Outcome::Accepted,
        Err(_) => Outcome::Rejected,
    }
}

/// Input: `canaries.json` as `warden corpus synth` writes it (read by the evaluation gate).
///
/// The training reader and the full synth form agree on the number of canaries; the synth form
/// round-trips through its JSON encoding.
pub fn canaries(data: &[u8]) -> Outcome {
    if let Ok(full) = serde_json::from_slice::<Vec<Canary>>(data) {
        let again: Vec<Canary> = match serde_json::to_vec(&full) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(e) => panic!("canaries do not encode: {e}"),
        };
        assert_eq!(again, full, "canaries JSON round trip changed them");
    }
    let dir = scratch_dir();
    let path = dir.path().join("canaries.json");
    write_scratch(&path, data);
    match warden_train::admitted::load_canaries(&path) {
        Ok(loaded) => {
            if let Ok(full) = serde_json::from_slice::<Vec<Canary>>(data) {
                assert_eq!(loaded.len(), full.len());
            }
            Outcome::Accepted
        }
        Err(_) => Outcome::Rejected,
    }
}

thread_local! {
    /// The model shape of the seed checkpoints (`fuzz/corpus/train_checkpoint`).
    static MODEL: Option<Gpt> = Gpt::new(
        &ModelConfig { layers: 1, width: 8, heads: 2, context: 8 },
        0,
    )
    .ok();
}

/// Input: a safetensors file (a training checkpoint or `model.safetensors`).
///
/// Tensors that read write back through the one canonical writer, and that output reads and
/// writes again to the same bytes with the same metadata. Loading the parameters into a model
/// of the seeds' shape succeeds or is refused, never panics.
pub fn checkpoint(data: &[u8]) -> Outcome {
    let Ok((tensors, metadata)) = read_safetensors(data, "fuzz.safetensors") else {
        return Outcome::Rejected;
    };
    let Ok(written) = safetensors_bytes(&tensors, &metadata) else {
        // Tensors of a dtype that does not convert to f32 are refused by the writer.
        return Outcome::Rejected;
    };
    let (tensors_again, metadata_again) = match read_safetensors(&written, "written") {
        Ok(read) => read,
        Err(e) => panic!("the canonical writer's output does not read back: {e}"),
    };
    assert_eq!(
        metadata_again, metadata,
        "metadata changed through the writer"
    );
    let again = match safetensors_bytes(&tensors_again, &metadata_again) {
        Ok(again) => again,
        Err(e) => panic!("re-read tensors do not write again: {e}"),
    };
    assert_eq!(again, written, "the canonical writer is not a fixed point");
    // Checkpoints name parameters `param.<name>`; model files name them `<name>`.
    let params: BTreeMap<_, _> = tensors
        .iter()
        .map(|(name, t)| {
            (
                name.strip_prefix("param.").unwrap_or(name).to_string(),
                t.clone(),
            )
        })
        .collect();
    MODEL.with(|model| {
        if let Some(model) = model {
            let _ = model.load(&params);
        }
    });
    Outcome::Accepted
}
