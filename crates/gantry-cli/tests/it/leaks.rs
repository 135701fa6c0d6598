//! The leak harness: credential shapes planted in every field of every data
//! format and in servers' replies, every command run in local, GitHub and
//! GitLab modes, and every byte gantry wrote — stdout, stderr, every file,
//! what the fake forge and the fake servers received — searched for the
//! values in every form they could take (raw, JSON-escaped, URL-encoded,
//! base64 at any alignment).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use gantry_test::{EchoResponse, EchoServer, FakeForge};
use serde_json::json;

use crate::support::{Outcome, Step};

/// Secrets planted in data (shapes from `tests/fixtures/credentials-in-data.json`
/// and the classes the hardening issue named).
const DATA_SECRETS: &[&str] = &[
    "sk-proj-huG8GP38g4o5MNJAYKJ1UXXFWXLCpaNfhs0gCa05RFRunzqw",
    "glpat-JF3hBGZW3M4Fz6Hq2AK7",
    "hf_7wZyVGOeUvfJIssDj4PTTKtb2TxxDBfz5L",
    "sk_live_EGHZbKoXi0d9TH4QgTNBEjE4",
    "AIzaDp68GZN9Z3zLIbet6-UzH-7_3eLO6m4H5x2",
    "ghp_0123456789abcdefghijABCDEFGHIJ012345",
];

/// The other half of an AWS key pair, planted beside its key id.
const AWS_KEY_ID: &str = "AKIAZ7QXEXAMPLE4GANT";
const AWS_SECRET: &str = "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";
/// A private key's body, planted inside a PEM block.
const PEM_BODY: &str = "MIIEpAIBAAKCAQEA7yN3y8wq3ZsKq2pL0T9e8d7c6b5a4Zq8vN3xR";
/// A hand-made password in an assignment.
const PASSWORD: &str = "Tr0ub4dor&3-gantry";

/// Credentials gantry is given (environment, URLs).
const GITHUB_TOKEN: &str = "ghs_Zq8vN3xR7tL2mK9pW4sY6bH1cJ5dF0gE7a2b";
const GITLAB_TOKEN: &str = "glpat-Xk29fLq8ZpW3mN7vR4tY";
const API_KEY: &str = "sk-proj-Lk3vB8nQ2wE7rT5yU1iO9pA4sD6fG0hJ3kL8zX2cV7bN";
const TRACKING_TOKEN: &str = "mlflow-tok-Qw8eR3tY7uI2oP5a";
const URL_PASSWORD: &str = "Pw-9xK2mQ7vL3zR8";
const REGISTRY_PASSWORD: &str = "reg-Hj4kL9zX2cV7bN1m";
const ROUTER_TOKEN: &str = "rt-Vb6nM1qW8eR4tY9u";

fn every_planted_value() -> Vec<String> {
    let mut values: Vec<String> = DATA_SECRETS
        .iter()
        .map(|value| (*value).to_owned())
        .collect();
    values.extend(
        [
            AWS_SECRET,
            PEM_BODY,
            PASSWORD,
            GITHUB_TOKEN,
            GITLAB_TOKEN,
            API_KEY,
            TRACKING_TOKEN,
            URL_PASSWORD,
            REGISTRY_PASSWORD,
            ROUTER_TOKEN,
        ]
        .iter()
        .map(|value| (*value).to_owned()),
    );
    values.push(format!("mluser:{URL_PASSWORD}"));
    values.push(format!("bot:{REGISTRY_PASSWORD}"));
    values
}

