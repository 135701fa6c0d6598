//! Property tests of the record readers and format rules: arbitrary input
//! never panics, and every non-blank line is accounted for exactly once.

use gantry_data::{CheckStatus, Policy, RecordFormat, ValidateOptions, inspect, validate};
use proptest::prelude::*;

fn options(path: &std::path::Path) -> ValidateOptions {
    ValidateOptions {
        data: vec![path.display().to_string()],
        format: None,
        tokenizer: "chars".to_owned(),
        max_tokens: Some(50),
        previous_lock: None,
        eval_set: Vec::new(),
        reference: None,
        schema: None,
        policy: Policy::default(),
        map_files: true,
    }
}

/// JSON-ish lines: fragments of chat records, broken and whole.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>().prop_filter("no newline or NUL", |bytes| !bytes.contains(&b'\n') && !bytes.contains(&0)),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        ("[a-z ]{0,30}", "[a-z ]{0,30}", prop::sample::select(vec!["user", "assistant", "system", "tool", "bot"])).prop_map(|(user, answer, role)| {
            serde_json::json!({"messages": [{"role": "user", "content": user}, {"role": role, "content": answer}]}).to_string().into_bytes()
        }),
        Just(br#"{"messages": [{"role": "user", "content": "cut"#.to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_jsonl_is_read_without_panics_and_every_line_counted(lines in prop::collection::vec(line(), 0..40)) {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("data.jsonl");
        let mut bytes = Vec::new();
        for line in &lines {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        std::fs::write(&path, &bytes).expect("write");
        let validation = validate(&options(&path)).expect("a text file is always readable");
        let non_blank = lines.iter().filter(|line| !line.trim_ascii().is_empty()).count() as u64;
        prop_assert_eq!(validation.report.records, non_blank);
        prop_assert_eq!(validation.lock.files[0].size, bytes.len() as u64);
        let parse = validation.report.checks.iter().find(|check| check.id == "parse").expect("parse check");
        prop_assert!(parse.count <= non_blank);
        prop_assert!(parse.status != CheckStatus::Skipped);
    }

    #[test]
    fn format_rules_never_panic_on_arbitrary_json(value in arbitrary_json()) {
        for format in [RecordFormat::OpenaiChat, RecordFormat::Sharegpt, RecordFormat::Alpaca, RecordFormat::PromptCompletion, RecordFormat::Preference, RecordFormat::Text] {
            let inspection = inspect(format, &value);
            // Every empty field is also a text field.
            for field in &inspection.empty_fields {
                prop_assert!(inspection.texts.iter().any(|(path, _)| path.to_string() == *field));
            }
        }
    }
}

fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z ]{0,12}".prop_map(serde_json::Value::from),
        prop::sample::select(vec!["user", "assistant", "system", "tool", "human", "gpt"])
            .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "messages",
                    "role",
                    "content",
                    "tool_calls",
                    "tool_call_id",
                    "id",
                    "function",
                    "name",
                    "weight",
                    "conversations",
                    "from",
                    "value",
                    "prompt",
                    "chosen",
                    "rejected",
                    "input",
                    "preferred_output",
                    "non_preferred_output",
                    "instruction",
                    "output",
                    "text",
                    "completion",
                    "type"
                ])
                .prop_map(str::to_owned),
                inner,
                0..6,
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

/// The file names (and so the readers) hostile bytes are fed to.
const HOSTILE_FILES: &[&str] = &[
    "data.jsonl",
    "data.json",
    "data.csv",
    "data.txt",
    "data.parquet",
    "data.jsonl.gz",
    "data.jsonl.zst",
];

