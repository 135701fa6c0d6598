//! Following the trainer's metrics file (`GANTRY_METRICS_FILE`) while it runs.
//!
//! The contract: JSON Lines, appended, each line an object with an integer
//! `step` and numbers. The follower reads what was appended since it last
//! looked, keeps a line that is still being written for next time, and keeps
//! the latest value, the best value (for metrics whose direction is known)
//! and a thinned history of every metric for the chart. A line that is not
//! such an object is skipped and counted, with its file and line number.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use crate::record::{MetricValue, MetricsState};

/// Points kept per metric for the chart; beyond it every other point goes.
const HISTORY_POINTS: usize = 4096;

/// Malformed lines quoted in the record.
const MALFORMED_EXAMPLES: usize = 10;

/// One reported value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The metric's name.
    pub key: String,
    /// The step.
    pub step: u64,
    /// The value.
    pub value: f64,
    /// When gantry read it (milliseconds since the Unix epoch).
    pub timestamp_ms: i64,
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Lower is better (loss, perplexity, error rates).
    Minimize,
    /// Higher is better (accuracy, F1, BLEU, reward).
    Maximize,
}

/// The direction of a metric, from its name; `None` for learning rates,
/// throughput and everything else without one.
pub fn goal(key: &str) -> Option<Goal> {
    let key = key.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|word| key.contains(word));
    if any(&["loss", "perplexity", "ppl", "error", "wer", "cer", "nll"]) {
        Some(Goal::Minimize)
    } else if any(&[
        "acc", "f1", "bleu", "rouge", "exact", "reward", "score", "auc",
    ]) {
        Some(Goal::Maximize)
    } else {
        None
    }
}

/// Follows one metrics file.
#[derive(Debug)]
pub struct MetricsFollower {
    path: PathBuf,
    offset: u64,
    line: u64,
    partial: Vec<u8>,
    lines: u64,
    malformed: u64,
    malformed_examples: Vec<String>,
    last: BTreeMap<String, MetricValue>,
    best: BTreeMap<String, MetricValue>,
    history: BTreeMap<String, Vec<(u64, f64)>>,
    notices: Vec<String>,
}

impl MetricsFollower {
    /// Follows `path`, which need not exist yet. Lines already in it (a run
    /// resumed into the same file) are read too.
    pub fn new(path: &Path) -> MetricsFollower {
        MetricsFollower {
            path: path.to_path_buf(),
            offset: 0,
            line: 0,
            partial: Vec::new(),
            lines: 0,
            malformed: 0,
            malformed_examples: Vec::new(),
            last: BTreeMap::new(),
            best: BTreeMap::new(),
            history: BTreeMap::new(),
            notices: Vec::new(),
        }
    }

    /// Reads what was appended since the last call and returns its points.
    pub fn poll(&mut self) -> Vec<MetricPoint> {
        self.read(false)
    }

    /// Reads the rest, a last line without its newline included.
    pub fn finish(&mut self) -> Vec<MetricPoint> {
        self.read(true)
    }

    /// Warnings since the last call (a truncated file, malformed lines).
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// Whether any metric was read.
    pub fn seen_any(&self) -> bool {
        !self.last.is_empty()
    }

    /// The history of `key` (step, value), thinned to at most a few thousand points.
    pub fn history(&self, key: &str) -> &[(u64, f64)] {
        self.history.get(key).map_or(&[], Vec::as_slice)
    }

