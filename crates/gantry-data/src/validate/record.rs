//! One record: parsed, its format checked, counted, hashed for duplicates and scanned for secrets and personal data.

use crate::error::{Error, Result};
use crate::histogram::LogHistogram;
use crate::tokens::Tokenizer;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::Value;
use xxhash_rust::xxh3::xxh3_128;

use super::read::{Batch, Chunk, Origin, UTF8_BOM};
use crate::contamination::EvalIndex;
use crate::formats::{PlainChat, RecordFormat, inspect};
use crate::neardup::{Signature, signature_of};
use crate::report::Example;
use crate::scan::{excerpt, scan};
use crate::words::with_words;

pub(crate) fn detect_in_batch(batch: &Batch) -> Option<RecordFormat> {
    match batch {
        Batch::Lines { text: true, .. } => Some(RecordFormat::Text),
        Batch::Lines { bytes, .. } => bytes
            .split(|&byte| byte == b'\n')
            .filter(|line| !line.trim_ascii().is_empty())
            .find_map(|line| serde_json::from_slice::<Value>(line).ok())
            .and_then(|value| RecordFormat::detect(&value)),
        Batch::Records(records) => records
            .iter()
            .find_map(|(_, _, value)| value.as_ref().ok().and_then(RecordFormat::detect)),
    }
}

/// Checks one batch; hands back its line buffer for reuse.
pub(crate) fn process_batch(batch: Batch, context: &FileContext<'_>) -> (Partial, Option<Vec<u8>>) {
    let mut partial = Partial::default();
    let mut spent = None;
    match batch {
        Batch::Lines {
            bytes,
            first_line,
            first_byte,
            text,
        } => {
            let mut byte = first_byte;
            // Plain chat records skip `Value`; data where most lines are not
            // plain stops trying after a few dozen, so it never parses twice.
            let (mut plain_tries, mut plain_misses) = (0_u32, 0_u32);
            for (line_number, line) in (first_line..).zip(lines(&bytes)) {
                let origin = Origin {
                    ordinal: line_number,
                    byte: Some(byte),
                    is_line: true,
                };
                byte += line.len() as u64;
                if context
                    .shard
                    .is_some_and(|shard| !shard.includes(line_number))
                {
                    continue;
                }
                let content = line.strip_suffix(b"\n").unwrap_or(line);
                let content = content.strip_suffix(b"\r").unwrap_or(content);
                // A UTF-8 byte-order mark (Windows editors, Excel) starts
                // the file, not the record.
                let content = if origin.byte == Some(0) {
                    content.strip_prefix(UTF8_BOM).unwrap_or(content)
                } else {
                    content
                };
                if text {
                    let value = match std::str::from_utf8(content) {
                        Ok(text) => Ok(serde_json::json!({ "text": text })),
                        Err(error) => Err(format!(
                            "invalid UTF-8 at byte {} of the line",
                            error.valid_up_to()
                        )),
                    };
                    process_record(
                        origin,
                        xxh3_128(content),
                        value.map(Record::Value),
                        context,
                        &mut partial,
                    );
                    continue;
                }
                if content.trim_ascii().is_empty() {
                    continue;
                }
                // sonic-rs has no nesting limit of its own (parsing, and
                // skipping in the plain-chat parse, recurse): a line nested
                // deeper than serde_json's limit would overflow the stack, so
                // it is refused before either looks at it.
                let deep = too_deep(content);
                if deep.is_none() && (plain_tries < 64 || 2 * plain_misses <= plain_tries) {
                    plain_tries += u32::from(context.plain_chat);
                    if context.plain_chat
                        && let Some(chat) = PlainChat::parse(content)
                    {
                        let hash = xxh3_128(content.trim_ascii());
                        process_record(
                            origin,
                            hash,
                            Ok(Record::Plain(chat)),
                            context,
                            &mut partial,
                        );
                        continue;
                    }
                    plain_misses += u32::from(context.plain_chat);
                }
                // sonic-rs checks UTF-8 as it parses; a line it refuses is
                // looked at again for the exact message.
                let value = if let Some(at) = deep {
                    Err((too_deep_message(), Some(at)))
                } else {
                    match sonic_rs::from_slice::<Value>(content) {
                        Ok(value) => Ok(value),
                        Err(_) => match std::str::from_utf8(content) {
                            Err(error) => Err((
                                format!(
                                    "invalid UTF-8 at byte {} of the line",
                                    error.valid_up_to()
                                ),
                                Some(error.valid_up_to()),
                            )),
                            Ok(text) => parse_json(text),
                        },
                    }
                };
                match value {
                    Ok(value) => process_record(
                        origin,
                        xxh3_128(content.trim_ascii()),
                        Ok(Record::Value(value)),
                        context,
                        &mut partial,
                    ),
                    Err((message, column)) => {
                        let origin = Origin {
                            byte: origin.byte.map(|byte| byte + column.unwrap_or(0) as u64),
                            ..origin
                        };
                        let snippet = String::from_utf8_lossy(&content[..content.len().min(200)])
                            .into_owned();
                        partial.records += 1;
                        partial.parse.add(position_of(context, origin), || {
                            context.example(origin, message, Some(excerpt(&snippet, 0, 80)))
                        });
                    }
                }
            }
            if let Chunk::Read { buffer, .. } = bytes {
                spent = Some(buffer);
            }
        }
        Batch::Records(records) => {
            for (origin, hash, value) in records {
                if context
                    .shard
                    .is_some_and(|shard| !shard.includes(origin.ordinal))
                {
                    continue;
                }
                process_record(
                    origin,
                    hash,
                    value.map(Record::Value),
                    context,
                    &mut partial,
                );
            }
        }
    }
    (partial, spent)
}

