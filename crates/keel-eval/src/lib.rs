//! keel's evaluation: multiple-choice tasks scored by log-likelihood (task files, lm-eval's
//! `acc`/`acc_norm`), generation tasks with faithful scorers (GSM8K, IFEval, HumanEval,
//! MedCalc-Bench, ESCI), and the paper's code length.

#![warn(missing_docs)]

pub mod codelength;
pub mod fuzzing;
pub mod gen_file;
pub mod gen_tasks;
pub mod harness;
pub mod humaneval;
pub mod ifeval;
pub mod loglik;
pub mod mc;
pub mod per_task;
pub mod sandbox;
pub mod scorers;
pub mod template;
