//! Streaming a source's files into samples: one splitter shared by admission, verification and
//! the training data gate, so that all three see exactly the same samples and line numbers.
//!
//! Sample boundaries and canonical bytes (what [`crate::sample_hash`] hashes):
//! * JSONL: each non-blank line is one JSON object; the sample is the value of its text field
//!   (default `text`), decoded from JSON, byte for byte (no trimming, no Unicode normalization).
//!   The sample's line is the line of the object.
//! * text: documents are separated by one or more blank (whitespace-only) lines; the sample is
//!   the document's lines with their terminators (`\n` or `\r\n`) removed, joined by `\n`, with
//!   no trailing newline. The sample's line is the line of its first line.
//! * a directory: its regular files, recursively, in byte order of their relative paths, hidden
//!   files (`.name`) skipped and symbolic links to directories not followed; line numbers run on
//!   across files (the declaration records each file's line count, to map a line back to a file).
//!
//! Nothing is ever read whole: files are read line by line through a 1 MiB `BufReader`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::declaration::SourceFormat;
use crate::error::CorpusError;
use crate::Hash;

/// One sample as it is on disk now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Index of the source in [`crate::AdmittedCorpus::sources`].
    pub source: u32,
    /// 1-based line (running on across the files of a directory source).
    pub line: u64,
    pub text: String,
    /// [`crate::sample_hash`] of `text`.
    pub hash: Hash,
}

/// One file of a source.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    /// Relative to the source path (empty when the source is a single file).
    pub relative: String,
    pub format: SourceFormat,
    pub bytes: u64,
}

/// The files of a source, in the order their samples are numbered.
pub fn list_files(
    path: &Path,
    format: Option<SourceFormat>,
) -> Result<Vec<SourceFile>, CorpusError> {
    let meta = std::fs::metadata(path).map_err(|e| CorpusError::io(path, e))?;
    if meta.is_file() {
        return Ok(vec![SourceFile {
            path: path.to_path_buf(),
            relative: String::new(),
            format: format.unwrap_or_else(|| SourceFormat::from_extension(path)),
            bytes: meta.len(),
        }]);
    }
    let mut files = Vec::new();
    walk(path, "", format, &mut files)?;
    files.sort_by(|a, b| a.relative.as_bytes().cmp(b.relative.as_bytes()));
    Ok(files)
}

fn walk(
    dir: &Path,
    prefix: &str,
    format: Option<SourceFormat>,
    out: &mut Vec<SourceFile>,
) -> Result<(), CorpusError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CorpusError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CorpusError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(CorpusError::artifact(
                entry.path(),
                "file name is not UTF-8; rename it so that it can be named in the declaration",
            ));
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let relative = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type().map_err(|e| CorpusError::io(&path, e))?;
        if kind.is_dir() {
            walk(&path, &relative, format, out)?;
        } else {
            // Follows symlinks to files; a symlink to a directory is skipped (no loops).
            let meta = std::fs::metadata(&path).map_err(|e| CorpusError::io(&path, e))?;
            if meta.is_file() {
                out.push(SourceFile {
                    format: format.unwrap_or_else(|| SourceFormat::from_extension(&path)),
                    path,
                    relative,
                    bytes: meta.len(),
                });
            }
        }
    }
    Ok(())
}

/// Splits one file into raw records (JSONL lines or text documents), appending each record's
/// bytes to a caller-owned buffer so that a chunk of records is one allocation.
pub(crate) struct Splitter {
    reader: BufReader<File>,
    pub(crate) path: PathBuf,
    format: SourceFormat,
    /// Global line number of the last line read.
    line: u64,
    /// Global line number of the line before this file's first line.
    base: u64,
    bytes_read: u64,
    eof: bool,
}

/// A record's place in a chunk buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordSpan {
    pub line: u64,
    pub start: usize,
    pub end: usize,
}

impl Splitter {
    pub(crate) fn open(file: &SourceFile, line_base: u64) -> Result<Splitter, CorpusError> {
        let handle = File::open(&file.path).map_err(|e| CorpusError::io(&file.path, e))?;
        Ok(Splitter {
            reader: BufReader::with_capacity(1 << 20, handle),
            path: file.path.clone(),
            format: file.format,
            line: line_base,
            base: line_base,
            bytes_read: 0,
            eof: false,
        })
    }

    /// Global line number of the last line read (after EOF: the file's last line).
    pub(crate) fn lines_read(&self) -> u64 {
        self.line
    }

    /// Bytes of this file consumed so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The line within this file of a global line number.
    pub(crate) fn file_line(&self, line: u64) -> u64 {
        line - self.base
    }

    /// Appends one line without its terminator to `data`; returns where it starts, `None` at
    /// end of file. Lines go straight from the reader's buffer into the chunk (one copy).
    fn read_line_into(&mut self, data: &mut Vec<u8>) -> Result<Option<usize>, CorpusError> {
        if self.eof {
            return Ok(None);
        }
        let start = data.len();
        let n = self
            .reader
            .read_until(b'\n', data)
            .map_err(|e| CorpusError::io(&self.path, e))?;
        if n == 0 {
            self.eof = true;
            return Ok(None);
        }
        self.bytes_read += n as u64;
        self.line += 1;
        if data.last() == Some(&b'\n') {
            data.pop();
            if data.len() > start && data.last() == Some(&b'\r') {
                data.pop();
            }
        }
        Ok(Some(start))
    }

