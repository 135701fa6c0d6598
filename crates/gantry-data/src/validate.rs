//! The validation engine: streams every file once, in parallel chunks, and folds the results.
//!
//! Files are read in order. A reader thread decompresses and hashes the
//! bytes on disk and cuts the text into ~4 MiB chunks at line boundaries
//! (found with memchr); while rayon workers parse (sonic-rs) and check one
//! group of chunks, it reads the next. Each chunk yields a [`Partial`];
//! partials are merged in chunk order, so the result does not depend on
//! thread timing.
//!
//! Memory: the chunks in flight (about 4 MiB × 2 × threads, twice over
//! while the reader runs ahead) plus, for
//! duplicate detection, one entry per distinct record in each of two hash
//! maps — a 128-bit hash, a position and a count, about 80 bytes per distinct
//! record per map.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::rc::Rc;

use gantry_core::Digest;
use serde_json::Value;
use sha2::Digest as _;
use xxhash_rust::xxh3::xxh3_128;

use crate::contamination::EvalIndex;
use crate::error::{Error, Result};
use crate::formats::{PlainChat, RecordFormat, inspect};
use crate::histogram::LogHistogram;
use crate::lock::{DataLock, LockedFile};
use crate::neardup::{Signature, clusters as near_clusters, estimated_jaccard, signature_of};
use crate::policy::{CHECKS, Policy};
use crate::report::{
    CheckResult, Distribution, DuplicateCluster, Example, FileReport, REPORT_VERSION, Report,
    SUMMARY_VERSION, Summary,
};
use crate::scan::{excerpt, scan};
use crate::source::{DataFile, FileKind, discover};
use crate::tokens::Tokenizer;
use crate::words::with_words;

/// Examples kept per check.
const MAX_EXAMPLES: usize = 20;
/// Target size of one chunk of text handed to a worker.
const CHUNK_BYTES: usize = 4 << 20;
/// Chunks of a mapped file that may wait to be hashed.
const MAX_WAITING: usize = 4;
/// A single record (line) larger than this is reported and skipped.
const MAX_RECORD_BYTES: usize = 64 << 20;
/// A `.json` array file larger than this must be converted to JSONL.
const MAX_JSON_FILE_BYTES: usize = 1 << 30;
/// Members listed per duplicate cluster.
const MAX_CLUSTER_MEMBERS: usize = 10;
/// Duplicate clusters listed per kind.
const MAX_CLUSTERS: usize = 10;

/// What to validate and how.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// Files, directories or glob patterns.
    pub data: Vec<String>,
    /// The record format; detected from the first record when `None`.
    pub format: Option<RecordFormat>,
    /// `o200k_base`, `cl100k_base` or `chars`.
    pub tokenizer: String,
    /// Records with more tokens than this fail the `max-tokens` check.
    pub max_tokens: Option<u64>,
    /// A data lock from an earlier run, to list what changed.
    pub previous_lock: Option<PathBuf>,
    /// Eval or benchmark files to check for contamination (any format).
    pub eval_set: Vec<String>,
    /// A reference for drift: a `summary.json` from an earlier run, or data paths.
    pub reference: Option<String>,
    /// A JSON Schema every record must match (for custom record shapes).
    pub schema: Option<PathBuf>,
    /// Thresholds.
    pub policy: Policy,
}

/// The result of a validation: the report, the lock and the summary.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Every check, with values, thresholds and examples.
    pub report: Report,
    /// Hashes and counts of what was read.
    pub lock: DataLock,
    /// The distributions, for later drift checks.
    pub summary: Summary,
    /// The secrets found in the data (at most 10,000 distinct ones), for the
    /// redactor every writer of gantry shares. Written nowhere.
    pub found_secrets: Vec<String>,
}

/// A record's place: file index and line (or, for JSON arrays, record index).
type Position = (u32, u64);

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Tally {
    count: u64,
    /// The first examples by position: merging keeps the smallest positions,
    /// so the result does not depend on the order partials merge in.
    examples: Vec<(Position, Example)>,
}

impl Tally {
    fn add(&mut self, position: Position, example: impl FnOnce() -> Example) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push((position, example()));
        }
    }

    fn merge(&mut self, other: Tally) {
        self.count += other.count;
        self.examples.extend(other.examples);
        self.examples.sort_by_key(|(position, _)| *position);
        self.examples.truncate(MAX_EXAMPLES);
    }

    fn into_examples(self) -> Vec<Example> {
        self.examples
            .into_iter()
            .map(|(_, example)| example)
            .collect()
    }
}

/// Records by content hash. The keys are xxh3 hashes already, so the map's
/// own hash is the fast one.
type Occurrences = rustc_hash::FxHashMap<u128, Occurrence>;

#[derive(Debug, Clone)]
struct Occurrence {
    first: Position,
    count: u64,
    others: Vec<Position>,
}

/// Keeps the [`MAX_EXAMPLES`] largest values, ties by position, in a stable order.
fn keep_largest(values: &mut Vec<(u64, Position)>) {
    values.sort_unstable_by(|left, right| right.0.cmp(&left.0).then(left.1.cmp(&right.1)));
    values.truncate(MAX_EXAMPLES);
}

fn position_of(context: &FileContext<'_>, origin: Origin) -> Position {
    (context.file_index, origin.ordinal)
}

/// The records that share a content hash with another, from every
/// record's (hash, position): sorted once at the end, which costs less than
/// a map updated per record, and 32 bytes per record while scanning.
fn occurrences(mut hashes: Vec<(ContentHash, Position)>) -> Occurrences {
    hashes.sort_unstable();
    hashes
        .chunk_by(|left, right| left.0 == right.0)
        .filter(|group| group.len() > 1)
        .map(|group| {
            let occurrence = Occurrence {
                first: group[0].1,
                count: group.len() as u64,
                others: group[1..group.len().min(MAX_CLUSTER_MEMBERS)]
                    .iter()
                    .map(|(_, position)| *position)
                    .collect(),
            };
            (u128::from(group[0].0), occurrence)
        })
        .collect()
}

/// A 128-bit content hash as two 64-bit halves: JSON numbers in shard files
/// hold 64 bits, and the halves sort as the whole does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
struct ContentHash([u64; 2]);

impl From<u128> for ContentHash {
    fn from(hash: u128) -> ContentHash {
        ContentHash([(hash >> 64) as u64, hash as u64])
    }
}

impl From<ContentHash> for u128 {
    fn from(hash: ContentHash) -> u128 {
        (u128::from(hash.0[0]) << 64) | u128::from(hash.0[1])
    }
}

/// Results of a stretch of records. Merging is order-independent, so chunk
/// and shard partials combine to the same result.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Partial {
    records: u64,
    parse: Tally,
    schema: Tally,
    empty: Tally,
    over_tokens: Tally,
    secrets: Tally,
    pii: Tally,
    /// (content hash, position) of every record, and of its normalized text.
    exact: Vec<(ContentHash, Position)>,
    normalized: Vec<(ContentHash, Position)>,
    characters: LogHistogram,
    tokens: LogHistogram,
    turns: LogHistogram,
    roles: BTreeMap<String, u64>,
    /// Conversations without a system message, and without a user message
    /// (OpenAI's data-preparation notebook counts both).
    #[serde(default)]
    without_system: u64,
    #[serde(default)]
    without_user: u64,
    sensitive: BTreeMap<String, u64>,
    fields: BTreeSet<String>,
    /// Per eval item: the n-grams found in training data and the first record holding one.
    contamination: HashMap<u32, (HashSet<u64>, Position)>,
    /// MinHash signatures in data order.
    near: Vec<(Position, Signature)>,
    /// The largest records by characters, tokens and turns: (value, position).
    largest: [Vec<(u64, Position)>; 3],
    /// The secrets themselves, for the redactor of everything gantry
    /// writes; never serialized (shard files hold none).
    #[serde(skip)]
    found_secrets: BTreeSet<String>,
}

/// The most secret values one run collects for the redactor.
const MAX_FOUND_SECRETS: usize = 10_000;

impl Partial {
    fn found_secret(&mut self, value: &str) {
        if self.found_secrets.len() < MAX_FOUND_SECRETS && !self.found_secrets.contains(value) {
            self.found_secrets.insert(value.to_owned());
        }
    }

    fn merge(&mut self, other: Partial) {
        self.records += other.records;
        self.parse.merge(other.parse);
        self.schema.merge(other.schema);
        self.empty.merge(other.empty);
        self.over_tokens.merge(other.over_tokens);
        self.secrets.merge(other.secrets);
        self.pii.merge(other.pii);
        self.exact.extend(other.exact);
        self.normalized.extend(other.normalized);
        self.characters.merge(&other.characters);
        self.tokens.merge(&other.tokens);
        self.turns.merge(&other.turns);
        for (role, count) in other.roles {
            *self.roles.entry(role).or_insert(0) += count;
        }
        self.without_system += other.without_system;
        self.without_user += other.without_user;
        for (kind, count) in other.sensitive {
            *self.sensitive.entry(kind).or_insert(0) += count;
        }
        self.fields.extend(other.fields);
        for secret in other.found_secrets {
            if self.found_secrets.len() >= MAX_FOUND_SECRETS {
                break;
            }
            self.found_secrets.insert(secret);
        }
        self.near.extend(other.near);
        for (mine, theirs) in self.largest.iter_mut().zip(other.largest) {
            mine.extend(theirs);
            keep_largest(mine);
        }
        for (item, (ngrams, first)) in other.contamination {
            let entry = self
                .contamination
                .entry(item)
                .or_insert_with(|| (HashSet::new(), first));
            entry.0.extend(ngrams);
            entry.1 = entry.1.min(first);
        }
    }
}

/// Everything a worker needs to check records of one file.
struct FileContext<'a> {
    file_index: u32,
    display: &'a str,
    format: Option<RecordFormat>,
    tokenizer: &'a Tokenizer,
    max_tokens: Option<u64>,
    scan_sensitive: bool,
    eval: Option<&'a EvalIndex>,
    near_duplicates: bool,
    normalized_duplicates: bool,
    /// Whether plain chat records may skip `Value` (no schema, chat or unknown format).
    plain_chat: bool,
    shard: Option<Shard>,
    schema: Option<&'a jsonschema::Validator>,
}

/// Where a record came from, for examples.
#[derive(Debug, Clone, Copy)]
struct Origin {
    /// Line (1-based) or record index (0-based) for JSON arrays.
    ordinal: u64,
    byte: Option<u64>,
    is_line: bool,
}

impl FileContext<'_> {
    fn example(&self, origin: Origin, message: String, excerpt: Option<String>) -> Example {
        Example {
            file: self.display.to_owned(),
            line: origin.is_line.then_some(origin.ordinal),
            byte: origin.byte,
            record: (!origin.is_line).then_some(origin.ordinal),
            message,
            excerpt,
        }
    }
}

/// A unit of work for a worker.
enum Batch {
    /// Raw text holding whole lines: JSONL records, or text lines.
    Lines {
        bytes: Chunk,
        first_line: u64,
        first_byte: u64,
        text: bool,
    },
    /// Records already split (JSON arrays, CSV rows): (origin, raw hash, value or parse error).
    Records(Vec<(Origin, u128, std::result::Result<Value, String>)>),
}

/// Whole lines of text, read or mapped.
enum Chunk {
    /// Read into a reusable buffer: `buffer[..len]` is the text, the rest is
    /// initialized room, so a reused buffer is read into without zeroing.
    Read { buffer: Vec<u8>, len: usize },
    /// A range of a window of the file mapped into memory.
    Mapped {
        window: std::sync::Arc<memmap2::Mmap>,
        range: std::ops::Range<usize>,
    },
}

impl std::ops::Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Read { buffer, len } => &buffer[..*len],
            Chunk::Mapped { window, range } => &window[range.clone()],
        }
    }
}

