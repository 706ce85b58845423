//! keel's training: objectives (CE, TALR, DFT, FLOW, L2 to the initial weights), schedules, and
//! the optimizer step.

#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod l2;
pub mod merge;
pub mod objective;
pub mod run;
pub mod schedule;
pub mod step;
