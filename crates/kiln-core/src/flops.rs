//! An op-level FLOP counter, so the analysis formulas (`kiln analyze flops`) can be checked
//! against what the engine runs. While [`count_flops`] runs a closure, every matrix product the
//! ops dispatch on this thread adds its **model FLOPs**: 2 per multiply–accumulate at the
//! product's nominal size (the convention of the book §12.1, Megatron-LM's MFU and
//! `kiln-analysis`):
//!
//! - `matmul` (…, M, K)·(…, K, N): `2·batch·M·N·K`; `linear` `2·M·N·K` (the bias add is
//!   element-wise and not counted); `quantized_matmul` the same as its f32 product;
//! - attention forward `4·B·H·T·S·D` (QKᵀ and PV over the full T×S scores, whatever the kernel
//!   skips under a causal mask), backward `8·B·H·T·S·D` (dP, dV, dQ, dK; the kernel's
//!   recomputation of the scores is hardware work, not model FLOPs).
//!
//! Backward passes of `matmul` and `linear` go through `matmul` and count themselves. Element-wise
//! ops, norms and softmax are not counted (O(B·T·C), neglected by the formulas too). The counter
//! is per thread (ops dispatch on the caller's thread; the kernels' worker threads do not
//! count), so concurrent counts in different threads do not mix.

use std::cell::Cell;

thread_local! {
    static COUNTER: Cell<Option<u128>> = const { Cell::new(None) };
}

/// Runs `f` and returns its result with the model FLOPs of the ops it dispatched on this thread.
/// Scopes nest: an outer scope's count includes an inner one's.
pub fn count_flops<R>(f: impl FnOnce() -> R) -> (R, u128) {
    let outer = COUNTER.with(|c| c.replace(Some(0)));
    let r = f();
    let inner = COUNTER.with(|c| c.replace(outer)).unwrap_or(0);
    if outer.is_some() {
        add(inner);
    }
    (r, inner)
}

/// Adds `flops` to the running count, if any.
pub(crate) fn add(flops: u128) {
    COUNTER.with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n.saturating_add(flops)));
        }
    });
}

/// `2·Π dims`: the FLOPs of a product with these multiply–accumulate dimensions.
pub(crate) fn product(dims: &[usize]) -> u128 {
    dims.iter().fold(2u128, |a, &d| a.saturating_mul(d as u128))
}
