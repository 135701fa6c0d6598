//! `gantry register` and `gantry registry` on a trained tiny-lm: lineage from
//! validate-data to eval-gate, registry baselines, concurrency, crashes and
//! the verdicts (exit 1) and errors (exit 2) users see.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Step, github_outputs, sha256, train_tiny};

/// Generates tiny-lm's data and trains a model for a few steps in `dir`.
fn trained_model(dir: &Path) -> PathBuf {
    train_tiny(dir, 3, 4)
}

fn fixture(relative: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../gantry-eval/tests/fixtures/tiny-lm")
        .join(relative)
        .display()
        .to_string()
}

#[test]
fn lineage_runs_from_the_data_lock_to_the_gate_and_the_registered_evaluation_is_a_baseline() {
    let mut step = Step::github();
    step.set("GITHUB_ACTOR", "release-bot")
        .set("GITHUB_REF", "refs/heads/main");
    let model = trained_model(step.directory.path());

    // The data lock comes from the real validate-data.
    let validated = step.run(&[
        "validate-data",
        "--data",
        "data/train.jsonl",
        "--tokenizer",
        "chars",
        "--publish",
        "summary",
    ]);
    assert!(validated.code <= 1, "{}", validated.transcript());
    let lock = step.path(".gantry/validate-data/data.lock");
    let lock_json: serde_json::Value =
        serde_json::from_str(&step.read(".gantry/validate-data/data.lock")).expect("lock");
    // run.json as train-on-runner writes it (docs/register-model.md lists the fields read).
    step.write(
        "run.json",
        &serde_json::json!({
            "run_id": "run-42",
            "data": {"dataset_digest": lock_json["dataset_digest"], "lock_digest": sha256(&lock)},
            "outputs": [{"path": "model.safetensors", "sha256": sha256(&model.join("model.safetensors"))}],
        })
        .to_string(),
    );
    // The gate report comes from the real eval-gate.
    let gated = step.run(&[
        "eval-gate",
        "--baseline",
        &fixture("good/results.jsonl"),
        "--candidate",
        &fixture("good/results.jsonl"),
        "--publish",
        "summary",
    ]);
    assert_eq!(gated.code, 0, "{}", gated.transcript());

    let registered = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny-lm",
        "--run-record",
        "run.json",
        "--data-lock",
        ".gantry/validate-data/data.lock",
        "--data-summary",
        ".gantry/validate-data/summary.json",
        "--gate-report",
        ".gantry/eval-gate/gate.json",
        "--eval-results",
        &fixture("good/results.jsonl"),
        "--alias",
        "production",
        "--metadata",
        "owner=ml-platform",
        "--provenance",
        "provenance.json",
    ]);
    assert_eq!(registered.code, 0, "{}", registered.transcript());
    let outputs = github_outputs(&step.read("github_output"));
    assert_eq!(outputs["model-name"], "tiny-lm");
    assert_eq!(outputs["model-version"], "0.1.0");
    assert!(outputs["digest"].starts_with("sha256:"), "{outputs:?}");
    assert_eq!(outputs["uri"], "file:.gantry/registry");
    assert_eq!(
        outputs["reference"],
        format!("tiny-lm@{}", outputs["digest"])
    );
    let statement: serde_json::Value =
        serde_json::from_str(&step.read("provenance.json")).expect("provenance JSON");
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        format!(
            "sha256:{}",
            statement["subject"][0]["digest"]["sha256"]
                .as_str()
                .unwrap_or_default()
        ),
        outputs["digest"]
    );
    let dependencies = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .expect("dependencies");
    assert_eq!(
        dependencies[0]["digest"]["gitCommit"],
        "0000000000000000000000000000000000000merge"
    );
    assert!(
        dependencies
            .iter()
            .any(|dependency| dependency["digest"]["sha256"].as_str()
                == sha256(&lock).strip_prefix("sha256:"))
    );
    assert_eq!(outputs["provenance-file"], "provenance.json");
    let summary = step.read("step_summary");
    assert!(
        summary.contains("## gantry register: tiny-lm 0.1.0"),
        "{summary}"
    );
    assert!(
        summary.contains("`model.safetensors`") && summary.contains("137536 parameters"),
        "{summary}"
    );

    let shown = step.run(&["registry", "show", "tiny-lm@production"]);
    assert_eq!(shown.code, 0, "{}", shown.transcript());
    let manifest: serde_json::Value = serde_json::from_str(&shown.stdout).expect("manifest JSON");
    assert_eq!(
        manifest["lineage"]["git"]["commit"],
        "0000000000000000000000000000000000000merge"
    );
    assert_eq!(manifest["lineage"]["git"]["repository"], "org/models");
    assert_eq!(
        manifest["lineage"]["data"]["dataset_digest"],
        lock_json["dataset_digest"]
    );
    assert_eq!(manifest["lineage"]["gate"]["verdict"], "pass");
    assert_eq!(
        manifest["lineage"]["data_summary"]["file_name"],
        "summary.json"
    );
    assert_eq!(manifest["lineage"]["run"]["run_id"], "run-42");
    assert_eq!(manifest["metadata"]["owner"], "ml-platform");

    let verified = step.run(&["registry", "verify", "tiny-lm@production"]);
    assert_eq!(verified.code, 0, "{}", verified.transcript());
    for line in [
        "lineage data.lock → run.json: ok",
        "lineage run.json → model files: ok",
        "lineage gate.json: ok (verdict pass)",
        "3 files and 5 lineage documents verified",
    ] {
        assert!(
            verified.stderr.contains(line),
            "{line}\n{}",
            verified.transcript()
        );
    }

    // The registered evaluation is the baseline of the next gate.
    let same = step.run(&[
        "eval-gate",
        "--baseline",
        "registry:tiny-lm@production",
        "--candidate",
        &fixture("good/results.jsonl"),
        "--publish",
        "summary",
        "--out",
        "gate-same",
    ]);
    assert_eq!(same.code, 0, "{}", same.transcript());
    let gate: serde_json::Value =
        serde_json::from_str(&step.read("gate-same/gate.json")).expect("gate.json");
    let provenance = gate["baseline"]["path"].as_str().unwrap_or_default();
    assert!(
        provenance.starts_with("registry:tiny-lm@production = tiny-lm@0.1.0 (sha256:"),
        "{provenance}"
    );
    assert_eq!(gate["baseline"]["registered"]["version"], "0.1.0");
    assert_eq!(gate["baseline"]["registered"]["name"], "tiny-lm");
    assert!(
        step.read("gate-same/gate.md")
            .contains("- baseline version: tiny-lm 0.1.0")
    );

    // Baseline requirements in the policy: a file is refused where a
    // registry baseline is required, and so is a baseline that is too old.
    step.write(
        "strict.toml",
        "[baseline]\nfrom_registry = true\n\n[[rule]]\n",
    );
    let file_baseline = step.run(&[
        "eval-gate",
        "--baseline",
        &fixture("good/results.jsonl"),
        "--candidate",
        &fixture("good/results.jsonl"),
        "--policy",
        "strict.toml",
        "--publish",
        "summary",
    ]);
    assert_eq!(file_baseline.code, 2, "{}", file_baseline.transcript());
    assert!(
        file_baseline
            .stderr
            .contains("requires a registry baseline"),
        "{}",
        file_baseline.transcript()
    );
    // Registration times have whole seconds: wait past one, so the
    // baseline is certainly older than the 0.09 s the policy allows.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    step.write(
        "fresh.toml",
        "[baseline]\nfrom_registry = true\nmax_age_days = 0.000001\n\n[[rule]]\n",
    );
    let stale = step.run(&[
        "eval-gate",
        "--baseline",
        "registry:tiny-lm@production",
        "--candidate",
        &fixture("good/results.jsonl"),
        "--policy",
        "fresh.toml",
        "--publish",
        "summary",
    ]);
    assert_eq!(stale.code, 2, "{}", stale.transcript());
    assert!(
        stale.stderr.contains("baseline.max_age_days"),
        "{}",
        stale.transcript()
    );
    let worse = step.run(&[
        "eval-gate",
        "--baseline",
        "registry:tiny-lm@production",
        "--candidate",
        &fixture("fewer-steps/results.jsonl"),
        "--publish",
        "summary",
        "--out",
        "gate-worse",
    ]);
    assert_eq!(worse.code, 1, "{}", worse.transcript());
    let missing = step.run(&[
        "eval-gate",
        "--baseline",
        "registry:tiny-lm@staging",
        "--candidate",
        &fixture("good/results.jsonl"),
    ]);
    assert_eq!(missing.code, 2, "{}", missing.transcript());
    assert!(
        missing
            .stderr
            .contains("no alias \"staging\" (aliases: production)"),
        "{}",
        missing.transcript()
    );

    // A second version without lineage; diff and the event log.
    std::fs::write(model.join("README.md"), "# tiny-lm\n").expect("write");
    let second = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny-lm",
        "--alias",
        "candidate",
    ]);
    assert_eq!(second.code, 0, "{}", second.transcript());
    let diff = step.run(&[
        "registry",
        "diff",
        "tiny-lm@production",
        "tiny-lm@candidate",
    ]);
    assert_eq!(diff.code, 0, "{}", diff.transcript());
    assert!(diff.stdout.contains("+ README.md"), "{}", diff.transcript());
    assert!(
        diff.stdout.contains("3 files unchanged"),
        "{}",
        diff.transcript()
    );
    assert!(
        diff.stdout.contains("lineage dataset: sha256:"),
        "{}",
        diff.transcript()
    );
    let events = step.run(&["registry", "events", "tiny-lm"]);
    assert!(
        events
            .stdout
            .contains("release-bot  production: unset → 0.1.0"),
        "{}",
        events.transcript()
    );
    assert!(
        events.stdout.contains("release-bot  registered 0.1.1"),
        "{}",
        events.transcript()
    );
}

