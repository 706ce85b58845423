//! The sweep directory (docs/sweep-layout.md): its files, written atomically, and the check
//! that a directory is reused only by a sweep file that means the same by it.

use crate::spec::{CellInfo, Sweep};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a cell (or the base) stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not started (also: no status.json).
    #[default]
    Pending,
    /// Training (or, for a merge, merging).
    Training,
    /// Scoring and measuring ΔL.
    Evaluating,
    /// Finished; never run again.
    Done,
    /// Stopped with `error`; run again by the next `keel sweep run`.
    Failed,
}

impl State {
    /// The name status.json and the status table use.
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Training => "training",
            State::Evaluating => "evaluating",
            State::Done => "done",
            State::Failed => "failed",
        }
    }
}

/// status.json.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Where it stands.
    pub state: State,
    /// A failed cell's error message.
    pub error: Option<String>,
    /// When the latest attempt started (UTC, RFC 3339).
    pub started: Option<String>,
    /// When it finished.
    pub finished: Option<String>,
    /// Seconds per phase: train, eval, analyze.
    #[serde(default)]
    pub seconds: BTreeMap<String, f64>,
}

/// A sweep directory.
#[derive(Clone, Debug)]
pub struct SweepDir {
    /// Its root.
    pub root: PathBuf,
}

impl SweepDir {
    /// The directory at `root` (nothing is read).
    pub fn new(root: &Path) -> Self {
        SweepDir { root: root.to_path_buf() }
    }

    /// `base/`.
    pub fn base(&self) -> PathBuf {
        self.root.join("base")
    }

    /// `cells/<id>/`.
    pub fn cell(&self, id: &str) -> PathBuf {
        self.root.join("cells").join(id)
    }

    /// The directory of a cell, or of the base for `None`.
    pub fn unit(&self, id: Option<&str>) -> PathBuf {
        id.map_or_else(|| self.base(), |id| self.cell(id))
    }

    /// sweep.json, parsed.
    pub fn manifest(&self) -> Result<Value> {
        let path = self.root.join("sweep.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: is {} a sweep directory (made by keel sweep run)?",
                path.display(),
                self.root.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))
    }

    /// The cells sweep.json lists, in index order.
    pub fn cells(&self) -> Result<Vec<CellInfo>> {
        let m = self.manifest()?;
        serde_json::from_value(m["cells"].clone())
            .with_context(|| format!("{}: \"cells\" is malformed", self.root.join("sweep.json").display()))
    }
}

/// A status file's content; absent or unreadable counts as pending (a kill mid-write cannot
/// happen: writes are atomic).
pub fn read_status(unit: &Path) -> Status {
    std::fs::read_to_string(unit.join("status.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes `value` as pretty JSON through a temporary file and a rename.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)?)
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Now in UTC as RFC 3339 (`2026-12-02T20:00:00Z`).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// The first leaf where two settings trees differ: (dotted key, old, new).
fn first_difference(old: &Value, new: &Value, prefix: &str) -> Option<(String, Value, Value)> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                first_difference(a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), &key)
            })
        }
        _ if old != new => Some((prefix.to_string(), old.clone(), new.clone())),
        _ => None,
    }
}

/// Creates or reopens the sweep directory for `sweep` and writes sweep.toml, sweep.json and each
/// cell's cell.json and config.toml. A directory made under other settings (base model, domain
/// data, [eval], [analyze]) is refused, naming the key.
pub fn prepare(sweep: &Sweep, dir: &SweepDir) -> Result<()> {
    let settings = sweep.settings();
    if dir.root.join("sweep.json").exists() {
        let old = dir.manifest()?;
        if let Some((key, was, now)) = first_difference(&old["settings"], &settings, "") {
            bail!(
                "{} was made by another sweep file: its {key} was {was}, {} has {key} = {now}. Its base and cells \
                 would now mean something else: choose another --out, or delete the directory",
                dir.root.display(),
                sweep.file.display()
            );
        }
    }
    std::fs::create_dir_all(dir.base()).with_context(|| format!("cannot create {}", dir.base().display()))?;
    std::fs::write(dir.root.join("sweep.toml"), &sweep.text)
        .with_context(|| format!("cannot write {}", dir.root.join("sweep.toml").display()))?;
    let workdir = std::env::current_dir().context("cannot read the current directory")?;
    let (domain, general) = sweep.tasks();
    let cells: Vec<&CellInfo> = sweep.cells.iter().map(|c| &c.info).collect();
    let manifest = json!({
        "sweep_hash": sweep.hash(),
        "keel_version": env!("CARGO_PKG_VERSION"),
        "eval": {"domain_tasks": domain, "general_tasks": general, "limit": sweep.eval.limit, "seed": sweep.eval.seed},
        "cells": cells,
        "keep_weights": sweep.keep_weights,
        "settings": settings,
        "workdir": workdir,
    });
    for cell in &sweep.cells {
        let cdir = dir.cell(&cell.info.id);
        std::fs::create_dir_all(&cdir).with_context(|| format!("cannot create {}", cdir.display()))?;
        write_json(&cdir.join("cell.json"), &cell.info)?;
        if let Some(config) = &cell.config {
            let mut config = config.clone();
            config.output.dir = std::path::absolute(cdir.join("run"))?;
            let path = cdir.join("config.toml");
            let text = toml::to_string(&config).with_context(|| format!("cannot write {} as TOML", path.display()))?;
            std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    write_json(&dir.root.join("sweep.json"), &manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_dotted_key() {
        let a = json!({"eval": {"limit": 50, "seed": 0}, "base": {"model": {"path": "m"}}});
        let b = json!({"eval": {"limit": 20, "seed": 0}, "base": {"model": {"path": "m"}}});
        assert_eq!(first_difference(&a, &b, ""), Some(("eval.limit".into(), json!(50), json!(20))));
        assert_eq!(first_difference(&a, &a, ""), None);
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_utc();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }
}
