//! Data for infini: tokenizers, corpus readers (PG19, proof-pile, text folders), pre-tokenized
//! shards, and the stream that cuts B parallel documents into segments with reset flags.

pub mod card;
pub mod corpus;
pub mod error;
pub mod fsutil;
pub mod progress;
pub mod shards;
pub mod stream;
pub mod synthetic;
pub mod tokenizer;
pub mod toml_file;

pub use card::open_dataset;
pub use corpus::{Corpus, Document, Format, Span, Split};
pub use error::{DataError, Result};
pub use shards::{Manifest, PreparedData, PrepareOptions, SplitData, prepare};
pub use stream::{SegmentBatch, SegmentStream, StreamCursor};
pub use tokenizer::Tokenizer;
