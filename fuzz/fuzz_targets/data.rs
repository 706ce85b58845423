#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_eval::fuzzing::data_file(data));