proptest! {
    #![proptest_config(gantry_test::adversarial::config())]

    /// Every reader, every check: hostile bytes give a report or an error,
    /// never a panic or an abort (a stack overflow on deep nesting was one).
    #[test]
    fn hostile_data_is_a_finding_or_an_error(bytes in gantry_test::adversarial::bytes(), kind in prop::sample::select(HOSTILE_FILES)) {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join(kind);
        std::fs::write(&path, &bytes).expect("write");
        let mut options = options(&path);
        options.tokenizer = "o200k_base".to_owned();
        options.eval_set = vec![path.display().to_string()];
        if let Ok(validation) = validate(&options) {
            prop_assert!(validation.report.records <= bytes.len() as u64 + 1);
        }
    }

    /// Policies, previous locks, reference summaries and shard files are
    /// read from files too: the same bytes give a value or an error.
    #[test]
    fn hostile_side_files_are_errors(bytes in gantry_test::adversarial::bytes()) {
        let directory = tempfile::tempdir().expect("tempdir");
        let side = directory.path().join("side.json");
        std::fs::write(&side, &bytes).expect("write");
        let _ = Policy::from_file(&side);
        let _ = gantry_data::DataLock::read(&side);
        let data = directory.path().join("data.jsonl");
        std::fs::write(&data, "{\"text\": \"hello there\"}\n").expect("write");
        let mut with_reference = options(&data);
        with_reference.reference = Some(side.display().to_string());
        let _ = validate(&with_reference);
        let mut with_lock = options(&data);
        with_lock.previous_lock = Some(side.clone());
        let _ = validate(&with_lock);
        let mut with_schema = options(&data);
        with_schema.schema = Some(side.clone());
        let _ = validate(&with_schema);
        let _ = gantry_data::merge_shards(&options(&data), &[side.display().to_string()]);
        // The same bytes behind a binary shard's magic and version, raw and
        // as a zstd stream: a refusal, never a panic or a huge allocation.
        for body in [bytes.clone(), zstd::encode_all(bytes.as_slice(), 1).expect("zstd")] {
            let mut shard = b"GANTRYSH".to_vec();
            shard.extend_from_slice(&gantry_data::SHARD_VERSION.to_le_bytes());
            shard.extend_from_slice(&body);
            std::fs::write(&side, &shard).expect("write");
            let _ = gantry_data::merge_shards(&options(&data), &[side.display().to_string()]);
        }
    }
}

#[test]
fn a_line_nested_past_any_stack_is_a_parse_finding() {
    let directory = tempfile::tempdir().expect("tempdir");
    for (name, line) in [
        (
            "arrays.jsonl",
            format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)),
        ),
        (
            "objects.jsonl",
            format!("{}1{}", "{\"a\":".repeat(20_000), "}".repeat(20_000)),
        ),
        (
            "in-a-record.jsonl",
            format!(
                "{{\"messages\": {}{}}}",
                "[".repeat(20_000),
                "]".repeat(20_000)
            ),
        ),
    ] {
        let path = directory.path().join(name);
        std::fs::write(&path, format!("{line}\n{{\"text\": \"fine\"}}\n")).expect("write");
        let validation = validate(&options(&path)).expect("validated");
        let parse = validation
            .report
            .checks
            .iter()
            .find(|check| check.id == "parse")
            .expect("parse check");
        assert_eq!(parse.count, 1, "{name}");
        assert!(
            parse.findings[0].message.contains("nested more than 128"),
            "{name}: {}",
            parse.findings[0].message
        );
        assert_eq!(validation.report.records, 2, "{name}");
    }
}

