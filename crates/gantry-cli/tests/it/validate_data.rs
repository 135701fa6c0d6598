//! `gantry validate-data` end to end: inputs, files written, annotations, outputs, exit codes.

use crate::support::Step;

fn chat(user: &str, assistant: &str) -> String {
    serde_json::json!({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}).to_string()
}

/// 20 clean records, then planted: 1 duplicate, 1 malformed line, 1 email, 1 secret.
fn planted(step: &Step) {
    let mut lines: Vec<String> = (0..20)
        .map(|index| {
            chat(
                &format!("What is {index} plus {index}?"),
                &format!("{}", index * 2),
            )
        })
        .collect();
    lines.push(lines[4].clone());
    lines.push("{\"messages\": ".to_owned());
    lines.push(chat("reach me at ana@veldra-mail.com", "Noted."));
    lines.push(chat(
        "token ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "Revoke it.",
    ));
    std::fs::create_dir_all(step.path("data")).expect("mkdir");
    step.write("data/train.jsonl", &(lines.join("\n") + "\n"));
    step.write(
        "data/extra.jsonl",
        &(chat("A different question?", "A different answer.") + "\n"),
    );
}

#[test]
fn github_step_writes_report_lock_annotations_and_outputs() {
    let mut step = Step::github();
    planted(&step);
    step.set("INPUT_DATA", "data/train.jsonl\ndata/extra.jsonl\n")
        .set("INPUT_TOKENIZER", "cl100k_base")
        .set("INPUT_PUBLISH", "summary");
    let outcome = step.run(&["validate-data"]);
    assert_eq!(
        outcome.code,
        1,
        "parse error and secret fail the gate: {}",
        outcome.transcript()
    );

    let report: serde_json::Value =
        serde_json::from_str(&step.read(".gantry/validate-data/report.json")).expect("report.json");
    assert_eq!(report["records"], 25);
    assert_eq!(report["format"], "openai-chat");
    let status = |id: &str| {
        report["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|check| check["id"] == id))
            .map(|check| (check["status"].clone(), check["count"].clone()))
            .expect(id)
    };
    assert_eq!(status("parse"), ("fail".into(), 1.into()));
    assert_eq!(
        status("exact-duplicates"),
        ("warn".into(), 1.into()),
        "1 of 25 is 4%: over the 1% warning, under the 5% error"
    );
    assert_eq!(status("secrets"), ("fail".into(), 1.into()));
    assert_eq!(status("pii"), ("warn".into(), 1.into()));

    let lock: serde_json::Value =
        serde_json::from_str(&step.read(".gantry/validate-data/data.lock")).expect("data.lock");
    assert_eq!(lock["records"], 25);
    assert_eq!(lock["files"][0]["path"], "data/extra.jsonl");
    assert_eq!(lock["files"][1]["records"], 24);

    // Annotations point at the data files' lines; the secret itself never prints.
    assert!(
        outcome
            .stdout
            .contains("::error file=data/train.jsonl,line=22,title=Unparsable record (parse)::"),
        "{}",
        outcome.stdout
    );
    assert!(outcome.stdout.contains("::error file=data/train.jsonl,line=24,title=Secret in training data (secrets)::github-token in `messages[0].content`"), "{}", outcome.stdout);
    assert!(
        !outcome.stdout.contains("ghp_0123456789")
            && !step.read("step_summary").contains("ghp_0123456789")
    );
    assert!(
        step.read("step_summary")
            .contains("| `secrets` | ❌ fail | 1 | fail > 0 | 1 |"),
        "{}",
        step.read("step_summary")
    );

    let output = step.read("github_output");
    for name in [
        "verdict",
        "report",
        "lock",
        "dataset-digest",
        "records",
        "errors",
        "warnings",
        "published",
    ] {
        assert!(
            output.contains(&format!("{name}<<ghadelimiter_")),
            "output {name} missing:\n{output}"
        );
    }
    assert!(output.contains(&format!(
        "\n{}\n",
        lock["dataset_digest"].as_str().expect("digest")
    )));
}

#[test]
fn clean_data_passes_and_json_output_is_parseable() {
    let step = Step::local();
    let lines: Vec<String> = (0..12)
        .map(|index| {
            chat(
                &format!("Capital of region {index}?"),
                &format!("Town {index}."),
            )
        })
        .collect();
    step.write("clean.jsonl", &(lines.join("\n") + "\n"));
    let outcome = step.run(&[
        "--format",
        "json",
        "validate-data",
        "--data",
        "clean.jsonl",
        "--tokenizer",
        "chars",
        "--max-tokens",
        "200",
        "--publish",
        "summary",
    ]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let value: serde_json::Value = serde_json::from_str(&outcome.stdout).expect("stdout is JSON");
    assert_eq!(value["verdict"], "pass");
    assert_eq!(value["records"], 12);
    assert!(
        value["dataset_digest"]
            .as_str()
            .is_some_and(|digest| digest.starts_with("sha256:"))
    );
}

#[test]
fn bad_arguments_name_the_flag_or_file() {
    let step = Step::local();
    step.write("policy.toml", "[checks.dupes]\nwarn = 1\n");
    step.write("t.jsonl", &(chat("q", "a") + "\n"));
    let cases: [(&[&str], &str); 4] = [
        (
            &["validate-data", "--data", "missing/*.jsonl"],
            "--data missing/*.jsonl matched no data files",
        ),
        (
            &[
                "validate-data",
                "--data",
                "t.jsonl",
                "--policy",
                "policy.toml",
            ],
            "--policy policy.toml: unknown check `dupes` under [checks]",
        ),
        (
            &["validate-data", "--data", "t.jsonl", "--tokenizer", "gpt2"],
            "--tokenizer gpt2: expected o200k_base, cl100k_base, chars or the path of a Hugging Face tokenizer.json",
        ),
        (
            &[
                "validate-data",
                "--data",
                "t.jsonl",
                "--previous-lock",
                "nope.lock",
            ],
            "--previous-lock nope.lock: No such file or directory",
        ),
    ];
    for (args, expected) in cases {
        let outcome = step.run(args);
        assert_eq!(outcome.code, 2, "{args:?}: {}", outcome.transcript());
        assert!(
            outcome.stderr.contains(expected),
            "{args:?}: expected {expected:?} in\n{}",
            outcome.stderr
        );
    }
}

#[test]
fn last_runs_summary_is_the_drift_reference_for_the_next() {
    let step = Step::local();
    let short: Vec<String> = (0..40)
        .map(|index| {
            chat(
                &format!("Short question {index}?"),
                &format!("Answer {index}."),
            )
        })
        .collect();
    step.write("week1.jsonl", &(short.join("\n") + "\n"));
    let first = step.run(&[
        "validate-data",
        "--data",
        "week1.jsonl",
        "--tokenizer",
        "chars",
        "--out",
        "week1",
        "--publish",
        "summary",
    ]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    assert!(
        first.stdout.contains("summary=week1/summary.json"),
        "{}",
        first.stdout
    );

    let long: Vec<String> = (0..40)
        .map(|index| chat(&format!("Short question {index}?"), &format!("A much longer answer number {index} that goes on and on about the island, its rivers, its moons and its harbours.")))
        .collect();
    step.write("week2.jsonl", &(long.join("\n") + "\n"));
    let second = step.run(&[
        "validate-data",
        "--data",
        "week2.jsonl",
        "--tokenizer",
        "chars",
        "--out",
        "week2",
        "--reference",
        "week1/summary.json",
        "--publish",
        "summary",
    ]);
    assert_eq!(
        second.code,
        1,
        "drift fails the gate: {}",
        second.transcript()
    );
    let markdown = step.read("week2/report.md");
    assert!(markdown.contains("| `drift-psi` | ❌ fail |"), "{markdown}");
    assert!(
        markdown.contains("### Drift against the reference"),
        "{markdown}"
    );
    assert!(
        second
            .stderr
            .contains("error[drift-psi]: Distribution drift: characters: PSI "),
        "{}",
        second.stderr
    );
}

#[test]
fn shard_jobs_and_a_merge_job_reproduce_the_single_run() {
    let step = Step::local();
    planted(&step);
    let common = ["--tokenizer", "chars", "--publish", "summary"];
    let single = step.run(
        &[
            &["validate-data", "--data", "data", "--out", "single"][..],
            &common,
        ]
        .concat(),
    );
    assert_eq!(single.code, 1, "{}", single.transcript());
    for index in 1..=3 {
        let shard = format!("{index}/3");
        let outcome = step.run(
            &[
                &[
                    "validate-data",
                    "--data",
                    "data",
                    "--shard",
                    &shard,
                    "--out",
                    "shards",
                ][..],
                &common,
            ]
            .concat(),
        );
        assert_eq!(
            outcome.code,
            0,
            "a shard job never gates: {}",
            outcome.transcript()
        );
        assert!(
            outcome
                .stdout
                .contains(&format!("shard-file=shards/shard-{index}-of-3.shard")),
            "{}",
            outcome.stdout
        );
    }
    let merged = step.run(
        &[
            &[
                "validate-data",
                "--merge",
                "shards/*.shard",
                "--out",
                "merged",
            ][..],
            &common[2..],
        ]
        .concat(),
    );
    assert_eq!(merged.code, 1, "{}", merged.transcript());
    assert_eq!(
        step.read("merged/report.json"),
        step.read("single/report.json")
    );
    assert_eq!(step.read("merged/data.lock"), step.read("single/data.lock"));
    // The partitioned merge: two partition jobs, then the final step.
    for index in 1..=2 {
        let partition = format!("{index}/2");
        let outcome = step.run(
            &[
                &[
                    "validate-data",
                    "--merge",
                    "shards/*.shard",
                    "--partition",
                    &partition,
                    "--out",
                    "parts",
                ][..],
                &common[2..],
            ]
            .concat(),
        );
        assert_eq!(
            outcome.code,
            0,
            "a partition never gates: {}",
            outcome.transcript()
        );
        assert!(
            outcome
                .stdout
                .contains(&format!("partition-file=parts/partition-{index}-of-2.json")),
            "{}",
            outcome.stdout
        );
    }
    let combined = step.run(
        &[
            &[
                "validate-data",
                "--merge",
                "shards/*.shard",
                "--partition-results",
                "parts/*.json",
                "--out",
                "combined",
            ][..],
            &common[2..],
        ]
        .concat(),
    );
    assert_eq!(combined.code, 1, "{}", combined.transcript());
    assert_eq!(
        step.read("combined/report.json"),
        step.read("single/report.json")
    );
    assert_eq!(
        step.read("combined/data.lock"),
        step.read("single/data.lock")
    );
    let orphan = step.run(&["validate-data", "--data", "data", "--partition", "1/2"]);
    assert_eq!(orphan.code, 2, "{}", orphan.transcript());
    assert!(orphan.stderr.contains("--merge"), "{}", orphan.transcript());

    let both = step.run(&[
        "validate-data",
        "--data",
        "data",
        "--merge",
        "shards/*.shard",
    ]);
    assert_eq!(both.code, 2);
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );
    // A shard written by a gantry whose format differs is refused, not
    // merged: a binary one of another format version, and the JSON shards
    // gantry wrote before format 3.
    let mut other = std::fs::read(step.path("shards/shard-1-of-3.shard")).expect("shard");
    other[8..12].copy_from_slice(&5_u32.to_le_bytes());
    std::fs::write(step.path("other.shard"), &other).expect("write");
    let stale = step.run(&["validate-data", "--merge", "other.shard"]);
    assert_eq!(stale.code, 2, "{}", stale.transcript());
    assert!(
        stale
            .stderr
            .contains("other.shard: shard format 5 is not this gantry's (4); run every shard and the merge with the same gantry version"),
        "{}",
        stale.stderr
    );
    step.write(
        "old-shard.json",
        r#"{"kind": "gantry-data-shard", "version": 2, "shard": {"index": 1, "count": 3}}"#,
    );
    let json = step.run(&["validate-data", "--merge", "old-shard.json"]);
    assert_eq!(json.code, 2, "{}", json.transcript());
    assert!(
        json.stderr.contains(
            "old-shard.json: a JSON shard file (shard format 2), written by an earlier gantry"
        ),
        "{}",
        json.stderr
    );
    let bad = step.run(&["validate-data", "--data", "data", "--shard", "4/3"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr
            .contains("invalid value '4/3' for '--shard <I/N>': expected I/N with 1 <= I <= N"),
        "{}",
        bad.stderr
    );
}

#[test]
fn gitlab_jobs_get_junit_and_code_quality_reports() {
    let mut step = Step::gitlab_merge_request(2);
    planted(&step);
    step.set("GANTRY_INPUT_DATA", "data/train.jsonl")
        .set("GANTRY_INPUT_TOKENIZER", "chars")
        .set("GANTRY_INPUT_PUBLISH", "summary");
    let outcome = step.run(&["validate-data"]);
    assert_eq!(outcome.code, 1, "{}", outcome.transcript());
    let junit = step.read(".gantry/reports/junit.xml");
    assert!(
        junit.contains("<testsuite name=\"gantry validate-data\""),
        "{junit}"
    );
    assert!(junit.contains("<testcase name=\"secrets\" classname=\"gantry.validate-data\"><failure message=\"secrets = 1 (fail &gt; 0)\">data/train.jsonl:24: github-token in `messages[0].content`</failure></testcase>"), "{junit}");
    assert!(junit.contains("<testcase name=\"max-tokens\" classname=\"gantry.validate-data\"><skipped message=\"pass --max-tokens"), "{junit}");
    assert!(
        !junit.contains("ghp_0123456789"),
        "a secret leaked into the JUnit report"
    );
    let code_quality: serde_json::Value =
        serde_json::from_str(&step.read(".gantry/reports/codequality.json")).expect("code quality");
    assert!(
        code_quality
            .as_array()
            .is_some_and(|entries| entries
                .iter()
                .any(|entry| entry["check_name"] == "parse"
                    && entry["location"]["lines"]["begin"] == 22)),
        "{code_quality}"
    );
    let dotenv = step.read("gantry.env");
    assert!(
        dotenv.starts_with("VALIDATE_DATA_VERDICT=fail\n"),
        "{dotenv}"
    );
}

#[test]
fn a_gitlab_shard_job_writes_the_reports_its_template_declares() {
    let mut step = Step::gitlab_merge_request(3);
    planted(&step);
    step.set("GANTRY_INPUT_DATA", "data/train.jsonl")
        .set("GANTRY_INPUT_TOKENIZER", "chars")
        .set("GANTRY_INPUT_SHARD", "1/2")
        .set("GANTRY_INPUT_OUT", "shards");
    let outcome = step.run(&["validate-data"]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    assert!(step.path("shards/shard-1-of-2.shard").is_file());
    // The template declares a JUnit and a Code Quality report: a shard job
    // writes both, empty, since it decides nothing.
    let junit = step.read(".gantry/reports/junit.xml");
    assert!(junit.contains("tests=\"0\""), "{junit}");
    assert_eq!(step.read(".gantry/reports/codequality.json").trim(), "[]");
    let dotenv = step.read("gantry.env");
    assert!(
        dotenv.contains("VALIDATE_DATA_SHARD_FILE=shards/shard-1-of-2.shard\n"),
        "{dotenv}"
    );
}
