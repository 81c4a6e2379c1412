//! The backend's [`FusedOps`] table: each entry forwards to the kernel file of the same name,
//! where forward and backward sit side by side.

use super::{attention, cross_entropy, layer_norm, paged_attention, rms_norm, rope, softmax};
use crate::CpuBackend;
use kiln_core::backend::{Arg, AttentionArgs, BoxStorage, FusedOps, PagedAttentionArgs, Storage};
use kiln_core::{Layout, Result};

impl FusedOps for CpuBackend {
    fn softmax(&self, x: Arg, log: bool) -> Result<BoxStorage> {
        softmax::forward(x, log)
    }
    fn softmax_bwd(&self, y: Arg, dy: Arg, log: bool) -> Result<BoxStorage> {
        softmax::backward(y, dy, log)
    }
    fn layer_norm(
        &self,
        x: Arg,
        w: Option<Arg>,
        b: Option<Arg>,
        eps: f64,
    ) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
        layer_norm::forward(x, w, b, eps)
    }
    fn layer_norm_bwd(
        &self,
        x: Arg,
        w: Option<Arg>,
        mean: Arg,
        rstd: Arg,
        dy: Arg,
    ) -> Result<(BoxStorage, Option<BoxStorage>, Option<BoxStorage>)> {
        layer_norm::backward(x, w, mean, rstd, dy)
    }
    fn rope(&self, x: Arg, cos: Arg, sin: Arg, transpose: bool) -> Result<BoxStorage> {
        rope::rope(x, cos, sin, transpose)
    }
    fn rms_norm(&self, x: Arg, w: Option<Arg>, eps: f64) -> Result<(BoxStorage, BoxStorage)> {
        rms_norm::forward(x, w, eps)
    }
    fn rms_norm_bwd(&self, x: Arg, w: Option<Arg>, rstd: Arg, dy: Arg) -> Result<(BoxStorage, Option<BoxStorage>)> {
        rms_norm::backward(x, w, rstd, dy)
    }
    fn cross_entropy(
        &self,
        logits: Arg,
        targets: Arg,
        ignore_index: i64,
        label_smoothing: f64,
    ) -> Result<(BoxStorage, BoxStorage)> {
        cross_entropy::forward(logits, targets, ignore_index, label_smoothing)
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
        cross_entropy::backward(logits, targets, lse, dloss, ignore_index, label_smoothing)
    }
    fn attention(
        &self,
        args: &AttentionArgs,
        q: Arg,
        k: Arg,
        v: Arg,
        mask: Option<Arg>,
    ) -> Result<(BoxStorage, BoxStorage)> {
        attention::forward(args, q, k, v, mask)
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
        attention::backward(args, q, k, v, mask, out, lse, dout)
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
        paged_attention::paged_attention(args, q, k, v, block_tables, token_seq, token_len)
    }
    fn paged_write(&self, cache: &mut dyn Storage, cache_layout: &Layout, slots: Arg, src: Arg) -> Result<()> {
        paged_attention::paged_write(cache, cache_layout, slots, src)
    }
}