/// Every form `value` can take on its way out; base64 at each of the three
/// alignments, trimmed to the characters that depend on the value alone.
fn forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned()];
    forms.push(
        serde_json::to_string(value).expect("json")[1..]
            .trim_end_matches('"')
            .to_owned(),
    );
    let url_encoded: String = value
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect();
    forms.push(url_encoded);
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for shift in 0..3_usize {
            let mut bytes = vec![b'x'; shift];
            bytes.extend_from_slice(value.as_bytes());
            let encoded = engine.encode(&bytes);
            let start = (8 * shift).div_ceil(6);
            let end = 8 * (shift + value.len()) / 6;
            forms.push(encoded[start..end].to_owned());
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

/// Everything one scenario wrote, searched at the end.
#[derive(Default)]
struct Written {
    /// (where, text)
    texts: Vec<(String, String)>,
}

impl Written {
    fn add(&mut self, place: impl Into<String>, text: impl Into<String>) {
        self.texts.push((place.into(), text.into()));
    }

    /// A run's stdout and stderr. `::add-mask::` lines are the one place a
    /// credential is written on purpose: the runner reads them and shows
    /// nothing; they are checked to be there on GitHub and left out.
    fn outcome(&mut self, what: &str, outcome: &Outcome, mode: Mode) {
        // Workflow commands go to stderr when stdout carries JSON.
        let mut masks = Vec::new();
        let mut streams = Vec::new();
        for (name, text) in [("stdout", &outcome.stdout), ("stderr", &outcome.stderr)] {
            let (announced, rest): (Vec<&str>, Vec<&str>) = text
                .lines()
                .partition(|line| line.starts_with("::add-mask::"));
            masks.extend(announced);
            streams.push((name, rest.join("\n")));
        }
        if matches!(mode, Mode::GitHub) {
            for credential in [
                GITHUB_TOKEN,
                GITLAB_TOKEN,
                API_KEY,
                TRACKING_TOKEN,
                REGISTRY_PASSWORD,
            ] {
                assert!(
                    masks.contains(&format!("::add-mask::{credential}").as_str()),
                    "{what}: {credential} was not announced to the runner: {masks:?}"
                );
            }
        } else {
            assert!(
                masks.is_empty(),
                "{what}: masks announced outside GitHub: {masks:?}"
            );
        }
        for (name, text) in streams {
            self.add(format!("{what}: {name}"), text);
        }
    }

    /// Every file under `root` except those under `inputs`.
    fn files(&mut self, root: &Path, inputs: &Path) {
        for entry in walk(root) {
            if entry.starts_with(inputs) {
                continue;
            }
            let bytes = std::fs::read(&entry).unwrap_or_default();
            self.add(
                entry.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            );
        }
    }

    fn forge(&mut self, forge: &FakeForge) {
        for request in forge.requests() {
            self.add(
                format!("forge: {} {}", request.method, request.path),
                request.body.to_string(),
            );
        }
    }

    /// Request bodies and paths a server received (its `Authorization`
    /// header carries the credential by design and is left out).
    fn server(&mut self, name: &str, server: &EchoServer) {
        for request in server.requests() {
            self.add(
                format!("{name}: {} {}", request.method, request.path),
                format!(
                    "{}\n{}",
                    request.path,
                    String::from_utf8_lossy(&request.body)
                ),
            );
        }
    }

    fn assert_clean(&self, scenario: &str) {
        assert!(!self.texts.is_empty(), "{scenario}: nothing was written");
        let mut leaks = Vec::new();
        for value in every_planted_value() {
            for form in forms(&value) {
                for (place, text) in &self.texts {
                    if text.contains(&form) {
                        leaks.push(format!("{place} holds {form:?} (a form of {value:?})"));
                    }
                }
            }
        }
        assert!(leaks.is_empty(), "{scenario}: {}", leaks.join("\n"));
    }
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(directory) = stack.pop() {
        for entry in std::fs::read_dir(&directory)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The three places gantry runs, each with the credentials it is given.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Local,
    GitHub,
    GitLab,
}

const MODES: [Mode; 3] = [Mode::Local, Mode::GitHub, Mode::GitLab];

fn step(mode: Mode, forge: &FakeForge) -> Step {
    let mut step = match mode {
        Mode::Local => Step::local(),
        Mode::GitHub => {
            let mut step = Step::github_pull_request(7, false);
            step.set("GITHUB_API_URL", forge.url())
                .set("GITHUB_TOKEN", GITHUB_TOKEN);
            step
        }
        Mode::GitLab => {
            let mut step = Step::gitlab_merge_request(3);
            step.set("CI_API_V4_URL", &forge.gitlab_url())
                .set("GITLAB_TOKEN", GITLAB_TOKEN);
            step
        }
    };
    // Known credentials are set in every mode; a laptop has them too.
    step.set("GITHUB_TOKEN", GITHUB_TOKEN)
        .set("GITLAB_TOKEN", GITLAB_TOKEN)
        .set("MLFLOW_TRACKING_TOKEN", TRACKING_TOKEN)
        .set("GANTRY_REGISTRY_USERNAME", "bot")
        .set("GANTRY_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
        .set("OPENAI_API_KEY", API_KEY)
        .set("GANTRY_ROUTER_TOKEN", ROUTER_TOKEN);
    std::fs::create_dir_all(step.path("in")).expect("inputs directory");
    step
}

/// Record templates, one per field of each format; `{S}` is replaced by
/// each planted secret in turn (JSON-escaped).
const JSONL_TEMPLATES: &[&str] = &[
    // OpenAI chat: content, role, name, content parts, weight, tool calls
    // (ids, names, arguments), tool answers, extra keys and values.
    r#"{"messages": [{"role": "user", "content": "my key is {S}"}, {"role": "assistant", "content": "rotate it"}]}"#,
    r#"{"messages": [{"role": "{S}", "content": "hi"}, {"role": "assistant", "content": "ok"}]}"#,
    r#"{"messages": [{"role": "user", "content": "hi", "name": "{S}"}, {"role": "assistant", "content": "ok"}]}"#,
    r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "{S}"}]}, {"role": "assistant", "content": "ok"}]}"#,
    r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok", "weight": "{S}"}]}"#,
    r#"{"messages": [{"role": "user", "content": "deploy"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "{S}", "type": "function", "function": {"name": "{S}", "arguments": "{\"token\": \"{S}\"}"}}]}, {"role": "tool", "tool_call_id": "{S}", "content": "{S}"}, {"role": "assistant", "content": "done"}]}"#,
    r#"{"messages": [{"{S}": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}"#,
    r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}], "{S}": 1}"#,
    r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}], "meta": {"owner": "{S}"}}"#,
    // ShareGPT
    r#"{"conversations": [{"from": "{S}", "value": "hi"}, {"from": "gpt", "value": "ok"}]}"#,
    r#"{"conversations": [{"from": "human", "value": "{S}"}, {"from": "gpt", "value": "ok"}], "{S}": "x"}"#,
    // Alpaca
    r#"{"instruction": "{S}", "input": "{S}", "output": "ok", "{S}": "x"}"#,
    // Prompt/completion
    r#"{"prompt": "{S}", "completion": "{S}"}"#,
    // Preference, both shapes
    r#"{"prompt": "q", "chosen": "{S}", "rejected": "no"}"#,
    r#"{"input": {"messages": [{"role": "{S}", "content": "{S}"}]}, "preferred_output": [{"role": "assistant", "content": "{S}"}], "non_preferred_output": [{"role": "assistant", "content": "x"}]}"#,
    // Text, and a record of no known format
    r#"{"text": "{S}"}"#,
    r#"{"unknown": "{S}"}"#,
];

