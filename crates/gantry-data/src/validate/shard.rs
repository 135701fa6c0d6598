//! Shards: one job checks every N-th record and writes a shard file; a merge folds them into one run's report.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::engine::{Scan, finish, scan_data, settings_of};
use super::record::{Partial, Position, Shard};
use super::{ValidateOptions, Validation};
use crate::error::{Error, Result};
use crate::formats::RecordFormat;
use crate::lock::LockedFile;
use crate::source::DataFile;

/// Version of shard files. 2: word, shingle and n-gram hashes are
/// polynomial window hashes (signatures and duplicate keys differ from 1's).
/// 3: binary (`GANTRYSH`, then zstd: a JSON header and the per-record
/// columns); 1 and 2 were JSON.
pub const SHARD_VERSION: u32 = 3;

/// The first bytes of a shard file.
const MAGIC: &[u8; 8] = b"GANTRYSH";

/// What one shard of a CI matrix found: merged by [`merge_shards`] into the
/// same report, lock and summary as one unsharded run.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardFile {
    /// Always `gantry-data-shard`.
    pub kind: String,
    /// Format version.
    pub version: u32,
    /// Which shard this is.
    pub shard: Shard,
    /// The options that change what is found; every shard must agree.
    pub settings: String,
    /// The tokenizer behind the token counts.
    pub(crate) tokenizer: String,
    /// The token limit the shards checked against.
    pub(crate) max_tokens: Option<u64>,
    pub(crate) format: Option<RecordFormat>,
    pub(crate) files: Vec<DataFile>,
    pub(crate) locked: Vec<LockedFile>,
    pub(crate) eval_items: Option<Vec<crate::contamination::EvalItem>>,
    pub(crate) partial: Partial,
    /// The gantry-data version that wrote it.
    #[serde(default)]
    pub written_by: String,
}

