//! keel's training: one optimizer step over the engine (more objectives, schedules and
//! checkpoints build on it).

pub mod step;