pub(crate) use crate::nesting::{too_deep, too_deep_message};

/// One JSON record: parsed by sonic-rs (SIMD) into the `serde_json::Value`
/// the checks walk; a record it refuses is parsed again by serde_json for
/// the error message and column gantry has always given.
pub(crate) fn parse_json(text: &str) -> std::result::Result<Value, (String, Option<usize>)> {
    if let Some(at) = too_deep(text.as_bytes()) {
        return Err((too_deep_message(), Some(at)));
    }
    sonic_rs::from_str::<Value>(text).or_else(|_| {
        serde_json::from_str::<Value>(text).map_err(|error| {
            // serde_json counts columns in bytes from 1 on the record's single line.
            let column = error.column().saturating_sub(1);
            (
                format!(
                    "not valid JSON: {}",
                    crate::scan::sanitize_message(&error.to_string())
                ),
                Some(column),
            )
        })
    })
}

/// A parsed record.
pub(crate) enum Record<'a> {
    /// The commonest chat shape, borrowed from its line.
    Plain(PlainChat<'a>),
    /// Any JSON value.
    Value(Value),
}

pub(crate) fn process_record(
    origin: Origin,
    raw_hash: u128,
    record: std::result::Result<Record<'_>, String>,
    context: &FileContext<'_>,
    partial: &mut Partial,
) {
    partial.records += 1;
    let record = match record {
        Ok(record) => record,
        Err(message) => {
            partial.parse.add(position_of(context, origin), || {
                context.example(origin, message, None)
            });
            return;
        }
    };
    let position = (context.file_index, origin.ordinal);
    // Every record is checked, duplicates included: whether a record repeats an
    // earlier one is only known after chunks merge, and counts must not depend
    // on where chunk boundaries fall.
    partial.exact.push((ContentHash::from(raw_hash), position));
    let inspection = match &record {
        Record::Plain(chat) => {
            if partial.fields.len() <= 256 {
                for field in chat.fields() {
                    if !partial.fields.contains(field) {
                        partial.fields.insert(field.to_owned());
                    }
                }
            }
            chat.inspect()
        }
        Record::Value(value) => {
            collect_fields(value, partial);
            let detected = context.format.or_else(|| RecordFormat::detect(value));
            let mut inspection = match detected {
                Some(format) => inspect(format, value),
                // A custom schema describes records of no known format: check every string.
                None if context.schema.is_some() => inspect_leaves(value),
                None => {
                    partial.schema.add(position_of(context, origin), || {
                        context.example(
                            origin,
                            "record has none of the keys of a known format (messages, conversations, instruction, prompt/completion, chosen or preferred_output, text); pass --data-format or --schema".to_owned(),
                            None,
                        )
                    });
                    // Not checked as a record, but a secret in it is still a secret.
                    if context.scan_sensitive {
                        scan_sensitive(context, origin, &[], Some(value), partial);
                    }
                    return;
                }
            };
            if let Some(validator) = context.schema {
                for error in validator.iter_errors(value).take(3) {
                    // The path holds the data's keys and the message quotes
                    // its values: both are shown only where they look like names.
                    let path: String = error
                        .instance_path()
                        .to_string()
                        .split('/')
                        .skip(1)
                        .map(|segment| {
                            if crate::scan::is_safe_to_quote(segment) {
                                format!("/{segment}")
                            } else {
                                "/…".to_owned()
                            }
                        })
                        .collect();
                    let at = if path.is_empty() {
                        "the record".to_owned()
                    } else {
                        format!("`{path}`")
                    };
                    inspection.problems.push(format!(
                        "{at} does not match --schema: {}",
                        crate::scan::sanitize_message(&error.to_string())
                    ));
                }
            }
            inspection
        }
    };
    let n_characters: u64 = inspection
        .texts
        .iter()
        .map(|(_, text)| crate::tokens::count_chars(text))
        .sum();
    let n_tokens = if inspection.messages.is_empty() {
        inspection
            .texts
            .iter()
            .map(|(_, text)| context.tokenizer.count(text))
            .sum()
    } else {
        context.tokenizer.count_messages(&inspection.messages)
    };
    partial.characters.add(n_characters);
    let n_turns = if inspection.messages.is_empty() {
        1
    } else {
        inspection.messages.len() as u64
    };
    for (largest, value) in partial
        .largest
        .iter_mut()
        .zip([n_characters, n_tokens, n_turns])
    {
        largest.push((value, position));
        if largest.len() > 2 * MAX_EXAMPLES {
            keep_largest(largest);
        }
    }
    partial.tokens.add(n_tokens);
    partial.turns.add(if inspection.messages.is_empty() {
        1
    } else {
        inspection.messages.len() as u64
    });
    if !inspection.messages.is_empty() {
        let has = |wanted: &[&str]| {
            inspection
                .messages
                .iter()
                .any(|message| wanted.contains(&message.role))
        };
        partial.without_system += u64::from(!has(&["system", "developer"]));
        partial.without_user += u64::from(!has(&["user"]));
    }
    for message in &inspection.messages {
        let role = role_name(message.role);
        match partial.roles.get_mut(role) {
            Some(count) => *count += 1,
            None => {
                partial.roles.insert(role.to_owned(), 1);
            }
        }
    }
    if !inspection.problems.is_empty() {
        let message = match inspection.problems.len() {
            1 => inspection.problems[0].clone(),
            n => format!("{} (and {} more)", inspection.problems[0], n - 1),
        };
        partial.schema.add(position_of(context, origin), || {
            context.example(origin, message, None)
        });
    }
    if !inspection.empty_fields.is_empty() {
        let fields = inspection.empty_fields.join(", ");
        partial.empty.add(position_of(context, origin), || {
            context.example(origin, format!("empty or whitespace-only: {fields}"), None)
        });
    }
    if let Some(limit) = context.max_tokens
        && n_tokens > limit
    {
        partial.over_tokens.add(position_of(context, origin), || {
            context.example(
                origin,
                format!(
                    "{n_tokens} tokens ({}), over --max-tokens {limit}",
                    context.tokenizer.name()
                ),
                None,
            )
        });
    }
    if context.scan_sensitive {
        let other = match &record {
            Record::Value(value) => Some(value),
            Record::Plain(_) => None,
        };
        scan_sensitive(context, origin, &inspection.texts, other, partial);
    }
    if !(context.normalized_duplicates || context.near_duplicates || context.eval.is_some()) {
        return;
    }
    // One pass over the words serves normalized duplicates, shingles and n-grams.
    with_words(inspection.texts.iter().map(|(_, text)| *text), |words| {
        if context.normalized_duplicates
            && let Some(hash) = words.normalized_hash()
        {
            partial.normalized.push((ContentHash::from(hash), position));
        }
        if context.near_duplicates
            && let Some(signature) = signature_of(words)
        {
            partial.near.push((position, signature));
        }
        if let Some(eval) = context.eval {
            eval.find_in(words, |item, ngram| {
                let entry = partial
                    .contamination
                    .entry(item)
                    .or_insert_with(|| (HashSet::new(), position));
                entry.0.insert(ngram);
                entry.1 = entry.1.min(position);
            });
        }
    });
}

