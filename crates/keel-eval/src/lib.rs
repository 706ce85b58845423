//! keel's evaluation. So far: multiple-choice tasks scored by log-likelihood, defined by task
//! files, with lm-evaluation-harness's `acc` and `acc_norm`.

pub mod codelength;
pub mod gen_tasks;
pub mod humaneval;
pub mod ifeval;
pub mod loglik;
pub mod mc;
pub mod scorers;
