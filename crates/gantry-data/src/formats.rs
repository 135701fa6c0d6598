//! Record formats: detection, validation rules, and the texts each record carries.
//!
//! Rules follow what fine-tuning services accept: the OpenAI chat format
//! (roles, order, tool-call links, `weight`), ShareGPT, Alpaca,
//! prompt/completion, preference pairs (OpenAI DPO and TRL styles) and plain
//! text.

use crate::scan::{is_safe_to_quote, quoted};
use serde_json::{Map, Value};

/// A record layout.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum RecordFormat {
    /// `{"messages": [{"role", "content"}…]}`.
    OpenaiChat,
    /// `{"conversations": [{"from", "value"}…]}`.
    Sharegpt,
    /// `{"instruction", "input", "output"}`.
    Alpaca,
    /// `{"prompt", "completion"}`.
    PromptCompletion,
    /// `{"input", "preferred_output", "non_preferred_output"}` or `{"prompt", "chosen", "rejected"}`.
    Preference,
    /// `{"text"}`.
    Text,
}

impl RecordFormat {
    /// The kebab-case name, as `--format` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordFormat::OpenaiChat => "openai-chat",
            RecordFormat::Sharegpt => "sharegpt",
            RecordFormat::Alpaca => "alpaca",
            RecordFormat::PromptCompletion => "prompt-completion",
            RecordFormat::Preference => "preference",
            RecordFormat::Text => "text",
        }
    }

    /// Whether records are conversations (a list of role-tagged messages).
    pub fn is_conversation(self) -> bool {
        matches!(self, RecordFormat::OpenaiChat | RecordFormat::Sharegpt)
    }

    /// The format a record looks like, from its keys.
    pub fn detect(value: &Value) -> Option<RecordFormat> {
        let object = value.as_object()?;
        let has = |key: &str| object.contains_key(key);
        Some(if has("messages") {
            RecordFormat::OpenaiChat
        } else if has("conversations") {
            RecordFormat::Sharegpt
        } else if has("preferred_output") || has("chosen") {
            RecordFormat::Preference
        } else if has("instruction") {
            RecordFormat::Alpaca
        } else if has("prompt") && has("completion") {
            RecordFormat::PromptCompletion
        } else if has("text") {
            RecordFormat::Text
        } else {
            return None;
        })
    }
}

/// One message of a conversation, for token counting and role statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The role (`user`, `assistant`…).
    pub role: &'a str,
    /// The text content (parts joined for multi-part content).
    pub text: std::borrow::Cow<'a, str>,
    /// Whether the message carries a `name`.
    pub has_name: bool,
}

/// What inspecting one record found.
#[derive(Debug, Default)]
pub struct Inspection<'a> {
    /// Schema problems, each a sentence naming the field.
    pub problems: Vec<String>,
    /// Every text field: (field path, text).
    pub texts: Vec<(Field, &'a str)>,
    /// Text fields that are empty or whitespace only, by field path.
    pub empty_fields: Vec<String>,
    /// The conversation, for chat-like formats.
    pub messages: Vec<Message<'a>>,
}

/// Where a text lies in its record, written out only when a report names it.
#[derive(Debug, Clone)]
pub enum Field {
    /// A path such as `conversations[2].value`.
    Path(String),
    /// `messages[i].content`, the commonest, kept as its index.
    MessageContent(usize),
}

impl std::fmt::Display for Field {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Path(path) => formatter.write_str(path),
            Field::MessageContent(index) => write!(formatter, "messages[{index}].content"),
        }
    }
}

impl From<String> for Field {
    fn from(path: String) -> Field {
        Field::Path(path)
    }
}

/// Fields are equal when they name the same path, however they are kept.
impl PartialEq for Field {
    fn eq(&self, other: &Field) -> bool {
        match (self, other) {
            (Field::MessageContent(left), Field::MessageContent(right)) => left == right,
            _ => self.to_string() == other.to_string(),
        }
    }
}

