//! Eval-set contamination: which eval items' 13-grams appear in the training data.
//!
//! Follows GPT-3 (Appendix C) and lm-evaluation-harness: text is lowercased,
//! punctuation removed, split on whitespace; an eval item is indexed by the
//! hashes of its 13-word windows, or, when it has fewer than 13 words, by the
//! hash of all its words, matched as a window of the training text. Items of
//! fewer than five words ("3 + 4 = ?" normalizes to "3 4") would match almost
//! anything as a window, so they count only when a whole training text equals
//! them. Hashes are exact 64-bit values in a hash map, so there are no
//! Bloom-filter false positives to explain.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::source::discover;
use crate::validate::read::{Batch, FileHasher, Origin, read_file};
use crate::words::{Words, window_hash};
use serde_json::Value;

/// Words per n-gram.
pub const NGRAM_WORDS: usize = 13;
/// Items shorter than this match only a whole training text.
pub(crate) const MIN_WINDOW_WORDS: usize = 5;

/// One eval item: where it is, and how many distinct n-grams it has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvalItem {
    /// `file:line` (or `file#record`).
    pub place: String,
    /// Distinct 13-grams, or 1 for a short item matched whole.
    pub n_ngrams: u32,
    /// Whether the item has fewer than 13 words.
    pub short: bool,
}

/// A short item, found by the hash of its first five words.
#[derive(Debug, Clone, Copy)]
struct ShortItem {
    words: usize,
    hash: u64,
    item: u32,
}

/// The eval items, indexed for lookups while training data streams by.
///
/// Every word of training text starts a 13-gram and a 5-gram whose hashes
/// are looked up; a bit set of all indexed keys, a few bits per key, answers
/// most lookups before the hash maps are touched.
#[derive(Debug, Default)]
pub struct EvalIndex {
    /// The items, by index.
    pub items: Vec<EvalItem>,
    /// Items by 13-gram; nearly every 13-gram is one item's, kept inline.
    ngrams: FxHashMap<u64, smallvec::SmallVec<[u32; 2]>>,
    /// Items of 5 to 12 words, by the hash of their first five words.
    short: FxHashMap<u64, Vec<ShortItem>>,
    /// Very short items by hash of their words, matched against whole texts.
    whole: FxHashMap<u64, Vec<u32>>,
    /// A blocked Bloom filter: a key sets three bits of one word, the word
    /// and the bits chosen by its top bits after a multiply.
    filter: Vec<u64>,
    filter_shift: u32,
}

/// Keeps 5-word prefixes apart from 13-grams in the filter.
const PREFIX_SALT: u64 = 0x5bd1_e995_2f1c_a3a7;

impl EvalIndex {
    /// Adds an eval item made of `texts`.
    pub fn add(&mut self, place: String, texts: &[&str]) {
        self.add_words(place, Words::of(texts.iter().copied()).hashes());
    }

    /// Indexes an item given by its word hashes.
    fn add_words(&mut self, place: String, words: &[u64]) {
        if words.is_empty() {
            return;
        }
        let index = u32::try_from(self.items.len()).unwrap_or(u32::MAX);
        if words.len() < NGRAM_WORDS {
            let hash = window_hash(words);
            if words.len() < MIN_WINDOW_WORDS {
                self.whole.entry(hash).or_default().push(index);
            } else {
                self.short
                    .entry(window_hash(&words[..MIN_WINDOW_WORDS]))
                    .or_default()
                    .push(ShortItem {
                        words: words.len(),
                        hash,
                        item: index,
                    });
            }
            self.items.push(EvalItem {
                place,
                n_ngrams: 1,
                short: true,
            });
        } else {
            let mut distinct: Vec<u64> = words.windows(NGRAM_WORDS).map(window_hash).collect();
            distinct.sort_unstable();
            distinct.dedup();
            for ngram in &distinct {
                self.ngrams.entry(*ngram).or_default().push(index);
            }
            self.items.push(EvalItem {
                place,
                n_ngrams: u32::try_from(distinct.len()).unwrap_or(u32::MAX),
                short: false,
            });
        }
        self.filter.clear();
    }

    /// Whether no item was indexed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Builds the filter once the items are in; lookups before it ask the maps.
    pub(crate) fn seal(&mut self) {
        let keys = self.ngrams.len() + self.short.len();
        // About 16 bits per key, three bits set per key within one word (one
        // cache line per lookup): a random key passes with probability ≈ 1%
        // (one bit per key in the same room let 6% through, each then a
        // hash-map probe that misses the cache).
        let bits = (keys * 16).next_power_of_two().clamp(1 << 12, 1 << 30);
        self.filter = vec![0; bits / 64];
        self.filter_shift = 64 - (bits / 64).trailing_zeros();
        let keys: Vec<u64> = self
            .ngrams
            .keys()
            .copied()
            .chain(self.short.keys().map(|key| key ^ PREFIX_SALT))
            .collect();
        for key in keys {
            let (word, bits) = self.slot(key);
            self.filter[word] |= bits;
        }
    }

