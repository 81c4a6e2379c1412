//! Normalisation layers (seed 001 "pre/post-LN", "RMSNorm").

mod layer_norm;
mod rms_norm;

pub use layer_norm::LayerNorm;
pub use rms_norm::RmsNorm;