    /// Appends the next record's bytes to `data`; `None` at end of file.
    pub(crate) fn next_into(
        &mut self,
        data: &mut Vec<u8>,
    ) -> Result<Option<RecordSpan>, CorpusError> {
        // Skip blank lines (between JSONL objects and between text documents).
        let start = loop {
            let Some(start) = self.read_line_into(data)? else {
                return Ok(None);
            };
            if data[start..].iter().all(u8::is_ascii_whitespace) {
                data.truncate(start);
            } else {
                break start;
            }
        };
        let first_line = self.line;
        if self.format == SourceFormat::Text {
            loop {
                let separator = data.len();
                data.push(b'\n');
                match self.read_line_into(data)? {
                    Some(line) if !data[line..].iter().all(u8::is_ascii_whitespace) => {}
                    _ => {
                        data.truncate(separator);
                        break;
                    }
                }
            }
        }
        Ok(Some(RecordSpan {
            line: first_line,
            start,
            end: data.len(),
        }))
    }
}

/// Decodes a raw record into its sample text, or says why it is malformed.
pub(crate) fn decode(
    format: SourceFormat,
    text_field: &str,
    bytes: &[u8],
) -> Result<String, String> {
    match format {
        SourceFormat::Text => std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|e| format!("invalid UTF-8 at byte {} of the document", e.valid_up_to())),
        SourceFormat::Jsonl => {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let value = TextField(text_field)
                .deserialize(&mut de)
                .map_err(|e| format!("invalid JSON: {e}"))?;
            de.end().map_err(|e| format!("invalid JSON: {e}"))?;
            value.ok_or_else(|| format!("the object has no string field `{text_field}`"))
        }
    }
}

/// Extracts one string field from a JSON object, skipping the others without building them.
struct TextField<'f>(&'f str);

impl<'de> DeserializeSeed<'de> for TextField<'_> {
    type Value = Option<String>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TextField<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a JSON object with a string field `{}`", self.0)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.0 {
                if found.is_some() {
                    return Err(serde::de::Error::custom(format!(
                        "field `{}` appears twice",
                        self.0
                    )));
                }
                found = Some(map.next_value::<String>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// The samples of one source as they are on disk now; see [`crate::AdmittedCorpus::read_source`].
pub struct SourceSamples {
    source: u32,
    files: std::vec::IntoIter<SourceFile>,
    text_field: String,
    current: Option<(Splitter, SourceFormat)>,
    line_base: u64,
    buf: Vec<u8>,
    failed: bool,
}

impl SourceSamples {
    /// Streams the samples of files listed by [`list_files`], outside any admission (source
    /// index 0): the same splitting and hashing admission uses.
    pub fn from_files(files: Vec<SourceFile>, text_field: &str) -> SourceSamples {
        SourceSamples::new(0, files, text_field.to_string())
    }

    pub(crate) fn new(source: u32, files: Vec<SourceFile>, text_field: String) -> SourceSamples {
        SourceSamples {
            source,
            files: files.into_iter(),
            text_field,
            current: None,
            line_base: 0,
            buf: Vec::new(),
            failed: false,
        }
    }
}

impl Iterator for SourceSamples {
    type Item = Result<Sample, CorpusError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if self.current.is_none() {
                let file = self.files.next()?;
                match Splitter::open(&file, self.line_base) {
                    Ok(s) => self.current = Some((s, file.format)),
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
            let (splitter, format) = self.current.as_mut()?;
            self.buf.clear();
            match splitter.next_into(&mut self.buf) {
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                Ok(None) => {
                    self.line_base = splitter.lines_read();
                    self.current = None;
                }
                Ok(Some(span)) => {
                    let bytes = &self.buf[span.start..span.end];
                    return Some(match decode(*format, &self.text_field, bytes) {
                        Ok(text) => Ok(Sample {
                            source: self.source,
                            line: span.line,
                            hash: crate::sample_hash(&text),
                            text,
                        }),
                        Err(message) => Err(CorpusError::Malformed {
                            file: splitter.path.clone(),
                            line: splitter.file_line(span.line),
                            message,
                        }),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(format: SourceFormat, content: &str) -> Vec<(u64, String)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, content).unwrap();
        let files = list_files(&path, Some(format)).unwrap();
        SourceSamples::new(0, files, "text".into())
            .map(|s| s.map(|s| (s.line, s.text)).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn text_documents_split_on_blank_lines_with_crlf_normalized() {
        let got = split_all(SourceFormat::Text, "a b\r\nc\r\n\r\n\n  \nd\n\ne\nf");
        assert_eq!(
            got,
            vec![(1, "a b\nc".into()), (6, "d".into()), (8, "e\nf".into())]
        );
    }

    #[test]
    fn jsonl_takes_the_text_field_and_skips_blank_lines() {
        let got = split_all(
            SourceFormat::Jsonl,
            "{\"id\":1,\"text\":\"hello\\nworld\",\"meta\":{\"x\":[1,2]}}\n\n{\"text\":\"two\"}\n",
        );
        assert_eq!(got, vec![(1, "hello\nworld".into()), (3, "two".into())]);
    }

    #[test]
    fn malformed_jsonl_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "{\"text\":\"ok\"}\n{\"text\": 3}\n").unwrap();
        let files = list_files(&path, None).unwrap();
        let results: Vec<_> = SourceSamples::new(0, files, "text".into()).collect();
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:2: malformed sample", path.display())),
            "{err}"
        );
    }
}