/// Checks `value` against `format`'s rules and collects its texts.
pub fn inspect(format: RecordFormat, value: &Value) -> Inspection<'_> {
    let mut inspection = Inspection::default();
    let Some(object) = value.as_object() else {
        inspection.problems.push(format!(
            "record is {} but {} records are JSON objects",
            kind_of(value),
            format.as_str()
        ));
        return inspection;
    };
    match format {
        RecordFormat::OpenaiChat => match object.get("messages") {
            Some(messages) => inspect_chat(messages, "messages", &mut inspection),
            None => inspection.problems.push("`messages` is missing".to_owned()),
        },
        RecordFormat::Sharegpt => inspect_sharegpt(object, &mut inspection),
        RecordFormat::Alpaca => {
            required_text(object, "instruction", &mut inspection);
            optional_text(object, "input", &mut inspection);
            required_text(object, "output", &mut inspection);
            allowed_keys(
                object,
                &["instruction", "input", "output", "system", "history"],
                "",
                &mut inspection,
            );
        }
        RecordFormat::PromptCompletion => {
            required_text(object, "prompt", &mut inspection);
            required_text(object, "completion", &mut inspection);
        }
        RecordFormat::Preference => inspect_preference(object, &mut inspection),
        RecordFormat::Text => required_text(object, "text", &mut inspection),
    }
    inspection
}

/// A value from the data for a message: a short number or a name as it
/// is, anything else by its kind (see [`quoted`]).
fn described(value: &Value) -> String {
    match value {
        Value::Number(number) if is_safe_to_quote(&number.to_string()) => number.to_string(),
        Value::String(text) => format!("a string, {}", quoted(text)),
        Value::Bool(flag) => flag.to_string(),
        other => kind_of(other).to_owned(),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn record_text<'a>(field: impl Into<Field>, text: &'a str, inspection: &mut Inspection<'a>) {
    let field = field.into();
    if text.trim().is_empty() {
        inspection.empty_fields.push(field.to_string());
    }
    inspection.texts.push((field, text));
}

fn required_text<'a>(object: &'a Map<String, Value>, key: &str, inspection: &mut Inspection<'a>) {
    match object.get(key) {
        Some(Value::String(text)) => record_text(key.to_owned(), text, inspection),
        Some(other) => inspection.problems.push(format!(
            "`{key}` is {} but must be a string",
            kind_of(other)
        )),
        None => inspection.problems.push(format!("`{key}` is missing")),
    }
}

fn optional_text<'a>(object: &'a Map<String, Value>, key: &str, inspection: &mut Inspection<'a>) {
    match object.get(key) {
        // An empty optional input (Alpaca's `input`) is normal, so it is not "empty content".
        Some(Value::String(text)) => inspection.texts.push((Field::Path(key.to_owned()), text)),
        Some(Value::Null) | None => {}
        Some(other) => inspection.problems.push(format!(
            "`{key}` is {} but must be a string",
            kind_of(other)
        )),
    }
}

fn allowed_keys(
    object: &Map<String, Value>,
    allowed: &[&str],
    prefix: impl std::fmt::Display,
    inspection: &mut Inspection<'_>,
) {
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            let problem = if is_safe_to_quote(key) {
                format!(
                    "`{prefix}{key}` is not an allowed key (allowed: {})",
                    allowed.join(", ")
                )
            } else {
                let place = prefix.to_string();
                let place = place.trim_end_matches('.');
                let place = if place.is_empty() {
                    "the record".to_owned()
                } else {
                    format!("`{place}`")
                };
                format!(
                    "{place} has a key that is not allowed, {} (allowed: {})",
                    quoted(key),
                    allowed.join(", ")
                )
            };
            inspection.problems.push(problem);
        }
    }
}

const CHAT_MESSAGE_KEYS: &[&str] = &[
    "role",
    "content",
    "name",
    "function_call",
    "tool_calls",
    "tool_call_id",
    "weight",
    "refusal",
];

/// The roles of OpenAI's chat format.
pub(crate) const CHAT_ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// The order of a conversation's roles, checked message by message.
#[derive(Default)]
struct Turns<'a> {
    previous_role: Option<&'a str>,
    n_assistant: usize,
}

impl<'a> Turns<'a> {
    /// Checks the message at `field` with `role` against the ones before it.
    fn next(
        &mut self,
        field: &dyn std::fmt::Display,
        role: &'a str,
        inspection: &mut Inspection<'_>,
    ) {
        match role {
            "system" | "developer"
                if self
                    .previous_role
                    .is_some_and(|previous| previous != "system" && previous != "developer") =>
            {
                inspection.problems.push(format!("`{field}` is a {role} message after the conversation started; system messages come first"));
            }
            "user" | "assistant" if self.previous_role == Some(role) => {
                inspection.problems.push(format!("`{field}` is a second {role} message in a row; user and assistant turns alternate"));
            }
            "assistant" if self.previous_role.is_none() => {
                inspection.problems.push(format!(
                    "`{field}` is an assistant message before any user message"
                ));
            }
            _ => {}
        }
        if role == "assistant" {
            self.n_assistant += 1;
        }
        self.previous_role = Some(if role == "tool" || role == "function" {
            "tool"
        } else {
            role
        });
    }

