//! Fused attention forward/backward and paged attention (kernels in `kernels/attention.cu` and
//! `kernels/paged_attention.cu`; the algorithms are described there).

use crate::backend::{boxed, cu, cu_mut, launch, want, CudaBackend, Strided};
use crate::ops::fused::vector;
use crate::ops::memory::Dense;
use crate::storage::dtype_code;
use cudarc::driver::{DeviceRepr, LaunchConfig};
use kiln_core::backend::{Arg, AttentionArgs, AttentionDims, BoxStorage, PagedAttentionArgs, Storage};
use kiln_core::{DType, Error, Layout, Result};

/// Query rows (forward, dQ) or key rows (dK/dV) per block: `WARPS` in attention.cu.
const WARPS: usize = 4;
/// Largest head dim the kernels take (`DMAX`).
const DMAX: usize = 128;

/// `AttnGeo` of attention.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct AttnGeo {
    b: i64,
    h: i64,
    hkv: i64,
    t: i64,
    s: i64,
    d: i64,
    hs: i64,
    scale: f32,
    causal: i32,
    thresh: f64,
    mult: f32,
    has_mask: i32,
    seed: u64,
    window: i64,
}

// SAFETY: `#[repr(C)]` with the field order and types of the C struct.
unsafe impl DeviceRepr for AttnGeo {}

/// Checked operands of one attention call.
struct Operands<'a> {
    g: AttnGeo,
    q: Dense<'a>,
    k: Dense<'a>,
    v: Dense<'a>,
    mask: Option<(u64, Strided)>,
}

