//! Replays the committed fuzz corpus (fuzz/corpus/<target>, minimized, with every input that
//! once crashed) through the same entry functions the fuzz targets call, so that CI checks
//! every fixed crash without a fuzzer. See RELIABILITY.md.

use keel_testkit::replay_fuzz_corpus as replay;

#[test]
fn replays_the_gguf_corpus() {
    replay("gguf", keel_model::fuzzing::gguf);
}

#[test]
fn replays_the_safetensors_corpus() {
    replay("safetensors", keel_model::fuzzing::safetensors);
}