/// An inspection of a custom record: every string is a text, named by its JSON pointer.
pub(crate) fn inspect_leaves(value: &Value) -> crate::formats::Inspection<'_> {
    pub(crate) fn walk<'a>(
        value: &'a Value,
        path: &mut String,
        inspection: &mut crate::formats::Inspection<'a>,
    ) {
        match value {
            Value::String(text) => {
                if text.trim().is_empty() {
                    inspection.empty_fields.push(path.clone());
                }
                inspection.texts.push((path.clone().into(), text));
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let length = path.len();
                    path.push_str(&format!("/{index}"));
                    walk(item, path, inspection);
                    path.truncate(length);
                }
            }
            Value::Object(object) => {
                for (key, item) in object {
                    let length = path.len();
                    path.push('/');
                    // Paths are quoted in findings: a key that does not look
                    // like a name is not.
                    path.push_str(if crate::scan::is_safe_to_quote(key) {
                        key
                    } else {
                        "…"
                    });
                    walk(item, path, inspection);
                    path.truncate(length);
                }
            }
            _ => {}
        }
    }
    let mut inspection = crate::formats::Inspection::default();
    walk(value, &mut String::new(), &mut inspection);
    inspection
}

/// Field paths seen, with array indices folded: `messages[].content`.
/// A role as summaries and reports name it: itself when it looks like a
/// name, else `(not shown)` (a credential pasted into a role must not become
/// a key of `summary.json`).
pub(crate) fn role_name(role: &str) -> &str {
    if crate::formats::CHAT_ROLES.contains(&role) || crate::scan::is_safe_to_quote(role) {
        role
    } else {
        "(not shown)"
    }
}

