//! Reading and writing named tensors in the safetensors format (Hugging Face's weight files).
//!
//! [`save`] writes atomically: a temporary file in the same folder, synced, then renamed over the
//! target, so a crash mid-save never leaves a half-written file where the last good one was.
//! [`load`] memory-maps the file and copies each tensor to the device.

use crate::{DType, Device, Error, HostData, Result, Tensor};
use safetensors::tensor::{Dtype as StDtype, TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

fn st_dtype(d: DType) -> StDtype {
    match d {
        DType::F32 => StDtype::F32,
        DType::F64 => StDtype::F64,
        DType::F16 => StDtype::F16,
        DType::BF16 => StDtype::BF16,
        DType::I32 => StDtype::I32,
        DType::I64 => StDtype::I64,
        DType::U8 => StDtype::U8,
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid { op: "safetensors", msg: format!("{}: {e}", path.display()) }
}

fn host_bytes(h: &HostData) -> Vec<u8> {
    fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }
    match h {
        HostData::F32(v) => le(v, f32::to_le_bytes),
        HostData::F64(v) => le(v, f64::to_le_bytes),
        HostData::F16(v) => le(v, half::f16::to_le_bytes),
        HostData::BF16(v) => le(v, half::bf16::to_le_bytes),
        HostData::I32(v) => le(v, i32::to_le_bytes),
        HostData::I64(v) => le(v, i64::to_le_bytes),
        HostData::U8(v) => v.clone(),
    }
}

/// Writes `tensors` (name → tensor) and string `metadata` to `path` atomically.
pub fn save(path: &Path, tensors: &[(String, Tensor)], metadata: Option<HashMap<String, String>>) -> Result<()> {
    let mut bufs = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        bufs.push((name.clone(), t.dtype(), t.dims().to_vec(), host_bytes(&t.to_host()?)));
    }
    let views: Vec<(String, TensorView)> = bufs
        .iter()
        .map(|(n, d, s, b)| TensorView::new(st_dtype(*d), s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| io_err(path, e))?;
    let bytes = safetensors::serialize(views, metadata).map_err(|e| io_err(path, e))?;
    let file_name = path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(&bytes).and_then(|_| f.sync_all()).map_err(|e| io_err(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// Reads every tensor of a safetensors file onto `device`, with the file's metadata.
#[allow(clippy::type_complexity)]
pub fn load(path: &Path, device: &Device) -> Result<(Vec<(String, Tensor)>, HashMap<String, String>)> {
    let f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    // SAFETY: read-only mapping; kiln replaces files by rename, never rewriting them in place.
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| io_err(path, e))?;
    load_bytes(&map, path, device)
}

/// [`load`] on the bytes of a safetensors file (`path` only names it in errors). Header,
/// offsets and sizes are validated by the `safetensors` crate before any tensor is read; the
/// fuzz target `fuzz/fuzz_targets/safetensors_load.rs` drives this function.
#[allow(clippy::type_complexity)]
pub fn load_bytes(
    bytes: &[u8],
    path: &Path,
    device: &Device,
) -> Result<(Vec<(String, Tensor)>, HashMap<String, String>)> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| io_err(path, e))?;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| io_err(path, e))?;
    let mut out = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for name in names {
        let v = st.tensor(&name).map_err(|e| io_err(path, e))?;
        let b = v.data();
        fn read<T, const N: usize>(b: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            b.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))).collect()
        }
        let host = match v.dtype() {
            StDtype::F32 => HostData::F32(read(b, f32::from_le_bytes)),
            StDtype::F64 => HostData::F64(read(b, f64::from_le_bytes)),
            StDtype::F16 => HostData::F16(read(b, half::f16::from_le_bytes)),
            StDtype::BF16 => HostData::BF16(read(b, half::bf16::from_le_bytes)),
            StDtype::I32 => HostData::I32(read(b, i32::from_le_bytes)),
            StDtype::I64 => HostData::I64(read(b, i64::from_le_bytes)),
            StDtype::U8 => HostData::U8(b.to_vec()),
            d => return Err(io_err(path, format!("tensor {name}: unsupported dtype {d:?}"))),
        };
        out.push((name.clone(), Tensor::from_host(host, v.shape(), device)?));
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}
