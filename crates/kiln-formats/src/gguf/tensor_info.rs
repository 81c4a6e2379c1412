//! GGUF tensor infos: where each tensor's blocks are and what they are.
//!
//! On disk, after the metadata, one record per tensor:
//! ```text
//!   name     u64 length + UTF-8 bytes
//!   n_dims   u32 (≤ 4, ggml's GGML_MAX_DIMS)
//!   ne       n_dims × u64, fastest-varying first: ne[0] is the row length
//!   type     u32 ggml type id (GgmlType)
//!   offset   u64 byte offset of the first block, from the start of the data section;
//!            a multiple of the file's alignment
//! ```
//! A tensor of shape `[out, in]` in PyTorch is stored with `ne = [in, out]`; [`TensorInfo::shape`]
//! gives the row-major (PyTorch) order.

use super::cursor::Cursor;
use crate::error::{FormatError, Result};
use crate::quant::GgmlType;

/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;

/// Where one tensor is and what it holds. Built (and validated) by [`super::GgufFile`]'s parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`, …).
    pub name: String,
    /// GGUF dims, fastest-varying first (`dims[0]` = ggml's `ne[0]`, the row length).
    pub dims: Vec<u64>,
    /// Element / block type.
    pub ggml_type: GgmlType,
    /// Byte offset of the first block from the start of the data section.
    pub offset: u64,
    /// Product of `dims` (1 for zero dims).
    pub n_elements: u64,
    /// Bytes of the tensor's blocks: `n_elements / block_size * type_size`.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The shape in row-major (PyTorch) order: `dims` reversed, so the last entry is the row length.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect()
    }

    /// Elements per row (`ne[0]`; 1 for a tensor with no dims).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (`n_elements / ne[0]`; 0 for an empty tensor).
    pub fn n_rows(&self) -> u64 {
        self.n_elements.checked_div(self.row_len()).unwrap_or(0)
    }

    /// Bytes per row (`ne[0] / block_size * type_size`).
    pub fn row_bytes(&self) -> u64 {
        self.ggml_type.bytes_for(self.row_len()).unwrap_or(0)
    }
}

/// Reads tensor info number `index` and checks what can be checked without the rest of the file:
/// n_dims ≤ 4, a known type id, dims that fit ggml's int64 with a product that does not overflow,
/// a row length that is a whole number of blocks.
pub(crate) fn read_tensor_info(c: &mut Cursor, index: u64) -> Result<TensorInfo> {
    let name = c.string(|| format!("tensor info {index}: name"))?;
    let field = |what: &str| format!("tensor `{name}`: {what}");
    let n_dims = c.u32(|| field("n_dims"))?;
    if n_dims > MAX_DIMS {
        return Err(FormatError::TooManyDims { tensor: name.clone(), n_dims });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        dims.push(c.u64(|| field(&format!("ne[{d}]")))?);
    }
    let id = c.u32(|| field("ggml type"))?;
    let offset = c.u64(|| field("offset"))?;
    let ggml_type = GgmlType::from_id(id).ok_or_else(|| FormatError::UnknownGgmlType { tensor: name.clone(), id })?;

    let bad = |msg: &str| FormatError::BadDims { tensor: name.clone(), dims: dims.clone(), msg: msg.to_owned() };
    // ggml stores ne as int64: every dim and the element count must fit.
    if dims.iter().any(|&d| d > i64::MAX as u64) {
        return Err(bad("has a dim larger than i64::MAX"));
    }
    // The product of the non-zero dims must fit too (an empty tensor with huge other dims would
    // overflow the strides of its row-major layout).
    let nonzero_product = dims
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| bad("have a product that overflows i64"))?;
    let n_elements = if dims.contains(&0) { 0 } else { nonzero_product };
    let ne0 = dims.first().copied().unwrap_or(1);
    let block = ggml_type.block_size();
    if !ne0.is_multiple_of(block as u64) {
        return Err(FormatError::RowNotBlockMultiple { tensor: name.clone(), ty: ggml_type, ne0, block });
    }
    let n_bytes = ggml_type.bytes_for(n_elements).ok_or_else(|| bad("need a byte count that overflows u64"))?;
    Ok(TensorInfo { name, dims, ggml_type, offset, n_elements, n_bytes })
}

/// Checks every tensor against the data section (`data_len` bytes after the header, offsets
/// relative to its start): offsets aligned, bytes inside the section, no two tensors overlapping.
pub(crate) fn check_layout(tensors: &[TensorInfo], alignment: u64, data_len: u64) -> Result<()> {
    for t in tensors {
        if !t.offset.is_multiple_of(alignment) {
            return Err(FormatError::MisalignedOffset { tensor: t.name.clone(), offset: t.offset, alignment });
        }
        match t.offset.checked_add(t.n_bytes) {
            Some(end) if end <= data_len => {}
            end => {
                return Err(FormatError::DataOutOfBounds {
                    tensor: t.name.clone(),
                    start: t.offset,
                    end: end.unwrap_or(u64::MAX),
                    data_len,
                })
            }
        }
    }
    // Sorted by start, each tensor must end before the next one starts (empty tensors overlap
    // nothing).
    let mut by_start: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    by_start.sort_by_key(|t| t.offset);
    for pair in by_start.windows(2) {
        if let [a, b] = pair {
            let a_end = a.offset + a.n_bytes; // cannot overflow: checked above
            if a_end > b.offset {
                return Err(FormatError::Overlap {
                    first: a.name.clone(),
                    first_start: a.offset,
                    first_end: a_end,
                    second: b.name.clone(),
                    second_start: b.offset,
                });
            }
        }
    }
    Ok(())
}
