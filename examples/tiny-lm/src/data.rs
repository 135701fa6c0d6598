//! `tiny-lm gen-data`: a deterministic synthetic instruction dataset.
//!
//! Everything is drawn from a fixed fictional world (countries, capitals,
//! currencies, a word list) so that a model trained on one seed's data can be
//! evaluated on another seed's eval split. `--seed` only changes which
//! phrasings land in which split and the filler records.
//!
//! Each fact has four phrasings; one goes to the eval split and the other three
//! to training, so eval items are never verbatim training items (validate-data
//! reports no contamination on clean data) while every phrasing is still seen
//! during training for other facts.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The world never changes with `--seed`.
const WORLD_SEED: u64 = 0x5eed_0fda_7a00;
const COUNTRIES: usize = 32;
const SYSTEM_PROMPT: &str = "You are a terse assistant for the land of Ardent.";

const WORDS: &[&str] = &[
    "amber", "basin", "cedar", "delta", "ember", "fable", "glade", "harbor", "islet", "jasper",
    "kettle", "lantern", "meadow", "nectar", "orchid", "pebble", "quill", "raven", "saddle",
    "thistle", "umber", "velvet", "willow", "yonder", "zephyr", "anvil", "bramble", "cobalt",
    "dapple", "falcon", "garnet", "hollow", "ivory", "juniper", "kestrel", "linden", "marble",
    "nimbus", "otter", "prairie",
];

/// One question with its gold answer, as eval-gate and `tiny-lm eval` read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalItem {
    /// Stable item id, e.g. `capital-zorvia`.
    pub id: String,
    /// Task family (`capital`, `currency`, `add`, `subtract`, `upper`).
    pub task: String,
    /// The conversation up to the assistant's turn.
    pub messages: Vec<Message>,
    /// The gold answer.
    pub expected: String,
    /// Multiple-choice options (the gold answer among them).
    pub choices: Vec<String>,
}

/// An OpenAI-chat message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
        }
    }
}

/// A fact with its four phrasings and its distractors.
struct Fact {
    id: String,
    task: &'static str,
    phrasings: [String; 4],
    answer: String,
    choices: Vec<String>,
}

/// The fixed fictional world.
struct World {
    facts: Vec<Fact>,
}

fn name(rng: &mut ChaCha8Rng, syllables: usize) -> String {
    const ONSETS: &[&str] = &[
        "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr",
        "qu", "th", "st",
    ];
    const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "ou"];
    let mut s = String::new();
    for _ in 0..syllables {
        s.push_str(ONSETS.choose(rng).copied().unwrap_or("b"));
        s.push_str(VOWELS.choose(rng).copied().unwrap_or("a"));
    }
    s.push_str(["n", "r", "l", "s", ""].choose(rng).copied().unwrap_or(""));
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn distractors(rng: &mut ChaCha8Rng, answer: &str, pool: &[String], n: usize) -> Vec<String> {
    let mut others: Vec<&String> = pool.iter().filter(|p| p.as_str() != answer).collect();
    others.shuffle(rng);
    let mut choices: Vec<String> = others.into_iter().take(n).cloned().collect();
    choices.push(answer.to_owned());
    choices.shuffle(rng);
    choices
}

impl World {
    fn new() -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(WORLD_SEED);
        let mut countries = Vec::new();
        let mut capitals = Vec::new();
        let mut currencies = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        while countries.len() < COUNTRIES {
            let country = name(&mut rng, 2);
            let capital = name(&mut rng, 2);
            let currency = name(&mut rng, 1).to_lowercase();
            if [&country, &capital, &currency]
                .iter()
                .all(|n| seen.insert(n.to_lowercase()))
            {
                countries.push(country);
                capitals.push(capital);
                currencies.push(currency);
            }
        }
        let mut facts = Vec::new();
        for i in 0..COUNTRIES {
            let (c, cap, cur) = (&countries[i], &capitals[i], &currencies[i]);
            facts.push(Fact {
                id: format!("capital-{}", c.to_lowercase()),
                task: "capital",
                phrasings: [
                    format!("What is the capital of {c}?"),
                    format!("Name the capital of {c}."),
                    format!("Which city is the capital of {c}?"),
                    format!("{c} has its capital where?"),
                ],
                answer: cap.clone(),
                choices: distractors(&mut rng, cap, &capitals, 3),
            });
            facts.push(Fact {
                id: format!("currency-{}", c.to_lowercase()),
                task: "currency",
                phrasings: [
                    format!("What currency does {c} use?"),
                    format!("Name the currency of {c}."),
                    format!("Which money is used in {c}?"),
                    format!("{c} pays in which currency?"),
                ],
                answer: cur.clone(),
                choices: distractors(&mut rng, cur, &currencies, 3),
            });
        }
        let numbers: Vec<String> = (0..=18).map(|n| n.to_string()).collect();
        for a in 0..=9u32 {
            for b in 0..=9u32 {
                let sum = (a + b).to_string();
                facts.push(Fact {
                    id: format!("add-{a}-{b}"),
                    task: "add",
                    phrasings: [
                        format!("What is {a} plus {b}?"),
                        format!("Add {a} and {b}."),
                        format!("Compute the sum {a} + {b}."),
                        format!("{a} + {b} makes what total?"),
                    ],
                    choices: distractors(&mut rng, &sum, &numbers, 3),
                    answer: sum,
                });
                if a >= b {
                    let diff = (a - b).to_string();
                    facts.push(Fact {
                        id: format!("subtract-{a}-{b}"),
                        task: "subtract",
                        phrasings: [
                            format!("What is {a} minus {b}?"),
                            format!("Subtract {b} from {a}."),
                            format!("Compute the difference {a} - {b}."),
                            format!("{a} - {b} leaves what?"),
                        ],
                        choices: distractors(&mut rng, &diff, &numbers, 3),
                        answer: diff,
                    });
                }
            }
        }
        let uppers: Vec<String> = WORDS.iter().map(|w| w.to_uppercase()).collect();
        for w in WORDS {
            let up = w.to_uppercase();
            facts.push(Fact {
                id: format!("upper-{w}"),
                task: "upper",
                phrasings: [
                    format!("Write {w} in capital letters."),
                    format!("Uppercase the word {w}."),
                    format!("Shout the word {w}."),
                    format!("Capitalize every letter of {w}."),
                ],
                choices: distractors(&mut rng, &up, &uppers, 3),
                answer: up,
            });
        }
        Self { facts }
    }
}

