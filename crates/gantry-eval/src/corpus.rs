//! Corpus metrics: scores of a whole set that are not means of per-item
//! scores (BLEU, F1, Matthews correlation), as lm-evaluation-harness
//! aggregates them.
//!
//! Each item contributes a vector of sufficient statistics (BLEU: lengths
//! and n-gram matches; F1 and MCC: its cell of the confusion matrix); a
//! corpus score is a function of their sum. That makes the paired bootstrap
//! over item indices cheap: a resample sums vectors and applies the function.
//! BLEU follows sacrebleu 2.x's defaults exactly (13a tokenization, 4-grams,
//! `exp` smoothing, closest reference length), which is what
//! lm-evaluation-harness reports; F1 and MCC follow scikit-learn's binary
//! `f1_score` and `matthews_corrcoef`.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

const ORDER: usize = 4;

/// A corpus metric gantry can recompute from per-item data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Corpus {
    /// sacrebleu corpus BLEU, 0–100.
    Bleu,
    /// Binary F1 of the positive class (label 1).
    F1,
    /// Binary Matthews correlation coefficient.
    Mcc,
}

impl Corpus {
    /// The corpus metric lm-evaluation-harness names `metric`, if any.
    pub fn from_metric(metric: &str) -> Option<Corpus> {
        match metric {
            "bleu" => Some(Corpus::Bleu),
            "f1" => Some(Corpus::F1),
            "mcc" => Some(Corpus::Mcc),
            _ => None,
        }
    }

    /// An item's sufficient statistics from its `[gold, prediction]` pair as
    /// lm-evaluation-harness logs it, or why it cannot be read.
    pub fn item_stats(self, pair: &serde_json::Value) -> Result<Vec<f64>, String> {
        let (gold, prediction) = match pair.as_array().map(Vec::as_slice) {
            Some([gold, prediction]) => (gold, prediction),
            _ => return Err("expected a [gold, prediction] pair".to_owned()),
        };
        match self {
            Corpus::Bleu => {
                let references: Vec<&str> = match gold {
                    serde_json::Value::String(text) => vec![text.as_str()],
                    serde_json::Value::Array(texts) => {
                        texts.iter().filter_map(|t| t.as_str()).collect()
                    }
                    _ => {
                        return Err(
                            "the reference is neither a string nor a list of strings".to_owned()
                        );
                    }
                };
                let hypothesis = match prediction {
                    serde_json::Value::String(text) => text.as_str(),
                    serde_json::Value::Array(texts) if texts.len() == 1 => {
                        texts[0].as_str().unwrap_or_default()
                    }
                    _ => return Err("the prediction is not a string".to_owned()),
                };
                if references.is_empty() {
                    return Err("no reference".to_owned());
                }
                Ok(bleu_stats(&references, hypothesis))
            }
            Corpus::F1 | Corpus::Mcc => {
                let label = |value: &serde_json::Value| -> Result<bool, String> {
                    match value.as_f64() {
                        Some(0.0) => Ok(false),
                        Some(1.0) => Ok(true),
                        _ => Err(format!("labels must be 0 or 1 (binary), got {value}")),
                    }
                };
                Ok(confusion(label(gold)?, label(prediction)?))
            }
        }
    }

    /// The statistics of an item the candidate lacks: no output for BLEU
    /// (its reference length counts, nothing matches), the wrong label for
    /// F1 and MCC.
    pub fn worst(self, baseline_stats: &[f64]) -> Vec<f64> {
        match self {
            Corpus::Bleu => {
                let mut stats = vec![0.0; 2 + 2 * ORDER];
                stats[1] = baseline_stats.get(1).copied().unwrap_or(0.0);
                stats
            }
            Corpus::F1 | Corpus::Mcc => {
                // [tp, fp, fn, tn]: a positive gold (tp or fn) becomes fn, a negative one fp.
                let gold_positive = baseline_stats.first().copied().unwrap_or(0.0)
                    + baseline_stats.get(2).copied().unwrap_or(0.0)
                    > 0.0;
                if gold_positive {
                    confusion(true, false)
                } else {
                    confusion(false, true)
                }
            }
        }
    }

    /// The corpus score of summed statistics.
    pub fn score(self, stats: &[f64]) -> f64 {
        match self {
            Corpus::Bleu => bleu_score(stats),
            Corpus::F1 => {
                let (tp, fp, fn_) = (stats[0], stats[1], stats[2]);
                let denominator = 2.0 * tp + fp + fn_;
                if denominator == 0.0 {
                    0.0
                } else {
                    2.0 * tp / denominator
                }
            }
            Corpus::Mcc => {
                let (tp, fp, fn_, tn) = (stats[0], stats[1], stats[2], stats[3]);
                let denominator = ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
                if denominator == 0.0 {
                    0.0
                } else {
                    (tp * tn - fp * fn_) / denominator
                }
            }
        }
    }
}