    /// The metrics' names.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.history.keys().map(String::as_str)
    }

    /// What goes into the run record.
    pub fn state(&self) -> MetricsState {
        MetricsState {
            file: self.path.display().to_string(),
            lines: self.lines,
            malformed: self.malformed,
            malformed_examples: self.malformed_examples.clone(),
            last: self.last.clone(),
            best: self.best.clone(),
        }
    }

    fn read(&mut self, at_end: bool) -> Vec<MetricPoint> {
        let mut points = Vec::new();
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return points;
        };
        let length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
        if length < self.offset {
            self.notices.push(format!(
                "{}: the file shrank from {} to {length} bytes (truncated by the trainer?); reading it again from the start",
                self.path.display(),
                self.offset
            ));
            self.offset = 0;
            self.line = 0;
            self.partial.clear();
        }
        let mut appended = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err()
            || file.read_to_end(&mut appended).is_err()
        {
            return points;
        }
        self.offset += appended.len() as u64;
        self.partial.extend_from_slice(&appended);
        let timestamp_ms = chrono::Utc::now().timestamp_millis();
        let mut consumed = 0;
        while let Some(newline) = self.partial[consumed..].iter().position(|&b| b == b'\n') {
            let line = self.partial[consumed..consumed + newline].to_vec();
            consumed += newline + 1;
            self.take_line(&line, timestamp_ms, &mut points);
        }
        self.partial.drain(..consumed);
        if at_end && !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.take_line(&line, timestamp_ms, &mut points);
        }
        points
    }

    fn take_line(&mut self, line: &[u8], timestamp_ms: i64, points: &mut Vec<MetricPoint>) {
        self.line += 1;
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        self.lines += 1;
        match parse_line(text) {
            Ok((step, values)) => {
                for (key, value) in values {
                    self.observe(&key, step, value);
                    points.push(MetricPoint {
                        key,
                        step,
                        value,
                        timestamp_ms,
                    });
                }
            }
            Err(reason) => {
                self.malformed += 1;
                let example = format!("{}:{}: {reason}", self.path.display(), self.line);
                if self.malformed_examples.len() < MALFORMED_EXAMPLES {
                    self.malformed_examples.push(example.clone());
                    self.notices
                        .push(format!("skipped a metrics line: {example}"));
                }
            }
        }
    }

    fn observe(&mut self, key: &str, step: u64, value: f64) {
        self.last
            .insert(key.to_owned(), MetricValue { step, value });
        if let Some(goal) = goal(key) {
            let better = self.best.get(key).is_none_or(|best| match goal {
                Goal::Minimize => value < best.value,
                Goal::Maximize => value > best.value,
            });
            if better {
                self.best
                    .insert(key.to_owned(), MetricValue { step, value });
            }
        }
        let history = self.history.entry(key.to_owned()).or_default();
        // A resumed attempt reports the steps after its checkpoint again:
        // the new values replace the abandoned ones.
        while history.last().is_some_and(|&(last, _)| last >= step) {
            history.pop();
        }
        history.push((step, value));
        if history.len() > HISTORY_POINTS {
            let mut index = 0;
            history.retain(|_| {
                index += 1;
                index % 2 == 1
            });
        }
    }
}