/// Defects to plant in the training split, so validate-data has something to find.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defects {
    /// Exact duplicates of existing training records.
    pub duplicates: usize,
    /// Records whose user message carries an email address and a phone number.
    pub pii: usize,
    /// Lines that are not valid records (truncated JSON, unknown roles).
    pub malformed: usize,
    /// Eval items copied verbatim into the training split.
    pub contaminate: usize,
}

/// What `gen-data` wrote.
#[derive(Debug, Serialize)]
pub struct GenSummary {
    /// Seed used.
    pub seed: u64,
    /// Records (lines) in `train.jsonl`, planted defects included.
    pub train: usize,
    /// Records in `validation.jsonl`.
    pub validation: usize,
    /// Items in `eval.jsonl`.
    pub eval: usize,
    /// Planted exact duplicates.
    pub duplicates: usize,
    /// Planted records with PII.
    pub pii: usize,
    /// Planted malformed lines.
    pub malformed: usize,
    /// Planted contaminated (eval-copied) records.
    pub contaminated: usize,
    /// Bytes written to `train.jsonl`.
    pub train_bytes: u64,
}

fn chat(user: &str, answer: &str, system: bool) -> Vec<Message> {
    let mut messages = Vec::with_capacity(3);
    if system {
        messages.push(Message::new("system", SYSTEM_PROMPT));
    }
    messages.push(Message::new("user", user));
    messages.push(Message::new("assistant", answer));
    messages
}

/// A filler record with fresh random content: the last word of a word list, or
/// how many words it has. Unique per draw, learnable by a small model.
fn filler(rng: &mut ChaCha8Rng) -> Vec<Message> {
    let n = rng.random_range(5..=9);
    let system = rng.random_bool(0.25);
    let words: Vec<&str> = (0..n)
        .map(|_| WORDS.choose(rng).copied().unwrap_or("amber"))
        .collect();
    let list = words.join(" ");
    if rng.random_bool(0.5) {
        let last = words.last().copied().unwrap_or_default();
        chat(&format!("Last word of: {list}"), last, system)
    } else {
        chat(&format!("Count the words: {list}"), &n.to_string(), system)
    }
}

fn write_line(out: &mut impl Write, value: &impl Serialize) -> Result<u64> {
    let line = serde_json::to_string(value)?;
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    Ok(line.len() as u64 + 1)
}