/// Secrets that only a rule about their surroundings finds, as whole records.
fn contextual_records() -> Vec<String> {
    vec![
        json!({"messages": [{"role": "user", "content": format!("aws {AWS_KEY_ID} {AWS_SECRET}")}, {"role": "assistant", "content": "ok"}]}).to_string(),
        json!({"messages": [{"role": "user", "content": format!("AWS_SECRET_ACCESS_KEY={AWS_SECRET}")}, {"role": "assistant", "content": "ok"}]}).to_string(),
        json!({"messages": [{"role": "user", "content": format!("-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----")}, {"role": "assistant", "content": "ok"}]}).to_string(),
        json!({"messages": [{"role": "user", "content": format!("-----BEGIN PRIVATE KEY-----\n{PEM_BODY}")}, {"role": "assistant", "content": "ok"}]}).to_string(),
        json!({"messages": [{"role": "user", "content": format!("db_password: {PASSWORD}")}, {"role": "assistant", "content": "ok"}]}).to_string(),
        json!({"messages": [{"role": "user", "content": "call"}, {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "login", "arguments": json!({"password": PASSWORD}).to_string()}}]}, {"role": "tool", "tool_call_id": "c1", "content": "ok"}, {"role": "assistant", "content": "done"}]}).to_string(),
    ]
}

