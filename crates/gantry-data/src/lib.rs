/*!
`validate-data`: fast, LLM-native checks of training data, and the data lock.

[`validate`] streams every file once — JSONL, JSON arrays, CSV and text,
optionally gzip or zstd compressed, and Parquet — in parallel chunks, checks each record
against its format (OpenAI chat, ShareGPT, Alpaca, prompt/completion,
preference pairs, text), counts tokens with real BPE tables, finds exact and
normalized duplicates, secrets and personal data, and returns a [`Report`]
whose every check carries its measured value beside its threshold, plus a
[`DataLock`] whose digest the rest of the pipeline carries as lineage.

```no_run
use gantry_data::{Policy, ValidateOptions, validate};

let validation = validate(&ValidateOptions {
    data: vec!["data/train.jsonl".into()],
    format: None,
    tokenizer: "o200k_base".into(),
    max_tokens: Some(16_385),
    previous_lock: None,
    eval_set: vec!["evals/mmlu.jsonl".into()],
    reference: Some("data/last-week/summary.json".into()),
    schema: None,
    policy: Policy::default(),
    map_files: true,
})?;
println!("{} {}", validation.report.verdict, validation.lock.dataset_digest);
# Ok::<(), gantry_data::Error>(())
```
*/

mod bpe;
mod contamination;
mod drift;
mod error;
mod formats;
mod histogram;
mod lock;
mod neardup;
mod nesting;
mod policy;
mod report;
mod scan;
mod source;
mod swar;
mod tokens;
mod validate;
mod words;

pub use crate::bpe::{Bpe, Encoding};
pub use crate::contamination::{EvalIndex, EvalItem, NGRAM_WORDS};
pub use crate::drift::{DriftMeasure, SUMMARY_VERSION, Summary, categorical_drift, numeric_drift};
pub use crate::error::{Error, Result};
pub use crate::formats::{Field, Inspection, Message, RecordFormat, inspect};
pub use crate::histogram::LogHistogram;
pub use crate::lock::{DataLock, LOCK_VERSION, LockDiff, LockedFile};
pub use crate::neardup::{
    BANDS, HASHES, JACCARD_THRESHOLD, MAX_LEADERS, ROWS, SHINGLE_WORDS, SIGNATURE_BYTES, Signature,
    bucket_links, clusters, estimated_jaccard, jaccard_of_bits, signature,
};
pub use crate::policy::{CheckId, CheckPolicy, Direction, Policy, Unit};
pub use crate::report::{
    CheckResult, CheckStatus, Distribution, DuplicateCluster, Example, FileReport, REPORT_VERSION,
    Report, Threshold,
};
pub use crate::scan::{
    SensitiveKind, SensitiveMatch, is_safe_to_quote, quoted, redact, sanitize_message, scan,
};
pub use crate::source::{Compression, DataFile, FileKind, discover};
pub use crate::tokens::Tokenizer;
pub use crate::validate::{
    PARTITION_VERSION, PartitionFile, Progress, SHARD_VERSION, Shard, ShardFile, ValidateOptions,
    Validation, merge_partition, merge_partitions, merge_shards, validate, validate_shard,
    validate_with_progress,
};

/// JSON Schemas of `report.json` and `data.lock`.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    let with_id = |name: &str, title: &str, schema: schemars::Schema| {
        let mut value = serde_json::to_value(schema).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "$id".to_owned(),
                serde_json::json!(format!("https://gantry.dev/schemas/{name}")),
            );
            object.insert("title".to_owned(), serde_json::json!(title));
        }
        value
    };
    vec![
        (
            "validate-data-report.schema.json",
            with_id(
                "validate-data-report.schema.json",
                "gantry validate-data report",
                schemars::schema_for!(Report),
            ),
        ),
        (
            "data-lock.schema.json",
            with_id(
                "data-lock.schema.json",
                "gantry data lock",
                schemars::schema_for!(DataLock),
            ),
        ),
        (
            "data-summary.schema.json",
            with_id(
                "data-summary.schema.json",
                "gantry data summary",
                schemars::schema_for!(Summary),
            ),
        ),
    ]
}
