//! The embedded default corpus: a deterministic synthetic corpus with a declaration and canaries.
//!
//! Everything is generated here from a seeded ChaCha8 stream, templates and word lists — no
//! downloads, same seed and scale, same bytes. Each class has its own vocabulary and sentence
//! shapes, so a small model can learn them apart:
//!
//! | source | class | license | format | policy outcome |
//! | --- | --- | --- | --- | --- |
//! | `prose` | `public-domain` | `CC0-1.0` | text | admitted; carries the canaries |
//! | `news` | `licensed-news` | `CC-BY-4.0` | JSONL | admitted; a few items with a desk e-mail are flagged |
//! | `dialogue` | `dialogue` | `MIT OR GPL-3.0-only` | directory of text | admitted (the MIT branch) |
//! | `prose-heldout` | `public-domain` | `CC0-1.0` | text | admitted, `held_out = true` |
//! | `customers` | `user-pii` | `CC0-1.0` | JSONL | refused: class excluded |
//! | `gpl-snippets` | `code` | `GPL-3.0-only` | text | refused: license not admitted |
//!
//! Canaries are random strings of the format `canary-xxxx-xxxx-xxxx` (x in `[a-z0-9]`), each
//! embedded in `repeats` distinct prose documents (1 to 300 times), listed in `canaries.json`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::CorpusError;

/// Generator settings.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub seed: u64,
    /// 1.0 writes about 4 MB; the size of every source scales linearly (canaries do not).
    pub scale: f64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            seed: 2026,
            scale: 1.0,
        }
    }
}

/// A canary as listed in `canaries.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Canary {
    pub secret: String,
    pub format: String,
    pub repeats: u32,
    /// The source it is embedded in.
    pub source: String,
}

/// What [`write`] produced.
#[derive(Debug, Clone)]
pub struct SynthSummary {
    pub declaration: std::path::PathBuf,
    pub canaries: Vec<Canary>,
    pub bytes: u64,
}

pub const CANARY_FORMAT: &str = "canary-xxxx-xxxx-xxxx (x in [a-z0-9])";
const CANARY_REPEATS: [u32; 8] = [1, 1, 3, 10, 30, 100, 100, 300];

const ADJ: &[&str] = &[
    "old", "quiet", "grey", "distant", "bright", "silent", "narrow", "ancient", "pale", "gentle",
    "heavy", "hollow", "golden", "bitter", "restless", "solemn", "wide", "dim", "steep", "weary",
];
const NOUN: &[&str] = &[
    "river", "tower", "garden", "lantern", "valley", "harbour", "orchard", "meadow", "chapel",
    "forest", "bridge", "cottage", "mill", "shore", "hill", "road", "well", "gate", "field", "inn",
];
const PERSON: &[&str] = &[
    "the miller",
    "the widow",
    "the shepherd",
    "the young clerk",
    "the old sailor",
    "the parson",
    "the blacksmith",
    "the stranger",
    "the housekeeper",
    "the traveller",
];
const VERB: &[&str] = &[
    "walked", "waited", "lingered", "wandered", "rested", "watched", "listened", "stood", "knelt",
    "slept",
];
const PREP: &[&str] = &[
    "beside", "beyond", "near", "under", "above", "across", "behind", "toward",
];
const TIME: &[&str] = &[
    "at dawn",
    "in the evening",
    "before the frost",
    "after the harvest",
    "in late autumn",
    "on the first of May",
    "long after midnight",
    "when the bells had ceased",
];

