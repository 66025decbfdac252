//! The one canonical binary encoding: RFC 8949 §4.2.1 core deterministic CBOR over the JSON model.
//!
//! Written here rather than taken from a general CBOR crate because what is signed must have
//! exactly one encoding, and the decoder must *reject* every other encoding of the same value
//! (non-minimal integers, unsorted or duplicate map keys, indefinite lengths, floats wider than
//! needed, tags, trailing bytes) so that "decodes" implies "re-encodes to the same bytes". The
//! rules, each the RFC's, so any core-deterministic encoder (Python `cbor2.dumps(v,
//! canonical=True)`, checked by `tests/cbor_vectors.rs`) writes the same bytes:
//!
//! * integers use the shortest head (major types 0 and 1);
//! * a float is written in the shortest of binary16 / binary32 / binary64 that holds its value
//!   exactly (§4.2.2 preferred serialization; `-0.0` is `f9 8000`); floats stay floats (no
//!   numeric reduction to integers). Only finite floats exist here: NaN and the infinities are
//!   not in the JSON model, so the encoder refuses them and the decoder refuses them at any width;
//! * text strings are UTF-8 (major type 3); byte strings (major type 2) appear only in the envelope;
//! * map keys are text strings ordered bytewise by their *encoded* form, i.e. shorter keys first
//!   and equal lengths bytewise (`"a" < "b" < "aa" < "bb"`), strictly increasing, no duplicates;
//! * `null`, `true`, `false` are the simple values 22, 21, 20.
//!
//! Payloads are limited to the JSON data model (`serde_json::Value`) so JSON and CBOR forms of a
//! record decode to the same value.

use std::cmp::Ordering;

use half::f16;
use serde_json::{Map, Number, Value};

/// Nesting deeper than this is refused: attacker-supplied bytes must not exhaust the stack.
pub const MAX_DEPTH: usize = 64;

const KEY_ORDER: &str =
    "map keys not in strictly increasing deterministic order (shorter first, then bytewise)";

/// Why bytes are not canonical CBOR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    #[error("unexpected end of data at byte {0}")]
    Truncated(usize),
    #[error("non-canonical encoding at byte {0}: {1}")]
    NonCanonical(usize, &'static str),
    #[error("unsupported CBOR item at byte {0}: {1}")]
    Unsupported(usize, &'static str),
    #[error("invalid UTF-8 in text string at byte {0}")]
    Utf8(usize),
    #[error("nesting deeper than {MAX_DEPTH} levels at byte {0}")]
    TooDeep(usize),
    #[error("{0} trailing bytes after the item")]
    Trailing(usize),
    #[error("non-finite float in payload (NaN and infinities cannot be recorded)")]
    NonFinite,
    #[error("expected {expected} at byte {at}")]
    Expected { expected: &'static str, at: usize },
}

/// Appends a CBOR head (major type + argument) in its shortest form.
pub fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= u8::MAX as u64 {
        out.push(m | 24);
        out.push(arg as u8);
    } else if arg <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

pub fn write_text(out: &mut Vec<u8>, s: &str) {
    write_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

pub fn write_null(out: &mut Vec<u8>) {
    out.push(0xf6);
}

/// Encodes a JSON value canonically. Fails only on non-finite floats.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), CborError> {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_text(out, s),
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            for item in items {
                write_value(out, item)?;
            }
        }
        Value::Object(map) => {
            // serde_json's Map iterates in text order ("aa" before "b"); deterministic CBOR
            // wants encoded-key order ("b" before "aa").
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| key_order(a.0, b.0));
            write_head(out, 5, entries.len() as u64);
            for (key, item) in entries {
                write_text(out, key);
                write_value(out, item)?;
            }
        }
    }
    Ok(())
}

