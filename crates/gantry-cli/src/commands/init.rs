//! `gantry init`: the pipeline written into a team's repository — GitHub
//! caller workflows of gantry's reusable workflows, or a GitLab pipeline of
//! its CI/CD components — pinned to the commit of the running gantry's
//! release, with what the repository already has filled in.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use gantry_core::ExitCode;
use serde::Serialize;

use crate::cli::{InitArgs, InitForge, OutputFormat};
use crate::commands::Session;
use crate::printer::Printer;

/// The repository gantry's releases come from, as `OWNER/REPO`.
const RELEASE_REPOSITORY: &str = "gantry-dev/gantry";

/// A command that fails loudly until someone replaces it.
const TODO_COMMAND: &str =
    "echo 'TODO(gantry init): set this command in the pipeline gantry init wrote' >&2; exit 2";

/// What `gantry init` found in the repository.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Project {
    /// The model's name in the registry.
    pub(crate) name: String,
    /// Data files or directories, relative to the repository root.
    pub(crate) data: Vec<String>,
    /// `paths:` / `changes:` globs that mean "the data changed".
    pub(crate) data_globs: Vec<String>,
    /// The eval set.
    pub(crate) eval_set: Option<String>,
    /// How the project trains.
    pub(crate) train_command: Option<String>,
    /// How the project evaluates a model.
    pub(crate) eval_command: Option<String>,
    /// The user's own code checks.
    pub(crate) code_check: Option<String>,
    /// An eval-gate policy.
    pub(crate) policy: Option<String>,
    /// What candidates are gated against.
    pub(crate) baseline: String,
    /// Whether the baseline is a results file in the repository.
    pub(crate) baseline_is_file: bool,
    /// The branch data lands on.
    pub(crate) default_branch: String,
}

/// One file `init` writes.
struct Planned {
    path: PathBuf,
    text: String,
    /// Why it went to this path, when not the usual one.
    note: Option<String>,
}

