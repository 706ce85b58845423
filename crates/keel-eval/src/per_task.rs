//! A setting with one value for every task and exceptions by task name: the item limit and the
//! generation budget. IFEval costs a hundred times an ARC item, so a study wants 100 ARC items
//! but 24 IFEval prompts: `--limit 100 --limit ifeval=24` on the command line, and
//! `limit = 100` or `limit = { default = 100, ifeval = 24 }` in a sweep file.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::json;
use std::collections::BTreeMap;

/// A number per task: `default` unless the task is named in `by_task`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerTask {
    /// The value of every task not named below.
    pub default: usize,
    /// Exceptions, by task name.
    pub by_task: BTreeMap<String, usize>,
}

impl PerTask {
    /// The same value for every task.
    pub fn all(default: usize) -> Self {
        PerTask { default, by_task: BTreeMap::new() }
    }

    /// The value for `task`.
    pub fn of(&self, task: &str) -> usize {
        self.by_task.get(task).copied().unwrap_or(self.default)
    }

    /// Builds the setting from command-line values (`--limit 100 --limit ifeval=24`): a bare
    /// number sets the default, `task=N` an exception; a later value wins. `flag` names the flag
    /// in errors.
    pub fn from_args(values: &[String], flag: &str) -> Result<Self> {
        let mut out = PerTask::default();
        for v in values {
            let parse = |s: &str| {
                s.trim().parse::<usize>().with_context(|| {
                    format!("--{flag} {v}: expected a number (every task) or TASK=NUMBER (one task), as in --{flag} 100 --{flag} ifeval=24")
                })
            };
            match v.split_once('=') {
                Some((task, n)) if !task.trim().is_empty() => {
                    out.by_task.insert(task.trim().to_string(), parse(n)?);
                }
                Some(_) => bail!("--{flag} {v}: the task name before '=' is missing"),
                None => out.default = parse(v)?,
            }
        }
        Ok(out)
    }

    /// Refuses exceptions for tasks that are not evaluated (a misspelt task would otherwise get
    /// the default silently). `what` names the setting in the error.
    pub fn check_tasks(&self, tasks: &[String], what: &str) -> Result<()> {
        for name in self.by_task.keys() {
            if !tasks.contains(name) {
                bail!("{what}: {name} is not one of the tasks evaluated ({})", tasks.join(", "));
            }
        }
        Ok(())
    }

    /// JSON: a plain number without exceptions (as results.json always wrote it), otherwise
    /// `{"default": N, "<task>": M, ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        if self.by_task.is_empty() {
            return json!(self.default);
        }
        let mut m = serde_json::Map::new();
        m.insert("default".into(), json!(self.default));
        for (k, v) in &self.by_task {
            m.insert(k.clone(), json!(v));
        }
        serde_json::Value::Object(m)
    }
}

impl std::fmt::Display for PerTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.default)?;
        for (k, v) in &self.by_task {
            write!(f, ", {k} {v}")?;
        }
        Ok(())
    }
}

impl Serialize for PerTask {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for PerTask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            All(usize),
            ByTask(BTreeMap<String, usize>),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a number, or a table of numbers such as { default = 100, ifeval = 24 }")
        })? {
            Raw::All(n) => Ok(PerTask::all(n)),
            Raw::ByTask(mut m) => {
                let default = m.remove("default").unwrap_or(0);
                Ok(PerTask { default, by_task: m })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_number_sets_every_task_and_task_values_are_exceptions() {
        let p = PerTask::from_args(&args(&["100", "ifeval=24", "humaneval = 16"]), "limit").unwrap();
        assert_eq!((p.of("arc_easy"), p.of("ifeval"), p.of("humaneval")), (100, 24, 16));
        let later = PerTask::from_args(&args(&["ifeval=24", "50", "ifeval=8"]), "limit").unwrap();
        assert_eq!((later.of("boolq"), later.of("ifeval")), (50, 8));
        assert_eq!(PerTask::from_args(&[], "limit").unwrap(), PerTask::all(0));
    }

    #[test]
    fn bad_values_name_the_flag_and_the_form() {
        let e = PerTask::from_args(&args(&["ifeval=lots"]), "limit").unwrap_err().to_string();
        assert!(e.contains("--limit ifeval=lots") && e.contains("TASK=NUMBER"), "{e}");
        let e = PerTask::from_args(&args(&["=3"]), "max-new-tokens").unwrap_err().to_string();
        assert!(e.contains("task name"), "{e}");
        let p = PerTask::from_args(&args(&["ifevl=3"]), "limit").unwrap();
        let e = p.check_tasks(&args(&["ifeval", "boolq"]), "--limit").unwrap_err().to_string();
        assert!(e.contains("ifevl is not one of the tasks evaluated (ifeval, boolq)"), "{e}");
    }

    #[test]
    fn round_trips_through_json_and_toml() {
        for p in [PerTask::all(64), PerTask::from_args(&args(&["100", "ifeval=24"]), "limit").unwrap()] {
            let j = serde_json::to_value(&p).unwrap();
            assert_eq!(serde_json::from_value::<PerTask>(j).unwrap(), p);
        }
        assert_eq!(serde_json::to_value(PerTask::all(64)).unwrap(), json!(64));
        #[derive(Deserialize)]
        struct S {
            limit: PerTask,
        }
        let s: S = toml::from_str("limit = { default = 100, ifeval = 24 }").unwrap();
        assert_eq!((s.limit.of("mmlu"), s.limit.of("ifeval")), (100, 24));
        assert!(toml::from_str::<S>("limit = \"many\"").is_err());
    }
}