#[test]
fn concurrent_registrations_and_kill_9_never_lose_or_break_a_version() {
    let step = Step::local();
    let model = trained_model(step.directory.path());
    let mut children: Vec<_> = (0..16)
        .map(|index| {
            let metadata = format!("attempt={index}");
            step.spawn(&[
                "register",
                "--model-dir",
                "model",
                "--name",
                "tiny",
                "--metadata",
                &metadata,
            ])
        })
        .collect();
    for child in &mut children {
        let status = child.wait().expect("wait");
        assert!(status.success());
    }
    let versions = step.run(&["--format", "json", "registry", "versions", "tiny"]);
    let versions: Vec<serde_json::Value> =
        serde_json::from_str(&versions.stdout).expect("versions JSON");
    assert_eq!(versions.len(), 16);
    let mut digests: Vec<&str> = versions
        .iter()
        .filter_map(|v| v["digest"].as_str())
        .collect();
    digests.sort_unstable();
    digests.dedup();
    assert_eq!(digests.len(), 16);

    // A big file makes registration slow enough to be killed mid-way.
    let big = model.join("shard-00001.bin");
    std::fs::write(&big, vec![7_u8; 96 << 20]).expect("write");
    let mut killed_mid_way = 0;
    for delay_ms in [0, 5, 20, 50, 100] {
        let mut child = step.spawn(&["register", "--model-dir", "model", "--name", "big"]);
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().expect("wait");
        if status.code().is_none() {
            killed_mid_way += 1;
        }
        let listed = step.run(&["--format", "json", "registry", "versions", "big"]);
        if listed.code == 0 {
            let verified = step.run(&["registry", "verify", "big"]);
            assert_eq!(
                verified.code,
                0,
                "a visible version must be whole: {}",
                verified.transcript()
            );
        } else {
            assert!(
                listed.stderr.contains("no model \"big\""),
                "{}",
                listed.transcript()
            );
        }
    }
    assert!(killed_mid_way > 0, "no registration was interrupted");
    let finished = step.run(&["register", "--model-dir", "model", "--name", "big"]);
    assert_eq!(finished.code, 0, "{}", finished.transcript());
    let verified = step.run(&["registry", "verify", "big"]);
    assert_eq!(verified.code, 0, "{}", verified.transcript());
    let listed = step.run(&["--format", "json", "registry", "versions", "big"]);
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&listed.stdout).expect("versions JSON");
    assert_eq!(listed.len(), 1);
    // The killed registrations' temporary blobs went with the next one.
    let leftovers: Vec<_> = std::fs::read_dir(step.path(".gantry/registry/tmp"))
        .expect("tmp")
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let fsck = step.run(&["registry", "fsck"]);
    assert_eq!(fsck.code, 0, "{}", fsck.transcript());
    assert!(fsck.stderr.contains("no damage"), "{}", fsck.transcript());
}