/// Keys of the known formats: never scanned, they are gantry's own words.
pub(crate) const KNOWN_KEYS: &[&str] = &[
    "messages",
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "function",
    "arguments",
    "id",
    "type",
    "weight",
    "refusal",
    "function_call",
    "conversations",
    "from",
    "value",
    "instruction",
    "input",
    "output",
    "system",
    "history",
    "prompt",
    "completion",
    "chosen",
    "rejected",
    "preferred_output",
    "non_preferred_output",
    "text",
    "image_url",
    "url",
];

/// Secrets and personal data in a record: in its texts, and in every other
/// string and key of `other` (a role, a tool call's arguments, a `name`, an
/// extra field, a key name), which findings must never quote raw either.
pub(crate) fn scan_sensitive(
    context: &FileContext<'_>,
    origin: Origin,
    texts: &[(crate::formats::Field, &str)],
    other: Option<&Value>,
    partial: &mut Partial,
) {
    // Every kind and place the record holds is an example of its own, with
    // its own excerpt (a token in a message and a key in an extra field are
    // two problems, each annotated where it is); the record counts once.
    let mut secret = Hits::default();
    let mut personal = Hits::default();
    let mut look = |text: &str, place: &dyn Fn() -> String, partial: &mut Partial| {
        for found in scan(text) {
            *partial
                .sensitive
                .entry(found.kind.as_str().to_owned())
                .or_insert(0) += 1;
            let hits = if found.kind.is_secret() {
                partial.found_secret(&text[found.value.clone()]);
                &mut secret
            } else {
                &mut personal
            };
            hits.add(found.kind, place, || excerpt(text, found.range.start, 80));
        }
    };
    for (field, text) in texts {
        look(text, &|| format!("`{field}`"), partial);
    }
    if let Some(value) = other {
        let mut addresses: Vec<usize> = texts
            .iter()
            .map(|(_, text)| text.as_ptr() as usize)
            .collect();
        addresses.sort_unstable();
        other_strings(value, &addresses, |text, place| look(text, place, partial));
    }
    for (hits, tally) in [(secret, &mut partial.secrets), (personal, &mut partial.pii)] {
        if let Some(findings) = hits.findings() {
            tally.add_each(position_of(context, origin), || {
                findings
                    .into_iter()
                    .map(|(message, snippet)| context.example(origin, message, Some(snippet)))
                    .collect()
            });
        }
    }
}

