//! Llama-family GGUF models: candle-transformers' quantized llama on the CPU, with the tokenizer
//! and chat template the file's own metadata describes, behind [`LanguageModel`].

mod chat;
mod tokenizer;

use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::quantized_llama::{ModelWeights, MAX_SEQ_LEN};
use tokenizers::Tokenizer;

use crate::{LanguageModel, ModelError};
use chat::ChatFormat;
use tokenizer::{integer, string_key};

/// A loaded GGUF model and the state of the one sequence it is running.
pub struct GgufModel {
    path: PathBuf,
    weights: ModelWeights,
    tokenizer: Tokenizer,
    /// The same tokenizer with control-token text encoded as plain text (for caller content).
    literal_tokenizer: Tokenizer,
    token_bytes: Vec<Vec<u8>>,
    bos: Option<u32>,
    eos: Option<u32>,
    context_limit: usize,
    chat: Result<ChatFormat, String>,
    /// Tokens in the KV cache; 0 before `start`.
    n_cached: usize,
}

impl GgufModel {
    /// Loads a llama-family GGUF file: weights, tokenizer, chat template. A file without
    /// `output.weight` ties the output projection to `token_embd.weight` (what candle-transformers
    /// does when the tensor is absent; SmolLM2 is such a file).
    pub fn load(path: &Path) -> Result<GgufModel, ModelError> {
        let fail = |reason: String| ModelError::Gguf {
            path: path.to_path_buf(),
            reason,
        };
        let mut file =
            File::open(path).map_err(|err| fail(format!("cannot open the file: {err}")))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|err| fail(format!("not a readable GGUF file: {err}")))?;
        let file_len = file
            .metadata()
            .map_err(|err| fail(format!("cannot read the file's length: {err}")))?
            .len();

        let architecture = string_key(&content.metadata, "general.architecture").map_err(&fail)?;
        if architecture != "llama" {
            return Err(fail(format!(
                "general.architecture is '{architecture}'; only 'llama' models are supported"
            )));
        }
        let tokenizer = tokenizer::from_metadata(&content.metadata).map_err(&fail)?;
        let n_tokens = tokenizer.token_bytes.len();
        check_tensors(&content, file_len, n_tokens).map_err(&fail)?;
        let context_length = content
            .metadata
            .get("llama.context_length")
            .and_then(integer)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                fail("llama.context_length is missing or not a positive integer".into())
            })?;
        let chat = match content.metadata.get("tokenizer.chat_template") {
            None => Err("(no tokenizer.chat_template in the file)".to_string()),
            Some(gguf_file::Value::String(template)) => chat::parse_chat_template(template),
            Some(_) => Err("(tokenizer.chat_template is not a string)".to_string()),
        };
        let weights = ModelWeights::from_gguf(content, &mut file, &Device::Cpu)
            .map_err(|err| fail(format!("cannot build the llama weights: {err}")))?;
        let mut literal_tokenizer = tokenizer.tokenizer.clone();
        literal_tokenizer.set_encode_special_tokens(true);
        Ok(GgufModel {
            path: path.to_path_buf(),
            weights,
            tokenizer: tokenizer.tokenizer,
            literal_tokenizer,
            token_bytes: tokenizer.token_bytes,
            bos: tokenizer.bos,
            eos: tokenizer.eos,
            // candle's rotary tables stop at MAX_SEQ_LEN positions, whatever the file declares.
            context_limit: context_length.min(MAX_SEQ_LEN),
            chat,
            n_cached: 0,
        })
    }

    /// The file this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The beginning-of-sequence token, if the file names one. Chat prompts carry it through the
    /// template already; `encode` never adds it.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The prompt text for a conversation of `(role, content)` messages, rendered with the
    /// model's chat template and the assistant turn opened (`add_generation_prompt`). Encode it
    /// with [`LanguageModel::encode`]; the template's control tokens come out as single ids.
    /// Refuses a template Warden cannot render exactly (only the ChatML family is supported),
    /// naming the template's first line.
    pub fn chat_prompt(&self, messages: &[(&str, &str)]) -> Result<String, ModelError> {
        Ok(chat::render(self.chat_format()?, messages))
    }

    /// The token ids of [`GgufModel::chat_prompt`], with roles and contents encoded as plain
    /// text: a message containing `<|im_end|>` cannot close its turn or open another one, as it
    /// would through `encode(&chat_prompt(..))`. Use this for untrusted messages.
    pub fn chat_prompt_ids(&self, messages: &[(&str, &str)]) -> Result<Vec<u32>, ModelError> {
        // Adjacent pieces of one kind are encoded together, as one rendered string would be.
        let mut runs: Vec<(bool, String)> = Vec::new();
        for piece in chat::pieces(self.chat_format()?, messages) {
            let (text, is_markup) = match piece {
                chat::Piece::Markup(text) => (text, true),
                chat::Piece::Text(text) => (text, false),
            };
            match runs.last_mut() {
                Some((run_is_markup, run)) if *run_is_markup == is_markup => run.push_str(text),
                _ => runs.push((is_markup, text.to_string())),
            }
        }
        let mut ids = Vec::new();
        for (is_markup, run) in &runs {
            ids.extend(self.encode_with(run, *is_markup)?);
        }
        Ok(ids)
    }

    fn chat_format(&self) -> Result<&ChatFormat, ModelError> {
        self.chat.as_ref().map_err(|first_line| ModelError::Gguf {
            path: self.path.clone(),
            reason: format!(
                "unsupported chat template (only ChatML is supported); it begins: {first_line}"
            ),
        })
    }

    fn encode_with(&self, text: &str, control_tokens: bool) -> Result<Vec<u32>, ModelError> {
        let tokenizer = if control_tokens {
            &self.tokenizer
        } else {
            &self.literal_tokenizer
        };
        let encoding = tokenizer.encode(text, false).map_err(|err| {
            ModelError::Invalid(format!(
                "cannot tokenize the prompt with {}'s tokenizer: {err}",
                self.path.display()
            ))
        })?;
        Ok(encoding.get_ids().to_vec())
    }

    fn forward(&mut self, tokens: &[u32], index_pos: usize) -> Result<Vec<f32>, ModelError> {
        let n_vocab = self.token_bytes.len();
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(ModelError::Invalid(format!(
                "token id {bad} is outside the model's {n_vocab} tokens"
            )));
        }
        let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        let logits = self.weights.forward(&input, index_pos)?;
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
    }
}

