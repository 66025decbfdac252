//! The on-disk framing shared by segment files and the checkpoint file.
//!
//! ```text
//! file   := header frame*
//! header := magic (8 bytes) ‖ version u32 LE ‖ origin length u16 LE ‖ origin ‖ crc32(all before) u32 LE
//! frame  := len u32 LE ‖ crc32(len) u32 LE ‖ payload (len bytes) ‖ crc32(payload) u32 LE
//! ```
//! The length has its own checksum so a damaged length in the middle of a file is reported as
//! corruption, never mistaken for a torn tail (which would cut good records). A torn tail can
//! only be a *prefix* of a frame: fewer than 8 bytes, or a valid length pointing past the end.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

pub const SEGMENT_MAGIC: &[u8; 8] = b"WLINEAGE";
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"WCHKPNTS";
pub const FORMAT_VERSION: u32 = 1;
/// A frame larger than this is refused as corrupt (records are small; this bounds allocation).
pub const MAX_FRAME: u32 = 64 << 20;
pub const FRAME_OVERHEAD: usize = 12;

pub fn encode_header(magic: &[u8; 8], origin: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + origin.len() + 4);
    out.extend_from_slice(magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(origin.len() as u16).to_le_bytes());
    out.extend_from_slice(origin.as_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Appends one frame around `payload` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
}

/// Why a file could not be read as frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameFault {
    /// The header is missing, has the wrong magic, or fails its checksum.
    BadHeader(String),
    /// Frame number `frame` at `offset` is damaged (checksum mismatch or impossible length).
    Corrupt {
        frame: u64,
        offset: u64,
        reason: String,
    },
    /// The file ends inside frame number `frame`, which starts at `offset`.
    Torn { frame: u64, offset: u64 },
}

/// A file read into memory with its frames located.
pub struct FramedFile {
    pub bytes: Vec<u8>,
    pub origin: String,
    /// (payload start, payload length) per complete frame.
    pub frames: Vec<(usize, usize)>,
    /// Byte offset just after the last complete frame.
    pub valid_len: u64,
    /// The first problem met, if any; frames before it are good.
    pub fault: Option<FrameFault>,
}

impl FramedFile {
    pub fn payload(&self, frame: usize) -> &[u8] {
        let (start, len) = self.frames[frame];
        &self.bytes[start..start + len]
    }
}

/// Reads and scans a framed file. IO errors are returned; format problems land in `fault`.
pub fn read_framed(path: &Path, magic: &[u8; 8]) -> io::Result<FramedFile> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(scan(bytes, magic))
}

pub fn scan(bytes: Vec<u8>, magic: &[u8; 8]) -> FramedFile {
    let mut file = FramedFile {
        bytes,
        origin: String::new(),
        frames: Vec::new(),
        valid_len: 0,
        fault: None,
    };
    let b = &file.bytes;
    let header_len = match parse_header(b, magic) {
        Ok((origin, len)) => {
            file.origin = origin;
            len
        }
        Err(reason) => {
            file.fault = Some(FrameFault::BadHeader(reason));
            return file;
        }
    };
    let mut pos = header_len;
    let mut frame_no = 0u64;
    let mut frames = Vec::new();
    let mut fault = None;
    while pos < b.len() {
        let offset = pos as u64;
        if b.len() - pos < 8 {
            fault = Some(FrameFault::Torn {
                frame: frame_no,
                offset,
            });
            break;
        }
        let len_bytes = [b[pos], b[pos + 1], b[pos + 2], b[pos + 3]];
        let len_crc = u32::from_le_bytes([b[pos + 4], b[pos + 5], b[pos + 6], b[pos + 7]]);
        if crc32fast::hash(&len_bytes) != len_crc {
            fault = Some(FrameFault::Corrupt {
                frame: frame_no,
                offset,
                reason: "frame length checksum mismatch".into(),
            });
            break;
        }
        let len = u32::from_le_bytes(len_bytes);
        if len > MAX_FRAME {
            fault = Some(FrameFault::Corrupt {
                frame: frame_no,
                offset,
                reason: format!("frame length {len} exceeds the {MAX_FRAME}-byte limit"),
            });
            break;
        }
        let start = pos + 8;
        let end = start + len as usize;
        if end + 4 > b.len() {
            fault = Some(FrameFault::Torn {
                frame: frame_no,
                offset,
            });
            break;
        }
        let crc = u32::from_le_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
        if crc32fast::hash(&b[start..end]) != crc {
            fault = Some(FrameFault::Corrupt {
                frame: frame_no,
                offset,
                reason: "frame checksum mismatch".into(),
            });
            break;
        }
        frames.push((start, len as usize));
        pos = end + 4;
        frame_no += 1;
    }
    file.valid_len = if matches!(fault, Some(FrameFault::BadHeader(_))) {
        0
    } else {
        frames
            .last()
            .map_or(header_len as u64, |&(s, l)| (s + l + 4) as u64)
    };
    file.frames = frames;
    file.fault = fault;
    file
}

