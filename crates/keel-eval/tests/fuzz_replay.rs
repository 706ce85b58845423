//! Replays the committed fuzz corpus (fuzz/corpus/<target>, minimized, with every input that
//! once crashed) through the same entry functions the fuzz targets call, so that CI checks
//! every fixed crash without a fuzzer. See RELIABILITY.md.

use std::path::PathBuf;

/// Runs `entry` on every file of the target's corpus; a panic names the file.
fn replay(target: &str, entry: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list the corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            panic!("the fuzz input {} panics", file.display());
        }
    }
}

#[test]
fn replays_the_data_corpus() {
    replay("data", keel_eval::fuzzing::data_file);
}

#[test]
fn replays_the_mc_task_corpus() {
    replay("mc_task", keel_eval::fuzzing::mc_task);
}
