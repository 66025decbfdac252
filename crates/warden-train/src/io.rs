//! Durable files of a run: safetensors encoding, atomic writes, parameter digests.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::TrainError;

/// Writes `bytes` to `path` durably (temporary file, fsync, rename, directory fsync): the one
/// implementation in `warden_store::fs`, with the error mapped to this crate's.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    warden_store::fs::atomic_write(path, bytes).map_err(|source| TrainError::Write {
        path: path.to_path_buf(),
        source,
    })
}

pub fn read(path: &Path) -> Result<Vec<u8>, TrainError> {
    std::fs::read(path).map_err(|e| TrainError::io(path, e))
}

/// Encodes f32 tensors as safetensors (names sorted, header padded to 8 bytes) with optional
/// string metadata. One encoder, so the same parameters always give the same bytes.
///
/// Written here rather than with `safetensors::serialize` because that crate keeps
/// `__metadata__` in a `HashMap` and writes it in iteration order, so two identical checkpoints
/// would differ byte for byte; reading uses the crate (and candle) as is.
pub fn safetensors_bytes(
    tensors: &BTreeMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, TrainError> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut data = Vec::new();
    for (name, tensor) in tensors {
        let values = tensor
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": tensor.dims(), "data_offsets": [start, data.len()]}),
        );
    }
    let mut header_bytes = serde_json::to_vec(&header)
        .map_err(|e| TrainError::Internal(format!("safetensors header: {e}")))?;
    while header_bytes.len() % 8 != 0 {
        header_bytes.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header_bytes.len() + data.len());
    out.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&data);
    Ok(out)
}

/// Named tensors, in name order.
pub type Tensors = BTreeMap<String, Tensor>;
/// safetensors `__metadata__`.
pub type Metadata = BTreeMap<String, String>;

/// Decodes safetensors bytes into tensors and metadata; `origin` is named in errors.
pub fn read_safetensors(bytes: &[u8], origin: &str) -> Result<(Tensors, Metadata), TrainError> {
    let bad = |reason: String| TrainError::Checkpoint {
        path: origin.into(),
        reason,
    };
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let metadata = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok((tensors.into_iter().collect(), metadata))
}

/// SHA-256 over every parameter in name order: name, NUL, shape (u64 LE each), f32 LE values
/// (the one encoder is `warden_model::gpt::parameter_digest`).
pub fn parameter_digest(tensors: &BTreeMap<String, Tensor>) -> Result<[u8; 32], TrainError> {
    Ok(warden_model::gpt::parameter_digest(tensors)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_with_metadata() {
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "b".to_string(),
            Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap(),
        );
        tensors.insert(
            "a".to_string(),
            Tensor::new(&[5.0f32], &Device::Cpu).unwrap(),
        );
        let mut meta = BTreeMap::new();
        meta.insert("iteration".to_string(), "7".to_string());
        let bytes = safetensors_bytes(&tensors, &meta).unwrap();
        let (back, meta_back) = read_safetensors(&bytes, "x").unwrap();
        assert_eq!(meta_back, meta);
        assert_eq!(
            back["b"].to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        assert_eq!(
            parameter_digest(&back).unwrap(),
            parameter_digest(&tensors).unwrap()
        );
        assert!(
            read_safetensors(&bytes[..bytes.len() - 1], "cut.safetensors")
                .unwrap_err()
                .to_string()
                .contains("cut.safetensors")
        );
    }
}
