//! Reading a GGUF header (llama.cpp's format) without reading the weights.
//!
//! The layout (ggml `docs/gguf.md`): the magic `GGUF`, a version (1 used
//! 32-bit counts and lengths, 2 and 3 use 64-bit ones), the tensor and
//! metadata counts, the metadata key/value pairs, one info per tensor (name,
//! dimensions innermost first, `ggml_type`, offset), padding to the
//! alignment (`general.alignment`, 32 by default), then the tensor data. The
//! header alone gives the footprint: a tensor's bytes follow from its
//! element count and its type's block size. Every count and length is
//! checked against the bytes left in the file before anything is allocated,
//! and the tensors against the data section, so a truncated or hostile file
//! is an error, never an allocation of what it claims.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::GgufSummary;
use crate::error::{Error, Result};

/// How deep arrays may nest in metadata (the format nests them; files do not).
const MAX_ARRAY_DEPTH: u32 = 4;
/// Characters of a metadata string kept in the summary.
const MAX_KEPT_TEXT: usize = 256;

/// A `ggml_type`: its name, elements per block and bytes per block.
fn ggml_type(id: u32) -> Option<(&'static str, u64, u64)> {
    Some(match id {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        39 => ("MXFP4", 32, 17),
        _ => return None,
    })
}

/// Reads the file's header bytes, counting what is left.
struct Reader<R> {
    inner: R,
    position: u64,
    size: u64,
    big_endian: bool,
    wide: bool,
}

