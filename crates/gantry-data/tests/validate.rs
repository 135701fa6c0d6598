//! The engine on a seeded synthetic dataset with planted defects: every count is exact.

use std::io::Write as _;
use std::path::Path;

use gantry_core::{Digest, Verdict};
use gantry_data::{
    CheckStatus, Error, Policy, RecordFormat, Report, Shard, ValidateOptions, merge_partition,
    merge_partitions, merge_shards, validate, validate_shard,
};

/// A small deterministic generator (64-bit LCG), so the dataset is the same everywhere.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn word(&mut self) -> String {
        const SYLLABLES: [&str; 16] = [
            "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qua", "bri", "dor", "fen",
            "gal", "hur", "jin",
        ];
        (0..2 + self.next() % 3)
            .map(|_| SYLLABLES[(self.next() % 16) as usize])
            .collect()
    }

    fn sentence(&mut self, n_words: u64) -> String {
        (0..n_words)
            .map(|_| self.word())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn chat(user: &str, assistant: &str) -> String {
    serde_json::json!({"messages": [
        {"role": "system", "content": "You answer questions about the island of Veldra."},
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
    ]})
    .to_string()
}

/// Planted defects, and the counts validate-data must find.
struct Planted {
    lines: Vec<String>,
    records: u64,
}

fn dataset() -> Planted {
    let mut random = Seeded(42);
    let mut lines: Vec<String> = (0..500)
        .map(|index| {
            chat(
                &format!("Question {index}: {}?", random.sentence(8)),
                &random.sentence(12),
            )
        })
        .collect();
    // 7 exact duplicates of earlier lines.
    for index in [3, 50, 50, 120, 260, 261, 499] {
        lines.push(lines[index].clone());
    }
    // 4 records equal to earlier ones after normalization (case, punctuation, spacing).
    for index in [10, 11, 12, 13] {
        let value: serde_json::Value = serde_json::from_str(&lines[index]).expect("json");
        let user = value["messages"][1]["content"]
            .as_str()
            .expect("user")
            .to_uppercase()
            .replace('?', "!!");
        let assistant = format!(
            "  {}  ",
            value["messages"][2]["content"].as_str().expect("assistant")
        );
        lines.push(chat(&user, &assistant));
    }
    // 3 malformed lines.
    lines.push(r#"{"messages": [{"role": "user", "content": "cut off"#.to_owned());
    lines.push("not json at all".to_owned());
    lines.push(r#"{"messages": [}"#.to_owned());
    // 5 role-order errors: two user turns in a row.
    for index in 0..5 {
        lines.push(
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("first {index} {}", random.sentence(4))},
                {"role": "user", "content": "second"},
                {"role": "assistant", "content": random.sentence(5)},
            ]})
            .to_string(),
        );
    }
    // 2 secrets.
    lines.push(chat(
        &format!("my key is sk-proj-{}", "Zq9x".repeat(12)),
        "Never share API keys.",
    ));
    lines.push(chat(
        "deploy with AKIAIOSFODNN7EXAMPLE please",
        "Rotate that key now.",
    ));
    // 6 emails (personal data).
    for index in 0..6 {
        lines.push(chat(
            &format!(
                "mail person{index}@veldra-mail.com about {}",
                random.sentence(3)
            ),
            &random.sentence(6),
        ));
    }
    // 2 empty assistant answers (lines 527 and 528).
    lines.push(chat(&random.sentence(6), "   "));
    lines.push(chat(&random.sentence(6), ""));
    // 3 answers far over the token limit.
    for _ in 0..3 {
        lines.push(chat(&random.sentence(6), &random.sentence(400)));
    }
    // 2 near duplicates: long answers copied with one word changed (lines 535 and 536
    // copy 533 and 534), estimated Jaccard about 0.9.
    let originals: Vec<String> = (0..2).map(|_| random.sentence(120)).collect();
    for original in &originals {
        lines.push(chat("Tell me a long story about Veldra.", original));
    }
    for original in &originals {
        let mut words: Vec<&str> = original.split(' ').collect();
        words[60] = "changed";
        lines.push(chat("Tell me a long story about Veldra.", &words.join(" ")));
    }
    let records = lines.len() as u64;
    Planted { lines, records }
}

fn options(data: &[&Path]) -> ValidateOptions {
    ValidateOptions {
        data: data.iter().map(|path| path.display().to_string()).collect(),
        format: None,
        tokenizer: "cl100k_base".to_owned(),
        max_tokens: Some(300),
        previous_lock: None,
        eval_set: Vec::new(),
        reference: None,
        schema: None,
        policy: Policy::default(),
        map_files: true,
    }
}

fn check<'a>(report: &'a Report, id: &str) -> &'a gantry_data::CheckResult {
    report
        .checks
        .iter()
        .find(|check| check.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

fn write(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).expect("write dataset");
}