/// Checks, before any weight is read, that the tensors the llama loader needs are present, that
/// every tensor's data lies inside the file, and that the vocabulary sizes agree. The loader
/// would otherwise fall back silently to tied output weights when `output.weight` is present
/// but unreadable (candle-transformers treats any read error as "absent").
fn check_tensors(
    content: &gguf_file::Content,
    file_len: u64,
    n_tokens: usize,
) -> Result<(), String> {
    for (name, info) in &content.tensor_infos {
        let block_size = info.ggml_dtype.block_size();
        let n_elems = info.shape.elem_count();
        if block_size == 0 || !n_elems.is_multiple_of(block_size) {
            return Err(format!(
                "tensor {name} has {n_elems} elements, not a whole number of {:?} blocks",
                info.ggml_dtype
            ));
        }
        let n_bytes = (n_elems / block_size) as u64 * info.ggml_dtype.type_size() as u64;
        let end = content
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|start| start.checked_add(n_bytes));
        if end.is_none_or(|end| end > file_len) {
            return Err(format!(
                "tensor {name} needs {n_bytes} bytes at offset {} but the file is {file_len} bytes long (truncated?)",
                content.tensor_data_offset.saturating_add(info.offset)
            ));
        }
    }
    let n_layers = content
        .metadata
        .get("llama.block_count")
        .and_then(integer)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or("llama.block_count is missing or not a count")?;
    let mut required = vec![
        "token_embd.weight".to_string(),
        "output_norm.weight".to_string(),
    ];
    for layer_idx in 0..n_layers {
        for part in [
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_norm",
            "ffn_gate",
            "ffn_down",
            "ffn_up",
        ] {
            required.push(format!("blk.{layer_idx}.{part}.weight"));
        }
    }
    if let Some(missing) = required
        .iter()
        .find(|name| !content.tensor_infos.contains_key(name.as_str()))
    {
        return Err(format!("tensor {missing} is missing"));
    }
    for name in ["token_embd.weight", "output.weight"] {
        if let Some(info) = content.tensor_infos.get(name) {
            let rows = info.shape.dims().first().copied().unwrap_or(0);
            if rows != n_tokens {
                return Err(format!(
                    "tensor {name} has {rows} rows but the tokenizer has {n_tokens} tokens"
                ));
            }
        }
    }
    Ok(())
}

impl LanguageModel for GgufModel {
    fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// Control tokens (GGUF token type 3, e.g. `<|im_end|>`) have no bytes; user-defined tokens
    /// are their text; every other token is its byte-level BPE string mapped back to bytes.
    fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn eos(&self) -> Option<u32> {
        self.eos
    }

    fn context_limit(&self) -> usize {
        self.context_limit
    }

    /// Control-token text in `text` (`<|im_start|>`) becomes the control token's id, so that
    /// `encode(&chat_prompt(..))` works; no bos is added. For untrusted chat messages use
    /// [`GgufModel::chat_prompt_ids`].
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.encode_with(text, true)
    }

    fn start(&mut self, prompt: &[u32]) -> Result<Vec<f32>, ModelError> {
        if prompt.is_empty() {
            return Err(ModelError::Invalid("the prompt has no tokens".into()));
        }
        if prompt.len() > self.context_limit {
            return Err(ModelError::Invalid(format!(
                "the prompt has {} tokens, more than the model's context limit of {}",
                prompt.len(),
                self.context_limit
            )));
        }
        // Forwarding at position 0 replaces each layer's cache; clearing first also frees the
        // previous sequence's cache if this forward fails.
        self.weights.clear_kv_cache();
        self.n_cached = 0;
        let logits = self.forward(prompt, 0)?;
        self.n_cached = prompt.len();
        Ok(logits)
    }

    fn step(&mut self, token: u32) -> Result<Vec<f32>, ModelError> {
        if self.n_cached == 0 {
            return Err(ModelError::Invalid("step called before start".into()));
        }
        if self.n_cached >= self.context_limit {
            return Err(ModelError::Invalid(format!(
                "the sequence is full: the model's context limit is {} tokens",
                self.context_limit
            )));
        }
        let index_pos = self.n_cached;
        let logits = self.forward(&[token], index_pos)?;
        self.n_cached += 1;
        Ok(logits)
    }
}
