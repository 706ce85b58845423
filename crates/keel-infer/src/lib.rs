//! Running a model: [`pretrained::Pretrained`] bundles the weights with their tokenizer and chat
//! template; [`generate`] samples answers with continuous batching over the model's decoder;
//! [`progress`] prints the progress lines of long work.

pub mod generate;
pub mod pretrained;
pub mod progress;