fn planted_jsonl() -> String {
    let mut lines = Vec::new();
    for template in JSONL_TEMPLATES {
        for secret in DATA_SECRETS {
            let escaped = serde_json::to_string(secret).expect("json");
            let escaped = &escaped[1..escaped.len() - 1];
            lines.push(template.replace("{S}", escaped));
        }
    }
    lines.extend(contextual_records());
    lines.join("\n") + "\n"
}

/// The other file formats: CSV (header and cells), a JSON array, plain
/// text, Parquet.
fn write_other_formats(step: &Step) -> Vec<String> {
    let mut csv = format!("prompt,completion,{}\n", DATA_SECRETS[1]);
    for secret in DATA_SECRETS {
        csv.push_str(&format!("\"key {secret}\",\"{secret}\",x\n"));
    }
    let array: Vec<serde_json::Value> = DATA_SECRETS
        .iter()
        .map(|secret| json!({"prompt": secret, "completion": "ok", *secret: secret}))
        .collect();
    let text: String = DATA_SECRETS
        .iter()
        .map(|secret| format!("a line with {secret}\n"))
        .collect();
    step.write("in/planted.csv", &csv);
    step.write(
        "in/planted.json",
        &serde_json::to_string(&array).expect("json"),
    );
    step.write("in/planted.txt", &text);
    write_parquet(&step.path("in/planted.parquet"));
    [
        "in/planted.csv",
        "in/planted.json",
        "in/planted.txt",
        "in/planted.parquet",
    ]
    .iter()
    .map(|path| (*path).to_owned())
    .collect()
}

fn write_parquet(path: &Path) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    let schema = std::sync::Arc::new(
        parse_message_type(
            "message schema { REQUIRED BYTE_ARRAY prompt (UTF8); REQUIRED BYTE_ARRAY completion (UTF8); }",
        )
        .expect("schema"),
    );
    let mut writer = SerializedFileWriter::new(
        std::fs::File::create(path).expect("create"),
        schema,
        std::sync::Arc::new(WriterProperties::builder().build()),
    )
    .expect("writer");
    let mut row_group = writer.next_row_group().expect("row group");
    while let Some(mut column) = row_group.next_column().expect("column") {
        let values: Vec<ByteArray> = DATA_SECRETS
            .iter()
            .map(|secret| ByteArray::from(format!("key {secret}").as_str()))
            .collect();
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .expect("write column");
        column.close().expect("close column");
    }
    row_group.close().expect("close row group");
    writer.close().expect("close file");
}

#[test]
fn validate_data_never_writes_a_secret_it_found() {
    for mode in MODES {
        let forge = FakeForge::start();
        let step = step(mode, &forge);
        step.write("in/planted.jsonl", &planted_jsonl());
        let others = write_other_formats(&step);
        let mut written = Written::default();
        let mut runs = vec![vec!["in/planted.jsonl".to_owned()]];
        runs.extend(others.into_iter().map(|path| vec![path]));
        for (index, data) in runs.iter().enumerate() {
            let out = format!(".gantry/validate-data-{index}");
            let mut args = vec![
                "validate-data",
                "--out",
                &out,
                "--publish",
                "summary,comment,status",
            ];
            for path in data {
                args.extend(["--data", path.as_str()]);
            }
            let outcome = step.run(&args);
            // Every file holds a secret: the check fails, and says so.
            assert_eq!(
                outcome.code,
                1,
                "{mode:?} {data:?}: {}",
                outcome.transcript()
            );
            let report: serde_json::Value =
                serde_json::from_str(&step.read(&format!("{out}/report.json"))).expect("report");
            let secrets = report["checks"]
                .as_array()
                .expect("checks")
                .iter()
                .find(|check| check["id"] == "secrets")
                .expect("secrets check");
            assert_eq!(secrets["status"], "fail", "{mode:?} {data:?}: {secrets}");
            written.outcome(&format!("{mode:?} validate-data {data:?}"), &outcome, mode);
        }
        // Every record of the JSONL file was seen to hold its secret.
        let report: serde_json::Value =
            serde_json::from_str(&step.read(".gantry/validate-data-0/report.json"))
                .expect("report");
        let secrets = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|check| check["id"] == "secrets")
            .expect("secrets check");
        assert_eq!(
            secrets["count"],
            JSONL_TEMPLATES.len() * DATA_SECRETS.len() + contextual_records().len(),
            "{mode:?}: every planted record is a finding: {secrets}"
        );
        written.files(step.directory.path(), &step.path("in"));
        written.forge(&forge);
        written.assert_clean(&format!("validate-data ({mode:?})"));
    }
}

