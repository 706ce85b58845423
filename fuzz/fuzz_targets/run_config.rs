#![no_main]
//! A run config (TOML, or YAML with a first byte of 0), parsed and validated as `keel train`
//! reads it. The replay test in crates/keel-train/tests/fuzz_replay.rs calls the same.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (name, body) = match data.split_first() {
        Some((0, rest)) => ("run.yaml", rest),
        _ => ("run.toml", data),
    };
    let _ = keel_model::fuzzing::with_temp_file(name, body, |p| keel_train::config::RunConfig::load(p, &[]));
});
