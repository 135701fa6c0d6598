//! Evaluation results from any producer, as per-item scores by (task, metric).
//!
//! Readers: gantry-native JSONL (one line per item: `id`, `task`,
//! `prompt_hash`, `scores`, `error`), lm-evaluation-harness output (a
//! `results_<ts>.json` with, beside it, `samples_<task>_<ts>.jsonl` files)
//! promptfoo output JSON (`promptfoo eval -o out.json`) and inspect_ai logs
//! (`.eval` zips or `.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result, jsonl_lines, read_text};

/// Where a result set came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// gantry-native results JSONL.
    Gantry,
    /// lm-evaluation-harness results JSON (and samples JSONL).
    LmEval,
    /// promptfoo `eval -o out.json` output (results version 2 or 3).
    Promptfoo,
    /// inspect_ai logs: `.eval` (zip) or `.json`.
    Inspect,
}

impl Source {
    /// The name used in policies and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Gantry => "gantry",
            Source::LmEval => "lm-eval",
            Source::Promptfoo => "promptfoo",
            Source::Inspect => "inspect",
        }
    }
}

/// A metric of a task, e.g. (`arc_easy`, `acc,none`).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct MetricKey {
    /// Task name.
    pub task: String,
    /// Metric name (lm-eval: `metric,filter`).
    pub metric: String,
}

impl std::fmt::Display for MetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.task, self.metric)
    }
}

/// The items of one task, shared by all its metrics: ids in the order the
/// file first lists them, and the hashes each was asked with.
#[derive(Debug, Default)]
pub struct TaskItems {
    ids: indexmap::IndexSet<Arc<str>>,
    /// Per row: the prompt's hash and the eval document's.
    hashes: Vec<Hashes>,
}

/// An item's prompt hash and eval-document hash.
type Hashes = (Option<Arc<str>>, Option<Arc<str>>);

impl TaskItems {
    /// The row of `id`, added when new.
    fn row(&mut self, id: &str) -> u32 {
        let row = match self.ids.get_index_of(id) {
            Some(row) => row,
            None => {
                self.ids.insert(Arc::from(id));
                self.hashes.push((None, None));
                self.ids.len() - 1
            }
        };
        u32::try_from(row).unwrap_or(u32::MAX)
    }
}

/// One item's scores for one metric, as [`MetricData`] hands them out.
#[derive(Debug, Clone, Copy)]
pub struct ItemScores<'a> {
    data: &'a MetricData,
    row: u32,
}

impl<'a> ItemScores<'a> {
    /// Scores, one per repeat (none for an attempt that errored).
    pub fn values(&self) -> impl Iterator<Item = f64> + use<'a> {
        let (data, row) = (self.data, self.row);
        let count = data.counts[row as usize];
        let first = (count > 0).then(|| data.first[row as usize]);
        // Repeats are rare: the map is consulted only for an item that has some.
        let more = if count > 1 {
            data.more.get(&row).map(Vec::as_slice).unwrap_or(&[])
        } else {
            &[]
        };
        first.into_iter().chain(more.iter().copied())
    }

    /// The mean over repeats.
    pub fn mean(&self) -> Option<f64> {
        match self.data.counts[self.row as usize] {
            0 => None,
            1 => Some(self.data.first[self.row as usize]),
            count => Some(self.values().sum::<f64>() / f64::from(count)),
        }
    }

    /// Hash of the prompt the model saw.
    pub fn prompt_hash(&self) -> Option<&'a Arc<str>> {
        self.data.items.hashes[self.row as usize].0.as_ref()
    }

    /// Hash of the eval document.
    pub fn doc_hash(&self) -> Option<&'a Arc<str>> {
        self.data.items.hashes[self.row as usize].1.as_ref()
    }

    /// Corpus metrics: the item's sufficient statistics, one vector per repeat.
    pub fn stats(&self) -> &'a [Vec<f64>] {
        if self.data.stats.is_empty() {
            return &[];
        }
        self.data
            .stats
            .get(&self.row)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// `counts` of an item the metric does not list.
const ABSENT: u32 = u32::MAX;

/// A reported aggregate (for sources without per-item data, and for checks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    /// Reported value.
    pub value: f64,
    /// Reported standard error (`None` for lm-eval's `"N/A"`).
    pub stderr: Option<f64>,
    /// Items behind it.
    pub n: Option<usize>,
}

