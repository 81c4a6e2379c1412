//! [`QuantWeight`]: a quantized weight matrix in any format kiln writes — ggml's 32-weight blocks
//! ([`QMatrix`]: Q8_0, Q4_0, Q4_1) or the per-channel / group-wise integer formats
//! ([`IntMatrix`]: W8A16, W8A8, INT4-G32/64/128) — and its storage as named tensors, which is
//! what a kiln `quantized.safetensors` holds under the weight's parameter name:
//!
//! | format | tensors (suffix: dtype shape) |
//! |---|---|
//! | Q8_0 / Q4_0 / Q4_1 | `""`: U8 (bytes) — ggml's blocks, as a GGUF file stores them |
//! | W8A16 / W8A8 | `""`: I8 (rows, cols); `.scales`: F32 (rows) |
//! | INT4-G*g* | `""`: U8 (rows, cols/2) nibbles; `.scales`, `.mins`: F16 (rows, cols/g) |
//!
//! plus a description `"<FORMAT> <rows> <cols>"` (the file's `kiln.quant.<name>` metadata).

use super::int_matrix::{IntFormat, IntMatrix};
use super::{GgmlType, QMatrix};
use crate::{FormatError, Result};
use kiln_core::quant::QuantMatrix;
use safetensors::Dtype;

/// A weight format `kiln quantize` can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// ggml's 32-weight blocks (Q8_0, Q4_0 or Q4_1).
    Blocks(GgmlType),
    /// A per-channel or group-wise integer format.
    Int(IntFormat),
}

impl WeightFormat {
    /// The names [`WeightFormat::from_name`] accepts.
    pub const NAMES: &'static str = "q8_0, q4_1, q4_0, w8a16, w8a8, int4-g32, int4-g64, int4-g128";

    /// Parses a name of [`WeightFormat::NAMES`] (any case).
    pub fn from_name(s: &str) -> Option<WeightFormat> {
        GgmlType::from_name(s)
            .filter(|t| matches!(t, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1))
            .map(WeightFormat::Blocks)
            .or_else(|| IntFormat::from_name(s).map(WeightFormat::Int))
    }

    /// The canonical name (`Q4_1`, `W8A8`, `INT4-G128`, …).
    pub fn name(&self) -> &'static str {
        match self {
            WeightFormat::Blocks(t) => t.name(),
            WeightFormat::Int(f) => f.name(),
        }
    }

    /// What a row length must be a multiple of for a matrix to take this format.
    pub fn row_multiple(&self) -> usize {
        match self {
            WeightFormat::Blocks(t) => t.block_size(),
            WeightFormat::Int(f) => f.row_multiple(),
        }
    }

    /// The tensors a (rows, cols) matrix of this format is stored as: (suffix, dtype, shape).
    fn layout(&self, rows: usize, cols: usize) -> Result<Vec<(&'static str, Dtype, Vec<usize>)>> {
        Ok(match self {
            WeightFormat::Blocks(t) => vec![("", Dtype::U8, vec![super::byte_len(*t, rows.saturating_mul(cols))?])],
            WeightFormat::Int(IntFormat::Int4 { group }) => vec![
                ("", Dtype::U8, vec![rows, cols / 2]),
                (".scales", Dtype::F16, vec![rows, cols / group]),
                (".mins", Dtype::F16, vec![rows, cols / group]),
            ],
            WeightFormat::Int(_) => vec![("", Dtype::I8, vec![rows, cols]), (".scales", Dtype::F32, vec![rows])],
        })
    }
}

/// One stored tensor of a [`QuantWeight`]: saved as `<parameter name><suffix>`.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPart {
    /// Appended to the parameter name (`""` for the codes, `.scales`, `.mins`).
    pub suffix: &'static str,
    /// Its safetensors dtype.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its little-endian bytes.
    pub bytes: Vec<u8>,
}

/// A quantized weight matrix in one of the [`WeightFormat`]s.
#[derive(Clone, Debug)]
pub enum QuantWeight {
    /// ggml blocks.
    Blocks(QMatrix),
    /// A per-channel or group-wise integer matrix.
    Int(IntMatrix),
}

fn bad(msg: String) -> FormatError {
    FormatError::IntQuant { format: "quantized weight", msg }
}

