//! Errors of the data pipeline: each names the file or input at fault.

use std::path::PathBuf;

/// Data-pipeline errors.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The corpus is empty (or only whitespace).
    #[error("corpus {0} is empty")]
    EmptyCorpus(String),
    /// The corpus is not valid UTF-8 text.
    #[error("corpus {0} is not UTF-8 text")]
    NotText(String),
    /// A character the character-level tokenizer has never seen.
    #[error("character {0:?} is not in the tokenizer's vocabulary")]
    UnknownChar(char),
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    BadToken { id: u32, vocab: usize },
    /// A malformed tokenizer or token file.
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// Errors from the `tokenizers` crate.
    #[error("tokenizer: {0}")]
    Tokenizers(String),
    /// Too little data for the requested context or split.
    #[error("{0}")]
    TooShort(String),
    /// Tensor errors while building batches.
    #[error(transparent)]
    Core(#[from] kiln_core::Error),
}

/// Result with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

/// Wraps an I/O error with the path it concerns.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| DataError::Io { path, source }
}