/// Everything known about one metric.
///
/// Scores are a column over the task's items ([`TaskItems`], shared by the
/// task's metrics): the first score of each item and how many it has, the
/// rare repeats and corpus statistics aside. 200,000 items × 50 metrics
/// take 12 bytes a score, not a map entry and an allocation each.
#[derive(Debug, Clone, Default)]
pub struct MetricData {
    items: Arc<TaskItems>,
    /// Per row: the first score (0 when it has none).
    first: Vec<f64>,
    /// Per row: how many scores; [`ABSENT`] when the metric does not list it.
    counts: Vec<u32>,
    /// Scores after the first, by row.
    more: std::collections::HashMap<u32, Vec<f64>>,
    /// Corpus statistics by row.
    stats: std::collections::HashMap<u32, Vec<Vec<f64>>>,
    /// Rows listed.
    listed: usize,
    /// The producer's own aggregate, when it reports one.
    pub aggregate: Option<Aggregate>,
    /// Direction, when the producer says.
    pub higher_is_better: Option<bool>,
    /// A corpus metric (BLEU, F1, MCC): the score of the set is recomputed
    /// from the items' statistics, not averaged.
    pub corpus: Option<crate::corpus::Corpus>,
}

impl MetricData {
    /// Items listed for this metric.
    pub fn len(&self) -> usize {
        self.listed
    }

    /// Whether the metric lists no item (only an aggregate, if anything).
    pub fn is_empty(&self) -> bool {
        self.listed == 0
    }

    /// The items, in the order the file lists them (pairing follows the
    /// baseline's order, so resampling is reproducible).
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, ItemScores<'_>)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count != ABSENT)
            .filter_map(move |(row, _)| {
                let row = u32::try_from(row).ok()?;
                Some((
                    self.items.ids.get_index(row as usize)?,
                    ItemScores { data: self, row },
                ))
            })
    }

    /// The item `id`, when the metric lists it.
    pub fn get(&self, id: &str) -> Option<ItemScores<'_>> {
        let row = self.items.ids.get_index_of(id)?;
        (self.counts.get(row).is_some_and(|count| *count != ABSENT)).then(|| ItemScores {
            data: self,
            row: u32::try_from(row).unwrap_or(u32::MAX),
        })
    }

    /// The ids of the items listed.
    pub fn ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.iter().map(|(id, _)| id)
    }

    /// Applies `f` to every score (for tests and rescaling).
    pub fn map_values(&mut self, mut f: impl FnMut(f64) -> f64) {
        for (first, count) in self.first.iter_mut().zip(&self.counts) {
            if *count != ABSENT && *count > 0 {
                *first = f(*first);
            }
        }
        for values in self.more.values_mut() {
            for value in values {
                *value = f(*value);
            }
        }
    }

    /// Lists `row` (with no score yet) when it is not listed.
    fn list(&mut self, row: u32) {
        let index = row as usize;
        if self.counts.len() <= index {
            self.counts.resize(index + 1, ABSENT);
            self.first.resize(index + 1, 0.0);
        }
        if self.counts[index] == ABSENT {
            self.counts[index] = 0;
            self.listed += 1;
        }
    }

    /// Adds a score (a repeat when the item has one).
    fn push(&mut self, row: u32, value: f64) {
        self.list(row);
        let index = row as usize;
        if self.counts[index] == 0 {
            self.first[index] = value;
        } else {
            self.more.entry(row).or_default().push(value);
        }
        self.counts[index] = self.counts[index].saturating_add(1);
    }

    /// Adds corpus statistics.
    fn push_stats(&mut self, row: u32, stats: Vec<f64>) {
        self.list(row);
        self.stats.entry(row).or_default().push(stats);
    }
}

/// Builds a result set's metrics: ids interned once per task.
#[derive(Default)]
struct Builder {
    tasks: BTreeMap<String, TaskItems>,
    metrics: BTreeMap<MetricKey, MetricData>,
}

/// One item of one metric while a file is read.
struct Slot<'a> {
    data: &'a mut MetricData,
    hashes: &'a mut Hashes,
    row: u32,
}

impl Slot<'_> {
    fn push(&mut self, value: f64) {
        self.data.push(self.row, value);
    }

    fn push_stats(&mut self, stats: Vec<f64>) {
        self.data.push_stats(self.row, stats);
    }
}

impl Builder {
    /// The metric `key`, made with `make` when new.
    fn metric(&mut self, key: MetricKey, make: impl FnOnce() -> MetricData) -> &mut MetricData {
        self.metrics.entry(key).or_insert_with(make)
    }