fn parquet_bytes() -> Vec<u8> {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    let schema = std::sync::Arc::new(
        parse_message_type("message schema { REQUIRED BYTE_ARRAY prompt (UTF8); REQUIRED BYTE_ARRAY completion (UTF8); }")
            .expect("schema"),
    );
    let mut bytes = Vec::new();
    let mut writer = SerializedFileWriter::new(
        &mut bytes,
        schema,
        std::sync::Arc::new(WriterProperties::builder().build()),
    )
    .expect("writer");
    let mut row_group = writer.next_row_group().expect("row group");
    while let Some(mut column) = row_group.next_column().expect("column") {
        let values: Vec<ByteArray> = (0..50)
            .map(|index| ByteArray::from(format!("value {index}").as_str()))
            .collect();
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .expect("write");
        column.close().expect("close column");
    }
    row_group.close().expect("close row group");
    writer.close().expect("close");
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..gantry_test::adversarial::config() })]

    /// A Parquet file with bytes overwritten anywhere (its footer and page
    /// headers are Thrift, decoded by the parquet crate): a finding or an
    /// error, never a panic.
    #[test]
    fn corrupt_parquet_is_a_finding_or_an_error(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = parquet_bytes();
        let length = bytes.len();
        for (index, byte) in edits {
            bytes[index.index(length)] = byte;
        }
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("data.parquet");
        std::fs::write(&path, &bytes).expect("write");
        let _ = validate(&options(&path));
    }
}

/// Chat records from a small vocabulary: many share text, some exactly, some
/// but for a word, so duplicates and near duplicates land in every shard and partition.
fn chat_records() -> impl Strategy<Value = Vec<String>> {
    let base = prop::collection::vec(
        prop::sample::select(vec![
            "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
        ]),
        12..40,
    );
    prop::collection::vec((base, 0_usize..4, any::<bool>()), 1..60).prop_map(|records| {
        let mut lines = Vec::new();
        for (words, copies, upper) in records {
            let text = words.join(" ");
            let line = |content: &str| serde_json::json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": content}]}).to_string();
            lines.push(line(&text));
            for copy in 0..copies {
                match copy {
                    0 => lines.push(line(&text)),
                    1 if upper => lines.push(line(&text.to_uppercase())),
                    _ => lines.push(line(&format!("{text} omega"))),
                }
            }
        }
        lines
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any split into N shards and P merge partitions reports exactly what one run does.
    #[test]
    fn any_split_into_shards_and_partitions_is_the_unsharded_run(lines in chat_records(), shards in 1_u32..5, partitions in 1_u32..5) {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("data.jsonl");
        // Every case holds a near-duplicate pair (one word apart) with
        // records between, so there is always a cluster to split.
        let anchor = "zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau";
        let pair = |text: &str| serde_json::json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": text}]}).to_string();
        let mut lines = lines;
        lines.insert(0, pair(anchor));
        lines.push(pair(&format!("{anchor} upsilon")));
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let options = options(&path);
        let whole = validate(&options).expect("whole");
        let near = whole.report.checks.iter().find(|check| check.id == "near-duplicates").expect("near check");
        prop_assert!(near.count >= 1, "no near duplicate to split");
        let mut shard_paths = Vec::new();
        for index in 1..=shards {
            let mut shard = gantry_data::validate_shard(&options, gantry_data::Shard { index, count: shards }).expect("shard");
            let shard_path = directory.path().join(format!("shard-{index}.shard"));
            std::fs::write(&shard_path, shard.encode(|_| {}).expect("encode")).expect("write");
            shard_paths.push(shard_path.display().to_string());
        }
        let mut parts = Vec::new();
        for index in 1..=partitions {
            let part = gantry_data::merge_partition(&shard_paths, gantry_data::Shard { index, count: partitions }).expect("partition");
            let part_path = directory.path().join(format!("part-{index}.json"));
            std::fs::write(&part_path, serde_json::to_vec(&part).expect("json")).expect("write");
            parts.push(part_path.display().to_string());
        }
        let combined = gantry_data::merge_partitions(&options, &shard_paths, &parts).expect("combine");
        prop_assert_eq!(serde_json::to_value(&combined.report).expect("json"), serde_json::to_value(&whole.report).expect("json"));
        prop_assert_eq!(combined.lock, whole.lock);
        let merged = gantry_data::merge_shards(&options, &shard_paths).expect("merge");
        prop_assert_eq!(serde_json::to_value(&merged.report).expect("json"), serde_json::to_value(&whole.report).expect("json"));
    }
}
