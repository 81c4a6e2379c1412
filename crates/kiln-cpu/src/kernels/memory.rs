//! Allocation, host transfer, strided copies, dtype conversion.

use super::strided::{gather, gather_into, scatter_from};
use crate::pool::{self, filled, Poolable};
use crate::storage::{cpu, cpu_mut, CpuStorage};
use crate::CpuBackend;
use half::{bf16, f16};
use kiln_core::backend::{BoxStorage, MemoryOps, Storage};
use kiln_core::{DType, Error, HostData, Layout, Result};

fn check_fits(op: &'static str, s: &dyn Storage, l: &Layout) -> Result<()> {
    // The largest offset a layout reaches must be inside the storage.
    let max = l.offset() + l.shape().iter().zip(l.strides()).map(|(&n, &st)| n.saturating_sub(1) * st).sum::<usize>();
    if l.numel() > 0 && max >= s.len() {
        return Err(Error::BadShape {
            op,
            shape: l.shape().to_vec(),
            msg: format!("view reaches element {max} of a {}-element storage", s.len()),
        });
    }
    Ok(())
}

macro_rules! each_dtype {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            CpuStorage::F32($v) => CpuStorage::F32($body),
            CpuStorage::F64($v) => CpuStorage::F64($body),
            CpuStorage::F16($v) => CpuStorage::F16($body),
            CpuStorage::BF16($v) => CpuStorage::BF16($body),
            CpuStorage::I32($v) => CpuStorage::I32($body),
            CpuStorage::I64($v) => CpuStorage::I64($body),
            CpuStorage::U8($v) => CpuStorage::U8($body),
        }
    };
}

fn to_f64_vec(s: &CpuStorage, l: &Layout) -> Vec<f64> {
    match s {
        CpuStorage::F32(v) => gather(v, l).into_iter().map(|x| x as f64).collect(),
        CpuStorage::F64(v) => gather(v, l),
        CpuStorage::F16(v) => gather(v, l).into_iter().map(|x| x.to_f64()).collect(),
        CpuStorage::BF16(v) => gather(v, l).into_iter().map(|x| x.to_f64()).collect(),
        CpuStorage::I32(v) => gather(v, l).into_iter().map(|x| x as f64).collect(),
        CpuStorage::I64(v) => gather(v, l).into_iter().map(|x| x as f64).collect(),
        CpuStorage::U8(v) => gather(v, l).into_iter().map(|x| x as f64).collect(),
    }
}

/// The elements of `l` converted by `f` into a pooled buffer (mixed-precision casts run every
/// step, so they allocate nothing in steady state either).
fn convert<S: Poolable, D: Poolable>(v: &[S], l: &Layout, f: impl Fn(S) -> D) -> Vec<D> {
    let mut out = pool::take(l.numel());
    match l.contiguous_range() {
        Some((a, b)) => out.iter_mut().zip(&v[a..b]).for_each(|(o, &x)| *o = f(x)),
        None => {
            let tmp = gather(v, l);
            out.iter_mut().zip(&tmp).for_each(|(o, &x)| *o = f(x));
            pool::give(tmp);
        }
    }
    out
}

impl MemoryOps for CpuBackend {
    fn zeros(&self, dtype: DType, len: usize) -> Result<BoxStorage> {
        self.full(dtype, len, 0.0)
    }

    fn full(&self, dtype: DType, len: usize, value: f64) -> Result<BoxStorage> {
        Ok(match dtype {
            DType::F32 => CpuStorage::F32(filled(len, value as f32)),
            DType::F64 => CpuStorage::F64(filled(len, value)),
            DType::F16 => CpuStorage::F16(filled(len, f16::from_f64(value))),
            DType::BF16 => CpuStorage::BF16(filled(len, bf16::from_f64(value))),
            DType::I32 => CpuStorage::I32(filled(len, value as i32)),
            DType::I64 => CpuStorage::I64(filled(len, value as i64)),
            DType::U8 => CpuStorage::U8(filled(len, value as u8)),
        }
        .boxed())
    }

    fn from_host(&self, data: HostData) -> Result<BoxStorage> {
        Ok(CpuStorage::from_host(data).boxed())
    }

    fn to_host(&self, s: &dyn Storage, l: &Layout) -> Result<HostData> {
        check_fits("to_host", s, l)?;
        // Not from the pool: the buffer leaves kiln for good.
        Ok(each_dtype!(cpu("to_host", s)?, v => {
            let mut out = vec![Default::default(); l.numel()];
            gather_into(v, l, &mut out);
            out
        })
        .into_host())
    }

    fn copy_strided(&self, s: &dyn Storage, l: &Layout) -> Result<BoxStorage> {
        check_fits("copy_strided", s, l)?;
        Ok(each_dtype!(cpu("copy_strided", s)?, v => gather(v, l)).boxed())
    }

    fn to_dtype(&self, s: &dyn Storage, l: &Layout, dtype: DType) -> Result<BoxStorage> {
        check_fits("to_dtype", s, l)?;
        let s = cpu("to_dtype", s)?;
        // Fast, exact paths for the common float conversions; everything else goes through f64.
        let out = match (s, dtype) {
            (CpuStorage::F32(v), DType::F16) => CpuStorage::F16(convert(v, l, f16::from_f32)),
            (CpuStorage::F32(v), DType::BF16) => CpuStorage::BF16(convert(v, l, bf16::from_f32)),
            (CpuStorage::F16(v), DType::F32) => CpuStorage::F32(convert(v, l, f16::to_f32)),
            (CpuStorage::BF16(v), DType::F32) => CpuStorage::F32(convert(v, l, bf16::to_f32)),
            _ => CpuStorage::from_host(HostData::from_f64_slice(&to_f64_vec(s, l), dtype)),
        };
        Ok(out.boxed())
    }

    fn copy_into(&self, dst: &mut dyn Storage, dl: &Layout, src: &dyn Storage, sl: &Layout) -> Result<()> {
        if dl.shape() != sl.shape() {
            return Err(Error::ShapeMismatch { op: "copy_into", lhs: dl.shape().to_vec(), rhs: sl.shape().to_vec() });
        }
        check_fits("copy_into", dst, dl)?;
        check_fits("copy_into", src, sl)?;
        let src = cpu("copy_into", src)?;
        let dst = cpu_mut("copy_into", dst)?;
        macro_rules! go {
            ($($var:ident),*) => {
                match (dst, src) {
                    $((CpuStorage::$var(d), CpuStorage::$var(s)) => {
                        if let (Some((a, b)), Some((c, e))) = (dl.contiguous_range(), sl.contiguous_range()) {
                            d[a..b].copy_from_slice(&s[c..e]);
                        } else {
                            let tmp = gather(s, sl);
                            scatter_from(d, dl, &tmp);
                            crate::pool::give(tmp);
                        }
                        Ok(())
                    })*
                    (d, s) => Err(Error::DTypeMismatch { op: "copy_into", lhs: d.dtype(), rhs: s.dtype() }),
                }
            };
        }
        go!(F32, F64, F16, BF16, I32, I64, U8)
    }
}
