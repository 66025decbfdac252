//! Property tests for the parsers of untrusted bytes: the text splitter, JSONL decoding, the
//! declaration parser and the sample index.

use proptest::prelude::*;
use warden_corpus::declaration::Declaration;
use warden_corpus::source::{list_files, SourceSamples};
use warden_corpus::SourceFormat;

fn samples_of(format: SourceFormat, content: &[u8]) -> Vec<Result<(u64, String), String>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, content).unwrap();
    let files = list_files(&path, Some(format)).unwrap();
    SourceSamples::from_files(files, "text")
        .map(|s| s.map(|s| (s.line, s.text)).map_err(|e| e.to_string()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Documents joined by blank lines (any count, LF or CRLF) split back into exactly those
    /// documents, each at the line where it starts.
    #[test]
    fn text_documents_round_trip(
        docs in prop::collection::vec(prop::collection::vec("[a-zA-Z0-9 ,.é]{0,20}[a-z]", 1..4), 0..8),
        gaps in prop::collection::vec(1usize..4, 8),
        crlf in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut content = String::new();
        let mut expected = Vec::new();
        let mut line = 1u64;
        for (i, doc) in docs.iter().enumerate() {
            expected.push((line, doc.join("\n")));
            for l in doc {
                content.push_str(l);
                content.push_str(eol);
            }
            line += doc.len() as u64;
            for _ in 0..gaps[i] {
                content.push_str(eol);
                line += 1;
            }
        }
        let got: Vec<(u64, String)> = samples_of(SourceFormat::Text, content.as_bytes())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        prop_assert_eq!(got, expected);
    }

    /// Arbitrary bytes never panic the splitter or the JSONL decoder: every record is a sample
    /// or a malformed-line error naming a line.
    #[test]
    fn arbitrary_bytes_are_samples_or_located_errors(content in prop::collection::vec(any::<u8>(), 0..400)) {
        for format in [SourceFormat::Jsonl, SourceFormat::Text] {
            for result in samples_of(format, &content) {
                if let Err(e) = result {
                    prop_assert!(e.contains(":") && e.contains("malformed sample"), "{}", e);
                }
            }
        }
    }

    /// JSONL text fields round-trip through JSON escaping, whatever the text.
    #[test]
    fn jsonl_text_round_trips(texts in prop::collection::vec(".{0,40}", 1..10)) {
        let content: String = texts
            .iter()
            .map(|t| format!("{}\n", serde_json::json!({"id": 1, "text": t})))
            .collect();
        let got: Vec<String> = samples_of(SourceFormat::Jsonl, content.as_bytes())
            .into_iter()
            .map(|r| r.unwrap().1)
            .collect();
        prop_assert_eq!(got, texts);
    }

    /// The declaration parser never panics, and its errors always name the file and a line.
    #[test]
    fn declaration_errors_are_located(text in "(\\[corpus\\]|\\[policy\\]|\\[\\[source\\]\\]|name = \"x\"|id = \"a\"|license = \"MIT\"|[a-z_]{1,8} = [0-9\"\\[\\]]{1,4}|\n){0,20}") {
        if let Err(e) = Declaration::parse(&text, std::path::Path::new("d.toml")) {
            let e = e.to_string();
            prop_assert!(e.starts_with("d.toml:"), "{}", e);
        }
    }
}
