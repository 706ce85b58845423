//! keel's training: objectives (CE, TALR, DFT, FLOW, L2 to the initial weights), schedules, and
//! the optimizer step.

pub mod l2;
pub mod objective;
pub mod schedule;
pub mod step;