#[test]
fn planted_defects_are_counted_exactly() {
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("train.jsonl");
    let planted = dataset();
    write(&path, &planted.lines);
    let validation = validate(&options(&[&path])).expect("validate");
    let report = &validation.report;
    assert_eq!(report.records, planted.records);
    assert_eq!(report.format, Some(RecordFormat::OpenaiChat));
    let counts: Vec<(&str, u64, CheckStatus)> = report
        .checks
        .iter()
        .map(|check| (check.id.id(), check.count, check.status))
        .collect();
    assert_eq!(
        counts,
        [
            ("parse", 3, CheckStatus::Fail),
            ("schema", 5, CheckStatus::Fail),
            ("empty-content", 2, CheckStatus::Fail),
            (
                "max-tokens",
                check(report, "max-tokens").count,
                check(report, "max-tokens").status
            ),
            ("exact-duplicates", 7, CheckStatus::Warn),
            ("normalized-duplicates", 7 + 4, CheckStatus::Warn),
            // Exact and normalized copies are near duplicates too.
            ("near-duplicates", 7 + 4 + 2, CheckStatus::Pass),
            ("secrets", 2, CheckStatus::Fail),
            ("pii", 6, CheckStatus::Warn),
            ("contamination", 0, CheckStatus::Skipped),
            ("contamination-partial", 0, CheckStatus::Skipped),
            // The 3 long answers and the 4 long near-duplicate stories.
            ("outliers", 7, CheckStatus::Warn),
            ("drift-psi", 0, CheckStatus::Skipped),
            ("drift-js", 0, CheckStatus::Skipped),
            ("drift-wasserstein", 0, CheckStatus::Skipped),
            ("min-records", planted.records, CheckStatus::Pass),
        ]
    );
    assert_eq!(report.verdict, Verdict::Fail);

    // Locations are exact: the first malformed line is line 512 (500 + 7 + 4 + 1), at its first bad byte.
    let parse = &check(report, "parse").findings[0];
    assert_eq!(
        (parse.file.as_str(), parse.line),
        (path.to_str().expect("utf8"), Some(512))
    );
    assert!(
        parse
            .message
            .starts_with("not valid JSON: EOF while parsing"),
        "{}",
        parse.message
    );
    let schema = &check(report, "schema").findings[0];
    assert_eq!(schema.line, Some(515));
    assert_eq!(
        schema.message,
        "`messages[1]` is a second user message in a row; user and assistant turns alternate"
    );
    // Secrets never appear in the report, only their kind.
    let secrets = &check(report, "secrets").findings;
    assert_eq!(secrets[0].message, "openai-key in `messages[1].content`");
    let text = serde_json::to_string(report).expect("json");
    assert!(
        !text.contains("sk-proj-Zq9x") && !text.contains("AKIAIOSFODNN7EXAMPLE"),
        "a secret leaked into the report"
    );
    assert!(text.contains("[REDACTED openai-key]"));
    // The duplicate of line 51 appears twice, so its cluster has three members.
    let cluster = report
        .duplicate_clusters
        .iter()
        .find(|cluster| cluster.kind == "exact")
        .expect("cluster");
    assert_eq!(cluster.size, 3);
    assert_eq!(cluster.members[0], format!("{}:51", path.display()));
    let near: Vec<&gantry_data::Example> = check(report, "near-duplicates")
        .findings
        .iter()
        .filter(|example| example.line.is_some_and(|line| line > 534))
        .collect();
    assert_eq!(near.len(), 2, "{near:?}");
    assert!(
        near[0].message.starts_with(&format!(
            "near duplicate of {}:533 (estimated Jaccard 0.",
            path.display()
        )),
        "{}",
        near[0].message
    );
    assert_eq!(report.sensitive.get("email"), Some(&6));
    assert_eq!(report.roles.get("system"), Some(&(planted.records - 3 - 5)));

    // The lock hashes the bytes on disk.
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(validation.lock.files[0].sha256, Digest::of_bytes(&bytes));
    assert_eq!(validation.lock.files[0].size, bytes.len() as u64);
    assert_eq!(validation.lock.files[0].records, planted.records);
}

#[test]
fn compressed_copies_give_the_same_counts() {
    let directory = tempfile::tempdir().expect("tempdir");
    let planted = dataset();
    let plain = directory.path().join("plain/train.jsonl");
    std::fs::create_dir_all(plain.parent().expect("parent")).expect("mkdir");
    write(&plain, &planted.lines);
    let text = std::fs::read(&plain).expect("read");
    let gz = directory.path().join("train.jsonl.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).expect("create"),
        flate2::Compression::default(),
    );
    encoder.write_all(&text).expect("gzip");
    encoder.finish().expect("finish");
    let zst = directory.path().join("train.jsonl.zst");
    std::fs::write(&zst, zstd::encode_all(&text[..], 3).expect("zstd")).expect("write");
    let reference = validate(&options(&[&plain])).expect("plain");
    for path in [&gz, &zst] {
        let report = validate(&options(&[path])).expect("compressed").report;
        let counts = |report: &Report| {
            report
                .checks
                .iter()
                .map(|check| (check.id, check.count))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            counts(&report),
            counts(&reference.report),
            "{}",
            path.display()
        );
        assert_eq!(report.tokens, reference.report.tokens);
    }
}