    fn finish(self, path: &str, inspection: &mut Inspection<'_>) {
        if self.n_assistant == 0 {
            inspection
                .problems
                .push(format!("`{path}` has no assistant message to learn from"));
        }
    }
}

/// The commonest chat record, `{"messages": [{"role", "content"}…]}` with
/// string contents (and `weight` 0 or 1 on assistant messages), borrowed
/// from the line. A record with another top-level key fails to deserialize;
/// a message with another key (a tool call, a `name`), a repeated key or
/// another `weight` is read to its end and marked. Either takes the general
/// path through `serde_json::Value`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlainChat<'a> {
    #[serde(borrow)]
    messages: Vec<PlainMessage<'a>>,
}

#[derive(Debug)]
struct PlainMessage<'a> {
    role: std::borrow::Cow<'a, str>,
    content: std::borrow::Cow<'a, str>,
    /// Whether the message has a `weight` (0 or 1).
    weighted: bool,
    /// Whether the message has what the plain shape leaves to the general
    /// path: found while parsing, not by failing (a failed parse builds an
    /// error with a line and column, which costs more than the parse).
    general: bool,
}

/// A JSON string, borrowed from the line where it has no escapes.
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

/// A `weight` value: whether it is the integer 0 or 1. Any other value is
/// read to its end and answers `false` (the general path says what is wrong).
struct Weight(bool);