#[test]
fn verdicts_exit_1_and_errors_exit_2_naming_the_problem() {
    let step = Step::local();
    let model = trained_model(step.directory.path());

    let bad_name = step.run(&["register", "--model-dir", "model", "--name", "../etc"]);
    assert_eq!(bad_name.code, 2, "{}", bad_name.transcript());
    assert!(
        bad_name.stderr.contains("invalid model name \"../etc\""),
        "{}",
        bad_name.transcript()
    );
    let missing = step.run(&["register", "--model-dir", "nowhere", "--name", "tiny"]);
    assert_eq!(missing.code, 2, "{}", missing.transcript());
    assert!(
        missing.stderr.contains("--model-dir nowhere"),
        "{}",
        missing.transcript()
    );
    let oci = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny",
        "--registry",
        "oci://127.0.0.1:1/models",
    ]);
    assert_eq!(oci.code, 2, "{}", oci.transcript());
    assert!(
        oci.stderr
            .contains("http://127.0.0.1:1/v2/models/tiny/blobs/")
            && oci.stderr.contains("Connection refused"),
        "an unreachable registry is named: {}",
        oci.transcript()
    );
    let unknown = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny",
        "--registry",
        "s3://bucket/models",
    ]);
    assert_eq!(unknown.code, 2, "{}", unknown.transcript());
    assert!(
        unknown.stderr.contains("expected file:PATH"),
        "{}",
        unknown.transcript()
    );
    let bad_metadata = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny",
        "--metadata",
        "novalue",
    ]);
    assert_eq!(bad_metadata.code, 2, "{}", bad_metadata.transcript());
    assert!(
        bad_metadata.stderr.contains("KEY=VALUE"),
        "{}",
        bad_metadata.transcript()
    );

    let dry = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny",
        "--dry-run",
    ]);
    assert_eq!(dry.code, 0, "{}", dry.transcript());
    assert!(
        dry.stdout
            .contains("is not registered in file:.gantry/registry"),
        "{}",
        dry.transcript()
    );
    assert!(
        !step.path(".gantry/registry/blobs").exists(),
        "a dry run stores nothing"
    );
    let registered = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny",
        "--alias",
        "production",
    ]);
    assert_eq!(registered.code, 0, "{}", registered.transcript());
    let digest = registered
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("digest="))
        .expect("digest output")
        .to_owned();

    let dry = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny",
        "--dry-run",
    ]);
    assert!(
        dry.stdout
            .contains(&format!("tiny@{digest} is registered as 0.1.0")),
        "{}",
        dry.transcript()
    );

    // Alias compare-and-swap: a stale expectation is "someone else moved it".
    let conflict = step.run(&[
        "registry",
        "alias",
        "tiny@0.1.0",
        "production",
        "--expect",
        "none",
    ]);
    assert_eq!(conflict.code, 1, "{}", conflict.transcript());
    assert!(
        conflict.stderr.contains("someone else moved it"),
        "{}",
        conflict.transcript()
    );
    let swap = step.run(&[
        "registry",
        "alias",
        "tiny@0.1.0",
        "staging",
        "--expect",
        "none",
    ]);
    assert_eq!(swap.code, 0, "{}", swap.transcript());
    let swap = step.run(&[
        "registry",
        "alias",
        "tiny@0.1.0",
        "production",
        "--expect",
        &digest,
    ]);
    assert_eq!(swap.code, 0, "{}", swap.transcript());
    let bad_expect = step.run(&[
        "registry",
        "alias",
        "tiny@0.1.0",
        "production",
        "--expect",
        "sha256:12",
    ]);
    assert_eq!(bad_expect.code, 2, "{}", bad_expect.transcript());

    // A malicious pickle is refused (exit 1) unless --allow-pickle.
    let script = "import os, pickle, sys\nclass P:\n    def __reduce__(self):\n        return (os.system, ('id',))\nopen(sys.argv[1], 'wb').write(pickle.dumps(P(), protocol=4))\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(model.join("optimizer.pt"))
        .status()
        .expect("python3");
    assert!(status.success());
    let refused = step.run(&["register", "--model-dir", "model", "--name", "tiny"]);
    assert_eq!(refused.code, 1, "{}", refused.transcript());
    assert!(
        refused
            .stderr
            .contains("optimizer.pt: pickle imports that can run code on load: posix.system"),
        "{}",
        refused.transcript()
    );
    let allowed = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny",
        "--allow-pickle",
    ]);
    assert_eq!(allowed.code, 0, "{}", allowed.transcript());
    assert!(
        allowed
            .stderr
            .contains("registered with --allow-pickle although loading it imports posix.system"),
        "{}",
        allowed.transcript()
    );
    std::fs::remove_file(model.join("optimizer.pt")).expect("remove");

    // A tampered blob: verify exits 1 naming the file and both digests.
    let weights = sha256(&model.join("model.safetensors"));
    crate::support::tamper_blob(&step, &weights);
    let tampered = step.run(&["registry", "verify", "tiny@0.1.0"]);
    assert_eq!(tampered.code, 1, "{}", tampered.transcript());
    assert!(
        tampered.stderr.contains(&format!(
            "model.safetensors: tampered: the manifest records {weights}"
        )),
        "{}",
        tampered.transcript()
    );
    let pulled = step.run(&["registry", "pull", "tiny@0.1.0", "--to", "pulled"]);
    assert_eq!(pulled.code, 1, "{}", pulled.transcript());
    assert!(!step.path("pulled/model.safetensors").exists());
    let unknown = step.run(&["registry", "show", "tiny@9.9.9"]);
    assert_eq!(unknown.code, 2, "{}", unknown.transcript());
    assert!(
        unknown.stderr.contains("tiny@9.9.9 is not registered"),
        "{}",
        unknown.transcript()
    );
}

