//! Replays the committed run-config fuzz corpus (fuzz/corpus/run_config) through the same
//! entry as fuzz/fuzz_targets/run_config.rs: `RunConfig::load` on a TOML file, or on a YAML
//! file when the input starts with a 0 byte. See RELIABILITY.md.

use keel_model::fuzzing::with_temp_file;
use keel_train::config::RunConfig;
use std::path::PathBuf;

fn run_config(data: &[u8]) {
    let (name, body) = match data.split_first() {
        Some((0, rest)) => ("run.yaml", rest),
        _ => ("run.toml", data),
    };
    let _ = with_temp_file(name, body, |p| RunConfig::load(p, &[]));
}

#[test]
fn replays_the_run_config_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/run_config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list the corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        if std::panic::catch_unwind(|| run_config(&data)).is_err() {
            panic!("the fuzz input {} panics", file.display());
        }
    }
}
