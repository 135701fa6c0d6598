//! Token counting: real BPE counts with the tiktoken tables, or characters.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::formats::Message;

/// A tokenizer chosen with `--tokenizer`.
#[derive(Clone)]
pub enum Tokenizer {
    /// OpenAI's `o200k_base` (GPT-4o and later).
    O200kBase(Arc<tiktoken_rs::CoreBPE>),
    /// OpenAI's `cl100k_base` (GPT-4, GPT-3.5).
    Cl100kBase(Arc<tiktoken_rs::CoreBPE>),
    /// Unicode scalar values: fast, and honest about not being tokens.
    Chars,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Tokenizer {
    /// Loads the tokenizer `name` names. The BPE tables ship inside the binary.
    pub fn load(name: &str) -> Result<Tokenizer> {
        let error = |reason: String| Error::Tokenizer {
            name: name.to_owned(),
            reason,
        };
        match name {
            "o200k_base" => Ok(Tokenizer::O200kBase(Arc::new(tiktoken_rs::o200k_base().map_err(|source| error(source.to_string()))?))),
            "cl100k_base" => Ok(Tokenizer::Cl100kBase(Arc::new(tiktoken_rs::cl100k_base().map_err(|source| error(source.to_string()))?))),
            "chars" => Ok(Tokenizer::Chars),
            other if other.ends_with("tokenizer.json") => Err(error(
                "Hugging Face tokenizer.json files are not supported by this build yet; use o200k_base, cl100k_base or chars".to_owned(),
            )),
            _ => Err(error("expected o200k_base, cl100k_base or chars".to_owned())),
        }
    }

    /// The name, as `--tokenizer` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Tokenizer::O200kBase(_) => "o200k_base",
            Tokenizer::Cl100kBase(_) => "cl100k_base",
            Tokenizer::Chars => "chars",
        }
    }

    /// The number of tokens in `text`.
    pub fn count(&self, text: &str) -> u64 {
        match self {
            Tokenizer::O200kBase(bpe) | Tokenizer::Cl100kBase(bpe) => {
                bpe.encode_ordinary(text).len() as u64
            }
            Tokenizer::Chars => text.chars().count() as u64,
        }
    }

    /// Tokens a conversation costs, counted the way OpenAI's cookbook does:
    /// 3 per message, 1 more for a name, 3 to prime the reply.
    pub fn count_messages(&self, messages: &[Message<'_>]) -> u64 {
        let per_message: u64 = messages
            .iter()
            .map(|message| {
                3 + self.count(message.role)
                    + self.count(&message.text)
                    + u64::from(message.has_name)
            })
            .sum();
        per_message + 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpe_counts_are_real() {
        let cl100k = Tokenizer::load("cl100k_base").expect("cl100k");
        // Known counts from tiktoken.
        assert_eq!(cl100k.count("hello world"), 2);
        assert_eq!(cl100k.count("tiktoken is great!"), 6);
        let chars = Tokenizer::load("chars").expect("chars");
        assert_eq!(chars.count("héllo"), 5);
        let messages = [Message {
            role: "user",
            text: "hello world".into(),
            has_name: false,
        }];
        assert_eq!(cl100k.count_messages(&messages), 3 + 1 + 2 + 3);
        let error = Tokenizer::load("gpt2").expect_err("unknown");
        assert_eq!(
            error.to_string(),
            "--tokenizer gpt2: expected o200k_base, cl100k_base or chars"
        );
    }
}
