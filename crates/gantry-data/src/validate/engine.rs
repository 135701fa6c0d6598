//! The engine: files read in order, chunks checked in parallel, partial results folded in chunk order.

use gantry_core::Digest;
use serde_json::Value;

use super::read::{Batch, FileHasher, Hashes, read_file};
use super::record::{FileContext, Partial, Shard, detect_in_batch, process_batch};
use super::report::{Duplicates, Gathered, add_drift, build_report};
use super::{Progress, ValidateOptions, Validation};
use crate::contamination::load_eval_set;
use crate::drift::{SUMMARY_VERSION, Summary, load_reference};
use crate::error::{Error, Result};
use crate::formats::RecordFormat;
use crate::lock::{DataLock, LockedFile};
use crate::policy::CheckId;
use crate::report::FileReport;
use crate::source::{DataFile, discover};
use crate::tokens::Tokenizer;

/// Everything one pass over the data found, before scoring.
pub(crate) struct Scan {
    pub(crate) files: Vec<DataFile>,
    pub(crate) format: Option<RecordFormat>,
    pub(crate) total: Partial,
    pub(crate) locked: Vec<ScannedFile>,
    pub(crate) eval_items: Option<Vec<crate::contamination::EvalItem>>,
}

/// One file as a pass over the data saw it. A shard job takes the SHA-256
/// only of the files that fall to it (file `i` to shard `i mod N + 1`), and
/// the xxh3-128 of every file it reads, so the merge can tell every shard
/// read the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScannedFile {
    pub(crate) path: String,
    pub(crate) size: u64,
    pub(crate) sha256: Option<Digest>,
    /// Hexadecimal.
    pub(crate) xxh3: Option<String>,
    pub(crate) records: u64,
}

/// The options every shard must share, as text.
pub(crate) fn settings_of(options: &ValidateOptions) -> String {
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
pub(crate) fn load_schema(path: &std::path::Path) -> Result<jsonschema::Validator> {
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

pub(crate) fn scan_data(
    options: &ValidateOptions,
    shard: Option<Shard>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Scan> {
    let files = discover(&options.data)?;
    let schema = options.schema.as_deref().map(load_schema).transpose()?;
    // The BPE tables, the secret rules and the eval index take tens of
    // milliseconds each, before any record can be checked: side by side.
    let scan_sensitive = options.policy.check(CheckId::Secrets).enabled
        || options.policy.check(CheckId::Pii).enabled;
    let (tokenizer, eval) = rayon::join(
        || {
            let (tokenizer, ()) = rayon::join(
                || Tokenizer::load(&options.tokenizer),
                || {
                    if scan_sensitive {
                        crate::scan::compile_rules();
                    }
                },
            );
            tokenizer
        },
        || {
            (!options.eval_set.is_empty())
                .then(|| load_eval_set(&options.eval_set, options.map_files))
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
        let file_hasher = FileHasher::new(match shard {
            None => Hashes::default(),
            Some(shard) => Hashes {
                sha256: shard.hashes_file(file_index),
                xxh3: true,
            },
        });
        let (digest, size) = std::thread::scope(
            |scope| -> Result<(Option<super::read::ContentDigest>, u64)> {
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
                        options.map_files,
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
                    scan_sensitive,
                    eval: eval.as_ref(),
                    near_duplicates: options.policy.check(CheckId::NearDuplicates).enabled,
                    normalized_duplicates: options
                        .policy
                        .check(CheckId::NormalizedDuplicates)
                        .enabled,
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
            },
        )?;
        let digest = digest.unwrap_or_else(|| file_hasher.finish());
        bytes_done += size;
        progress(Progress {
            bytes_read: bytes_done,
            bytes_total,
            records: total.records + file_total.records,
        });
        locked.push(ScannedFile {
            path: file.display.clone(),
            size,
            sha256: digest.sha256,
            xxh3: digest.xxh3.map(|xxh3| format!("{xxh3:032x}")),
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
pub(crate) fn finish(options: &ValidateOptions, scan: Scan) -> Result<Validation> {
    finish_with(options, scan, None)
}

/// [`finish`] with the duplicates a partitioned merge found.
pub(crate) fn finish_with(
    options: &ValidateOptions,
    scan: Scan,
    duplicates: Option<Duplicates>,
) -> Result<Validation> {
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
        .map(|reference| {
            // Data given as the reference is validated as the data is.
            load_reference(reference, &options.tokenizer, |data| {
                let reference_options = ValidateOptions {
                    data: vec![data.to_owned()],
                    reference: None,
                    eval_set: Vec::new(),
                    previous_lock: None,
                    ..options.clone()
                };
                Ok(super::validate(&reference_options)?.summary)
            })
        })
        .transpose()?;
    // A merge has every file's SHA-256 from the shard it fell to.
    let locked = locked
        .into_iter()
        .map(|file| match file.sha256 {
            Some(sha256) => Ok(LockedFile {
                path: file.path,
                size: file.size,
                sha256,
                records: file.records,
            }),
            None => Err(Error::Merge {
                reason: format!(
                    "no shard took the SHA-256 of {}: merge every shard of the run",
                    file.path
                ),
            }),
        })
        .collect::<Result<Vec<_>>>()?;
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
        Gathered {
            files: &files,
            format,
            total,
            file_reports,
            lock: &lock,
            lock_changes,
            eval_items: eval_items.as_deref(),
            duplicates,
        },
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
