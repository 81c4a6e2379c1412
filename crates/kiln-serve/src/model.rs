//! [`ServedModel`]: what the server serves, and how requests become prompt tokens.

use crate::error::ApiError;
use kiln_data::{ChatMessage, ChatTemplate, Tokenizer};
use kiln_models::gpt::Gpt;

/// A model ready to serve: the network, its tokenizer, its chat template (if it has one) and
/// its special tokens.
#[derive(Debug)]
pub struct ServedModel {
    /// The name clients put in `"model"` (and `/v1/models` lists).
    pub name: String,
    /// The network; its context length `cfg.n_positions` bounds prompt + completion.
    pub model: Gpt,
    /// Its tokenizer.
    pub tok: Tokenizer,
    /// Its chat template; `None` uses [`default_chat_prompt`].
    pub chat: Option<ChatTemplate>,
    /// Tokens that end a reply (end-of-sequence / end-of-turn): generation stops after one,
    /// with `finish_reason: "stop"`; their text is not returned.
    pub stop: Vec<u32>,
    /// The token put before every prompt that does not already start with it, if the model
    /// expects one.
    pub bos: Option<u32>,
}

/// The prompt of a conversation for models without a chat template: each message as
/// `<|role|>\ncontent\n`, then `<|assistant|>\n` so the model continues as the assistant.
pub fn default_chat_prompt(messages: &[ChatMessage]) -> String {
    let mut s: String = messages.iter().map(|m| format!("<|{}|>\n{}\n", m.role, m.content)).collect();
    s.push_str("<|assistant|>\n");
    s
}

/// The prompt text of a conversation: the model's template, or [`default_chat_prompt`].
pub(crate) fn chat_prompt(chat: Option<&ChatTemplate>, messages: &[ChatMessage]) -> Result<String, ApiError> {
    match chat {
        Some(t) => t.render(messages, true).map_err(|e| ApiError::invalid(e.to_string(), Some("messages"))),
        None => Ok(default_chat_prompt(messages)),
    }
}

/// Token ids of `text` with `bos` in front (unless it is already there); errors name `param`.
pub(crate) fn encode_prompt(tok: &Tokenizer, bos: Option<u32>, text: &str, param: &str) -> Result<Vec<u32>, ApiError> {
    let mut ids =
        tok.encode(text).map_err(|e| ApiError::invalid(format!("cannot tokenize the prompt: {e}"), Some(param)))?;
    if let Some(b) = bos {
        if ids.first() != Some(&b) {
            ids.insert(0, b);
        }
    }
    Ok(ids)
}