/// Which records a run checks: record ordinals (line numbers, or indices in
/// JSON arrays) with `ordinal % count == index - 1`. Every shard reads and
/// hashes every file, so each can vouch for the same data lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// 1-based shard number.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = Error;

    fn from_str(value: &str) -> Result<Shard> {
        let invalid = || Error::BadShard {
            value: value.to_owned(),
        };
        let (index, count) = value.split_once('/').ok_or_else(invalid)?;
        let index: u32 = index.trim().parse().map_err(|_| invalid())?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        if index == 0 || count == 0 || index > count {
            return Err(invalid());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    fn includes(self, ordinal: u64) -> bool {
        ordinal % u64::from(self.count) == u64::from(self.index - 1)
    }
}

/// Version of shard files. 2: word, shingle and n-gram hashes are
/// polynomial window hashes (signatures and duplicate keys differ from 1's).
pub const SHARD_VERSION: u32 = 2;

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
    tokenizer: String,
    /// The token limit the shards checked against.
    max_tokens: Option<u64>,
    format: Option<RecordFormat>,
    files: Vec<DataFile>,
    locked: Vec<LockedFile>,
    eval_items: Option<Vec<crate::contamination::EvalItem>>,
    partial: Partial,
}

/// Everything one pass over the data found, before scoring.
struct Scan {
    files: Vec<DataFile>,
    format: Option<RecordFormat>,
    total: Partial,
    locked: Vec<LockedFile>,
    eval_items: Option<Vec<crate::contamination::EvalItem>>,
}

/// How far a validation has come, for progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes on disk read so far.
    pub bytes_read: u64,
    /// Bytes on disk in all files.
    pub bytes_total: u64,
    /// Records checked so far.
    pub records: u64,
}

/// Validates the data `options` names.
pub fn validate(options: &ValidateOptions) -> Result<Validation> {
    validate_with_progress(options, &mut |_| {})
}

/// Validates the data `options` names, calling `progress` as the files are read.
pub fn validate_with_progress(
    options: &ValidateOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Validation> {
    let scan = scan_data(options, None, progress)?;
    finish(options, scan)
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
    })
}

/// The options every shard must share, as text.
fn settings_of(options: &ValidateOptions) -> String {
    format!(
        "format={:?} tokenizer={} max-tokens={:?} eval-set={:?} schema={:?} policy={:?}",
        options.format,
        options.tokenizer,
        options.max_tokens,
        options.eval_set,
        options.schema,
        options.policy
    )
}

/// Compiles the JSON Schema at `path` (local `$ref`s only).
fn load_schema(path: &std::path::Path) -> Result<jsonschema::Validator> {
    let error = |reason: String| Error::Schema {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| error(source.to_string()))?;
    let schema: Value =
        serde_json::from_str(&text).map_err(|source| error(format!("not JSON: {source}")))?;
    jsonschema::validator_for(&schema)
        .map_err(|source| error(format!("not a valid JSON Schema: {source}")))
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
        let text = std::fs::read_to_string(&path).map_err(|source| error(source.to_string()))?;
        let shard: ShardFile = serde_json::from_str(&text)
            .map_err(|source| error(format!("not a gantry shard file: {source}")))?;
        if shard.kind != "gantry-data-shard" {
            return Err(error(
                "not a gantry shard file (kind is not gantry-data-shard)".to_owned(),
            ));
        }
        if shard.version != SHARD_VERSION {
            return Err(error(format!(
                "shard format {} is not this gantry's ({SHARD_VERSION}); run every shard and the merge with the same gantry version",
                shard.version
            )));
        }
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

fn scan_data(
    options: &ValidateOptions,
    shard: Option<Shard>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Scan> {
    let files = discover(&options.data)?;
    let schema = options.schema.as_deref().map(load_schema).transpose()?;
    // The BPE tables and the eval index take a few hundred milliseconds each.
    let (tokenizer, eval) = rayon::join(
        || Tokenizer::load(&options.tokenizer),
        || {
            (!options.eval_set.is_empty())
                .then(|| load_eval_set(&options.eval_set))
                .transpose()
        },
    );
    let (tokenizer, eval) = (tokenizer?, eval?);
    let mut format = options.format;
    let mut total = Partial::default();
    let mut locked = Vec::new();
    let bytes_total: u64 = files
        .iter()
        .filter_map(|file| std::fs::metadata(&file.path).ok())
        .map(|metadata| metadata.len())
        .sum();
    let mut bytes_done = 0_u64;

    let workers = rayon::current_num_threads().max(1);
    for (file_index, file) in files.iter().enumerate() {
        let file_index = u32::try_from(file_index).unwrap_or(u32::MAX);
        let mut file_total = Partial::default();
        // A reader thread reads and cuts chunks (and hashes what it reads);
        // worker threads take chunks as they come (no chunk waits for a slower
        // one), hash mapped ones in turns, and hand line buffers back for
        // reuse. Partials merge in any order to the same result.
        let file_hasher = FileHasher::default();
        let (sha256, size) = std::thread::scope(|scope| -> Result<(Option<Digest>, u64)> {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<(Batch, u64)>(workers);
            let (spent_sender, spent) = std::sync::mpsc::sync_channel::<Vec<u8>>(2 * workers);
            let file_hasher = &file_hasher;
            let reader = scope.spawn(move || {
                read_file(
                    file,
                    |batch, bytes| {
                        // The receiving end lives until this thread is joined.
                        let _ = sender.send((batch, bytes));
                    },
                    &mut || spent.try_recv().ok(),
                    file_hasher,
                    mapping_allowed(),
                )
            });
            // The format comes from the first record of a known shape, looked
            // for in the first few chunks (memory stays bounded); records
            // checked without it are detected one by one.
            let mut early = Vec::new();
            while format.is_none() && early.len() < 2 * workers {
                let Ok((batch, bytes)) = receiver.recv() else {
                    break;
                };
                format = detect_in_batch(&batch);
                early.push((batch, bytes));
            }
            let context = FileContext {
                file_index,
                display: &file.display,
                format,
                tokenizer: &tokenizer,
                max_tokens: options.max_tokens,
                scan_sensitive: options.policy.check("secrets").enabled
                    || options.policy.check("pii").enabled,
                eval: eval.as_ref(),
                near_duplicates: options.policy.check("near-duplicates").enabled,
                normalized_duplicates: options.policy.check("normalized-duplicates").enabled,
                plain_chat: schema.is_none()
                    && matches!(format, None | Some(RecordFormat::OpenaiChat)),
                shard,
                schema: schema.as_ref(),
            };
            let queue = std::sync::Mutex::new((early.into_iter(), receiver));
            let (done_sender, done) = std::sync::mpsc::channel::<(u64, u64)>();
            std::thread::scope(|workers_scope| -> Result<()> {
                let handles: Vec<_> = (0..workers)
                    .map(|_| {
                        let (queue, context, done_sender, spent_sender) =
                            (&queue, &context, done_sender.clone(), spent_sender.clone());
                        workers_scope.spawn(move || {
                            let mut worker_total = Partial::default();
                            loop {
                                file_hasher.help();
                                let next = match queue.lock() {
                                    Ok(mut queue) => {
                                        let (early, receiver) = &mut *queue;
                                        early.next().or_else(|| receiver.recv().ok())
                                    }
                                    Err(_) => None,
                                };
                                let Some((batch, bytes)) = next else { break };
                                let (partial, buffer) = process_batch(batch, context);
                                if let Some(buffer) = buffer {
                                    let _ = spent_sender.try_send(buffer);
                                }
                                let _ = done_sender.send((partial.records, bytes));
                                worker_total.merge(partial);
                            }
                            file_hasher.help();
                            worker_total
                        })
                    })
                    .collect();
                drop((done_sender, spent_sender));
                let mut records = 0;
                let mut bytes_read = 0;
                for (chunk_records, bytes) in done {
                    records += chunk_records;
                    bytes_read = bytes_read.max(bytes);
                    progress(Progress {
                        bytes_read: bytes_done + bytes_read,
                        bytes_total,
                        records: total.records + records,
                    });
                }
                for handle in handles {
                    match handle.join() {
                        Ok(worker_total) => file_total.merge(worker_total),
                        Err(_) => {
                            return Err(Error::Read {
                                path: file.path.clone(),
                                error: std::io::Error::other("a checking thread failed"),
                            });
                        }
                    }
                }
                Ok(())
            })?;
            reader.join().unwrap_or_else(|_| {
                Err(Error::Read {
                    path: file.path.clone(),
                    error: std::io::Error::other("the reading thread failed"),
                })
            })
        })?;
        let sha256 = sha256.unwrap_or_else(|| file_hasher.finish());
        bytes_done += size;
        progress(Progress {
            bytes_read: bytes_done,
            bytes_total,
            records: total.records + file_total.records,
        });
        locked.push(LockedFile {
            path: file.display.clone(),
            size,
            sha256,
            records: file_total.records,
        });
        total.merge(file_total);
    }
    let eval_items = eval.map(|eval| eval.items);
    Ok(Scan {
        files,
        format,
        total,
        locked,
        eval_items,
    })
}

/// Scores a scan: the lock, the report, the summary and drift.
fn finish(options: &ValidateOptions, scan: Scan) -> Result<Validation> {
    let Scan {
        files,
        format,
        mut total,
        locked,
        eval_items,
    } = scan;
    let previous = options
        .previous_lock
        .as_deref()
        .map(DataLock::read)
        .transpose()?;
    let reference = options
        .reference
        .as_deref()
        .map(|reference| load_reference(reference, options))
        .transpose()?;
    // Near-duplicate clustering needs signatures in data order.
    rayon::slice::ParallelSliceMut::par_sort_unstable_by_key(
        total.near.as_mut_slice(),
        |(position, _)| *position,
    );
    let file_reports: Vec<FileReport> = locked
        .iter()
        .map(|file| FileReport {
            path: file.path.clone(),
            records: file.records,
            bytes: file.size,
        })
        .collect();
    let mut fingerprint_text = format.map_or("unknown", RecordFormat::as_str).to_owned();
    for field in &total.fields {
        fingerprint_text.push('\n');
        fingerprint_text.push_str(field);
    }
    let lock = DataLock::new(locked, Digest::of_bytes(fingerprint_text.as_bytes()))?;
    let lock_changes = previous.as_ref().map(|previous| lock.diff(previous));
    let found_secrets: Vec<String> = std::mem::take(&mut total.found_secrets)
        .into_iter()
        .collect();
    let (characters_histogram, tokens_histogram, turns_histogram) = (
        total.characters.clone(),
        total.tokens.clone(),
        total.turns.clone(),
    );
    let report = build_report(
        options,
        &files,
        format,
        &options.tokenizer,
        total,
        file_reports,
        &lock,
        lock_changes,
        eval_items.as_deref(),
    );
    let summary = Summary {
        kind: "gantry-data-summary".to_owned(),
        version: SUMMARY_VERSION,
        dataset_digest: lock.dataset_digest,
        records: report.records,
        format,
        tokenizer: options.tokenizer.clone(),
        characters: characters_histogram,
        tokens: tokens_histogram,
        turns: turns_histogram,
        roles: report.roles.clone(),
    };
    let mut report = report;
    if let Some((reference_name, reference)) = &reference {
        add_drift(
            &mut report,
            &summary,
            reference,
            reference_name,
            &options.policy,
        );
    }
    Ok(Validation {
        report,
        lock,
        summary,
        found_secrets,
    })
}

/// Streams `file` into batches, returning the SHA-256 and size of the bytes
/// on disk; a mapped file's SHA-256 comes from `hasher` instead (`None`).
/// `spare` may hand back a line buffer a worker is done with.
fn read_file(
    file: &DataFile,
    mut emit_with_bytes: impl FnMut(Batch, u64),
    spare: &mut dyn FnMut() -> Option<Vec<u8>>,
    hasher: &FileHasher,
    map: bool,
) -> Result<(Option<Digest>, u64)> {
    if file.kind == FileKind::Parquet {
        return read_parquet(file, &mut emit_with_bytes).map(|(digest, size)| (Some(digest), size));
    }
    if map
        && file.compression == crate::source::Compression::None
        && matches!(file.kind, FileKind::Jsonl | FileKind::Text)
        && let Some(size) = map_lines(file, &mut emit_with_bytes, hasher)?
    {
        return Ok((None, size));
    }
    let hashing = HashingReader::open(file)?;
    let state = Rc::clone(&hashing.state);
    let progress_state = Rc::clone(&hashing.state);
    // Batches go out between reads, when nothing else borrows the state.
    let mut emit = |batch: Batch| {
        let bytes = progress_state.try_borrow().map_or(0, |state| state.bytes);
        emit_with_bytes(batch, bytes);
    };
    let mut decoded: Box<dyn Read> = match file.compression {
        crate::source::Compression::None => Box::new(hashing),
        crate::source::Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(hashing)),
        crate::source::Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(hashing).map_err(|source| Error::Read {
                path: file.path.clone(),
                error: source,
            })?,
        ),
    };
    let decode_error = |offset: u64, source: std::io::Error| {
        if file.compression == crate::source::Compression::None {
            Error::Read {
                path: file.path.clone(),
                error: source,
            }
        } else {
            Error::Decompress {
                path: file.path.clone(),
                codec: file.codec(),
                offset,
                reason: source.to_string(),
            }
        }
    };
    match file.kind {
        FileKind::Jsonl | FileKind::Text => {
            read_lines(file, &mut decoded, &decode_error, &mut emit, spare)?
        }
        FileKind::Json => read_json_array(file, &mut decoded, &decode_error, &mut emit)?,
        FileKind::Csv => read_csv(&mut decoded, &decode_error, &mut emit)?,
        FileKind::Parquet => unreachable_parquet(file)?,
    }
    // Hash whatever the decoder left unread (trailing bytes), so the digest covers the whole file.
    drop(decoded);
    let mut state = state.borrow_mut();
    state.drain().map_err(|source| Error::Read {
        path: file.path.clone(),
        error: source,
    })?;
    let digest = Digest::from_bytes(state.hasher.clone().finalize().into());
    Ok((Some(digest), state.bytes))
}