/// An OpenAI-compatible server that echoes the credential it was sent:
/// in answers for half the items, in a 401 error for the others.
fn echoing_model_server() -> EchoServer {
    EchoServer::start(|request| {
        let authorization = request
            .header("authorization")
            .unwrap_or_default()
            .to_owned();
        let body = String::from_utf8_lossy(&request.body).into_owned();
        if body.contains("odd item") {
            EchoResponse::json(
                401,
                &json!({"error": {"message": format!("Incorrect API key provided: {authorization}"), "type": "invalid_request_error"}}),
            )
        } else {
            EchoResponse::json(
                200,
                &json!({
                    "id": "c1", "object": "chat.completion", "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": format!("you sent {authorization}, {}", base64::engine::general_purpose::STANDARD.encode(&authorization))}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }),
            )
        }
    })
}

/// Six eval items; the echoing model server refuses the odd ones.
fn odd_and_even_items() -> String {
    (0..6)
        .map(|index| {
            let task = if index % 2 == 0 { "even" } else { "odd" };
            format!(
                "{}\n",
                json!({"id": format!("item-{index}"), "task": task, "messages": [{"role": "user", "content": format!("an {task} item")}], "expected": "hi"})
            )
        })
        .collect()
}

#[test]
fn eval_and_eval_gate_never_write_an_echoed_key() {
    let server = echoing_model_server();
    for mode in MODES {
        let forge = FakeForge::start();
        let step = step(mode, &forge);
        step.write("in/set.jsonl", &odd_and_even_items());
        let mut written = Written::default();
        let outcome = step.run(&[
            "eval",
            "--endpoint",
            &format!("{}/v1", server.url()),
            "--model",
            "m",
            "--dataset",
            "in/set.jsonl",
            "--attempts",
            "1",
            "--publish",
            "summary,comment",
        ]);
        written.outcome(&format!("{mode:?} eval"), &outcome, mode);
        let results = step.read(".gantry/eval/results.jsonl");
        assert_eq!(
            results.lines().count(),
            6,
            "{mode:?}: {}",
            outcome.transcript()
        );
        for line in results.lines() {
            let _: serde_json::Value = serde_json::from_str(line).expect("results stay JSON");
        }
        // A gate over results whose answers quote the forge token.
        let result_line = |id: &str, score: f64| {
            json!({"id": id, "task": "t", "repeat": 0, "prompt_hash": "sha256:00", "response": format!("the token is {GITHUB_TOKEN} {GITLAB_TOKEN}"), "expected": "x", "scores": {"exact": score}, "latency_ms": 1.0, "tokens": null, "attempts": 1, "error": null, "model": "m"}).to_string()
        };
        let baseline: String = (0..40)
            .map(|index| result_line(&format!("i{index}"), 1.0) + "\n")
            .collect();
        let candidate: String = (0..40)
            .map(|index| {
                result_line(&format!("i{index}"), if index < 30 { 0.0 } else { 1.0 }) + "\n"
            })
            .collect();
        step.write("in/baseline.jsonl", &baseline);
        step.write("in/candidate.jsonl", &candidate);
        let gate = step.run(&[
            "eval-gate",
            "--baseline",
            "in/baseline.jsonl",
            "--candidate",
            "in/candidate.jsonl",
            "--publish",
            "summary,comment,status",
        ]);
        assert_eq!(gate.code, 1, "{mode:?}: {}", gate.transcript());
        written.outcome(&format!("{mode:?} eval-gate"), &gate, mode);
        // A report whose Markdown quotes the credentials gantry was given.
        step.write(
            "in/report.md",
            &format!("# leaked\n\n{GITHUB_TOKEN} {GITLAB_TOKEN} {API_KEY} http://mluser:{URL_PASSWORD}@host/ Bearer {TRACKING_TOKEN}\n"),
        );
        let report = step.run(&[
            "report",
            "--file",
            "in/report.md",
            "--publish",
            "summary,comment,status,check",
        ]);
        written.outcome(&format!("{mode:?} report"), &report, mode);
        written.files(step.directory.path(), &step.path("in"));
        written.forge(&forge);
        written.assert_clean(&format!("eval, eval-gate, report ({mode:?})"));
    }
    let mut written = Written::default();
    written.server("model server", &server);
    written.assert_clean("the model server's requests");
}

