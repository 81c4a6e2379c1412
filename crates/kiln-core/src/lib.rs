//! # kiln-core
//!
//! Tensors ([`Tensor`]), element types ([`DType`]), layouts ([`Layout`]), the object-safe
//! [`backend::Backend`] trait every device implements, and reverse-mode autodiff over coarse fused
//! ops ([`autograd`]). No kernels live here: `kiln-cpu` (and `kiln-cuda`) provide them.
//!
//! Shape letters used in docs: B batch, T time (queries), S keys, C channels, H heads,
//! Hkv kv heads, D head dim, V vocab, L layers, N rows.

pub mod autocast;
pub mod autograd;
pub mod backend;
mod dtype;
mod error;
pub mod flops;
pub mod gradcheck;
pub mod module;
pub mod ops;
pub mod quant;
pub mod safetensors;
pub mod shape;
mod tensor;

pub use autocast::{autocast, autocast_dtype};
pub use autograd::{no_grad, set_anomaly_mode, NoGradGuard};
pub use backend::Device;
pub use dtype::{DType, HostData, WithDType};
pub use error::{Error, Result};
pub use flops::count_flops;
pub use half::{bf16, f16};
pub use module::Module;
pub use shape::Layout;
pub use tensor::Tensor;
