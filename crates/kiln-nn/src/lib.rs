//! # kiln-nn
//!
//! Layers built from `kiln-core` ops, one file per concept and named as the book names them:
//! [`Linear`], [`Embedding`], [`norm::LayerNorm`], [`norm::RmsNorm`], [`ffn::Mlp`],
//! [`ffn::SwiGlu`], [`position::RotaryEmbedding`], [`attention::MultiHeadAttention`] (with
//! grouped-query attention and a [`attention::KvCache`]). Each layer implements
//! [`kiln_core::Module`], so its parameters carry their canonical names.

pub mod attention;
mod calibration;
mod embedding;
pub mod ffn;
mod init;
mod linear;
pub mod norm;
pub mod position;

pub use calibration::InputGram;
pub use embedding::Embedding;
pub use init::{Init, SkipInitGuard};
pub use linear::Linear;
