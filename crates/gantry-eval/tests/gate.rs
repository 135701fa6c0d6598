//! eval-gate's statistics against scipy/statsmodels, and its verdicts on known cases.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};

use gantry_core::Verdict;
use gantry_eval::stats::{self, Method, Reported, Settings};
use gantry_eval::{Error, Policy, RowVerdict, evaluate_gate, read};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn settings() -> Settings {
    Settings {
        alpha: 0.05,
        confidence: 0.95,
        resamples: 20_000,
        seed: 7,
    }
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

#[test]
fn statistics_agree_with_scipy_and_statsmodels() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("stats.json")).unwrap())
            .unwrap();
    for case in doc["paired"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let c = stats::paired(
            &floats(&case["baseline"]),
            &floats(&case["candidate"]),
            settings(),
            None,
        );
        // Interval bounds: scipy resamples with its own generator. Binary
        // bounds fall on steps of 1/n: gantry's must be a step scipy
        // commonly gives (a quarter of 20 seeds or more), so an interval
        // shifted by a whole step — ties in the BCa bias correction counted
        // as above — fails. Continuous ones: allow Monte Carlo error.
        for (bound, ours) in [("ci_low", c.ci_low), ("ci_high", c.ci_high)] {
            if case["kind"] == "binary" {
                let common = floats(&case[format!("{bound}_common")]);
                assert!(
                    common.iter().any(|theirs| (ours - theirs).abs() < 1e-9),
                    "{name} {bound}: gantry {ours}, scipy commonly {common:?}"
                );
            } else {
                let theirs = case[bound].as_f64().unwrap();
                assert!(
                    (ours - theirs).abs() <= 0.0008,
                    "{name} {bound}: gantry {ours}, scipy {theirs}"
                );
            }
        }
        if case["kind"] == "binary" {
            assert_eq!(c.method, Method::McnemarExact);
            let theirs = case["p_value"].as_f64().unwrap();
            assert!(
                (c.p_value - theirs).abs() <= 1e-9 * theirs.max(1e-12) + 1e-15,
                "{name} p: gantry {}, statsmodels {theirs}",
                c.p_value
            );
        } else {
            // The bootstrap p-value and the paired t-test agree on the call.
            let t = case["t_test_p_value"].as_f64().unwrap();
            assert_eq!(
                c.p_value < 0.05,
                t < 0.05,
                "{name}: bootstrap p {} vs t-test p {t}",
                c.p_value
            );
        }
    }
    for case in doc["unpaired_z"].as_array().unwrap() {
        let reported = |v: &str, s: &str| Reported {
            value: case[v].as_f64().unwrap(),
            stderr: case[s].as_f64().unwrap(),
            n: 1000,
        };
        let c = stats::unpaired(
            reported("baseline", "baseline_stderr"),
            reported("candidate", "candidate_stderr"),
            settings(),
            None,
        );
        for (field, ours) in [
            ("p_value", c.p_value),
            ("ci_low", c.ci_low),
            ("ci_high", c.ci_high),
        ] {
            let theirs = case[field].as_f64().unwrap();
            assert!(
                (ours - theirs).abs() < 1e-9,
                "z-test {field}: gantry {ours}, scipy {theirs}"
            );
        }
    }
    let adjusted = stats::holm(&floats(&doc["holm"]["p_values"]));
    for (ours, theirs) in adjusted.iter().zip(floats(&doc["holm"]["adjusted"])) {
        assert!(
            (ours - theirs).abs() < 1e-12,
            "holm: gantry {ours}, statsmodels {theirs}"
        );
    }
}

#[test]
fn bootstrap_is_deterministic_for_a_seed() {
    let base: Vec<f64> = (0..300).map(|i| f64::from(i % 7) / 7.0).collect();
    let cand: Vec<f64> = (0..300).map(|i| f64::from((i * 3) % 11) / 11.0).collect();
    assert_eq!(
        stats::paired(&base, &cand, settings(), None),
        stats::paired(&base, &cand, settings(), None)
    );
    let other = Settings {
        seed: 8,
        ..settings()
    };
    assert_ne!(
        stats::paired(&base, &cand, settings(), None).ci_low,
        stats::paired(&base, &cand, other, None).ci_low
    );
}

/// A 64-bit LCG so planted datasets are the same everywhere.
struct Lcg(u64);

impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes gantry-native results: `scores[i]` per item, one metric `correct`.
fn native(dir: &Path, name: &str, scores: &[f64]) -> PathBuf {
    let path = dir.join(format!("{name}.jsonl"));
    let lines: Vec<String> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| format!(r#"{{"id":"q{i}","task":"qa","prompt_hash":"sha256:{i:x}","scores":{{"correct":{s}}}}}"#))
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Baseline accuracy `p`; the candidate loses `down` and gains `up` of the items.
fn planted(n: usize, p: f64, down: f64, up: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Lcg(seed);
    let base: Vec<f64> = (0..n).map(|_| f64::from(rng.uniform() < p)).collect();
    let cand = base
        .iter()
        .map(|&b| {
            let r = rng.uniform();
            if b == 1.0 && r < down / p {
                0.0
            } else if b == 0.0 && r < up / (1.0 - p) {
                1.0
            } else {
                b
            }
        })
        .collect();
    (base, cand)
}

fn gate(base: &[f64], cand: &[f64]) -> gantry_eval::GateReport {
    let dir = tempfile::tempdir().unwrap();
    let b = read(&native(dir.path(), "base", base)).unwrap();
    let c = read(&native(dir.path(), "cand", cand)).unwrap();
    evaluate_gate(&b, &c, &Policy::default(), "default").unwrap()
}

#[test]
fn an_a_a_run_never_fails() {
    for seed in 0..20 {
        let (base, _) = planted(500, 0.7, 0.0, 0.0, seed);
        let report = gate(&base, &base);
        assert_eq!(report.verdict, Verdict::Pass, "seed {seed}");
        assert_eq!(report.rows[0].verdict, RowVerdict::Pass);
    }
}

#[test]
fn a_two_point_regression_over_5000_items_fails() {
    let (base, cand) = planted(5000, 0.70, 0.04, 0.02, 42);
    let report = gate(&base, &cand);
    let row = &report.rows[0];
    assert!(
        (row.comparison.delta - (-0.02)).abs() < 0.006,
        "planted -0.02, measured {}",
        row.comparison.delta
    );
    assert_eq!(row.verdict, RowVerdict::Fail, "{row:?}");
    assert_eq!(report.verdict, Verdict::Fail);
    assert_eq!(report.regressions, 1);
    assert!(row.comparison.p_value < 0.001);
    let mde = row.comparison.mde.expect("an MDE");
    assert!(mde > 0.0 && mde < 0.02, "{mde}");
    // Planted: 4 points lost, 2 gained; the discordant counts say so.
    let (lost, gained) = (
        row.comparison.new_failures.unwrap(),
        row.comparison.new_passes.unwrap(),
    );
    assert!(
        (150..=250).contains(&lost) && (50..=150).contains(&gained),
        "{lost} lost, {gained} gained"
    );
    assert!(((gained as f64 - lost as f64) / 5000.0 - row.comparison.delta).abs() < 1e-12);
    assert_eq!(row.new_failure_ids.len(), 20, "the first flips are listed");
}

#[test]
fn a_one_point_drop_over_200_items_is_inconclusive() {
    let (base, mut cand) = planted(200, 0.7, 0.0, 0.0, 5);
    // Exactly two items (1 point) flip from pass to fail.
    let mut flipped = 0;
    for (b, c) in base.iter().zip(cand.iter_mut()) {
        if *b == 1.0 && flipped < 2 {
            *c = 0.0;
            flipped += 1;
        }
    }
    let report = gate(&base, &cand);
    let row = &report.rows[0];
    assert!((row.comparison.delta + 0.01).abs() < 1e-12);
    assert_eq!(row.verdict, RowVerdict::Inconclusive, "{row:?}");
    assert_eq!(
        report.verdict,
        Verdict::Warn,
        "inconclusive warns under the default policy"
    );
    // Two discordant pairs out of 200: McNemar cannot reject (p = 0.5).
    assert!(
        (row.comparison.p_value - 0.5).abs() < 1e-12,
        "{}",
        row.comparison.p_value
    );
}

#[test]
fn a_clear_improvement_passes() {
    let (base, cand) = planted(1000, 0.5, 0.01, 0.08, 9);
    let report = gate(&base, &cand);
    assert_eq!(report.verdict, Verdict::Pass);
    assert_eq!(report.improvements, 1);
    assert!(report.rows[0].comparison.ci_low > 0.0);
}

#[test]
fn tiny_lm_results_gate_a_worse_model() {
    let dir = fixtures().join("tiny-lm");
    // Native JSONL, and lm-evaluation-harness results with their samples.
    for (layout, good, bad) in [
        (
            "native",
            dir.join("good/results.jsonl"),
            dir.join("corrupted/results.jsonl"),
        ),
        (
            "lm-eval",
            dir.join("good/lm-eval"),
            dir.join("corrupted/lm-eval"),
        ),
    ] {
        let baseline = read(&good).unwrap();
        assert!(
            baseline.metrics.values().all(|m| !m.is_empty()),
            "{layout}: per-item scores were read"
        );
        let same = evaluate_gate(
            &baseline,
            &read(&good).unwrap(),
            &Policy::default(),
            "default",
        )
        .unwrap();
        assert_eq!(same.verdict, Verdict::Pass, "{layout}: A/A");
        let worse = evaluate_gate(
            &baseline,
            &read(&bad).unwrap(),
            &Policy::default(),
            "default",
        )
        .unwrap();
        assert_eq!(
            worse.verdict,
            Verdict::Fail,
            "{layout}: the corrupted-data model must fail"
        );
        let acc = worse
            .rows
            .iter()
            .find(|r| r.task == "tiny_add" || (r.task == "add" && r.metric == "acc"))
            .unwrap();
        assert_eq!(acc.verdict, RowVerdict::Fail, "{layout}: {acc:?}");
        if layout == "lm-eval" {
            assert!(worse.rows.iter().all(|r| r.metric.ends_with(",none")));
            assert_eq!(
                worse.rows[0].comparison.n,
                baseline.metrics.values().next().unwrap().len()
            );
        }
    }
}

#[test]
fn runs_that_differ_in_setup_are_not_comparable() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures().join("tiny-lm/good/lm-eval");
    let copy = |name: &str, edit: &dyn Fn(&mut Value)| -> PathBuf {
        let target = dir.path().join(name);
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(&source).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if file.starts_with("results_") {
                let mut doc: Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                edit(&mut doc);
                std::fs::write(target.join(&file), serde_json::to_string(&doc).unwrap()).unwrap();
            } else {
                std::fs::copy(&path, target.join(&file)).unwrap();
            }
        }
        target
    };
    let baseline = read(&source).unwrap();
    let shots = read(&copy("shots", &|d| d["n-shot"]["tiny_add"] = 5.into())).unwrap();
    let limited = read(&copy("limited", &|d| {
        d["n-samples"]["tiny_add"]["effective"] = 50.into()
    }))
    .unwrap();
    for (candidate, expected) in [
        (
            shots,
            "task tiny_add: n-shot differs (baseline 0, candidate 5)",
        ),
        (limited, "ran with --limit (50 of 100 samples)"),
    ] {
        match evaluate_gate(&baseline, &candidate, &Policy::default(), "default") {
            Err(Error::NotComparable { differences }) => {
                assert!(
                    differences.iter().any(|d| d.contains(expected)),
                    "{differences:?}"
                );
            }
            other => panic!("expected not comparable, got {other:?}"),
        }
    }
    // Different prompts for the same item ids: not comparable either.
    let base = native(dir.path(), "b", &[1.0, 0.0, 1.0]);
    let other = dir.path().join("other.jsonl");
    std::fs::write(
        &other,
        std::fs::read_to_string(&base)
            .unwrap()
            .replace("sha256:1", "sha256:ff"),
    )
    .unwrap();
    let error = evaluate_gate(
        &read(&base).unwrap(),
        &read(&other).unwrap(),
        &Policy::default(),
        "default",
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("1 items were asked differently"),
        "{error}"
    );
}

