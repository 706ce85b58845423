//! keel's model: configuration, weight files, and the Llama-family `Transformer` with its
//! explicit forward and backward.

#![warn(missing_docs)]

pub mod batch;
mod block;
pub mod config;
pub mod fuzzing;
pub mod gguf;
pub mod gguf_write;
pub mod inference;
pub mod limits;
pub mod lora;
pub mod optim;
pub mod params;
pub mod rng;
pub mod safetensors;
pub mod transformer;
pub mod weights;

pub use batch::Batch;
pub use config::{Arch, ModelConfig};
pub use params::ParamLayout;
pub use transformer::{Transformer, Workspace};
