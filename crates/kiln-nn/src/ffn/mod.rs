//! Position-wise feed-forward networks (book ch. 10; seed 001 "GELU/SiLU/GLU/SwiGLU").

mod mlp;
mod swiglu;

pub use mlp::{Activation, Mlp};
pub use swiglu::SwiGlu;
