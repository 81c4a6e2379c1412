//! [`ServeOptions`]: the server's limits.

use crate::ServeError;
use std::time::Duration;

/// Limits of the server. The defaults suit one person's local use.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeOptions {
    /// Requests that may wait for the generation worker (besides the one it runs); one more
    /// is answered 429. 0 accepts a request only while no other is being served.
    pub queue_len: usize,
    /// Bound on queue wait plus generation: past it a request gets 408 (or, once streaming,
    /// an error event) and its generation stops. `Duration::MAX` means no practical limit.
    pub request_timeout: Duration,
    /// Largest `max_tokens` a request may ask for (more is a 400).
    pub max_tokens_limit: usize,
    /// `max_tokens` of a completions request that names none (OpenAI's default is 16); chat
    /// requests without one may fill the context up to `max_tokens_limit`.
    pub default_max_tokens: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            queue_len: 64,
            request_timeout: Duration::from_secs(600),
            max_tokens_limit: 4096,
            default_max_tokens: 16,
        }
    }
}

impl ServeOptions {
    /// Checks that every limit is usable.
    pub fn validate(&self) -> Result<(), ServeError> {
        if self.request_timeout.is_zero() {
            return Err(ServeError::Options("request_timeout must be positive".into()));
        }
        if self.max_tokens_limit == 0 {
            return Err(ServeError::Options("max_tokens_limit must be at least 1".into()));
        }
        if self.default_max_tokens == 0 {
            return Err(ServeError::Options("default_max_tokens must be at least 1".into()));
        }
        Ok(())
    }
}
