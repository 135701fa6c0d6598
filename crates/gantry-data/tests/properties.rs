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