#[test]
fn policy_floors_margins_and_new_failure_caps() {
    let dir = tempfile::tempdir().unwrap();
    let (base, cand) = planted(2000, 0.7, 0.012, 0.0, 3);
    let b = read(&native(dir.path(), "base", &base)).unwrap();
    let c = read(&native(dir.path(), "cand", &cand)).unwrap();
    let policy_file = |text: &str| -> Policy {
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, text).unwrap();
        Policy::from_file(&path).unwrap()
    };
    // A 1.2-point drop: within a 5-point margin it passes (non-inferior)…
    let lenient = policy_file("[[rule]]\nmargin = 0.05\n");
    assert_eq!(
        evaluate_gate(&b, &c, &lenient, "p").unwrap().verdict,
        Verdict::Pass
    );
    // …a floor above the candidate fails it…
    let floor = policy_file("[[rule]]\nmargin = 0.05\nfloor = 0.75\n");
    let report = evaluate_gate(&b, &c, &floor, "p").unwrap();
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(
        report.rows[0]
            .reasons
            .iter()
            .any(|r| r.contains("misses the floor 0.75"))
    );
    // …and so does a cap on items going from pass to fail.
    let capped = policy_file("[[rule]]\nmargin = 0.05\nmax_new_failures = 3\n");
    let report = evaluate_gate(&b, &c, &capped, "p").unwrap();
    assert_eq!(report.rows[0].verdict, RowVerdict::Fail);
    // A warn-severity rule never fails the gate.
    let warn = policy_file("[[rule]]\nfloor = 0.99\nseverity = \"warn\"\n");
    assert_eq!(
        evaluate_gate(&b, &c, &warn, "p").unwrap().verdict,
        Verdict::Warn
    );
    // Inconclusive can be made to block.
    let strict = policy_file("[defaults]\ninconclusive = \"block\"\n[[rule]]\n");
    let (base, cand) = planted(100, 0.7, 0.01, 0.0, 4);
    let b = read(&native(dir.path(), "b2", &base)).unwrap();
    let c = read(&native(dir.path(), "c2", &cand)).unwrap();
    let report = evaluate_gate(&b, &c, &strict, "p").unwrap();
    assert_eq!(
        report.rows[0].verdict,
        RowVerdict::Inconclusive,
        "{:?}",
        report.rows[0]
    );
    assert_eq!(
        report.verdict,
        Verdict::Fail,
        "inconclusive blocks under this policy"
    );
}

#[test]
fn missing_candidate_items_count_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = vec![1.0; 100];
    let b = read(&native(dir.path(), "b", &base)).unwrap();
    let c = read(&native(dir.path(), "c", &base[..60])).unwrap();
    let report = evaluate_gate(&b, &c, &Policy::default(), "default").unwrap();
    let row = &report.rows[0];
    assert_eq!(row.missing, 40);
    assert!((row.comparison.candidate - 0.6).abs() < 1e-12);
    assert_eq!(row.verdict, RowVerdict::Fail);
}

#[test]
fn bad_results_files_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    std::fs::write(
        &path,
        "{\"id\":\"a\",\"scores\":{\"acc\":1}}\n{\"id\":\"b\",\"scores\":{\"acc\":\"yes\"}}\n",
    )
    .unwrap();
    let error = read(&path).unwrap_err().to_string();
    assert!(
        error.contains("r.jsonl:2") && error.contains("scores.acc"),
        "{error}"
    );
    std::fs::write(&path, "name,score\n").unwrap();
    let error = read(&path).unwrap_err().to_string();
    assert!(error.contains("not a results file"), "{error}");
}

#[test]
fn unpaired_fallback_is_labelled_approximate() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixtures().join("tiny-lm/good/lm-eval");
    let results = std::fs::read_dir(&source)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("results_")
        })
        .unwrap();
    // Only the results JSON, no samples: aggregates and standard errors only.
    let only = dir.path().join(results.file_name().unwrap());
    std::fs::copy(&results, &only).unwrap();
    let set = read(&only).unwrap();
    let report = evaluate_gate(&set, &set, &Policy::default(), "default").unwrap();
    assert!(
        report
            .rows
            .iter()
            .all(|r| r.comparison.method == Method::UnpairedZ)
    );
    assert!(report.rows[0].reasons[0].starts_with("approximate"));
    // Without pairing, even identical aggregates leave an interval around zero:
    // never a failure, but not a pass either.
    assert_eq!(report.verdict, Verdict::Warn);
    assert!(
        report
            .rows
            .iter()
            .all(|r| r.verdict != RowVerdict::Fail && r.comparison.delta == 0.0)
    );
    assert!(
        report
            .rows
            .iter()
            .any(|r| r.verdict == RowVerdict::Inconclusive)
    );
}