impl QuantWeight {
    /// Rounds a row-major (rows, cols) f32 matrix to nearest in `fmt`.
    pub fn quantize(fmt: WeightFormat, rows: usize, cols: usize, w: &[f32]) -> Result<QuantWeight> {
        Ok(match fmt {
            WeightFormat::Blocks(t) => QuantWeight::Blocks(QMatrix::quantize(t, rows, cols, w)?),
            WeightFormat::Int(f) => QuantWeight::Int(IntMatrix::quantize(f, rows, cols, w)?),
        })
    }

    /// The format.
    pub fn weight_format(&self) -> WeightFormat {
        match self {
            QuantWeight::Blocks(q) => WeightFormat::Blocks(q.ggml_type()),
            QuantWeight::Int(q) => WeightFormat::Int(q.format_kind()),
        }
    }

    /// `"<FORMAT> <rows> <cols>"`, what [`QuantWeight::from_tensors`] reads back.
    pub fn describe(&self) -> String {
        let (rows, cols) = self.shape();
        format!("{} {rows} {cols}", self.weight_format().name())
    }

    /// The stored tensors, as in the module table.
    pub fn tensors(&self) -> Result<Vec<StoredPart>> {
        let (rows, cols) = self.shape();
        let layout = self.weight_format().layout(rows, cols)?;
        let bytes: Vec<Vec<u8>> = match self {
            QuantWeight::Blocks(q) => vec![q.to_ggml_bytes()],
            QuantWeight::Int(q) => q.parts().into_iter().map(|(_, b, _)| b).collect(),
        };
        Ok(layout
            .into_iter()
            .zip(bytes)
            .map(|((suffix, dtype, shape), bytes)| StoredPart { suffix, dtype, shape, bytes })
            .collect())
    }

    /// A weight from its description and its tensors: `get(suffix)` returns the stored tensor
    /// of that suffix as (dtype, shape, bytes). Every dtype, shape and size is checked.
    pub fn from_tensors<'a>(
        desc: &str,
        mut get: impl FnMut(&str) -> Result<(Dtype, Vec<usize>, &'a [u8])>,
    ) -> Result<QuantWeight> {
        let parsed = match desc.split_whitespace().collect::<Vec<_>>().as_slice() {
            [f, r, c] => WeightFormat::from_name(f).zip(r.parse::<usize>().ok()).zip(c.parse::<usize>().ok()),
            _ => None,
        };
        let (fmt, rows, cols) =
            parsed.map(|((f, r), c)| (f, r, c)).ok_or_else(|| bad(format!("bad description {desc:?}")))?;
        let layout = fmt.layout(rows, cols)?;
        let mut parts = Vec::with_capacity(layout.len());
        for (suffix, dtype, shape) in layout {
            let (d, s, bytes) = get(suffix)?;
            if d != dtype || s != shape {
                return Err(bad(format!(
                    "{} part {suffix:?}: expected {dtype:?} {shape:?}, found {d:?} {s:?}",
                    fmt.name()
                )));
            }
            parts.push(bytes);
        }
        Ok(match fmt {
            WeightFormat::Blocks(t) => QuantWeight::Blocks(QMatrix::new(t, rows, cols, parts[0].to_vec())?),
            WeightFormat::Int(f) => QuantWeight::Int(IntMatrix::from_parts(f, rows, cols, &parts)?),
        })
    }

    fn inner(&self) -> &dyn QuantMatrix {
        match self {
            QuantWeight::Blocks(q) => q,
            QuantWeight::Int(q) => q,
        }
    }
}

impl From<QMatrix> for QuantWeight {
    fn from(q: QMatrix) -> Self {
        QuantWeight::Blocks(q)
    }
}

impl QuantMatrix for QuantWeight {
    fn shape(&self) -> (usize, usize) {
        self.inner().shape()
    }
    fn format(&self) -> &'static str {
        self.inner().format()
    }
    fn bytes(&self) -> usize {
        self.inner().bytes()
    }
    fn matmul_t(&self, x: &[f32], m: usize, out: &mut [f32]) -> kiln_core::Result<()> {
        self.inner().matmul_t(x, m, out)
    }
    fn dequantize_row(&self, r: usize, out: &mut [f32]) -> kiln_core::Result<()> {
        self.inner().dequantize_row(r, out)
    }
    fn dequantize(&self) -> kiln_core::Result<Vec<f32>> {
        self.inner().dequantize()
    }
}
