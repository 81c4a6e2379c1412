//! [`AnalysisError`]: everything that can go wrong in an analysis — an unknown preset, an
//! inconsistent architecture, a bad argument, a config file that cannot be read, or a count that
//! would overflow its integer type.

use thiserror::Error;

/// The error of every fallible function in this crate.
#[derive(Debug, Error)]
pub enum AnalysisError {
    /// A preset name that [`crate::Arch::preset`] does not know.
    #[error("unknown preset {name:?} (known presets: {known})")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// An architecture whose sizes are zero, too large, or inconsistent with each other.
    #[error("invalid architecture {arch:?}: {field}: {msg}")]
    InvalidArch {
        /// The architecture's name.
        arch: String,
        /// The offending field (or pair of fields).
        field: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A bad argument to an analysis (a zero batch, an MFU outside (0, 1], …).
    #[error("invalid {what}: {msg}")]
    InvalidInput {
        /// The argument.
        what: &'static str,
        /// What is wrong with it.
        msg: String,
    },
    /// A config file or directory that cannot be read or understood.
    #[error("{source_name}: {msg}")]
    Config {
        /// The file, directory or preset the config came from.
        source_name: String,
        /// What went wrong.
        msg: String,
    },
    /// A count that does not fit its integer type (absurd batch or sequence sizes).
    #[error("{what} overflows")]
    Overflow {
        /// The quantity being computed.
        what: &'static str,
    },
    /// Serialising a report to JSON failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result with [`AnalysisError`].
pub type Result<T> = std::result::Result<T, AnalysisError>;
