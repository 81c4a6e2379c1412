//! Tensor ops. Each file holds a family of ops with the forward kernel call and, right beside it,
//! the backward closure recorded on the tape.
//!
//! [`OPS`] lists every differentiable op by the name it records on the tape; the gradcheck suite
//! (`tests/gradcheck.rs`) fails if any of them is never exercised by a finite-difference check.

mod attention;
mod cross_entropy;
mod dropout;
mod elementwise;
mod embedding;
mod layer_norm;
mod matmul;
mod optim;
mod paged_attention;
mod quantized_matmul;
mod reduce;
mod rms_norm;
mod rope;
mod softmax;
mod view;

pub use attention::AttentionOpts;
pub use cross_entropy::{CrossEntropyOpts, Reduction};
pub use paged_attention::{q8_dequantize_row, q8_quantize_row, q8_row_bytes, PagedBatch};

/// Every differentiable op, by tape name.
#[rustfmt::skip]
pub const OPS: &[&str] = &[
    // elementwise
    "neg", "exp", "log", "sqrt", "tanh", "abs", "sqr", "recip", "relu", "gelu", "gelu_tanh", "silu",
    "sigmoid", "powf", "affine", "add", "sub", "mul", "div", "maximum", "minimum", "where_cond",
    "to_dtype", "dropout",
    // reductions
    "sum", "max", "min",
    // matmul
    "matmul", "linear",
    // fused
    "softmax", "log_softmax", "layer_norm", "rms_norm", "cross_entropy", "attention",
    "packed_attention", "rope",
    // gathers
    "index_select",
    // views and movement
    "contiguous", "reshape", "permute", "narrow", "broadcast_as", "unsqueeze", "squeeze", "cat",
];