struct HashState {
    file: Option<std::fs::File>,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl HashState {
    fn drain(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut buffer = vec![0_u8; 1 << 20];
        loop {
            let n_read = file.read(&mut buffer)?;
            if n_read == 0 {
                return Ok(());
            }
            self.hasher.update(&buffer[..n_read]);
            self.bytes += n_read as u64;
        }
    }
}

/// Reads the file on disk, hashing every byte that passes.
struct HashingReader {
    state: Rc<RefCell<HashState>>,
}

impl HashingReader {
    fn open(file: &DataFile) -> Result<HashingReader> {
        let handle = std::fs::File::open(&file.path).map_err(|source| Error::Read {
            path: file.path.clone(),
            error: source,
        })?;
        Ok(HashingReader {
            state: Rc::new(RefCell::new(HashState {
                file: Some(handle),
                hasher: sha2::Sha256::new(),
                bytes: 0,
            })),
        })
    }
}

impl Read for HashingReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let mut state = self.state.borrow_mut();
        let Some(file) = state.file.as_mut() else {
            return Ok(0);
        };
        let n_read = file.read(buffer)?;
        state.hasher.update(&buffer[..n_read]);
        state.bytes += n_read as u64;
        Ok(n_read)
    }
}

fn read_lines(
    file: &DataFile,
    decoded: &mut dyn Read,
    decode_error: &dyn Fn(u64, std::io::Error) -> Error,
    emit: &mut dyn FnMut(Batch),
    spare: &mut dyn FnMut() -> Option<Vec<u8>>,
) -> Result<()> {
    const BLOCK: usize = 1 << 20;
    let text = file.kind == FileKind::Text;
    // Reads go straight into the chunk being filled; a worker's spent buffer
    // is reused (already initialized, so `read` needs no zeroing first), so
    // chunks cost neither a copy nor fresh pages.
    let mut fresh = || {
        let mut buffer = spare().unwrap_or_default();
        if buffer.len() < CHUNK_BYTES + BLOCK {
            buffer.resize(CHUNK_BYTES + BLOCK, 0);
        }
        buffer
    };
    let mut pending = fresh();
    let mut filled = 0;
    let mut next_line = 1_u64;
    let mut next_byte = 0_u64;
    let mut decoded_bytes = 0_u64;
    let mut checked_binary = false;
    loop {
        if pending.len() < filled + BLOCK {
            // Only a line longer than a chunk grows the buffer.
            pending.resize(filled + BLOCK, 0);
        }
        let before = filled;
        let n_read = read_block(&mut *decoded, &mut pending[filled..filled + BLOCK])
            .map_err(|(n_read, error)| decode_error(decoded_bytes + n_read as u64, error))?;
        filled += n_read;
        if !checked_binary && (n_read > 0 || decoded_bytes > 0) {
            let probe = &pending[before..before + n_read.min(8192)];
            if let Some(offset) = memchr_nul(probe) {
                return Err(Error::NotText {
                    path: file.path.clone(),
                    offset: offset as u64,
                    expected: file.kind.expectation(),
                });
            }
            checked_binary = true;
        }
        decoded_bytes += n_read as u64;
        let at_end = n_read == 0;
        if filled >= CHUNK_BYTES || at_end {
            let cut = if at_end {
                filled
            } else {
                memchr::memrchr(b'\n', &pending[..filled]).map_or(0, |index| index + 1)
            };
            if cut == 0 && filled > MAX_RECORD_BYTES {
                // One line larger than any record should be: report it, skip to its end.
                let oversized_line = next_line;
                let oversized_byte = next_byte;
                let mut skipped = filled as u64;
                filled = 0;
                let mut block = vec![0_u8; BLOCK];
                loop {
                    let n_read = decoded
                        .read(&mut block)
                        .map_err(|error| decode_error(decoded_bytes, error))?;
                    decoded_bytes += n_read as u64;
                    if n_read == 0 {
                        break;
                    }
                    if let Some(index) = memchr::memchr(b'\n', &block[..n_read]) {
                        skipped += index as u64 + 1;
                        let rest = &block[index + 1..n_read];
                        pending[..rest.len()].copy_from_slice(rest);
                        filled = rest.len();
                        break;
                    }
                    skipped += n_read as u64;
                }
                emit(oversized_record(oversized_line, oversized_byte, skipped));
                next_line += 1;
                next_byte += skipped;
                continue;
            }
            if cut > 0 {
                // The partial line after the cut starts the next chunk.
                let mut next = fresh();
                let rest = filled - cut;
                if next.len() < rest + BLOCK {
                    next.resize(rest + BLOCK, 0);
                }
                next[..rest].copy_from_slice(&pending[cut..filled]);
                let bytes = Chunk::Read {
                    buffer: std::mem::replace(&mut pending, next),
                    len: cut,
                };
                filled = rest;
                let n_lines = memchr::memchr_iter(b'\n', &bytes).count() as u64
                    + u64::from(!bytes.ends_with(b"\n"));
                let length = bytes.len() as u64;
                emit(Batch::Lines {
                    bytes,
                    first_line: next_line,
                    first_byte: next_byte,
                    text,
                });
                next_line += n_lines;
                next_byte += length;
            }
        }
        if at_end {
            return Ok(());
        }
    }
}

/// Cuts an uncompressed JSONL or text file into chunks of whole lines the way
/// [`read_lines`] does, from windows of the file mapped into memory: no read
/// copies the bytes, and the lock's SHA-256 reads them where they lie. `None`
/// when the file cannot be mapped (not a regular file, or a filesystem that
/// does not map): it is read instead.
fn map_lines(
    file: &DataFile,
    emit: &mut dyn FnMut(Batch, u64),
    hasher: &FileHasher,
) -> Result<Option<u64>> {
    /// Windows end at their last line break; a line longer than a window
    /// gets a larger one.
    const WINDOW: usize = 16 << 20;
    /// A window this large that a line fills without a break holds a line
    /// over the limit.
    const LARGEST_WINDOW: usize = MAX_RECORD_BYTES + 1;
    let read_error = |source: std::io::Error| Error::Read {
        path: file.path.clone(),
        error: source,
    };
    let handle = std::fs::File::open(&file.path).map_err(read_error)?;
    let metadata = handle.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Ok(None);
    }
    let size = metadata.len();
    let text = file.kind == FileKind::Text;
    let mut start = 0_u64;
    let mut next_line = 1_u64;
    let mut want = WINDOW;
    while start < size {
        let len = usize::try_from(size - start).map_or(want, |rest| rest.min(want));
        let window = match map_range(&handle, start, len) {
            Ok(window) => window,
            // A filesystem that cannot map files: read it instead (nothing
            // has been handed out yet).
            Err(_) if start == 0 => return Ok(None),
            Err(error) => return Err(read_error(error)),
        };
        if start == 0
            && let Some(offset) = memchr_nul(&window[..len.min(8192)])
        {
            return Err(Error::NotText {
                path: file.path.clone(),
                offset: offset as u64,
                expected: file.kind.expectation(),
            });
        }
        let at_end = start + len as u64 == size;
        let end = if at_end {
            len
        } else {
            memchr::memrchr(b'\n', &window).map_or(0, |index| index + 1)
        };
        if end == 0 && want < LARGEST_WINDOW {
            want = (want * 4).min(LARGEST_WINDOW);
            continue;
        }
        want = WINDOW;
        if end == 0 {
            // One line larger than any record should be: report it, skip to its end.
            hasher.push(std::sync::Arc::new(window), 0..len);
            let mut skipped = len as u64;
            while start + skipped < size {
                let rest =
                    usize::try_from(size - start - skipped).map_or(WINDOW, |rest| rest.min(WINDOW));
                let window = map_range(&handle, start + skipped, rest).map_err(read_error)?;
                let taken = memchr::memchr(b'\n', &window).map_or(rest, |index| index + 1);
                let ends_line = taken < rest || window.last() == Some(&b'\n');
                hasher.push(std::sync::Arc::new(window), 0..taken);
                skipped += taken as u64;
                if ends_line {
                    break;
                }
            }
            emit(oversized_record(next_line, start, skipped), start + skipped);
            next_line += 1;
            start += skipped;
            continue;
        }
        let window = std::sync::Arc::new(window);
        let mut from = 0;
        while from < end {
            // Chunks of about CHUNK_BYTES, each ending at a line break.
            let to = if end - from <= CHUNK_BYTES {
                end
            } else {
                let probe = from + CHUNK_BYTES;
                memchr::memrchr(b'\n', &window[from..probe])
                    .or_else(|| {
                        memchr::memchr(b'\n', &window[probe..end]).map(|index| probe - from + index)
                    })
                    .map_or(end, |index| from + index + 1)
            };
            let bytes = &window[from..to];
            let n_lines = memchr::memchr_iter(b'\n', bytes).count() as u64
                + u64::from(!bytes.ends_with(b"\n"));
            emit(
                Batch::Lines {
                    bytes: Chunk::Mapped {
                        window: std::sync::Arc::clone(&window),
                        range: from..to,
                    },
                    first_line: next_line,
                    first_byte: start + from as u64,
                    text,
                },
                start + to as u64,
            );
            hasher.push(std::sync::Arc::clone(&window), from..to);
            // Hashing may not fall far behind (every waiting chunk keeps its
            // window mapped): past a few chunks, this thread hashes them.
            if hasher.waiting() > MAX_WAITING {
                hasher.catch_up();
            }
            next_line += n_lines;
            from = to;
        }
        start += end as u64;
    }
    Ok(Some(size))
}

