//! GGUF (versions 2 and 3): llama.cpp's single-file model format.
//!
//! File layout (all integers little-endian):
//! ```text
//!   magic            4 bytes  "GGUF"
//!   version          u32      2 or 3 (v1 used u32 counts and is not supported)
//!   tensor_count     u64
//!   metadata_count   u64
//!   metadata         metadata_count key/value pairs          (see `metadata.rs`)
//!   tensor infos     tensor_count records                    (see `tensor_info.rs`)
//!   padding          to a multiple of `general.alignment` (default 32)
//!   data section     tensor blocks, each at its info's offset (a multiple of the alignment)
//! ```
//!
//! [`GgufFile::open`] memory-maps a file; [`GgufFile::parse`] reads from bytes. Both validate the
//! whole header up front — every length, count and offset is checked against the bytes actually
//! there before it is used, tensor byte ranges must be aligned, in bounds and disjoint — so later
//! accessors cannot fail on a parsed file and no hostile input can make the parser panic, index out
//! of bounds or allocate more than a small multiple of the file's size.

mod convert;
mod cursor;
mod metadata;
mod tensor_info;

pub use convert::{convert_to_safetensors, safetensors_metadata};
pub use metadata::{Array, Value, ValueType, MAX_ARRAY_DEPTH};
pub use tensor_info::{TensorInfo, MAX_DIMS};

use crate::error::{FormatError, Result};
use crate::quant;
use cursor::Cursor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The 4 magic bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data alignment when `general.alignment` is absent (ggml's `GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that overrides [`DEFAULT_ALIGNMENT`].
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// The bytes behind a [`GgufFile`].
enum Bytes {
    /// A read-only memory map of the file.
    Mapped(memmap2::Mmap),
    /// Bytes owned in memory.
    Owned(Vec<u8>),
}

/// A parsed, validated GGUF file: header, metadata, tensor infos, and the raw tensor bytes.
pub struct GgufFile {
    path: Option<PathBuf>,
    bytes: Bytes,
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    alignment: u64,
    /// Absolute file offset of the data section.
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .finish()
    }
}

/// What the header parser produces.
struct Header {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    alignment: u64,
    data_start: usize,
}

impl GgufFile {
    /// Memory-maps and parses the GGUF file at `path`. Errors name the file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let io = |source| FormatError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: a read-only mapping. Like llama.cpp, we assume nobody truncates or rewrites the file
        // while it is mapped (kiln replaces files by rename, never in place).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        GgufFile::from_bytes(Bytes::Mapped(map), Some(path.to_path_buf())).map_err(|e| e.in_file(path))
    }

    /// Parses a GGUF file held in memory (the bytes are copied once the header has validated).
    pub fn parse(bytes: &[u8]) -> Result<GgufFile> {
        let header = parse_header(bytes)?;
        Ok(GgufFile::assemble(Bytes::Owned(bytes.to_vec()), None, header))
    }

    /// Parses a GGUF file held in memory, taking ownership of the bytes (no copy).
    pub fn from_vec(bytes: Vec<u8>) -> Result<GgufFile> {
        GgufFile::from_bytes(Bytes::Owned(bytes), None)
    }

    fn from_bytes(bytes: Bytes, path: Option<PathBuf>) -> Result<GgufFile> {
        let header = parse_header(bytes.as_slice())?;
        Ok(GgufFile::assemble(bytes, path, header))
    }

    fn assemble(bytes: Bytes, path: Option<PathBuf>, h: Header) -> GgufFile {
        GgufFile {
            path,
            bytes,
            version: h.version,
            metadata: h.metadata,
            tensors: h.tensors,
            by_name: h.by_name,
            alignment: h.alignment,
            data_start: h.data_start,
        }
    }

    /// The file this was opened from (`None` when parsed from bytes).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every metadata key/value pair, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// Every tensor info, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// The data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the data section (tensor offsets are relative to it).
    pub fn data_offset(&self) -> u64 {
        self.data_start as u64
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// The raw blocks of a tensor (`info.n_bytes` bytes). An info that does not belong to this file
    /// and points outside it yields an empty slice.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let range = usize::try_from(info.offset)
            .ok()
            .and_then(|o| self.data_start.checked_add(o))
            .and_then(|start| Some(start..start.checked_add(usize::try_from(info.n_bytes).ok()?)?));
        range.and_then(|r| self.as_bytes().get(r)).unwrap_or(&[])
    }

    /// The tensor's elements dequantized to f32 in storage order (row-major, rows of `ne[0]`),
    /// using rayon for large tensors. Errors for types [`quant::dequantize`] does not support.
    pub fn dequantize(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        let n = usize::try_from(info.n_elements).map_err(|_| FormatError::BadDims {
            tensor: info.name.clone(),
            dims: info.dims.clone(),
            msg: "have more elements than this machine can address".into(),
        })?;
        quant::dequantize(info.ggml_type, self.tensor_data(info), n)
    }
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => &m[..],
            Bytes::Owned(v) => &v[..],
        }
    }
}

/// Parses and validates everything before the data section; see the module docs.
fn parse_header(bytes: &[u8]) -> Result<Header> {
    let mut c = Cursor::new(bytes);
    let magic: [u8; 4] = c.array(|| "magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(FormatError::BadMagic { found: magic.to_vec() });
    }
    let version = c.u32(|| "version".into())?;
    if !(2..=3).contains(&version) {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let n_tensors = c.u64(|| "tensor count".into())?;
    let n_kv = c.u64(|| "metadata count".into())?;
    let metadata = metadata::read_metadata(&mut c, n_kv)?;
    let alignment = alignment_of(&metadata)?;

    // Each tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
    const MIN_TENSOR_INFO: u64 = 8 + 4 + 4 + 8;
    c.ensure(n_tensors.checked_mul(MIN_TENSOR_INFO), || format!("tensor infos ({n_tensors} tensors)"))?;
    let mut tensors = Vec::with_capacity(usize::try_from(n_tensors).unwrap_or(0));
    let mut by_name = HashMap::with_capacity(tensors.capacity());
    for i in 0..n_tensors {
        let info = tensor_info::read_tensor_info(&mut c, i)?;
        if by_name.insert(info.name.clone(), tensors.len()).is_some() {
            return Err(FormatError::DuplicateTensor(info.name));
        }
        tensors.push(info);
    }

    // The data section starts at the next multiple of the alignment; tensors must lie inside what
    // the file holds after it.
    let data_start = (c.pos() as u64).checked_next_multiple_of(alignment).unwrap_or(u64::MAX);
    let data_len = (bytes.len() as u64).saturating_sub(data_start);
    tensor_info::check_layout(&tensors, alignment, data_len)?;
    Ok(Header {
        version,
        metadata,
        tensors,
        by_name,
        alignment,
        data_start: usize::try_from(data_start).unwrap_or(usize::MAX),
    })
}

/// `general.alignment` (any integer type), which must be a non-zero power of two that fits a u32.
fn alignment_of(metadata: &[(String, Value)]) -> Result<u64> {
    let Some((_, v)) = metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match v.as_integer().and_then(|i| u32::try_from(i).ok()) {
        Some(a) if a.is_power_of_two() => Ok(u64::from(a)),
        Some(a) => Err(FormatError::BadAlignment { msg: format!("{a} is not a power of two") }),
        None => Err(FormatError::BadAlignment { msg: format!("expected an integer in u32 range, found {v:?}") }),
    }
}