/// Checks a file header; returns the origin and the header length.
pub fn parse_header(b: &[u8], magic: &[u8; 8]) -> Result<(String, usize), String> {
    if b.len() < 18 {
        return Err("file is too short to hold a header".into());
    }
    if &b[..8] != magic {
        return Err("wrong magic bytes (not a Warden lineage file)".into());
    }
    let origin_len = u16::from_le_bytes([b[12], b[13]]) as usize;
    let header_len = 14 + origin_len + 4;
    if b.len() < header_len {
        return Err("file is too short to hold its header".into());
    }
    let crc = u32::from_le_bytes([
        b[14 + origin_len],
        b[15 + origin_len],
        b[16 + origin_len],
        b[17 + origin_len],
    ]);
    if crc32fast::hash(&b[..14 + origin_len]) != crc {
        return Err("header checksum mismatch".into());
    }
    let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    let origin = std::str::from_utf8(&b[14..14 + origin_len])
        .map_err(|_| "origin is not UTF-8".to_string())?;
    Ok((origin.to_string(), header_len))
}

/// Reads frames one at a time from a file, holding one payload in memory: the bounded-memory
/// path used by open, verify and every lineage-wide read. Faults are the same as [`scan`]'s.
pub struct FrameReader {
    reader: BufReader<File>,
    /// The origin in the file header.
    pub origin: String,
    /// Bytes taken by the header (the offset of frame 0).
    pub header_len: u64,
    /// The file length when it was opened; frames past it are torn.
    file_len: u64,
    /// Offset of the next frame.
    offset: u64,
    /// Number of the next frame, counted from where reading started.
    frame_no: u64,
    done: bool,
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl FrameReader {
    /// Opens a framed file and checks its header. The outer error is IO; the inner one is a
    /// [`FrameFault::BadHeader`].
    pub fn open(path: &Path, magic: &[u8; 8]) -> io::Result<Result<FrameReader, FrameFault>> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let mut reader = BufReader::with_capacity(256 << 10, file);
        let mut head = [0u8; 14];
        let n = read_full(&mut reader, &mut head)?;
        let mut header = head[..n].to_vec();
        if n == 14 {
            let origin_len = u16::from_le_bytes([head[12], head[13]]) as usize;
            let mut rest = vec![0u8; origin_len + 4];
            let m = read_full(&mut reader, &mut rest)?;
            header.extend_from_slice(&rest[..m]);
        }
        let (origin, header_len) = match parse_header(&header, magic) {
            Ok(h) => h,
            Err(reason) => return Ok(Err(FrameFault::BadHeader(reason))),
        };
        Ok(Ok(FrameReader {
            reader,
            origin,
            header_len: header_len as u64,
            file_len,
            offset: header_len as u64,
            frame_no: 0,
            done: false,
        }))
    }

    /// Continues reading at `offset` (a frame boundary found earlier), numbering the next frame
    /// `frame_no`.
    pub fn seek_to(&mut self, offset: u64, frame_no: u64) -> io::Result<()> {
        self.reader.seek(SeekFrom::Start(offset))?;
        self.offset = offset;
        self.frame_no = frame_no;
        self.done = false;
        Ok(())
    }

