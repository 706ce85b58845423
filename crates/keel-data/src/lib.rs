//! keel's data side: tokenizers, chat templates, datasets.

pub mod chat;
pub mod generate;
pub mod pretrained;
pub mod tokenizer;