    /// Item `id` of metric `key` (listed from now on, scored or not).
    fn slot(&mut self, key: &MetricKey, id: &str) -> Slot<'_> {
        // Looked up before inserting: a key is cloned once per metric, not per score.
        if !self.tasks.contains_key(&key.task) {
            self.tasks.insert(key.task.clone(), TaskItems::default());
        }
        if !self.metrics.contains_key(key) {
            self.metrics.insert(key.clone(), MetricData::default());
        }
        let (Some(task), Some(data)) = (self.tasks.get_mut(&key.task), self.metrics.get_mut(key))
        else {
            unreachable!("both were inserted above");
        };
        let row = task.row(id);
        data.list(row);
        Slot {
            data,
            hashes: &mut task.hashes[row as usize],
            row,
        }
    }

    fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// The metrics, each with its task's items.
    fn finish(self) -> BTreeMap<MetricKey, MetricData> {
        let tasks: BTreeMap<String, Arc<TaskItems>> = self
            .tasks
            .into_iter()
            .map(|(task, mut items)| {
                items.ids.shrink_to_fit();
                items.hashes.shrink_to_fit();
                (task, Arc::new(items))
            })
            .collect();
        self.metrics
            .into_iter()
            .map(|(key, mut data)| {
                if let Some(items) = tasks.get(&key.task) {
                    data.items = Arc::clone(items);
                }
                data.first.shrink_to_fit();
                data.counts.shrink_to_fit();
                (key, data)
            })
            .collect()
    }
}

/// What must match for two runs to be comparable, per task.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TaskFacts {
    /// lm-eval `task_hashes`.
    pub hash: Option<String>,
    /// lm-eval `versions`.
    pub version: Option<String>,
    /// lm-eval `n-shot`.
    pub n_shot: Option<String>,
    /// `(original, effective)` samples: effective < original means `--limit`.
    pub samples: Option<(u64, u64)>,
}

/// One run's results.
#[derive(Debug, Clone)]
pub struct ResultSet {
    /// The producer.
    pub source: Source,
    /// The file or directory read.
    pub path: PathBuf,
    /// Metrics.
    pub metrics: BTreeMap<MetricKey, MetricData>,
    /// Comparability facts by task.
    pub tasks: BTreeMap<String, TaskFacts>,
    /// Model name as recorded by the producer.
    pub model: Option<String>,
    /// Chat template hash (lm-eval `chat_template_sha`).
    pub chat_template: Option<String>,
    /// The model that graded the answers (LLM-as-judge), when the producer records one.
    pub judge: Option<String>,
}

fn score_value(value: &Value) -> Option<f64> {
    match value {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64().filter(|v| v.is_finite()),
        _ => None,
    }
}

/// Reads a result file or directory, detecting the producer.
pub fn read(path: &Path) -> Result<ResultSet> {
    if path.is_dir() {
        let results = newest_results_json(path)?.ok_or_else(|| Error::Input {
            path: path.to_owned(),
            line: None,
            message:
                "a directory of results must hold an lm-evaluation-harness results_<timestamp>.json"
                    .into(),
        })?;
        return read_lm_eval(&results);
    }
    if path.extension().is_some_and(|e| e == "eval") {
        return read_inspect_zip(path);
    }
    let text = read_text(path)?;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(&text) {
        if object.get("results").is_some_and(Value::is_object)
            && (object.contains_key("versions")
                || object.contains_key("n-shot")
                || object.contains_key("configs"))
        {
            return read_lm_eval(path);
        }
        if object.contains_key("evalId")
            || object
                .get("results")
                .and_then(|r| r.get("version"))
                .is_some()
        {
            return read_promptfoo(path, &Value::Object(object));
        }
        if object.contains_key("eval") && object.contains_key("status") {
            let header = Value::Object(object);
            let samples = header["samples"].as_array().cloned().unwrap_or_default();
            return read_inspect(path, &header, header.get("reductions"), &samples);
        }
    }
    let whole = serde_json::from_str::<Value>(&text);
    match serde_json::from_str::<Value>(first) {
        Ok(Value::Object(o)) if o.contains_key("scores") => read_native(path, &text),
        // JSON that does not parse: say where and why, not "not a results file".
        Err(first_error) if first.trim_start().starts_with(['{', '[']) => {
            let mut lines = text
                .lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty());
            let first_number = lines.next().map_or(1, |(index, _)| index + 1);
            // A document over several lines (lm-eval, promptfoo) fails on its
            // first line only because it goes on; JSONL goes on with lines
            // that parse alone.
            let document = first_error.is_eof()
                && lines
                    .next()
                    .is_some_and(|(_, line)| serde_json::from_str::<Value>(line).is_err());
            let (line, error) = match &whole {
                Err(whole_error) if document => (whole_error.line(), whole_error),
                _ => (first_number, &first_error),
            };
            Err(Error::Input {
                path: path.to_owned(),
                line: Some(line),
                message: format!("not valid JSON: {}", crate::error::quoted_safely(error)),
            })
        }
        _ => Err(Error::Input {
            path: path.to_owned(),
            line: Some(1),
            message: "not a results file gantry reads: expected gantry-native JSONL (objects with `id` and `scores`), \
                      an lm-evaluation-harness results_<timestamp>.json (or its directory), promptfoo output JSON, \
                      or an inspect_ai log (.eval or .json)"
                .into(),
        }),
    }
}

