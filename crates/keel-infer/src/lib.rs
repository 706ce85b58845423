//! Running a model: [`pretrained::Pretrained`] bundles the weights with their tokenizer and chat
//! template; [`hub`] fetches `hf:ORG/NAME[@REVISION]` models into the Hugging Face cache;
//! [`generate`] samples answers with continuous batching over the model's decoder;
//! [`detokenize`] turns a growing token sequence into text that only grows; [`progress`] prints
//! the progress lines of long work.

#![warn(missing_docs)]

pub mod detokenize;
pub mod generate;
pub mod hub;
pub mod pretrained;
pub mod progress;
