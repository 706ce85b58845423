//! keel's data side: tokenizers, chat templates, dataset readers, loss masks and batching.

#![warn(missing_docs)]

pub mod batching;
pub mod chat;
pub mod dataset;
pub mod fuzzing;
pub mod gguf_vocab;
pub mod holdout;
pub mod jsonl;
pub mod mask;
pub mod medcalc;
pub mod tokenizer;
