//! GGUF tensors as kiln [`Tensor`]s, and a whole GGUF file as a safetensors file.
//!
//! GGUF lists dims fastest-first (`ne[0]` is the row length); kiln, like PyTorch, lists them
//! row-major. The bytes are already row-major, so converting is reversing the dims: a GGUF
//! `[in, out]` weight becomes a kiln `[out, in]` tensor with identical element order.

use super::{GgufFile, TensorInfo};
use crate::quant::GgmlType;
use kiln_core::{Device, HostData, Tensor};
use std::collections::HashMap;
use std::path::Path;

impl GgufFile {
    /// Tensor `name` on `device`, shape [`TensorInfo::shape`] (GGUF dims reversed). F16 and BF16
    /// tensors keep their dtype; F32 and every quantized type become f32 (dequantized exactly as
    /// ggml does). Errors for a missing name or a type that cannot be dequantized.
    pub fn tensor(&self, name: &str, device: &Device) -> kiln_core::Result<Tensor> {
        let info = self.tensor_info(name).ok_or_else(|| crate::FormatError::TensorNotFound(name.to_owned()))?;
        self.tensor_from_info(info, device)
    }

    /// As [`GgufFile::tensor`], from an info of this file.
    pub fn tensor_from_info(&self, info: &TensorInfo, device: &Device) -> kiln_core::Result<Tensor> {
        let bytes = self.tensor_data(info);
        let host = match info.ggml_type {
            GgmlType::F16 => {
                HostData::F16(bytes.as_chunks::<2>().0.iter().map(|&b| half::f16::from_le_bytes(b)).collect())
            }
            GgmlType::BF16 => {
                HostData::BF16(bytes.as_chunks::<2>().0.iter().map(|&b| half::bf16::from_le_bytes(b)).collect())
            }
            _ => HostData::F32(self.dequantize(info)?),
        };
        Tensor::from_host(host, &info.shape(), device)
    }
}

/// The scalar metadata of `gguf` as safetensors `__metadata__` strings (see
/// [`super::Value::scalar_to_string`]); arrays (token tables and the like) are left out.
pub fn safetensors_metadata(gguf: &GgufFile) -> HashMap<String, String> {
    gguf.metadata().iter().filter_map(|(k, v)| Some((k.clone(), v.scalar_to_string()?))).collect()
}

/// Writes every tensor of `gguf` to a safetensors file at `out_path`, atomically (temp file +
/// rename, via [`kiln_core::safetensors::save`]): GGUF names kept, shapes row-major, F16/BF16 kept
/// and everything else dequantized to f32; scalar metadata carried into `__metadata__`. The tensors
/// pass through `device` (use the CPU device). Peak memory is about three times the f32 size.
pub fn convert_to_safetensors(gguf: &GgufFile, out_path: &Path, device: &Device) -> kiln_core::Result<()> {
    let mut tensors = Vec::with_capacity(gguf.tensors().len());
    for info in gguf.tensors() {
        tensors.push((info.name.clone(), gguf.tensor_from_info(info, device)?));
    }
    kiln_core::safetensors::save(out_path, &tensors, Some(safetensors_metadata(gguf)))
}