impl CudaBackend {
    /// K or V as the kernels read it: contiguous, or head-strided in place when `strided`.
    fn kv<'a>(&self, a: Arg<'a>, strided: bool) -> Result<(Dense<'a>, usize)> {
        let s = cu("attention", a.0)?;
        want("attention", s, DType::F32)?;
        let sh = a.1.shape();
        let plain = sh.get(2).copied().unwrap_or(0) * sh.get(3).copied().unwrap_or(0);
        match a.1.head_strided().filter(|_| strided && !a.1.is_contiguous()) {
            Some(hs) => Ok((Dense::View(s, a.1.offset()), hs)),
            None => Ok((self.dense(s, a.1)?, plain)),
        }
    }

    fn operands<'a>(
        &self,
        args: &AttentionArgs,
        q: Arg<'a>,
        k: Arg<'a>,
        v: Arg<'a>,
        mask: Option<Arg<'a>>,
        strided_kv: bool,
    ) -> Result<Operands<'a>> {
        let dims = AttentionDims::of(q.1, k.1, v.1, mask.map(|m| m.1))?;
        if dims.d > DMAX {
            return Err(Error::Invalid {
                op: "attention",
                msg: format!("head dim {} > {DMAX}: not supported by the CUDA kernels", dims.d),
            });
        }
        let qsd = cu("attention", q.0)?;
        want("attention", qsd, DType::F32)?;
        let q = self.dense(qsd, q.1)?;
        let ((k, hs), (v, vhs)) = (self.kv(k, strided_kv)?, self.kv(v, strided_kv)?);
        if hs != vhs {
            return Err(Error::ShapeMismatch { op: "attention (k/v block strides)", lhs: vec![hs], rhs: vec![vhs] });
        }
        let mask = match mask {
            None => None,
            Some((ms, ml)) => {
                let ms = cu("attention", ms)?;
                want("attention", ms, DType::F32)?;
                Some((self.ptr(ms, 0), Strided::of("attention", ml)?))
            }
        };
        let keep = 1.0 - args.dropout_p;
        let g = AttnGeo {
            b: dims.b as i64,
            h: dims.h as i64,
            hkv: dims.hkv as i64,
            t: dims.t as i64,
            s: dims.s as i64,
            d: dims.d as i64,
            hs: hs as i64,
            scale: args.scale as f32,
            causal: args.causal as i32,
            thresh: if keep < 1.0 { 1.0 - keep } else { 0.0 },
            mult: (1.0 / keep) as f32,
            has_mask: mask.is_some() as i32,
            seed: args.seed,
            window: args.window.filter(|_| args.causal).unwrap_or(0) as i64,
        };
        Ok(Operands { g, q, k, v, mask })
    }

    pub(crate) fn attention_k(
        &self,
        args: &AttentionArgs,
        q: Arg,
        k: Arg,
        v: Arg,
        mask: Option<Arg>,
    ) -> Result<(BoxStorage, BoxStorage)> {
        let o = self.operands(args, q, k, v, mask, true)?;
        let g = o.g;
        let (rows, n) = ((g.b * g.h * g.t) as usize, (g.b * g.h * g.t * g.d) as usize);
        let out = self.alloc(DType::F32, n)?;
        let lse = self.alloc(DType::F32, rows)?;
        if rows > 0 {
            let (mp, ml) = o.mask.unwrap_or((0, Strided::of("attention", &Layout::contiguous(&[1, 1, 1, 1]))?));
            let cfg = LaunchConfig {
                grid_dim: ((g.t as usize).div_ceil(WARPS) as u32, (g.b * g.h) as u32, 1),
                block_dim: (32 * WARPS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            launch!(self, "attn_fwd_f32", cfg; g, o.q.ptr(self), o.k.ptr(self), o.v.ptr(self), mp, ml, self.ptr(&out, 0), self.ptr(&lse, 0))?;
        }
        Ok((boxed(out), boxed(lse)))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention_bwd_k(
        &self,
        args: &AttentionArgs,
        q: Arg,
        k: Arg,
        v: Arg,
        mask: Option<Arg>,
        out: Arg,
        lse: Arg,
        dout: Arg,
    ) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
        const OP: &str = "attention_bwd";
        let o = self.operands(args, q, k, v, mask, true)?;
        let g = o.g;
        let (rows, nq, nkv) =
            ((g.b * g.h * g.t) as usize, (g.b * g.h * g.t * g.d) as usize, (g.b * g.hkv * g.s * g.d) as usize);
        let (outd, lse, dout) = (vector(self, OP, out, nq)?, vector(self, OP, lse, rows)?, vector(self, OP, dout, nq)?);
        let dq = self.alloc(DType::F32, nq)?;
        let (dk, dv) = (self.alloc(DType::F32, nkv)?, self.alloc(DType::F32, nkv)?);
        if rows == 0 || nkv == 0 {
            let zeros = |n| self.alloc_zeros(DType::F32, n).map(boxed);
            return Ok((zeros(nq)?, zeros(nkv)?, zeros(nkv)?));
        }
        let dsum = self.alloc(DType::F32, rows)?;
        let (mp, ml) = o.mask.unwrap_or((0, Strided::of(OP, &Layout::contiguous(&[1, 1, 1, 1]))?));
        let warps = LaunchConfig {
            grid_dim: (rows.div_ceil(8).min(1 << 16) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, "attn_bwd_dsum_f32", warps; outd.ptr(self), dout.ptr(self), self.ptr(&dsum, 0), rows as i64, g.d)?;
        let qcfg = LaunchConfig {
            grid_dim: ((g.t as usize).div_ceil(WARPS) as u32, (g.b * g.h) as u32, 1),
            block_dim: (32 * WARPS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, "attn_bwd_dq_f32", qcfg;
            g, o.q.ptr(self), o.k.ptr(self), o.v.ptr(self), mp, ml, lse.ptr(self), self.ptr(&dsum, 0), dout.ptr(self), self.ptr(&dq, 0))?;
        let kcfg = LaunchConfig {
            grid_dim: ((g.s as usize).div_ceil(WARPS) as u32, (g.b * g.hkv) as u32, 1),
            block_dim: (32 * WARPS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, "attn_bwd_dkv_f32", kcfg;
            g, o.q.ptr(self), o.k.ptr(self), o.v.ptr(self), mp, ml, lse.ptr(self), self.ptr(&dsum, 0), dout.ptr(self),
            self.ptr(&dk, 0), self.ptr(&dv, 0))?;
        Ok((boxed(dq), boxed(dk), boxed(dv)))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn paged_attention_k(
        &self,
        args: &PagedAttentionArgs,
        q: Arg,
        k: Arg,
        v: Arg,
        block_tables: Arg,
        token_seq: Arg,
        token_len: Arg,
    ) -> Result<BoxStorage> {
        const OP: &str = "paged_attention";
        let (qs, ks) = (q.1.shape(), k.1.shape());
        let (kc, vc) = (cu(OP, k.0)?, cu(OP, v.0)?);
        if kc.dtype != vc.dtype {
            return Err(Error::DTypeMismatch { op: OP, lhs: kc.dtype, rhs: vc.dtype });
        }
        let d_cache = if kc.dtype == DType::U8 { ks.get(2).and_then(|x| x.checked_sub(4)) } else { ks.get(2).copied() };
        if qs.len() != 3
            || ks.len() != 3
            || k.1.shape() != v.1.shape()
            || d_cache != Some(qs[2])
            || ks[1] == 0
            || qs[1] % ks[1] != 0
        {
            return Err(Error::ShapeMismatch { op: OP, lhs: qs.to_vec(), rhs: ks.to_vec() });
        }
        if !k.1.is_contiguous()
            || !v.1.is_contiguous()
            || kc.dtype == DType::F64
            || kc.dtype == DType::I32
            || kc.dtype == DType::I64
        {
            return Err(Error::Invalid { op: OP, msg: "caches must be contiguous f32, f16, bf16 or int8 rows".into() });
        }
        let (n, h, d, hkv) = (qs[0], qs[1], qs[2], ks[1]);
        if d > DMAX {
            return Err(Error::Invalid {
                op: OP,
                msg: format!("head dim {d} > {DMAX}: not supported by the CUDA kernels"),
            });
        }
        let qd = vector(self, OP, q, n * h * d)?;
        let bt_shape = block_tables.1.shape().to_vec();
        let max_blocks = bt_shape.get(1).copied().unwrap_or(0);
        let (bt, seq, len) =
            (self.ids_i64(OP, block_tables)?, self.ids_i64(OP, token_seq)?, self.ids_i64(OP, token_len)?);
        let out = self.alloc(DType::F32, n * h * d)?;
        if n * h > 0 {
            let cfg = LaunchConfig {
                grid_dim: ((n * h).div_ceil(4) as u32, 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            launch!(self, "paged_attn_f32", cfg;
                qd.ptr(self), dtype_code(kc.dtype), self.ptr(kc, k.1.offset()), self.ptr(vc, v.1.offset()), bt.ptr(self), max_blocks as i64,
                seq.ptr(self), len.ptr(self), self.ptr(&out, 0), n as i64, h as i64, hkv as i64, d as i64,
                args.block_size as i64, args.scale as f32, args.window.unwrap_or(0) as i64)?;
        }
        Ok(boxed(out))
    }

    pub(crate) fn paged_write_k(&self, cache: &mut dyn Storage, cl: &Layout, slots: Arg, src: Arg) -> Result<()> {
        const OP: &str = "paged_write";
        let rows = cl.shape().first().copied().unwrap_or(0);
        let w: usize = cl.shape().iter().skip(1).product();
        let n = slots.1.numel();
        let sl = self.ids_i64(OP, slots)?;
        self.check_ids(OP, &sl, n, rows, i64::MIN)?;
        let c = cu_mut(OP, cache)?;
        if !cl.is_contiguous() {
            return Err(Error::Invalid { op: OP, msg: "the cache must be contiguous".into() });
        }
        let pc = self.ptr(c, cl.offset());
        if c.dtype == DType::U8 {
            let d = cl.shape().last().copied().unwrap_or(0).saturating_sub(4);
            let hkv = if cl.rank() == 3 { cl.shape()[1] } else { 1 };
            if d == 0 {
                return Err(Error::Invalid {
                    op: OP,
                    msg: format!("int8 cache rows of {:?} hold no values", cl.shape()),
                });
            }
            let src = vector(self, OP, src, n * hkv * d)?;
            if n > 0 {
                let cfg = LaunchConfig {
                    grid_dim: ((n * hkv).div_ceil(8).min(1 << 16) as u32, 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                launch!(self, "paged_write_q8", cfg; pc, sl.ptr(self), src.ptr(self), n as i64, hkv as i64, d as i64)?;
            }
            return Ok(());
        }
        let code = dtype_code(c.dtype);
        if !matches!(c.dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::UnsupportedDType { op: OP, dtype: c.dtype, msg: "caches are f32, f16, bf16 or int8" });
        }
        let src = vector(self, OP, src, n * w)?;
        if n > 0 {
            launch!(self, "paged_write_f32", crate::backend::grid_rows(n, w); code, pc, sl.ptr(self), src.ptr(self), n as i64, w as i64)?;
        }
        Ok(())
    }
}
