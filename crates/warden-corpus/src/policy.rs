//! The admission policy applied to sources (license, class) and to samples (flaggers).
//!
//! A source is admitted when its SPDX expression can be satisfied by the admitted licenses
//! (`MIT OR GPL-3.0-only` is admitted when `MIT` is: the licensee picks the `MIT` branch) and its
//! class is not excluded. Within an admitted source, a sample is excluded, and listed, when a
//! flagger fires. The built-in PII flaggers are hand-written scanners behind cheap prefilters
//! (an `@` for e-mail, enough digits for phones and cards) so that the common case, prose without
//! digits, costs one pass over the bytes.

use std::sync::OnceLock;

use crate::declaration::{Declaration, FlaggerConfig, PolicyDecl, SourceDecl};
use crate::Hash;

/// Why a source was not admitted, as a sentence naming the source and the license or class.
pub fn refusal(policy: &PolicyDecl, source: &SourceDecl) -> Option<String> {
    if policy.excluded_classes.iter().any(|c| c == &source.class) {
        return Some(format!(
            "source `{}` refused: class `{}` is excluded by the admission policy",
            source.id, source.class
        ));
    }
    let admitted = source
        .license_expr
        .evaluate(|req| policy.licensees.iter().any(|l| l.satisfies(req)));
    if !admitted {
        return Some(format!(
            "source `{}` refused: license `{}` is not admitted by the policy (admitted: {})",
            source.id,
            source.license,
            policy.admitted_licenses.join(", ")
        ));
    }
    None
}

/// Every refusal of a declaration, in declaration order (`None` where admitted).
pub fn refusals(decl: &Declaration) -> Vec<Option<String>> {
    decl.sources
        .iter()
        .map(|s| refusal(&decl.policy, s))
        .collect()
}

/// Which flagger fired on a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    Email,
    Phone,
    Card,
    /// A user regex, by its id.
    Regex(String),
    Blocklist,
}

impl Flag {
    /// The flagger's name as listed in exclusions: `email`, `phone`, `card`, `regex:<id>`,
    /// `blocklist`.
    pub fn name(&self) -> String {
        match self {
            Flag::Email => "email".into(),
            Flag::Phone => "phone".into(),
            Flag::Card => "card".into(),
            Flag::Regex(id) => format!("regex:{id}"),
            Flag::Blocklist => "blocklist".into(),
        }
    }
}

/// Runs the configured flaggers over one sample; the first that fires is returned.
/// Order: blocklist, card, phone, e-mail, user regexes.
pub fn flag(config: &FlaggerConfig, text: &str, hash: &Hash) -> Option<Flag> {
    if config.blocklist.contains(hash) {
        return Some(Flag::Blocklist);
    }
    let bytes = text.as_bytes();
    if config.card || config.phone {
        let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
        if config.card && digits >= 13 && has_card_number(text) {
            return Some(Flag::Card);
        }
        if config.phone && digits >= 10 && has_phone_number(text) {
            return Some(Flag::Phone);
        }
    }
    if config.email && memchr::memchr(b'@', bytes).is_some() && has_email(bytes) {
        return Some(Flag::Email);
    }
    for r in &config.regexes {
        if r.regex.is_match(text) {
            return Some(Flag::Regex(r.id.clone()));
        }
    }
    None
}

/// The Luhn checksum used by payment card numbers.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() {
        return false;
    }
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// 13 to 19 digits, optionally grouped by single spaces or dashes, passing the Luhn check.
fn has_card_number(text: &str) -> bool {
    static CARD: OnceLock<regex::Regex> = OnceLock::new();
    let re = CARD.get_or_init(|| {
        regex::Regex::new(r"(?:^|[^0-9])((?:[0-9][ -]?){12,18}[0-9])(?:[^0-9]|$)")
            .unwrap_or_else(|_| unreachable!("constant regex"))
    });
    let mut at = 0;
    while let Some(caps) = re.captures_at(text, at) {
        let Some(m) = caps.get(1) else { break };
        let digits: Vec<u8> = m.as_str().bytes().filter(u8::is_ascii_digit).collect();
        if (13..=19).contains(&digits.len()) && luhn_valid(&digits) {
            return true;
        }
        at = m.end();
    }
    false
}

