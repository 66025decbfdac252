//! Chat templates from `tokenizer.chat_template`: recognised by shape, rendered in Rust.
//!
//! A GGUF model carries its chat template as Jinja source. Warden does not embed a Jinja engine:
//! it recognises the ChatML family exactly (SmolLM2's form, which adds a default system message
//! when the conversation has none, and the plain form) and renders it byte for byte as the
//! template would with `add_generation_prompt = true`. Any other template is refused by name
//! rather than approximated, since a wrong template silently degrades every answer.

/// A chat template Warden can render exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChatFormat {
    /// `<|im_start|>role\ncontent<|im_end|>\n` per message, then `<|im_start|>assistant\n`.
    /// `default_system` is the system message the template inserts before the first message when
    /// that message is not itself a system message.
    ChatMl { default_system: Option<String> },
}

/// The plain ChatML template (Hugging Face's default ChatML form).
const CHATML_PLAIN: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// ChatML with a default system message (SmolLM2's form); `@SYSTEM@` stands for its text.
const CHATML_DEFAULT_SYSTEM: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n@SYSTEM@<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const SYSTEM_MARKER: &str = "@SYSTEM@";

/// Recognises `template`; the error is the template's first line, for the caller's message.
pub(crate) fn parse_chat_template(template: &str) -> Result<ChatFormat, String> {
    let normalized = normalize(template);
    if normalized == normalize(CHATML_PLAIN) {
        return Ok(ChatFormat::ChatMl {
            default_system: None,
        });
    }
    let with_system = normalize(CHATML_DEFAULT_SYSTEM);
    if let Some((prefix, suffix)) = with_system.split_once(SYSTEM_MARKER) {
        if normalized.len() >= prefix.len() + suffix.len()
            && normalized.starts_with(prefix)
            && normalized.ends_with(suffix)
        {
            let system = &normalized[prefix.len()..normalized.len() - suffix.len()];
            // The text sits inside one string literal; a quote would mean it ended early and
            // the template has a shape this matcher did not check.
            if !system.contains(QUOTE) {
                return Ok(ChatFormat::ChatMl {
                    default_system: Some(system.to_string()),
                });
            }
        }
    }
    Err(first_line(template))
}

/// A run of prompt text: the template's own markup (control tokens allowed) or caller text (roles
/// and contents, which must never turn into control tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Markup(&'a str),
    Text(&'a str),
}

/// The prompt for `messages` (role, content) as the template renders it with
/// `add_generation_prompt`, as markup and caller-text pieces in order.
pub(crate) fn pieces<'a>(
    format: &'a ChatFormat,
    messages: &[(&'a str, &'a str)],
) -> Vec<Piece<'a>> {
    let ChatFormat::ChatMl { default_system } = format;
    let mut pieces = Vec::with_capacity(messages.len() * 5 + 4);
    for (message_idx, &(role, content)) in messages.iter().enumerate() {
        if message_idx == 0 && role != "system" {
            if let Some(system) = default_system {
                pieces.push(Piece::Markup("<|im_start|>system\n"));
                pieces.push(Piece::Markup(system.as_str()));
                pieces.push(Piece::Markup("<|im_end|>\n"));
            }
        }
        pieces.push(Piece::Markup("<|im_start|>"));
        pieces.push(Piece::Text(role));
        pieces.push(Piece::Markup("\n"));
        pieces.push(Piece::Text(content));
        pieces.push(Piece::Markup("<|im_end|>\n"));
    }
    pieces.push(Piece::Markup("<|im_start|>assistant\n"));
    pieces
}

/// The rendered prompt as one string.
pub(crate) fn render(format: &ChatFormat, messages: &[(&str, &str)]) -> String {
    pieces(format, messages)
        .iter()
        .map(|piece| match piece {
            Piece::Markup(text) | Piece::Text(text) => *text,
        })
        .collect()
}

/// Stands for either quote character in the normalized form (not a character templates use).
const QUOTE: char = '\u{1}';

/// A canonical form for comparing templates: whitespace inside `{% %}` / `{{ }}` tags dropped
/// (Jinja ignores it), string literals decoded (`\n` escapes, either quote style), text outside
/// tags kept verbatim (Jinja emits it, so it must match exactly).
fn normalize(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    let mut in_tag = false;
    while let Some(c) = chars.next() {
        if !in_tag {
            out.push(c);
            if c == '{' && matches!(chars.peek(), Some('%') | Some('{')) {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
                in_tag = true;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                out.push(QUOTE);
                while let Some(inner) = chars.next() {
                    if inner == c {
                        break;
                    }
                    if inner == '\\' {
                        match chars.next() {
                            Some('n') => out.push('\n'),
                            Some('t') => out.push('\t'),
                            Some(other) => out.push(other),
                            None => {}
                        }
                    } else {
                        out.push(inner);
                    }
                }
                out.push(QUOTE);
            }
            '%' | '}' if chars.peek() == Some(&'}') => {
                out.push(c);
                if let Some(next) = chars.next() {
                    out.push(next);
                }
                in_tag = false;
            }
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

fn first_line(template: &str) -> String {
    let line = template.lines().next().unwrap_or("").trim();
    if line.chars().count() > 80 {
        let cut: String = line.chars().take(80).collect();
        format!("{cut}...")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's `tokenizer.chat_template`, as stored in its GGUF (real newlines
    /// inside the string literals).
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_template_adds_its_default_system_message_only_without_one() {
        let format = parse_chat_template(SMOLLM2).unwrap();
        assert_eq!(
            render(&format, &[("user", "What is the capital of France?")]),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            render(&format, &[("system", "Be brief."), ("user", "Hi")]),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        // The loop never runs for no messages, so neither does the default system line.
        assert_eq!(render(&format, &[]), "<|im_start|>assistant\n");
    }

    #[test]
    fn plain_chatml_with_escaped_newlines_and_other_spacing_is_recognised() {
        let spaced = "{% for message in messages %}\
            {{ \"<|im_start|>\" + message[\"role\"] + \"\\n\" + message[\"content\"] + \"<|im_end|>\" + \"\\n\" }}\
            {% endfor %}{% if add_generation_prompt %}{{'<|im_start|>assistant\\n'}}{% endif %}";
        let format = parse_chat_template(spaced).unwrap();
        assert_eq!(
            format,
            ChatFormat::ChatMl {
                default_system: None
            }
        );
        assert_eq!(
            render(&format, &[("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")]),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn other_templates_are_refused_naming_their_first_line() {
        let llama3 = "{% set loop_messages = messages %}\n{% for message in loop_messages %}{{ '<|start_header_id|>' + message['role'] }}{% endfor %}";
        assert_eq!(
            parse_chat_template(llama3).unwrap_err(),
            "{% set loop_messages = messages %}"
        );
        // Text outside the tags is emitted by Jinja, so a ChatML body with extra text is not ChatML.
        let with_text = format!("{CHATML_PLAIN}\n");
        assert!(parse_chat_template(&with_text).is_err());
        // Whitespace-trimming markers change the output; not recognised.
        let trimmed = CHATML_PLAIN.replace("{% endfor %}", "{%- endfor %}");
        assert!(parse_chat_template(&trimmed).is_err());
    }
}