/// The lock's SHA-256 of a mapped file. The thread that cuts chunks queues
/// them here in file order; checking threads hash them in turns (one at a
/// time, in order), so hashing — one file's is inherently serial — takes a
/// core only while it has bytes to hash, and no thread waits on another.
#[derive(Default)]
struct FileHasher {
    waiting: std::sync::Mutex<std::collections::VecDeque<Chunk>>,
    hasher: std::sync::Mutex<sha2::Sha256>,
}

/// A lock whose holder panicked is still taken: the panic fails the run on
/// its own, and no chunk may be dropped meanwhile.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FileHasher {
    fn push(&self, window: std::sync::Arc<memmap2::Mmap>, range: std::ops::Range<usize>) {
        lock(&self.waiting).push_back(Chunk::Mapped { window, range });
    }

    /// How many chunks wait to be hashed.
    fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }

    /// Hashes what is waiting, after any other thread hashing now.
    fn catch_up(&self) {
        self.drain(&mut lock(&self.hasher));
    }

    /// Hashes what is waiting, unless another thread is hashing already.
    fn help(&self) {
        match self.hasher.try_lock() {
            Ok(mut hasher) => self.drain(&mut hasher),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                self.drain(&mut poisoned.into_inner());
            }
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
    }

    /// Whoever holds the hasher takes waiting chunks in order, so order is kept.
    fn drain(&self, hasher: &mut sha2::Sha256) {
        loop {
            // A statement of its own, so the queue is unlocked while hashing.
            let next = lock(&self.waiting).pop_front();
            let Some(chunk) = next else { break };
            hasher.update(&chunk[..]);
        }
    }

    /// Hashes what is left: the digest of every byte pushed.
    fn finish(self) -> Digest {
        let mut hasher = lock(&self.hasher).clone();
        self.drain(&mut hasher);
        Digest::from_bytes(hasher.finalize().into())
    }
}

/// Whether uncompressed files may be mapped: `GANTRY_NO_MMAP` (any value)
/// makes every file read with read(2), for a file that may change meanwhile.
fn mapping_allowed() -> bool {
    std::env::var_os("GANTRY_NO_MMAP").is_none()
}

/// Maps `len` bytes of `file` from `offset`, read-only.
#[allow(unsafe_code)]
fn map_range(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the mapping is read-only and gantry never writes the file. What
    // Rust cannot see is another process changing the file meanwhile: new
    // bytes would show through (the lock's digest and the checks see the
    // same ones), and a file truncated under the mapping ends gantry with
    // SIGBUS, as it does ripgrep. GANTRY_NO_MMAP=1 reads with read(2) instead.
    unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)
    }
}

/// The finding for a line of `length` bytes, over the limit per record, at
/// `line` and `byte`; the line itself is skipped.
fn oversized_record(line: u64, byte: u64, length: u64) -> Batch {
    let origin = Origin {
        ordinal: line,
        byte: Some(byte),
        is_line: true,
    };
    let message = format!(
        "record is {length} bytes, over the {} MiB limit per record; skipped",
        MAX_RECORD_BYTES >> 20
    );
    Batch::Records(vec![(origin, 0, Err(message))])
}

/// Reads until `buffer` is full or the input ends, retrying interrupted
/// reads; fewer bytes than `buffer` holds means the end. An error comes with
/// the bytes read before it.
fn read_block(
    reader: &mut dyn Read,
    buffer: &mut [u8],
) -> std::result::Result<usize, (usize, std::io::Error)> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n_read) => filled += n_read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err((filled, error)),
        }
    }
    Ok(filled)
}

/// Parquet files are read by [`read_parquet`], never through a decompressor.
fn unreachable_parquet(file: &DataFile) -> Result<()> {
    Err(Error::Unsupported {
        path: file.path.clone(),
        kind: "compressed Parquet (Parquet compresses its own pages)",
    })
}

/// Reads a Parquet file row by row: each row becomes a JSON record. Parquet
/// needs random access, so the SHA-256 is a separate pass over the file.
fn read_parquet(file: &DataFile, emit: &mut dyn FnMut(Batch, u64)) -> Result<(Digest, u64)> {
    use parquet::file::reader::SerializedFileReader;
    if file.compression != crate::source::Compression::None {
        unreachable_parquet(file)?;
    }
    let read_error = |source: std::io::Error| Error::Read {
        path: file.path.clone(),
        error: source,
    };
    let handle = std::fs::File::open(&file.path).map_err(read_error)?;
    let (digest, size) = Digest::of_reader(std::io::BufReader::new(&handle), &file.display)
        .map_err(|error| read_error(std::io::Error::other(error.to_string())))?;
    let whole_file = Origin {
        ordinal: 0,
        byte: None,
        is_line: false,
    };
    let rows = match SerializedFileReader::new(handle) {
        Ok(reader) => reader.into_iter(),
        Err(error) => {
            let message = format!(
                "not a readable Parquet file: {}",
                crate::scan::sanitize_message(&error.to_string())
            );
            emit(Batch::Records(vec![(whole_file, 0, Err(message))]), size);
            return Ok((digest, size));
        }
    };
    let mut batch = Vec::new();
    for (index, row) in rows.enumerate() {
        let origin = Origin {
            ordinal: index as u64,
            byte: None,
            is_line: false,
        };
        match row {
            Ok(row) => {
                let value = row.to_json_value();
                let raw = serde_json::to_vec(&value).unwrap_or_default();
                batch.push((origin, xxh3_128(&raw), Ok(value)));
            }
            Err(error) => {
                // A corrupt page ends the file: report where, keep what was read.
                batch.push((
                    origin,
                    0,
                    Err(format!(
                        "unreadable Parquet row: {}",
                        crate::scan::sanitize_message(&error.to_string())
                    )),
                ));
                break;
            }
        }
        if batch.len() == 4096 {
            emit(Batch::Records(std::mem::take(&mut batch)), size);
        }
    }
    if !batch.is_empty() {
        emit(Batch::Records(batch), size);
    }
    Ok((digest, size))
}

fn memchr_nul(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(0, bytes)
}

fn read_json_array(
    file: &DataFile,
    decoded: &mut dyn Read,
    decode_error: &dyn Fn(u64, std::io::Error) -> Error,
    emit: &mut dyn FnMut(Batch),
) -> Result<()> {
    let mut bytes = Vec::new();
    decoded
        .take(MAX_JSON_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| decode_error(bytes.len() as u64, error))?;
    if bytes.len() > MAX_JSON_FILE_BYTES {
        return Err(Error::Unsupported {
            path: file.path.clone(),
            kind: "JSON array files over 1 GiB (use JSONL)",
        });
    }
    if let Some(offset) = memchr_nul(&bytes[..bytes.len().min(8192)]) {
        return Err(Error::NotText {
            path: file.path.clone(),
            offset: offset as u64,
            expected: file.kind.expectation(),
        });
    }
    let whole = Origin {
        ordinal: 1,
        byte: Some(0),
        is_line: true,
    };
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(error) => {
            let origin = Origin {
                ordinal: error.line() as u64,
                byte: None,
                is_line: true,
            };
            emit(Batch::Records(vec![(
                origin,
                0,
                Err(format!(
                    "not valid JSON: {}",
                    crate::scan::sanitize_message(&error.to_string())
                )),
            )]));
            return Ok(());
        }
    };
    let Value::Array(records) = value else {
        emit(Batch::Records(vec![(
            whole,
            0,
            Err("a .json data file must hold an array of records".to_owned()),
        )]));
        return Ok(());
    };
    let mut batch = Vec::new();
    for (index, record) in records.into_iter().enumerate() {
        let raw = serde_json::to_vec(&record).unwrap_or_default();
        batch.push((
            Origin {
                ordinal: index as u64,
                byte: None,
                is_line: false,
            },
            xxh3_128(&raw),
            Ok(record),
        ));
        if batch.len() == 4096 {
            emit(Batch::Records(std::mem::take(&mut batch)));
        }
    }
    if !batch.is_empty() {
        emit(Batch::Records(batch));
    }
    Ok(())
}

/// The UTF-8 byte-order mark some editors put at the start of a file.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// `reader` without a leading UTF-8 byte-order mark.
fn without_bom(reader: &mut dyn Read) -> std::io::Result<impl Read + '_> {
    let mut head = [0_u8; 3];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    let kept = if head[..filled] == *UTF8_BOM {
        0
    } else {
        filled
    };
    Ok(std::io::Cursor::new(head[..kept].to_vec()).chain(reader))
}

fn read_csv(
    decoded: &mut dyn Read,
    decode_error: &dyn Fn(u64, std::io::Error) -> Error,
    emit: &mut dyn FnMut(Batch),
) -> Result<()> {
    let decoded = without_bom(decoded).map_err(|error| decode_error(0, error))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(decoded);
    let headers: Vec<String> = match reader.headers() {
        Ok(headers) => headers.iter().map(str::to_owned).collect(),
        Err(error) => {
            let origin = Origin {
                ordinal: 1,
                byte: Some(0),
                is_line: true,
            };
            emit(Batch::Records(vec![(
                origin,
                0,
                Err(format!(
                    "unreadable CSV header: {}",
                    crate::scan::sanitize_message(&error.to_string())
                )),
            )]));
            return Ok(());
        }
    };
    let mut batch = Vec::new();
    let mut row = csv::StringRecord::new();
    loop {
        let position = reader.position().clone();
        let origin = Origin {
            ordinal: position.line(),
            byte: Some(position.byte()),
            is_line: true,
        };
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {
                let origin = row.position().map_or(origin, |position| Origin {
                    ordinal: position.line(),
                    byte: Some(position.byte()),
                    is_line: true,
                });
                let object: serde_json::Map<String, Value> = headers
                    .iter()
                    .cloned()
                    .zip(row.iter().map(|field| Value::String(field.to_owned())))
                    .collect();
                let raw: Vec<u8> = row.iter().collect::<Vec<_>>().join("\u{1f}").into_bytes();
                batch.push((origin, xxh3_128(&raw), Ok(Value::Object(object))));
            }
            Err(error) => {
                let message = match error.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len,
                        len,
                        pos,
                    } => {
                        let origin_line = pos.as_ref().map_or(origin.ordinal, csv::Position::line);
                        batch.push((
                            Origin {
                                ordinal: origin_line,
                                byte: pos.as_ref().map(csv::Position::byte),
                                is_line: true,
                            },
                            0,
                            Err(format!(
                                "row has {len} fields but the header has {expected_len}"
                            )),
                        ));
                        continue;
                    }
                    csv::ErrorKind::Utf8 { err, .. } => {
                        format!("invalid UTF-8 in field {}", err.field() + 1)
                    }
                    csv::ErrorKind::Io(io) => format!("read error: {io}"),
                    _ => crate::scan::sanitize_message(&error.to_string()),
                };
                batch.push((origin, 0, Err(message)));
                if matches!(error.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
        if batch.len() == 4096 {
            emit(Batch::Records(std::mem::take(&mut batch)));
        }
    }
    if !batch.is_empty() {
        emit(Batch::Records(batch));
    }
    Ok(())
}

fn detect_in_batch(batch: &Batch) -> Option<RecordFormat> {
    match batch {
        Batch::Lines { text: true, .. } => Some(RecordFormat::Text),
        Batch::Lines { bytes, .. } => bytes
            .split(|&byte| byte == b'\n')
            .filter(|line| !line.trim_ascii().is_empty())
            .find_map(|line| serde_json::from_slice::<Value>(line).ok())
            .and_then(|value| RecordFormat::detect(&value)),
        Batch::Records(records) => records
            .iter()
            .find_map(|(_, _, value)| value.as_ref().ok().and_then(RecordFormat::detect)),
    }
}