/// North-American and international shapes: `(555) 123-4567`, `555-123-4567`,
/// `+44 20 7946 0958`, `+1 555 123 4567`. A bare run of ten digits is not flagged (too many
/// identifiers look like that).
fn has_phone_number(text: &str) -> bool {
    static PHONE: OnceLock<regex::Regex> = OnceLock::new();
    let re = PHONE.get_or_init(|| {
        regex::Regex::new(
            r"(?:^|[^0-9])(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{2,4}\)[ .-]?|[0-9]{2,4}[ .-])[0-9]{3,4}[ .-][0-9]{4}(?:[^0-9]|$)",
        )
        .unwrap_or_else(|_| unreachable!("constant regex"))
    });
    re.is_match(text)
}

fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// `local@domain.tld`, with a non-empty local part and a letters-only TLD of two or more.
fn has_email(bytes: &[u8]) -> bool {
    for at in memchr::memchr_iter(b'@', bytes) {
        if at == 0 || !is_local_byte(bytes[at - 1]) {
            continue;
        }
        let mut end = at + 1;
        while end < bytes.len() && is_domain_byte(bytes[end]) {
            end += 1;
        }
        let domain = bytes[at + 1..end].trim_ascii_end();
        let domain = domain.strip_suffix(b".").unwrap_or(domain);
        let Some(dot) = domain.iter().rposition(|&b| b == b'.') else {
            continue;
        };
        let tld = &domain[dot + 1..];
        if dot > 0 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn all_on() -> FlaggerConfig {
        FlaggerConfig {
            email: true,
            phone: true,
            card: true,
            regexes: vec![crate::declaration::RegexFlagger {
                id: "ticket".into(),
                pattern: "TICKET-[0-9]{6}".into(),
                regex: regex::Regex::new("TICKET-[0-9]{6}").unwrap(),
            }],
            blocklist: BTreeSet::new(),
        }
    }

    fn fired(text: &str) -> Option<String> {
        flag(&all_on(), text, &crate::sample_hash(text)).map(|f| f.name())
    }

    #[test]
    fn pii_flaggers_fire_on_pii_and_not_on_prose() {
        assert_eq!(
            fired("write to jane.doe@example.org today").as_deref(),
            Some("email")
        );
        assert_eq!(fired("call (555) 123-4567 now").as_deref(), Some("phone"));
        assert_eq!(fired("call +44 20 7946 0958").as_deref(), Some("phone"));
        assert_eq!(
            fired("card 4111 1111 1111 1111 exp").as_deref(),
            Some("card")
        );
        assert_eq!(fired("see TICKET-123456").as_deref(), Some("regex:ticket"));
        // Luhn-invalid 16 digits are not a card (and, ungrouped, not a phone).
        assert_eq!(fired("order 4111111111111112 shipped"), None);
        assert_eq!(
            fired("In 1603 the king wrote to @court and left at dawn."),
            None
        );
        assert_eq!(fired("canary-k3m9-xq2d-7hpa"), None);
    }

    #[test]
    fn blocklist_matches_by_hash() {
        let mut config = all_on();
        config
            .blocklist
            .insert(crate::sample_hash("forbidden text"));
        assert_eq!(
            flag(
                &config,
                "forbidden text",
                &crate::sample_hash("forbidden text")
            ),
            Some(Flag::Blocklist)
        );
    }

    #[test]
    fn dual_license_is_admitted_when_one_branch_is() {
        let text = r#"
[corpus]
name = "t"
[policy]
admitted_licenses = ["MIT", "Apache-2.0"]
[[source]]
id = "dual"
path = "a.txt"
license = "MIT OR GPL-3.0"
class = "code"
provenance = { origin = "o", collected = "c", collector = "c" }
[[source]]
id = "gpl"
path = "b.txt"
license = "GPL-3.0-only"
class = "code"
provenance = { origin = "o", collected = "c", collector = "c" }
"#;
        let decl = Declaration::parse(text, Path::new("c.toml")).unwrap();
        let r = refusals(&decl);
        assert_eq!(r[0], None);
        assert_eq!(
            r[1].as_deref(),
            Some("source `gpl` refused: license `GPL-3.0-only` is not admitted by the policy (admitted: MIT, Apache-2.0)")
        );
    }
}