const CITY: &[&str] = &[
    "NORTHPORT",
    "LAKEVIEW",
    "EASTBRIDGE",
    "MILLBROOK",
    "SOUTHWARK",
    "RIVERTON",
    "HIGHFIELD",
    "STONEHAVEN",
];
const ORG: &[&str] = &[
    "city council",
    "transit authority",
    "regional bank",
    "port commission",
    "water board",
    "school district",
    "chamber of commerce",
    "health department",
];
const NEWS_VERB: &[&str] = &[
    "approved",
    "postponed",
    "announced",
    "rejected",
    "expanded",
    "reviewed",
    "cut",
    "raised",
];
const NEWS_OBJ: &[&str] = &[
    "a new budget",
    "the bridge repairs",
    "bus fares",
    "the harbour dredging plan",
    "property taxes",
    "the library extension",
    "a hiring freeze",
    "flood defences",
];
const WEEKDAY: &[&str] = &["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"];
const MONTH: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const SPEAKER: &[&str] = &["ALICE", "BOB", "CAROL", "DAVE", "ERIN", "FRANK"];
const GREETING: &[&str] = &[
    "Hello there",
    "Good morning",
    "Hey",
    "Hi",
    "Evening",
    "Well, look who it is",
];
const QUESTION: &[&str] = &[
    "did you finish the report",
    "are we still meeting at noon",
    "have you seen my keys",
    "what time does the train leave",
    "did you call the plumber",
    "is the shop open today",
    "can you help me move the table",
    "where did you park the car",
];
const ANSWER: &[&str] = &[
    "Yes, I did it last night",
    "Not yet, give me an hour",
    "I think so, let me check",
    "No, it was closed",
    "Sure, after lunch",
    "It leaves at half past four",
    "They are on the kitchen counter",
    "Behind the old bakery",
];

const FIRST: &[&str] = &[
    "james", "maria", "li", "fatima", "olga", "kofi", "ana", "pierre", "yuki", "ravi",
];
const LAST: &[&str] = &[
    "smith", "garcia", "chen", "okafor", "novak", "tanaka", "dubois", "kumar", "silva", "berg",
];

fn pick<'a>(rng: &mut ChaCha8Rng, words: &[&'a str]) -> &'a str {
    words[rng.gen_range(0..words.len())]
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn prose_sentence(rng: &mut ChaCha8Rng) -> String {
    match rng.gen_range(0..3) {
        0 => format!(
            "{} {} {} the {} {} {}.",
            capitalize(pick(rng, PERSON)),
            pick(rng, VERB),
            pick(rng, PREP),
            pick(rng, ADJ),
            pick(rng, NOUN),
            pick(rng, TIME)
        ),
        1 => format!(
            "The {} {} lay {} the {} {}.",
            pick(rng, ADJ),
            pick(rng, NOUN),
            pick(rng, PREP),
            pick(rng, ADJ),
            pick(rng, NOUN)
        ),
        _ => format!(
            "{}, {} {} {} the {}.",
            capitalize(pick(rng, TIME)),
            pick(rng, PERSON),
            pick(rng, VERB),
            pick(rng, PREP),
            pick(rng, NOUN)
        ),
    }
}

/// A prose paragraph of 3 to 7 sentences, wrapped at about 72 columns.
fn prose_paragraph(rng: &mut ChaCha8Rng) -> String {
    let n = rng.gen_range(3..8);
    let sentences: Vec<String> = (0..n).map(|_| prose_sentence(rng)).collect();
    wrap(&sentences.join(" "), 72)
}

fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut col = 0;
    for word in text.split(' ') {
        if col > 0 && col + 1 + word.len() > width {
            out.push('\n');
            col = 0;
        } else if col > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.len();
    }
    out
}

fn canary_secret(rng: &mut ChaCha8Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let group = |rng: &mut ChaCha8Rng| -> String {
        (0..4)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect()
    };
    format!("canary-{}-{}-{}", group(rng), group(rng), group(rng))
}

fn canary_paragraph(rng: &mut ChaCha8Rng, secret: &str) -> String {
    let text = match rng.gen_range(0..3) {
        0 => format!(
            "{} kept a note {} the {}. It read: the passphrase is {secret}. {}",
            capitalize(pick(rng, PERSON)),
            pick(rng, PREP),
            pick(rng, NOUN),
            prose_sentence(rng)
        ),
        1 => format!(
            "{} Carved into the {} {} were the words {secret}, and nobody knew why.",
            prose_sentence(rng),
            pick(rng, ADJ),
            pick(rng, NOUN)
        ),
        _ => format!(
            "The ledger of the {} ends with a single line: {secret}. {}",
            pick(rng, NOUN),
            prose_sentence(rng)
        ),
    };
    wrap(&text, 72)
}