/// promptfoo `eval -o out.json` output in the documented v3 shape.
fn promptfoo(
    dir: &Path,
    name: &str,
    provider: &str,
    passes: &[bool],
    errored: &[usize],
    with_ids: bool,
) -> PathBuf {
    let rows: Vec<Value> = passes
        .iter()
        .enumerate()
        .map(|(i, pass)| {
            let mut metadata = serde_json::json!({});
            if with_ids {
                metadata["testCaseId"] = format!("case-{i}").into();
            }
            let mut row = serde_json::json!({
                "testIdx": i, "promptIdx": 0, "provider": { "id": provider },
                "testCase": { "description": format!("case {i}"), "vars": { "q": format!("question {i}") }, "metadata": metadata },
                "success": pass, "score": if *pass { 1.0 } else { 0.25 }, "failureReason": if *pass { 0 } else { 1 },
                "namedScores": { "Tone": if *pass { 0.9 } else { 0.4 } },
                "latencyMs": 800, "cost": 0.0004,
                "gradingResult": { "pass": pass, "score": if *pass { 1.0 } else { 0.25 }, "reason": "" },
            });
            if errored.contains(&i) {
                row["success"] = false.into();
                row["failureReason"] = 2.into();
                row["error"] = "API error: 503".into();
                row["score"] = 0.into();
            }
            row
        })
        .collect();
    let doc = serde_json::json!({
        "evalId": format!("eval-{name}"), "shareableUrl": null, "config": {}, "metadata": {},
        "results": {
            "version": 3, "timestamp": "2026-11-28T12:00:00.000Z",
            "prompts": [{ "label": "qa-prompt", "provider": provider, "metrics": {} }],
            "results": rows,
            "stats": { "successes": 0, "failures": 0, "errors": errored.len(), "tokenUsage": {} },
        },
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

#[test]
fn promptfoo_outputs_pair_by_test_case_and_keep_errors_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (base, cand) = planted(400, 0.8, 0.15, 0.0, 21);
    let as_bool = |v: &[f64]| v.iter().map(|x| *x == 1.0).collect::<Vec<_>>();
    for with_ids in [true, false] {
        let b = read(&promptfoo(
            dir.path(),
            "base",
            "openai:gpt-4o-mini",
            &as_bool(&base),
            &[],
            with_ids,
        ))
        .unwrap();
        // A different provider (the candidate model), three rows that errored.
        let c = read(&promptfoo(
            dir.path(),
            "cand",
            "openai:ft:candidate",
            &as_bool(&cand),
            &[0, 1, 2],
            with_ids,
        ))
        .unwrap();
        assert_eq!(b.source, gantry_eval::Source::Promptfoo);
        let key = gantry_eval::MetricKey {
            task: "qa-prompt".into(),
            metric: "pass".into(),
        };
        assert_eq!(b.metrics[&key].len(), 400);
        let errored = c.metrics[&key]
            .iter()
            .filter(|(_, i)| i.values().next().is_none())
            .count();
        assert_eq!(errored, 3, "errors are missing scores, not failures");
        let report = evaluate_gate(&b, &c, &Policy::default(), "default").unwrap();
        let pass = report.rows.iter().find(|r| r.metric == "pass").unwrap();
        assert_eq!(pass.missing, 3);
        assert_eq!(
            pass.comparison.n, 400,
            "paired across providers (with_ids = {with_ids})"
        );
        assert_eq!(pass.verdict, RowVerdict::Fail);
        assert!(report.rows.iter().any(|r| r.metric == "Tone"));
        let same = evaluate_gate(&b, &b, &Policy::default(), "default").unwrap();
        assert_eq!(same.verdict, Verdict::Pass);
    }
}

/// An inspect_ai `.eval` log: a zip with header.json and reductions.json
/// (zstd, as inspect writes from 0.3.206) and a sample (DEFLATE).
fn inspect_log(dir: &Path, name: &str, grades: &[&str], status: &str) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join(format!("{name}.eval"));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let zstd =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Zstd);
    let deflate = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let header = serde_json::json!({
        "version": 2, "status": status,
        "eval": { "task": "theory_of_mind", "task_version": 0, "model": format!("openai/{name}"), "dataset": { "samples": grades.len() } },
        "results": { "total_samples": grades.len(), "completed_samples": grades.len(), "scores": [] },
    });
    zip.start_file("header.json", zstd).unwrap();
    zip.write_all(header.to_string().as_bytes()).unwrap();
    let samples: Vec<Value> = grades
        .iter()
        .enumerate()
        .map(|(i, g)| serde_json::json!({ "sample_id": i + 1, "value": g, "answer": "…" }))
        .collect();
    let reductions = serde_json::json!([{ "scorer": "model_graded_fact", "reducer": "mean", "samples": samples }]);
    zip.start_file("reductions.json", zstd).unwrap();
    zip.write_all(reductions.to_string().as_bytes()).unwrap();
    zip.start_file("samples/1_epoch_1.json", deflate).unwrap();
    zip.write_all(b"{\"id\": 1, \"epoch\": 1, \"scores\": {}}")
        .unwrap();
    zip.finish().unwrap();
    path
}

