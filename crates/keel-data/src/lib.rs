//! keel's data side: tokenizers, chat templates, datasets.

pub mod batching;
pub mod chat;
pub mod dataset;
pub mod fuzzing;
pub mod generate;
pub mod jsonl;
pub mod mask;
pub mod medcalc;
pub mod pretrained;
pub mod progress;
pub mod tokenizer;
