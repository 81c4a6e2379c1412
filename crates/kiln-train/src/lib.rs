//! # kiln-train
//!
//! Training machinery from the book's chapter 11: the AdamW optimizer with decoupled weight decay
//! ([`AdamW`]), learning-rate schedules ([`schedule`]: warmup + cosine, Noam, constant), and
//! gradient clipping by global norm ([`clip_grad_norm`]), and the training loop with atomic,
//! bit-exactly resumable checkpoints ([`run`]).

mod adamw;
mod clip;
mod loss_scale;
pub mod probe;
mod prune;
mod qat;
pub mod run;
pub mod schedule;

pub use adamw::{AdamW, AdamWConfig};
pub use clip::clip_grad_norm;
pub use loss_scale::DynamicLossScaler;
pub use prune::Pruning;
pub use qat::FakeQuant;
pub use run::{GradSync, Precision};
pub use schedule::{ConstantSchedule, LrSchedule, NoamSchedule, WarmupCosine};
