//! How conversations become bytes: one `Role: content` line per message, a
//! blank line between records. Generation stops at the end of a line.

use crate::data::Message;

fn role_label(role: &str) -> &'static str {
    match role {
        "system" => "System",
        "assistant" => "Assistant",
        _ => "User",
    }
}

fn push_line(out: &mut Vec<u8>, role: &str, content: &str) {
    out.extend_from_slice(role_label(role).as_bytes());
    out.extend_from_slice(b": ");
    // One line per message: the model ends an answer with a newline.
    out.extend(
        content
            .bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    out.push(b'\n');
}

/// A whole training record, ending with a blank line.
pub fn render_record(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        push_line(&mut out, &m.role, &m.content);
    }
    out.push(b'\n');
    out
}

/// The prompt for the assistant's next turn: the conversation so far, then `Assistant: `.
pub fn render_prompt(messages: &[Message]) -> Vec<u8> {
    let mut out = b"\n".to_vec();
    for m in messages {
        push_line(&mut out, &m.role, &m.content);
    }
    out.extend_from_slice(b"Assistant: ");
    out
}

/// The prompt for a plain completion: the text as it is.
pub fn render_completion_prompt(prompt: &str) -> Vec<u8> {
    prompt.as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lines() {
        let messages = vec![
            Message {
                role: "user".into(),
                content: "Hi\nthere".into(),
            },
            Message {
                role: "assistant".into(),
                content: "Yo".into(),
            },
        ];
        assert_eq!(
            render_record(&messages),
            b"User: Hi there\nAssistant: Yo\n\n"
        );
        assert_eq!(
            render_prompt(&messages[..1]),
            b"\nUser: Hi there\nAssistant: "
        );
    }
}