#[test]
fn an_oci_registry_with_token_auth_works_from_the_command_line() {
    let Some(server) = gantry_test::OciRegistryServer::start() else {
        return;
    };
    let mut step = Step::local();
    step.set("GANTRY_HTTP_BACKOFF_MS", "1");
    let model = trained_model(step.directory.path());
    let uri = format!("oci://{}/models", server.address);

    let anonymous = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny-lm",
        "--registry",
        &uri,
    ]);
    assert_eq!(anonymous.code, 2, "{}", anonymous.transcript());
    assert!(
        anonymous.stderr.contains("refused anonymous access"),
        "{}",
        anonymous.transcript()
    );

    step.set("GANTRY_REGISTRY_USERNAME", gantry_test::OCI_USER)
        .set("GANTRY_REGISTRY_PASSWORD", gantry_test::OCI_PASSWORD);
    let registered = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny-lm",
        "--registry",
        &uri,
        "--eval-results",
        &fixture("good/results.jsonl"),
        "--alias",
        "production",
    ]);
    assert_eq!(registered.code, 0, "{}", registered.transcript());
    assert!(!registered.stderr.contains(gantry_test::OCI_PASSWORD));
    let verified = step.run(&[
        "registry",
        "verify",
        "tiny-lm@production",
        "--registry",
        &uri,
    ]);
    assert_eq!(verified.code, 0, "{}", verified.transcript());
    assert!(
        verified
            .stderr
            .contains("3 files and 1 lineage documents verified"),
        "{}",
        verified.transcript()
    );
    // A laptop after `docker login` with a credential store: the Docker
    // config names a helper, and the helper (on PATH) holds the password.
    step.set("GANTRY_REGISTRY_USERNAME", "")
        .set("GANTRY_REGISTRY_PASSWORD", "");
    std::fs::create_dir_all(step.path("bin")).expect("bin");
    std::fs::create_dir_all(step.path("docker")).expect("docker config dir");
    let helper = step.write(
        "bin/docker-credential-gantrytest",
        &format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{}\",\"Secret\":\"{}\"}}\\n' \"$server\"\n",
            gantry_test::OCI_USER,
            gantry_test::OCI_PASSWORD
        ),
    );
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod helper");
    let path = format!(
        "{}:{}",
        step.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let docker_config = step.path("docker").display().to_string();
    step.set("PATH", &path).set("DOCKER_CONFIG", &docker_config);
    for config in [
        format!(
            r#"{{"credHelpers": {{"{}": "gantrytest"}}}}"#,
            server.address
        ),
        r#"{"credsStore": "gantrytest"}"#.to_owned(),
    ] {
        step.write("docker/config.json", &config);
        let verified = step.run(&[
            "registry",
            "verify",
            "tiny-lm@production",
            "--registry",
            &uri,
        ]);
        assert_eq!(verified.code, 0, "{config}: {}", verified.transcript());
        assert!(!verified.stderr.contains(gantry_test::OCI_PASSWORD));
    }
    step.set("DOCKER_CONFIG", "")
        .set("GANTRY_REGISTRY_USERNAME", gantry_test::OCI_USER)
        .set("GANTRY_REGISTRY_PASSWORD", gantry_test::OCI_PASSWORD);
    let pulled = step.run(&[
        "registry",
        "pull",
        "tiny-lm@production",
        "--to",
        "pulled",
        "--registry",
        &uri,
    ]);
    assert_eq!(pulled.code, 0, "{}", pulled.transcript());
    assert_eq!(
        std::fs::read(step.path("pulled/model.safetensors")).expect("pulled"),
        std::fs::read(model.join("model.safetensors")).expect("model")
    );
    let gate = step.run(&[
        "eval-gate",
        "--baseline",
        "registry:tiny-lm@production",
        "--registry",
        &uri,
        "--candidate",
        &fixture("fewer-steps/results.jsonl"),
        "--publish",
        "summary",
    ]);
    assert_eq!(
        gate.code,
        1,
        "the worse candidate fails against the OCI baseline: {}",
        gate.transcript()
    );
    let listed = step.run(&["registry", "list", "--registry", &uri]);
    assert!(
        listed
            .stdout
            .contains("tiny-lm  1 versions, latest 0.1.0  production=0.1.0"),
        "{}",
        listed.transcript()
    );
}

