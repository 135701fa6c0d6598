//! Shards: one job checks every N-th record and writes a shard file; a merge folds them into one run's report.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::engine::{Scan, finish, scan_data, settings_of};
use super::record::{ContentHash, Partial, Position, Shard};
use super::{ValidateOptions, Validation};
use crate::error::{Error, Result};
use crate::formats::RecordFormat;
use crate::source::DataFile;

/// Version of shard files. 2: word, shingle and n-gram hashes are
/// polynomial window hashes (signatures and duplicate keys differ from 1's).
/// 3: binary (`GANTRYSH`, then zstd: a JSON header and the per-record
/// columns); 1 and 2 were JSON.
pub const SHARD_VERSION: u32 = 4;

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
    /// Every file; the SHA-256 only of those that fall to this shard.
    pub(crate) locked: Vec<super::engine::ScannedFile>,
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
    let shards = read_shards(paths, true)?;
    let (scan, merged_options) = combine(options, shards)?;
    finish(&merged_options, scan)
}

/// The files `patterns` name (paths or globs), sorted; none is an error.
pub(crate) fn expand(patterns: &[String], what: &str) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        if pattern.contains(['*', '?', '[']) {
            let matches = glob::glob(pattern).map_err(|error| Error::BadPattern {
                pattern: pattern.clone(),
                reason: error.to_string(),
            })?;
            found.extend(matches.filter_map(std::result::Result::ok));
        } else {
            found.push(PathBuf::from(pattern));
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(Error::Merge {
            reason: format!("{} matched no {what} files", patterns.join(" ")),
        });
    }
    Ok(found)
}

/// Reads the shard files `patterns` name — whole, or only their headers —
/// and checks they are shards 1..=N of one run over the same data and options.
pub(crate) fn read_shards(patterns: &[String], columns: bool) -> Result<Vec<(PathBuf, ShardFile)>> {
    let mut shards: Vec<(PathBuf, ShardFile)> = Vec::new();
    for path in expand(patterns, "shard")? {
        let error = |reason: String| Error::Merge {
            reason: format!("{}: {reason}", path.display()),
        };
        let shard = if columns {
            ShardFile::read(&path).map_err(error)?
        } else {
            open(&path).map_err(error)?.0
        };
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
        if shard.data_identity() != first.data_identity() {
            return Err(differs("the data files (paths, sizes or contents)"));
        }
    }
    Ok(shards)
}

/// Folds the shards into one scan, with the options the shards ran with.
pub(crate) fn combine(
    options: &ValidateOptions,
    shards: Vec<(PathBuf, ShardFile)>,
) -> Result<(Scan, ValidateOptions)> {
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
            locked.sha256 = locked.sha256.or(other.sha256);
        }
        scan.total.merge(shard.partial);
    }
    // Settings come from the shards, thresholds from the merge job.
    let mut merged_options = options.clone();
    merged_options.max_tokens = first.max_tokens;
    merged_options.tokenizer = first.tokenizer;
    Ok((scan, merged_options))
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

    /// Reads a shard file whole; an old JSON shard, or another gantry's
    /// format, is refused naming what wrote it.
    pub fn read(path: &Path) -> std::result::Result<ShardFile, String> {
        let (mut shard, mut reader) = open(path)?;
        shard.partial.exact = reader.hashes(|_| true)?;
        shard.partial.normalized = reader.hashes(|_| true)?;
        let mut bands = Vec::new();
        let bits = reader.signatures(|_| true, |_, keys| bands.push(*keys))?;
        reader.end()?;
        shard.partial.near = bits
            .into_iter()
            .zip(bands)
            .map(|((position, bits), bands)| (position, crate::neardup::Signature { bits, bands }))
            .collect();
        Ok(shard)
    }

    /// What identifies the data a shard ran on: every file's path, size
    /// and xxh3-128 (which every shard takes; the SHA-256 is one shard's).
    pub(crate) fn data_identity(&self) -> Vec<(String, u64, Option<String>)> {
        self.locked
            .iter()
            .map(|file| (file.path.clone(), file.size, file.xxh3.clone()))
            .collect()
    }
}

/// A shard file being read: its columns in order, each kept or skipped
/// entry by entry, so a merge partition holds only its share.
pub(crate) struct ShardReader {
    body: zstd::Decoder<'static, std::io::BufReader<std::fs::File>>,
}

/// Opens a shard file: its header (everything but the columns), and a
/// reader positioned at the columns.
pub(crate) fn open(path: &Path) -> std::result::Result<(ShardFile, ShardReader), String> {
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
    let mut body =
        zstd::Decoder::new(file).map_err(|error| format!("cannot decompress: {error}"))?;
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
    let shard: ShardFile = serde_json::from_slice(&header)
        .map_err(|error| format!("not a gantry shard file: {error}"))?;
    if shard.kind != "gantry-data-shard" {
        return Err("not a gantry shard file (kind is not gantry-data-shard)".to_owned());
    }
    Ok((shard, ShardReader { body }))
}

fn broken(what: &str) -> String {
    format!("damaged shard file: {what}")
}

impl ShardReader {
    /// The next content-hash column (exact, then normalized): the entries
    /// whose hash `keep` says to keep.
    pub(crate) fn hashes(
        &mut self,
        mut keep: impl FnMut(u128) -> bool,
    ) -> std::result::Result<Vec<(ContentHash, Position)>, String> {
        let body = &mut self.body;
        let count = get_count(body).map_err(|_| broken("a column is cut short"))?;
        let positions =
            get_positions(body, count).map_err(|_| broken("positions are cut short"))?;
        let mut entries = Vec::new();
        let mut bytes = [0_u8; 16];
        for position in positions {
            body.read_exact(&mut bytes)
                .map_err(|_| broken("hashes are cut short"))?;
            let hash = u128::from_le_bytes(bytes);
            if keep(hash) {
                entries.push((ContentHash::from(hash), position));
            }
        }
        Ok(entries)
    }

    /// The signature column: the 4-bit values of the records `keep` names,
    /// and every record's band keys, handed to `bands` in order.
    pub(crate) fn signatures(
        &mut self,
        mut keep: impl FnMut(Position) -> bool,
        mut bands: impl FnMut(Position, &[u32; crate::neardup::BANDS]),
    ) -> std::result::Result<Vec<(Position, [u8; crate::neardup::SIGNATURE_BYTES])>, String> {
        let body = &mut self.body;
        let count = get_count(body).map_err(|_| broken("the signatures are cut short"))?;
        let positions =
            get_positions(body, count).map_err(|_| broken("positions are cut short"))?;
        let mut kept = Vec::new();
        for position in &positions {
            let mut value = [0_u8; crate::neardup::SIGNATURE_BYTES];
            body.read_exact(&mut value)
                .map_err(|_| broken("signatures are cut short"))?;
            if keep(*position) {
                kept.push((*position, value));
            }
        }
        let mut bytes = [0_u8; 4];
        for position in positions {
            let mut keys = [0_u32; crate::neardup::BANDS];
            for key in &mut keys {
                body.read_exact(&mut bytes)
                    .map_err(|_| broken("band keys are cut short"))?;
                *key = u32::from_le_bytes(bytes);
            }
            bands(position, &keys);
        }
        Ok(kept)
    }

    /// Checks that nothing follows the last column.
    pub(crate) fn end(mut self) -> std::result::Result<(), String> {
        let mut rest = [0_u8; 1];
        if self
            .body
            .read(&mut rest)
            .map_err(|_| broken("trailing bytes"))?
            != 0
        {
            return Err(broken("bytes after the last column"));
        }
        Ok(())
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