/// RFC 8949 §4.2.1 order of two text map keys: bytewise order of their encodings. The head
/// encodes the length and grows with it, so this is "shorter first, then bytewise".
pub fn key_order(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The width in bytes (2, 4 or 8) of the shortest IEEE 754 float that holds `f` exactly.
/// Compares bit patterns, so `-0.0` stays distinct from `0.0` (both fit binary16).
fn shortest_float_width(f: f64) -> usize {
    if f16::from_f64(f).to_f64().to_bits() == f.to_bits() {
        2
    } else if f64::from(f as f32).to_bits() == f.to_bits() {
        4
    } else {
        8
    }
}

/// Appends a finite float in its preferred (shortest exact) serialization.
pub fn write_float(out: &mut Vec<u8>, f: f64) -> Result<(), CborError> {
    if !f.is_finite() {
        return Err(CborError::NonFinite);
    }
    match shortest_float_width(f) {
        2 => {
            out.push(0xf9);
            out.extend_from_slice(&f16::from_f64(f).to_bits().to_be_bytes());
        }
        4 => {
            out.push(0xfa);
            out.extend_from_slice(&(f as f32).to_bits().to_be_bytes());
        }
        _ => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
    }
    Ok(())
}

fn write_number(out: &mut Vec<u8>, n: &Number) -> Result<(), CborError> {
    if let Some(u) = n.as_u64() {
        write_head(out, 0, u);
    } else if let Some(i) = n.as_i64() {
        // Negative: CBOR stores -1 - i.
        write_head(out, 1, (-1 - i) as u64);
    } else {
        write_float(out, n.as_f64().ok_or(CborError::NonFinite)?)?;
    }
    Ok(())
}

/// A strict reader over canonical CBOR.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn finish(&self) -> Result<(), CborError> {
        if self.pos != self.bytes.len() {
            return Err(CborError::Trailing(self.bytes.len() - self.pos));
        }
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or(CborError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], CborError> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&end| end <= self.bytes.len())
            .ok_or(CborError::Truncated(self.bytes.len()))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// Reads a head, returning (major type, argument, initial byte's additional info) and
    /// refusing non-shortest arguments and indefinite lengths.
    fn head(&mut self) -> Result<(u8, u64, u8), CborError> {
        let at = self.pos;
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        if major == 7 {
            return Ok((7, 0, info));
        }
        let arg = match info {
            0..=23 => info as u64,
            24 => {
                let v = self.byte()? as u64;
                if v < 24 {
                    return Err(CborError::NonCanonical(at, "integer not in shortest form"));
                }
                v
            }
            25 => {
                let b = self.take(2)?;
                let v = u16::from_be_bytes([b[0], b[1]]) as u64;
                if v <= u8::MAX as u64 {
                    return Err(CborError::NonCanonical(at, "integer not in shortest form"));
                }
                v
            }
            26 => {
                let b = self.take(4)?;
                let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64;
                if v <= u16::MAX as u64 {
                    return Err(CborError::NonCanonical(at, "integer not in shortest form"));
                }
                v
            }
            27 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let v = u64::from_be_bytes(a);
                if v <= u32::MAX as u64 {
                    return Err(CborError::NonCanonical(at, "integer not in shortest form"));
                }
                v
            }
            31 => return Err(CborError::NonCanonical(at, "indefinite length")),
            _ => {
                return Err(CborError::Unsupported(
                    at,
                    "reserved additional information",
                ))
            }
        };
        Ok((major, arg, info))
    }

    /// Reads the argument of a float head (`info` 25, 26 or 27 after the initial byte at `at`)
    /// and refuses non-finite values and any width wider than the value needs.
    fn float(&mut self, at: usize, info: u8) -> Result<f64, CborError> {
        let (f, width) = match info {
            25 => {
                let b = self.take(2)?;
                (f16::from_bits(u16::from_be_bytes([b[0], b[1]])).to_f64(), 2)
            }
            26 => {
                let b = self.take(4)?;
                let bits = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                (f64::from(f32::from_bits(bits)), 4)
            }
            _ => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (f64::from_bits(u64::from_be_bytes(a)), 8)
            }
        };
        if !f.is_finite() {
            return Err(CborError::NonFinite);
        }
        if shortest_float_width(f) != width {
            return Err(CborError::NonCanonical(
                at,
                "float wider than its shortest exact form",
            ));
        }
        Ok(f)
    }

    pub fn array_len(&mut self) -> Result<u64, CborError> {
        let at = self.pos;
        match self.head()? {
            (4, n, _) => Ok(n),
            _ => Err(CborError::Expected {
                expected: "an array",
                at,
            }),
        }
    }

    pub fn u64(&mut self) -> Result<u64, CborError> {
        let at = self.pos;
        match self.head()? {
            (0, n, _) => Ok(n),
            _ => Err(CborError::Expected {
                expected: "an unsigned integer",
                at,
            }),
        }
    }

    pub fn text(&mut self) -> Result<&'a str, CborError> {
        let at = self.pos;
        match self.head()? {
            (3, n, _) => {
                let raw = self.take(n)?;
                std::str::from_utf8(raw).map_err(|_| CborError::Utf8(at))
            }
            _ => Err(CborError::Expected {
                expected: "a text string",
                at,
            }),
        }
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let at = self.pos;
        match self.head()? {
            (2, n, _) => self.take(n),
            _ => Err(CborError::Expected {
                expected: "a byte string",
                at,
            }),
        }
    }

    /// `null` → None, otherwise a text string.
    pub fn optional_text(&mut self) -> Result<Option<&'a str>, CborError> {
        if self.bytes.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            return Ok(None);
        }
        self.text().map(Some)
    }

    /// `null` → None, otherwise a byte string.
    pub fn optional_bytes(&mut self) -> Result<Option<&'a [u8]>, CborError> {
        if self.bytes.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            return Ok(None);
        }
        self.bytes().map(Some)
    }

    /// Reads one payload value (the JSON data model) and returns it.
    pub fn value(&mut self) -> Result<Value, CborError> {
        self.value_at_depth(0)
    }

    fn value_at_depth(&mut self, depth: usize) -> Result<Value, CborError> {
        let at = self.pos;
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep(at));
        }
        let (major, arg, info) = self.head()?;
        Ok(match major {
            0 => Value::Number(arg.into()),
            1 => {
                let v = i64::try_from(arg)
                    .map_err(|_| CborError::Unsupported(at, "negative integer below i64::MIN"))?;
                Value::Number((-1 - v).into())
            }
            2 => return Err(CborError::Unsupported(at, "byte string inside a payload")),
            3 => {
                let raw = self.take(arg)?;
                Value::String(
                    std::str::from_utf8(raw)
                        .map_err(|_| CborError::Utf8(at))?
                        .to_string(),
                )
            }
            4 => {
                let mut items = Vec::with_capacity(arg.min(1024) as usize);
                for _ in 0..arg {
                    items.push(self.value_at_depth(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let mut map = Map::new();
                let mut last: Option<&str> = None;
                for _ in 0..arg {
                    let key_at = self.pos;
                    let key = self.text()?;
                    if last.is_some_and(|prev| key_order(prev, key) != Ordering::Less) {
                        return Err(CborError::NonCanonical(key_at, KEY_ORDER));
                    }
                    last = Some(key);
                    let item = self.value_at_depth(depth + 1)?;
                    map.insert(key.to_string(), item);
                }
                Value::Object(map)
            }
            6 => return Err(CborError::Unsupported(at, "tags are not used")),
            _ => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                25..=27 => {
                    let f = self.float(at, info)?;
                    Value::Number(Number::from_f64(f).ok_or(CborError::NonFinite)?)
                }
                _ => return Err(CborError::Unsupported(at, "simple value")),
            },
        })
    }

    /// Checks one payload value without building it (the verifier's fast path).
    pub fn skip_value(&mut self) -> Result<(), CborError> {
        self.skip_at_depth(0)
    }

    fn skip_at_depth(&mut self, depth: usize) -> Result<(), CborError> {
        let at = self.pos;
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep(at));
        }
        let (major, arg, info) = self.head()?;
        match major {
            0 => {}
            1 => {
                if arg > i64::MAX as u64 {
                    return Err(CborError::Unsupported(
                        at,
                        "negative integer below i64::MIN",
                    ));
                }
            }
            2 => return Err(CborError::Unsupported(at, "byte string inside a payload")),
            3 => {
                let raw = self.take(arg)?;
                std::str::from_utf8(raw).map_err(|_| CborError::Utf8(at))?;
            }
            4 => {
                for _ in 0..arg {
                    self.skip_at_depth(depth + 1)?;
                }
            }
            5 => {
                let mut last: Option<&str> = None;
                for _ in 0..arg {
                    let key_at = self.pos;
                    let key = self.text()?;
                    if last.is_some_and(|prev| key_order(prev, key) != Ordering::Less) {
                        return Err(CborError::NonCanonical(key_at, KEY_ORDER));
                    }
                    last = Some(key);
                    self.skip_at_depth(depth + 1)?;
                }
            }
            6 => return Err(CborError::Unsupported(at, "tags are not used")),
            _ => match info {
                20..=22 => {}
                25..=27 => {
                    self.float(at, info)?;
                }
                _ => return Err(CborError::Unsupported(at, "simple value")),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_value(&mut out, v).unwrap();
        let mut r = Reader::new(&out);
        assert_eq!(&r.value().unwrap(), v);
        r.finish().unwrap();
        let mut r = Reader::new(&out);
        r.skip_value().unwrap();
        r.finish().unwrap();
        out
    }

    #[test]
    fn rfc8949_appendix_a_integers() {
        assert_eq!(round_trip(&json!(0)), [0x00]);
        assert_eq!(round_trip(&json!(23)), [0x17]);
        assert_eq!(round_trip(&json!(24)), [0x18, 0x18]);
        assert_eq!(round_trip(&json!(1000)), [0x19, 0x03, 0xe8]);
        assert_eq!(round_trip(&json!(1000000)), [0x1a, 0x00, 0x0f, 0x42, 0x40]);
        assert_eq!(round_trip(&json!(-1)), [0x20]);
        assert_eq!(round_trip(&json!(-1000)), [0x39, 0x03, 0xe7]);
        assert_eq!(round_trip(&json!("IETF")), [0x64, 0x49, 0x45, 0x54, 0x46]);
        assert_eq!(
            round_trip(&json!(1.1)),
            [0xfb, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]
        );
    }

    #[test]
    fn rfc8949_appendix_a_floats_take_the_shortest_exact_width() {
        let cases: [(f64, &[u8]); 13] = [
            (0.0, &[0xf9, 0x00, 0x00]),
            (-0.0, &[0xf9, 0x80, 0x00]),
            (1.0, &[0xf9, 0x3c, 0x00]),
            (1.5, &[0xf9, 0x3e, 0x00]),
            (65504.0, &[0xf9, 0x7b, 0xff]),
            (100000.0, &[0xfa, 0x47, 0xc3, 0x50, 0x00]),
            (3.4028234663852886e38, &[0xfa, 0x7f, 0x7f, 0xff, 0xff]),
            (
                1.0e300,
                &[0xfb, 0x7e, 0x37, 0xe4, 0x3c, 0x88, 0x00, 0x75, 0x9c],
            ),
            (5.960464477539063e-8, &[0xf9, 0x00, 0x01]),
            (0.00006103515625, &[0xf9, 0x04, 0x00]),
            (-4.0, &[0xf9, 0xc4, 0x00]),
            (
                -4.1,
                &[0xfb, 0xc0, 0x10, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66],
            ),
            (0.1, &[0xfb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]),
        ];
        for (f, expected) in cases {
            let bytes = round_trip(&Value::Number(Number::from_f64(f).unwrap()));
            assert_eq!(bytes, expected, "{f:e}");
        }
    }

    #[test]
    fn non_finite_floats_are_refused_by_the_encoder() {
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(write_float(&mut Vec::new(), f), Err(CborError::NonFinite));
        }
    }

    #[test]
    fn map_keys_sort_by_encoded_bytes_shorter_first() {
        let v = json!({"bb": 1, "aa": 2, "b": 3, "a": {"zz": 0, "y": 1}});
        let bytes = round_trip(&v);
        let expected: &[u8] = &[
            0xa4, 0x61, b'a', 0xa2, 0x61, b'y', 0x01, 0x62, b'z', b'z', 0x00, 0x61, b'b', 0x03,
            0x62, b'a', b'a', 0x02, 0x62, b'b', b'b', 0x01,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        let cases: [&[u8]; 9] = [
            &[0x18, 0x05],                                     // 5 with a one-byte argument
            &[0x9f, 0x01, 0xff],                               // indefinite array
            &[0xa2, 0x61, 0x62, 0x01, 0x61, 0x61, 0x02],       // keys out of order
            &[0xa2, 0x62, 0x61, 0x61, 0x01, 0x61, 0x62, 0x02], // "aa" before "b": text order
            &[0xfa, 0x3f, 0x80, 0x00, 0x00],                   // 1.0 as binary32
            &[0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],             // 1.0 as binary64
            &[0xc1, 0x01],                                     // tag
            &[0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],             // NaN
            &[0xf9, 0x7c, 0x00],                               // infinity as binary16
        ];
        for bytes in cases {
            assert!(Reader::new(bytes).value().is_err(), "{bytes:02x?} accepted");
            assert!(
                Reader::new(bytes).skip_value().is_err(),
                "{bytes:02x?} skipped"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut bytes = vec![0x81; 100_000];
        bytes.push(0x00);
        assert!(matches!(
            Reader::new(&bytes).value(),
            Err(CborError::TooDeep(_))
        ));
        assert!(matches!(
            Reader::new(&bytes).skip_value(),
            Err(CborError::TooDeep(_))
        ));
    }

    #[test]
    fn huge_declared_lengths_fail_cleanly() {
        let bytes = [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(Reader::new(&bytes).value().is_err());
        let bytes = [0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(Reader::new(&bytes).skip_value().is_err());
    }
}