/// A tracking server that refuses with the credential it got echoed back.
fn echoing_tracking_server() -> EchoServer {
    EchoServer::start(|request| {
        let authorization = request
            .header("authorization")
            .unwrap_or_default()
            .to_owned();
        EchoResponse::json(
            403,
            &json!({"error_code": "PERMISSION_DENIED", "message": format!("token {authorization} may not {} {}", request.method, request.path)}),
        )
    })
}

/// An OCI registry that asks for Basic auth, then fails with the header
/// it received in its error.
fn echoing_registry() -> EchoServer {
    EchoServer::start(|request| match request.header("authorization") {
        None => EchoResponse::json(
            401,
            &json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}),
        )
        .with_header("www-authenticate", "Basic realm=\"registry\""),
        Some(authorization) => EchoResponse::json(
            500,
            &json!({"errors": [{"code": "UNKNOWN", "message": format!("cannot verify {authorization}")}]}),
        ),
    })
}

/// A router admin API that lists no backends, and refuses every other
/// call quoting the token it got.
fn echoing_router() -> EchoServer {
    EchoServer::start(|request| {
        if request.method == "GET" && request.path == "/v1/backends" {
            return EchoResponse::json(
                200,
                &json!({"listen": "http://127.0.0.1:9", "stable": null, "backends": [], "lease": null, "reverted": null}),
            );
        }
        let authorization = request
            .header("authorization")
            .unwrap_or_default()
            .to_owned();
        EchoResponse::json(
            500,
            &json!({"error": format!("cannot {} {} for {authorization}", request.method, request.path)}),
        )
    })
}

#[test]
fn deploy_canary_never_writes_the_router_token_a_router_echoed() {
    let router = echoing_router();
    for mode in MODES {
        let forge = FakeForge::start();
        let mut step = step(mode, &forge);
        step.set("GANTRY_HTTP_BACKOFF_MS", "1");
        let mut written = Written::default();
        std::fs::create_dir_all(step.path("in/model")).expect("model");
        step.write("in/model/config.json", "{\"hidden\": 4}");
        step.write("in/gate.json", "{\"verdict\": \"pass\"}");
        let registered = step.run(&[
            "register",
            "--model-dir",
            "in/model",
            "--name",
            "support-bot",
            "--gate-report",
            "in/gate.json",
        ]);
        assert_eq!(registered.code, 0, "{mode:?}: {}", registered.transcript());
        for action in ["start", "status", "abort"] {
            let outcome = step.run(&[
                "deploy-canary",
                "--action",
                action,
                "--model",
                "support-bot@0.1.0",
                "--router",
                router.url(),
                "--serve-command",
                "server --port {port}",
            ]);
            // start fails at the router once the rollout exists; status
            // reads the state file only; abort ends the rollout and reports
            // that stopping the server failed.
            let expected = if action == "start" { 2 } else { 0 };
            assert_eq!(
                outcome.code,
                expected,
                "{mode:?} {action}: {}",
                outcome.transcript()
            );
            written.outcome(&format!("{mode:?} deploy-canary {action}"), &outcome, mode);
        }
        written.files(step.directory.path(), &step.path("in"));
        written.forge(&forge);
        written.assert_clean(&format!("deploy-canary ({mode:?})"));
    }
}