/// Checks one batch; hands back its line buffer for reuse.
fn process_batch(batch: Batch, context: &FileContext<'_>) -> (Partial, Option<Vec<u8>>) {
    let mut partial = Partial::default();
    let mut spent = None;
    match batch {
        Batch::Lines {
            bytes,
            first_line,
            first_byte,
            text,
        } => {
            let mut byte = first_byte;
            // Plain chat records skip `Value`; data where most lines are not
            // plain stops trying after a few dozen, so it never parses twice.
            let (mut plain_tries, mut plain_misses) = (0_u32, 0_u32);
            for (line_number, line) in (first_line..).zip(lines(&bytes)) {
                let origin = Origin {
                    ordinal: line_number,
                    byte: Some(byte),
                    is_line: true,
                };
                byte += line.len() as u64;
                if context
                    .shard
                    .is_some_and(|shard| !shard.includes(line_number))
                {
                    continue;
                }
                let content = line.strip_suffix(b"\n").unwrap_or(line);
                let content = content.strip_suffix(b"\r").unwrap_or(content);
                // A UTF-8 byte-order mark (Windows editors, Excel) starts
                // the file, not the record.
                let content = if origin.byte == Some(0) {
                    content.strip_prefix(UTF8_BOM).unwrap_or(content)
                } else {
                    content
                };
                if text {
                    let value = match std::str::from_utf8(content) {
                        Ok(text) => Ok(serde_json::json!({ "text": text })),
                        Err(error) => Err(format!(
                            "invalid UTF-8 at byte {} of the line",
                            error.valid_up_to()
                        )),
                    };
                    process_record(
                        origin,
                        xxh3_128(content),
                        value.map(Record::Value),
                        context,
                        &mut partial,
                    );
                    continue;
                }
                if content.trim_ascii().is_empty() {
                    continue;
                }
                // sonic-rs has no nesting limit of its own (parsing, and
                // skipping in the plain-chat parse, recurse): a line nested
                // deeper than serde_json's limit would overflow the stack, so
                // it is refused before either looks at it.
                let deep = too_deep(content);
                if deep.is_none() && (plain_tries < 64 || 2 * plain_misses <= plain_tries) {
                    plain_tries += u32::from(context.plain_chat);
                    if context.plain_chat
                        && let Some(chat) = PlainChat::parse(content)
                    {
                        let hash = xxh3_128(content.trim_ascii());
                        process_record(
                            origin,
                            hash,
                            Ok(Record::Plain(chat)),
                            context,
                            &mut partial,
                        );
                        continue;
                    }
                    plain_misses += u32::from(context.plain_chat);
                }
                // sonic-rs checks UTF-8 as it parses; a line it refuses is
                // looked at again for the exact message.
                let value = if let Some(at) = deep {
                    Err((too_deep_message(), Some(at)))
                } else {
                    match sonic_rs::from_slice::<Value>(content) {
                        Ok(value) => Ok(value),
                        Err(_) => match std::str::from_utf8(content) {
                            Err(error) => Err((
                                format!(
                                    "invalid UTF-8 at byte {} of the line",
                                    error.valid_up_to()
                                ),
                                Some(error.valid_up_to()),
                            )),
                            Ok(text) => parse_json(text),
                        },
                    }
                };
                match value {
                    Ok(value) => process_record(
                        origin,
                        xxh3_128(content.trim_ascii()),
                        Ok(Record::Value(value)),
                        context,
                        &mut partial,
                    ),
                    Err((message, column)) => {
                        let origin = Origin {
                            byte: origin.byte.map(|byte| byte + column.unwrap_or(0) as u64),
                            ..origin
                        };
                        let snippet = String::from_utf8_lossy(&content[..content.len().min(200)])
                            .into_owned();
                        partial.records += 1;
                        partial.parse.add(position_of(context, origin), || {
                            context.example(origin, message, Some(excerpt(&snippet, 0, 80)))
                        });
                    }
                }
            }
            if let Chunk::Read { buffer, .. } = bytes {
                spent = Some(buffer);
            }
        }
        Batch::Records(records) => {
            for (origin, hash, value) in records {
                if context
                    .shard
                    .is_some_and(|shard| !shard.includes(origin.ordinal))
                {
                    continue;
                }
                process_record(
                    origin,
                    hash,
                    value.map(Record::Value),
                    context,
                    &mut partial,
                );
            }
        }
    }
    (partial, spent)
}

/// The deepest nesting of arrays and objects a record may have: serde_json's
/// own limit, which every other JSON reader of gantry keeps.
pub(crate) const MAX_NESTING: usize = 128;

fn too_deep_message() -> String {
    format!(
        "nested more than {MAX_NESTING} arrays and objects deep; gantry reads records up to {MAX_NESTING} levels"
    )
}

/// Where `bytes` (one JSON text) first nests deeper than [`MAX_NESTING`],
/// if it does. Most records hold few brackets, and a count of them (SIMD)
/// says so without looking at strings; only a record with many is walked.
pub(crate) fn too_deep(bytes: &[u8]) -> Option<usize> {
    if memchr::memchr2_iter(b'[', b'{', bytes)
        .take(MAX_NESTING + 1)
        .count()
        <= MAX_NESTING
    {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0_usize, false, false);
    for (at, &byte) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(at);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// One JSON record: parsed by sonic-rs (SIMD) into the `serde_json::Value`
/// the checks walk; a record it refuses is parsed again by serde_json for
/// the error message and column gantry has always given.
fn parse_json(text: &str) -> std::result::Result<Value, (String, Option<usize>)> {
    if let Some(at) = too_deep(text.as_bytes()) {
        return Err((too_deep_message(), Some(at)));
    }
    sonic_rs::from_str::<Value>(text).or_else(|_| {
        serde_json::from_str::<Value>(text).map_err(|error| {
            // serde_json counts columns in bytes from 1 on the record's single line.
            let column = error.column().saturating_sub(1);
            (
                format!(
                    "not valid JSON: {}",
                    crate::scan::sanitize_message(&error.to_string())
                ),
                Some(column),
            )
        })
    })
}

/// The lines of `bytes`, each with its `\n` (the last one may lack it).
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', bytes)
        .map(move |end| end + 1)
        .chain(std::iter::once(bytes.len()))
        .filter_map(move |end| {
            let line = (end > start).then(|| &bytes[start..end]);
            start = end;
            line
        })
}

/// A parsed record.
enum Record<'a> {
    /// The commonest chat shape, borrowed from its line.
    Plain(PlainChat<'a>),
    /// Any JSON value.
    Value(Value),
}

fn process_record(
    origin: Origin,
    raw_hash: u128,
    record: std::result::Result<Record<'_>, String>,
    context: &FileContext<'_>,
    partial: &mut Partial,
) {
    partial.records += 1;
    let record = match record {
        Ok(record) => record,
        Err(message) => {
            partial.parse.add(position_of(context, origin), || {
                context.example(origin, message, None)
            });
            return;
        }
    };
    let position = (context.file_index, origin.ordinal);
    // Every record is checked, duplicates included: whether a record repeats an
    // earlier one is only known after chunks merge, and counts must not depend
    // on where chunk boundaries fall.
    partial.exact.push((ContentHash::from(raw_hash), position));
    let inspection = match &record {
        Record::Plain(chat) => {
            if partial.fields.len() <= 256 {
                for field in chat.fields() {
                    if !partial.fields.contains(field) {
                        partial.fields.insert(field.to_owned());
                    }
                }
            }
            chat.inspect()
        }
        Record::Value(value) => {
            collect_fields(value, partial);
            let detected = context.format.or_else(|| RecordFormat::detect(value));
            let mut inspection = match detected {
                Some(format) => inspect(format, value),
                // A custom schema describes records of no known format: check every string.
                None if context.schema.is_some() => inspect_leaves(value),
                None => {
                    partial.schema.add(position_of(context, origin), || {
                        context.example(
                            origin,
                            "record has none of the keys of a known format (messages, conversations, instruction, prompt/completion, chosen or preferred_output, text); pass --data-format or --schema".to_owned(),
                            None,
                        )
                    });
                    // Not checked as a record, but a secret in it is still a secret.
                    if context.scan_sensitive {
                        scan_sensitive(context, origin, &[], Some(value), partial);
                    }
                    return;
                }
            };
            if let Some(validator) = context.schema {
                for error in validator.iter_errors(value).take(3) {
                    // The path holds the data's keys and the message quotes
                    // its values: both are shown only where they look like names.
                    let path: String = error
                        .instance_path()
                        .to_string()
                        .split('/')
                        .skip(1)
                        .map(|segment| {
                            if crate::scan::is_safe_to_quote(segment) {
                                format!("/{segment}")
                            } else {
                                "/…".to_owned()
                            }
                        })
                        .collect();
                    let at = if path.is_empty() {
                        "the record".to_owned()
                    } else {
                        format!("`{path}`")
                    };
                    inspection.problems.push(format!(
                        "{at} does not match --schema: {}",
                        crate::scan::sanitize_message(&error.to_string())
                    ));
                }
            }
            inspection
        }
    };
    let n_characters: u64 = inspection
        .texts
        .iter()
        .map(|(_, text)| crate::tokens::count_chars(text))
        .sum();
    let n_tokens = if inspection.messages.is_empty() {
        inspection
            .texts
            .iter()
            .map(|(_, text)| context.tokenizer.count(text))
            .sum()
    } else {
        context.tokenizer.count_messages(&inspection.messages)
    };
    partial.characters.add(n_characters);
    let n_turns = if inspection.messages.is_empty() {
        1
    } else {
        inspection.messages.len() as u64
    };
    for (largest, value) in partial
        .largest
        .iter_mut()
        .zip([n_characters, n_tokens, n_turns])
    {
        largest.push((value, position));
        if largest.len() > 2 * MAX_EXAMPLES {
            keep_largest(largest);
        }
    }
    partial.tokens.add(n_tokens);
    partial.turns.add(if inspection.messages.is_empty() {
        1
    } else {
        inspection.messages.len() as u64
    });
    if !inspection.messages.is_empty() {
        let has = |wanted: &[&str]| {
            inspection
                .messages
                .iter()
                .any(|message| wanted.contains(&message.role))
        };
        partial.without_system += u64::from(!has(&["system", "developer"]));
        partial.without_user += u64::from(!has(&["user"]));
    }
    for message in &inspection.messages {
        let role = role_name(message.role);
        match partial.roles.get_mut(role) {
            Some(count) => *count += 1,
            None => {
                partial.roles.insert(role.to_owned(), 1);
            }
        }
    }
    if !inspection.problems.is_empty() {
        let message = match inspection.problems.len() {
            1 => inspection.problems[0].clone(),
            n => format!("{} (and {} more)", inspection.problems[0], n - 1),
        };
        partial.schema.add(position_of(context, origin), || {
            context.example(origin, message, None)
        });
    }
    if !inspection.empty_fields.is_empty() {
        let fields = inspection.empty_fields.join(", ");
        partial.empty.add(position_of(context, origin), || {
            context.example(origin, format!("empty or whitespace-only: {fields}"), None)
        });
    }
    if let Some(limit) = context.max_tokens
        && n_tokens > limit
    {
        partial.over_tokens.add(position_of(context, origin), || {
            context.example(
                origin,
                format!(
                    "{n_tokens} tokens ({}), over --max-tokens {limit}",
                    context.tokenizer.name()
                ),
                None,
            )
        });
    }
    if context.scan_sensitive {
        let other = match &record {
            Record::Value(value) => Some(value),
            Record::Plain(_) => None,
        };
        scan_sensitive(context, origin, &inspection.texts, other, partial);
    }
    if !(context.normalized_duplicates || context.near_duplicates || context.eval.is_some()) {
        return;
    }
    // One pass over the words serves normalized duplicates, shingles and n-grams.
    with_words(inspection.texts.iter().map(|(_, text)| *text), |words| {
        if context.normalized_duplicates
            && let Some(hash) = words.normalized_hash()
        {
            partial.normalized.push((ContentHash::from(hash), position));
        }
        if context.near_duplicates
            && let Some(signature) = signature_of(words)
        {
            partial.near.push((position, signature));
        }
        if let Some(eval) = context.eval {
            eval.find_in(words, |item, ngram| {
                let entry = partial
                    .contamination
                    .entry(item)
                    .or_insert_with(|| (HashSet::new(), position));
                entry.0.insert(ngram);
                entry.1 = entry.1.min(position);
            });
        }
    });
}