fn read_native(path: &Path, text: &str) -> Result<ResultSet> {
    let mut metrics = Builder::default();
    let mut model = None;
    let mut judge = None;
    // (task, id, repeat) → line: the same item twice is a mistake (two
    // runs concatenated), not a repeat, unless `repeat` tells them apart.
    let mut seen: std::collections::HashMap<(String, Arc<str>, Option<u64>), usize> =
        std::collections::HashMap::new();
    for (number, line) in jsonl_lines(text) {
        let err = |message: String| Error::input(path, Some(number), message);
        let value: Value = serde_json::from_str(line).map_err(|e| {
            err(format!(
                "not valid JSON: {}",
                crate::error::quoted_safely(&e)
            ))
        })?;
        let id: Arc<str> = match value.get("id") {
            Some(Value::String(s)) => Arc::from(s.as_str()),
            Some(Value::Number(n)) => Arc::from(n.to_string()),
            _ => return Err(err("`id` (a string or number) is missing".into())),
        };
        let task = value
            .get("task")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned();
        let repeat = value.get("repeat").and_then(Value::as_u64);
        if let Some(first) = seen.insert((task.clone(), id.clone(), repeat), number) {
            return Err(err(match repeat {
                Some(repeat) => format!(
                    "item `{id}` of task `{task}`, repeat {repeat}, is also on line {first}: each (task, id, repeat) is scored once"
                ),
                None => format!(
                    "item `{id}` of task `{task}` is also on line {first}: repeats of an item carry `repeat` (0, 1, …); the same item twice without it is two runs mixed"
                ),
            }));
        }
        let prompt_hash: Option<Arc<str>> = value
            .get("prompt_hash")
            .and_then(Value::as_str)
            .map(Arc::from);
        if model.is_none() {
            model = value
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        if judge.is_none() {
            judge = value
                .get("judge")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        let scores = value
            .get("scores")
            .and_then(Value::as_object)
            .ok_or_else(|| err("`scores` must be an object of metric → number".into()))?;
        for (metric, score) in scores {
            let key = MetricKey {
                task: task.clone(),
                metric: metric.clone(),
            };
            let mut item = metrics.slot(&key, &id);
            if item.hashes.0.is_none() {
                item.hashes.0.clone_from(&prompt_hash);
            }
            match score {
                Value::Null => {} // an errored attempt: no score, counted as missing
                other => item.push(score_value(other).ok_or_else(|| {
                    err(format!(
                        "`scores.{metric}` is {other}; scores are numbers or booleans"
                    ))
                })?),
            }
        }
    }
    if metrics.is_empty() {
        return Err(Error::Input {
            path: path.to_owned(),
            line: None,
            message: "no scored items".into(),
        });
    }
    Ok(ResultSet {
        source: Source::Gantry,
        path: path.to_owned(),
        metrics: metrics.finish(),
        tasks: BTreeMap::new(),
        model,
        chat_template: None,
        judge,
    })
}

fn newest_results_json(dir: &Path) -> Result<Option<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        error: source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("results_") && n.ends_with(".json"))
        })
        .collect();
    found.sort();
    Ok(found.pop())
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// lm-evaluation-harness: `results_<ts>.json`, and the `samples_<task>_<ts>.jsonl`
/// files beside it (same timestamp) for per-item scores.
fn read_lm_eval(path: &Path) -> Result<ResultSet> {
    let text = read_text(path)?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| Error::Input {
        path: path.to_owned(),
        line: Some(e.line()),
        message: format!("not valid JSON: {}", crate::error::quoted_safely(&e)),
    })?;
    let results = doc
        .get("results")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Input {
            path: path.to_owned(),
            line: None,
            message: "`results` must be an object of task → metrics".into(),
        })?;
    let mut metrics = Builder::default();
    let mut tasks = BTreeMap::new();
    for (task, values) in results {
        let Some(values) = values.as_object() else {
            continue;
        };
        let effective = doc["n-samples"][task]["effective"].as_u64();
        let original = doc["n-samples"][task]["original"].as_u64();
        for (name, value) in values {
            if name == "alias" || name == "sample_len" || name.contains("_stderr") {
                continue;
            }
            let Some(number) = score_value(value) else {
                continue;
            };
            // Keys are `metric,filter`; pre-0.4 files use a bare `metric`.
            let (metric, filter) = name.split_once(',').unwrap_or((name.as_str(), ""));
            let stderr_key = if filter.is_empty() {
                format!("{metric}_stderr")
            } else {
                format!("{metric}_stderr,{filter}")
            };
            let stderr = values.get(&stderr_key).and_then(score_value);
            let data = metrics.metric(
                MetricKey {
                    task: task.clone(),
                    metric: name.clone(),
                },
                MetricData::default,
            );
            data.aggregate = Some(Aggregate {
                value: number,
                stderr,
                n: effective
                    .or_else(|| values.get("sample_len").and_then(Value::as_u64))
                    .map(|n| n as usize),
            });
            data.higher_is_better = doc["higher_is_better"][task][metric].as_bool();
        }
        tasks.insert(
            task.clone(),
            TaskFacts {
                hash: doc["task_hashes"][task].as_str().map(str::to_owned),
                version: as_text(&doc["versions"][task]),
                n_shot: as_text(&doc["n-shot"][task]),
                samples: original.zip(effective),
            },
        );
    }
    // Per-item samples beside the results file: samples_<task>_<same timestamp>.jsonl.
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let timestamp = stem.strip_prefix("results_").unwrap_or("");
    if let Some(dir) = path.parent() {
        for task in tasks.keys() {
            let samples = dir.join(format!("samples_{task}_{timestamp}.jsonl"));
            if samples.is_file() {
                read_lm_eval_samples(&samples, task, &mut metrics)?;
            }
        }
    }
    Ok(ResultSet {
        source: Source::LmEval,
        path: path.to_owned(),
        metrics: metrics.finish(),
        tasks,
        model: doc
            .get("model_name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        chat_template: doc
            .get("chat_template_sha")
            .and_then(Value::as_str)
            .map(str::to_owned),
        judge: None,
    })
}