    /// The offset of the next frame (after the last one read).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The length of the file when it was opened.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Reads the next frame's payload into `buf` and returns the frame's offset; `Ok(None)` at
    /// a clean end of file. After a fault, every later call returns `Ok(None)`.
    pub fn next_frame(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<Result<u64, FrameFault>>> {
        if self.done {
            return Ok(None);
        }
        let offset = self.offset;
        let frame = self.frame_no;
        let torn = FrameFault::Torn { frame, offset };
        let mut head = [0u8; 8];
        let n = read_full(&mut self.reader, &mut head)?;
        if n == 0 {
            self.done = true;
            return Ok(None);
        }
        self.done = true;
        if n < 8 {
            return Ok(Some(Err(torn)));
        }
        let len_bytes = [head[0], head[1], head[2], head[3]];
        let len_crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if crc32fast::hash(&len_bytes) != len_crc {
            return Ok(Some(Err(FrameFault::Corrupt {
                frame,
                offset,
                reason: "frame length checksum mismatch".into(),
            })));
        }
        let len = u32::from_le_bytes(len_bytes);
        if len > MAX_FRAME {
            return Ok(Some(Err(FrameFault::Corrupt {
                frame,
                offset,
                reason: format!("frame length {len} exceeds the {MAX_FRAME}-byte limit"),
            })));
        }
        // A length pointing past the end is a torn write; checked before allocating.
        let end = offset + 8 + len as u64 + 4;
        if end > self.file_len {
            // The file may have grown since it was opened (a live log): only then read on.
            self.file_len = self.reader.get_ref().metadata()?.len();
            if end > self.file_len {
                return Ok(Some(Err(torn)));
            }
        }
        buf.clear();
        buf.resize(len as usize + 4, 0);
        let m = read_full(&mut self.reader, buf)?;
        if m < buf.len() {
            return Ok(Some(Err(torn)));
        }
        let crc = u32::from_le_bytes([
            buf[len as usize],
            buf[len as usize + 1],
            buf[len as usize + 2],
            buf[len as usize + 3],
        ]);
        buf.truncate(len as usize);
        if crc32fast::hash(buf) != crc {
            return Ok(Some(Err(FrameFault::Corrupt {
                frame,
                offset,
                reason: "frame checksum mismatch".into(),
            })));
        }
        self.offset = end;
        self.frame_no += 1;
        self.done = false;
        Ok(Some(Ok(offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = encode_header(SEGMENT_MAGIC, "origin");
        for p in payloads {
            encode_frame(&mut out, p);
        }
        out
    }

    #[test]
    fn every_prefix_is_a_torn_tail_never_corruption() {
        let full = file_with(&[b"alpha", b"beta", b"gamma"]);
        let header = encode_header(SEGMENT_MAGIC, "origin").len();
        for cut in header..full.len() {
            let scanned = scan(full[..cut].to_vec(), SEGMENT_MAGIC);
            assert!(
                matches!(scanned.fault, None | Some(FrameFault::Torn { .. })),
                "cut at {cut}: {:?}",
                scanned.fault
            );
        }
        assert_eq!(scan(full, SEGMENT_MAGIC).frames.len(), 3);
    }

    /// Reads `bytes` with the streaming reader: frames and the fault, as `scan` reports them.
    fn stream(bytes: &[u8]) -> (Vec<Vec<u8>>, Option<FrameFault>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        let mut reader = match FrameReader::open(&path, SEGMENT_MAGIC).unwrap() {
            Ok(reader) => reader,
            Err(fault) => return (Vec::new(), Some(fault)),
        };
        let (mut frames, mut buf) = (Vec::new(), Vec::new());
        while let Some(next) = reader.next_frame(&mut buf).unwrap() {
            match next {
                Ok(_) => frames.push(buf.clone()),
                Err(fault) => return (frames, Some(fault)),
            }
        }
        (frames, None)
    }

    #[test]
    fn the_streaming_reader_agrees_with_scan_on_every_prefix_and_flip() {
        let full = file_with(&[b"alpha", b"beta", b"gamma"]);
        let mut cases: Vec<Vec<u8>> = (0..=full.len()).map(|cut| full[..cut].to_vec()).collect();
        for i in 0..full.len() {
            let mut bytes = full.clone();
            bytes[i] ^= 0x04;
            cases.push(bytes);
        }
        for bytes in cases {
            let scanned = scan(bytes.clone(), SEGMENT_MAGIC);
            let expected: Vec<Vec<u8>> = (0..scanned.frames.len())
                .map(|i| scanned.payload(i).to_vec())
                .collect();
            let (frames, fault) = stream(&bytes);
            assert_eq!(frames, expected);
            assert_eq!(fault, scanned.fault);
        }
    }

    #[test]
    fn every_byte_flip_is_detected() {
        let full = file_with(&[b"alpha", b"beta", b"gamma"]);
        for i in 0..full.len() {
            let mut bytes = full.clone();
            bytes[i] ^= 0x01;
            let scanned = scan(bytes, SEGMENT_MAGIC);
            assert!(scanned.fault.is_some(), "flip at byte {i} went unnoticed");
        }
    }
}
