//! The two error kinds of the server: [`ServeError`] stops it from starting or running;
//! [`ApiError`] answers one request, in OpenAI's shape
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A [`crate::ServeOptions`] value is out of range.
    #[error("invalid serve options: {0}")]
    Options(String),
    /// Binding, accepting, or building the runtime failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// One request's failure as the OpenAI API reports it: an HTTP status and a JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status (4xx for the client's mistakes, 5xx only for the server's own).
    pub status: StatusCode,
    /// Human-readable explanation.
    pub message: String,
    /// OpenAI's `type` (`invalid_request_error`, `rate_limit_error`, …).
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `context_length_exceeded`, …).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 `invalid_request_error` about field `param` (if any).
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    /// The same error with `code` set.
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    /// The same error with another status.
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    /// 404 `model_not_found`, worded as OpenAI words it.
    pub fn model_not_found(name: &str) -> ApiError {
        ApiError::invalid(format!("The model `{name}` does not exist or you do not have access to it."), Some("model"))
            .with_status(StatusCode::NOT_FOUND)
            .with_code("model_not_found")
    }

    /// 429: the request queue is full.
    pub fn queue_full(queue_len: usize) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("The server is busy: {queue_len} requests are already waiting. Retry later."),
            kind: "rate_limit_error",
            param: None,
            code: Some("rate_limit_exceeded"),
        }
    }

    /// 408: queue wait plus generation took longer than the server's request timeout.
    pub fn timeout(limit: std::time::Duration) -> ApiError {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!("The request timed out after {:.1} s (queue wait + generation).", limit.as_secs_f64()),
            kind: "timeout_error",
            param: None,
            code: Some("timeout"),
        }
    }

    /// 500: the server failed on a valid request (a model or worker error).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// 503: the generation worker is gone.
    pub fn unavailable() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "The generation worker is not running.".into(),
            kind: "server_error",
            param: None,
            code: Some("worker_unavailable"),
        }
    }

    /// The JSON body `{"error": {...}}`.
    pub fn body(&self) -> Value {
        json!({ "error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
