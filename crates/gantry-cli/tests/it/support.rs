//! A `gantry` command with a clean environment and a scratch directory, like a CI step.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

/// A scratch workspace plus the environment a step would see.
pub(crate) struct Step {
    pub(crate) directory: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Step {
    /// A step on a laptop: no CI variables at all.
    pub(crate) fn local() -> Step {
        Step {
            directory: tempfile::tempdir().expect("tempdir"),
            env: vec![("NO_COLOR".into(), "1".into())],
        }
    }

    /// A GitHub Actions step with `$GITHUB_OUTPUT` and `$GITHUB_STEP_SUMMARY` files.
    pub(crate) fn github() -> Step {
        let mut step = Step::local();
        let output = step.path("github_output");
        let summary = step.path("step_summary");
        step.set("GITHUB_ACTIONS", "true")
            .set("GITHUB_REPOSITORY", "org/models")
            .set("GITHUB_SHA", "0000000000000000000000000000000000000merge")
            .set("GITHUB_WORKFLOW", "eval")
            .set("GITHUB_RUN_ID", "77")
            .set("GITHUB_SERVER_URL", "https://github.test")
            .set("GITHUB_OUTPUT", output.to_str().expect("utf8"))
            .set("GITHUB_STEP_SUMMARY", summary.to_str().expect("utf8"))
            .set("GANTRY_HTTP_BACKOFF_MS", "1");
        step
    }

    /// A GitHub step for pull request `number`; `fork` makes the head a fork.
    pub(crate) fn github_pull_request(number: u64, fork: bool) -> Step {
        let mut step = Step::github();
        let head_repository = if fork { "someone/models" } else { "org/models" };
        let event = serde_json::json!({
            "pull_request": {
                "number": number,
                "head": { "sha": "1111111111111111111111111111111111111head", "repo": { "full_name": head_repository } },
                "base": { "repo": { "full_name": "org/models" } },
            }
        });
        let path = step.write("event.json", &event.to_string());
        step.set("GITHUB_EVENT_NAME", "pull_request")
            .set("GITHUB_EVENT_PATH", path.to_str().expect("utf8"));
        step
    }

    /// A GitLab merge request pipeline job.
    pub(crate) fn gitlab_merge_request(iid: u64) -> Step {
        let mut step = Step::local();
        let dotenv = step.path("gantry.env");
        let iid = iid.to_string();
        step.set("GITLAB_CI", "true")
            .set("CI_PROJECT_ID", "5")
            .set("CI_PROJECT_PATH", "group/models")
            .set("CI_COMMIT_SHA", "2222222222222222222222222222222222222sha")
            .set("CI_MERGE_REQUEST_IID", &iid)
            .set("CI_MERGE_REQUEST_PROJECT_ID", "5")
            .set("CI_MERGE_REQUEST_SOURCE_PROJECT_ID", "5")
            .set("CI_JOB_NAME", "eval")
            .set("CI_JOB_URL", "https://gitlab.test/group/models/-/jobs/9")
            .set("GANTRY_DOTENV", dotenv.to_str().expect("utf8"))
            .set("GANTRY_HTTP_BACKOFF_MS", "1");
        step
    }

    pub(crate) fn set(&mut self, name: &str, value: &str) -> &mut Step {
        self.env.retain(|(existing, _)| existing != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    pub(crate) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write fixture");
        path
    }

    pub(crate) fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Starts `gantry args…` in the workspace without waiting for it.
    pub(crate) fn spawn(&self, args: &[&str]) -> std::process::Child {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"));
        command
            .env_clear()
            .current_dir(self.directory.path())
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command.spawn().expect("start gantry")
    }

    /// Runs `gantry args…` in the workspace.
    pub(crate) fn run(&self, args: &[&str]) -> Outcome {
        let mut command = assert_cmd::Command::cargo_bin("gantry").expect("gantry binary");
        command
            .env_clear()
            .current_dir(self.directory.path())
            .args(args);
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let output = command.output().expect("run gantry");
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            root: self.directory.path().to_owned(),
        }
    }
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    root: PathBuf,
}

impl Outcome {
    /// stdout and stderr with the scratch directory replaced by `[ROOT]`.
    pub(crate) fn transcript(&self) -> String {
        let root = self.root.to_string_lossy();
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
        .replace(root.as_ref(), "[ROOT]")
    }