    /// A key's word of the filter and its three bits there: the word from
    /// the product's top bits, each bit from the six bits below those.
    #[inline]
    fn slot(&self, key: u64) -> (usize, u64) {
        let mixed = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let word = (mixed >> self.filter_shift) as usize;
        let bit = |k: u32| 1_u64 << ((mixed >> (self.filter_shift - 6 * k)) & 63);
        (word, bit(1) | bit(2) | bit(3))
    }

    #[inline]
    fn may_hold(&self, key: u64) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let (word, bits) = self.slot(key);
        self.filter[word] & bits == bits
    }

    /// Calls `hit(item, ngram)` for every eval n-gram found in `text`.
    pub fn find(&self, text: &str, hit: impl FnMut(u32, u64)) {
        self.find_in(&Words::of([text]), hit);
    }

    /// Calls `hit(item, ngram)` for every eval n-gram found in any of the
    /// texts of `words` (n-grams do not cross from one text to the next).
    pub(crate) fn find_in(&self, words: &Words, mut hit: impl FnMut(u32, u64)) {
        for text in words.texts() {
            let (start, end) = (text.start, text.end);
            if end - start >= NGRAM_WORDS && !self.ngrams.is_empty() {
                for at in start..=end - NGRAM_WORDS {
                    let ngram = words.window(at, NGRAM_WORDS);
                    if self.may_hold(ngram)
                        && let Some(items) = self.ngrams.get(&ngram)
                    {
                        for &item in items {
                            hit(item, ngram);
                        }
                    }
                }
            }
            if end - start >= MIN_WINDOW_WORDS && !self.short.is_empty() {
                for at in start..=end - MIN_WINDOW_WORDS {
                    let prefix = words.window(at, MIN_WINDOW_WORDS);
                    if !self.may_hold(prefix ^ PREFIX_SALT) {
                        continue;
                    }
                    for short in self.short.get(&prefix).into_iter().flatten() {
                        if at + short.words <= end && words.window(at, short.words) == short.hash {
                            hit(short.item, short.hash);
                        }
                    }
                }
            }
            if end > start
                && !self.whole.is_empty()
                && let Some(items) = self.whole.get(&words.window(start, end - start))
            {
                for &item in items {
                    hit(item, words.window(start, end - start));
                }
            }
        }
    }
}