fn read_lm_eval_samples(path: &Path, task: &str, metrics: &mut Builder) -> Result<()> {
    let text = read_text(path)?;
    let mut seen: std::collections::HashMap<(String, String), usize> =
        std::collections::HashMap::new();
    for (number, line) in jsonl_lines(&text) {
        let err = |message: String| Error::input(path, Some(number), message);
        let sample: Value = serde_json::from_str(line).map_err(|e| {
            err(format!(
                "not valid JSON: {}",
                crate::error::quoted_safely(&e)
            ))
        })?;
        let doc_id = as_text(&sample["doc_id"]).ok_or_else(|| err("`doc_id` is missing".into()))?;
        let filter = sample["filter"].as_str().unwrap_or("none");
        // lm-eval writes one line per document and filter, repeats inside it.
        if let Some(first) = seen.insert((doc_id.clone(), filter.to_owned()), number) {
            return Err(err(format!(
                "doc_id {doc_id} (filter {filter}) is also on line {first}: lm-eval logs each document once per filter"
            )));
        }
        let names: Vec<String> = sample["metrics"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for metric in names {
            let key = MetricKey {
                task: task.to_owned(),
                metric: format!("{metric},{filter}"),
            };
            // Corpus metrics (bleu, f1, mcc) log a [gold, prediction] pair, not a score.
            if let Some(corpus) = crate::corpus::Corpus::from_metric(&metric)
                && sample[&metric].is_array()
            {
                let stats = corpus
                    .item_stats(&sample[&metric])
                    .map_err(|message| err(format!("`{metric}`: {message}")))?;
                let mut item = metrics.slot(&key, &doc_id);
                item.data.corpus = Some(corpus);
                item.push_stats(stats);
                *item.hashes = (
                    sample["prompt_hash"].as_str().map(Arc::from),
                    sample["doc_hash"].as_str().map(Arc::from),
                );
                continue;
            }
            let Some(score) = score_value(&sample[&metric]) else {
                continue;
            };
            let mut item = metrics.slot(&key, &doc_id);
            item.push(score);
            *item.hashes = (
                sample["prompt_hash"].as_str().map(Arc::from),
                sample["doc_hash"].as_str().map(Arc::from),
            );
        }
    }
    Ok(())
}

/// promptfoo: one row per (test case, prompt, provider, repeat). Items are
/// keyed by `metadata.testCaseId`, else by a hash of the test case
/// (description and vars) and the prompt index, so two runs with different
/// providers pair up. Task: the prompt's label. Metrics: `pass` (binary),
/// `score`, and each named score. A row that errored (`failureReason` 2)
/// has no scores: it is missing, not failed.
fn read_promptfoo(path: &Path, doc: &Value) -> Result<ResultSet> {
    let err = |message: String| Error::Input {
        path: path.to_owned(),
        line: None,
        message,
    };
    let results = &doc["results"];
    let version = results["version"].as_u64().unwrap_or(0);
    if version < 2 {
        return Err(err(format!(
            "promptfoo results version {version}: gantry reads versions 2 and 3 (promptfoo 0.30+)"
        )));
    }
    let rows = results["results"]
        .as_array()
        .ok_or_else(|| err("`results.results` must be an array".into()))?;
    let labels: Vec<String> = results["prompts"]
        .as_array()
        .map(|prompts| {
            prompts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    p["label"]
                        .as_str()
                        .map_or_else(|| format!("prompt-{i}"), str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut metrics = Builder::default();
    for (index, row) in rows.iter().enumerate() {
        let prompt = row["promptIdx"].as_u64().unwrap_or(0) as usize;
        let test = &row["testCase"];
        let id = match test["metadata"]["testCaseId"].as_str() {
            Some(id) => id.to_owned(),
            None => {
                // serde_json writes object keys sorted: a stable hash of the case.
                let canonical = serde_json::to_string(&serde_json::json!({
                    "description": test["description"], "vars": test["vars"], "prompt": prompt,
                }))
                .unwrap_or_default();
                let digest = sha2::Digest::finalize(sha2::Digest::chain_update(
                    sha2::Sha256::default(),
                    canonical.as_bytes(),
                ));
                format!("{:x}", digest)[..16].to_owned()
            }
        };
        let task = labels
            .get(prompt)
            .cloned()
            .unwrap_or_else(|| format!("prompt-{prompt}"));
        let errored = row["failureReason"].as_u64() == Some(2)
            || (row["error"].is_string() && row["success"].is_null());
        let mut scores: Vec<(String, Option<f64>)> = vec![
            (
                "pass".to_owned(),
                row["success"].as_bool().map(|b| if b { 1.0 } else { 0.0 }),
            ),
            ("score".to_owned(), score_value(&row["score"])),
        ];
        if let Some(named) = row["namedScores"].as_object() {
            scores.extend(named.iter().map(|(name, v)| (name.clone(), score_value(v))));
        }
        if scores.iter().all(|(_, v)| v.is_none()) && !errored {
            return Err(err(format!(
                "results.results[{index}] has no success, score or namedScores"
            )));
        }
        for (metric, value) in scores {
            let key = MetricKey {
                task: task.clone(),
                metric,
            };
            metrics.metric(key.clone(), || MetricData {
                higher_is_better: Some(true),
                ..MetricData::default()
            });
            let mut item = metrics.slot(&key, &id);
            if let (false, Some(v)) = (errored, value) {
                item.push(v);
            }
        }
    }
    if metrics.is_empty() {
        return Err(err("no results rows".into()));
    }
    Ok(ResultSet {
        source: Source::Promptfoo,
        path: path.to_owned(),
        metrics: metrics.finish(),
        tasks: BTreeMap::new(),
        model: None,
        chat_template: None,
        // The grading provider of llm-rubric and other model-graded asserts.
        judge: {
            let provider = &doc["config"]["defaultTest"]["options"]["provider"];
            provider
                .as_str()
                .or_else(|| provider["id"].as_str())
                .map(str::to_owned)
        },
    })
}

/// inspect_ai's `value_to_float`: C = 1, P = 0.5, I = N = 0, numbers,
/// numeric strings, yes/no and true/false.
fn inspect_value(value: &Value) -> Option<f64> {
    match value {
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "c" | "yes" | "true" => Some(1.0),
            "p" => Some(0.5),
            "i" | "n" | "no" | "false" => Some(0.0),
            // "nan" and "inf" parse: the gate refuses them, naming the item.
            other => other.parse::<f64>().ok(),
        },
        other => score_value(other),
    }
}

/// An inspect_ai `.eval` log: a zip with `header.json`, `reductions.json`
/// (epoch-reduced per-sample values, the best paired input) and
/// `samples/<id>_epoch_<n>.json`; members are DEFLATE or zstd.
fn read_inspect_zip(path: &Path) -> Result<ResultSet> {
    let err = |message: String| Error::Input {
        path: path.to_owned(),
        line: None,
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        error: source,
    })?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| err(format!("not an inspect_ai .eval log (a zip): {e}")))?;
    let mut member = |name: &str| -> Result<Option<Value>> {
        let mut entry = match archive.by_name(name) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(err(format!("{name}: {e}"))),
        };
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text)
            .map_err(|e| err(format!("{name}: {e}")))?;
        serde_json::from_str(&text).map(Some).map_err(|e| {
            err(format!(
                "{name}: not valid JSON: {}",
                crate::error::quoted_safely(&e)
            ))
        })
    };
    let header = member("header.json")?
        .ok_or_else(|| err("no header.json: not an inspect_ai log".into()))?;
    let reductions = member("reductions.json")?;
    let mut samples = Vec::new();
    if reductions.is_none() {
        let names: Vec<String> = archive
            .file_names()
            .filter(|n| n.starts_with("samples/") && n.ends_with(".json"))
            .map(str::to_owned)
            .collect();
        for name in names {
            let mut entry = archive
                .by_name(&name)
                .map_err(|e| err(format!("{name}: {e}")))?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text)
                .map_err(|e| err(format!("{name}: {e}")))?;
            samples.push(serde_json::from_str(&text).map_err(|e| {
                err(format!(
                    "{name}: not valid JSON: {}",
                    crate::error::quoted_safely(&e)
                ))
            })?);
        }
    }
    read_inspect(path, &header, reductions.as_ref(), &samples)
}