    #[expect(
        dead_code,
        reason = "kept for tests that compare files under the workspace"
    )]
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
}

/// The tiny-lm binary beside gantry's (built by `cargo test --workspace`;
/// built here when this package is tested alone).
pub(crate) fn tiny_lm() -> PathBuf {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_gantry")).with_file_name("tiny-lm");
    if !binary.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "tiny-lm"])
            .status()
            .expect("cargo build -p tiny-lm");
        assert!(status.success(), "building tiny-lm failed");
    }
    binary
}

/// The outputs in a `$GITHUB_OUTPUT` file (`name<<DELIMITER` blocks).
pub(crate) fn github_outputs(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut outputs = std::collections::BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some((name, delimiter)) = line.split_once("<<") else {
            continue;
        };
        let value: Vec<&str> = lines
            .by_ref()
            .take_while(|line| *line != delimiter)
            .collect();
        outputs.insert(name.to_owned(), value.join("\n"));
    }
    outputs
}

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Polls `check` every 100 ms until it holds; fails the test after `timeout`.
pub(crate) fn wait_for(what: &str, timeout: std::time::Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A real Prometheus scraping `targets` every second, in the step's
/// directory; stopped on drop. `None` when it is not installed (and
/// GANTRY_REQUIRE_SERVICES is not set).
pub(crate) struct Prometheus {
    child: std::process::Child,
    pub(crate) url: String,
}

impl Prometheus {
    pub(crate) fn start(step: &Step, targets: &[&str]) -> Option<Prometheus> {
        let binary = gantry_test::require_tool("prometheus")?;
        let targets: Vec<String> = targets.iter().map(|target| format!("'{target}'")).collect();
        let config = step.write(
            "prom.yml",
            &format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gantry\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        );
        let port = free_port();
        let child = std::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                step.path("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus");
        let url = format!("http://127.0.0.1:{port}");
        wait_for(
            "prometheus to be ready",
            std::time::Duration::from_secs(30),
            || {
                reqwest::blocking::get(format!("{url}/-/ready"))
                    .is_ok_and(|response| response.status().is_success())
            },
        );
        // Every target scraped once: what happens after is in the series.
        let query = format!("count(up == 1) >= {}", targets.len());
        wait_for(
            "prometheus to scrape every target",
            std::time::Duration::from_secs(30),
            || {
                reqwest::blocking::Client::new()
                    .post(format!("{url}/api/v1/query"))
                    .form(&[("query", query.as_str())])
                    .send()
                    .and_then(reqwest::blocking::Response::json::<serde_json::Value>)
                    .is_ok_and(|body| {
                        body["data"]["result"]
                            .as_array()
                            .is_some_and(|result| !result.is_empty())
                    })
            },
        );
        Some(Prometheus { child, url })
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Generates tiny-lm's data in `dir/data` and trains a model for `steps`
/// steps of `batch_size` sequences into `dir/model`; returns the model.
pub(crate) fn train_tiny(dir: &Path, steps: u32, batch_size: u32) -> PathBuf {
    let tiny = tiny_lm();
    let run = |command: &mut std::process::Command| {
        let output = command.output().expect("tiny-lm");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(std::process::Command::new(&tiny)
        .args(["gen-data", "--out"])
        .arg(dir.join("data")));
    run(std::process::Command::new(&tiny)
        .args(["train", "--steps", &steps.to_string()])
        .args(["--batch-size", &batch_size.to_string(), "--data"])
        .arg(dir.join("data/train.jsonl"))
        .arg("--output-dir")
        .arg(dir.join("model"))
        .arg("--checkpoint-dir")
        .arg(dir.join("checkpoints")));
    dir.join("model")
}

/// A `tiny-lm serve` process, stopped on drop.
pub(crate) struct Server {
    child: std::process::Child,
    pub(crate) url: String,
}

impl Server {
    pub(crate) fn start(model: &Path, name: &str, extra: &[&str]) -> Server {
        let mut child = std::process::Command::new(tiny_lm())
            .args([
                "serve",
                "--port",
                "0",
                "--served-model-name",
                name,
                "--model",
            ])
            .arg(model)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tiny-lm serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("address line");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        // One request before Prometheus scrapes: the series exist from its
        // first scrape, so the traffic after counts as an increase.
        let answered = reqwest::blocking::Client::new()
            .post(format!("{url}/v1/chat/completions"))
            .json(&serde_json::json!({"model": name, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .is_ok_and(|response| response.status().is_success() || response.status().is_server_error());
        assert!(answered, "tiny-lm serve at {url} did not answer");
        Server { child, url }
    }

    pub(crate) fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("{}/v1", self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A trained tiny model, validated training data, its evaluation against a
/// healthy server, and `tiny 0.1.0` registered with all of it (and a
/// passing gate) as `tiny@production`. Returns the model directory.
pub(crate) fn production(step: &Step) -> std::path::PathBuf {
    let dir = step.directory.path();
    train_tiny(dir, 40, 8);
    let validated = step.run(&[
        "validate-data",
        "--ci",
        "local",
        "--data",
        "data/train.jsonl",
        "--tokenizer",
        "chars",
        "--publish",
        "summary",
    ]);
    assert!(validated.code <= 1, "{}", validated.transcript());
    let server = Server::start(&dir.join("model"), "tiny", &[]);
    evaluate(step, &server.endpoint(), "tiny", "baseline");
    // The gate it passed on its way to production.
    step.write("gate.json", r#"{"verdict": "pass"}"#);
    let registered = step.run(&[
        "register",
        "--gate-report",
        "gate.json",
        "--ci",
        "local",
        "--model-dir",
        "model",
        "--name",
        "tiny",
        "--eval-results",
        "baseline/results.jsonl",
        "--eval-set",
        "data/eval.jsonl",
        "--data-lock",
        ".gantry/validate-data/data.lock",
        "--data-summary",
        ".gantry/validate-data/summary.json",
        "--alias",
        "production",
    ]);
    assert_eq!(registered.code, 0, "{}", registered.transcript());
    // Production's logged prompts: a sample like the training data, and one
    // that is not (the first records only, a shifted mix).
    let train = step.read("data/train.jsonl");
    let like: Vec<&str> = train.lines().step_by(5).collect();
    step.write("traffic.jsonl", &(like.join("\n") + "\n"));
    let shifted: Vec<&str> = train.lines().take(300).collect();
    step.write("shifted.jsonl", &(shifted.join("\n") + "\n"));
    dir.join("model")
}

/// `gantry eval` of the eval set at `endpoint`: the traffic Prometheus sees.
pub(crate) fn evaluate(step: &Step, endpoint: &str, model: &str, out: &str) {
    let evaluated = step.run(&[
        "eval",
        "--ci",
        "local",
        "--endpoint",
        endpoint,
        "--model",
        model,
        "--dataset",
        "data/eval.jsonl",
        "--scorer",
        "normalized-exact",
        "--max-tokens",
        "16",
        "--out",
        out,
        "--publish",
        "summary",
    ]);
    assert_eq!(evaluated.code, 0, "{}", evaluated.transcript());
}

/// Flips one byte of the blob `digest` in the step's file registry (stored
/// read-only, as the registry leaves it).
pub(crate) fn tamper_blob(step: &Step, digest: &str) {
    let blob = step
        .path(".gantry/registry/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let mut permissions = std::fs::metadata(&blob).expect("blob").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&blob, permissions).expect("chmod");
    let mut bytes = std::fs::read(&blob).expect("read");
    bytes[100] ^= 1;
    std::fs::write(&blob, &bytes).expect("write");
}

/// The file's `sha256:…` digest, as manifests and lineage write it.
pub(crate) fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    gantry_core::Digest::of_bytes(&bytes).to_string()
}

/// Held by a test while it runs a one-node Slurm cluster: one at a time,
/// as the machine has one node name for them all.
pub(crate) static SLURM: std::sync::Mutex<()> = std::sync::Mutex::new(());