/// The sensitive matches of one record: each distinct kind and place (the
/// first few) with the excerpt of its first match, and how many more.
#[derive(Default)]
pub(crate) struct Hits {
    pub(crate) found: Vec<(String, String)>,
    pub(crate) more: usize,
}

impl Hits {
    /// Kinds and places given an example each; the rest are counted.
    const NAMED: usize = 4;

    pub(crate) fn add(
        &mut self,
        kind: crate::scan::SensitiveKind,
        place: &dyn Fn() -> String,
        excerpt: impl FnOnce() -> String,
    ) {
        let named = format!("{} in {}", kind.as_str(), place());
        if self.found.iter().any(|(known, _)| *known == named) {
            return;
        }
        if self.found.len() < Self::NAMED {
            self.found.push((named, excerpt()));
        } else {
            self.more += 1;
        }
    }

    /// One (message, excerpt) per kind and place, when anything was found;
    /// the last says how many more the record holds.
    pub(crate) fn findings(mut self) -> Option<Vec<(String, String)>> {
        if self.more > 0
            && let Some((message, _)) = self.found.last_mut()
        {
            message.push_str(&format!(" (and {} more in this record)", self.more));
        }
        (!self.found.is_empty()).then_some(self.found)
    }
}

/// Calls `visit` with every key and string of `value` that is not one of
/// the texts at `skip` (sorted addresses, already scanned) and could hold a
/// secret or personal data, with a way to name its place. The walk keeps
/// its own stack, and a place is named only when asked.
pub(crate) fn other_strings(
    value: &Value,
    skip: &[usize],
    mut visit: impl FnMut(&str, &dyn Fn() -> String),
) {
    enum Segment<'a> {
        Root,
        Key(&'a str),
        Index(usize),
    }
    // (parent, segment): the places walked so far.
    let mut places: Vec<(usize, Segment<'_>)> = vec![(0, Segment::Root)];
    let name = |places: &[(usize, Segment<'_>)], mut at: usize, key: bool| -> String {
        let mut segments = Vec::new();
        while at != 0 {
            segments.push(at);
            at = places[at].0;
        }
        let mut path = String::new();
        for &index in segments.iter().rev() {
            match &places[index].1 {
                Segment::Key(key) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(if crate::scan::is_safe_to_quote(key) {
                        key
                    } else {
                        "…"
                    });
                }
                Segment::Index(index) => path.push_str(&format!("[{index}]")),
                Segment::Root => {}
            }
        }
        match (key, path.is_empty()) {
            (true, true) => "a key of the record".to_owned(),
            (true, false) => format!("a key of `{path}`"),
            (false, true) => "the record".to_owned(),
            (false, false) => format!("`{path}`"),
        }
    };
    const SHORTEST: usize = 6;
    let mut stack: Vec<(usize, &Value)> = vec![(0, value)];
    while let Some((place, value)) = stack.pop() {
        match value {
            Value::String(text)
                if text.len() >= SHORTEST
                    && skip.binary_search(&(text.as_ptr() as usize)).is_err() =>
            {
                visit(text, &|| name(&places, place, false));
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate().rev() {
                    places.push((place, Segment::Index(index)));
                    stack.push((places.len() - 1, item));
                }
            }
            Value::Object(object) => {
                for (key, item) in object.iter().rev() {
                    if key.len() >= SHORTEST && !KNOWN_KEYS.contains(&key.as_str()) {
                        visit(key, &|| name(&places, place, true));
                    }
                    places.push((place, Segment::Key(key)));
                    stack.push((places.len() - 1, item));
                }
            }
            Value::Number(number) if !number.is_f64() => {
                let digits = number.to_string();
                if digits.len() >= SHORTEST {
                    visit(&digits, &|| name(&places, place, false));
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn collect_fields(value: &Value, partial: &mut Partial) {
    let Some(object) = value.as_object() else {
        return;
    };
    // Nearly every record has the fields seen before: look before allocating.
    let mut nested = String::new();
    for (key, child) in object {
        if partial.fields.len() > 256 {
            return;
        }
        if !partial.fields.contains(key.as_str()) {
            partial.fields.insert(key.clone());
        }
        if let Some(items) = child.as_array() {
            for item in items.iter().take(4) {
                if let Some(item) = item.as_object() {
                    for item_key in item.keys() {
                        nested.clear();
                        nested.push_str(key);
                        nested.push_str("[].");
                        nested.push_str(item_key);
                        if !partial.fields.contains(nested.as_str()) {
                            partial.fields.insert(nested.clone());
                        }
                    }
                }
            }
        }
    }
}

/// A record's place: file index and line (or, for JSON arrays, record index).
pub(crate) type Position = (u32, u64);

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Tally {
    pub(crate) count: u64,
    /// The first examples by position: merging keeps the smallest positions,
    /// so the result does not depend on the order partials merge in.
    pub(crate) examples: Vec<(Position, Example)>,
}

impl Tally {
    pub(crate) fn add(&mut self, position: Position, example: impl FnOnce() -> Example) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push((position, example()));
        }
    }

    /// Counts one record with several examples (kept in order, as far as
    /// room allows).
    pub(crate) fn add_each(&mut self, position: Position, examples: impl FnOnce() -> Vec<Example>) {
        self.count += 1;
        if self.examples.len() < MAX_EXAMPLES {
            for example in examples() {
                if self.examples.len() == MAX_EXAMPLES {
                    break;
                }
                self.examples.push((position, example));
            }
        }
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.count += other.count;
        self.examples.extend(other.examples);
        self.examples.sort_by_key(|(position, _)| *position);
        self.examples.truncate(MAX_EXAMPLES);
    }

    pub(crate) fn into_examples(self) -> Vec<Example> {
        self.examples
            .into_iter()
            .map(|(_, example)| example)
            .collect()
    }
}

/// Records by content hash. The keys are xxh3 hashes already, so the map's
/// own hash is the fast one.
pub(crate) type Occurrences = rustc_hash::FxHashMap<u128, Occurrence>;

#[derive(Debug, Clone)]
pub(crate) struct Occurrence {
    pub(crate) first: Position,
    pub(crate) count: u64,
    pub(crate) others: Vec<Position>,
}

/// Keeps the [`MAX_EXAMPLES`] largest values, ties by position, in a stable order.
pub(crate) fn keep_largest(values: &mut Vec<(u64, Position)>) {
    values.sort_unstable_by(|left, right| right.0.cmp(&left.0).then(left.1.cmp(&right.1)));
    values.truncate(MAX_EXAMPLES);
}

pub(crate) fn position_of(context: &FileContext<'_>, origin: Origin) -> Position {
    (context.file_index, origin.ordinal)
}

/// The records that share a content hash with another, from every
/// record's (hash, position): sorted once at the end, which costs less than
/// a map updated per record, and 32 bytes per record while scanning.
pub(crate) fn occurrences(mut hashes: Vec<(ContentHash, Position)>) -> Occurrences {
    hashes.sort_unstable();
    hashes
        .chunk_by(|left, right| left.0 == right.0)
        .filter(|group| group.len() > 1)
        .map(|group| {
            let occurrence = Occurrence {
                first: group[0].1,
                count: group.len() as u64,
                others: group[1..group.len().min(MAX_CLUSTER_MEMBERS)]
                    .iter()
                    .map(|(_, position)| *position)
                    .collect(),
            };
            (u128::from(group[0].0), occurrence)
        })
        .collect()
}

/// A 128-bit content hash as two 64-bit halves: JSON numbers in shard files
/// hold 64 bits, and the halves sort as the whole does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]

pub(crate) struct ContentHash([u64; 2]);

impl From<u128> for ContentHash {
    fn from(hash: u128) -> ContentHash {
        ContentHash([(hash >> 64) as u64, hash as u64])
    }
}

/// Results of a stretch of records. Merging is order-independent, so chunk
/// and shard partials combine to the same result.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Partial {
    pub(crate) records: u64,
    pub(crate) parse: Tally,
    pub(crate) schema: Tally,
    pub(crate) empty: Tally,
    pub(crate) over_tokens: Tally,
    pub(crate) secrets: Tally,
    pub(crate) pii: Tally,
    /// (content hash, position) of every record, and of its normalized text.
    pub(crate) exact: Vec<(ContentHash, Position)>,
    pub(crate) normalized: Vec<(ContentHash, Position)>,
    pub(crate) characters: LogHistogram,
    pub(crate) tokens: LogHistogram,
    pub(crate) turns: LogHistogram,
    pub(crate) roles: BTreeMap<String, u64>,
    /// Conversations without a system message, and without a user message
    /// (OpenAI's data-preparation notebook counts both).
    #[serde(default)]
    pub(crate) without_system: u64,
    #[serde(default)]
    pub(crate) without_user: u64,
    pub(crate) sensitive: BTreeMap<String, u64>,
    pub(crate) fields: BTreeSet<String>,
    /// Per eval item: the n-grams found in training data and the first record holding one.
    pub(crate) contamination: HashMap<u32, (HashSet<u64>, Position)>,
    /// MinHash signatures in data order.
    pub(crate) near: Vec<(Position, Signature)>,
    /// The largest records by characters, tokens and turns: (value, position).
    pub(crate) largest: [Vec<(u64, Position)>; 3],
    /// The secrets themselves, for the redactor of everything gantry
    /// writes; never serialized (shard files hold none).
    #[serde(skip)]
    pub(crate) found_secrets: BTreeSet<String>,
}

/// The most secret values one run collects for the redactor.
pub(crate) const MAX_FOUND_SECRETS: usize = 10_000;

impl Partial {
    pub(crate) fn found_secret(&mut self, value: &str) {
        if self.found_secrets.len() < MAX_FOUND_SECRETS && !self.found_secrets.contains(value) {
            self.found_secrets.insert(value.to_owned());
        }
    }

    pub(crate) fn merge(&mut self, other: Partial) {
        self.records += other.records;
        self.parse.merge(other.parse);
        self.schema.merge(other.schema);
        self.empty.merge(other.empty);
        self.over_tokens.merge(other.over_tokens);
        self.secrets.merge(other.secrets);
        self.pii.merge(other.pii);
        append(&mut self.exact, other.exact);
        append(&mut self.normalized, other.normalized);
        self.characters.merge(&other.characters);
        self.tokens.merge(&other.tokens);
        self.turns.merge(&other.turns);
        for (role, count) in other.roles {
            *self.roles.entry(role).or_insert(0) += count;
        }
        self.without_system += other.without_system;
        self.without_user += other.without_user;
        for (kind, count) in other.sensitive {
            *self.sensitive.entry(kind).or_insert(0) += count;
        }
        self.fields.extend(other.fields);
        for secret in other.found_secrets {
            if self.found_secrets.len() >= MAX_FOUND_SECRETS {
                break;
            }
            self.found_secrets.insert(secret);
        }
        append(&mut self.near, other.near);
        for (mine, theirs) in self.largest.iter_mut().zip(other.largest) {
            mine.extend(theirs);
            keep_largest(mine);
        }
        for (item, (ngrams, first)) in other.contamination {
            let entry = self
                .contamination
                .entry(item)
                .or_insert_with(|| (HashSet::new(), first));
            entry.0.extend(ngrams);
            entry.1 = entry.1.min(first);
        }
    }
}

/// Moves `theirs` onto the end of `mine`, copying the shorter of the two:
/// for columns whose order does not matter (each is sorted where it is
/// read), so the last merges of a run move the large columns, not copy them.
fn append<T>(mine: &mut Vec<T>, mut theirs: Vec<T>) {
    if theirs.len() > mine.len() {
        std::mem::swap(mine, &mut theirs);
    }
    mine.append(&mut theirs);
}

/// Everything a worker needs to check records of one file.
pub(crate) struct FileContext<'a> {
    pub(crate) file_index: u32,
    pub(crate) display: &'a str,
    pub(crate) format: Option<RecordFormat>,
    pub(crate) tokenizer: &'a Tokenizer,
    pub(crate) max_tokens: Option<u64>,
    pub(crate) scan_sensitive: bool,
    pub(crate) eval: Option<&'a EvalIndex>,
    pub(crate) near_duplicates: bool,
    pub(crate) normalized_duplicates: bool,
    /// Whether plain chat records may skip `Value` (no schema, chat or unknown format).
    pub(crate) plain_chat: bool,
    pub(crate) shard: Option<Shard>,
    pub(crate) schema: Option<&'a jsonschema::Validator>,
}

impl FileContext<'_> {
    pub(crate) fn example(
        &self,
        origin: Origin,
        message: String,
        excerpt: Option<String>,
    ) -> Example {
        Example {
            file: self.display.to_owned(),
            line: origin.is_line.then_some(origin.ordinal),
            byte: origin.byte,
            record: (!origin.is_line).then_some(origin.ordinal),
            message,
            excerpt,
        }
    }
}

/// Examples kept per check.
pub(crate) const MAX_EXAMPLES: usize = 20;

impl From<ContentHash> for u128 {
    fn from(hash: ContentHash) -> u128 {
        (u128::from(hash.0[0]) << 64) | u128::from(hash.0[1])
    }
}

/// Which records a run checks: record ordinals (line numbers, or indices in
/// JSON arrays) with `ordinal % count == index - 1`. Every shard reads and
/// hashes every file, so each can vouch for the same data lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// 1-based shard number.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = Error;

    fn from_str(value: &str) -> Result<Shard> {
        let invalid = || Error::BadShard {
            value: value.to_owned(),
        };
        let (index, count) = value.split_once('/').ok_or_else(invalid)?;
        let index: u32 = index.trim().parse().map_err(|_| invalid())?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        if index == 0 || count == 0 || index > count {
            return Err(invalid());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    pub(crate) fn includes(self, ordinal: u64) -> bool {
        ordinal % u64::from(self.count) == u64::from(self.index - 1)
    }

    /// Whether this shard takes the SHA-256 of file `file_index` for the
    /// lock: each file's falls to one shard, round robin.
    pub(crate) fn hashes_file(self, file_index: u32) -> bool {
        file_index % self.count == self.index - 1
    }
}

/// Members listed per duplicate cluster.
pub(crate) const MAX_CLUSTER_MEMBERS: usize = 10;

/// The lines of `bytes`, each with its `\n` (the last one may lack it).
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    memchr::memchr_iter(b'\n', bytes)
        .map(move |end| end + 1)
        .chain(std::iter::once(bytes.len()))
        .filter_map(move |end| {
            let line = (end > start).then(|| &bytes[start..end]);
            start = end;
            line
        })
}