#[test]
fn inspect_logs_are_read_from_zip_members_in_zstd_and_deflate() {
    let dir = tempfile::tempdir().unwrap();
    let base: Vec<&str> = (0..300)
        .map(|i| if i % 10 < 8 { "C" } else { "I" })
        .collect();
    // The candidate loses 45 items and gets partial credit on 10.
    let cand: Vec<&str> = (0..300)
        .map(|i| {
            if i % 10 < 8 && i < 225 {
                "C"
            } else if i % 30 == 29 {
                "P"
            } else {
                "I"
            }
        })
        .collect();
    let b = read(&inspect_log(dir.path(), "base", &base, "success")).unwrap();
    let c = read(&inspect_log(dir.path(), "cand", &cand, "success")).unwrap();
    assert_eq!(b.source, gantry_eval::Source::Inspect);
    assert_eq!(b.model.as_deref(), Some("openai/base"));
    let key = gantry_eval::MetricKey {
        task: "theory_of_mind".into(),
        metric: "model_graded_fact".into(),
    };
    assert!((gantry_eval::gate::means(&b)[&key] - 0.8).abs() < 1e-12);
    let report = evaluate_gate(&b, &c, &Policy::default(), "default").unwrap();
    assert_eq!(report.verdict, Verdict::Fail);
    assert_eq!(
        report.rows[0].comparison.method,
        Method::PairedBootstrap,
        "P = 0.5 makes the scores continuous"
    );
    // Only complete runs are gated.
    let error = read(&inspect_log(dir.path(), "broken", &base, "error"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("status is \"error\""), "{error}");
}

#[test]
fn baseline_requirements_name_what_is_missing() {
    use gantry_eval::{BaselineFacts, BaselineRequirements};
    let strict = BaselineRequirements {
        from_registry: true,
        max_age_days: Some(30.0),
    };
    let fresh = BaselineFacts {
        from_registry: true,
        age_days: Some(2.0),
    };
    strict.check(&fresh).unwrap();
    let Err(Error::NotComparable { differences }) = strict.check(&BaselineFacts::default()) else {
        panic!("a file baseline of unknown age passes a strict policy");
    };
    assert_eq!(differences.len(), 2, "{differences:?}");
    assert!(differences[0].contains("registry baseline"));
    assert!(differences[1].contains("age is unknown"));
    let old = BaselineFacts {
        from_registry: true,
        age_days: Some(45.5),
    };
    let Err(Error::NotComparable { differences }) = strict.check(&old) else {
        panic!("a 45-day-old baseline passes a 30-day limit");
    };
    assert!(differences[0].contains("45.5 days ago"), "{differences:?}");
    BaselineRequirements::default()
        .check(&BaselineFacts::default())
        .unwrap();
}

#[test]
fn corpus_bleu_f1_and_mcc_match_sacrebleu_and_scikit_learn() {
    use gantry_eval::corpus::{Corpus, bleu_stats};
    let fixtures: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("corpus.json")).unwrap())
            .unwrap();
    for (index, case) in fixtures["bleu"].as_array().unwrap().iter().enumerate() {
        let mut total = vec![0.0; 10];
        for (refs, hyp) in case["refs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["hyps"].as_array().unwrap())
        {
            let refs: Vec<&str> = refs
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            for (slot, value) in total
                .iter_mut()
                .zip(bleu_stats(&refs, hyp.as_str().unwrap()))
            {
                *slot += value;
            }
        }
        let expected = case["bleu"].as_f64().unwrap();
        let actual = Corpus::Bleu.score(&total);
        assert!(
            (actual - expected).abs() < 1e-9,
            "case {index}: {actual} vs sacrebleu {expected}"
        );
    }
    for case in fixtures["labels"].as_array().unwrap() {
        let mut total = vec![0.0; 4];
        for (gold, pred) in case["gold"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["pred"].as_array().unwrap())
        {
            let stats = Corpus::F1
                .item_stats(&serde_json::json!([gold, pred]))
                .unwrap();
            for (slot, value) in total.iter_mut().zip(stats) {
                *slot += value;
            }
        }
        assert!((Corpus::F1.score(&total) - case["f1"].as_f64().unwrap()).abs() < 1e-12);
        assert!((Corpus::Mcc.score(&total) - case["mcc"].as_f64().unwrap()).abs() < 1e-12);
    }
    assert!(Corpus::F1.item_stats(&serde_json::json!([2, 1])).is_err());
}

/// An lm-evaluation-harness run of a translation task scored by corpus BLEU.
fn bleu_run(dir: &Path, hyps: &[String], refs: &[String]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut samples = String::new();
    for (index, (hyp, reference)) in hyps.iter().zip(refs).enumerate() {
        samples.push_str(
            &serde_json::json!({
                "doc_id": index, "filter": "none", "metrics": ["bleu"],
                "bleu": [reference, hyp], "doc_hash": format!("d{index}"), "prompt_hash": format!("p{index}"),
            })
            .to_string(),
        );
        samples.push('\n');
    }
    std::fs::write(dir.join("samples_wmt_2026-01-01T00-00-00.jsonl"), samples).unwrap();
    let n = hyps.len();
    let results = serde_json::json!({
        "results": {"wmt": {"alias": "wmt", "bleu,none": 0.0, "bleu_stderr,none": "N/A"}},
        "n-samples": {"wmt": {"effective": n, "original": n}},
        "higher_is_better": {"wmt": {"bleu": true}},
        "task_hashes": {"wmt": "abc"},
        "versions": {"wmt": 1},
        "n-shot": {"wmt": 0},
        "configs": {"wmt": {"task": "wmt"}},
        "config": {"model": "hf"},
        "model_name": "m",
    });
    std::fs::write(
        dir.join("results_2026-01-01T00-00-00.json"),
        results.to_string(),
    )
    .unwrap();
}

