//! Chat templates: the Jinja programs Hugging Face tokenizers (`tokenizer_config.json`'s
//! `chat_template`) and GGUF files (`tokenizer.chat_template`) carry to turn a conversation into
//! the exact prompt text the model was trained on (e.g. ChatML's
//! `<|im_start|>role\ncontent<|im_end|>\n`). Rendered with `minijinja` under transformers'
//! settings: `trim_blocks`, `lstrip_blocks`, Python string methods (`pycompat`), and the
//! `raise_exception` function templates use to reject bad conversations.

use crate::{DataError, Result};
use minijinja::{Environment, Error as JinjaError, ErrorKind};
use serde::{Deserialize, Serialize};

/// One turn of a conversation: `role` (`system`, `user`, `assistant`, …) and its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: String,
    /// What is said.
    pub content: String,
}

/// A compiled chat template with the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("bos_token", &self.bos_token).field("eos_token", &self.eos_token).finish()
    }
}

fn raise_exception(msg: String) -> std::result::Result<String, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token`/`eos_token` are visible to it under those names. A
    /// template that does not parse is an error with minijinja's line-level message.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| DataError::Tokenizers(format!("chat template does not compile: {e:#}")))?;
        Ok(ChatTemplate { env, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// The prompt text of `messages`; with `add_generation_prompt` it ends with the header of
    /// the assistant's next turn, so generation continues as the assistant.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template("chat").map_err(|e| DataError::Tokenizers(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| DataError::Tokenizers(format!("chat template: {e:#}")))
    }
}
