//! Replays the committed fuzz corpus (fuzz/corpus/<target>, minimized, with every input that
//! once crashed) through the same entry functions the fuzz targets call, so that CI checks
//! every fixed crash without a fuzzer. See RELIABILITY.md.

use keel_testkit::replay_fuzz_corpus as replay;

#[test]
fn replays_the_gguf_vocab_corpus() {
    replay("gguf_vocab", keel_data::fuzzing::gguf_vocab);
}

#[test]
fn replays_the_tokenizer_json_corpus() {
    replay("tokenizer_json", keel_data::fuzzing::tokenizer_json);
}

#[test]
fn replays_the_chat_template_corpus() {
    replay("chat_template", keel_data::fuzzing::chat_template);
}