impl<R: Read> Reader<R> {
    fn bytes(&mut self, count: u64, what: &str) -> Result<Vec<u8>, String> {
        if count > self.size - self.position {
            return Err(format!(
                "{what} claims {count} bytes at offset {} but the file has {}",
                self.position, self.size
            ));
        }
        let mut buffer =
            vec![0_u8; usize::try_from(count).map_err(|_| format!("{what} is too large"))?];
        self.inner
            .read_exact(&mut buffer)
            .map_err(|error| format!("cannot read {what} at offset {}: {error}", self.position))?;
        self.position += count;
        Ok(buffer)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let bytes = self.bytes(N as u64, what)?;
        let mut array = [0_u8; N];
        array.copy_from_slice(&bytes);
        if self.big_endian {
            array.reverse();
        }
        Ok(array)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    /// A count or length: 32-bit in version 1, 64-bit after.
    fn length(&mut self, what: &str) -> Result<u64, String> {
        if self.wide {
            self.u64(what)
        } else {
            self.u32(what).map(u64::from)
        }
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let length = self.length(what)?;
        let bytes = self.bytes(length, what)?;
        String::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn skip(&mut self, count: u64, what: &str) -> Result<(), String> {
        if count > self.size - self.position {
            return Err(format!(
                "{what} claims {count} bytes at offset {} but the file has {}",
                self.position, self.size
            ));
        }
        let copied = std::io::copy(&mut (&mut self.inner).take(count), &mut std::io::sink())
            .map_err(|error| format!("cannot read {what}: {error}"))?;
        if copied != count {
            return Err(format!("{what} is cut short"));
        }
        self.position += count;
        Ok(())
    }

    /// A metadata value of `kind`: scalars and strings as text, arrays as
    /// their length (`[N items]`); arrays are read through, nested ones too.
    fn value(&mut self, kind: u32, key: &str, depth: u32) -> Result<String, String> {
        let scalar = |size: u64| -> Option<u64> { Some(size) };
        let size = match kind {
            0 | 1 | 7 => scalar(1),
            2 | 3 => scalar(2),
            4..=6 => scalar(4),
            10..=12 => scalar(8),
            8 | 9 => None,
            other => return Err(format!("metadata {key:?} has unknown value type {other}")),
        };
        if let Some(size) = size {
            let text = match size {
                1 => {
                    let byte = self.bytes(1, key)?[0];
                    match kind {
                        0 => byte.to_string(),
                        1 => i8::from_le_bytes([byte]).to_string(),
                        _ => (byte != 0).to_string(),
                    }
                }
                2 => {
                    let bytes = self.array::<2>(key)?;
                    if kind == 2 {
                        u16::from_le_bytes(bytes).to_string()
                    } else {
                        i16::from_le_bytes(bytes).to_string()
                    }
                }
                4 => {
                    let bytes = self.array::<4>(key)?;
                    match kind {
                        4 => u32::from_le_bytes(bytes).to_string(),
                        5 => i32::from_le_bytes(bytes).to_string(),
                        _ => f32::from_le_bytes(bytes).to_string(),
                    }
                }
                _ => {
                    let bytes = self.array::<8>(key)?;
                    match kind {
                        10 => u64::from_le_bytes(bytes).to_string(),
                        11 => i64::from_le_bytes(bytes).to_string(),
                        _ => f64::from_le_bytes(bytes).to_string(),
                    }
                }
            };
            return Ok(text);
        }
        if kind == 8 {
            let text = self.string(key)?;
            return Ok(text.chars().take(MAX_KEPT_TEXT).collect());
        }
        if depth >= MAX_ARRAY_DEPTH {
            return Err(format!(
                "metadata {key:?} nests arrays more than {MAX_ARRAY_DEPTH} deep"
            ));
        }
        let element = self.u32(key)?;
        let count = self.length(key)?;
        let fixed = match element {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        match fixed {
            Some(size) => {
                let total = count
                    .checked_mul(size)
                    .ok_or_else(|| format!("metadata {key:?}: array size overflows"))?;
                self.skip(total, key)?;
            }
            None => {
                // Each element takes at least a byte: a count past the bytes left is a lie.
                if count > self.size - self.position {
                    return Err(format!(
                        "metadata {key:?} claims {count} elements but {} bytes are left",
                        self.size - self.position
                    ));
                }
                for _ in 0..count {
                    if element == 8 {
                        let length = self.length(key)?;
                        self.skip(length, key)?;
                    } else {
                        self.value(element, key, depth + 1)?;
                    }
                }
            }
        }
        Ok(format!("[{count} items]"))
    }
}

/// Reads and checks the header of the GGUF file at `path`, whose size is
/// `size`, and summarizes it. `display` names the file in errors.
pub fn read_header(path: &Path, size: u64, display: &str) -> Result<GgufSummary> {
    let file = std::fs::File::open(path).map_err(Error::io("cannot open", path))?;
    summarize(BufReader::with_capacity(1 << 16, file), size).map_err(|reason| Error::Gguf {
        file: display.to_owned(),
        reason,
    })
}

fn summarize(inner: impl Read, size: u64) -> Result<GgufSummary, String> {
    let mut reader = Reader {
        inner,
        position: 0,
        size,
        big_endian: false,
        wide: true,
    };
    let magic = reader.bytes(4, "the magic")?;
    if magic != b"GGUF" {
        return Err(format!(
            "it starts with {magic:02x?}, not the magic \"GGUF\""
        ));
    }
    let raw = reader.bytes(4, "the version")?;
    let little = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let big = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let version = match (little, big) {
        (1..=3, _) => little,
        (_, 1..=3) => {
            reader.big_endian = true;
            big
        }
        _ => return Err(format!("version {little} is not one gantry reads (1 to 3)")),
    };
    reader.wide = version >= 2;
    let tensor_count = reader.length("the tensor count")?;
    let metadata_count = reader.length("the metadata count")?;
    // Each metadata pair and tensor info takes more than 8 bytes.
    let left = size - reader.position;
    if tensor_count
        .saturating_add(metadata_count)
        .saturating_mul(8)
        > left
    {
        return Err(format!(
            "it claims {tensor_count} tensors and {metadata_count} metadata pairs in {left} bytes"
        ));
    }
    let mut metadata = BTreeMap::new();
    let mut alignment = 32_u64;
    for index in 0..metadata_count {
        let key = reader.string(&format!("metadata key {index}"))?;
        let kind = reader.u32(&key)?;
        let value = reader.value(kind, &key, 0)?;
        if key == "general.alignment" {
            alignment = value
                .parse::<u64>()
                .ok()
                .filter(|alignment| *alignment > 0 && alignment.is_multiple_of(8))
                .ok_or_else(|| {
                    format!("general.alignment {value} is not a positive multiple of 8")
                })?;
        }
        metadata.insert(key, value);
    }
    struct Info {
        name: String,
        type_name: &'static str,
        elements: u64,
        bytes: u64,
        offset: u64,
    }
    let mut infos = Vec::new();
    for index in 0..tensor_count {
        let name = reader.string(&format!("the name of tensor {index}"))?;
        let dimensions = reader.u32(&name)?;
        if dimensions > 8 {
            return Err(format!(
                "tensor {name:?} has {dimensions} dimensions (at most 8)"
            ));
        }
        let mut elements = 1_u64;
        for _ in 0..dimensions {
            let dimension = reader.length(&name)?;
            elements = elements
                .checked_mul(dimension)
                .ok_or_else(|| format!("tensor {name:?}: shape overflows"))?;
        }
        let kind = reader.u32(&name)?;
        let (type_name, block, block_bytes) = ggml_type(kind)
            .ok_or_else(|| format!("tensor {name:?} has unknown ggml type {kind}"))?;
        if !elements.is_multiple_of(block) {
            return Err(format!(
                "tensor {name:?} has {elements} elements, not a multiple of {type_name}'s block of {block}"
            ));
        }
        let bytes = (elements / block)
            .checked_mul(block_bytes)
            .ok_or_else(|| format!("tensor {name:?}: size overflows"))?;
        let offset = reader.u64(&name)?;
        if !offset.is_multiple_of(alignment) {
            return Err(format!(
                "tensor {name:?} starts at {offset}, not a multiple of the alignment {alignment}"
            ));
        }
        infos.push(Info {
            name,
            type_name,
            elements,
            bytes,
            offset,
        });
    }
    let data_start = reader.position.div_ceil(alignment) * alignment;
    // A file of metadata only may end with its header, unpadded.
    if data_start > size && !infos.is_empty() {
        return Err(format!(
            "the data section would start at {data_start}, past the file's {size} bytes"
        ));
    }
    let data_size = size.saturating_sub(data_start);
    infos.sort_by_key(|info| info.offset);
    let mut end_of_previous = 0_u64;
    let mut previous_name = String::new();
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    let mut parameters = 0_u64;
    let mut tensor_bytes = 0_u64;
    for info in &infos {
        if info.offset < end_of_previous {
            return Err(format!(
                "tensor {:?} starts at {} inside tensor {previous_name:?} (which ends at {end_of_previous})",
                info.name, info.offset
            ));
        }
        let end = info
            .offset
            .checked_add(info.bytes)
            .ok_or_else(|| format!("tensor {:?}: offset overflows", info.name))?;
        if end > data_size {
            return Err(format!(
                "tensor {:?} ({} {} elements, {} bytes) ends at {end}, past the data section's {data_size} bytes (truncated)",
                info.name, info.elements, info.type_name, info.bytes
            ));
        }
        end_of_previous = end;
        previous_name.clone_from(&info.name);
        parameters += info.elements;
        tensor_bytes += info.bytes;
        *types.entry(info.type_name.to_owned()).or_default() += info.elements;
    }
    Ok(GgufSummary {
        version,
        tensors: tensor_count,
        parameters,
        tensor_bytes,
        types,
        metadata,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }

    /// A GGUF v3 file: metadata (key, type, value bytes), tensors (name,
    /// dims, type, offset), then `data` bytes after 32-byte padding.
    pub(crate) fn gguf(
        metadata: &[(&str, u32, Vec<u8>)],
        tensors: &[(&str, &[u64], u32, u64)],
        data: usize,
    ) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3_u32.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, kind, value) in metadata {
            string(&mut out, key);
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(value);
        }
        for (name, dims, kind, offset) in tensors {
            string(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for dim in *dims {
                out.extend_from_slice(&dim.to_le_bytes());
            }
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.extend(std::iter::repeat_n(0_u8, data));
        out
    }

    fn text(value: &str) -> Vec<u8> {
        let mut out = Vec::new();
        string(&mut out, value);
        out
    }

    fn read(bytes: &[u8]) -> Result<GgufSummary, String> {
        summarize(bytes, bytes.len() as u64)
    }

    #[test]
    fn summarizes_quantized_and_float_tensors() {
        // A string array (a vocabulary), as tokenizers store it.
        let mut vocabulary = 8_u32.to_le_bytes().to_vec();
        vocabulary.extend_from_slice(&2_u64.to_le_bytes());
        vocabulary.extend(text("a"));
        vocabulary.extend(text("b"));
        let metadata = [
            ("general.architecture", 8, text("tiny")),
            (
                "general.quantization_version",
                4,
                2_u32.to_le_bytes().to_vec(),
            ),
            ("tokenizer.ggml.tokens", 9, vocabulary),
        ];
        // 64×32 Q8_0 = 64 blocks × 34 bytes = 2176; then 32 F32 = 128 bytes at 2176.
        let tensors = [
            ("blk.0.weight", &[32_u64, 64][..], 8, 0),
            ("norm.weight", &[32][..], 0, 2176),
        ];
        let summary = read(&gguf(&metadata, &tensors, 2176 + 128)).unwrap();
        assert_eq!(summary.version, 3);
        assert_eq!(summary.tensors, 2);
        assert_eq!(summary.parameters, 2048 + 32);
        assert_eq!(summary.tensor_bytes, 2176 + 128);
        assert_eq!(summary.types["Q8_0"], 2048);
        assert_eq!(summary.types["F32"], 32);
        assert_eq!(summary.metadata["general.architecture"], "tiny");
        assert_eq!(summary.metadata["general.quantization_version"], "2");
        assert_eq!(summary.metadata["tokenizer.ggml.tokens"], "[2 items]");
    }

    #[test]
    fn truncated_overlapping_and_lying_files_are_errors() {
        let tensors = [("w", &[32_u64, 64][..], 8, 0)];
        let truncated = read(&gguf(&[], &tensors, 2000)).unwrap_err();
        assert!(truncated.contains("truncated"), "{truncated}");
        let overlapping = [("a", &[32_u64][..], 0, 0), ("b", &[32_u64][..], 0, 64)];
        let overlap = read(&gguf(&[], &overlapping, 256)).unwrap_err();
        assert!(overlap.contains("inside tensor"), "{overlap}");
        let unaligned = [("a", &[32_u64][..], 0, 4)];
        assert!(
            read(&gguf(&[], &unaligned, 256))
                .unwrap_err()
                .contains("alignment")
        );
        let odd = [("a", &[33_u64][..], 8, 0)];
        assert!(read(&gguf(&[], &odd, 256)).unwrap_err().contains("block"));
        let unknown = [("a", &[32_u64][..], 4, 0)];
        assert!(
            read(&gguf(&[], &unknown, 256))
                .unwrap_err()
                .contains("unknown ggml type 4")
        );
        // A count that no file this size can hold.
        let mut liar = b"GGUF".to_vec();
        liar.extend_from_slice(&3_u32.to_le_bytes());
        liar.extend_from_slice(&u64::MAX.to_le_bytes());
        liar.extend_from_slice(&0_u64.to_le_bytes());
        assert!(read(&liar).unwrap_err().contains("claims"));
        assert!(read(b"GGML\x03\0\0\0").unwrap_err().contains("magic"));
        assert!(read(b"GG").is_err());
    }

    #[test]
    fn version_1_and_big_endian_files_are_read() {
        let mut v1 = b"GGUF".to_vec();
        v1.extend_from_slice(&1_u32.to_le_bytes());
        v1.extend_from_slice(&0_u32.to_le_bytes());
        v1.extend_from_slice(&1_u32.to_le_bytes());
        v1.extend_from_slice(&(4_u32).to_le_bytes());
        v1.extend_from_slice(b"name");
        v1.extend_from_slice(&8_u32.to_le_bytes());
        v1.extend_from_slice(&2_u32.to_le_bytes());
        v1.extend_from_slice(b"v1");
        let summary = read(&v1).unwrap();
        assert_eq!(
            (summary.version, summary.metadata["name"].as_str()),
            (1, "v1")
        );
        let mut big = b"GGUF".to_vec();
        big.extend_from_slice(&3_u32.to_be_bytes());
        big.extend_from_slice(&0_u64.to_be_bytes());
        big.extend_from_slice(&0_u64.to_be_bytes());
        assert_eq!(read(&big).unwrap().version, 3);
    }
}

#[cfg(test)]
mod hostile_input {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(gantry_test::adversarial::config())]

        /// Hostile bytes after the magic and version, with sizes that fit or
        /// not: a summary or an error, never a panic, an abort or a huge allocation.
        #[test]
        fn hostile_headers_are_errors(body in gantry_test::adversarial::bytes(), version in 0_u32..5, lie in any::<bool>()) {
            let mut bytes = b"GGUF".to_vec();
            bytes.extend_from_slice(&version.to_le_bytes());
            bytes.extend_from_slice(&body);
            let size = if lie { bytes.len() as u64 * 2 } else { bytes.len() as u64 };
            let _ = super::summarize(bytes.as_slice(), size);
        }
    }
}