#[test]
fn monitor_never_writes_a_key_an_endpoint_or_alertmanager_echoed() {
    let server = echoing_model_server();
    // An Alertmanager that refuses with the body it got and the credential.
    let alertmanager = EchoServer::start(|request| {
        EchoResponse::json(
            400,
            &json!({"error": format!("bad alerts {} from {}", String::from_utf8_lossy(&request.body), request.header("authorization").unwrap_or_default())}),
        )
    });
    for mode in MODES {
        let forge = FakeForge::start();
        let mut step = step(mode, &forge);
        step.set("GANTRY_HTTP_BACKOFF_MS", "1");
        step.write("in/set.jsonl", &odd_and_even_items());
        let endpoint = format!("{}/v1", server.url());
        let evaluated = step.run(&[
            "eval",
            "--endpoint",
            &endpoint,
            "--model",
            "m",
            "--dataset",
            "in/set.jsonl",
            "--attempts",
            "1",
            "--scorer",
            "exact",
            "--publish",
            "summary",
        ]);
        assert_eq!(evaluated.code, 0, "{mode:?}: {}", evaluated.transcript());
        std::fs::create_dir_all(step.path("in/model")).expect("model");
        step.write("in/model/config.json", "{\"hidden\": 4}");
        let registered = step.run(&[
            "register",
            "--model-dir",
            "in/model",
            "--name",
            "m",
            "--eval-results",
            ".gantry/eval/results.jsonl",
            "--eval-set",
            "in/set.jsonl",
            "--alias",
            "production",
        ]);
        assert_eq!(registered.code, 0, "{mode:?}: {}", registered.transcript());
        let mut written = Written::default();
        let outcome = step.run(&[
            "monitor",
            "--model",
            "m@production",
            "--endpoint",
            &endpoint,
            "--served-model",
            "m",
            "--alertmanager",
            alertmanager.url(),
            "--publish",
            "summary,comment",
        ]);
        assert!(outcome.code <= 2, "{mode:?}: {}", outcome.transcript());
        assert!(
            outcome.transcript().contains("alerts were not delivered"),
            "{mode:?}: {}",
            outcome.transcript()
        );
        written.outcome(&format!("{mode:?} monitor"), &outcome, mode);
        written.files(step.directory.path(), &step.path("in"));
        written.forge(&forge);
        written.assert_clean(&format!("monitor ({mode:?})"));
    }
}

#[test]
fn prepare_never_writes_a_credential_its_command_was_given_or_reported() {
    for mode in MODES {
        let forge = FakeForge::start();
        let step = step(mode, &forge);
        std::fs::create_dir_all(step.path("in/model")).expect("model");
        step.write("in/model/config.json", "{\"hidden\": 4}");
        let registered = step.run(&["register", "--model-dir", "in/model", "--name", "parent"]);
        assert_eq!(registered.code, 0, "{mode:?}: {}", registered.transcript());
        // The command is given a token on its command line and reports
        // credentials of its own in $GANTRY_RUN_DIR/transformation.json.
        let script = format!(
            "import json, os, shutil, sys\nshutil.copy(os.path.join(os.environ['GANTRY_INPUT_MODEL_DIR'], 'config.json'), os.environ['GANTRY_OUTPUT_DIR'])\njson.dump({{'tool': 'quantize', 'token': sys.argv[2], 'key': os.environ['OPENAI_API_KEY'], 'store': 'https://bot:{REGISTRY_PASSWORD}@models.example/'}}, open(os.path.join(os.environ['GANTRY_RUN_DIR'], 'transformation.json'), 'w'))\n"
        );
        let outcome = step.run(&[
            "prepare",
            "--from",
            "parent@0.1.0",
            "--name",
            "parent-q8",
            "--run-dir",
            "in/run",
            "--publish",
            "summary,comment",
            "--",
            "python3",
            "-c",
            &script,
            "--token",
            GITHUB_TOKEN,
        ]);
        assert_eq!(outcome.code, 0, "{mode:?}: {}", outcome.transcript());
        let mut written = Written::default();
        written.outcome(&format!("{mode:?} prepare"), &outcome, mode);
        written.files(step.directory.path(), &step.path("in"));
        written.forge(&forge);
        written.assert_clean(&format!("prepare ({mode:?})"));
        // What it reported is kept, redacted.
        let report = step.read(".gantry/prepare/prepare.json");
        assert!(report.contains("\"tool\": \"quantize\""), "{report}");
    }
}

