//! The append-state cache (`DIR/append-state`): where the log stood at a checkpoint, so that
//! opening for append reads only the records written after it instead of the whole log.
//!
//! ```text
//! "WSTATE01" ‖ size u64 ‖ prev [32] ‖ prev segment u64 ‖ prev offset u64
//!            ‖ segment u64 ‖ segment offset u64 ‖ checkpoint offset u64 ‖ checkpoints u64
//!            ‖ n u8 ‖ frontier [32]·n ‖ crc32(all before) u32            (integers little-endian)
//! ```
//! It is only a cache: open checks it against the files (the checkpoint it names must have its
//! size and a root equal to the frontier's, the record before it must hash to `prev`) and falls
//! back to reading the whole log when it is missing, stale in a way it cannot use, or damaged.
//! The log is append-only and a sealed record is never cut, so a state written at a checkpoint
//! stays valid however far the log has grown since.

use warden_merkle::Hash;

const MAGIC: &[u8; 8] = b"WSTATE01";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppendState {
    /// Records covered (= the size of the checkpoint at `checkpoint_offset`).
    pub size: u64,
    /// Leaf hash of record `size - 1` (zeroes when `size == 0`).
    pub prev: Hash,
    /// First seq of the segment holding record `size - 1`, and that frame's offset.
    pub prev_segment: u64,
    pub prev_offset: u64,
    /// First seq of the segment where record `size` goes, and its offset there.
    pub segment: u64,
    pub segment_offset: u64,
    /// Offset of the checkpoint frame of size `size` in `checkpoints.wlog`, and how many
    /// checkpoints there are up to and including it.
    pub checkpoint_offset: u64,
    pub checkpoints: u64,
    pub frontier: Vec<Hash>,
}

impl AppendState {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(120 + 32 * self.frontier.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.prev);
        for n in [
            self.prev_segment,
            self.prev_offset,
            self.segment,
            self.segment_offset,
            self.checkpoint_offset,
            self.checkpoints,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.push(self.frontier.len() as u8);
        for h in &self.frontier {
            out.extend_from_slice(h);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<AppendState> {
        let body_len = bytes.len().checked_sub(4)?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let rest = body.strip_prefix(MAGIC)?;
        let u64_at = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(rest.get(i..i + 8)?.try_into().ok()?))
        };
        let size = u64_at(0)?;
        let prev: Hash = rest.get(8..40)?.try_into().ok()?;
        let n = *rest.get(88)? as usize;
        let frontier_bytes = rest.get(89..)?;
        if frontier_bytes.len() != 32 * n {
            return None;
        }
        let frontier = frontier_bytes
            .chunks_exact(32)
            .filter_map(|c| c.try_into().ok())
            .collect();
        Some(AppendState {
            size,
            prev,
            prev_segment: u64_at(40)?,
            prev_offset: u64_at(48)?,
            segment: u64_at(56)?,
            segment_offset: u64_at(64)?,
            checkpoint_offset: u64_at(72)?,
            checkpoints: u64_at(80)?,
            frontier,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_any_damage() {
        let state = AppendState {
            size: 5,
            prev: [7; 32],
            prev_segment: 0,
            prev_offset: 900,
            segment: 0,
            segment_offset: 1200,
            checkpoint_offset: 400,
            checkpoints: 3,
            frontier: vec![[1; 32], [2; 32]],
        };
        let bytes = state.encode();
        assert_eq!(AppendState::decode(&bytes), Some(state));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert_eq!(AppendState::decode(&bad), None, "flip at {i}");
        }
        assert_eq!(AppendState::decode(&bytes[..bytes.len() - 1]), None);
    }
}