/// The reference summary: read from a `summary.json`, or computed from data paths.
fn load_reference(reference: &str, options: &ValidateOptions) -> Result<(String, Summary)> {
    let path = std::path::Path::new(reference);
    let error = |reason: String| Error::Reference {
        path: path.to_owned(),
        reason,
    };
    if path.is_file()
        && path
            .extension()
            .is_some_and(|extension| extension == "json")
    {
        let text = std::fs::read_to_string(path).map_err(|source| error(source.to_string()))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|source| error(format!("not JSON: {source}")))?;
        if value.get("kind").and_then(Value::as_str) == Some("gantry-data-summary") {
            let summary: Summary = serde_json::from_value(value)
                .map_err(|source| error(format!("not a gantry data summary: {source}")))?;
            if summary.tokenizer != options.tokenizer {
                return Err(error(format!(
                    "its token counts use {}, not {}; pass --tokenizer {} to compare like with like",
                    summary.tokenizer, options.tokenizer, summary.tokenizer
                )));
            }
            return nonempty_reference(reference, summary, &error);
        }
    }
    let reference_options = ValidateOptions {
        data: vec![reference.to_owned()],
        reference: None,
        eval_set: Vec::new(),
        previous_lock: None,
        ..options.clone()
    };
    let validation = validate(&reference_options).map_err(|source| error(source.to_string()))?;
    nonempty_reference(reference, validation.summary, &error)
}

/// A reference without records would give every drift measure "0.0, pass":
/// drift against nothing is refused, not passed.
fn nonempty_reference(
    reference: &str,
    summary: Summary,
    error: &dyn Fn(String) -> Error,
) -> Result<(String, Summary)> {
    if summary.records == 0 || summary.characters.count == 0 {
        return Err(error(
            "it holds no records, so there is nothing to measure drift against; point --reference at last week's summary.json or data"
                .to_owned(),
        ));
    }
    Ok((reference.to_owned(), summary))
}

/// Adds the drift measures and checks against `reference` to `report`.
fn add_drift(
    report: &mut Report,
    current: &Summary,
    reference: &Summary,
    reference_name: &str,
    policy: &Policy,
) {
    let mut measures = BTreeMap::new();
    let mut notes = Vec::new();
    for (name, reference_histogram, current_histogram) in [
        ("characters", &reference.characters, &current.characters),
        ("tokens", &reference.tokens, &current.tokens),
        ("turns", &reference.turns, &current.turns),
    ] {
        if let Some(measure) = crate::drift::numeric_drift(reference_histogram, current_histogram) {
            notes.push((
                name,
                measure,
                format!(
                    "p50 {} → {}",
                    reference_histogram.quantile(0.5),
                    current_histogram.quantile(0.5)
                ),
            ));
            measures.insert(name.to_owned(), measure);
        }
    }
    if let Some(measure) = crate::drift::categorical_drift(&reference.roles, &current.roles) {
        notes.push(("roles", measure, "message shares by role".to_owned()));
        measures.insert("roles".to_owned(), measure);
    }
    let describe = |id: &str| {
        CHECKS
            .iter()
            .find(|(known, _)| *known == id)
            .map_or("", |(_, description)| *description)
    };
    let index = report
        .checks
        .iter()
        .position(|check| check.id == "min-records")
        .unwrap_or(report.checks.len());
    let mut drift_checks = Vec::new();
    for (id, value_of) in [
        (
            "drift-psi",
            (|measure: &crate::drift::DriftMeasure| measure.psi)
                as fn(&crate::drift::DriftMeasure) -> f64,
        ),
        ("drift-js", |measure| measure.jensen_shannon),
        ("drift-wasserstein", |measure| {
            measure.wasserstein.unwrap_or(0.0)
        }),
    ] {
        let check_policy = policy.check(id);
        let limit = check_policy
            .warn
            .or(check_policy.error)
            .unwrap_or(f64::INFINITY);
        let value = notes
            .iter()
            .map(|(_, measure, _)| value_of(measure))
            .fold(0.0, f64::max);
        let examples: Vec<Example> = notes
            .iter()
            .filter(|(_, measure, _)| value_of(measure) > limit)
            .map(|(name, measure, detail)| Example {
                file: reference_name.to_owned(),
                line: None,
                byte: None,
                record: None,
                message: format!(
                    "{name}: PSI {:.3}, Jensen–Shannon {:.3}{} ({detail})",
                    measure.psi,
                    measure.jensen_shannon,
                    measure
                        .wasserstein
                        .map(|distance| format!(", Wasserstein {distance:.3} sd"))
                        .unwrap_or_default()
                ),
                excerpt: None,
            })
            .collect();
        let count = examples.len() as u64;
        drift_checks.push(CheckResult::scored(
            id,
            describe(id),
            "effect size",
            check_policy,
            value,
            count,
            examples,
            false,
        ));
    }
    for (offset, check) in drift_checks.into_iter().enumerate() {
        let position = index + offset;
        if let Some(existing) = report.checks.iter().position(|known| known.id == check.id) {
            report.checks[existing] = check;
        } else {
            report.checks.insert(position, check);
        }
    }
    report.drift = Some(measures);
    report.verdict = Report::verdict_of(&report.checks);
}

/// Indexes every record of the eval files by its 13-grams.
fn load_eval_set(patterns: &[String]) -> Result<EvalIndex> {
    let files = discover(patterns)?;
    let mut index = EvalIndex::default();
    for file in &files {
        let mut batches = Vec::new();
        let hasher = FileHasher::default();
        read_file(
            file,
            |batch, _| batches.push(batch),
            &mut || None,
            &hasher,
            mapping_allowed(),
        )?;
        for batch in batches {
            let records: Vec<(Origin, std::result::Result<Value, String>)> = match batch {
                Batch::Lines {
                    bytes,
                    first_line,
                    text,
                    ..
                } => (first_line..)
                    .zip(bytes.split(|&byte| byte == b'\n'))
                    .filter(|(_, line)| !line.trim_ascii().is_empty())
                    .map(|(line_number, line)| {
                        let origin = Origin {
                            ordinal: line_number,
                            byte: None,
                            is_line: true,
                        };
                        let value = if text {
                            Ok(serde_json::json!({ "text": String::from_utf8_lossy(line) }))
                        } else {
                            serde_json::from_slice::<Value>(line).map_err(|error| error.to_string())
                        };
                        (origin, value)
                    })
                    .collect(),
                Batch::Records(records) => records
                    .into_iter()
                    .map(|(origin, _, value)| (origin, value))
                    .collect(),
            };
            for (origin, value) in records {
                let place = if origin.is_line {
                    format!("{}:{}", file.display, origin.ordinal)
                } else {
                    format!("{}#{}", file.display, origin.ordinal)
                };
                // An eval item that cannot be read cannot be looked for in
                // the data: passing over it would pass the check unseen.
                let value = value.map_err(|reason| Error::EvalSet {
                    path: file.path.clone(),
                    reason: format!(
                        "{place}: {}; an item gantry cannot read cannot be checked for contamination",
                        crate::scan::sanitize_message(&reason)
                    ),
                })?;
                index.add(place, &eval_texts(&value));
            }
        }
    }
    if index.is_empty() {
        return Err(Error::EvalSet {
            path: files
                .first()
                .map(|file| file.path.clone())
                .unwrap_or_default(),
            reason: format!(
                "no item in {} has text to look for in the data (messages, prompt, question or any string)",
                files
                    .iter()
                    .map(|file| file.display.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    index.seal();
    Ok(index)
}

/// An inspection of a custom record: every string is a text, named by its JSON pointer.
fn inspect_leaves(value: &Value) -> crate::formats::Inspection<'_> {
    fn walk<'a>(
        value: &'a Value,
        path: &mut String,
        inspection: &mut crate::formats::Inspection<'a>,
    ) {
        match value {
            Value::String(text) => {
                if text.trim().is_empty() {
                    inspection.empty_fields.push(path.clone());
                }
                inspection.texts.push((path.clone().into(), text));
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let length = path.len();
                    path.push_str(&format!("/{index}"));
                    walk(item, path, inspection);
                    path.truncate(length);
                }
            }
            Value::Object(object) => {
                for (key, item) in object {
                    let length = path.len();
                    path.push('/');
                    // Paths are quoted in findings: a key that does not look
                    // like a name is not.
                    path.push_str(if crate::scan::is_safe_to_quote(key) {
                        key
                    } else {
                        "…"
                    });
                    walk(item, path, inspection);
                    path.truncate(length);
                }
            }
            _ => {}
        }
    }
    let mut inspection = crate::formats::Inspection::default();
    walk(value, &mut String::new(), &mut inspection);
    inspection
}

/// Every string in a JSON value, in document order.
/// The prompt side of an eval item: what a model is asked, which is what
/// leaks when it appears in training data. Chat items give their user turns;
/// harness-style items their prompt field; anything else every string leaf.
/// Ids, task names, answers and choices are left out: they are not the item's
/// text, and their words would keep it from ever matching.
fn eval_texts(value: &Value) -> Vec<&str> {
    const PROMPT_KEYS: [&str; 8] = [
        "prompt",
        "question",
        "instruction",
        "input",
        "query",
        "problem",
        "context",
        "text",
    ];
    let mut texts = Vec::new();
    for (list, role_key, content_key, roles) in [
        ("messages", "role", "content", &["user"][..]),
        ("conversations", "from", "value", &["human", "user"][..]),
    ] {
        if let Some(turns) = value.get(list).and_then(Value::as_array) {
            texts.extend(
                turns
                    .iter()
                    .filter(|turn| {
                        turn.get(role_key)
                            .and_then(Value::as_str)
                            .is_some_and(|role| roles.contains(&role))
                    })
                    .filter_map(|turn| turn.get(content_key).and_then(Value::as_str)),
            );
        }
    }
    if texts.is_empty()
        && let Some(object) = value.as_object()
    {
        texts.extend(
            PROMPT_KEYS
                .iter()
                .filter_map(|key| object.get(*key).and_then(Value::as_str)),
        );
    }
    if texts.is_empty() {
        string_leaves(value, &mut texts);
    }
    texts
}

fn string_leaves<'a>(value: &'a Value, texts: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => texts.push(text),
        Value::Array(items) => items.iter().for_each(|item| string_leaves(item, texts)),
        Value::Object(object) => object
            .iter()
            .filter(|(key, _)| {
                !matches!(
                    key.as_str(),
                    "id" | "role" | "type" | "from" | "tool_call_id"
                )
            })
            .for_each(|(_, item)| string_leaves(item, texts)),
        _ => {}
    }
}

/// Field paths seen, with array indices folded: `messages[].content`.
/// A role as summaries and reports name it: itself when it looks like a
/// name, else `(not shown)` (a credential pasted into a role must not become
/// a key of `summary.json`).
fn role_name(role: &str) -> &str {
    if crate::formats::CHAT_ROLES.contains(&role) || crate::scan::is_safe_to_quote(role) {
        role
    } else {
        "(not shown)"
    }
}

/// Keys of the known formats: never scanned, they are gantry's own words.
const KNOWN_KEYS: &[&str] = &[
    "messages",
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "function",
    "arguments",
    "id",
    "type",
    "weight",
    "refusal",
    "function_call",
    "conversations",
    "from",
    "value",
    "instruction",
    "input",
    "output",
    "system",
    "history",
    "prompt",
    "completion",
    "chosen",
    "rejected",
    "preferred_output",
    "non_preferred_output",
    "text",
    "image_url",
    "url",
];

