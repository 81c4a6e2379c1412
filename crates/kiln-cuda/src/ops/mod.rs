//! The backend traits implemented for [`crate::CudaBackend`], one file per concern; each wraps
//! the kernels of the matching `kernels/*.cu` file.

mod attention;
mod cross_entropy;
mod elementwise;
pub(crate) mod fused;
mod index;
mod matmul;
pub(crate) mod memory;
mod optim;
mod random;
mod reduce;

use crate::CudaBackend;
use kiln_core::backend::{Arg, AttentionArgs, BoxStorage, FusedOps, PagedAttentionArgs, Storage};
use kiln_core::{Layout, Result};

impl FusedOps for CudaBackend {
    fn softmax(&self, x: Arg, log: bool) -> Result<BoxStorage> {
        self.softmax_k(x, log)
    }
    fn softmax_bwd(&self, y: Arg, dy: Arg, log: bool) -> Result<BoxStorage> {
        self.softmax_bwd_k(y, dy, log)
    }
    fn layer_norm(
        &self,
        x: Arg,
        w: Option<Arg>,
        b: Option<Arg>,
        eps: f64,
    ) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
        self.layer_norm_k(x, w, b, eps)
    }
    fn layer_norm_bwd(
        &self,
        x: Arg,
        w: Option<Arg>,
        mean: Arg,
        rstd: Arg,
        dy: Arg,
    ) -> Result<(BoxStorage, Option<BoxStorage>, Option<BoxStorage>)> {
        self.layer_norm_bwd_k(x, w, mean, rstd, dy)
    }
    fn rope(&self, x: Arg, cos: Arg, sin: Arg, transpose: bool) -> Result<BoxStorage> {
        self.rope_k(x, cos, sin, transpose)
    }
    fn rms_norm(&self, x: Arg, w: Option<Arg>, eps: f64) -> Result<(BoxStorage, BoxStorage)> {
        self.rms_norm_k(x, w, eps)
    }
    fn rms_norm_bwd(&self, x: Arg, w: Option<Arg>, rstd: Arg, dy: Arg) -> Result<(BoxStorage, Option<BoxStorage>)> {
        self.rms_norm_bwd_k(x, w, rstd, dy)
    }
    fn cross_entropy(
        &self,
        logits: Arg,
        targets: Arg,
        ignore_index: i64,
        label_smoothing: f64,
    ) -> Result<(BoxStorage, BoxStorage)> {
        self.cross_entropy_k(logits, targets, ignore_index, label_smoothing)
    }
    fn cross_entropy_bwd(
        &self,
        logits: Arg,
        targets: Arg,
        lse: Arg,
        dloss: Arg,
        ignore_index: i64,
        label_smoothing: f64,
    ) -> Result<BoxStorage> {
        self.cross_entropy_bwd_k(logits, targets, lse, dloss, ignore_index, label_smoothing)
    }
    fn attention(
        &self,
        args: &AttentionArgs,
        q: Arg,
        k: Arg,
        v: Arg,
        mask: Option<Arg>,
    ) -> Result<(BoxStorage, BoxStorage)> {
        self.attention_k(args, q, k, v, mask)
    }
    fn attention_bwd(
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
        self.attention_bwd_k(args, q, k, v, mask, out, lse, dout)
    }
    fn paged_attention(
        &self,
        args: &PagedAttentionArgs,
        q: Arg,
        k: Arg,
        v: Arg,
        block_tables: Arg,
        token_seq: Arg,
        token_len: Arg,
    ) -> Result<BoxStorage> {
        self.paged_attention_k(args, q, k, v, block_tables, token_seq, token_len)
    }
    fn paged_write(&self, cache: &mut dyn Storage, cache_layout: &Layout, slots: Arg, src: Arg) -> Result<()> {
        self.paged_write_k(cache, cache_layout, slots, src)
    }
}