impl<'de> serde::Deserialize<'de> for Weight {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess};
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Weight;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("any JSON value")
            }
            fn visit_u64<E>(self, value: u64) -> Result<Weight, E> {
                Ok(Weight(value <= 1))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Weight, E> {
                Ok(Weight(false))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Weight, E> {
                Ok(Weight(false))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Weight, E> {
                Ok(Weight(false))
            }
            fn visit_str<E>(self, _: &str) -> Result<Weight, E> {
                Ok(Weight(false))
            }
            fn visit_unit<E>(self) -> Result<Weight, E> {
                Ok(Weight(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Weight, A::Error> {
                while items.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Weight(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Weight, A::Error> {
                while entries.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Weight(false))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for PlainMessage<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = PlainMessage<'a>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a chat message")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut entries: A,
            ) -> Result<PlainMessage<'a>, A::Error> {
                let (mut role, mut content, mut weight) = (None, None, None);
                let mut general = false;
                while let Some(key) = entries.next_key::<Text<'de>>()? {
                    match &*key.0 {
                        "role" if role.is_none() => {
                            role = Some(entries.next_value::<Text<'a>>()?.0)
                        }
                        "content" if content.is_none() => {
                            content = Some(entries.next_value::<Text<'a>>()?.0);
                        }
                        "weight" if weight.is_none() => {
                            weight = Some(entries.next_value::<Weight>()?.0);
                        }
                        _ => {
                            general = true;
                            entries.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                let (Some(role), Some(content)) = (role, content) else {
                    return Ok(PlainMessage {
                        role: std::borrow::Cow::Borrowed(""),
                        content: std::borrow::Cow::Borrowed(""),
                        weighted: false,
                        general: true,
                    });
                };
                Ok(PlainMessage {
                    general: general || weight == Some(false),
                    weighted: weight.is_some(),
                    role,
                    content,
                })
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

impl<'a> PlainChat<'a> {
    /// Parses `line` if it is a plain chat record whose roles are all
    /// conversation roles (tool messages need the general path) and whose
    /// weights are on assistant messages. sonic-rs recurses without a
    /// limit, even to skip: the caller refuses lines nested deeper than
    /// `validate::MAX_NESTING` first.
    pub(crate) fn parse(line: &'a [u8]) -> Option<PlainChat<'a>> {
        let chat: PlainChat<'a> = sonic_rs::from_slice(line).ok()?;
        (!chat.messages.is_empty()
            && chat.messages.iter().all(|message| {
                !message.general
                    && match &*message.role {
                        "assistant" => true,
                        "system" | "developer" | "user" => !message.weighted,
                        _ => false,
                    }
            }))
        .then_some(chat)
    }

    /// The field names the validator's `collect_fields` notes for the same
    /// record as a `Value` (it looks at the first four messages' keys).
    pub(crate) fn fields(&self) -> impl Iterator<Item = &'static str> {
        let weighted = self.messages.iter().take(4).any(|message| message.weighted);
        ["messages", "messages[].role", "messages[].content"]
            .into_iter()
            .chain(weighted.then_some("messages[].weight"))
    }

    /// What [`inspect`] finds in the same record as a `Value`.
    pub(crate) fn inspect(&'a self) -> Inspection<'a> {
        let mut inspection = Inspection::default();
        let mut turns = Turns::default();
        for (index, message) in self.messages.iter().enumerate() {
            record_text(
                Field::MessageContent(index),
                &message.content,
                &mut inspection,
            );
            turns.next(
                &format_args!("messages[{index}]"),
                &message.role,
                &mut inspection,
            );
            inspection.messages.push(Message {
                role: &message.role,
                text: std::borrow::Cow::Borrowed(&message.content),
                has_name: false,
            });
        }
        turns.finish("messages", &mut inspection);
        inspection
    }
}

/// Validates an OpenAI-style message list at `path` (e.g. `messages`).
fn inspect_chat<'a>(messages: &'a Value, path: &str, inspection: &mut Inspection<'a>) {
    let Some(messages) = messages.as_array() else {
        inspection.problems.push(format!(
            "`{path}` is {} but must be an array of messages",
            kind_of(messages)
        ));
        return;
    };
    if messages.is_empty() {
        inspection.problems.push(format!("`{path}` is empty"));
        return;
    }
    let mut open_tool_calls: Vec<&str> = Vec::new();
    let mut turns = Turns::default();
    for (index, message) in messages.iter().enumerate() {
        let field = format!("{path}[{index}]");
        let Some(message) = message.as_object() else {
            inspection.problems.push(format!(
                "`{field}` is {} but must be an object",
                kind_of(message)
            ));
            continue;
        };
        allowed_keys(
            message,
            CHAT_MESSAGE_KEYS,
            format_args!("{field}."),
            inspection,
        );
        let role = match message.get("role") {
            Some(Value::String(role)) => role.as_str(),
            Some(other) => {
                inspection.problems.push(format!(
                    "`{field}.role` is {} but must be a string",
                    kind_of(other)
                ));
                continue;
            }
            None => {
                inspection
                    .problems
                    .push(format!("`{field}.role` is missing"));
                continue;
            }
        };
        if !CHAT_ROLES.contains(&role) {
            inspection.problems.push(format!(
                "`{field}.role` is {}; expected system, developer, user, assistant, tool or function",
                quoted(role)
            ));
        }
        let has_tool_calls = message
            .get("tool_calls")
            .is_some_and(|calls| calls.as_array().is_some_and(|calls| !calls.is_empty()));
        let has_call = has_tool_calls || message.get("function_call").is_some_and(Value::is_object);
        let text = match message.get("content") {
            Some(Value::String(text)) => {
                record_text(format!("{field}.content"), text, inspection);
                std::borrow::Cow::Borrowed(text.as_str())
            }
            Some(Value::Array(parts)) => {
                let mut joined = String::new();
                for (part_index, part) in parts.iter().enumerate() {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => match part.get("text") {
                            Some(Value::String(text)) => {
                                record_text(format!("{field}.content[{part_index}].text"), text, inspection);
                                joined.push_str(text);
                            }
                            _ => inspection.problems.push(format!("`{field}.content[{part_index}].text` must be a string")),
                        },
                        Some("image_url" | "input_audio" | "file") => {}
                        _ => inspection.problems.push(format!("`{field}.content[{part_index}].type` must be text, image_url, input_audio or file")),
                    }
                }
                std::borrow::Cow::Owned(joined)
            }
            Some(Value::Null) | None if role == "assistant" && has_call => {
                std::borrow::Cow::Borrowed("")
            }
            Some(Value::Null) | None => {
                inspection.problems.push(format!(
                    "`{field}.content` is missing; {role} messages need content"
                ));
                std::borrow::Cow::Borrowed("")
            }
            Some(other) => {
                inspection.problems.push(format!(
                    "`{field}.content` is {} but must be a string or an array of parts",
                    kind_of(other)
                ));
                std::borrow::Cow::Borrowed("")
            }
        };
        if let Some(weight) = message.get("weight") {
            if role != "assistant" {
                inspection.problems.push(format!(
                    "`{field}.weight` is only allowed on assistant messages, not {role}"
                ));
            } else if !matches!(weight.as_u64(), Some(0 | 1)) {
                inspection.problems.push(format!(
                    "`{field}.weight` is {} but must be 0 or 1",
                    described(weight)
                ));
            }
        }
        if has_tool_calls {
            if role != "assistant" {
                inspection.problems.push(format!(
                    "`{field}.tool_calls` is only allowed on assistant messages"
                ));
            }
            for (call_index, call) in message
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let call_field = format!("{field}.tool_calls[{call_index}]");
                match call.get("id").and_then(Value::as_str) {
                    Some(id) => open_tool_calls.push(id),
                    None => inspection
                        .problems
                        .push(format!("`{call_field}.id` is missing")),
                }
                if call
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .is_none()
                {
                    inspection
                        .problems
                        .push(format!("`{call_field}.function.name` is missing"));
                }
                if let Some(arguments) = call.pointer("/function/arguments")
                    && !arguments.is_string()
                {
                    inspection.problems.push(format!(
                        "`{call_field}.function.arguments` must be a JSON-encoded string"
                    ));
                }
            }
        }
        if role == "tool" {
            match message.get("tool_call_id").and_then(Value::as_str) {
                Some(id) => match open_tool_calls.iter().position(|open| *open == id) {
                    Some(position) => {
                        open_tool_calls.remove(position);
                    }
                    None => inspection.problems.push(format!(
                        "`{field}.tool_call_id` {} answers no earlier assistant tool call",
                        quoted(id)
                    )),
                },
                None => inspection.problems.push(format!(
                    "`{field}.tool_call_id` is missing; tool messages answer a tool call"
                )),
            }
        }
        turns.next(&field, role, inspection);
        inspection.messages.push(Message {
            role,
            text,
            has_name: message.contains_key("name"),
        });
    }
    turns.finish(path, inspection);
    if !open_tool_calls.is_empty() {
        inspection.problems.push(format!(
            "`{path}` leaves tool call(s) {} without a tool answer",
            open_tool_calls
                .iter()
                .map(|id| quoted(id))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
}

fn inspect_sharegpt<'a>(object: &'a Map<String, Value>, inspection: &mut Inspection<'a>) {
    let Some(turns) = object.get("conversations").and_then(Value::as_array) else {
        inspection
            .problems
            .push("`conversations` must be an array of turns".to_owned());
        return;
    };
    let mut previous: Option<&str> = None;
    let mut n_gpt = 0;
    for (index, turn) in turns.iter().enumerate() {
        let field = format!("conversations[{index}]");
        let from = turn.get("from").and_then(Value::as_str);
        let value = turn.get("value").and_then(Value::as_str);
        match (from, value) {
            (Some(from), Some(value)) => {
                let role = match from {
                    "human" | "user" => "user",
                    "gpt" | "assistant" => "assistant",
                    "system" => "system",
                    "function_call" | "observation" | "tool" => "tool",
                    other => {
                        inspection.problems.push(format!(
                            "`{field}.from` is {}; expected human, gpt, system, function_call or observation",
                            quoted(other)
                        ));
                        continue;
                    }
                };
                if role == "assistant" {
                    n_gpt += 1;
                }
                if (role == "user" || role == "assistant") && previous == Some(role) {
                    inspection.problems.push(format!(
                        "`{field}` is a second {from} turn in a row; human and gpt turns alternate"
                    ));
                }
                previous = Some(role);
                record_text(format!("{field}.value"), value, inspection);
                inspection.messages.push(Message {
                    role,
                    text: std::borrow::Cow::Borrowed(value),
                    has_name: false,
                });
            }
            _ => inspection
                .problems
                .push(format!("`{field}` needs string `from` and `value`")),
        }
    }
    if n_gpt == 0 {
        inspection
            .problems
            .push("`conversations` has no gpt turn to learn from".to_owned());
    }
}

fn inspect_preference<'a>(object: &'a Map<String, Value>, inspection: &mut Inspection<'a>) {
    if object.contains_key("preferred_output") || object.contains_key("non_preferred_output") {
        // OpenAI DPO: input.messages, and one assistant message on each side.
        match object.get("input").and_then(|input| input.get("messages")) {
            Some(messages) => {
                let mut prompt = Inspection::default();
                inspect_chat_prompt(messages, &mut prompt);
                merge(inspection, prompt);
            }
            None => inspection
                .problems
                .push("`input.messages` is missing".to_owned()),
        }
        for side in ["preferred_output", "non_preferred_output"] {
            match object.get(side).and_then(Value::as_array) {
                Some(outputs) if outputs.len() == 1 => match outputs[0].get("content") {
                    Some(Value::String(text))
                        if outputs[0].get("role").and_then(Value::as_str) == Some("assistant") =>
                    {
                        record_text(format!("{side}[0].content"), text, inspection);
                    }
                    _ => inspection.problems.push(format!(
                        "`{side}[0]` must be an assistant message with string content"
                    )),
                },
                _ => inspection.problems.push(format!(
                    "`{side}` must be an array holding exactly one assistant message"
                )),
            }
        }
        if let (Some(preferred), Some(rejected)) = (
            object.get("preferred_output"),
            object.get("non_preferred_output"),
        ) && preferred == rejected
        {
            inspection
                .problems
                .push("`preferred_output` and `non_preferred_output` are identical".to_owned());
        }
    } else {
        // TRL style: prompt + chosen + rejected, as strings or message lists.
        for key in ["prompt", "chosen", "rejected"] {
            match object.get(key) {
                Some(Value::String(text)) => record_text(key.to_owned(), text, inspection),
                Some(Value::Array(_)) => {
                    let mut part = Inspection::default();
                    inspect_chat_prompt(object.get(key).unwrap_or(&Value::Null), &mut part);
                    merge(inspection, part);
                }
                Some(other) => inspection.problems.push(format!(
                    "`{key}` is {} but must be a string or a message list",
                    kind_of(other)
                )),
                None if key == "prompt" => {}
                None => inspection.problems.push(format!("`{key}` is missing")),
            }
        }
        if object.get("chosen").is_some() && object.get("chosen") == object.get("rejected") {
            inspection
                .problems
                .push("`chosen` and `rejected` are identical".to_owned());
        }
    }
}

/// Like [`inspect_chat`], for a prompt that need not contain an assistant turn.
fn inspect_chat_prompt<'a>(messages: &'a Value, inspection: &mut Inspection<'a>) {
    inspect_chat(messages, "input.messages", inspection);
    inspection
        .problems
        .retain(|problem| !problem.ends_with("has no assistant message to learn from"));
}

fn merge<'a>(into: &mut Inspection<'a>, part: Inspection<'a>) {
    into.problems.extend(part.problems);
    into.texts.extend(part.texts);
    into.empty_fields.extend(part.empty_fields);
    into.messages.extend(part.messages);
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        // A case costs microseconds; a message of each kind with each weight
        // is only likely in a few thousand.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(8192))]
        /// The borrowed path finds exactly what the general path finds.
        #[test]
        fn plain_chat_records_inspect_as_values_do(
            messages in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["system", "developer", "user", "assistant", "tool", "User"]),
                    proptest::sample::select(vec!["hi", "", "  ", "line\\nbreak", "\\\"quoted\\\"", "é \\u00e9"]),
                    proptest::sample::select(vec!["", ", \"weight\": 1", ", \"weight\": 0", ", \"weight\": 2", ", \"weight\": -0", ", \"weight\": 1.0", ", \"weight\": null", ", \"weight\": [1, {\"a\": 2}]", ", \"weight\": \"1\"", ", \"weight\": 1, \"weight\": 1", ", \"name\": \"x\"", ", \"role\": \"user\"", ", \"content\": \"again\"", ", \"tool_calls\": [{\"id\": \"c\"}]"]),
                ),
                0..6,
            ),
            extra in proptest::sample::select(vec!["", ", \"tools\": []"]),
        ) {
            let messages: Vec<String> = messages
                .iter()
                .map(|(role, content, more)| format!("{{\"role\": \"{role}\", \"content\": \"{content}\"{more}}}"))
                .collect();
            let line = format!("{{\"messages\": [{}]{extra}}}", messages.join(", "));
            let value: Value = serde_json::from_str(&line).expect("json");
            if let Some(chat) = PlainChat::parse(line.as_bytes()) {
                let (plain, general) = (chat.inspect(), inspect(RecordFormat::OpenaiChat, &value));
                proptest::prop_assert_eq!(&plain.problems, &general.problems);
                proptest::prop_assert_eq!(&plain.texts, &general.texts);
                proptest::prop_assert_eq!(&plain.empty_fields, &general.empty_fields);
                proptest::prop_assert_eq!(&plain.messages, &general.messages);
                let mut partial = crate::validate::record::Partial::default();
                crate::validate::record::collect_fields(&value, &mut partial);
                let fields: std::collections::BTreeSet<String> = chat.fields().map(str::to_owned).collect();
                proptest::prop_assert_eq!(fields, partial.fields);
            } else {
                // Only records outside the plain shape take the general path:
                // plain messages have one role and one content, and a weight
                // of 0 or 1 only on assistant messages.
                let plain_message = |message: &String| {
                    let weight = message.split_once(", \"weight\": ").map(|(_, weight)| weight);
                    message.matches("role").count() == 1
                        && message.matches("content").count() == 1
                        && !message.contains("name")
                        && !message.contains("tool_calls")
                        && match weight {
                            None => true,
                            Some(weight) => message.contains("\"assistant\"") && matches!(weight.trim_end_matches('}'), "0" | "1"),
                        }
                };
                let plain_shape = extra.is_empty()
                    && !messages.is_empty()
                    && messages.iter().all(plain_message)
                    && value["messages"].as_array().is_some_and(|all| all.iter().all(|message| {
                        matches!(message["role"].as_str(), Some("system" | "developer" | "user" | "assistant"))
                    }));
                proptest::prop_assert!(!plain_shape, "{line} should have been plain");
            }
        }
    }

    #[test]
    fn plain_weights_are_fields_where_the_general_path_looks() {
        // `collect_fields` reads the keys of the first four messages only.
        for (weighted_at, noted) in [(0, true), (3, true), (4, false)] {
            let messages: Vec<String> = (0..5)
                .map(|index| {
                    let weight = if index == weighted_at {
                        r#", "weight": 0"#
                    } else {
                        ""
                    };
                    format!(r#"{{"role": "assistant", "content": "a"{weight}}}"#)
                })
                .collect();
            let line = format!(r#"{{"messages": [{}]}}"#, messages.join(", "));
            let chat = PlainChat::parse(line.as_bytes()).expect("a plain record");
            let fields: Vec<&str> = chat.fields().collect();
            assert_eq!(fields.contains(&"messages[].weight"), noted, "{line}");
            let mut partial = crate::validate::record::Partial::default();
            crate::validate::record::collect_fields(
                &serde_json::from_str(&line).expect("json"),
                &mut partial,
            );
            assert_eq!(
                partial.fields.contains("messages[].weight"),
                noted,
                "{line}"
            );
        }
    }

    fn check(format: RecordFormat, record: &str, expected: &[&str]) {
        let value: Value = serde_json::from_str(record).expect("test record is JSON");
        let inspection = inspect(format, &value);
        assert_eq!(inspection.problems, expected, "{record}");
    }

    #[test]
    fn openai_chat_rules() {
        use RecordFormat::OpenaiChat as Chat;
        check(
            Chat,
            r#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"},{"role":"assistant","content":"a","weight":1}]}"#,
            &[],
        );
        check(Chat, r#"{"messages":[]}"#, &["`messages` is empty"]);
        check(
            Chat,
            r#"{"messages":[{"role":"user","content":"u"}]}"#,
            &["`messages` has no assistant message to learn from"],
        );
        check(
            Chat,
            r#"{"messages":[{"role":"user","content":"u"},{"role":"user","content":"v"},{"role":"assistant","content":"a"}]}"#,
            &[
                "`messages[1]` is a second user message in a row; user and assistant turns alternate",
            ],
        );
        check(
            Chat,
            r#"{"messages":[{"role":"user","content":"u","weight":1},{"role":"assistant","content":"a","weight":2}]}"#,
            &[
                "`messages[0].weight` is only allowed on assistant messages, not user",
                "`messages[1].weight` is 2 but must be 0 or 1",
            ],
        );
        check(
            Chat,
            r#"{"messages":[{"role":"human","content":"u"},{"role":"assistant","content":"a","extra":1}]}"#,
            &[
                "`messages[0].role` is `human`; expected system, developer, user, assistant, tool or function",
                "`messages[1].extra` is not an allowed key (allowed: role, content, name, function_call, tool_calls, tool_call_id, weight, refusal)",
            ],
        );
        check(
            Chat,
            r#"{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"},{"role":"assistant","content":"done"}]}"#,
            &[],
        );
        check(
            Chat,
            r#"{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c2","content":"42"}]}"#,
            &[
                "`messages[2].tool_call_id` `c2` answers no earlier assistant tool call",
                "`messages` leaves tool call(s) `c1` without a tool answer",
            ],
        );
        check(
            Chat,
            r#"{"messages":[{"role":"user"},{"role":"assistant","content":"a"},{"role":"system","content":"late"}]}"#,
            &[
                "`messages[0].content` is missing; user messages need content",
                "`messages[2]` is a system message after the conversation started; system messages come first",
            ],
        );
        check(
            Chat,
            r#"[1,2]"#,
            &["record is an array but openai-chat records are JSON objects"],
        );
    }

    #[test]
    fn other_formats() {
        check(
            RecordFormat::Sharegpt,
            r#"{"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}"#,
            &[],
        );
        check(
            RecordFormat::Sharegpt,
            r#"{"conversations":[{"from":"human","value":"q"},{"from":"bot","value":"a"}]}"#,
            &[
                "`conversations[1].from` is `bot`; expected human, gpt, system, function_call or observation",
                "`conversations` has no gpt turn to learn from",
            ],
        );
        check(
            RecordFormat::Alpaca,
            r#"{"instruction":"i","input":"","output":"o"}"#,
            &[],
        );
        check(
            RecordFormat::Alpaca,
            r#"{"instruction":"i","output":3}"#,
            &["`output` is a number but must be a string"],
        );
        check(
            RecordFormat::PromptCompletion,
            r#"{"prompt":"p"}"#,
            &["`completion` is missing"],
        );
        check(
            RecordFormat::Preference,
            r#"{"input":{"messages":[{"role":"user","content":"q"}]},"preferred_output":[{"role":"assistant","content":"good"}],"non_preferred_output":[{"role":"assistant","content":"bad"}]}"#,
            &[],
        );
        check(
            RecordFormat::Preference,
            r#"{"input":{"messages":[{"role":"user","content":"q"}]},"preferred_output":[{"role":"assistant","content":"same"}],"non_preferred_output":[{"role":"assistant","content":"same"}]}"#,
            &["`preferred_output` and `non_preferred_output` are identical"],
        );
        check(
            RecordFormat::Preference,
            r#"{"prompt":"q","chosen":"a","rejected":"b"}"#,
            &[],
        );
        check(
            RecordFormat::Text,
            r#"{"text":5}"#,
            &["`text` is a number but must be a string"],
        );
    }

    #[test]
    fn detection_by_keys() {
        let table = [
            (r#"{"messages":[]}"#, Some(RecordFormat::OpenaiChat)),
            (r#"{"conversations":[]}"#, Some(RecordFormat::Sharegpt)),
            (
                r#"{"prompt":"p","chosen":"c","rejected":"r"}"#,
                Some(RecordFormat::Preference),
            ),
            (
                r#"{"instruction":"i","output":"o"}"#,
                Some(RecordFormat::Alpaca),
            ),
            (
                r#"{"prompt":"p","completion":"c"}"#,
                Some(RecordFormat::PromptCompletion),
            ),
            (r#"{"text":"t"}"#, Some(RecordFormat::Text)),
            (r#"{"foo":1}"#, None),
            ("3", None),
        ];
        for (record, expected) in table {
            let value: Value = serde_json::from_str(record).expect("json");
            assert_eq!(RecordFormat::detect(&value), expected, "{record}");
        }
    }

    #[test]
    fn empty_fields_are_reported_by_path() {
        let value: Value = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"  "},{"role":"assistant","content":"a"}]}"#,
        )
        .expect("json");
        let inspection = inspect(RecordFormat::OpenaiChat, &value);
        assert_eq!(inspection.empty_fields, ["messages[0].content"]);
        assert_eq!(inspection.messages.len(), 2);
    }
}