/// Secrets and personal data in a record: in its texts, and in every other
/// string and key of `other` (a role, a tool call's arguments, a `name`, an
/// extra field, a key name), which findings must never quote raw either.
fn scan_sensitive(
    context: &FileContext<'_>,
    origin: Origin,
    texts: &[(crate::formats::Field, &str)],
    other: Option<&Value>,
    partial: &mut Partial,
) {
    // Every kind and place the record holds, so a finding names them all
    // (a token in a message and a key in an extra field are two problems);
    // the excerpt shows the first.
    let mut secret = Hits::default();
    let mut personal = Hits::default();
    let mut look = |text: &str, place: &dyn Fn() -> String, partial: &mut Partial| {
        for found in scan(text) {
            *partial
                .sensitive
                .entry(found.kind.as_str().to_owned())
                .or_insert(0) += 1;
            let hits = if found.kind.is_secret() {
                partial.found_secret(&text[found.value.clone()]);
                &mut secret
            } else {
                &mut personal
            };
            hits.add(found.kind, place, || excerpt(text, found.range.start, 80));
        }
    };
    for (field, text) in texts {
        look(text, &|| format!("`{field}`"), partial);
    }
    if let Some(value) = other {
        let mut addresses: Vec<usize> = texts
            .iter()
            .map(|(_, text)| text.as_ptr() as usize)
            .collect();
        addresses.sort_unstable();
        other_strings(value, &addresses, |text, place| look(text, place, partial));
    }
    if let Some((message, snippet)) = secret.finding() {
        partial.secrets.add(position_of(context, origin), || {
            context.example(origin, message, Some(snippet))
        });
    }
    if let Some((message, snippet)) = personal.finding() {
        partial.pii.add(position_of(context, origin), || {
            context.example(origin, message, Some(snippet))
        });
    }
}

/// The sensitive matches of one record, for its finding: each distinct
/// kind and place (the first few), and the first match's excerpt.
#[derive(Default)]
struct Hits {
    places: Vec<String>,
    more: usize,
    excerpt: Option<String>,
}

impl Hits {
    /// Places named in one finding; the rest are counted.
    const NAMED: usize = 4;

    fn add(
        &mut self,
        kind: crate::scan::SensitiveKind,
        place: &dyn Fn() -> String,
        excerpt: impl FnOnce() -> String,
    ) {
        if self.excerpt.is_none() {
            self.excerpt = Some(excerpt());
        }
        let named = format!("{} in {}", kind.as_str(), place());
        if self.places.contains(&named) {
            return;
        }
        if self.places.len() < Self::NAMED {
            self.places.push(named);
        } else {
            self.more += 1;
        }
    }

    /// The finding's message and excerpt, when anything was found.
    fn finding(self) -> Option<(String, String)> {
        let excerpt = self.excerpt?;
        let mut message = self.places.join("; ");
        if self.more > 0 {
            message.push_str(&format!(" (and {} more)", self.more));
        }
        Some((message, excerpt))
    }
}