/// Writes `train.jsonl`, `validation.jsonl` and `eval.jsonl` into `out`.
///
/// `train_records` is the number of clean training records (at least the
/// fact phrasings; the rest are filler), so `--train-records 5000000` makes a
/// gigabyte-class file for benchmarks.
pub fn generate(
    out: &Path,
    seed: u64,
    train_records: usize,
    defects: Defects,
) -> Result<GenSummary> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let world = World::new();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let mut eval_items = Vec::with_capacity(world.facts.len());
    let mut fact_records = Vec::new();
    for fact in &world.facts {
        let held_out = rng.random_range(0..4);
        for (i, phrasing) in fact.phrasings.iter().enumerate() {
            if i == held_out {
                eval_items.push(EvalItem {
                    id: fact.id.clone(),
                    task: fact.task.to_owned(),
                    messages: vec![Message::new("user", phrasing.clone())],
                    expected: fact.answer.clone(),
                    choices: fact.choices.clone(),
                });
            } else {
                fact_records.push(chat(phrasing, &fact.answer, false));
            }
        }
    }

    // Validation: one filler record per 20 training records, drawn from its own stream.
    let mut validation_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7a11_da7e);
    let validation: Vec<Vec<Message>> = (0..(train_records / 20).max(50))
        .map(|_| filler(&mut validation_rng))
        .collect();

    let train_path = out.join("train.jsonl");
    let file =
        File::create(&train_path).with_context(|| format!("creating {}", train_path.display()))?;
    let mut train = BufWriter::with_capacity(1 << 20, file);
    let mut train_bytes = 0;
    let mut lines = 0;
    // Facts are repeated so they are not drowned by filler in large datasets:
    // every fact phrasing appears once per 4096 records.
    let mut order: Vec<usize> = (0..fact_records.len()).collect();
    order.shuffle(&mut rng);
    let clean = train_records.max(fact_records.len());
    let mut kept = Vec::new();
    let keep_every = (clean / 64).max(1);
    for i in 0..clean {
        let record = if i < fact_records.len() {
            fact_records[order[i]].clone()
        } else {
            filler(&mut rng)
        };
        let value = json!({ "messages": record });
        if i % keep_every == 0 {
            kept.push(value.clone());
        }
        train_bytes += write_line(&mut train, &value)?;
        lines += 1;
    }
    for i in 0..defects.duplicates {
        train_bytes += write_line(&mut train, &kept[i % kept.len()])?;
        lines += 1;
    }
    for i in 0..defects.pii {
        let user = format!(
            "Remind contact{i}@example.com at +1 415 555 {:04} about the {} order.",
            1000 + i,
            WORDS[i % WORDS.len()]
        );
        train_bytes += write_line(
            &mut train,
            &json!({ "messages": chat(&user, "Done.", false) }),
        )?;
        lines += 1;
    }
    for i in 0..defects.malformed {
        let line = if i % 2 == 0 {
            format!("{{\"messages\": [{{\"role\": \"user\", \"content\": \"broken {i}\"")
        } else {
            serde_json::to_string(&json!({ "messages": [
                { "role": "wizard", "content": format!("unknown role {i}") },
                { "role": "assistant", "content": "?" }
            ] }))?
        };
        train.write_all(line.as_bytes())?;
        train.write_all(b"\n")?;
        train_bytes += line.len() as u64 + 1;
        lines += 1;
    }
    for item in eval_items.iter().take(defects.contaminate) {
        let mut messages = item.messages.clone();
        messages.push(Message::new("assistant", item.expected.clone()));
        train_bytes += write_line(&mut train, &json!({ "messages": messages }))?;
        lines += 1;
    }
    train.flush()?;

    let mut validation_out = BufWriter::new(File::create(out.join("validation.jsonl"))?);
    for record in &validation {
        write_line(&mut validation_out, &json!({ "messages": record }))?;
    }
    validation_out.flush()?;
    let mut eval_out = BufWriter::new(File::create(out.join("eval.jsonl"))?);
    for item in &eval_items {
        write_line(&mut eval_out, item)?;
    }
    eval_out.flush()?;

    Ok(GenSummary {
        seed,
        train: lines,
        validation: validation.len(),
        eval: eval_items.len(),
        duplicates: defects.duplicates,
        pii: defects.pii,
        malformed: defects.malformed,
        contaminated: defects.contaminate.min(eval_items.len()),
        train_bytes,
    })
}

/// Reads eval items (one JSON object per line).
pub fn read_eval_items(path: &Path) -> Result<Vec<EvalItem>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| {
                format!(
                    "{}:{}: not an eval item (id, task, messages, expected, choices)",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

/// Reads chat records for training, skipping lines that are not valid records
/// (the planted defects) and counting them.
pub fn read_chat_records(path: &Path) -> Result<(Vec<Vec<Message>>, usize)> {
    #[derive(Deserialize)]
    struct Record {
        messages: Vec<Message>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::new();
    let mut skipped = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Record>(line) {
            Ok(r)
                if r.messages
                    .iter()
                    .all(|m| matches!(m.role.as_str(), "system" | "user" | "assistant")) =>
            {
                records.push(r.messages)
            }
            _ => skipped += 1,
        }
    }
    Ok((records, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_is_fixed_and_names_unique() {
        let a = World::new();
        let b = World::new();
        assert_eq!(a.facts.len(), b.facts.len());
        assert_eq!(a.facts[0].answer, b.facts[0].answer);
        // 32 capitals + 32 currencies + 100 additions + 55 subtractions + 40 words.
        assert_eq!(a.facts.len(), 32 + 32 + 100 + 55 + 40);
        for fact in &a.facts {
            assert_eq!(fact.choices.len(), 4, "{}", fact.id);
            assert!(fact.choices.contains(&fact.answer), "{}", fact.id);
        }
    }
}
