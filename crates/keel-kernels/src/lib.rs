//! CPU kernels of keel's training engine.
//!
//! Every kernel works on plain row-major slices and comes with its backward next to its forward.
//! Kernels are generic over [`Real`] so the same code runs in `f32` (training) and in `f64`
//! (the finite-difference reference of the gradient tests). Reductions across rows use a fixed
//! chunking, independent of the thread count, so results are bit-reproducible.

#![warn(missing_docs)]

pub mod adamw;
pub mod attention;
pub mod clip;
pub mod cross_entropy;
pub mod embedding;
pub mod gemm;
pub mod glu;
pub mod linear;
pub mod lora;
mod one_token;
pub mod packed;
pub mod parallel;
pub mod real;
pub mod rmsnorm;
pub mod rope;

pub use real::Real;