/// Calls `visit` with every key and string of `value` that is not one of
/// the texts at `skip` (sorted addresses, already scanned) and could hold a
/// secret or personal data, with a way to name its place. The walk keeps
/// its own stack, and a place is named only when asked.
fn other_strings(value: &Value, skip: &[usize], mut visit: impl FnMut(&str, &dyn Fn() -> String)) {
    enum Segment<'a> {
        Root,
        Key(&'a str),
        Index(usize),
    }
    // (parent, segment): the places walked so far.
    let mut places: Vec<(usize, Segment<'_>)> = vec![(0, Segment::Root)];
    let name = |places: &[(usize, Segment<'_>)], mut at: usize, key: bool| -> String {
        let mut segments = Vec::new();
        while at != 0 {
            segments.push(at);
            at = places[at].0;
        }
        let mut path = String::new();
        for &index in segments.iter().rev() {
            match &places[index].1 {
                Segment::Key(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(if crate::scan::is_safe_to_quote(key) {
                        key
                    } else {
                        "…"
                    });
                }
                Segment::Index(index) => path.push_str(&format!("[{index}]")),
                Segment::Root => {}
            }
        }
        match (key, path.is_empty()) {
            (true, true) => "a key of the record".to_owned(),
            (true, false) => format!("a key of `{path}`"),
            (false, true) => "the record".to_owned(),
            (false, false) => format!("`{path}`"),
        }
    };
    const SHORTEST: usize = 6;
    let mut stack: Vec<(usize, &Value)> = vec![(0, value)];
    while let Some((place, value)) = stack.pop() {
        match value {
            Value::String(text)
                if text.len() >= SHORTEST
                    && skip.binary_search(&(text.as_ptr() as usize)).is_err() =>
            {
                visit(text, &|| name(&places, place, false));
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate().rev() {
                    places.push((place, Segment::Index(index)));
                    stack.push((places.len() - 1, item));
                }
            }
            Value::Object(object) => {
                for (key, item) in object.iter().rev() {
                    if key.len() >= SHORTEST && !KNOWN_KEYS.contains(&key.as_str()) {
                        visit(key, &|| name(&places, place, true));
                    }
                    places.push((place, Segment::Key(key)));
                    stack.push((places.len() - 1, item));
                }
            }
            Value::Number(number) if !number.is_f64() => {
                let digits = number.to_string();
                if digits.len() >= SHORTEST {
                    visit(&digits, &|| name(&places, place, false));
                }
            }
            _ => {}
        }
    }
}

fn collect_fields(value: &Value, partial: &mut Partial) {
    let Some(object) = value.as_object() else {
        return;
    };
    // Nearly every record has the fields seen before: look before allocating.
    let mut nested = String::new();
    for (key, child) in object {
        if partial.fields.len() > 256 {
            return;
        }
        if !partial.fields.contains(key.as_str()) {
            partial.fields.insert(key.clone());
        }
        if let Some(items) = child.as_array() {
            for item in items.iter().take(4) {
                if let Some(item) = item.as_object() {
                    for item_key in item.keys() {
                        nested.clear();
                        nested.push_str(key);
                        nested.push_str("[].");
                        nested.push_str(item_key);
                        if !partial.fields.contains(nested.as_str()) {
                            partial.fields.insert(nested.clone());
                        }
                    }
                }
            }
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "assembles the report from the engine's parts"
)]
fn build_report(
    options: &ValidateOptions,
    files: &[DataFile],
    format: Option<RecordFormat>,
    tokenizer: &str,
    mut total: Partial,
    file_reports: Vec<FileReport>,
    lock: &DataLock,
    lock_changes: Option<crate::lock::LockDiff>,
    eval_items: Option<&[crate::contamination::EvalItem]>,
) -> Report {
    let describe = |id: &str| {
        CHECKS
            .iter()
            .find(|(known, _)| *known == id)
            .map_or("", |(_, description)| *description)
    };
    let records = total.records;
    let rate = |count: u64| {
        if records == 0 {
            0.0
        } else {
            count as f64 / records as f64
        }
    };
    let policy = &options.policy;
    let score = |id: &'static str,
                 unit: &'static str,
                 value: f64,
                 count: u64,
                 examples: Vec<Example>,
                 lower_is_worse: bool| {
        CheckResult::scored(
            id,
            describe(id),
            unit,
            policy.check(id),
            value,
            count,
            examples,
            lower_is_worse,
        )
    };
    let duplicates = |map: &Occurrences| {
        map.values()
            .map(|occurrence| occurrence.count - 1)
            .sum::<u64>()
    };
    let cluster_examples = |map: &Occurrences, kind: &str| -> Vec<Example> {
        let mut clusters: Vec<&Occurrence> = map
            .values()
            .filter(|occurrence| occurrence.count > 1)
            .collect();
        clusters.sort_by_key(|occurrence| occurrence.first);
        clusters
            .iter()
            .flat_map(|occurrence| {
                occurrence
                    .others
                    .iter()
                    .map(move |other| (*other, occurrence.first))
            })
            .take(MAX_EXAMPLES)
            .map(|(position, first)| {
                example_at(
                    files,
                    position,
                    format!("{kind} duplicate of {}", place(files, first)),
                )
            })
            .collect()
    };
    let (exact, normalized) = rayon::join(
        || occurrences(std::mem::take(&mut total.exact)),
        || occurrences(std::mem::take(&mut total.normalized)),
    );
    let n_exact = duplicates(&exact);
    let n_normalized = duplicates(&normalized);
    let mut checks = vec![
        score(
            "parse",
            "count",
            total.parse.count as f64,
            total.parse.count,
            total.parse.clone().into_examples(),
            false,
        ),
        score(
            "schema",
            "count",
            total.schema.count as f64,
            total.schema.count,
            total.schema.clone().into_examples(),
            false,
        ),
        score(
            "empty-content",
            "rate",
            rate(total.empty.count),
            total.empty.count,
            total.empty.clone().into_examples(),
            false,
        ),
    ];
    checks.push(match options.max_tokens {
        Some(_) => score(
            "max-tokens",
            "count",
            total.over_tokens.count as f64,
            total.over_tokens.count,
            total.over_tokens.clone().into_examples(),
            false,
        ),
        None => CheckResult::skipped(
            "max-tokens",
            describe("max-tokens"),
            "count",
            "pass --max-tokens to check record lengths against a model's limit".to_owned(),
        ),
    });
    checks.push(score(
        "exact-duplicates",
        "rate",
        rate(n_exact),
        n_exact,
        cluster_examples(&exact, "exact"),
        false,
    ));
    checks.push(score(
        "normalized-duplicates",
        "rate",
        rate(n_normalized),
        n_normalized,
        cluster_examples(&normalized, "normalized"),
        false,
    ));
    // Near duplicates: records in a MinHash cluster after its first member.
    let (positions, signatures): (Vec<Position>, Vec<&Signature>) = total
        .near
        .iter()
        .map(|(position, signature)| (*position, signature))
        .unzip();
    let near_groups = near_clusters(&signatures);
    let n_near: u64 = near_groups.iter().map(|group| group.len() as u64 - 1).sum();
    let near_examples: Vec<Example> = near_groups
        .iter()
        .flat_map(|group| group[1..].iter().map(move |&member| (group[0], member)))
        .take(MAX_EXAMPLES)
        .map(|(first, member)| {
            example_at(
                files,
                positions[member],
                format!(
                    "near duplicate of {} (estimated Jaccard {:.2})",
                    place(files, positions[first]),
                    estimated_jaccard(signatures[first], signatures[member])
                ),
            )
        })
        .collect();
    checks.push(score(
        "near-duplicates",
        "rate",
        rate(n_near),
        n_near,
        near_examples,
        false,
    ));
    checks.push(score(
        "secrets",
        "count",
        total.secrets.count as f64,
        total.secrets.count,
        total.secrets.clone().into_examples(),
        false,
    ));
    checks.push(score(
        "pii",
        "rate",
        rate(total.pii.count),
        total.pii.count,
        total.pii.clone().into_examples(),
        false,
    ));
    match eval_items {
        Some(eval_items) => {
            let mut hits: Vec<(u32, f64, Position)> = total
                .contamination
                .iter()
                .map(|(item, (ngrams, first))| {
                    (
                        *item,
                        ngrams.len() as f64 / f64::from(eval_items[*item as usize].n_ngrams.max(1)),
                        *first,
                    )
                })
                .collect();
            hits.sort_by(|left, right| right.1.total_cmp(&left.1).then(left.0.cmp(&right.0)));
            let examples = |minimum: f64| -> Vec<Example> {
                hits.iter()
                    .filter(|(_, coverage, _)| *coverage >= minimum)
                    .take(MAX_EXAMPLES)
                    .map(|(item, coverage, first)| {
                        let item = &eval_items[*item as usize];
                        let what = if item.short {
                            "the whole item (under 13 words)".to_owned()
                        } else {
                            format!(
                                "{:.0}% of its {} distinct 13-grams",
                                coverage * 100.0,
                                item.n_ngrams
                            )
                        };
                        let (file, line) = item
                            .place
                            .rsplit_once(':')
                            .map_or((item.place.clone(), None), |(file, line)| {
                                (file.to_owned(), line.parse().ok())
                            });
                        Example {
                            file,
                            line,
                            byte: None,
                            record: None,
                            message: format!(
                                "eval item {}: {what} found in training data, first at {}",
                                item.place,
                                place(files, *first)
                            ),
                            excerpt: None,
                        }
                    })
                    .collect()
            };
            let heavy = hits
                .iter()
                .filter(|(_, coverage, _)| *coverage >= 0.5)
                .count() as u64;
            let any = hits.len() as u64;
            checks.push(score(
                "contamination",
                "count",
                heavy as f64,
                heavy,
                examples(0.5),
                false,
            ));
            checks.push(score(
                "contamination-partial",
                "count",
                any as f64,
                any,
                examples(0.0),
                false,
            ));
        }
        None => {
            for id in ["contamination", "contamination-partial"] {
                checks.push(CheckResult::skipped(
                    id,
                    describe(id),
                    "count",
                    "pass --eval-set to check eval items against the training data".to_owned(),
                ));
            }
        }
    }
    // Outliers: records beyond the median plus five median absolute deviations.
    let mut outlier_rate: f64 = 0.0;
    let mut outlier_count = 0;
    let mut outlier_examples = Vec::new();
    for (name, histogram, largest) in [
        ("characters", &total.characters, &total.largest[0]),
        ("tokens", &total.tokens, &total.largest[1]),
        ("turns", &total.turns, &total.largest[2]),
    ] {
        let median = histogram.quantile(0.5);
        // A floor on the spread (a tenth of the median, at least 1) keeps
        // near-constant distributions, where the MAD is 0, from flagging
        // every record one above the median.
        let spread = histogram.mad().max(median / 10).max(1);
        let threshold = median + 5 * spread;
        let above = histogram.count_above(threshold);
        if rate(above) > outlier_rate {
            outlier_rate = rate(above);
            outlier_count = above;
        }
        let mut largest = largest.clone();
        keep_largest(&mut largest);
        for (value, position) in largest
            .into_iter()
            .filter(|(value, _)| *value > threshold)
            .take(5)
        {
            outlier_examples.push(example_at(
                files,
                position,
                format!(
                    "{value} {name}, beyond the median {median} + 5 × {spread} (MAD) = {threshold}"
                ),
            ));
        }
    }
    checks.push(score(
        "outliers",
        "rate",
        outlier_rate,
        outlier_count,
        outlier_examples,
        false,
    ));
    if options.reference.is_none() {
        for id in ["drift-psi", "drift-js", "drift-wasserstein"] {
            checks.push(CheckResult::skipped(
                id,
                describe(id),
                "effect size",
                "pass --reference (a summary.json or earlier data) to measure drift".to_owned(),
            ));
        }
    }
    checks.push(score(
        "min-records",
        "count",
        records as f64,
        records,
        Vec::new(),
        true,
    ));

    let mut duplicate_clusters = Vec::new();
    for (kind, map) in [("exact", &exact), ("normalized", &normalized)] {
        let mut clusters: Vec<&Occurrence> = map
            .values()
            .filter(|occurrence| occurrence.count > 1)
            .collect();
        clusters.sort_by_key(|occurrence| (std::cmp::Reverse(occurrence.count), occurrence.first));
        duplicate_clusters.extend(clusters.into_iter().take(MAX_CLUSTERS).map(|occurrence| {
            DuplicateCluster {
                kind,
                size: occurrence.count,
                members: std::iter::once(occurrence.first)
                    .chain(occurrence.others.iter().copied())
                    .map(|position| place(files, position))
                    .collect(),
            }
        }));
    }
    let mut near_sorted: Vec<&Vec<usize>> = near_groups.iter().collect();
    near_sorted.sort_by_key(|group| (std::cmp::Reverse(group.len()), group[0]));
    duplicate_clusters.extend(near_sorted.into_iter().take(MAX_CLUSTERS).map(|group| {
        DuplicateCluster {
            kind: "near",
            size: group.len() as u64,
            members: group
                .iter()
                .take(MAX_CLUSTER_MEMBERS)
                .map(|&member| place(files, positions[member]))
                .collect(),
        }
    }));
    let distribution = |histogram: &LogHistogram| Distribution {
        min: histogram.min,
        p50: histogram.quantile(0.5),
        p90: histogram.quantile(0.9),
        p99: histogram.quantile(0.99),
        max: histogram.max,
        mean: histogram.mean(),
    };
    Report {
        version: REPORT_VERSION,
        verdict: Report::verdict_of(&checks),
        format,
        tokenizer: tokenizer.to_owned(),
        records,
        dataset_digest: lock.dataset_digest,
        files: file_reports,
        characters: distribution(&total.characters),
        tokens: distribution(&total.tokens),
        turns: distribution(&total.turns),
        roles: total.roles,
        conversations_without: [
            ("system".to_owned(), total.without_system),
            ("user".to_owned(), total.without_user),
        ]
        .into_iter()
        .filter(|_| format.is_some_and(RecordFormat::is_conversation))
        .collect(),
        sensitive: total
            .sensitive
            .into_iter()
            .map(|(kind, count)| (kind.to_owned(), count))
            .collect(),
        checks,
        duplicate_clusters,
        drift: None,
        lock_changes,
    }
}

/// An example pointing at the record at `position`: a line, or for JSON
/// arrays and Parquet files, a record index.
fn example_at(files: &[DataFile], position: Position, message: String) -> Example {
    let file = &files[position.0 as usize];
    let by_record = matches!(file.kind, FileKind::Json | FileKind::Parquet);
    Example {
        file: file.display.clone(),
        line: (!by_record).then_some(position.1),
        byte: None,
        record: by_record.then_some(position.1),
        message,
        excerpt: None,
    }
}

fn place(files: &[DataFile], position: Position) -> String {
    let file = &files[position.0 as usize];
    match file.kind {
        FileKind::Json | FileKind::Parquet => format!("{}#{}", file.display, position.1),
        _ => format!("{}:{}", file.display, position.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line a reader hands out: (line number, byte offset, the line or
    /// the error for it), with the file's digest and size.
    #[allow(clippy::type_complexity)]
    fn lines_of(
        file: &DataFile,
        map: bool,
    ) -> (
        Vec<(u64, Option<u64>, std::result::Result<Vec<u8>, String>)>,
        Digest,
        u64,
    ) {
        let mut seen = Vec::new();
        let hasher = FileHasher::default();
        let (digest, size) = read_file(
            file,
            |batch, _| match batch {
                Batch::Lines {
                    bytes,
                    first_line,
                    first_byte,
                    ..
                } => {
                    let mut byte = first_byte;
                    for (line_number, line) in (first_line..).zip(lines(&bytes)) {
                        seen.push((line_number, Some(byte), Ok(line.to_vec())));
                        byte += line.len() as u64;
                    }
                }
                Batch::Records(records) => {
                    for (origin, _, value) in records {
                        let value = value.map(|value| value.to_string().into_bytes());
                        seen.push((origin.ordinal, origin.byte, value));
                    }
                }
            },
            &mut || None,
            &hasher,
            map,
        )
        .expect("read");
        (seen, digest.unwrap_or_else(|| hasher.finish()), size)
    }

    #[test]
    fn mapped_and_read_files_give_the_same_lines_and_digest() {
        use std::io::Write as _;
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("mixed.jsonl");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let mut write = |bytes: &[u8]| file.write_all(bytes).expect("write");
        for index in 0..3000 {
            write(format!("{{\"text\": \"line {index}\"}}\n").as_bytes());
            if index % 700 == 0 {
                write(b"\r\n\n{\"text\": \"crlf\"}\r\n");
            }
        }
        // Longer than a mapped window (it gets a larger one) and than a chunk.
        for size in [20 << 20, 5 << 20] {
            write(b"{\"text\": \"");
            write(&vec![b'y'; size]);
            write(b"\"}\n");
        }
        write(b"{\"text\": \"between\"}\n");
        // Over the limit per record: reported and skipped on both paths.
        write(&vec![b'x'; MAX_RECORD_BYTES + (3 << 20)]);
        write(b"\n{\"text\": \"after\"}\n{\"text\": \"no line break at the end\"}");
        drop(file);
        let data = DataFile {
            path: path.clone(),
            display: "mixed.jsonl".to_owned(),
            kind: FileKind::Jsonl,
            compression: crate::source::Compression::None,
        };
        let mapped = lines_of(&data, true);
        let read = lines_of(&data, false);
        assert_eq!(mapped.0.len(), 3000 + 5 * 3 + 6);
        assert!(mapped.0 == read.0, "the two readers disagree on the lines");
        assert_eq!((mapped.1, mapped.2), (read.1, read.2));
        let on_disk = std::fs::read(&path).expect("read");
        assert_eq!(mapped.1, Digest::of_bytes(&on_disk));
        assert_eq!(mapped.2, on_disk.len() as u64);
        let oversized = mapped
            .0
            .iter()
            .find_map(|(line, _, value)| value.as_ref().err().map(|error| (*line, error.clone())))
            .expect("the long line is reported");
        assert_eq!(
            oversized,
            (
                3000 + 5 * 3 + 4,
                format!(
                    "record is {} bytes, over the 64 MiB limit per record; skipped",
                    MAX_RECORD_BYTES + (3 << 20) + 1
                )
            )
        );
    }

    /// JSON-ish text: real records, their prefixes, and bytes that are not JSON.
    fn json_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<u64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::json!(f)),
            ".*".prop_map(serde_json::Value::String),
        ];
        let value = leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        });
        prop_oneof![
            value.clone().prop_map(|value| value.to_string()),
            (value, 0.0..1.0f64).prop_map(|(value, cut)| {
                let text = value.to_string();
                let mut end = (text.len() as f64 * cut) as usize;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text[..end].to_owned()
            }),
            ".{0,40}",
            r#"\{"messages":\[\{"role":"(user|assistant)","content":"[^"\\]{0,20}"\}\]\}[ ,}\]]{0,3}"#,
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        /// Lines split as `split_inclusive` splits them.
        #[test]
        fn lines_split_like_the_standard_library(bytes in proptest::collection::vec(proptest::prop_oneof![proptest::prelude::Just(b'\n'), proptest::prelude::Just(b'a'), proptest::prelude::Just(b'\r')], 0..64)) {
            let expected: Vec<&[u8]> = bytes.split_inclusive(|&byte| byte == b'\n').collect();
            proptest::prop_assert_eq!(lines(&bytes).collect::<Vec<_>>(), expected);
        }

        /// The SIMD parser accepts exactly what serde_json accepts, with the same value.
        #[test]
        fn records_parse_as_serde_json_parses_them(text in json_like()) {
            let reference = serde_json::from_str::<Value>(&text);
            // Lines are parsed from bytes first; it must accept what serde_json accepts.
            let from_bytes = sonic_rs::from_slice::<Value>(text.as_bytes()).ok();
            proptest::prop_assert_eq!(&from_bytes, &reference.as_ref().ok().cloned());
            match (parse_json(&text), reference) {
                (Ok(fast), Ok(reference)) => proptest::prop_assert_eq!(fast, reference),
                (Err((message, _)), Err(error)) => {
                    proptest::prop_assert_eq!(
                        message,
                        format!("not valid JSON: {}", crate::scan::sanitize_message(&error.to_string()))
                    );
                }
                (fast, reference) => proptest::prop_assert!(
                    false,
                    "{text:?}: fast parser {fast:?}, serde_json {reference:?}"
                ),
            }
        }
    }
}
