//! # kiln-analysis
//!
//! The transformer accounting of the textbook's chapter 12 ("Computational Analysis of
//! Transformers") and of notes 003 (decoder-only notes: memory, FLOPs, training time, scaling)
//! and 004 (formulas), as a library checked against kiln's own models:
//!
//! - [`Arch`] — a transformer described for accounting (GPT-2-style and LLaMA-style decoders,
//!   BERT encoders), from presets, kiln configs or config files;
//! - [`params`] — parameter counts per component, equal to what kiln builds;
//! - [`flops`] — forward/backward FLOPs per layer and token, the S² attention term,
//!   recomputation, the closed forms `24·B·S·H² + 4·B·S²·H` and `6·N·D`;
//! - [`activations`] and [`memory`] — Korthikanti et al.'s activation memory, model states by
//!   precision and optimizer, ZeRO stages 1–3, the largest batch or context that fits;
//! - [`kv_cache`](mod@kv_cache) — MHA/MQA/GQA and paged KV caches;
//! - [`scaling`] and [`train_time`] — Chinchilla and Kaplan laws, training time, MFU/HFU;
//! - [`roofline`](mod@roofline) — arithmetic intensity of every op against a machine balance;
//! - [`report`] — every analysis as a text table or JSON, for `kiln analyze`.
//!
//! Conventions: 2 FLOPs per multiply–accumulate; sizes and exact counts are integers
//! (parameters and bytes `u64`, FLOPs `u128`), checked for overflow; rates and laws are `f64`.

#![warn(missing_docs)]

pub mod activations;
pub mod arch;
mod checked;
pub mod dtype;
pub mod error;
pub mod flops;
pub mod kv_cache;
mod load;
pub mod memory;
pub mod params;
mod presets;
pub mod report;
pub mod roofline;
pub mod scaling;
mod table;
pub mod train_time;

pub use activations::{activation_memory, ActivationOpts, Activations};
pub use arch::{Arch, Family, MlpKind, NormKind, PositionKind};
pub use dtype::Dtype;
pub use error::{AnalysisError, Result};
pub use flops::{forward_flops, training_flops, Recompute};
pub use kv_cache::{kv_cache, paged_kv_cache};
pub use memory::{model_states, training_memory, Optimizer, Precision, TrainingSetup, ZeroStage};
pub use params::{num_params, param_count, ParamCount};
pub use presets::PRESETS;
pub use report::Report;
pub use roofline::{roofline, Bound, Phase, Roofline};
pub use scaling::{tokens_per_param_rule, Chinchilla, Kaplan};
pub use train_time::{training_time, training_time_6nd};