/// Indexes every record of the eval files by its 13-grams.
pub(crate) fn load_eval_set(patterns: &[String], map_files: bool) -> Result<EvalIndex> {
    let files = discover(patterns)?;
    let mut index = EvalIndex::default();
    for file in &files {
        let mut batches = Vec::new();
        let hasher = FileHasher::default();
        read_file(
            file,
            |batch, _| batches.push(batch),
            &mut || None,
            &hasher,
            map_files,
        )?;
        // Items are parsed and their words hashed in parallel, then indexed
        // in file order (an item's index is its place in the report).
        let items: Vec<Result<Vec<EvalWords>>> = batches
            .into_par_iter()
            .map(|batch| eval_items_of(file, batch))
            .collect();
        for batch in items {
            for (place, words) in batch? {
                index.add_words(place, &words);
            }
        }
    }
    if index.is_empty() {
        return Err(Error::EvalSet {
            path: files
                .first()
                .map(|file| file.path.clone())
                .unwrap_or_default(),
            reason: format!(
                "no item in {} has text to look for in the data (messages, prompt, question or any string)",
                files
                    .iter()
                    .map(|file| file.display.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    index.seal();
    Ok(index)
}

/// An eval item's place and word hashes, before it is indexed.
type EvalWords = (String, Vec<u64>);

/// The items of one batch of an eval file: each one's place and word hashes.
fn eval_items_of(file: &crate::source::DataFile, batch: Batch) -> Result<Vec<EvalWords>> {
    let records: Vec<(Origin, std::result::Result<Value, String>)> = match batch {
        Batch::Lines {
            bytes,
            first_line,
            text,
            ..
        } => (first_line..)
            .zip(bytes.split(|&byte| byte == b'\n'))
            .filter(|(_, line)| !line.trim_ascii().is_empty())
            .map(|(line_number, line)| {
                let origin = Origin {
                    ordinal: line_number,
                    byte: None,
                    is_line: true,
                };
                let value = if text {
                    Ok(serde_json::json!({ "text": String::from_utf8_lossy(line) }))
                } else {
                    // sonic-rs (SIMD) where it may recurse; serde_json for
                    // anything it refuses, and for its error message.
                    crate::nesting::too_deep(line)
                        .is_none()
                        .then(|| sonic_rs::from_slice::<Value>(line).ok())
                        .flatten()
                        .map_or_else(
                            || {
                                serde_json::from_slice::<Value>(line)
                                    .map_err(|error| error.to_string())
                            },
                            Ok,
                        )
                };
                (origin, value)
            })
            .collect(),
        Batch::Records(records) => records
            .into_iter()
            .map(|(origin, _, value)| (origin, value))
            .collect(),
    };
    let mut items = Vec::with_capacity(records.len());
    for (origin, value) in records {
        let place = if origin.is_line {
            format!("{}:{}", file.display, origin.ordinal)
        } else {
            format!("{}#{}", file.display, origin.ordinal)
        };
        // An eval item that cannot be read cannot be looked for in
        // the data: passing over it would pass the check unseen.
        let value = value.map_err(|reason| Error::EvalSet {
            path: file.path.clone(),
            reason: format!(
                "{place}: {}; an item gantry cannot read cannot be checked for contamination",
                crate::scan::sanitize_message(&reason)
            ),
        })?;
        let words = crate::words::with_words(eval_texts(&value), |words| words.hashes().to_vec());
        items.push((place, words));
    }
    Ok(items)
}

/// Every string in a JSON value, in document order.
/// The prompt side of an eval item: what a model is asked, which is what
/// leaks when it appears in training data. Chat items give their user turns;
/// harness-style items their prompt field; anything else every string leaf.
/// Ids, task names, answers and choices are left out: they are not the item's
/// text, and their words would keep it from ever matching.
pub(crate) fn eval_texts(value: &Value) -> Vec<&str> {
    const PROMPT_KEYS: [&str; 8] = [
        "prompt",
        "question",
        "instruction",
        "input",
        "query",
        "problem",
        "context",
        "text",
    ];
    let mut texts = Vec::new();
    for (list, role_key, content_key, roles) in [
        ("messages", "role", "content", &["user"][..]),
        ("conversations", "from", "value", &["human", "user"][..]),
    ] {
        if let Some(turns) = value.get(list).and_then(Value::as_array) {
            texts.extend(
                turns
                    .iter()
                    .filter(|turn| {
                        turn.get(role_key)
                            .and_then(Value::as_str)
                            .is_some_and(|role| roles.contains(&role))
                    })
                    .filter_map(|turn| turn.get(content_key).and_then(Value::as_str)),
            );
        }
    }
    if texts.is_empty()
        && let Some(object) = value.as_object()
    {
        texts.extend(
            PROMPT_KEYS
                .iter()
                .filter_map(|key| object.get(*key).and_then(Value::as_str)),
        );
    }
    if texts.is_empty() {
        string_leaves(value, &mut texts);
    }
    texts
}

pub(crate) fn string_leaves<'a>(value: &'a Value, texts: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => texts.push(text),
        Value::Array(items) => items.iter().for_each(|item| string_leaves(item, texts)),
        Value::Object(object) => object
            .iter()
            .filter(|(key, _)| {
                !matches!(
                    key.as_str(),
                    "id" | "role" | "type" | "from" | "tool_call_id"
                )
            })
            .for_each(|(_, item)| string_leaves(item, texts)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirteen_grams_match_across_case_and_punctuation() {
        let mut index = EvalIndex::default();
        let question = "Which of the following best describes the main function of the mitochondria in eukaryotic cells?";
        index.add("eval.jsonl:1".into(), &[question]);
        index.add("eval.jsonl:2".into(), &["Name the capital of France."]);
        assert_eq!(index.items[0].n_ngrams, 15 - NGRAM_WORDS as u32 + 1);
        assert!(index.items[1].short);

        let mut hits: Vec<(u32, u64)> = Vec::new();
        index.find("Study notes: WHICH of the following, best describes the main function of the mitochondria in eukaryotic cells! Answer: ATP", |item, ngram| hits.push((item, ngram)));
        let distinct: std::collections::HashSet<u64> = hits
            .iter()
            .filter(|(item, _)| *item == 0)
            .map(|(_, ngram)| *ngram)
            .collect();
        assert_eq!(
            distinct.len(),
            3,
            "every 13-gram of the question is in the text"
        );

        hits.clear();
        index.find("quiz: name the capital of france", |item, ngram| {
            hits.push((item, ngram))
        });
        assert_eq!(hits.iter().map(|(item, _)| *item).collect::<Vec<_>>(), [1]);

        hits.clear();
        index.find("the capital of France is Paris", |item, ngram| {
            hits.push((item, ngram))
        });
        assert!(hits.is_empty(), "a short item matches only whole");
    }

    #[test]
    fn the_filter_passes_every_key_and_few_others() {
        let key = |k: u64| xxhash_rust::xxh3::xxh3_64(&k.to_le_bytes());
        let mut index = EvalIndex::default();
        for k in 0..100_000 {
            index.ngrams.entry(key(k)).or_default().push(0);
        }
        for k in 0..20_000 {
            index.short.entry(key((k + 1) << 40)).or_default();
        }
        index.seal();
        assert!((0..100_000).all(|k| index.may_hold(key(k))));
        assert!((0..20_000).all(|k| index.may_hold(key((k + 1) << 40) ^ PREFIX_SALT)));
        let passed = (1 << 50..(1 << 50) + 100_000)
            .filter(|&k| index.may_hold(key(k)))
            .count();
        // Three bits of 64 at about 16 bits a key: about 1% pass; one bit a key let 6% through.
        assert!(passed < 2_000, "{passed} of 100000 other keys passed");
    }
}