#[test]
fn many_chunks_give_the_same_result_as_one() {
    // Over 4 MiB so the engine cuts several chunks and merges them.
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("big.jsonl");
    let planted = dataset();
    let mut lines = Vec::new();
    for round in 0..90 {
        for line in &planted.lines {
            lines.push(line.replace("Question ", &format!("Round {round} question ")));
        }
    }
    write(&path, &lines);
    assert!(std::fs::metadata(&path).expect("size").len() > 8 << 20);
    let mut fast = options(&[&path]);
    fast.tokenizer = "chars".to_owned();
    let report = validate(&fast).expect("validate").report;
    assert_eq!(report.records, 90 * planted.records);
    assert_eq!(check(&report, "parse").count, 90 * 3);
    assert_eq!(check(&report, "parse").findings[0].line, Some(512));
    assert_eq!(check(&report, "parse").findings[1].line, Some(513));
    // Every copy is counted, wherever the chunk boundaries fall.
    assert_eq!(check(&report, "secrets").count, 90 * 2);
    assert_eq!(check(&report, "pii").count, 90 * 6);
    assert_eq!(check(&report, "schema").count, 90 * 5);
    // Each round repeats 7 planted duplicates, and every line without a
    // round number (4 normalized copies, 5 role errors, 2 secrets, 6 emails,
    // 2 empty answers, 3 long answers, 4 near duplicates) repeats the first round's copy in the 89 rounds after it.
    assert_eq!(
        check(&report, "exact-duplicates").count,
        90 * 7 + 89 * (4 + 5 + 2 + 6 + 2 + 3 + 4)
    );
}

#[test]
fn unusable_input_is_an_error_naming_the_file() {
    let directory = tempfile::tempdir().expect("tempdir");
    let planted = dataset();
    let mut text = planted.lines.join("\n").into_bytes();
    text.push(b'\n');

    let truncated = directory.path().join("cut.jsonl.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&text).expect("gzip");
    let compressed = encoder.finish().expect("finish");
    std::fs::write(&truncated, &compressed[..compressed.len() / 2]).expect("write");
    let error = validate(&options(&[&truncated])).expect_err("truncated gzip");
    assert!(matches!(error, Error::Decompress { .. }), "{error}");
    assert!(
        error.to_string().starts_with(&format!(
            "{}: corrupt or truncated gzip data after",
            truncated.display()
        )),
        "{error}"
    );

    let binary = directory.path().join("weights.jsonl");
    std::fs::write(&binary, [0x93, b'N', b'U', b'M', b'P', b'Y', 0, 0, 1, 2]).expect("write");
    let error = validate(&options(&[&binary])).expect_err("binary");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: not a text file (NUL byte at byte 6); expected JSON Lines text",
            binary.display()
        )
    );

    let empty_directory = directory.path().join("nothing");
    std::fs::create_dir_all(&empty_directory).expect("mkdir");
    std::fs::write(empty_directory.join("README.md"), "# no data").expect("write");
    let error = validate(&options(&[&empty_directory])).expect_err("no data");
    assert!(
        error.to_string().contains("matched no data files"),
        "{error}"
    );
}

#[test]
fn awkward_files_become_findings_not_crashes() {
    let directory = tempfile::tempdir().expect("tempdir");
    let empty = directory.path().join("empty.jsonl");
    std::fs::write(&empty, "").expect("write");
    let report = validate(&options(&[&empty])).expect("empty file").report;
    assert_eq!(report.records, 0);
    assert_eq!(check(&report, "min-records").status, CheckStatus::Fail);
    assert_eq!(
        report.verdict,
        Verdict::Fail,
        "an empty dataset never passes silently"
    );

    let ragged = directory.path().join("pairs.csv");
    std::fs::write(
        &ragged,
        "prompt,completion\nhello,world\nonly one field\nbye,now\n",
    )
    .expect("write");
    let report = validate(&options(&[&ragged])).expect("csv").report;
    assert_eq!(report.format, Some(RecordFormat::PromptCompletion));
    assert_eq!(report.records, 3);
    let parse = check(&report, "parse");
    assert_eq!(parse.count, 1);
    assert_eq!(parse.findings[0].line, Some(3));
    assert_eq!(
        parse.findings[0].message,
        "row has 1 fields but the header has 2"
    );

    let invalid_utf8 = directory.path().join("latin1.jsonl");
    std::fs::write(
        &invalid_utf8,
        b"{\"text\": \"caf\xe9\"}\n{\"text\": \"ok\"}\n",
    )
    .expect("write");
    let report = validate(&options(&[&invalid_utf8])).expect("utf8").report;
    assert_eq!(
        check(&report, "parse").findings[0].message,
        "invalid UTF-8 at byte 13 of the line"
    );

    let huge = directory.path().join("huge.jsonl");
    let mut file = std::fs::File::create(&huge).expect("create");
    writeln!(file, "{{\"text\": \"before\"}}").expect("write");
    let chunk = vec![b'x'; 1 << 20];
    file.write_all(b"{\"text\": \"").expect("write");
    for _ in 0..65 {
        file.write_all(&chunk).expect("write");
    }
    file.write_all(b"\"}\n{\"text\": \"after\"}\n")
        .expect("write");
    drop(file);
    let report = validate(&options(&[&huge])).expect("huge line").report;
    assert_eq!(report.records, 3);
    let parse = check(&report, "parse");
    assert_eq!(parse.findings[0].line, Some(2));
    assert!(
        parse.findings[0]
            .message
            .contains("over the 64 MiB limit per record; skipped"),
        "{}",
        parse.findings[0].message
    );
}