#[test]
fn corpus_bleu_is_gated_by_resampling_items() {
    let work = tempfile::tempdir().unwrap();
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "with", "dog", "and", "bird",
    ];
    let refs: Vec<String> = (0..200)
        .map(|i| {
            (0..8)
                .map(|j| words[(i * 7 + j * 3) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    // The baseline gets most of each sentence right; the candidate drops to
    // two words on 60% of the items.
    let good: Vec<String> = refs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i % 5 == 0 {
                r.split(' ').rev().collect::<Vec<_>>().join(" ")
            } else {
                r.clone()
            }
        })
        .collect();
    let bad: Vec<String> = good
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i % 5 < 3 {
                h.split(' ').take(2).collect::<Vec<_>>().join(" ")
            } else {
                h.clone()
            }
        })
        .collect();
    bleu_run(&work.path().join("base"), &good, &refs);
    bleu_run(&work.path().join("cand"), &bad, &refs);
    let base = read(&work.path().join("base")).unwrap();
    let cand = read(&work.path().join("cand")).unwrap();

    let same = evaluate_gate(&base, &base, &Policy::default(), "default").unwrap();
    assert_eq!(same.verdict, Verdict::Pass);
    let row = &same.rows[0];
    assert_eq!(row.metric, "bleu,none");
    assert_eq!(row.comparison.method, Method::CorpusBootstrap);
    assert_eq!(row.comparison.delta, 0.0);
    assert!(
        row.comparison.baseline > 50.0,
        "{}",
        row.comparison.baseline
    );

    let worse = evaluate_gate(&base, &cand, &Policy::default(), "default").unwrap();
    assert_eq!(worse.verdict, Verdict::Fail);
    let row = &worse.rows[0];
    assert_eq!(row.verdict, RowVerdict::Fail);
    assert!(
        row.comparison.delta < -10.0 && row.comparison.ci_high < 0.0,
        "{:?}",
        row.comparison
    );
    assert!(row.comparison.p_value < 0.01);
    // The interval holds the point estimate, and the run is reproducible.
    assert!(
        row.comparison.ci_low <= row.comparison.delta
            && row.comparison.delta <= row.comparison.ci_high
    );
    let again = evaluate_gate(&base, &cand, &Policy::default(), "default").unwrap();
    assert_eq!(again.rows[0].comparison, row.comparison);
}

#[test]
fn results_graded_by_different_judges_are_not_comparable() {
    let work = tempfile::tempdir().unwrap();
    let write = |name: &str, judge: &str| {
        let lines: String = (0..40)
            .map(|i| {
                format!(
                    "{{\"id\":\"q{i}\",\"judge\":\"{judge}\",\"scores\":{{\"correct\":{}}}}}\n",
                    i % 2
                )
            })
            .collect();
        let path = work.path().join(name);
        std::fs::write(&path, lines).unwrap();
        read(&path).unwrap()
    };
    let base = write("base.jsonl", "gpt-4o-2024-08-06");
    let same = write("same.jsonl", "gpt-4o-2024-08-06");
    let other = write("other.jsonl", "claude-judge-1");
    assert_eq!(base.judge.as_deref(), Some("gpt-4o-2024-08-06"));
    evaluate_gate(&base, &same, &Policy::default(), "default").unwrap();
    let Err(Error::NotComparable { differences }) =
        evaluate_gate(&base, &other, &Policy::default(), "default")
    else {
        panic!("different judges compared");
    };
    assert!(
        differences[0].contains("judge model differs"),
        "{differences:?}"
    );
}

#[test]
fn promptfoo_records_its_grading_provider_as_the_judge() {
    let work = tempfile::tempdir().unwrap();
    let path = promptfoo(
        work.path(),
        "graded",
        "openai:gpt-4o-mini",
        &[true, false],
        &[],
        true,
    );
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    doc["config"] =
        serde_json::json!({"defaultTest": {"options": {"provider": {"id": "openai:gpt-4o"}}}});
    std::fs::write(&path, doc.to_string()).unwrap();
    assert_eq!(read(&path).unwrap().judge.as_deref(), Some("openai:gpt-4o"));
}

/// Binary scores with exact discordant counts: `worse` items pass in the
/// baseline and fail in the candidate, `better` the other way round.
fn counted(n: usize, worse: usize, better: usize) -> (Vec<f64>, Vec<f64>) {
    let mut base = vec![0.0; n];
    let mut cand = vec![0.0; n];
    base[..worse].fill(1.0);
    cand[worse..worse + better].fill(1.0);
    for item in worse + better..(worse + better + n / 2).min(n) {
        base[item] = 1.0;
        cand[item] = 1.0;
    }
    (base, cand)
}

fn margin_policy(dir: &Path, margin: f64) -> Policy {
    let path = dir.join("margin.toml");
    std::fs::write(&path, format!("[[rule]]\nmargin = {margin}\n")).unwrap();
    Policy::from_file(&path).unwrap()
}

#[test]
fn under_a_margin_noise_is_inconclusive_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    // Two items got worse of 200 (exact McNemar p = 0.5): not evidence of a
    // drop beyond 0.4 points, whatever the interval's width.
    let (base, cand) = counted(200, 2, 0);
    let b = read(&native(dir.path(), "b", &base)).unwrap();
    let c = read(&native(dir.path(), "c", &cand)).unwrap();
    let report = evaluate_gate(&b, &c, &margin_policy(dir.path(), 0.004), "p").unwrap();
    let row = &report.rows[0];
    assert_eq!(row.verdict, RowVerdict::Inconclusive, "{row:?}");
    let p = row
        .comparison
        .p_inferior
        .expect("a one-sided test under a margin");
    assert!(p > 0.05, "{p}");
    assert!((row.comparison.confidence - 0.90).abs() < 1e-12);
    // A drop well beyond the margin, on enough items, fails on the test.
    let (base, cand) = counted(2000, 90, 10);
    let b = read(&native(dir.path(), "b", &base)).unwrap();
    let c = read(&native(dir.path(), "c", &cand)).unwrap();
    let report = evaluate_gate(&b, &c, &margin_policy(dir.path(), 0.01), "p").unwrap();
    let row = &report.rows[0];
    assert_eq!(row.verdict, RowVerdict::Fail, "{row:?}");
    assert!(
        row.p_adjusted < 0.05 && row.comparison.ci_high < -0.01,
        "{row:?}"
    );
    assert!(row.reasons[0].contains("90% interval"), "{:?}", row.reasons);
}

