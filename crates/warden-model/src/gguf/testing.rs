//! Test support: writes a tiny llama-family GGUF file with **random weights** (deterministic
//! from a seed) and a small byte-level BPE tokenizer in its metadata, so tests of anything that
//! loads GGUF models (this crate's, the CLI's) need no download. The model's output is
//! meaningless text; it exists to exercise loading, tokenizing, the KV cache and the loop.
//!
//! Vocabulary: ids `0..3` are the control tokens `<|endoftext|>` (0), `<|im_start|>` (1, bos)
//! and `<|im_end|>` (2, eos); then the 256 GPT-2 byte tokens ([`byte_id`]), then one token per
//! entry of [`MERGES`] ([`merged_id`]). The chat template is SmolLM2's (ChatML).

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::ModelError;

/// Embedding width.
pub const EMBD: usize = 32;
pub const N_HEAD: u32 = 4;
pub const N_KV_HEAD: u32 = 2;
pub const FF: usize = 64;
pub const N_LAYERS: usize = 2;
/// The default `llama.context_length`.
pub const CONTEXT: u32 = 48;
/// Control tokens before the byte tokens.
pub const N_SPECIAL: u32 = 3;
/// Merges in rank order; each merged token gets the next id after the 256 byte tokens.
pub const MERGES: [(&str, &str); 6] = [
    ("h", "e"),
    ("l", "l"),
    ("he", "ll"),
    ("Ġ", "w"),
    ("o", "r"),
    ("1", "2"),
];

/// SmolLM2-135M-Instruct's chat template.
pub const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Whether the file has its own output projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputWeight {
    /// No `output.weight`: the loader must tie it to `token_embd.weight`.
    Absent,
    /// `output.weight` present, equal to `token_embd.weight`.
    CopyOfEmbedding,
    /// `output.weight` present with its own values.
    Own,
}

/// What to write.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub output: OutputWeight,
    /// `tokenizer.ggml.model` (`gpt2`; anything else is refused by the loader).
    pub tokenizer_model: &'static str,
    pub chat_template: &'static str,
    /// Seed of the random weights.
    pub seed: u64,
    /// `llama.context_length` ([`CONTEXT`] by default; SmolLM2's chat template alone is about
    /// 30 tokens, so chat prompts need more).
    pub context_length: u32,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            output: OutputWeight::Own,
            tokenizer_model: "gpt2",
            chat_template: SMOLLM2_TEMPLATE,
            seed: 7,
            context_length: CONTEXT,
        }
    }
}

