//! Entry points of the fuzz targets in `fuzz/` (task files and evaluation data), also called by
//! the corpus replay tests; see `keel_model::fuzzing`.

use crate::ifeval::{parse_ifeval_line, score};
use crate::mc::McTask;
use keel_model::fuzzing::with_temp_file;

/// A multiple-choice task file, then its items: the input is the TOML text, a 0 byte, and the
/// data file's content. Only tasks whose data is that file (`data.jsonl` or `data.csv`, as
/// itself or as the few-shot file) read items, so a fuzzed path never reads the machine's files.
pub fn mc_task(data: &[u8]) {
    let (toml, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(toml) else { return };
    let Ok(task) = McTask::from_toml(text, "fuzz.toml") else { return };
    let ours = |p: &str| p == "data.jsonl" || p == "data.csv";
    if !ours(&task.data) || task.subjects.is_some() || task.fewshot.as_ref().is_some_and(|f| !ours(&f.data)) {
        return;
    }
    with_temp_file(&task.data, body, |path| {
        let dir = path.parent().expect("a temporary file has a directory");
        if let Some(f) = &task.fewshot {
            if f.data != task.data {
                let _ = std::fs::write(dir.join(&f.data), body);
            }
        }
        let _ = task.items(dir);
    });
}

/// A data file: with a first byte of 0xFF, one line of IFEval's `input_data.jsonl`; otherwise a
/// training data file ([`keel_data::fuzzing::dataset`]).
pub fn data_file(data: &[u8]) {
    match data.split_first() {
        Some((0xFF, line)) => ifeval_line(line),
        _ => keel_data::fuzzing::dataset(data),
    }
}

/// One line of IFEval's `input_data.jsonl`, scored against a sample response.
fn ifeval_line(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else { return };
    if let Ok(item) = parse_ifeval_line(line) {
        let _ = score(&item, "Hello WORLD. This is a *short* reply, in English.\n\nP.S. done");
    }
}