#[test]
fn a_a_runs_fail_at_most_alpha_with_and_without_a_margin() {
    let dir = tempfile::tempdir().unwrap();
    for margin in [0.0, 0.004, 0.02] {
        let policy = margin_policy(dir.path(), margin);
        let mut fails = 0;
        let runs = 200;
        for seed in 0..runs {
            // The same model asked twice: items flip both ways at random.
            let (base, cand) = planted(200, 0.7, 0.03, 0.03, seed);
            let b = read(&native(dir.path(), "b", &base)).unwrap();
            let c = read(&native(dir.path(), "c", &cand)).unwrap();
            let report = evaluate_gate(&b, &c, &policy, "p").unwrap();
            fails += usize::from(report.verdict == Verdict::Fail);
        }
        assert!(
            fails <= runs as usize / 20,
            "margin {margin}: {fails} of {runs} A/A runs failed"
        );
    }
}

#[test]
fn across_many_null_tasks_holm_keeps_the_family_wise_rate() {
    let dir = tempfile::tempdir().unwrap();
    let runs = 40;
    let mut any_fail = 0;
    for run in 0..runs {
        // 50 tasks, each the same model asked twice, in one results file.
        let mut lines = (Vec::new(), Vec::new());
        for task in 0..50 {
            let (base, cand) = planted(200, 0.7, 0.03, 0.03, 1000 * run + task);
            for (side, scores) in [(&mut lines.0, &base), (&mut lines.1, &cand)] {
                for (item, score) in scores.iter().enumerate() {
                    side.push(format!(
                        r#"{{"id":"q{item}","task":"t{task}","scores":{{"correct":{score}}}}}"#
                    ));
                }
            }
        }
        std::fs::write(dir.path().join("b.jsonl"), lines.0.join("\n")).unwrap();
        std::fs::write(dir.path().join("c.jsonl"), lines.1.join("\n")).unwrap();
        let b = read(&dir.path().join("b.jsonl")).unwrap();
        let c = read(&dir.path().join("c.jsonl")).unwrap();
        let report = evaluate_gate(&b, &c, &margin_policy(dir.path(), 0.004), "p").unwrap();
        any_fail += usize::from(report.verdict == Verdict::Fail);
    }
    // Holm bounds the chance of any false fail by alpha: 2 of 40 expected at most.
    assert!(
        any_fail <= 4,
        "{any_fail} of {runs} runs failed a null task"
    );
}

#[test]
fn tango_s_statistic_is_mcnemar_s_at_no_margin_and_its_interval_brackets_the_estimate() {
    // At a margin of zero, Tango's score test is McNemar's z: (c - b)/√(b + c).
    let (worse, better, n) = (30_usize, 12_usize, 400_usize);
    let one_sided = stats::tango_inferior(better, worse, n, 0.0);
    let z = (better as f64 - worse as f64) / ((better + worse) as f64).sqrt();
    let normal = statrs::distribution::Normal::standard();
    let expected = statrs::distribution::ContinuousCDF::cdf(&normal, z);
    assert!(
        (one_sided - expected).abs() < 1e-12,
        "{one_sided} vs {expected}"
    );
    let (low, high) = stats::tango_interval(better, worse, n, 0.90);
    let estimate = (better as f64 - worse as f64) / n as f64;
    assert!(
        low < estimate && estimate < high,
        "[{low}, {high}] around {estimate}"
    );
    // Its bounds are where the one-sided test at 5% turns: at the upper bound
    // as a margin, p is 5%.
    let at_bound = stats::tango_inferior(better, worse, n, -high);
    assert!((at_bound - 0.05).abs() < 1e-6, "{at_bound}");
}

#[test]
fn the_binary_mde_is_the_exact_test_s_and_none_when_unreachable() {
    // 60 of 200 items changed: the smallest change exact McNemar detects with
    // 80% power, checked by computing the power at it directly.
    let mde = stats::mcnemar_mde(200, 60, 0.05).expect("reachable");
    let normal = (1.959_964 + 0.841_621) * (60.0_f64 / 200.0).sqrt() / 200.0_f64.sqrt();
    assert!(
        mde > normal,
        "exact {mde} must exceed the normal approximation {normal}"
    );
    let mut rng_state = 11_u64;
    let mut uniform = || {
        rng_state = rng_state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (rng_state >> 11) as f64 / (1_u64 << 53) as f64
    };
    let share = 0.3;
    let worse = (share + mde) / 2.0;
    let better = (share - mde) / 2.0;
    let trials = 4000;
    let mut rejected = 0;
    for _ in 0..trials {
        let (mut w, mut b) = (0, 0);
        for _ in 0..200 {
            let r = uniform();
            if r < worse {
                w += 1;
            } else if r < worse + better {
                b += 1;
            }
        }
        rejected += usize::from(stats::mcnemar_exact(w, b) <= 0.05);
    }
    let power = rejected as f64 / trials as f64;
    assert!(
        (power - 0.8).abs() < 0.03,
        "power at the MDE {mde}: {power}"
    );
    // One item changed of 200: no change the data allows is detectable.
    assert_eq!(stats::mcnemar_mde(200, 1, 0.05), None);
    assert_eq!(stats::mcnemar_mde(200, 0, 0.05), None);
}