/// GPT-2's byte-level alphabet, written out independently of the crate's table.
fn byte_char(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(byte) {
        char::from(byte)
    } else {
        let rank = (0..byte).filter(|&b| !printable(b)).count() as u32;
        // 256..512 are all Unicode scalar values.
        char::from_u32(256 + rank).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

/// The id of the token for `byte`.
pub fn byte_id(byte: u8) -> u32 {
    N_SPECIAL + u32::from(byte)
}

/// The id of the token made by `MERGES[merge_idx]`.
pub fn merged_id(merge_idx: usize) -> u32 {
    N_SPECIAL + 256 + merge_idx as u32
}

fn tokens() -> Vec<String> {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    tokens.extend((0..=255u8).map(|b| byte_char(b).to_string()));
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    tokens
}

/// Deterministic values in [-scale, scale) (splitmix64).
fn values(seed: &mut u64, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = *seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn qtensor(data: Vec<f32>, shape: &[usize], dtype: GgmlDType) -> Result<QTensor, ModelError> {
    let tensor = Tensor::from_vec(data, shape, &Device::Cpu)?;
    Ok(QTensor::quantize(&tensor, dtype)?)
}

/// Writes the tiny random-weight model `spec` describes to `path`.
pub fn write_tiny_gguf(path: &Path, spec: &TinySpec) -> Result<(), ModelError> {
    let tokens = tokens();
    let n_vocab = tokens.len();
    let mut token_types = vec![gguf_file::Value::I32(3); N_SPECIAL as usize];
    token_types.resize(n_vocab, gguf_file::Value::I32(1));
    let u32v = gguf_file::Value::U32;
    let metadata: Vec<(&str, gguf_file::Value)> = vec![
        (
            "general.architecture",
            gguf_file::Value::String("llama".into()),
        ),
        ("llama.block_count", u32v(N_LAYERS as u32)),
        ("llama.context_length", u32v(spec.context_length)),
        ("llama.embedding_length", u32v(EMBD as u32)),
        ("llama.feed_forward_length", u32v(FF as u32)),
        ("llama.attention.head_count", u32v(N_HEAD)),
        ("llama.attention.head_count_kv", u32v(N_KV_HEAD)),
        ("llama.rope.dimension_count", u32v(EMBD as u32 / N_HEAD)),
        ("llama.rope.freq_base", gguf_file::Value::F32(10000.0)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            gguf_file::Value::F32(1e-5),
        ),
        (
            "tokenizer.ggml.model",
            gguf_file::Value::String(spec.tokenizer_model.into()),
        ),
        (
            "tokenizer.ggml.tokens",
            gguf_file::Value::Array(tokens.into_iter().map(gguf_file::Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            gguf_file::Value::Array(token_types),
        ),
        (
            "tokenizer.ggml.merges",
            gguf_file::Value::Array(
                MERGES
                    .iter()
                    .map(|(a, b)| gguf_file::Value::String(format!("{a} {b}")))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id", u32v(1)),
        ("tokenizer.ggml.eos_token_id", u32v(2)),
        (
            "tokenizer.chat_template",
            gguf_file::Value::String(spec.chat_template.into()),
        ),
    ];

    let mut seed = spec.seed;
    let kv_dim = EMBD / N_HEAD as usize * N_KV_HEAD as usize;
    let norm = |seed: &mut u64| {
        let data = values(seed, EMBD, 0.2).iter().map(|v| 1.0 + v).collect();
        qtensor(data, &[EMBD], GgmlDType::F32)
    };
    let matrix = |seed: &mut u64, rows: usize, cols: usize| {
        let data = values(seed, rows * cols, 1.0 / (cols as f32).sqrt() * 1.7);
        qtensor(data, &[rows, cols], GgmlDType::Q8_0)
    };
    let embedding = values(&mut seed, n_vocab * EMBD, 1.0);
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            qtensor(embedding.clone(), &[n_vocab, EMBD], GgmlDType::Q8_0)?,
        ),
        ("output_norm.weight".into(), norm(&mut seed)?),
    ];
    match spec.output {
        OutputWeight::Absent => {}
        OutputWeight::CopyOfEmbedding => tensors.push((
            "output.weight".into(),
            qtensor(embedding, &[n_vocab, EMBD], GgmlDType::Q8_0)?,
        )),
        OutputWeight::Own => {
            tensors.push(("output.weight".into(), matrix(&mut seed, n_vocab, EMBD)?))
        }
    }
    for layer_idx in 0..N_LAYERS {
        let name = |part: &str| format!("blk.{layer_idx}.{part}.weight");
        tensors.push((name("attn_norm"), norm(&mut seed)?));
        tensors.push((name("attn_q"), matrix(&mut seed, EMBD, EMBD)?));
        tensors.push((name("attn_k"), matrix(&mut seed, kv_dim, EMBD)?));
        tensors.push((name("attn_v"), matrix(&mut seed, kv_dim, EMBD)?));
        tensors.push((name("attn_output"), matrix(&mut seed, EMBD, EMBD)?));
        tensors.push((name("ffn_norm"), norm(&mut seed)?));
        tensors.push((name("ffn_gate"), matrix(&mut seed, FF, EMBD)?));
        tensors.push((name("ffn_up"), matrix(&mut seed, FF, EMBD)?));
        tensors.push((name("ffn_down"), matrix(&mut seed, EMBD, FF)?));
    }

    let metadata_refs: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let fail = |reason: String| ModelError::Gguf {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = std::fs::File::create(path)
        .map_err(|err| fail(format!("cannot create the file: {err}")))?;
    gguf_file::write(&mut file, &metadata_refs, &tensor_refs)
        .map_err(|err| fail(format!("cannot write the model: {err}")))?;
    Ok(())
}