/// `[tp, fp, fn, tn]` of one binary prediction.
fn confusion(gold: bool, predicted: bool) -> Vec<f64> {
    let mut cell = vec![0.0; 4];
    let index = match (gold, predicted) {
        (true, true) => 0,
        (false, true) => 1,
        (true, false) => 2,
        (false, false) => 3,
    };
    cell[index] = 1.0;
    cell
}

static RULES: LazyLock<[(regex::Regex, &'static str); 4]> = LazyLock::new(|| {
    let compile = |pattern: &str| regex::Regex::new(pattern).expect("a valid 13a pattern");
    [
        // Punctuation and symbols become tokens.
        (compile(r"([\{-~\[-` -&\(-\+:-@/])"), " ${1} "),
        // Periods and commas, unless preceded or followed by a digit.
        (compile(r"([^0-9])([\.,])"), "${1} ${2} "),
        (compile(r"([\.,])([^0-9])"), " ${1} ${2}"),
        // A dash preceded by a digit.
        (compile(r"([0-9])(-)"), "${1} ${2} "),
    ]
});

/// mteval-v13a tokenization, as sacrebleu's `Tokenizer13a` does it.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut line = line
        .trim_end()
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (pattern, replacement) in RULES.iter() {
        line = pattern.replace_all(&line, *replacement).into_owned();
    }
    line.split_whitespace().map(str::to_owned).collect()
}

fn ngrams(tokens: &[String]) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for n in 1..=ORDER {
        for window in tokens.windows(n) {
            *counts.entry(window).or_insert(0) += 1;
        }
    }
    counts
}

/// `[hyp_len, ref_len, correct_1..4, total_1..4]` of one segment.
pub fn bleu_stats(references: &[&str], hypothesis: &str) -> Vec<f64> {
    let hypothesis = tokenize_13a(hypothesis);
    let references: Vec<Vec<String>> = references.iter().map(|r| tokenize_13a(r)).collect();
    let mut reference_counts: HashMap<&[String], usize> = HashMap::new();
    for reference in &references {
        for (ngram, count) in ngrams(reference) {
            let entry = reference_counts.entry(ngram).or_insert(0);
            *entry = (*entry).max(count);
        }
    }
    // The closest reference length; on a tie, the shorter.
    let hyp_len = hypothesis.len();
    let ref_len = references
        .iter()
        .map(Vec::len)
        .min_by_key(|len| (len.abs_diff(hyp_len), *len))
        .unwrap_or(0);
    let mut stats = vec![0.0; 2 + 2 * ORDER];
    stats[0] = hyp_len as f64;
    stats[1] = ref_len as f64;
    for (ngram, count) in ngrams(&hypothesis) {
        let n = ngram.len() - 1;
        stats[2 + ORDER + n] += count as f64;
        if let Some(reference) = reference_counts.get(ngram) {
            stats[2 + n] += count.min(*reference) as f64;
        }
    }
    stats
}

/// sacrebleu's `compute_bleu` with `exp` smoothing and no effective order.
fn bleu_score(stats: &[f64]) -> f64 {
    let (sys_len, ref_len) = (stats[0], stats[1]);
    let correct = &stats[2..2 + ORDER];
    let total = &stats[2 + ORDER..2 + 2 * ORDER];
    let brevity = if sys_len < ref_len {
        if sys_len > 0.0 {
            (1.0 - ref_len / sys_len).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    if correct.iter().all(|c| *c == 0.0) {
        return 0.0;
    }
    let mut precisions = [0.0_f64; ORDER];
    let mut smooth = 1.0;
    for n in 0..ORDER {
        if total[n] == 0.0 {
            break;
        }
        precisions[n] = if correct[n] == 0.0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n])
        } else {
            100.0 * correct[n] / total[n]
        };
    }
    // sacrebleu's my_log: log(0) is -9999999999.
    let log = |p: f64| if p > 0.0 { p.ln() } else { -9_999_999_999.0 };
    brevity * (precisions.iter().map(|p| log(*p)).sum::<f64>() / ORDER as f64).exp()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_like_13a() {
        assert_eq!(
            tokenize_13a("Hello, world! It costs $3.50 (or 1,000).").join(" "),
            "Hello , world ! It costs $ 3.50 ( or 1,000 ) ."
        );
        assert_eq!(
            tokenize_13a("state-of-the-art 12-3 &amp; U.S.").join(" "),
            "state-of-the-art 12 - 3 & U . S ."
        );
    }
}