#[test]
fn train_and_registry_never_write_a_credential_a_server_echoed() {
    let tracking = echoing_tracking_server();
    let registry = echoing_registry();
    for mode in MODES {
        let forge = FakeForge::start();
        let mut step = step(mode, &forge);
        step.set("GANTRY_HTTP_BACKOFF_MS", "1");
        let mut written = Written::default();
        // The token from the environment, and a password in the URL.
        for uri in [
            tracking.url().to_owned(),
            format!("http://mluser:{URL_PASSWORD}@{}/", tracking.address()),
        ] {
            let outcome = step.run(&[
                "train",
                "--gpus",
                "none",
                "--tracking-uri",
                &uri,
                "--shell",
                "--command",
                "echo weights > \"$GANTRY_OUTPUT_DIR/model.bin\"",
            ]);
            assert_eq!(outcome.code, 0, "{mode:?}: {}", outcome.transcript());
            let run: serde_json::Value =
                serde_json::from_str(&step.read(".gantry/train/run.json")).expect("run.json");
            assert_eq!(run["tracking"]["synced"], false, "{run:#}");
            written.outcome(&format!("{mode:?} train {uri}"), &outcome, mode);
        }
        for uri in [
            format!("oci+http://{}/models", registry.address()),
            format!(
                "oci+http://bot:{REGISTRY_PASSWORD}@{}/models",
                registry.address()
            ),
        ] {
            let outcome = step.run(&["registry", "versions", "support-bot", "--registry", &uri]);
            assert_eq!(outcome.code, 2, "{mode:?}: {}", outcome.transcript());
            written.outcome(&format!("{mode:?} registry {uri}"), &outcome, mode);
        }
        // A registration whose metadata quotes a credential: the manifest,
        // the provenance statement and the log are records like any other.
        std::fs::create_dir_all(step.path("in/model")).expect("model");
        step.write("in/model/config.json", "{\"hidden\": 4}");
        let metadata = format!("owner={GITHUB_TOKEN}");
        let outcome = step.run(&[
            "register",
            "--model-dir",
            "in/model",
            "--name",
            "support-bot",
            "--metadata",
            &metadata,
            "--provenance",
            ".gantry/provenance.json",
        ]);
        assert_eq!(outcome.code, 0, "{mode:?}: {}", outcome.transcript());
        written.outcome(&format!("{mode:?} register"), &outcome, mode);
        let shown = step.run(&["--format", "json", "registry", "show", "support-bot"]);
        assert_eq!(shown.code, 0, "{mode:?}: {}", shown.transcript());
        assert!(
            shown.stdout.contains("\"owner\": \"***\""),
            "{}",
            shown.stdout
        );
        written.outcome(&format!("{mode:?} registry show"), &shown, mode);
        written.files(step.directory.path(), &step.path("in"));
        written.forge(&forge);
        written.assert_clean(&format!("train and registry ({mode:?})"));
    }
    let mut written = Written::default();
    written.server("tracking server", &tracking);
    written.assert_clean("the tracking server's requests");
}

#[test]
fn a_value_too_plain_to_mask_is_said_and_does_not_corrupt_output() {
    let server = echoing_model_server();
    let forge = FakeForge::start();
    let mut step = step(Mode::GitHub, &forge);
    step.set("OPENAI_API_KEY", "1");
    step.write(
        "in/set.jsonl",
        &format!("{}\n", json!({"id": "a", "task": "even", "messages": [{"role": "user", "content": "hi"}], "expected": "hi"})),
    );
    let outcome = step.run(&[
        "eval",
        "--endpoint",
        &format!("{}/v1", server.url()),
        "--model",
        "m",
        "--dataset",
        "in/set.jsonl",
    ]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    assert!(
        outcome.stdout.contains(
            "$OPENAI_API_KEY is not masked in gantry's output: it is shorter than 8 characters"
        ),
        "{}",
        outcome.transcript()
    );
    assert!(
        !outcome.stdout.contains("::add-mask::1"),
        "{}",
        outcome.transcript()
    );
    let results = step.read(".gantry/eval/results.jsonl");
    let line: serde_json::Value = serde_json::from_str(results.trim()).expect("valid JSON");
    assert_eq!(
        line["scores"].as_object().map(|scores| !scores.is_empty()),
        Some(true),
        "{line}"
    );
}