/// `(step, [(key, value)…])` of one line, or why it is not a metrics line.
fn parse_line(text: &str) -> Result<(u64, Vec<(String, f64)>), String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("not JSON ({error})"))?;
    let serde_json::Value::Object(object) = value else {
        return Err("not a JSON object".to_owned());
    };
    let step = match object.get("step") {
        Some(serde_json::Value::Number(step)) => step
            .as_u64()
            .or_else(|| {
                step.as_f64()
                    .filter(|step| step.fract() == 0.0 && *step >= 0.0 && *step < 2f64.powi(53))
                    .map(|step| step as u64)
            })
            .ok_or_else(|| format!("\"step\" is {step}, not a non-negative integer"))?,
        Some(other) => return Err(format!("\"step\" is {other}, not an integer")),
        None => return Err("no \"step\"".to_owned()),
    };
    let values: Vec<(String, f64)> = object
        .iter()
        .filter(|(key, _)| key.as_str() != "step")
        .filter_map(|(key, value)| Some((key.clone(), value.as_f64()?)))
        .filter(|(_, value)| value.is_finite())
        .collect();
    if values.is_empty() {
        return Err("no numeric value besides \"step\"".to_owned());
    }
    Ok((step, values))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn follows_appends_keeps_partial_lines_and_counts_malformed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut follower = MetricsFollower::new(&path);
        assert!(follower.poll().is_empty(), "no file yet");
        let mut file = std::fs::File::create(&path).unwrap();
        write!(
            file,
            "{{\"step\":1,\"loss\":2.5,\"lr\":0.001,\"phase\":\"train\"}}\n{{\"step\":2,\"lo"
        )
        .unwrap();
        let points = follower.poll();
        assert_eq!(points.len(), 2, "{points:?}");
        write!(
            file,
            "ss\":2.0}}\nnot json\n[1,2]\n{{\"loss\":1}}\n{{\"step\":-1,\"loss\":1}}\n{{\"step\":3}}\n{{\"step\":3,\"loss\":1.5,\"acc\":0.4}}\n{{\"step\":4,\"loss\":1.7,\"acc\":0.6}}"
        )
        .unwrap();
        let points = follower.poll();
        assert_eq!(
            points.len(),
            3,
            "the unterminated last line waits: {points:?}"
        );
        let points = follower.finish();
        assert_eq!(points.len(), 2);
        let state = follower.state();
        assert_eq!(state.lines, 9);
        assert_eq!(state.malformed, 5);
        assert!(
            state.malformed_examples[0]
                .ends_with("metrics.jsonl:3: not JSON (expected ident at line 1 column 2)"),
            "{:?}",
            state.malformed_examples
        );
        assert!(state.malformed_examples[2].contains(":5: no \"step\""));
        assert!(state.malformed_examples[3].contains(":6: \"step\" is -1"));
        assert!(state.malformed_examples[4].contains(":7: no numeric value"));
        assert_eq!(
            state.last["loss"],
            MetricValue {
                step: 4,
                value: 1.7
            }
        );
        assert_eq!(
            state.best["loss"],
            MetricValue {
                step: 3,
                value: 1.5
            }
        );
        assert_eq!(
            state.best["acc"],
            MetricValue {
                step: 4,
                value: 0.6
            }
        );
        assert!(
            !state.best.contains_key("lr"),
            "no direction for a learning rate"
        );
        assert_eq!(follower.take_notices().len(), 5);
    }

    #[test]
    fn a_resumed_run_replaces_the_abandoned_steps_in_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let lines: String = [1, 2, 3, 4, 2, 3, 4, 5]
            .iter()
            .enumerate()
            .map(|(index, step)| format!("{{\"step\":{step},\"loss\":{index}}}\n"))
            .collect();
        std::fs::write(&path, lines).unwrap();
        let mut follower = MetricsFollower::new(&path);
        follower.poll();
        assert_eq!(
            follower.history("loss"),
            [(1, 0.0), (2, 4.0), (3, 5.0), (4, 6.0), (5, 7.0)]
        );
    }

    #[test]
    fn long_histories_are_thinned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let lines: String = (0..10_000)
            .map(|step| format!("{{\"step\":{step},\"loss\":1}}\n"))
            .collect();
        std::fs::write(&path, lines).unwrap();
        let mut follower = MetricsFollower::new(&path);
        assert_eq!(follower.poll().len(), 10_000);
        let history = follower.history("loss");
        assert!(history.len() <= HISTORY_POINTS && history.len() > HISTORY_POINTS / 4);
        assert_eq!(history[0].0, 0);
        assert!(history.last().unwrap().0 >= 9_990);
    }

    #[test]
    fn a_truncated_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, "{\"step\":1,\"loss\":3}\n{\"step\":2,\"loss\":2}\n").unwrap();
        let mut follower = MetricsFollower::new(&path);
        assert_eq!(follower.poll().len(), 2);
        std::fs::write(&path, "{\"step\":1,\"loss\":4}\n").unwrap();
        assert_eq!(follower.poll().len(), 1);
        assert!(follower.take_notices()[0].contains("shrank"));
    }

    #[test]
    fn directions_come_from_names() {
        assert_eq!(goal("val_loss"), Some(Goal::Minimize));
        assert_eq!(goal("eval/accuracy"), Some(Goal::Maximize));
        assert_eq!(goal("lr"), None);
        assert_eq!(goal("tokens_per_second"), None);
    }
}

#[cfg(test)]
mod hostile_input {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(gantry_test::adversarial::config())]

        /// A metrics file of hostile bytes, read as it grows and at the
        /// end: points, malformed lines and notices, never a panic.
        #[test]
        fn hostile_metrics_are_notices(bytes in gantry_test::adversarial::bytes(), split in any::<prop::sample::Index>()) {
            let directory = tempfile::tempdir().expect("tempdir");
            let path = directory.path().join("metrics.jsonl");
            let cut = split.index(bytes.len() + 1);
            std::fs::write(&path, &bytes[..cut]).expect("write");
            let mut follower = super::MetricsFollower::new(&path);
            let _ = follower.poll();
            std::fs::write(&path, &bytes).expect("write");
            let _ = follower.poll();
            let _ = follower.finish();
            let _ = follower.take_notices();
            let _ = follower.state();
        }
    }
}
