//! Replays the committed run-config fuzz corpus (fuzz/corpus/run_config) through the same
//! entry as fuzz/fuzz_targets/run_config.rs: `RunConfig::load` on a TOML file, or on a YAML
//! file when the input starts with a 0 byte. See RELIABILITY.md.

use keel_model::fuzzing::with_temp_file;
use keel_train::config::RunConfig;

fn run_config(data: &[u8]) {
    let (name, body) = match data.split_first() {
        Some((0, rest)) => ("run.yaml", rest),
        _ => ("run.toml", data),
    };
    let _ = with_temp_file(name, body, |p| RunConfig::load(p, &[]));
}

#[test]
fn replays_the_run_config_corpus() {
    keel_testkit::replay_fuzz_corpus("run_config", run_config);
}
