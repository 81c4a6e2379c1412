//! # kiln-data
//!
//! Everything between a text file and a training batch: the shipped public-domain corpus
//! ([`corpus`]), tokenizers — character-level and byte-level BPE trained with the `tokenizers`
//! crate and saved as `tokenizer.json` ([`tokenizer`]), streamed decoding that releases whole
//! characters ([`IncrementalDecoder`]), a memory-mapped token file written once
//! ([`token_file`]), and seeded random `(x, y)` batches over a train/val split ([`batches`]).

pub mod batches;
pub mod chat_template;
pub mod corpus;
mod error;
mod gguf_vocab;
mod gpt2_bpe;
pub mod hf_tokenizer;
mod incremental;
pub mod token_file;
pub mod tokenizer;

pub use batches::{Batcher, Split};
pub use chat_template::{ChatMessage, ChatTemplate};
pub use error::{DataError, Result};
pub use gguf_vocab::GGUF_PRE_TOKENIZERS;
pub use hf_tokenizer::{HfTokenizer, PaddedBatch};
pub use incremental::IncrementalDecoder;
pub use token_file::TokenFile;
pub use tokenizer::{CharTokenizer, Tokenizer, END_OF_TEXT};
