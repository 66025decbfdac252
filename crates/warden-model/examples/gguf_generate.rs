//! Greedy generation from a GGUF model, for measuring it: `gguf_generate PATH PROMPT N` wraps
//! PROMPT as one user message in the model's chat template, generates up to N tokens greedily
//! through the KV cache and prints the text and tokens/s. `gguf_generate PATH TEXT --encode`
//! prints the token ids of TEXT (no template) and each token's bytes instead; `--raw` after N
//! generates from PROMPT as plain text, without the template.

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use warden_model::gguf::GgufModel;
use warden_model::LanguageModel;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, text, third, raw) = match args.as_slice() {
        [path, text, third] => (PathBuf::from(path), text.as_str(), third.as_str(), false),
        [path, text, third, flag] if flag == "--raw" => {
            (PathBuf::from(path), text.as_str(), third.as_str(), true)
        }
        _ => {
            return Err(
                "usage: gguf_generate PATH PROMPT N [--raw] | gguf_generate PATH TEXT --encode"
                    .into(),
            )
        }
    };
    let load_started = Instant::now();
    let mut model = GgufModel::load(&path)?;
    eprintln!(
        "loaded {} in {:.2?}: {} tokens, context limit {}",
        path.display(),
        load_started.elapsed(),
        model.vocab_size(),
        model.context_limit()
    );

    if third == "--encode" {
        let ids = model.encode(text)?;
        let pieces: Vec<String> = ids
            .iter()
            .map(|&id| format!("{:?}", String::from_utf8_lossy(model.token_bytes(id))))
            .collect();
        println!("{text:?} -> {ids:?} {}", pieces.join(" "));
        return Ok(());
    }

    let max_tokens: usize = third.parse()?;
    let prompt_ids = if raw {
        model.encode(text)?
    } else {
        model.chat_prompt_ids(&[("user", text)])?
    };
    let prefill_started = Instant::now();
    let mut logits = model.start(&prompt_ids)?;
    let prefill = prefill_started.elapsed();

    let decode_started = Instant::now();
    let mut output = Vec::new();
    let mut n_generated = 0usize;
    let mut n_steps = 0usize;
    while n_generated < max_tokens {
        let mut best = 0;
        for (idx, &logit) in logits.iter().enumerate() {
            if logit > logits[best] {
                best = idx;
            }
        }
        let token = u32::try_from(best)?;
        n_generated += 1;
        if Some(token) == model.eos() {
            break;
        }
        output.extend_from_slice(model.token_bytes(token));
        if prompt_ids.len() + n_generated >= model.context_limit() {
            break;
        }
        logits = model.step(token)?;
        n_steps += 1;
    }
    let decode = decode_started.elapsed();
    println!("{}", String::from_utf8_lossy(&output));
    eprintln!(
        "prompt {} tokens prefilled in {prefill:.2?} ({:.1} tokens/s); generated {n_generated} tokens ({n_steps} cached steps) in {decode:.2?}: {:.1} tokens/s",
        prompt_ids.len(),
        prompt_ids.len() as f64 / prefill.as_secs_f64(),
        n_steps as f64 / decode.as_secs_f64()
    );
    Ok(())
}