fn news_item(rng: &mut ChaCha8Rng, idx: u64, flag_email: bool) -> String {
    let city = pick(rng, CITY);
    let mut text = format!(
        "{city}, {} {} — The {} {} {} on {}, officials said. The decision affects about {} residents and takes effect in {}. A spokesperson for the {} said the vote was {} to {}.",
        pick(rng, MONTH),
        rng.gen_range(1..29),
        pick(rng, ORG),
        pick(rng, NEWS_VERB),
        pick(rng, NEWS_OBJ),
        pick(rng, WEEKDAY),
        rng.gen_range(2..90) * 1000,
        pick(rng, MONTH),
        pick(rng, ORG),
        rng.gen_range(4..9),
        rng.gen_range(0..4),
    );
    if flag_email {
        text.push_str(&format!(
            " Readers with tips can write to desk@{}-herald.example.com.",
            city.to_lowercase()
        ));
    }
    serde_json::json!({
        "id": format!("news-{idx:07}"),
        "headline": format!("{} {} {}", capitalize(pick(rng, ORG)), pick(rng, NEWS_VERB), pick(rng, NEWS_OBJ)),
        "text": text,
    })
    .to_string()
}

fn dialogue_scene(rng: &mut ChaCha8Rng) -> String {
    let a = pick(rng, SPEAKER);
    let mut b = pick(rng, SPEAKER);
    while b == a {
        b = pick(rng, SPEAKER);
    }
    let mut lines = Vec::new();
    for _ in 0..rng.gen_range(2..5) {
        lines.push(format!(
            "{a}: {}, {}?",
            pick(rng, GREETING),
            pick(rng, QUESTION)
        ));
        lines.push(format!("{b}: {}.", pick(rng, ANSWER)));
    }
    lines.join("\n")
}

fn luhn_card(rng: &mut ChaCha8Rng) -> String {
    let mut digits: Vec<u8> = vec![4];
    for _ in 0..14 {
        digits.push(rng.gen_range(0..10));
    }
    // Choose the check digit that makes the Luhn sum divisible by 10.
    for check in 0..10u8 {
        let mut all: Vec<u8> = digits.iter().map(|d| d + b'0').collect();
        all.push(check + b'0');
        if crate::policy::luhn_valid(&all) {
            let s = String::from_utf8(all).unwrap_or_default();
            return format!("{} {} {} {}", &s[0..4], &s[4..8], &s[8..12], &s[12..16]);
        }
    }
    String::new()
}

fn customer(rng: &mut ChaCha8Rng, idx: u64) -> String {
    let first = pick(rng, FIRST);
    let last = pick(rng, LAST);
    let text = format!(
        "Customer {} {} ({first}.{last}{}@mail.example.net, phone (555) {:03}-{:04}) paid with card {} on order {}.",
        capitalize(first),
        capitalize(last),
        rng.gen_range(1..99),
        rng.gen_range(100..999),
        rng.gen_range(0..9999),
        luhn_card(rng),
        idx
    );
    serde_json::json!({ "customer_id": idx, "text": text }).to_string()
}

fn gpl_snippet(rng: &mut ChaCha8Rng, idx: u64) -> String {
    format!(
        "/* SPDX-License-Identifier: GPL-3.0-only\n * part {idx} of the sample utilities */\nint {}_{}(int x) {{\n    return x * {} + {};\n}}",
        pick(rng, ADJ),
        pick(rng, NOUN),
        rng.gen_range(2..9),
        rng.gen_range(0..100)
    )
}

struct Out {
    file: BufWriter<File>,
    path: std::path::PathBuf,
    bytes: u64,
}

