//! CPU kernels, one file per concern; fused ops keep forward and backward side by side.

mod adamw;
mod attention;
mod attention_rows;
mod cross_entropy;
mod elementwise;
pub(crate) mod float;
mod fused;
mod index;
mod layer_norm;
mod matmul;
mod memory;
mod paged_attention;
pub(crate) mod random;
mod reduce;
mod rms_norm;
mod rope;
mod rows;
#[cfg(target_arch = "x86_64")]
mod skinny;
mod softmax;
pub(crate) mod strided;
mod tile_gemm;

/// Below this many elements a loop stays on one thread (rayon overhead ≈ a few µs).
pub(crate) const PAR_MIN: usize = 1 << 15;
