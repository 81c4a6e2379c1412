//! Position information (book ch. 19 "RoPE"; seed 002 "sinusoidal/RoPE/ALiBi").

mod rope;

pub use rope::RotaryEmbedding;
