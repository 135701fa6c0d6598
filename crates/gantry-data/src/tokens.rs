//! Token counting: real BPE counts with the tiktoken tables, or characters.

use std::sync::Arc;

use crate::bpe::{Bpe, Encoding};
use crate::error::{Error, Result};
use crate::formats::Message;

/// A tokenizer chosen with `--tokenizer`.
#[derive(Clone)]
pub enum Tokenizer {
    /// OpenAI's `o200k_base` (GPT-4o and later).
    O200kBase(Arc<Bpe>),
    /// OpenAI's `cl100k_base` (GPT-4, GPT-3.5).
    Cl100kBase(Arc<Bpe>),
    /// Unicode scalar values: fast, and honest about not being tokens.
    Chars,
    /// A Hugging Face `tokenizer.json`, by path.
    HuggingFace(Arc<tokenizers::Tokenizer>, Arc<str>),
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
            "o200k_base" => Ok(Tokenizer::O200kBase(Arc::new(Bpe::load(Encoding::O200k).map_err(error)?))),
            "cl100k_base" => Ok(Tokenizer::Cl100kBase(Arc::new(Bpe::load(Encoding::Cl100k).map_err(error)?))),
            "chars" => Ok(Tokenizer::Chars),
            path if path.ends_with(".json") => {
                let tokenizer = tokenizers::Tokenizer::from_file(path)
                    .map_err(|source| error(format!("not a readable Hugging Face tokenizer.json: {source}")))?;
                Ok(Tokenizer::HuggingFace(Arc::new(tokenizer), Arc::from(path)))
            }
            _ => Err(error("expected o200k_base, cl100k_base, chars or the path of a Hugging Face tokenizer.json".to_owned())),
        }
    }

    /// The name, as `--tokenizer` spells it.
    pub fn name(&self) -> &str {
        match self {
            Tokenizer::O200kBase(_) => "o200k_base",
            Tokenizer::Cl100kBase(_) => "cl100k_base",
            Tokenizer::Chars => "chars",
            Tokenizer::HuggingFace(_, path) => path,
        }
    }

    /// The number of tokens in `text`.
    pub fn count(&self, text: &str) -> u64 {
        match self {
            Tokenizer::O200kBase(bpe) | Tokenizer::Cl100kBase(bpe) => bpe.count(text),
            Tokenizer::Chars => count_chars(text),
            // Special tokens are not added: the count is the text's own tokens.
            Tokenizer::HuggingFace(tokenizer, _) => tokenizer.encode(text, false).map_or_else(
                |_| text.chars().count() as u64,
                |encoding| encoding.len() as u64,
            ),
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

/// The number of characters (Unicode scalar values) in `text`, counted with
/// SIMD where the CPU has it (bytecount picks AVX2 or SSE2 at run time).
pub(crate) fn count_chars(text: &str) -> u64 {
    bytecount::num_chars(text.as_bytes()) as u64
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
        for text in ["", "a", "héllo wörld ſ 𝄞 日本語", &"é€𝄞x".repeat(3000)] {
            assert_eq!(count_chars(text), text.chars().count() as u64, "{text}");
        }
        let messages = [Message {
            role: "user",
            text: "hello world".into(),
            has_name: false,
        }];
        assert_eq!(cl100k.count_messages(&messages), 3 + 1 + 2 + 3);
        let error = Tokenizer::load("gpt2").expect_err("unknown");
        assert_eq!(
            error.to_string(),
            "gpt2: expected o200k_base, cl100k_base, chars or the path of a Hugging Face tokenizer.json"
        );
    }

    #[test]
    fn hugging_face_tokenizer_files_count_their_own_tokens() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("tokenizer.json");
        std::fs::write(
            &path,
            r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
                "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
                "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "world": 2}, "unk_token": "[UNK]"}}"#,
        )
        .expect("write");
        let tokenizer = Tokenizer::load(path.to_str().expect("utf8")).expect("load");
        assert_eq!(tokenizer.count("hello world"), 2);
        assert_eq!(
            tokenizer.count("hello brave new world!"),
            5,
            "unknown words and punctuation are tokens too"
        );
        assert_eq!(tokenizer.name(), path.to_str().expect("utf8"));
        std::fs::write(&path, "{}").expect("write");
        let error = Tokenizer::load(path.to_str().expect("utf8")).expect_err("broken");
        assert!(
            error
                .to_string()
                .contains("not a readable Hugging Face tokenizer.json"),
            "{error}"
        );
    }
}