fn read_inspect(
    path: &Path,
    header: &Value,
    reductions: Option<&Value>,
    samples: &[Value],
) -> Result<ResultSet> {
    let err = |message: String| Error::Input {
        path: path.to_owned(),
        line: None,
        message,
    };
    let status = header["status"].as_str().unwrap_or("unknown");
    if status != "success" {
        return Err(err(format!(
            "the inspect run's status is {status:?}: gate only on complete runs (status \"success\")"
        )));
    }
    let eval = &header["eval"];
    let task = eval["task"].as_str().unwrap_or("inspect").to_owned();
    let mut metrics = Builder::default();
    let mut push = |scorer: &str, id: &Value, value: &Value| {
        let (Some(id), Some(v)) = (as_text(id), inspect_value(value)) else {
            return;
        };
        let key = MetricKey {
            task: task.clone(),
            metric: scorer.to_owned(),
        };
        metrics.slot(&key, &id).push(v);
    };
    if let Some(reductions) = reductions.and_then(Value::as_array) {
        for reduction in reductions {
            let scorer = reduction["scorer"].as_str().unwrap_or("score");
            for sample in reduction["samples"].as_array().into_iter().flatten() {
                push(scorer, &sample["sample_id"], &sample["value"]);
            }
        }
    } else {
        // Per-epoch sample scores: epochs become repeats, averaged per item.
        for sample in samples {
            for (scorer, score) in sample["scores"].as_object().into_iter().flatten() {
                push(scorer, &sample["id"], &score["value"]);
            }
        }
    }
    if metrics.is_empty() {
        // No per-sample data: the aggregate scores, for the approximate z-test.
        for score in header["results"]["scores"].as_array().into_iter().flatten() {
            let scorer = score["name"].as_str().unwrap_or("score");
            let metrics_of = &score["metrics"];
            for (name, metric) in metrics_of.as_object().into_iter().flatten() {
                if name == "stderr" {
                    continue;
                }
                let Some(value) = score_value(&metric["value"]) else {
                    continue;
                };
                metrics
                    .metric(
                        MetricKey {
                            task: task.clone(),
                            metric: format!("{scorer}/{name}"),
                        },
                        MetricData::default,
                    )
                    .aggregate = Some(Aggregate {
                    value,
                    stderr: score_value(&metrics_of["stderr"]["value"]),
                    n: header["results"]["completed_samples"]
                        .as_u64()
                        .map(|n| n as usize),
                });
            }
        }
    }
    if metrics.is_empty() {
        return Err(err("no scores in the inspect log".into()));
    }
    let mut tasks = BTreeMap::new();
    tasks.insert(
        task.clone(),
        TaskFacts {
            hash: None,
            version: as_text(&eval["task_version"]),
            n_shot: None,
            samples: None,
        },
    );
    Ok(ResultSet {
        source: Source::Inspect,
        path: path.to_owned(),
        metrics: metrics.finish(),
        tasks,
        model: eval["model"].as_str().map(str::to_owned),
        chat_template: None,
        // The grader: a model role, or a model-graded scorer's `model` parameter.
        judge: eval["model_roles"]["grader"]["model"]
            .as_str()
            .or_else(|| {
                header["results"]["scores"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|score| score["params"]["model"].as_str())
            })
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod hostile_input {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(gantry_test::adversarial::config())]

        /// Every reader (native JSONL, lm-evaluation-harness, promptfoo,
        /// inspect_ai), the policy and the eval items: hostile bytes are a
        /// value or an error, never a panic or an abort.
        #[test]
        fn hostile_files_are_values_or_errors(bytes in gantry_test::adversarial::bytes(), name in prop::sample::select(vec!["results.jsonl", "results_2026.json", "log.json", "log.eval", "policy.toml"])) {
            let directory = tempfile::tempdir().expect("tempdir");
            let path = directory.path().join(name);
            std::fs::write(&path, &bytes).expect("write");
            let _ = super::read(&path);
            let _ = crate::policy::Policy::from_file(&path);
            let _ = crate::runner::read_items(&path);
            // An lm-eval directory with hostile samples beside valid results.
            let samples = directory.path().join("samples_t_2026.jsonl");
            std::fs::write(&samples, &bytes).expect("write");
            std::fs::write(
                directory.path().join("results_2026-01-01T00-00-00.json"),
                r#"{"results": {"t": {"acc,none": 0.5}}, "versions": {"t": 1}, "configs": {"t": {}}, "n-samples": {"t": {"effective": 2}}}"#,
            )
            .expect("write");
            let _ = super::read(directory.path());
        }
    }

    #[test]
    fn a_broken_line_is_named_with_its_reason() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("results.jsonl");
        std::fs::write(&path, "\n{\"id\": \"a\", \"scores\": {\"x\": 1}\n").expect("write");
        let error = super::read(&path).expect_err("broken").to_string();
        assert!(
            error.contains(":2: not valid JSON: EOF while parsing an object"),
            "{error}"
        );
        let path = directory.path().join("results.json");
        std::fs::write(&path, "{\n  \"results\": {\"t\": {\"acc\": 0.5,}}\n}\n").expect("write");
        let error = super::read(&path).expect_err("broken").to_string();
        assert!(
            error.contains(":2: not valid JSON: trailing comma at line 2"),
            "{error}"
        );
    }
}

