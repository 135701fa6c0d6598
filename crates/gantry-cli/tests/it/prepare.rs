//! `gantry prepare` with tiny-lm's real conversions (`tiny-lm export`) and
//! a broken one (zeroed weights) as the variants of a registered tiny model,
//! parent and variant both served by `tiny-lm serve` for the gate.

use serde_json::Value;

use crate::support::{Step, github_outputs, production, tiny_lm};

fn serve_command() -> String {
    format!(
        "{} serve --model {{model_dir}} --port {{port}} --served-model-name tiny",
        tiny_lm().display()
    )
}

fn manifest(step: &Step, reference: &str) -> Value {
    let shown = step.run(&["registry", "show", reference]);
    assert_eq!(shown.code, 0, "{}", shown.transcript());
    serde_json::from_str(&shown.stdout).expect("manifest JSON")
}

#[test]
fn a_q8_variant_is_gated_against_its_parent_measured_and_registered_with_lineage() {
    let mut step = Step::github();
    step.set("GANTRY_HTTP_BACKOFF_MS", "1");
    production(&step);
    let tiny = tiny_lm().display().to_string();
    let serve = serve_command();
    let prepared = step.run(&[
        "prepare",
        "--from",
        "tiny@production",
        "--name",
        "tiny-q8",
        "--serve-command",
        &serve,
        "--max-tokens",
        "16",
        "--max-drop",
        "0.1",
        "--alias",
        "candidate",
        "--publish",
        "summary",
        "--",
        &tiny,
        "export",
        "--format",
        "q8_0",
    ]);
    assert_eq!(prepared.code, 0, "{}", prepared.transcript());
    let outputs = github_outputs(&step.read("github_output"));
    assert_eq!(outputs["verdict"], "pass", "{}", prepared.transcript());
    let ratio: f64 = outputs["size-ratio"].parse().expect("size-ratio");
    assert!((0.2..0.35).contains(&ratio), "{ratio}");
    assert_eq!(outputs["quality-delta"], "0.0000");
    assert!(
        outputs["reference"].starts_with("tiny-q8@sha256:"),
        "{outputs:?}"
    );

    let report: Value =
        serde_json::from_str(&step.read(".gantry/prepare/prepare.json")).expect("prepare.json");
    assert_eq!(report["variant_footprint"]["types"]["Q8_0"], 137_216);
    assert_eq!(report["parent_footprint"]["parameters"], 137_536);
    assert!(
        report["variant_footprint"]["serving"]["load_seconds"]
            .as_f64()
            .is_some()
    );
    assert!(
        report["parent_footprint"]["serving"]["tokens_per_second"]
            .as_f64()
            .is_some_and(|rate| rate > 0.0)
    );
    assert_eq!(report["quality"]["baseline"], "served");
    assert_eq!(report["transformation"]["relation"], "quantized");
    let summary = step.read("step_summary");
    assert!(
        summary.contains("gantry prepare: tiny 0.1.0 → tiny-q8 0.1.0"),
        "{summary}"
    );
    assert!(
        summary.contains("| types | F32 137536 | F32 320, Q8_0 137216 |"),
        "{summary}"
    );

    // The lineage: derived from the parent's digest, the transformation
    // record stored, the gate against the parent, its own answers.
    let parent = manifest(&step, "tiny@production");
    let variant = manifest(&step, "tiny-q8@candidate");
    let derived = &variant["lineage"]["derived_from"];
    assert_eq!(derived["name"], "tiny");
    assert_eq!(derived["version"], parent["version"]);
    assert_eq!(derived["relation"], "quantized");
    assert!(
        derived["parent"]
            .as_str()
            .is_some_and(|digest| digest.starts_with("sha256:"))
    );
    assert_eq!(variant["lineage"]["gate"]["verdict"], "pass");
    assert_eq!(
        variant["lineage"]["evaluation"]["file_name"],
        "results.jsonl"
    );
    assert_eq!(variant["metadata"]["gantry.relation"], "quantized");
    // Its training data is its parent's, re-stored and checkable.
    assert_eq!(
        variant["lineage"]["data"]["dataset_digest"],
        parent["lineage"]["data"]["dataset_digest"]
    );
    assert_eq!(
        variant["lineage"]["data_summary"]["file_name"],
        "summary.json"
    );
    let diff = step.run(&["registry", "diff", "tiny@production", "tiny-q8@candidate"]);
    assert_eq!(diff.code, 0, "{}", diff.transcript());
    assert!(
        diff.stdout
            .contains("lineage derived from: none → tiny@0.1.0 (sha256:")
            && diff.stdout.contains(", quantized)")
            && !diff.stdout.contains("lineage dataset"),
        "{}",
        diff.transcript()
    );
    // Deployable: it passed its gate against a parent that passed its own
    // (the rollout gets as far as the router, which is not there).
    let deploy = step.run(&[
        "deploy-canary",
        "--model",
        "tiny-q8@candidate",
        "--serve-command",
        "serve {port}",
        "--router",
        "http://127.0.0.1:9",
        "--publish",
        "summary",
    ]);
    assert_eq!(deploy.code, 2, "{}", deploy.transcript());
    assert!(
        !deploy.stderr.contains("evaluation gate"),
        "{}",
        deploy.transcript()
    );
    assert!(
        deploy.stderr.contains("127.0.0.1:9"),
        "{}",
        deploy.transcript()
    );
    let verified = step.run(&["registry", "verify", "tiny-q8@candidate"]);
    assert_eq!(verified.code, 0, "{}", verified.transcript());
    assert!(
        verified
            .stderr
            .contains("derived from: ok (quantized from tiny@0.1.0"),
        "{}",
        verified.transcript()
    );
    assert!(
        verified.stderr.contains("lineage documents verified"),
        "{}",
        verified.transcript()
    );
}