/// Checks only `shard`'s records, for a CI matrix job; [`merge_shards`] combines the shards.
pub fn validate_shard(options: &ValidateOptions, shard: Shard) -> Result<ShardFile> {
    let scan = scan_data(options, Some(shard), &mut |_| {})?;
    Ok(ShardFile {
        kind: "gantry-data-shard".to_owned(),
        version: SHARD_VERSION,
        shard,
        settings: settings_of(options),
        tokenizer: options.tokenizer.clone(),
        max_tokens: options.max_tokens,
        format: scan.format,
        files: scan.files,
        locked: scan.locked,
        eval_items: scan.eval_items,
        partial: scan.total,
        written_by: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// Merges shard files into one validation. `options` give the policy,
/// reference and previous lock; the data options come from the shards.
pub fn merge_shards(options: &ValidateOptions, paths: &[String]) -> Result<Validation> {
    let mut shard_paths: Vec<PathBuf> = Vec::new();
    for pattern in paths {
        if pattern.contains(['*', '?', '[']) {
            let matches = glob::glob(pattern).map_err(|error| Error::BadPattern {
                pattern: pattern.clone(),
                reason: error.to_string(),
            })?;
            shard_paths.extend(matches.filter_map(std::result::Result::ok));
        } else {
            shard_paths.push(PathBuf::from(pattern));
        }
    }
    shard_paths.sort();
    if shard_paths.is_empty() {
        return Err(Error::Merge {
            reason: format!("{} matched no shard files", paths.join(" ")),
        });
    }
    let mut shards: Vec<(PathBuf, ShardFile)> = Vec::new();
    for path in shard_paths {
        let error = |reason: String| Error::Merge {
            reason: format!("{}: {reason}", path.display()),
        };
        let shard = ShardFile::read(&path).map_err(error)?;
        shards.push((path, shard));
    }
    shards.sort_by_key(|(_, shard)| shard.shard.index);
    let count = shards[0].1.shard.count;
    let indices: Vec<u32> = shards.iter().map(|(_, shard)| shard.shard.index).collect();
    let expected: Vec<u32> = (1..=count).collect();
    if indices != expected || shards.iter().any(|(_, shard)| shard.shard.count != count) {
        return Err(Error::Merge {
            reason: format!("expected shards 1..={count} of {count} once each, got {indices:?}"),
        });
    }
    let (first_path, first) = &shards[0];
    for (path, shard) in &shards[1..] {
        let differs = |what: &str| Error::Merge {
            reason: format!(
                "{} and {} disagree on {what}: they did not run on the same data and options",
                first_path.display(),
                path.display()
            ),
        };
        if shard.settings != first.settings {
            return Err(differs("options"));
        }
        let hashes = |files: &[LockedFile]| {
            files
                .iter()
                .map(|file| (file.path.clone(), file.sha256, file.size))
                .collect::<Vec<_>>()
        };
        if hashes(&shard.locked) != hashes(&first.locked) {
            return Err(differs("the data files (paths, sizes or SHA-256)"));
        }
    }
    let mut shards = shards.into_iter().map(|(_, shard)| shard);
    let Some(first) = shards.next() else {
        return Err(Error::Merge {
            reason: "no shard files".to_owned(),
        });
    };
    let mut scan = Scan {
        files: first.files,
        format: first.format,
        total: first.partial,
        locked: first.locked,
        eval_items: first.eval_items,
    };
    for shard in shards {
        scan.format = scan.format.or(shard.format);
        for (locked, other) in scan.locked.iter_mut().zip(&shard.locked) {
            locked.records += other.records;
        }
        scan.total.merge(shard.partial);
    }
    // Settings come from the shards, thresholds from the merge job.
    let mut merged_options = options.clone();
    merged_options.max_tokens = first.max_tokens;
    merged_options.tokenizer = first.tokenizer;
    finish(&merged_options, scan)
}

impl ShardFile {
    /// The secrets this shard's records hold (never written): for the
    /// redactor of everything written about the shard.
    pub fn found_secrets(&self) -> impl Iterator<Item = &str> {
        self.partial.found_secrets.iter().map(String::as_str)
    }

    /// The shard as bytes: `GANTRYSH`, the format version (u32, little
    /// endian), then one zstd stream of the JSON header (everything but the
    /// per-record columns; `edit` sees it first, to redact it) and the
    /// columns — exact and normalized content hashes with their positions,
    /// and the near-duplicate signatures — sorted by position, positions
    /// delta-encoded as varints, hashes and signatures as raw bytes.
    pub fn encode(&mut self, edit: impl FnOnce(&mut serde_json::Value)) -> Result<Vec<u8>> {
        let mut exact = std::mem::take(&mut self.partial.exact);
        let mut normalized = std::mem::take(&mut self.partial.normalized);
        let mut near = std::mem::take(&mut self.partial.near);
        let header = serde_json::to_value(&*self);
        exact.sort_unstable_by_key(|(_, position)| *position);
        normalized.sort_unstable_by_key(|(_, position)| *position);
        near.sort_unstable_by_key(|(position, _)| *position);
        let encoded = header
            .map_err(|error| codec_error(&error.to_string()))
            .and_then(|mut header| {
                edit(&mut header);
                let header =
                    serde_json::to_vec(&header).map_err(|error| codec_error(&error.to_string()))?;
                let mut body = Vec::with_capacity(
                    header.len() + (exact.len() + normalized.len()) * 20 + near.len() * 116,
                );
                put_varint(&mut body, header.len() as u64);
                body.extend_from_slice(&header);
                for column in [&exact, &normalized] {
                    put_varint(&mut body, column.len() as u64);
                    put_positions(&mut body, column.iter().map(|(_, position)| *position));
                    for (hash, _) in column {
                        body.extend_from_slice(&u128::from(*hash).to_le_bytes());
                    }
                }
                put_varint(&mut body, near.len() as u64);
                put_positions(&mut body, near.iter().map(|(position, _)| *position));
                for (_, signature) in &near {
                    body.extend_from_slice(&signature.bits);
                }
                for (_, signature) in &near {
                    for band in signature.bands {
                        body.extend_from_slice(&band.to_le_bytes());
                    }
                }
                let mut out = Vec::with_capacity(body.len() / 2 + 16);
                out.extend_from_slice(MAGIC);
                out.extend_from_slice(&SHARD_VERSION.to_le_bytes());
                let compressed = zstd::encode_all(body.as_slice(), 3)
                    .map_err(|error| codec_error(&error.to_string()))?;
                out.extend_from_slice(&compressed);
                Ok(out)
            });
        self.partial.exact = exact;
        self.partial.normalized = normalized;
        self.partial.near = near;
        encoded
    }

    /// Reads a shard file; an old JSON shard, or another gantry's format, is
    /// refused naming what wrote it.
    pub fn read(path: &Path) -> std::result::Result<ShardFile, String> {
        let mut file = std::fs::File::open(path).map_err(|error| error.to_string())?;
        let mut start = [0_u8; 12];
        let read = read_up_to(&mut file, &mut start).map_err(|error| error.to_string())?;
        if read > 0
            && start[..read]
                .iter()
                .find(|byte| !byte.is_ascii_whitespace())
                == Some(&b'{')
        {
            let mut head = start[..read].to_vec();
            let _ = (&mut file).take(4096).read_to_end(&mut head);
            let text = String::from_utf8_lossy(&head);
            let version = text
                .split("\"version\":")
                .nth(1)
                .and_then(|rest| {
                    rest.trim_start()
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                })
                .unwrap_or("?")
                .to_owned();
            return Err(format!(
                "a JSON shard file (shard format {version}), written by an earlier gantry; this gantry reads binary shard format {SHARD_VERSION}: run every shard and the merge with the same gantry version"
            ));
        }
        if read < 12 || &start[..8] != MAGIC {
            return Err("not a gantry shard file (it does not start with GANTRYSH)".to_owned());
        }
        let version = u32::from_le_bytes([start[8], start[9], start[10], start[11]]);
        if version != SHARD_VERSION {
            return Err(format!(
                "shard format {version} is not this gantry's ({SHARD_VERSION}); run every shard and the merge with the same gantry version"
            ));
        }
        let mut body = zstd::Decoder::new(std::io::BufReader::new(file))
            .map_err(|error| format!("cannot decompress: {error}"))?;
        let broken = |what: &str| format!("damaged shard file: {what}");
        let header_len = get_varint(&mut body).map_err(|_| broken("no header"))?;
        let header_len = usize::try_from(header_len)
            .ok()
            .filter(|len| *len <= 1 << 30)
            .ok_or_else(|| broken("a header over 1 GiB"))?;
        let mut header = Vec::new();
        (&mut body)
            .take(header_len as u64)
            .read_to_end(&mut header)
            .map_err(|_| broken("the header is cut short"))?;
        if header.len() != header_len {
            return Err(broken("the header is cut short"));
        }
        let mut shard: ShardFile = serde_json::from_slice(&header)
            .map_err(|error| format!("not a gantry shard file: {error}"))?;
        if shard.kind != "gantry-data-shard" {
            return Err("not a gantry shard file (kind is not gantry-data-shard)".to_owned());
        }
        for column in 0..2 {
            let count = get_count(&mut body).map_err(|_| broken("a column is cut short"))?;
            let positions =
                get_positions(&mut body, count).map_err(|_| broken("positions are cut short"))?;
            // Capacity from what was read, not from what the file claims.
            let mut entries = Vec::with_capacity(positions.len());
            let mut bytes = [0_u8; 16];
            for position in positions {
                body.read_exact(&mut bytes)
                    .map_err(|_| broken("hashes are cut short"))?;
                entries.push((
                    super::record::ContentHash::from(u128::from_le_bytes(bytes)),
                    position,
                ));
            }
            if column == 0 {
                shard.partial.exact = entries;
            } else {
                shard.partial.normalized = entries;
            }
        }
        let count = get_count(&mut body).map_err(|_| broken("the signatures are cut short"))?;
        let positions =
            get_positions(&mut body, count).map_err(|_| broken("positions are cut short"))?;
        let mut bits = Vec::with_capacity(positions.len());
        for _ in 0..positions.len() {
            let mut value = [0_u8; crate::neardup::SIGNATURE_BYTES];
            body.read_exact(&mut value)
                .map_err(|_| broken("signatures are cut short"))?;
            bits.push(value);
        }
        let mut near = Vec::with_capacity(positions.len());
        for (position, bits) in positions.into_iter().zip(bits) {
            let mut bands = [0_u32; crate::neardup::BANDS];
            let mut bytes = [0_u8; 4];
            for band in &mut bands {
                body.read_exact(&mut bytes)
                    .map_err(|_| broken("band keys are cut short"))?;
                *band = u32::from_le_bytes(bytes);
            }
            near.push((position, crate::neardup::Signature { bits, bands }));
        }
        shard.partial.near = near;
        let mut rest = [0_u8; 1];
        if body.read(&mut rest).map_err(|_| broken("trailing bytes"))? != 0 {
            return Err(broken("bytes after the last column"));
        }
        Ok(shard)
    }
}

fn codec_error(reason: &str) -> Error {
    Error::Merge {
        reason: format!("cannot encode the shard: {reason}"),
    }
}

fn read_up_to(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(input: &mut impl Read) -> std::io::Result<u64> {
    let mut value = 0_u64;
    let mut byte = [0_u8; 1];
    for shift in (0..64).step_by(7) {
        input.read_exact(&mut byte)?;
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "varint over 64 bits",
    ))
}

/// A column's length, bounded so a damaged file cannot ask for all memory.
fn get_count(input: &mut impl Read) -> std::io::Result<usize> {
    let count = get_varint(input)?;
    usize::try_from(count)
        .ok()
        .filter(|count| *count <= 1 << 34)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "column too long"))
}

/// Positions in order: the file index as a difference from the previous
/// one, then the ordinal — absolute in a new file, else the difference.
fn put_positions(out: &mut Vec<u8>, positions: impl Iterator<Item = Position>) {
    let mut previous: Position = (0, 0);
    for (file, ordinal) in positions {
        let file_step = file - previous.0;
        put_varint(out, u64::from(file_step));
        put_varint(
            out,
            if file_step == 0 {
                ordinal - previous.1
            } else {
                ordinal
            },
        );
        previous = (file, ordinal);
    }
}

fn get_positions(input: &mut impl Read, count: usize) -> std::io::Result<Vec<Position>> {
    let mut positions = Vec::with_capacity(count.min(1 << 24));
    let mut previous: Position = (0, 0);
    for _ in 0..count {
        let file_step = u32::try_from(get_varint(input)?)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "file index"))?;
        let value = get_varint(input)?;
        let file = previous
            .0
            .checked_add(file_step)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "file index"))?;
        let ordinal = if file_step == 0 {
            previous
                .1
                .checked_add(value)
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "ordinal"))?
        } else {
            value
        };
        previous = (file, ordinal);
        positions.push(previous);
    }
    Ok(positions)
}