#[test]
fn json_arrays_and_text_files_are_read() {
    let directory = tempfile::tempdir().expect("tempdir");
    let json = directory.path().join("alpaca.json");
    std::fs::write(&json, r#"[{"instruction": "add", "input": "1 2", "output": "3"}, {"instruction": "add", "output": 4}]"#).expect("write");
    let report = validate(&options(&[&json])).expect("json").report;
    assert_eq!(report.format, Some(RecordFormat::Alpaca));
    let schema = check(&report, "schema");
    assert_eq!(schema.count, 1);
    assert_eq!(
        (schema.findings[0].record, schema.findings[0].line),
        (Some(1), None)
    );

    let text = directory.path().join("corpus.txt");
    std::fs::write(&text, "one line\nanother line\none line\n").expect("write");
    let report = validate(&options(&[&text])).expect("text").report;
    assert_eq!(report.format, Some(RecordFormat::Text));
    assert_eq!(report.records, 3);
    assert_eq!(check(&report, "exact-duplicates").count, 1);
}

#[test]
fn previous_lock_lists_changes() {
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("train.jsonl");
    write(&path, &dataset().lines[..100]);
    let first = validate(&options(&[&path])).expect("first");
    let lock_path = directory.path().join("data.lock");
    std::fs::write(
        &lock_path,
        serde_json::to_string(&first.lock).expect("lock json"),
    )
    .expect("write lock");
    write(&path, &dataset().lines[..120]);
    let mut next_options = options(&[&path]);
    next_options.previous_lock = Some(lock_path);
    let next = validate(&next_options).expect("second");
    let changes = next.report.lock_changes.expect("changes");
    assert_eq!(changes.changed, [(path.display().to_string(), 100, 120)]);
    assert_ne!(next.lock.dataset_digest, first.lock.dataset_digest);
}

#[test]
fn contaminated_eval_items_are_reported_per_item() {
    let directory = tempfile::tempdir().expect("tempdir");
    let leaked = "Which of the following best describes the main function of the mitochondria in eukaryotic cells during aerobic respiration?";
    let half = "In the novel the lighthouse keeper counts the ships that pass the northern cape every night until the winter storms arrive and the harbour freezes over completely.";
    let mut lines = dataset().lines[..40].to_vec();
    lines.push(chat(
        &format!("Quiz time. {}", leaked.to_uppercase()),
        "The powerhouse: it makes ATP.",
    ));
    // Only the first half of `half` (its first 16 words) appears in training.
    let first_half: Vec<&str> = half.split(' ').take(16).collect();
    lines.push(chat(&first_half.join(" "), "A story."));
    lines.push(chat("Recite it: name the capital of Veldra", "Ostmark."));
    let train = directory.path().join("train.jsonl");
    write(&train, &lines);
    let eval = directory.path().join("eval.jsonl");
    let items = [
        serde_json::json!({"id": "q1", "question": leaked, "choices": ["ATP synthesis", "protein folding"], "answer": 0}),
        serde_json::json!({"id": "q2", "question": half, "answer": "storms"}),
        serde_json::json!({"id": "q3", "question": "Name the capital of Veldra."}),
        serde_json::json!({"id": "q4", "question": "An entirely different question about nothing that appears anywhere in the training records at all today."}),
    ];
    std::fs::write(
        &eval,
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("write eval");
    let mut with_eval = options(&[&train]);
    with_eval.eval_set = vec![eval.display().to_string()];
    let report = validate(&with_eval).expect("validate").report;
    let heavy = check(&report, "contamination");
    assert_eq!(
        (heavy.count, heavy.status),
        (2, CheckStatus::Fail),
        "{:?}",
        heavy.findings
    );
    let partial = check(&report, "contamination-partial");
    assert_eq!(
        (partial.count, partial.status),
        (3, CheckStatus::Warn),
        "{:?}",
        partial.findings
    );
    let messages: Vec<String> = partial
        .findings
        .iter()
        .map(|finding| {
            finding
                .message
                .replace(&format!("{}/", directory.path().display()), "")
        })
        .collect();
    // Sorted by coverage. Only the question is the item's text (not its id,
    // choices or answer): q1's 18 question words give 6 13-grams, all leaked;
    // q2's first 16 of 27 words give 4 of its 15.
    assert_eq!(
        messages,
        [
            "eval item eval.jsonl:1: 100% of its 6 distinct 13-grams found in training data, first at train.jsonl:41",
            "eval item eval.jsonl:3: the whole item (under 13 words) found in training data, first at train.jsonl:43",
            "eval item eval.jsonl:2: 27% of its 15 distinct 13-grams found in training data, first at train.jsonl:42",
        ]
    );
    assert_eq!(
        partial.findings[0].line,
        Some(1),
        "examples point at the eval item"
    );

    let without = validate(&options(&[&train])).expect("validate").report;
    assert_eq!(
        check(&without, "contamination").status,
        CheckStatus::Skipped
    );
}

#[test]
fn drift_against_a_reference_dataset_or_its_summary() {
    let directory = tempfile::tempdir().expect("tempdir");
    let mut random = Seeded(9);
    let write_set = |name: &str, answer_words: std::ops::Range<u64>, random: &mut Seeded| {
        let lines: Vec<String> = (0..400)
            .map(|index| {
                let n_words =
                    answer_words.start + random.next() % (answer_words.end - answer_words.start);
                chat(
                    &format!("Question {index} {}?", random.sentence(6)),
                    &random.sentence(n_words),
                )
            })
            .collect();
        let path = directory.path().join(name);
        write(&path, &lines);
        path
    };
    let last_week = write_set("last-week.jsonl", 10..40, &mut random);
    let this_week = write_set("this-week.jsonl", 10..40, &mut random);
    let drifted = write_set("drifted.jsonl", 80..160, &mut random);

    let mut calm_options = options(&[&this_week]);
    calm_options.reference = Some(last_week.display().to_string());
    let calm = validate(&calm_options).expect("calm");
    assert_eq!(
        check(&calm.report, "drift-psi").status,
        CheckStatus::Pass,
        "{:?}",
        calm.report.drift
    );
    assert!(check(&calm.report, "drift-psi").value < 0.1);

    let mut drift_options = options(&[&drifted]);
    drift_options.reference = Some(last_week.display().to_string());
    let moved = validate(&drift_options).expect("drifted");
    let psi = check(&moved.report, "drift-psi");
    assert_eq!(psi.status, CheckStatus::Fail, "{:?}", moved.report.drift);
    assert!(
        psi.findings
            .iter()
            .any(|finding| finding.message.starts_with("tokens: PSI ")),
        "{:?}",
        psi.findings
    );
    assert!(
        moved
            .report
            .drift
            .as_ref()
            .is_some_and(|drift| drift["roles"].psi < 0.01),
        "roles did not move"
    );

    // The reference's summary.json gives the same drift without re-reading its data.
    let reference = validate(&options(&[&last_week])).expect("reference");
    let summary_path = directory.path().join("summary.json");
    std::fs::write(
        &summary_path,
        serde_json::to_string(&reference.summary).expect("json"),
    )
    .expect("write");
    drift_options.reference = Some(summary_path.display().to_string());
    let from_summary = validate(&drift_options).expect("from summary");
    assert_eq!(from_summary.report.drift, moved.report.drift);

    // A summary made with another tokenizer is refused, naming both.
    drift_options.tokenizer = "chars".to_owned();
    let error = validate(&drift_options).expect_err("tokenizer mismatch");
    assert!(
        error
            .to_string()
            .contains("its token counts use cl100k_base, not chars; pass --tokenizer cl100k_base"),
        "{error}"
    );
}

#[test]
fn shards_merge_to_exactly_the_unsharded_result() {
    let directory = tempfile::tempdir().expect("tempdir");
    let planted = dataset();
    let train = directory.path().join("train.jsonl");
    write(&train, &planted.lines);
    // A second file repeating some lines of the first, so duplicates cross files and shards.
    let extra = directory.path().join("extra.jsonl");
    write(&extra, &planted.lines[..60]);
    let eval = directory.path().join("eval.jsonl");
    let first_question: serde_json::Value = serde_json::from_str(&planted.lines[0]).expect("json");
    std::fs::write(
        &eval,
        serde_json::json!({"question": first_question["messages"][1]["content"]}).to_string(),
    )
    .expect("write eval");
    let mut all = options(&[&train, &extra]);
    all.eval_set = vec![eval.display().to_string()];
    let whole = validate(&all).expect("unsharded");

    for count in [1_u32, 2, 3, 5] {
        let mut paths = Vec::new();
        for index in 1..=count {
            let mut shard = validate_shard(&all, Shard { index, count }).expect("shard");
            let path = directory
                .path()
                .join(format!("shard-{index}-of-{count}.shard"));
            std::fs::write(&path, shard.encode(|_| {}).expect("encode")).expect("write shard");
            paths.push(path.display().to_string());
        }
        let merged = merge_shards(&all, &paths).expect("merge");
        assert_eq!(
            serde_json::to_value(&merged.report).expect("json"),
            serde_json::to_value(&whole.report).expect("json"),
            "{count} shards"
        );
        assert_eq!(merged.lock, whole.lock, "{count} shards");
        assert_eq!(merged.summary, whole.summary, "{count} shards");
        // The partitioned merge: P partitions, then the final step.
        for partitions in [1_u32, 2, 4] {
            let mut parts = Vec::new();
            for index in 1..=partitions {
                let part = merge_partition(
                    &paths,
                    Shard {
                        index,
                        count: partitions,
                    },
                )
                .expect("partition");
                let path = directory
                    .path()
                    .join(format!("partition-{index}-of-{partitions}-{count}.json"));
                std::fs::write(&path, serde_json::to_vec(&part).expect("json")).expect("write");
                parts.push(path.display().to_string());
            }
            let combined = merge_partitions(&all, &paths, &parts).expect("combine");
            assert_eq!(
                serde_json::to_value(&combined.report).expect("json"),
                serde_json::to_value(&whole.report).expect("json"),
                "{count} shards, {partitions} partitions"
            );
            assert_eq!(combined.lock, whole.lock);
            assert_eq!(combined.summary, whole.summary);
            if partitions == 4 && count == 3 {
                // A partition missing is refused.
                let error = merge_partitions(&all, &paths, &parts[..3]).expect_err("missing");
                assert_eq!(
                    error.to_string(),
                    "expected partitions 1..=4 of 4 once each, got [1, 2, 3]"
                );
            }
        }
    }

    // A missing shard, or shards of different data, cannot merge.
    let mut one = validate_shard(&all, Shard { index: 1, count: 2 }).expect("shard");
    let lonely = directory.path().join("lonely.shard");
    std::fs::write(&lonely, one.encode(|_| {}).expect("encode")).expect("write");
    let error = merge_shards(&all, &[lonely.display().to_string()]).expect_err("missing shard");
    assert_eq!(
        error.to_string(),
        "expected shards 1..=2 of 2 once each, got [1]"
    );
    write(&train, &planted.lines[..100]);
    let mut other = validate_shard(&all, Shard { index: 2, count: 2 }).expect("shard");
    let stranger = directory.path().join("stranger.shard");
    std::fs::write(&stranger, other.encode(|_| {}).expect("encode")).expect("write");
    let error = merge_shards(
        &all,
        &[lonely.display().to_string(), stranger.display().to_string()],
    )
    .expect_err("different data");
    assert!(
        error.to_string().contains("disagree on the data files"),
        "{error}"
    );

    // Each file's SHA-256 is taken by one shard (file i by shard i mod N + 1:
    // `extra.jsonl` by shard 1, `train.jsonl` by shard 2), every file's xxh3
    // by every shard: a file changed between two shard jobs, to the same
    // size, is caught even where the second shard leaves its SHA-256 to the
    // first.
    write(&train, &planted.lines);
    let mut firsts = Vec::new();
    for index in 1..=2_u32 {
        let mut shard = validate_shard(&all, Shard { index, count: 2 }).expect("shard");
        let bytes = shard
            .encode(|header| {
                let locked = header["locked"].as_array().expect("locked files");
                assert_eq!(locked.len(), 2);
                for (file, locked) in locked.iter().enumerate() {
                    assert_eq!(
                        locked["sha256"].is_string(),
                        file as u32 % 2 == index - 1,
                        "shard {index}, file {file}: {locked}"
                    );
                    assert!(locked["xxh3"].is_string(), "{locked}");
                }
            })
            .expect("encode");
        let path = directory.path().join(format!("hashed-{index}.shard"));
        std::fs::write(&path, bytes).expect("write");
        firsts.push(path.display().to_string());
    }
    let merged = merge_shards(&all, &firsts).expect("merge");
    assert_eq!(
        merged.lock, whole.lock,
        "the lock assembled from two shards"
    );
    let original = std::fs::read_to_string(&extra).expect("read");
    let content = original.find("content").expect("a content") + "content".len();
    let at = content
        + original[content..]
            .find(|c: char| c.is_ascii_lowercase())
            .expect("a letter of the content");
    let mut changed = original.clone().into_bytes();
    changed[at] = if changed[at] == b'x' { b'y' } else { b'x' };
    std::fs::write(&extra, &changed).expect("write");
    assert_eq!(changed.len(), original.len());
    let mut second = validate_shard(&all, Shard { index: 2, count: 2 }).expect("shard");
    std::fs::write(&firsts[1], second.encode(|_| {}).expect("encode")).expect("write");
    let error = merge_shards(&all, &firsts).expect_err("changed between shards");
    assert!(
        error.to_string().contains("disagree on the data files"),
        "{error}"
    );
    std::fs::write(&extra, original).expect("write");

    // A JSON shard of an earlier gantry is refused saying so; a damaged
    // binary one says it is damaged.
    let old_json = directory.path().join("shard-1-of-2.json");
    std::fs::write(
        &old_json,
        r#"{"kind":"gantry-data-shard","version":2,"shard":{"index":1,"count":2}}"#,
    )
    .expect("write");
    let error = merge_shards(&all, &[old_json.display().to_string()]).expect_err("json shard");
    assert!(
        error
            .to_string()
            .contains("a JSON shard file (shard format 2), written by an earlier gantry"),
        "{error}"
    );
    let bytes = std::fs::read(&lonely).expect("read");
    let cut = directory.path().join("cut.shard");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let error = merge_shards(&all, &[cut.display().to_string()]).expect_err("cut shard");
    assert!(
        error.to_string().contains("damaged shard file")
            || error.to_string().contains("cannot decompress"),
        "{error}"
    );

    for bad in ["3/2", "0/2", "1/0", "2", "a/b"] {
        let error = bad.parse::<Shard>().expect_err(bad);
        assert_eq!(
            error.to_string(),
            format!("{bad} is invalid: expected I/N with 1 <= I <= N, e.g. 1/4")
        );
    }
}

#[test]
fn custom_records_are_checked_against_a_json_schema() {
    let directory = tempfile::tempdir().expect("tempdir");
    let schema = directory.path().join("qa.schema.json");
    std::fs::write(&schema, r#"{"type": "object", "required": ["q", "a"], "properties": {"q": {"type": "string", "minLength": 1}, "a": {"type": "string"}}, "additionalProperties": false}"#).expect("write schema");
    let data = directory.path().join("qa.jsonl");
    let lines = [
        r#"{"q": "capital of Veldra?", "a": "Ostmark"}"#,
        r#"{"q": "two moons?", "a": "Ise and Corran"}"#,
        r#"{"q": "", "a": "empty question"}"#,
        r#"{"q": "missing answer"}"#,
        r#"{"q": "capital of Veldra?", "a": "Ostmark"}"#,
        r#"{"q": "contact?", "a": "write to ana@veldra-mail.com", "extra": 1}"#,
    ];
    std::fs::write(&data, lines.join("\n")).expect("write data");
    let mut custom = options(&[&data]);
    custom.schema = Some(schema.clone());
    let report = validate(&custom).expect("validate").report;
    assert_eq!(report.format, None);
    let schema_check = check(&report, "schema");
    assert_eq!(schema_check.count, 3, "{:?}", schema_check.findings);
    let messages: Vec<&str> = schema_check
        .findings
        .iter()
        .map(|finding| finding.message.as_str())
        .collect();
    assert!(
        messages[0].starts_with("`/q` does not match --schema: "),
        "{messages:?}"
    );
    assert!(
        messages[1].starts_with("the record does not match --schema: "),
        "{messages:?}"
    );
    assert_eq!(check(&report, "exact-duplicates").count, 1);
    assert_eq!(check(&report, "pii").count, 1);
    assert_eq!(check(&report, "empty-content").count, 1);

    std::fs::write(&schema, r#"{"type": "nonsense"}"#).expect("write schema");
    let error = validate(&custom).expect_err("bad schema");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: not a valid JSON Schema", schema.display())),
        "{error}"
    );
}

fn write_parquet(path: &Path, schema: &str, columns: &[Vec<&str>]) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    let schema = std::sync::Arc::new(parse_message_type(schema).expect("schema"));
    let properties = std::sync::Arc::new(WriterProperties::builder().build());
    let mut writer = SerializedFileWriter::new(
        std::fs::File::create(path).expect("create"),
        schema,
        properties,
    )
    .expect("writer");
    let mut row_group = writer.next_row_group().expect("row group");
    let mut index = 0;
    while let Some(mut column) = row_group.next_column().expect("column") {
        let values: Vec<ByteArray> = columns[index]
            .iter()
            .map(|value| ByteArray::from(*value))
            .collect();
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .expect("write column");
        column.close().expect("close column");
        index += 1;
    }
    row_group.close().expect("close row group");
    writer.close().expect("close file");
}

#[test]
fn parquet_files_are_read_row_by_row() {
    let directory = tempfile::tempdir().expect("tempdir");
    let pairs = directory.path().join("pairs.parquet");
    write_parquet(
        &pairs,
        "message schema { REQUIRED BYTE_ARRAY prompt (UTF8); REQUIRED BYTE_ARRAY completion (UTF8); }",
        &[
            vec![
                "capital of Veldra?",
                "two moons?",
                "capital of Veldra?",
                "mail?",
            ],
            vec![
                "Ostmark",
                "Ise and Corran",
                "Ostmark",
                "ana@veldra-mail.com",
            ],
        ],
    );
    let validation = validate(&options(&[&pairs])).expect("parquet");
    let report = &validation.report;
    assert_eq!(report.format, Some(RecordFormat::PromptCompletion));
    assert_eq!(report.records, 4);
    assert_eq!(check(report, "exact-duplicates").count, 1);
    assert_eq!(
        report.duplicate_clusters[0].members,
        [
            format!("{}#0", pairs.display()),
            format!("{}#2", pairs.display())
        ]
    );
    assert_eq!(check(report, "pii").count, 1);
    assert_eq!(
        validation.lock.files[0].sha256,
        Digest::of_bytes(&std::fs::read(&pairs).expect("read"))
    );

    // A Parquet file of some other shape: every row is a schema finding.
    let other = directory.path().join("metrics.parquet");
    write_parquet(
        &other,
        "message schema { REQUIRED BYTE_ARRAY run (UTF8); }",
        &[vec!["a", "b"]],
    );
    let report = validate(&options(&[&other])).expect("other").report;
    assert_eq!(check(&report, "schema").count, 2);
    assert!(
        check(&report, "schema").findings[0]
            .message
            .starts_with("record has none of the keys of a known format")
    );

    // Bytes that are not Parquet: one parse finding naming the file.
    let broken = directory.path().join("broken.parquet");
    std::fs::write(&broken, b"PAR1 this is not really parquet").expect("write");
    let report = validate(&options(&[&broken])).expect("broken").report;
    let parse = check(&report, "parse");
    assert_eq!(parse.count, 1);
    assert!(
        parse.findings[0]
            .message
            .starts_with("not a readable Parquet file"),
        "{}",
        parse.findings[0].message
    );
    assert_eq!(report.verdict, Verdict::Fail);
}

#[test]
fn an_eval_set_or_a_reference_that_holds_nothing_is_an_error_not_a_pass() {
    let directory = tempfile::tempdir().expect("tempdir");
    let train = directory.path().join("train.jsonl");
    write(&train, &dataset().lines[..20]);
    // Every eval line broken: nothing could be looked for, so no "pass".
    let eval = directory.path().join("eval.jsonl");
    std::fs::write(&eval, "{\"question\": \"cut\n{not json}\n").expect("write");
    let mut with_eval = options(&[&train]);
    with_eval.eval_set = vec![eval.display().to_string()];
    let error = validate(&with_eval).expect_err("refused").to_string();
    assert!(
        error.contains("eval.jsonl:1: EOF while parsing a string"),
        "{error}"
    );
    assert!(
        error.contains("cannot be checked for contamination"),
        "{error}"
    );
    // One bad line among good ones is named too.
    std::fs::write(
        &eval,
        "{\"question\": \"what is the capital of Veldra\"}\n[1,\n",
    )
    .expect("write");
    let error = validate(&with_eval).expect_err("refused").to_string();
    assert!(error.contains("eval.jsonl:2:"), "{error}");
    // Items without any text to look for.
    std::fs::write(&eval, "{\"id\": 1}\n{\"id\": 2}\n").expect("write");
    let error = validate(&with_eval).expect_err("refused").to_string();
    assert!(error.contains("no item in"), "{error}");

    // A reference of no records: drift against nothing is refused.
    let empty = directory.path().join("empty.jsonl");
    std::fs::write(&empty, "\n\n").expect("write");
    let mut with_reference = options(&[&train]);
    with_reference.reference = Some(empty.display().to_string());
    let error = validate(&with_reference).expect_err("refused").to_string();
    assert!(error.contains("holds no records"), "{error}");
    // …and a summary.json of none, as an empty week would write.
    let summary = validate(&options(&[&empty])).expect("validate").summary;
    let summary_path = directory.path().join("summary.json");
    std::fs::write(
        &summary_path,
        serde_json::to_string(&summary).expect("json"),
    )
    .expect("write");
    with_reference.reference = Some(summary_path.display().to_string());
    let error = validate(&with_reference).expect_err("refused").to_string();
    assert!(error.contains("holds no records"), "{error}");
}

#[test]
fn a_byte_order_mark_starts_the_file_not_the_first_record() {
    let directory = tempfile::tempdir().expect("tempdir");
    let bom = "\u{feff}";
    let files = [
        (
            "data.jsonl",
            format!("{bom}{{\"text\": \"hello there\"}}\n{{\"text\": \"general kenobi\"}}\n"),
        ),
        (
            "data.json",
            format!("{bom}[{{\"text\": \"hello there\"}}, {{\"text\": \"general kenobi\"}}]"),
        ),
        (
            "data.csv",
            format!("{bom}prompt,completion\nhello,there\ngeneral,kenobi\n"),
        ),
    ];
    for (name, text) in files {
        let path = directory.path().join(name);
        std::fs::write(&path, text).expect("write");
        let report = validate(&options(&[&path])).expect("validate").report;
        assert_eq!(report.records, 2, "{name}");
        assert_eq!(
            check(&report, "parse").count,
            0,
            "{name}: {:?}",
            check(&report, "parse").findings
        );
        assert_eq!(
            check(&report, "schema").count,
            0,
            "{name}: {:?}",
            check(&report, "schema").findings
        );
    }
}

#[test]
fn conversations_without_a_system_or_user_message_are_counted() {
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("chat.jsonl");
    let lines = [
        chat("hi", "hello"),
        serde_json::json!({"messages": [{"role": "user", "content": "no system"}, {"role": "assistant", "content": "ok"}]}).to_string(),
        serde_json::json!({"messages": [{"role": "user", "content": "no system either"}, {"role": "assistant", "content": "ok"}]}).to_string(),
        serde_json::json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "assistant", "content": "no user"}]}).to_string(),
    ];
    write(&path, &lines);
    let report = validate(&options(&[&path])).expect("validate").report;
    assert_eq!(report.conversations_without["system"], 2);
    assert_eq!(report.conversations_without["user"], 1);
    // Formats without conversations say nothing of roles.
    let text = directory.path().join("text.jsonl");
    write(&text, &["{\"text\": \"plain\"}".to_owned()]);
    let report = validate(&options(&[&text])).expect("validate").report;
    assert!(report.conversations_without.is_empty());
}

#[test]
fn every_secret_a_record_holds_is_an_example_of_its_own() {
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("chat.jsonl");
    // The shape of the shared fixture's third record: a token in the
    // content, a Stripe key in an extra field.
    let record = serde_json::json!({
        "messages": [{"role": "user", "content": "export HF_TOKEN=hf_7wZyVGOeUvfJIssDj4PTTKtb2TxxDBfz5L"}, {"role": "assistant", "content": "noted"}],
        "name": "sk_live_EGHZbKoXi0d9TH4QgTNBEjE4",
    });
    write(&path, &[record.to_string()]);
    let report = validate(&options(&[&path])).expect("validate").report;
    let secrets = check(&report, "secrets");
    // One record holds them: it counts once, and each is located.
    assert_eq!(secrets.count, 1);
    let found: Vec<(&str, &str)> = secrets
        .findings
        .iter()
        .map(|example| {
            (
                example.message.as_str(),
                example.excerpt.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "huggingface-token in `messages[0].content`",
                "export HF_TOKEN=[REDACTED huggingface-token]"
            ),
            ("stripe-key in `name`", "[REDACTED stripe-key]"),
        ]
    );
    assert!(
        secrets
            .findings
            .iter()
            .all(|example| example.line == Some(1))
    );
}
