//! Replays the committed fuzz corpus (fuzz/corpus/<target>, minimized, with every input that
//! once crashed) through the same entry functions the fuzz targets call, so that CI checks
//! every fixed crash without a fuzzer. See RELIABILITY.md.

use keel_testkit::replay_fuzz_corpus as replay;

#[test]
fn replays_the_data_corpus() {
    replay("data", keel_eval::fuzzing::data_file);
}

#[test]
fn replays_the_mc_task_corpus() {
    replay("mc_task", keel_eval::fuzzing::mc_task);
}
