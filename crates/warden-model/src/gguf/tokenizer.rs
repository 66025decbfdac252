//! The GPT-2 style byte-level BPE tokenizer a llama-family GGUF describes in its metadata
//! (`tokenizer.ggml.*`), built with the `tokenizers` crate, and the raw bytes of every token.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The tokenizer, the bytes each token adds to the output, and the sequence markers.
pub(crate) struct GgufTokenizer {
    pub(crate) tokenizer: Tokenizer,
    /// `token_bytes[id]`: what token `id` adds to the output. Control tokens (`<|im_end|>`, ...)
    /// add nothing: they structure the sequence and are not text.
    pub(crate) token_bytes: Vec<Vec<u8>>,
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
}

/// Builds the tokenizer from GGUF metadata; the error says which key is missing or wrong.
pub(crate) fn from_metadata(metadata: &HashMap<String, Value>) -> Result<GgufTokenizer, String> {
    let model = string_key(metadata, "tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(format!(
            "tokenizer.ggml.model is '{model}'; only 'gpt2' (byte-level BPE) tokenizers are supported"
        ));
    }
    let tokens = string_array(metadata, "tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        return Err("tokenizer.ggml.tokens is empty".to_string());
    }
    let n_tokens = u32::try_from(tokens.len()).map_err(|_| {
        format!(
            "tokenizer.ggml.tokens has {} entries, too many",
            tokens.len()
        )
    })?;
    let token_types = match metadata.get("tokenizer.ggml.token_type") {
        None => vec![1; tokens.len()],
        Some(value) => {
            let types = integer_array(value, "tokenizer.ggml.token_type")?;
            if types.len() != tokens.len() {
                return Err(format!(
                    "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}",
                    types.len(),
                    tokens.len()
                ));
            }
            types
        }
    };
    let merges = string_array(metadata, "tokenizer.ggml.merges")?
        .iter()
        .enumerate()
        .map(|(merge_idx, merge)| match merge.split_once(' ') {
            Some((left, right)) if !left.is_empty() && !right.is_empty() => {
                Ok((left.to_string(), right.to_string()))
            }
            _ => Err(format!(
                "tokenizer.ggml.merges[{merge_idx}] is '{merge}', not two tokens separated by a space"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;

    // A string listed twice keeps its first id for encoding (the table below still covers both).
    let mut vocab = Vocab::default();
    for (id, token) in (0..n_tokens).zip(tokens.iter()) {
        vocab.entry(token.to_string()).or_insert(id);
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|err| format!("tokenizer.ggml.merges do not fit tokenizer.ggml.tokens: {err}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let byte_of_char = byte_level_inverse();
    let mut token_bytes = Vec::with_capacity(tokens.len());
    let mut control = Vec::new();
    let mut user_defined = Vec::new();
    for (id, (token, token_type)) in tokens.iter().zip(&token_types).enumerate() {
        let bytes = match *token_type {
            TOKEN_TYPE_CONTROL => {
                control.push(AddedToken::from(token.to_string(), true));
                Vec::new()
            }
            TOKEN_TYPE_USER_DEFINED => {
                user_defined.push(AddedToken::from(token.to_string(), false));
                token.as_bytes().to_vec()
            }
            _ => token
                .chars()
                .map(|c| {
                    byte_of_char.get(&c).copied().ok_or_else(|| {
                        format!(
                            "tokenizer.ggml.tokens[{id}] '{token}' has '{c}', which is not a byte-level BPE character"
                        )
                    })
                })
                .collect::<Result<Vec<u8>, _>>()?,
        };
        token_bytes.push(bytes);
    }
    // Added tokens keep their vocabulary ids (the added vocabulary looks them up in the model),
    // and the encoder splits them out of the text before BPE.
    tokenizer
        .add_special_tokens(control)
        .and_then(|_| tokenizer.add_tokens(user_defined))
        .map_err(|err| format!("cannot add the control and user-defined tokens: {err}"))?;

    let marker = |key: &str| -> Result<Option<u32>, String> {
        match metadata.get(key) {
            None => Ok(None),
            Some(value) => {
                let id = integer(value).ok_or_else(|| format!("{key} is not an integer"))?;
                match u32::try_from(id) {
                    Ok(id) if id < n_tokens => Ok(Some(id)),
                    _ => Err(format!("{key} is {id}, outside the {n_tokens} tokens")),
                }
            }
        }
    };
    Ok(GgufTokenizer {
        tokenizer,
        token_bytes,
        bos: marker("tokenizer.ggml.bos_token_id")?,
        eos: marker("tokenizer.ggml.eos_token_id")?,
    })
}

/// GPT-2's byte-to-character table inverted: printable Latin-1 bytes stand for themselves, the
/// other 68 bytes for the characters U+0100.. in byte order.
fn byte_level_inverse() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if printable {
            char::from(byte)
        } else {
            shifted += 1;
            // 256 + shifted - 1 is at most 323: always a valid char.
            char::from_u32(255 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        map.insert(c, byte);
    }
    map
}

pub(crate) fn string_key<'a>(
    metadata: &'a HashMap<String, Value>,
    key: &str,
) -> Result<&'a str, String> {
    match metadata.get(key) {
        None => Err(format!("metadata key {key} is missing")),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => Err(format!(
            "metadata key {key} is a {:?}, not a string",
            other.value_type()
        )),
    }
}

fn string_array<'a>(
    metadata: &'a HashMap<String, Value>,
    key: &str,
) -> Result<Vec<&'a String>, String> {
    let Some(value) = metadata.get(key) else {
        return Err(format!("metadata key {key} is missing"));
    };
    let Value::Array(items) = value else {
        return Err(format!("metadata key {key} is not an array"));
    };
    items
        .iter()
        .enumerate()
        .map(|(item_idx, item)| match item {
            Value::String(s) => Ok(s),
            _ => Err(format!("{key}[{item_idx}] is not a string")),
        })
        .collect()
}

fn integer_array(value: &Value, key: &str) -> Result<Vec<i64>, String> {
    let Value::Array(items) = value else {
        return Err(format!("metadata key {key} is not an array"));
    };
    items
        .iter()
        .enumerate()
        .map(|(item_idx, item)| {
            integer(item).ok_or_else(|| format!("{key}[{item_idx}] is not an integer"))
        })
        .collect()
}

/// Any GGUF integer type as i64 (writers differ in which they use); `None` for other types.
pub(crate) fn integer(value: &Value) -> Option<i64> {
    match *value {
        Value::U8(v) => Some(i64::from(v)),
        Value::I8(v) => Some(i64::from(v)),
        Value::U16(v) => Some(i64::from(v)),
        Value::I16(v) => Some(i64::from(v)),
        Value::U32(v) => Some(i64::from(v)),
        Value::I32(v) => Some(i64::from(v)),
        Value::U64(v) => i64::try_from(v).ok(),
        Value::I64(v) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_covers_every_byte_once() {
        let map = byte_level_inverse();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'!'], b'!');
        assert_eq!(map[&'Ā'], 0);
    }
}
