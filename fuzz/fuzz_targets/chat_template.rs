#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_data::fuzzing::chat_template(data));
