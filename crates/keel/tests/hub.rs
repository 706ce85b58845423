//! `--model hf:ORG/NAME` and a run config's `path = "hf:ORG/NAME"`: the binary fetches from
//! HF_ENDPOINT into HF_HOME, sends HF_TOKEN, and with HF_HUB_OFFLINE uses only the cache.

use keel_infer::pretrained::Pretrained;
use keel_testkit::hub::{files_of, FakeHub};
use keel_testkit::{tiny_config, tiny_setup};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn keel(endpoint: &str, hf_home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
    c.current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."));
    for var in ["HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE"] {
        c.env_remove(var);
    }
    c.env("HF_ENDPOINT", endpoint).env("HF_HOME", hf_home).envs(env.iter().copied());
    c.args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn generate_convert_and_train_load_a_hub_model_through_the_hf_variables() {
    let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keel-cli-hub");
    let (model, data) = tiny_setup(&shared, &shared.join("data"), 8);
    let hf_home = shared.join("hf-home");
    let _ = std::fs::remove_dir_all(&hf_home);
    let mut hub = FakeHub::default();
    hub.add("org/tiny", "main", "0123456789abcdef0123456789abcdef01234567", files_of(&model))
        .gate("org/tiny", "hf_secret");
    let server = hub.serve();
    let url = server.url();
    let generate = ["generate", "--model", "hf:org/tiny", "--prompt", "What is 2 plus 3?", "--max-new-tokens", "6"];

    let out = keel(&url, &hf_home, &[("HF_HUB_OFFLINE", "1")], &generate);
    assert!(!out.status.success() && stderr(&out).contains("is not in the cache"), "{}", stderr(&out));
    assert!(server.requests().is_empty(), "offline asks nothing");

    let out = keel(&url, &hf_home, &[], &generate);
    assert!(!out.status.success() && stderr(&out).contains("org/tiny is gated or private"), "{}", stderr(&out));

    let out = keel(&url, &hf_home, &[("HF_TOKEN", "hf_secret")], &generate);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("downloaded 4 files of hf:org/tiny@main"), "{}", stderr(&out));
    assert!(hf_home.join("hub/models--org--tiny/refs/main").is_file());
    let local = keel(
        &url,
        &hf_home,
        &[],
        &["generate", "--model", model.to_str().unwrap(), "--prompt", "What is 2 plus 3?", "--max-new-tokens", "6"],
    );
    assert_eq!(out.stdout, local.stdout, "the Hub's copy generates as the local one does");

    let requests = server.requests().len();
    let converted = shared.join("converted");
    let out =
        keel(&url, &hf_home, &[("HF_HUB_OFFLINE", "1")], &["convert", "hf:org/tiny", converted.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.requests().len(), requests, "offline, the cached model loads without a request");
    assert!(Pretrained::load(&converted).unwrap().model.params == Pretrained::load(&model).unwrap().model.params);

    let run = shared.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let config = shared.join("run.toml");
    std::fs::write(&config, tiny_config(Path::new("hf:org/tiny"), &data, &run, "")).unwrap();
    let out = keel(&url, &hf_home, &[("HF_HUB_OFFLINE", "1")], &["train", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(run.join("final/model.safetensors").is_file());
}