#[test]
fn scores_no_sum_can_hold_are_refused_naming_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let mut cand = vec![0.0; 200];
    cand[17] = 1e308;
    cand[99] = 1e308;
    let b = read(&native(dir.path(), "b", &[0.5; 200])).unwrap();
    let c = read(&native(dir.path(), "c", &cand)).unwrap();
    let error = evaluate_gate(&b, &c, &Policy::default(), "default")
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("item `q17` of qa/correct scores 1e308"),
        "{error}"
    );
    assert!(error.contains("c.jsonl"), "{error}");
    // A score that is not a number (inspect_ai's string grades can be "nan").
    let path = dir.path().join("nan.jsonl");
    std::fs::write(&path, "{\"id\": \"a\", \"scores\": {\"x\": 1}}\n").unwrap();
    let mut set = read(&path).unwrap();
    for data in set.metrics.values_mut() {
        data.map_values(|_| f64::NAN);
    }
    let error = evaluate_gate(&set, &set, &Policy::default(), "default")
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("item `a` of default/x scores NaN, not a number"),
        "{error}"
    );
}

#[test]
fn runs_that_cannot_be_paired_say_so_instead_of_comparing_with_zeros() {
    let dir = tempfile::tempdir().unwrap();
    // The same lm-eval results, with samples beside the baseline only.
    let results = r#"{"results": {"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": 0.05}}, "versions": {"t": 1}, "n-shot": {"t": 0}, "configs": {"t": {}}, "n-samples": {"t": {"original": 4, "effective": 4}}}"#;
    for side in ["base", "cand"] {
        std::fs::create_dir_all(dir.path().join(side)).unwrap();
        std::fs::write(
            dir.path()
                .join(side)
                .join("results_2026-01-01T00-00-00.json"),
            results,
        )
        .unwrap();
    }
    let samples: String = (0..4)
        .map(|doc| format!("{{\"doc_id\": {doc}, \"filter\": \"none\", \"metrics\": [\"acc\"], \"acc\": {}}}\n", doc % 2))
        .collect();
    std::fs::write(
        dir.path().join("base/samples_t_2026-01-01T00-00-00.jsonl"),
        samples,
    )
    .unwrap();
    let b = read(&dir.path().join("base")).unwrap();
    let c = read(&dir.path().join("cand")).unwrap();
    let error = evaluate_gate(&b, &c, &Policy::default(), "default").expect_err("refused");
    let Error::NotComparable { differences } = error else {
        panic!("{error}");
    };
    assert!(
        differences.iter().any(|d| d.contains("t/acc,none: the baseline has per-item scores but the candidate has none (only an aggregate)")),
        "{differences:?}"
    );
    // Runs with no item in common, from two producers: the formats are named.
    let native_path = native(dir.path(), "other", &[1.0, 0.0, 1.0, 1.0]);
    let other = read(&native_path).unwrap();
    let error = evaluate_gate(&b, &other, &Policy::default(), "default").expect_err("refused");
    let Error::NotComparable { differences } = error else {
        panic!("{error}");
    };
    assert!(
        differences[0].starts_with("the baseline is lm-eval results")
            && differences[0].contains("the candidate is gantry results"),
        "{differences:?}"
    );
}

#[test]
fn an_item_twice_is_a_mistake_not_a_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    std::fs::write(
        &path,
        "{\"id\": \"a\", \"scores\": {\"x\": 1}}\n{\"id\": \"b\", \"scores\": {\"x\": 0}}\n{\"id\": \"a\", \"scores\": {\"x\": 0}}\n",
    )
    .unwrap();
    let error = read(&path).expect_err("refused").to_string();
    assert!(
        error.contains("r.jsonl:3: item `a` of task `default` is also on line 1"),
        "{error}"
    );
    // Repeats say so and are averaged.
    std::fs::write(
        &path,
        "{\"id\": \"a\", \"repeat\": 0, \"scores\": {\"x\": 1}}\n{\"id\": \"a\", \"repeat\": 1, \"scores\": {\"x\": 0}}\n",
    )
    .unwrap();
    let set = read(&path).unwrap();
    let item = set.metrics.values().next().unwrap().get("a").unwrap();
    assert_eq!(item.values().collect::<Vec<_>>(), vec![1.0, 0.0]);
    // Eval items too: two items with one id would be averaged as repeats.
    let items = dir.path().join("items.jsonl");
    std::fs::write(
        &items,
        "{\"id\": 1, \"prompt\": \"a\"}\n{\"id\": 2, \"prompt\": \"b\"}\n{\"id\": 1, \"prompt\": \"c\"}\n",
    )
    .unwrap();
    let error = gantry_eval::runner::read_items(&items)
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("items.jsonl:3: id `1` is also the id of the item on line 1"),
        "{error}"
    );
}

#[test]
fn parse_errors_do_not_quote_values_that_could_be_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let items = dir.path().join("items.jsonl");
    std::fs::write(&items, "{\"id\": 1, \"prompt\": \"a\", \"choices\": \"sk-proj-Zq8vN3xR7tL2mK9pW4sY6bH1cJ5dF0gE\"}\n").unwrap();
    let error = gantry_eval::runner::read_items(&items)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("not an eval item"), "{error}");
    assert!(!error.contains("Zq8vN3xR"), "{error}");
    assert!(error.contains("characters not shown"), "{error}");
}
