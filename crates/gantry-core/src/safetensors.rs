//! Reading a safetensors header without reading the weights.
//!
//! The format: an 8-byte little-endian header length `n`, `n` bytes of JSON
//! mapping tensor names to `{dtype, shape, data_offsets}` (plus an optional
//! `__metadata__` string map), then the tensor bytes. The header is checked
//! against the file's size, so a truncated or padded file is caught here,
//! before anything is registered.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::SafetensorsSummary;
use crate::error::{Error, Result};

/// The largest header accepted (the reference implementation's limit).
const MAX_HEADER: u64 = 100_000_000;

#[derive(Deserialize)]
struct TensorEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// Bits per element of a safetensors dtype.
fn dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        _ => return None,
    })
}

/// Reads and checks the header of the safetensors file at `path`, whose
/// size is `size`, and summarizes it. `display` names the file in errors.
pub fn read_header(path: &Path, size: u64, display: &str) -> Result<SafetensorsSummary> {
    let invalid = |reason: String| Error::Safetensors {
        file: display.to_owned(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(Error::io("cannot open", path))?;
    let mut length = [0_u8; 8];
    file.read_exact(&mut length).map_err(|_| {
        invalid(format!(
            "{size} bytes is shorter than the 8-byte header length"
        ))
    })?;
    let header_length = u64::from_le_bytes(length);
    if header_length > MAX_HEADER {
        return Err(invalid(format!(
            "the header claims {header_length} bytes (at most {MAX_HEADER})"
        )));
    }
    if 8 + header_length > size {
        return Err(invalid(format!(
            "the header claims {header_length} bytes but the file has {size}"
        )));
    }
    let mut header = vec![0_u8; usize::try_from(header_length).unwrap_or(usize::MAX)];
    file.read_exact(&mut header)
        .map_err(Error::io("cannot read", path))?;
    summarize(&header, size - 8 - header_length).map_err(invalid)
}

/// Summarizes a header whose data section holds `data_size` bytes.
fn summarize(header: &[u8], data_size: u64) -> Result<SafetensorsSummary, String> {
    let entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|error| format!("header is not a JSON object: {error}"))?;
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if name == "__metadata__" {
            metadata = serde_json::from_value(value)
                .map_err(|_| "`__metadata__` must map strings to strings".to_owned())?;
            continue;
        }
        let entry: TensorEntry =
            serde_json::from_value(value).map_err(|error| format!("tensor {name:?}: {error}"))?;
        tensors.push((name, entry));
    }
    tensors.sort_by_key(|(_, entry)| entry.data_offsets);
    let mut dtypes: BTreeMap<String, u64> = BTreeMap::new();
    let mut parameters = 0_u64;
    let mut expected_start = 0_u64;
    for (name, entry) in &tensors {
        let bits = dtype_bits(&entry.dtype)
            .ok_or_else(|| format!("tensor {name:?} has unknown dtype {:?}", entry.dtype))?;
        let elements = entry
            .shape
            .iter()
            .try_fold(1_u64, |product, &dimension| product.checked_mul(dimension))
            .ok_or_else(|| format!("tensor {name:?}: shape overflows"))?;
        let [start, end] = entry.data_offsets;
        if start != expected_start || end < start {
            return Err(format!(
                "tensor {name:?} occupies bytes {start}..{end}, expected to start at {expected_start} (tensors must tile the data section)"
            ));
        }
        let bytes = elements
            .checked_mul(bits)
            .map(|total_bits| total_bits.div_ceil(8))
            .ok_or_else(|| format!("tensor {name:?}: size overflows"))?;
        if end - start != bytes {
            return Err(format!(
                "tensor {name:?} is {} {:?} elements ({bytes} bytes) but occupies {} bytes",
                elements,
                entry.dtype,
                end - start
            ));
        }
        expected_start = end;
        parameters += elements;
        *dtypes.entry(entry.dtype.clone()).or_default() += elements;
    }
    if expected_start != data_size {
        return Err(format!(
            "the tensors cover {expected_start} bytes but the data section has {data_size} (truncated or padded)"
        ));
    }
    Ok(SafetensorsSummary {
        tensors: tensors.len() as u64,
        parameters,
        dtypes,
        metadata,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0_u8, data));
        bytes
    }

    fn read(bytes: &[u8]) -> Result<SafetensorsSummary> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, bytes).unwrap();
        read_header(&path, bytes.len() as u64, "model.safetensors")
    }

    #[test]
    fn summarizes_a_valid_header() {
        let header = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2,3],"data_offsets":[16,28]},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let summary = read(&file(header, 28)).unwrap();
        assert_eq!(summary.tensors, 2);
        assert_eq!(summary.parameters, 10);
        assert_eq!(summary.dtypes["F32"], 4);
        assert_eq!(summary.dtypes["BF16"], 6);
        assert_eq!(summary.metadata["format"], "pt");
    }

    #[test]
    fn rejects_truncated_gapped_and_garbage_files() {
        let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let truncated = read(&file(header, 15)).unwrap_err().to_string();
        assert!(truncated.contains("truncated"), "{truncated}");
        let gap = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[4,20]}}"#;
        let gapped = read(&file(gap, 20)).unwrap_err().to_string();
        assert!(gapped.contains("tile"), "{gapped}");
        let wrong = r#"{"a":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}"#;
        assert!(read(&file(wrong, 16)).is_err());
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        let message = read(&huge).unwrap_err().to_string();
        assert!(message.contains("model.safetensors"), "{message}");
        assert!(read(b"abc").is_err());
        assert!(read(&file("not json", 0)).is_err());
    }
}

#[cfg(test)]
mod hostile_input {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(gantry_test::adversarial::config())]

        /// A header of hostile bytes, behind a length that fits or not: a
        /// summary or an error, never a panic or an abort.
        #[test]
        fn hostile_headers_are_errors(header in gantry_test::adversarial::bytes(), padding in 0_usize..64, lie in any::<bool>()) {
            let directory = tempfile::tempdir().expect("tempdir");
            let path = directory.path().join("model.safetensors");
            let claimed = if lie { u64::MAX - header.len() as u64 } else { header.len() as u64 };
            let mut bytes = claimed.to_le_bytes().to_vec();
            bytes.extend_from_slice(&header);
            bytes.extend(std::iter::repeat_n(0_u8, padding));
            std::fs::write(&path, &bytes).expect("write");
            let _ = super::read_header(&path, bytes.len() as u64, "model.safetensors");
            let _ = super::summarize(&header, padding as u64);
        }
    }
}