pub(crate) fn run(args: &InitArgs, _session: &Session<'_>, printer: &Printer) -> Result<ExitCode> {
    let root = &args.dir;
    if !root.is_dir() {
        bail!("--dir {}: not a directory", root.display());
    }
    let project = detect(root, args.model_name.as_deref())?;
    let pin = match &args.pin {
        Some(pin) => check_pin(pin)?,
        None => resolve_pin(&args.release_repository)?,
    };
    let files = render(&project, &pin, args.forge, &args.component_project, root)?;

    let mut conflicts = Vec::new();
    for file in &files {
        let target = root.join(&file.path);
        if target.exists() && !args.force && !args.dry_run {
            let existing = std::fs::read_to_string(&target).unwrap_or_default();
            if existing != file.text {
                conflicts.push(file.path.display().to_string());
            }
        }
    }
    if !conflicts.is_empty() {
        bail!(
            "{} already exist{} and would change; nothing was written (see the change with --dry-run, replace with --force)",
            conflicts.join(", "),
            if conflicts.len() == 1 { "s" } else { "" }
        );
    }

    let mut written = Vec::new();
    let mut diffs = Vec::new();
    for file in &files {
        let target = root.join(&file.path);
        let existing = std::fs::read_to_string(&target).ok();
        if args.dry_run {
            let change = diff(&file.path, existing.as_deref(), &file.text);
            if printer.format() == OutputFormat::Text {
                printer.data(&change);
            }
            diffs.push(change);
            continue;
        }
        if existing.as_deref() == Some(file.text.as_str()) {
            printer.info(&format!("{}: unchanged", file.path.display()));
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, &file.text)
            .with_context(|| format!("writing {}", target.display()))?;
        written.push(file.path.display().to_string());
        printer.info(&format!("wrote {}", file.path.display()));
        if let Some(note) = &file.note {
            printer.info(&format!("  {note}"));
        }
    }
    let todos: Vec<String> = files
        .iter()
        .flat_map(|file| {
            file.text
                .lines()
                .enumerate()
                .filter(|(_, line)| line.trim_start().starts_with("# TODO(gantry init)"))
                .map(|(number, line)| {
                    format!(
                        "{}:{}: {}",
                        file.path.display(),
                        number + 1,
                        line.trim_start()
                            .trim_start_matches("# TODO(gantry init): ")
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if printer.format() == OutputFormat::Json {
        printer.json(&serde_json::json!({
            "forge": match args.forge { InitForge::Github => "github", InitForge::Gitlab => "gitlab" },
            "pin": pin,
            "project": project,
            "files": files.iter().map(|file| file.path.display().to_string()).collect::<Vec<_>>(),
            "written": written,
            "dry_run": args.dry_run,
            "diff": diffs.concat(),
            "todo": todos,
        }));
    } else if !args.dry_run {
        let mut found = vec![format!("model {}", project.name)];
        found.push(format!("data {}", project.data.join(", ")));
        if let Some(eval_set) = &project.eval_set {
            found.push(format!("eval set {eval_set}"));
        }
        if let Some(command) = &project.train_command {
            found.push(format!("training `{command}`"));
        }
        if let Some(command) = &project.eval_command {
            found.push(format!("evaluation `{command}`"));
        }
        printer.data(&format!(
            "gantry init: {} file(s) pinned to {RELEASE_REPOSITORY}@{pin} (v{}); found {}",
            files.len(),
            crate::packaging::VERSION,
            found.join(", ")
        ));
        if !todos.is_empty() {
            printer.data("Still to fill in (marked `TODO(gantry init)`):");
            for todo in &todos {
                printer.data(&format!("  {todo}"));
            }
        }
    }
    Ok(ExitCode::PASS)
}

/// Looks at the repository: data, eval set, entry points, policy, baseline.
pub(crate) fn detect(root: &Path, name: Option<&str>) -> Result<Project> {
    let name = match name {
        Some(name) => sanitize_name(name).with_context(|| {
            format!("--model-name {name:?}: use letters, digits, '.', '_' and '-'")
        })?,
        None => {
            let directory = root
                .canonicalize()
                .ok()
                .and_then(|path| {
                    path.file_name()
                        .map(|name| name.to_string_lossy().into_owned())
                })
                .unwrap_or_default();
            sanitize_name(&directory).unwrap_or_else(|| "model".to_owned())
        }
    };
    let exists = |relative: &str| root.join(relative).exists();
    let data_extensions = ["jsonl", "json", "csv", "parquet", "txt", "gz", "zst"];
    let has_data_files = |dir: &Path| -> bool {
        walk(dir, 3).iter().any(|path| {
            path.extension()
                .is_some_and(|ext| data_extensions.iter().any(|known| ext == *known))
        })
    };
    let mut data = Vec::new();
    for dir in ["data", "datasets", "dataset"] {
        if root.join(dir).is_dir() && has_data_files(&root.join(dir)) {
            data.push(format!("{dir}/"));
            break;
        }
    }
    if data.is_empty() {
        for file in list_files(root) {
            let lower = file.to_ascii_lowercase();
            if (lower.contains("train") || lower.contains("data"))
                && [".jsonl", ".parquet", ".csv", ".jsonl.gz", ".jsonl.zst"]
                    .iter()
                    .any(|ext| lower.ends_with(ext))
            {
                data.push(file);
            }
        }
    }
    let data_globs = if data.is_empty() {
        vec!["data/**".to_owned()]
    } else {
        data.iter()
            .map(|path| match path.strip_suffix('/') {
                Some(dir) => format!("{dir}/**"),
                None => path.clone(),
            })
            .collect()
    };
    if data.is_empty() {
        data.push("data/".to_owned());
    }

    let mut eval_set = None;
    'eval: for dir in ["evals", "eval", "evaluation", "data", "."] {
        let path = root.join(dir);
        if !path.is_dir() {
            continue;
        }
        for file in list_files(&path) {
            let lower = file.to_ascii_lowercase();
            if lower.ends_with(".jsonl")
                && (lower.starts_with("eval")
                    || lower.contains("eval-set")
                    || lower.contains("eval_set")
                    || lower.starts_with("test"))
                && !lower.contains("result")
                && !lower.contains("baseline")
            {
                eval_set = Some(if dir == "." {
                    file
                } else {
                    format!("{dir}/{file}")
                });
                break 'eval;
            }
        }
    }

    let script = |candidates: &[(&str, &str)]| -> Option<String> {
        candidates
            .iter()
            .find(|(path, _)| exists(path))
            .map(|(_, command)| (*command).to_owned())
    };
    let makefile_target = |target: &str| -> bool {
        std::fs::read_to_string(root.join("Makefile")).is_ok_and(|text| {
            text.lines()
                .any(|line| line.starts_with(&format!("{target}:")))
        })
    };
    let train_command = script(&[
        ("scripts/train.sh", "bash scripts/train.sh"),
        ("train.sh", "bash train.sh"),
        ("train.py", "python train.py"),
        ("scripts/train.py", "python scripts/train.py"),
        ("src/train.py", "python src/train.py"),
    ])
    .or_else(|| makefile_target("train").then(|| "make train".to_owned()));
    let eval_command = script(&[
        ("scripts/eval.sh", "bash scripts/eval.sh"),
        ("eval.sh", "bash eval.sh"),
        ("eval.py", "python eval.py"),
        ("evaluate.py", "python evaluate.py"),
        ("scripts/eval.py", "python scripts/eval.py"),
        ("scripts/evaluate.py", "python scripts/evaluate.py"),
    ])
    .or_else(|| makefile_target("eval").then(|| "make eval".to_owned()));
    let code_check = if makefile_target("test") {
        Some("make test".to_owned())
    } else if exists("pyproject.toml") && (exists("tests") || exists("test")) {
        Some("python -m pip install -e . pytest && python -m pytest".to_owned())
    } else if exists("Cargo.toml") {
        Some("cargo test --locked".to_owned())
    } else if exists("package.json") {
        Some("npm ci && npm test".to_owned())
    } else {
        None
    };
    let policy = [
        "eval-policy.toml",
        "gate-policy.toml",
        "policy.toml",
        ".gantry/policy.toml",
    ]
    .iter()
    .find(|path| exists(path))
    .map(|path| (*path).to_owned());
    let baseline_file = ["evals", "eval", "."].iter().find_map(|dir| {
        let path = root.join(dir);
        list_files(&path).into_iter().find_map(|file| {
            let lower = file.to_ascii_lowercase();
            (lower.contains("baseline") && (lower.ends_with(".jsonl") || lower.ends_with(".json")))
                .then(|| {
                    if *dir == "." {
                        file
                    } else {
                        format!("{dir}/{file}")
                    }
                })
        })
    });
    let (baseline, baseline_is_file) = match baseline_file {
        Some(path) => (path, true),
        None => (format!("registry:{name}@production"), false),
    };
    Ok(Project {
        name,
        data,
        data_globs,
        eval_set,
        train_command,
        eval_command,
        code_check,
        policy,
        baseline,
        baseline_is_file,
        default_branch: default_branch(root),
    })
}

/// The pin the checked-in examples show: zeros where `gantry init` writes the
/// commit of the release it belongs to (a file cannot name the commit that
/// contains it, and the examples are in gantry's own repository).
pub(crate) const EXAMPLE_PIN: &str = "0000000000000000000000000000000000000000";

/// `examples/github/*.yml` and `examples/gitlab/.gitlab-ci.yml`: what
/// `gantry init` writes for the example project at `project`.
pub(crate) fn example_pipelines(project: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut detected = detect(project, Some("support-bot"))?;
    detected.default_branch = "main".to_owned();
    let header = |forge: &str| {
        format!(
            "# Example: what `gantry init --forge {forge}` writes for examples/llm-project\n\
             # (kept in sync by `cargo xtask codegen`). The zeros stand for the commit\n\
             # of the gantry release you run: `gantry init` writes the real one.\n"
        )
    };
    let mut files = Vec::new();
    for (forge, name, directory) in [
        (InitForge::Github, "github", "examples/github"),
        (InitForge::Gitlab, "gitlab", "examples/gitlab"),
    ] {
        for planned in render(
            &detected,
            EXAMPLE_PIN,
            forge,
            RELEASE_REPOSITORY,
            Path::new("/nonexistent"),
        )? {
            let file_name = planned
                .path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((
                Path::new(directory).join(file_name),
                format!("{}{}", header(name), planned.text),
            ));
        }
    }
    Ok(files)
}

/// The files for `forge`, rendered.
fn render(
    project: &Project,
    pin: &str,
    forge: InitForge,
    component_project: &str,
    root: &Path,
) -> Result<Vec<Planned>> {
    let mut environment = minijinja::Environment::new();
    environment.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .block_delimiters("<%", "%>")
            .variable_delimiters("<<", ">>")
            .comment_delimiters("<#", "#>")
            .build()
            .context("the init templates' syntax")?,
    );
    environment.set_trim_blocks(true);
    environment.set_lstrip_blocks(true);
    environment.set_keep_trailing_newline(true);
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let context = minijinja::context! {
        project => project,
        name => project.name,
        data => project.data,
        data_globs => project.data_globs,
        eval_set => project.eval_set,
        train_command => project.train_command,
        eval_command => project.eval_command,
        code_check => project.code_check,
        policy => project.policy,
        baseline => project.baseline,
        baseline_is_file => project.baseline_is_file,
        default_branch => project.default_branch,
        todo_command => TODO_COMMAND,
        version => crate::packaging::VERSION,
        pin => pin,
        repository => RELEASE_REPOSITORY,
        component_project => component_project,
    };
    let templates: &[(&str, &str, &str)] = match forge {
        InitForge::Github => &[
            (
                ".github/workflows/llm-pr-checks.yml",
                "pr",
                include_str!("init/github-pr-checks.yml"),
            ),
            (
                ".github/workflows/llm-data-update.yml",
                "data",
                include_str!("init/github-data-update.yml"),
            ),
            (
                ".github/workflows/llm-weekly-eval.yml",
                "weekly",
                include_str!("init/github-weekly-eval.yml"),
            ),
            (
                ".github/workflows/llm-deploy.yml",
                "deploy",
                include_str!("init/github-deploy.yml"),
            ),
        ],
        InitForge::Gitlab => &[(
            ".gitlab-ci.yml",
            "gitlab",
            include_str!("init/gitlab-ci.yml"),
        )],
    };
    let mut files = Vec::new();
    for (path, name, source) in templates {
        let template = environment
            .template_from_named_str(name, source)
            .with_context(|| format!("the {path} template"))?;
        let text = template
            .render(&context)
            .with_context(|| format!("rendering {path}"))?;
        let mut planned = Planned {
            path: PathBuf::from(path),
            text,
            note: None,
        };
        // A project with a pipeline of its own keeps it: gantry's goes beside
        // it, with the one line that includes it.
        if *path == ".gitlab-ci.yml" && root.join(path).exists() {
            let existing = std::fs::read_to_string(root.join(path)).unwrap_or_default();
            if !existing.contains("gantry init --forge gitlab") {
                planned.path = PathBuf::from(".gitlab/gantry.gitlab-ci.yml");
                planned.note = Some(
                    "your .gitlab-ci.yml is left as it is: add `include: [{ local: .gitlab/gantry.gitlab-ci.yml }]` to it (and merge its `stages:` into yours)"
                        .to_owned(),
                );
            }
        }
        files.push(planned);
    }
    Ok(files)
}

/// A unified diff from what is there (or nothing) to what init would write.
fn diff(path: &Path, existing: Option<&str>, new: &str) -> String {
    let old = existing.unwrap_or("");
    let text = similar::TextDiff::from_lines(old, new);
    let from = if existing.is_some() {
        format!("a/{}", path.display())
    } else {
        "/dev/null".to_owned()
    };
    text.unified_diff()
        .context_radius(3)
        .header(&from, &format!("b/{}", path.display()))
        .to_string()
}

/// A 40-hex commit.
fn check_pin(pin: &str) -> Result<String> {
    let pin = pin.trim().to_ascii_lowercase();
    if pin.len() != 40 || !pin.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        bail!("--pin {pin:?}: give a full 40-character commit SHA (a tag or branch can move)");
    }
    Ok(pin)
}

/// The commit of tag vVERSION in `repository`, by `git ls-remote`.
fn resolve_pin(repository: &str) -> Result<String> {
    let tag = format!("refs/tags/v{}", crate::packaging::VERSION);
    let output = std::process::Command::new("git")
        .args([
            "ls-remote",
            "--tags",
            repository,
            &tag,
            &format!("{tag}^{{}}"),
        ])
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| {
            format!("cannot run git to find the commit of gantry's {tag}; give it with --pin SHA")
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "cannot read the tags of {repository} ({}); give the commit of gantry's v{} with --pin SHA",
            stderr
                .lines()
                .last()
                .unwrap_or("git ls-remote failed")
                .trim(),
            crate::packaging::VERSION
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut plain = None;
    for line in stdout.lines() {
        let mut fields = line.split_whitespace();
        let (Some(sha), Some(name)) = (fields.next(), fields.next()) else {
            continue;
        };
        // An annotated tag's peeled line names the commit; prefer it.
        if name.ends_with("^{}") {
            return check_pin(sha);
        }
        plain = Some(sha.to_owned());
    }
    match plain {
        Some(sha) => check_pin(&sha),
        None => bail!(
            "{repository} has no tag v{}; give the commit to pin with --pin SHA",
            crate::packaging::VERSION
        ),
    }
}

/// The branch data lands on: origin's HEAD, else the current branch, else main.
fn default_branch(root: &Path) -> String {
    let git = |args: &[&str]| crate::commands::lineage::git_output(Some(root), args);
    git(&["symbolic-ref", "--short", "refs/remotes/origin/HEAD"])
        .and_then(|head| head.strip_prefix("origin/").map(str::to_owned))
        .or_else(|| git(&["symbolic-ref", "--short", "HEAD"]))
        .filter(|branch| {
            branch
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"._/-".contains(&byte))
        })
        .unwrap_or_else(|| "main".to_owned())
}

/// A registry model name from free text: lowercase letters, digits, `.`, `_`, `-`.
fn sanitize_name(text: &str) -> Option<String> {
    let name: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|char| {
            if char.is_ascii_alphanumeric() || "._-".contains(char) {
                char
            } else {
                '-'
            }
        })
        .collect();
    let name = name
        .trim_matches(|char: char| !char.is_ascii_alphanumeric())
        .to_owned();
    (!name.is_empty() && name.len() <= 64).then_some(name)
}

/// The names of the plain files in `dir`, sorted.
fn list_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(std::result::Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

/// Files under `dir`, at most `depth` levels down, hidden ones left out.
fn walk(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), 0)];
    while let Some((path, level)) = pending.pop() {
        for entry in std::fs::read_dir(&path)
            .into_iter()
            .flatten()
            .filter_map(std::result::Result::ok)
        {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            match entry.file_type() {
                Ok(kind) if kind.is_dir() && level < depth => {
                    pending.push((entry.path(), level + 1))
                }
                Ok(kind) if kind.is_file() => found.push(entry.path()),
                _ => {}
            }
            if found.len() > 10_000 {
                return found;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_registry_safe() {
        assert_eq!(sanitize_name("My Project!").as_deref(), Some("my-project"));
        assert_eq!(sanitize_name("--"), None);
        assert_eq!(
            sanitize_name("llm_project.v2").as_deref(),
            Some("llm_project.v2")
        );
    }

    #[test]
    fn a_pin_is_a_full_commit() {
        assert!(check_pin("v0.1.0").is_err());
        assert!(check_pin(&"a".repeat(39)).is_err());
        assert_eq!(check_pin(&"AB".repeat(20)).ok(), Some("ab".repeat(20)));
    }
}