#[test]
fn an_mlflow_server_works_from_the_command_line() {
    let Some(server) = gantry_test::MlflowServer::start() else {
        return;
    };
    let step = Step::local();
    trained_model(step.directory.path());
    let uri = format!("mlflow+{}", server.url);
    let registered = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny-lm",
        "--registry",
        &uri,
        "--eval-results",
        &fixture("good/results.jsonl"),
        "--alias",
        "production",
    ]);
    assert_eq!(registered.code, 0, "{}", registered.transcript());
    let again = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "tiny-lm",
        "--registry",
        &uri,
        "--eval-results",
        &fixture("good/results.jsonl"),
    ]);
    assert!(
        again.stdout.contains("created=false"),
        "{}",
        again.transcript()
    );
    let verified = step.run(&[
        "registry",
        "verify",
        "tiny-lm@production",
        "--registry",
        &uri,
    ]);
    assert_eq!(verified.code, 0, "{}", verified.transcript());
    let gate = step.run(&[
        "eval-gate",
        "--baseline",
        "registry:tiny-lm@production",
        "--registry",
        &uri,
        "--candidate",
        &fixture("good/results.jsonl"),
        "--publish",
        "summary",
    ]);
    assert_eq!(gate.code, 0, "{}", gate.transcript());
    let events = step.run(&["registry", "events", "tiny-lm", "--registry", &uri]);
    assert!(
        events.stdout.contains("production: unset → 0.1.0"),
        "{}",
        events.transcript()
    );
}

