//! `keel data fetch` as a user meets it: the list, unknown names, a verified copy from a mirror
//! directory into --data-dir or $KEEL_DATA, and a re-run that writes nothing.

use keel_testkit::shared_data;
use std::path::PathBuf;
use std::process::Command;

fn keel() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
    c.current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")).env_remove("KEEL_DATA");
    c
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn list_shows_every_set_with_its_license_and_source() {
    let out = keel().args(["data", "fetch", "--list"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["gsm8k", "medcalc_bench", "ifeval", "humaneval", "arc", "boolq", "mmlu"] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} is listed: {text}");
    }
    assert!(text.contains("CC-BY-SA-4.0") && text.contains("raw.githubusercontent.com/openai/grade-school-math/"));

    let out = keel().args(["data", "fetch", "gsm8k", "hellaswag"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"hellaswag\"") && err.contains("medcalc_bench"), "{err}");
}

#[test]
fn a_mirror_directory_is_copied_verified_and_a_rerun_writes_nothing() {
    let dest = scratch("fetched-data");
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(keel()
        .args(["data", "fetch", "gsm8k", "humaneval", "--mirror"])
        .arg(shared_data())
        .arg("--data-dir")
        .arg(&dest));
    assert!(err.contains("5 written, 0 already there"), "{err}");
    for file in ["gsm8k/train.jsonl", "gsm8k/test.jsonl", "gsm8k/LICENSE", "humaneval/HumanEval.jsonl.gz"] {
        let shared = shared_data().join(file);
        assert_eq!(std::fs::read(dest.join(file)).unwrap(), std::fs::read(shared).unwrap(), "{file}");
    }
    let err = run(keel()
        .args(["data", "fetch", "gsm8k", "humaneval", "--mirror"])
        .arg(shared_data())
        .arg("--data-dir")
        .arg(&dest));
    assert!(err.contains("0 written, 5 already there"), "{err}");

    // $KEEL_DATA is the default destination.
    let env_dest = scratch("fetched-data-env");
    run(keel().args(["data", "fetch", "ifeval", "--mirror"]).arg(shared_data()).env("KEEL_DATA", &env_dest));
    assert!(env_dest.join("ifeval/input_data.jsonl").exists());
}