#[test]
fn a_worse_variant_fails_and_bad_conversions_are_refused_by_name() {
    let mut step = Step::local();
    step.set("GANTRY_HTTP_BACKOFF_MS", "1");
    production(&step);
    let tiny = tiny_lm().display().to_string();
    let serve = serve_command();
    // A broken conversion: the parent's header over zeroed weights (a cast
    // gone wrong), a real model that answers nothing right.
    let zeroing = "import os, shutil, struct\ni = os.environ['GANTRY_INPUT_MODEL_DIR']\no = os.environ['GANTRY_OUTPUT_DIR']\nshutil.copy(os.path.join(i, 'config.json'), o)\nb = open(os.path.join(i, 'model.safetensors'), 'rb').read()\nn = struct.unpack('<Q', b[:8])[0]\nopen(os.path.join(o, 'model.safetensors'), 'wb').write(b[:8 + n] + bytes(len(b) - 8 - n))\n";
    let worse = |extra: &[&str]| {
        let mut args = vec![
            "prepare",
            "--from",
            "tiny@production",
            "--name",
            "tiny-small",
            "--relation",
            "converted",
            "--serve-command",
            &serve,
            "--max-tokens",
            "16",
            "--publish",
            "summary",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "python3", "-c", zeroing]);
        step.run(&args)
    };
    let failed = worse(&[]);
    assert_eq!(failed.code, 1, "{}", failed.transcript());
    let report: Value =
        serde_json::from_str(&step.read(".gantry/prepare/prepare.json")).expect("prepare.json");
    assert_eq!(report["verdict"], "fail");
    assert!(report["variant"].get("digest").is_none(), "{report}");
    assert!(
        report["notes"][0]
            .as_str()
            .unwrap_or("")
            .contains("not registered"),
        "{report}"
    );
    let rows = report["quality"]["rows"].as_array().expect("rows");
    assert!(
        rows.iter().any(|row| row["verdict"] == "fail"
            && row["delta"].as_f64().is_some_and(|delta| delta < 0.0)),
        "{report}"
    );
    let none = step.run(&["registry", "show", "tiny-small"]);
    assert_ne!(none.code, 0, "nothing registered: {}", none.transcript());
    // --register-failed keeps it, with the failed gate in its lineage.
    let kept = worse(&["--register-failed"]);
    assert_eq!(kept.code, 1, "{}", kept.transcript());
    let variant = manifest(&step, "tiny-small");
    assert_eq!(variant["lineage"]["gate"]["verdict"], "fail");
    assert_eq!(variant["lineage"]["derived_from"]["relation"], "converted");

    // Neither a failed variant nor the variant of an ungated parent deploys.
    let refused = step.run(&[
        "deploy-canary",
        "--model",
        "tiny-small@0.1.0",
        "--serve-command",
        "serve {port}",
    ]);
    assert_eq!(refused.code, 2, "{}", refused.transcript());
    assert!(
        refused
            .stderr
            .contains("failed its evaluation gate (verdict fail)"),
        "{}",
        refused.transcript()
    );
    let bare = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "bare",
        "--eval-results",
        "baseline/results.jsonl",
        "--eval-set",
        "data/eval.jsonl",
    ]);
    assert_eq!(bare.code, 0, "{}", bare.transcript());
    let from_bare = step.run(&[
        "prepare",
        "--from",
        "bare@0.1.0",
        "--name",
        "bare-q8",
        "--served-model",
        "tiny",
        "--serve-command",
        &serve,
        "--max-tokens",
        "16",
        "--max-drop",
        "0.2",
        "--publish",
        "summary",
        "--",
        &tiny,
        "export",
        "--format",
        "q8_0",
    ]);
    assert_eq!(from_bare.code, 0, "{}", from_bare.transcript());
    let orphan = step.run(&[
        "deploy-canary",
        "--model",
        "bare-q8@0.1.0",
        "--serve-command",
        "serve {port}",
    ]);
    assert_eq!(orphan.code, 2, "{}", orphan.transcript());
    assert!(
        orphan.stderr.contains("of its ancestor bare@0.1.0")
            && orphan.stderr.contains("which has no evaluation gate"),
        "{}",
        orphan.transcript()
    );

    // A command that writes nothing.
    let nothing = step.run(&[
        "prepare",
        "--from",
        "tiny@production",
        "--name",
        "tiny-x",
        "--",
        "true",
    ]);
    assert_eq!(nothing.code, 2, "{}", nothing.transcript());
    assert!(
        nothing
            .stderr
            .contains("wrote nothing to GANTRY_OUTPUT_DIR"),
        "{}",
        nothing.transcript()
    );
    // A command that fails.
    let broken = step.run(&[
        "prepare",
        "--from",
        "tiny@production",
        "--name",
        "tiny-x",
        "--",
        "false",
    ]);
    assert_eq!(broken.code, 2, "{}", broken.transcript());
    assert!(
        broken
            .stderr
            .contains("the conversion command did not succeed"),
        "{}",
        broken.transcript()
    );
    // An output with a pickle that runs code.
    let script = "import os, pickle\nclass P:\n    def __reduce__(self):\n        return (os.system, ('id',))\nopen(os.path.join(os.environ['GANTRY_OUTPUT_DIR'], 'model.pt'), 'wb').write(pickle.dumps(P(), protocol=4))\n";
    let pickled = step.run(&[
        "prepare",
        "--from",
        "tiny@production",
        "--name",
        "tiny-x",
        "--",
        "python3",
        "-c",
        script,
    ]);
    assert_eq!(pickled.code, 1, "{}", pickled.transcript());
    assert!(
        pickled
            .stderr
            .contains("model.pt: pickle imports that can run code on load: posix.system"),
        "{}",
        pickled.transcript()
    );
    // The variant's results from elsewhere, gated against the parent's
    // registered evaluation (here the same answers: non-inferior).
    let given = step.run(&[
        "prepare",
        "--from",
        "tiny@production",
        "--name",
        "tiny-f16",
        "--relation",
        "converted",
        "--eval-results",
        "baseline/results.jsonl",
        "--max-drop",
        "0.2",
        "--",
        &tiny,
        "export",
        "--format",
        "f16",
    ]);
    assert_eq!(given.code, 0, "{}", given.transcript());
    let report: Value =
        serde_json::from_str(&step.read(".gantry/prepare/prepare.json")).expect("prepare.json");
    assert_eq!(report["quality"]["baseline"], "registered", "{report}");
    assert_eq!(
        report["variant_footprint"]["types"]["F16"], 137_536,
        "{report}"
    );
    // Results on other items than the parent's registered evaluation: not comparable.
    let eval = step.read("baseline/results.jsonl");
    let fewer: Vec<&str> = eval.lines().skip(10).collect();
    step.write("fewer.jsonl", &(fewer.join("\n") + "\n"));
    let other = step.run(&[
        "prepare",
        "--from",
        "tiny@production",
        "--name",
        "tiny-x",
        "--eval-results",
        "fewer.jsonl",
        "--",
        &tiny,
        "export",
        "--format",
        "f16",
    ]);
    assert_eq!(other.code, 2, "{}", other.transcript());
    assert!(
        other.stderr.contains("was not asked what its parent was"),
        "{}",
        other.transcript()
    );
    // A parent whose weights were tampered with is refused before anything runs.
    let weights = manifest(&step, "tiny@production")["files"]
        .as_array()
        .and_then(|files| {
            files
                .iter()
                .find(|file| file["path"] == "model.safetensors")
        })
        .and_then(|file| file["digest"].as_str().map(str::to_owned))
        .expect("weights");
    crate::support::tamper_blob(&step, &weights);
    std::fs::remove_dir_all(step.path(".gantry/prepare/run/input")).expect("clear");
    let tampered = step.run(&[
        "prepare",
        "--from",
        "tiny@production",
        "--name",
        "tiny-x",
        "--",
        "true",
    ]);
    assert_eq!(tampered.code, 1, "{}", tampered.transcript());
    assert!(
        tampered.stderr.contains("model.safetensors")
            && tampered.stderr.contains(&format!("expected {weights}")),
        "{}",
        tampered.transcript()
    );
}