#[test]
fn fsck_names_damage_exits_1_and_repairs_it_with_exit_0() {
    let step = Step::local();
    std::fs::create_dir_all(step.path("model")).expect("model");
    step.write("model/config.json", "{\"hidden\": 4}");
    step.write("model/weights.bin", "not a pickle");
    for run in ["1", "2"] {
        let outcome = step.run(&[
            "register",
            "--model-dir",
            "model",
            "--name",
            "tiny",
            "--metadata",
            &format!("run={run}"),
        ]);
        assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    }
    let manifest = step.path(".gantry/registry/models/tiny/versions/0.1.0.json");
    std::fs::write(&manifest, "{\"truncated").expect("truncate");
    // Listing still works, and says what it passed over.
    let listed = step.run(&["registry", "list"]);
    assert_eq!(listed.code, 0, "{}", listed.transcript());
    assert!(
        listed.stderr.contains("tiny 0.1.0: not a model manifest"),
        "{}",
        listed.transcript()
    );
    let checked = step.run(&["registry", "fsck"]);
    assert_eq!(checked.code, 1, "{}", checked.transcript());
    assert!(
        checked.stderr.contains("fsck --repair would move it to"),
        "{}",
        checked.transcript()
    );
    let repaired = step.run(&["registry", "fsck", "--repair"]);
    assert_eq!(repaired.code, 0, "{}", repaired.transcript());
    assert!(
        repaired.stderr.contains("1 problem, repaired"),
        "{}",
        repaired.transcript()
    );
    let again = step.run(&["registry", "fsck"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    assert!(
        again
            .stderr
            .contains("set aside by an earlier repair: tiny@0.1.0"),
        "{}",
        again.transcript()
    );
    let resolved = step.run(&["registry", "show", "tiny@0.1.0"]);
    assert_eq!(resolved.code, 2, "{}", resolved.transcript());
}

#[test]
fn a_quantized_variant_registers_with_its_gguf_footprint_and_a_broken_one_is_refused() {
    let step = Step::local();
    let model = trained_model(step.directory.path());
    let exported = std::process::Command::new(crate::support::tiny_lm())
        .args(["export", "--format", "q8_0", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(step.path("q8"))
        .output()
        .expect("tiny-lm export");
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let registered = step.run(&["register", "--model-dir", "q8", "--name", "tiny-q8"]);
    assert_eq!(registered.code, 0, "{}", registered.transcript());
    let shown = step.run(&["registry", "show", "tiny-q8"]);
    let manifest: serde_json::Value = serde_json::from_str(&shown.stdout).expect("manifest");
    let gguf = manifest["files"]
        .as_array()
        .and_then(|files| files.iter().find(|file| file["path"] == "model.gguf"))
        .map(|file| file["gguf"].clone())
        .expect("model.gguf");
    // The parent's 137,536 parameters, the matrices in 8-bit blocks.
    assert_eq!(gguf["parameters"], 137_536, "{gguf}");
    assert_eq!(gguf["types"]["Q8_0"], 137_216, "{gguf}");
    assert_eq!(gguf["metadata"]["general.architecture"], "tinylm");
    let summary = step.read(".gantry/reports/register-tiny-q8.md");
    assert!(
        summary.contains("GGUF v2, 16 tensors, 137536 parameters (F32, Q8_0)"),
        "{summary}"
    );

    // A GGUF cut short is refused by name, before anything is stored.
    let bytes = std::fs::read(step.path("q8/model.gguf")).expect("gguf");
    std::fs::write(step.path("q8/model.gguf"), &bytes[..bytes.len() - 100]).expect("cut");
    let refused = step.run(&["register", "--model-dir", "q8", "--name", "tiny-q8"]);
    assert_eq!(refused.code, 2, "{}", refused.transcript());
    assert!(
        refused.stderr.contains("model.gguf: not a valid GGUF file")
            && refused.stderr.contains("truncated"),
        "{}",
        refused.transcript()
    );
}
