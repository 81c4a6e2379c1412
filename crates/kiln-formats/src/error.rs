//! The error type of kiln-formats: every variant names what was wrong and where (file, metadata
//! key, tensor name, byte offset), so a hostile or damaged file gives a message a person can act on.

use crate::quant::GgmlType;
use std::path::PathBuf;

/// Errors from reading GGUF files and dequantizing ggml blocks.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be opened or mapped.
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// An error inside a named file (wraps any other variant).
    #[error("{}: {source}", .path.display())]
    InFile { path: PathBuf, source: Box<FormatError> },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic bytes {found:02x?}, expected \"GGUF\" (47 47 55 46)")]
    BadMagic { found: Vec<u8> },
    /// A GGUF version other than 2 or 3.
    #[error("unsupported GGUF version {0} (supported: 2 and 3)")]
    UnsupportedVersion(u32),
    /// A field (or a length / count read from the file) needs more bytes than the file has left.
    #[error("{field}: needs {needed} bytes at offset {offset}, but only {available} remain in the file")]
    Truncated { field: String, offset: u64, needed: u64, available: u64 },
    /// A metadata value type id outside 0..=12.
    #[error("{field}: unknown GGUF value type id {id}")]
    BadValueType { field: String, id: u32 },
    /// Arrays nested deeper than [`crate::gguf::MAX_ARRAY_DEPTH`].
    #[error("{field}: arrays nested deeper than {max} levels")]
    ArrayTooDeep { field: String, max: usize },
    /// A string that is not valid UTF-8.
    #[error("{field}: string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { field: String, offset: u64 },
    /// A bool stored as a byte other than 0 or 1.
    #[error("{field}: bool byte at offset {offset} is {byte}, expected 0 or 1")]
    BadBool { field: String, offset: u64, byte: u8 },
    /// The same metadata key twice.
    #[error("metadata key `{0}` appears more than once")]
    DuplicateKey(String),
    /// `general.alignment` is not a power of two that fits a u32.
    #[error("metadata key `general.alignment`: {msg}")]
    BadAlignment { msg: String },
    /// A tensor with more than 4 dims (ggml's `GGML_MAX_DIMS`).
    #[error("tensor `{tensor}`: n_dims is {n_dims}, at most 4 are allowed")]
    TooManyDims { tensor: String, n_dims: u32 },
    /// A ggml type id this crate does not know.
    #[error("tensor `{tensor}`: unknown ggml type id {id}")]
    UnknownGgmlType { tensor: String, id: u32 },
    /// A dim too large for ggml (`ne` is an int64) or a dims product that overflows.
    #[error("tensor `{tensor}`: dims {dims:?} {msg}")]
    BadDims { tensor: String, dims: Vec<u64>, msg: String },
    /// A row length (`ne[0]`) that is not a whole number of blocks of the tensor's type.
    #[error("tensor `{tensor}`: row length ne[0] = {ne0} is not a multiple of the {ty} block size {block}")]
    RowNotBlockMultiple { tensor: String, ty: GgmlType, ne0: u64, block: usize },
    /// A tensor offset that is not a multiple of the file's alignment.
    #[error("tensor `{tensor}`: offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedOffset { tensor: String, offset: u64, alignment: u64 },
    /// Tensor bytes that do not lie inside the file's data section.
    #[error(
        "tensor `{tensor}`: data bytes {start}..{end} (relative to the data section) lie outside the {data_len} \
         bytes the file holds after its header"
    )]
    DataOutOfBounds { tensor: String, start: u64, end: u64, data_len: u64 },
    /// Two tensors whose byte ranges overlap.
    #[error("tensors `{first}` (bytes {first_start}..{first_end}) and `{second}` (bytes {second_start}..) overlap")]
    Overlap { first: String, first_start: u64, first_end: u64, second: String, second_start: u64 },
    /// The same tensor name twice.
    #[error("tensor `{0}` appears more than once")]
    DuplicateTensor(String),
    /// A tensor name not in the file.
    #[error("no tensor named `{0}`")]
    TensorNotFound(String),
    /// A metadata key not in the file.
    #[error("no metadata key `{0}`")]
    MissingKey(String),
    /// A metadata value of a type the getter cannot convert (or a value out of the target range).
    #[error("metadata key `{key}`: expected {expected}, found {found}")]
    WrongType { key: String, expected: &'static str, found: String },
    /// A ggml type this crate knows the layout of but cannot dequantize.
    #[error("unsupported ggml type {0} (dequantization is implemented for {supported})", supported = GgmlType::SUPPORTED_NAMES)]
    UnsupportedType(GgmlType),
    /// Block bytes or an output buffer whose length does not match the element count.
    #[error("dequantize {ty}: {msg}")]
    BadLength { ty: GgmlType, msg: String },
    /// GPTQ inputs that cannot be solved (shapes, a non-finite or singular Hessian, a type
    /// without a GPTQ grid).
    #[error("GPTQ: {0}")]
    Gptq(String),
    /// Bad input to a per-channel / group-wise integer format (shapes, non-finite weights,
    /// parts of the wrong size, negative or non-finite scales).
    #[error("{format}: {msg}")]
    IntQuant { format: &'static str, msg: String },
}

impl FormatError {
    /// This error, located in the file at `path`.
    pub fn in_file(self, path: impl Into<PathBuf>) -> FormatError {
        FormatError::InFile { path: path.into(), source: Box::new(self) }
    }
}

/// Result with [`FormatError`].
pub type Result<T> = std::result::Result<T, FormatError>;

impl From<FormatError> for kiln_core::Error {
    /// kiln-core's errors are `Clone + PartialEq`; a format error becomes an `Invalid` with its message.
    fn from(e: FormatError) -> Self {
        kiln_core::Error::Invalid { op: "gguf", msg: e.to_string() }
    }
}
