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

use std::collections::{HashMap, HashSet};

use xxhash_rust::xxh3::xxh3_64;

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

/// The eval items, indexed for lookups while training data streams by.
#[derive(Debug, Default)]
pub struct EvalIndex {
    /// The items, by index.
    pub items: Vec<EvalItem>,
    ngrams: HashMap<u64, Vec<u32>>,
    /// Short items by word count, then by hash of their words.
    short: HashMap<usize, HashMap<u64, Vec<u32>>>,
    /// Very short items by hash of their words, matched against whole texts.
    whole: HashMap<u64, Vec<u32>>,
}

impl EvalIndex {
    /// Adds an eval item made of `texts`.
    pub fn add(&mut self, place: String, texts: &[&str]) {
        let words: Vec<u64> = texts.iter().flat_map(|text| word_hashes(text)).collect();
        if words.is_empty() {
            return;
        }
        let index = u32::try_from(self.items.len()).unwrap_or(u32::MAX);
        if words.len() < NGRAM_WORDS {
            let hash = combine(&words);
            if words.len() < MIN_WINDOW_WORDS {
                self.whole.entry(hash).or_default().push(index);
            } else {
                self.short
                    .entry(words.len())
                    .or_default()
                    .entry(hash)
                    .or_default()
                    .push(index);
            }
            self.items.push(EvalItem {
                place,
                n_ngrams: 1,
                short: true,
            });
            return;
        }
        let distinct: HashSet<u64> = words.windows(NGRAM_WORDS).map(combine).collect();
        for ngram in &distinct {
            self.ngrams.entry(*ngram).or_default().push(index);
        }
        self.items.push(EvalItem {
            place,
            n_ngrams: u32::try_from(distinct.len()).unwrap_or(u32::MAX),
            short: false,
        });
    }

    /// Whether no item was indexed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Calls `hit(item, ngram)` for every eval n-gram found in `text`.
    pub fn find(&self, text: &str, mut hit: impl FnMut(u32, u64)) {
        let words = word_hashes(text);
        if words.len() >= NGRAM_WORDS {
            for window in words.windows(NGRAM_WORDS) {
                let ngram = combine(window);
                if let Some(items) = self.ngrams.get(&ngram) {
                    for &item in items {
                        hit(item, ngram);
                    }
                }
            }
        }
        if !self.whole.is_empty()
            && !words.is_empty()
            && let Some(items) = self.whole.get(&combine(&words))
        {
            for &item in items {
                hit(item, combine(&words));
            }
        }
        for (length, index) in &self.short {
            if words.len() < *length {
                continue;
            }
            for window in words.windows(*length) {
                let hash = combine(window);
                if let Some(items) = index.get(&hash) {
                    for &item in items {
                        hit(item, hash);
                    }
                }
            }
        }
    }
}

/// Hashes of the normalized words of `text`: lowercased, punctuation dropped.
pub(crate) fn word_hashes(text: &str) -> Vec<u64> {
    let mut hashes = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        } else if !c.is_ascii() && c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if c.is_whitespace() && !word.is_empty() {
            hashes.push(xxh3_64(word.as_bytes()));
            word.clear();
        }
    }
    if !word.is_empty() {
        hashes.push(xxh3_64(word.as_bytes()));
    }
    hashes
}

/// An order-sensitive hash of a window of word hashes.
pub(crate) fn combine(words: &[u64]) -> u64 {
    words.iter().fold(0x9e37_79b9_7f4a_7c15_u64, |hash, &word| {
        hash.rotate_left(23).wrapping_mul(0x0100_0000_01b3) ^ word
    })
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
        let distinct: HashSet<u64> = hits
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
}