#[cfg(test)]
mod columns {
    use super::*;

    #[test]
    fn a_tasks_metrics_share_its_items_and_keep_repeats_and_unscored_items() {
        let text = concat!(
            "{\"id\": \"a\", \"repeat\": 0, \"prompt_hash\": \"h1\", \"scores\": {\"x\": 1, \"y\": 0.5}}\n",
            "{\"id\": \"b\", \"scores\": {\"x\": 0, \"y\": null}}\n",
            "{\"id\": \"a\", \"repeat\": 1, \"scores\": {\"x\": 0}}\n",
            "{\"id\": \"c\", \"task\": \"other\", \"scores\": {\"x\": 1}}\n",
        );
        let set = read_native(Path::new("r.jsonl"), text).expect("read");
        let key = |task: &str, metric: &str| MetricKey {
            task: task.into(),
            metric: metric.into(),
        };
        let x = &set.metrics[&key("default", "x")];
        let y = &set.metrics[&key("default", "y")];
        // Both metrics list both items, in file order; y's `b` has no score.
        assert_eq!(x.ids().map(|id| &**id).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(y.len(), 2);
        assert_eq!(y.get("b").and_then(|item| item.mean()), None);
        assert_eq!(y.get("b").map(|item| item.values().count()), Some(0));
        // Repeats are kept and averaged; hashes are the item's.
        let a = x.get("a").expect("a");
        assert_eq!(a.values().collect::<Vec<_>>(), [1.0, 0.0]);
        assert_eq!(a.mean(), Some(0.5));
        assert_eq!(a.prompt_hash().map(|hash| &**hash), Some("h1"));
        assert_eq!(
            y.get("a").and_then(|item| item.prompt_hash()).map(|h| &**h),
            Some("h1")
        );
        // One id, one allocation, across the task's metrics.
        let (x_a, _) = x.iter().next().expect("a");
        let (y_a, _) = y.iter().next().expect("a");
        assert!(Arc::ptr_eq(x_a, y_a));
        // Another task's items are its own.
        let other = &set.metrics[&key("other", "x")];
        assert_eq!(other.len(), 1);
        assert!(x.get("c").is_none() && other.get("a").is_none());
    }
}
