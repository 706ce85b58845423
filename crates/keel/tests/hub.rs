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

/// The README's path for a new user, on the tiny model: a Hub model, trained on the user's own
/// file with a held-out split, scored on that split and the general suite, exported to a GGUF
/// that generates what the trained model does. (llama.cpp reading keel's GGUF is checked by the
/// export fixture of tools/make_llama_cpp_fixtures.py.)
#[test]
fn a_new_users_path_from_a_hub_model_to_a_gguf() {
    let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keel-cli-new-user");
    let (model, data) = tiny_setup(&shared, &shared.join("data"), 24);
    let hf_home = shared.join("hf-home");
    let _ = std::fs::remove_dir_all(&hf_home);
    let mut hub = FakeHub::default();
    hub.add("org/tiny", "main", "0123456789abcdef0123456789abcdef01234567", files_of(&model));
    let server = hub.serve();
    let url = server.url();
    let s = |p: &Path| p.to_str().unwrap().to_string();

    let run = shared.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let config = shared.join("run.toml");
    let text = tiny_config(Path::new("hf:org/tiny"), &data, &run, "").replace("[train]", "holdout = 0.25\n[train]");
    std::fs::write(&config, text).unwrap();
    let out = keel(&url, &hf_home, &[], &["train", "--config", &s(&config)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("held out"), "{}", stderr(&out));

    let results = shared.join("eval");
    let shared_data = keel_testkit::shared_data();
    let suite = format!("domain:{},general", data.display());
    let final_dir = s(&run.join("final"));
    let args = ["eval", "--model", &final_dir, "--suite", &suite, "--holdout", "0.25", "--limit", "2"];
    let tail = ["--max-new-tokens", "4", "--data-dir", &s(&shared_data), "--out", &s(&results)];
    let out = keel(&url, &hf_home, &[], &[&args[..], &tail[..]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("results.json")).unwrap()).unwrap();
    for task in ["data", "arc_easy", "mmlu", "ifeval", "gsm8k", "humaneval"] {
        assert!(r["tasks"][task]["n"].as_u64().is_some_and(|n| n > 0), "{task} not scored: {r}");
    }
    assert!(r["tasks"]["data"]["code_length"].as_f64().is_some(), "{r}");

    let gguf = shared.join("tuned.gguf");
    let out = keel(&url, &hf_home, &[], &["export", &final_dir, "--gguf", &s(&gguf), "--type", "f32"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let generate = |m: &str| {
        let out = keel(
            &url,
            &hf_home,
            &[],
            &["generate", "--model", m, "--prompt", "What is 2 plus 3?", "--max-new-tokens", "8"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    };
    assert_eq!(generate(&s(&gguf)), generate(&final_dir), "the GGUF generates what the trained model does");
}