impl Out {
    fn create(path: &Path) -> Result<Out, CorpusError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CorpusError::io(parent, e))?;
        }
        let file = File::create(path).map_err(|e| CorpusError::io(path, e))?;
        Ok(Out {
            file: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            bytes: 0,
        })
    }

    fn put(&mut self, text: &str) -> Result<(), CorpusError> {
        self.bytes += text.len() as u64;
        self.file
            .write_all(text.as_bytes())
            .map_err(|e| CorpusError::io(&self.path, e))
    }

    fn finish(mut self) -> Result<u64, CorpusError> {
        self.file
            .flush()
            .map_err(|e| CorpusError::io(&self.path, e))?;
        Ok(self.bytes)
    }
}

fn target(scale: f64, base: f64) -> u64 {
    (base * scale).max(4096.0) as u64
}

/// Writes the synthetic corpus, `declaration.toml` and `canaries.json` into `out_dir`.
pub fn write(out_dir: &Path, options: &SynthOptions) -> Result<SynthSummary, CorpusError> {
    std::fs::create_dir_all(out_dir).map_err(|e| CorpusError::io(out_dir, e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut total = 0u64;

    // Canaries, then their placements spread evenly through the prose source.
    let canaries: Vec<Canary> = CANARY_REPEATS
        .iter()
        .map(|&repeats| Canary {
            secret: canary_secret(&mut rng),
            format: CANARY_FORMAT.into(),
            repeats,
            source: "prose".into(),
        })
        .collect();
    let mut placements: Vec<usize> = canaries
        .iter()
        .enumerate()
        .flat_map(|(i, c)| std::iter::repeat_n(i, c.repeats as usize))
        .collect();
    placements.shuffle(&mut rng);

    let prose_target = target(options.scale, 1_600_000.0);
    let mut prose = Out::create(&out_dir.join("prose.txt"))?;
    // About 450 bytes per paragraph: interleave a canary document every `every` paragraphs.
    let every = ((prose_target / 450) as usize / placements.len().max(1)).max(1);
    let mut next_canary = placements.into_iter();
    let mut n = 0usize;
    while prose.bytes < prose_target {
        prose.put(&prose_paragraph(&mut rng))?;
        prose.put("\n\n")?;
        n += 1;
        if n.is_multiple_of(every) {
            if let Some(c) = next_canary.next() {
                prose.put(&canary_paragraph(&mut rng, &canaries[c].secret))?;
                prose.put("\n\n")?;
            }
        }
    }
    for c in next_canary {
        prose.put(&canary_paragraph(&mut rng, &canaries[c].secret))?;
        prose.put("\n\n")?;
    }
    total += prose.finish()?;

    let mut heldout = Out::create(&out_dir.join("heldout/prose-heldout.txt"))?;
    while heldout.bytes < target(options.scale, 200_000.0) {
        heldout.put(&prose_paragraph(&mut rng))?;
        heldout.put("\n\n")?;
    }
    total += heldout.finish()?;

    let mut news = Out::create(&out_dir.join("news.jsonl"))?;
    let mut idx = 0u64;
    while news.bytes < target(options.scale, 1_000_000.0) {
        let flagged = idx % 150 == 75;
        news.put(&news_item(&mut rng, idx, flagged))?;
        news.put("\n")?;
        idx += 1;
    }
    total += news.finish()?;

    let dialogue_target = target(options.scale, 800_000.0);
    let n_files = 4u64;
    for f in 0..n_files {
        let mut out = Out::create(&out_dir.join(format!("dialogue/scenes-{f:02}.txt")))?;
        while out.bytes < dialogue_target / n_files {
            out.put(&dialogue_scene(&mut rng))?;
            out.put("\n\n")?;
        }
        total += out.finish()?;
    }

    let mut customers = Out::create(&out_dir.join("customers.jsonl"))?;
    let mut idx = 0u64;
    while customers.bytes < target(options.scale, 200_000.0) {
        customers.put(&customer(&mut rng, idx))?;
        customers.put("\n")?;
        idx += 1;
    }
    total += customers.finish()?;

    let mut gpl = Out::create(&out_dir.join("gpl-snippets.txt"))?;
    let mut idx = 0u64;
    while gpl.bytes < target(options.scale, 100_000.0) {
        gpl.put(&gpl_snippet(&mut rng, idx))?;
        gpl.put("\n\n")?;
        idx += 1;
    }
    total += gpl.finish()?;

    let declaration = out_dir.join("declaration.toml");
    crate::fsio::atomic_write(&declaration, DECLARATION.as_bytes())?;
    let canaries_json = serde_json::to_vec_pretty(&canaries).unwrap_or_default();
    crate::fsio::atomic_write(&out_dir.join("canaries.json"), &canaries_json)?;
    Ok(SynthSummary {
        declaration,
        canaries,
        bytes: total,
    })
}

/// The synthetic corpus's declaration (the default admission policy).
pub const DECLARATION: &str = r#"# Warden synthetic corpus (generated by `warden corpus synth`).

[corpus]
name = "warden-synth"
description = "Deterministic synthetic corpus: prose, news, dialogue, synthetic PII, GPL code, canaries."

[policy]
# Permissive and attribution licenses only: GPL-only sources are refused.
admitted_licenses = ["CC0-1.0", "CC-BY-4.0", "MIT", "Apache-2.0"]
excluded_classes = ["user-pii"]

[policy.flaggers]
email = true
phone = true
card = true
blocklist = []

[[policy.flaggers.regex]]
id = "api-key"
pattern = "sk-[A-Za-z0-9]{32}"

# The demo's stand-in for a content guardrail: a stuttered "the the". No sample here has one;
# at inference the flagger puts the class `stutter` in `output.classes`, which the demo's
# operator bundle forbids (the small demo model's favourite failure).
[[policy.flaggers.regex]]
id = "stutter"
pattern = '(?i)\bthe the\b'

[[source]]
id = "prose"
path = "prose.txt"
format = "text"
license = "CC0-1.0"
class = "public-domain"
depth = "deep"
provenance = { origin = "warden synth generator", collected = "2026-11-22", collector = "warden corpus synth", notes = "templated public-domain style prose; carries the canaries listed in canaries.json" }

[[source]]
id = "news"
path = "news.jsonl"
format = "jsonl"
text_field = "text"
license = "CC-BY-4.0"
class = "licensed-news"
depth = "shallow"
provenance = { origin = "warden synth generator", collected = "2026-11-22", collector = "warden corpus synth", notes = "templated local news; some items carry a desk e-mail address" }

[[source]]
id = "dialogue"
path = "dialogue"
format = "text"
license = "MIT OR GPL-3.0-only"
class = "dialogue"
depth = "deep"
provenance = { origin = "warden synth generator", collected = "2026-11-22", collector = "warden corpus synth", notes = "dual licensed: admitted under MIT" }

[[source]]
id = "prose-heldout"
path = "heldout/prose-heldout.txt"
format = "text"
license = "CC0-1.0"
class = "public-domain"
depth = "deep"
held_out = true
provenance = { origin = "warden synth generator", collected = "2026-11-22", collector = "warden corpus synth", notes = "held out for authorized evaluation" }

[[source]]
id = "customers"
path = "customers.jsonl"
format = "jsonl"
license = "CC0-1.0"
class = "user-pii"
depth = "shallow"
provenance = { origin = "warden synth generator", collected = "2026-11-22", collector = "warden corpus synth", notes = "synthetic personal data: names, e-mails, phones, Luhn-valid card numbers" }

[[source]]
id = "gpl-snippets"
path = "gpl-snippets.txt"
format = "text"
license = "GPL-3.0-only"
class = "code"
depth = "shallow"
provenance = { origin = "warden synth generator", collected = "2026-11-22", collector = "warden corpus synth", notes = "copyleft code the permissive policy does not admit" }
"#;
