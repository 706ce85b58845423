//! `hf:ORG/NAME[@REVISION]` models, fetched from a fake Hub on a local server (keel_testkit::hub)
//! into a cache per test: revisions, sharded weights, the Hub's errors, gated models, offline use.

use keel_infer::hub::{resolve, HubModel, HubOptions};
use keel_infer::pretrained::Pretrained;
use keel_model::safetensors::write_f32;
use keel_model::Transformer;
use keel_testkit::http::{Response, TestServer};
use keel_testkit::hub::{files_of, FakeHub};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const MAIN_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const V1_COMMIT: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// The tiny model's files (main), another tiny model without tokenizer_config.json (tag v1),
/// and the first one's weights in two shards with their index.
struct Fixtures {
    main: PathBuf,
    v1: PathBuf,
    sharded: PathBuf,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keel-infer-hub");
        let (main, _) = keel_testkit::tiny_setup(&shared, &shared.join("data"), 1);
        let mut pre = Pretrained::load(&main).unwrap();
        let v1 = fresh(&shared.join("tiny-v1"));
        let sharded = fresh(&shared.join("tiny-sharded"));
        write_shards(&pre.model, &sharded);
        for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(main.join(file), sharded.join(file)).unwrap();
        }
        pre.model = Transformer::init_random(pre.model.config.clone(), 12, 0.05);
        pre.save_hf(&v1).unwrap();
        std::fs::remove_file(v1.join("tokenizer_config.json")).unwrap();
        Fixtures { main, v1, sharded }
    })
}

fn fresh(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    dir.to_path_buf()
}

fn write_shards(model: &Transformer, dir: &Path) {
    let tensors: Vec<(&str, &[usize], &[f32])> = model
        .layout
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice(), &model.params[t.range.clone()]))
        .collect();
    let (first, second) = tensors.split_at(tensors.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [first, second].into_iter().enumerate() {
        let shard = format!("model-0000{}-of-00002.safetensors", i + 1);
        write_f32(&dir.join(&shard), part, &HashMap::new()).unwrap();
        for (name, _, _) in part {
            weight_map.insert(name.to_string(), shard.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": model.params.len() * 4}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

/// The fake Hub with org/tiny (main and v1), org/sharded, org/gated (token "hf_secret") and
/// org/pytorch (weights as pytorch_model.bin only).
fn hub() -> TestServer {
    let f = fixtures();
    let mut hub = FakeHub::default();
    hub.add("org/tiny", "main", MAIN_COMMIT, files_of(&f.main))
        .add("org/tiny", "v1", V1_COMMIT, files_of(&f.v1))
        .add("org/sharded", "main", MAIN_COMMIT, files_of(&f.sharded))
        .add("org/gated", "main", MAIN_COMMIT, files_of(&f.main))
        .gate("org/gated", "hf_secret");
    let mut pytorch = files_of(&f.main);
    pytorch.remove("model.safetensors");
    pytorch.insert("pytorch_model.bin".into(), b"pickle".to_vec());
    hub.add("org/pytorch", "main", MAIN_COMMIT, pytorch);
    hub.serve()
}

fn options(endpoint: &str, test: &str) -> HubOptions {
    let cache_dir = fresh(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keel-infer-hub/caches").join(test));
    HubOptions { endpoint: endpoint.to_string(), cache_dir, token: None, offline: false, progress: false }
}

fn fetch(spec: &str, options: &HubOptions) -> anyhow::Result<PathBuf> {
    resolve(&HubModel::parse(spec)?, options)
}

fn error(spec: &str, options: &HubOptions) -> String {
    format!("{:#}", fetch(spec, options).expect_err(spec))
}

fn assert_same_weights(dir: &Path, reference: &Path) {
    let (got, want) = (Pretrained::load(dir).unwrap(), Pretrained::load(reference).unwrap());
    assert!(
        got.model.params == want.model.params,
        "{} holds other weights than {}",
        dir.display(),
        reference.display()
    );
    let text = "What is 12 plus 7?";
    assert_eq!(got.tokenizer.encode(text, true).unwrap(), want.tokenizer.encode(text, true).unwrap());
}

#[test]
fn specs_parse_and_malformed_ones_say_how_to_write_them() {
    let parse = |s: &str| HubModel::parse(s).map(|m| (m.repo, m.revision));
    assert_eq!(parse("hf:org/name").unwrap(), ("org/name".into(), "main".into()));
    assert_eq!(parse("hf:HuggingFaceTB/SmolLM2-135M-Instruct@v1.0").unwrap().1, "v1.0");
    assert_eq!(parse("hf:org/name@refs/pr/1").unwrap().1, "refs/pr/1");
    assert_eq!(HubModel::parse("hf:org/name").unwrap().to_string(), "hf:org/name@main");
    for bad in ["hf:", "hf:name", "hf:org/name/extra", "hf:org/", "hf:../name", "hf:org/na me"] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains("hf:ORG/NAME or hf:ORG/NAME@REVISION"), "{bad}: {e}");
    }
    for bad in ["hf:org/name@", "hf:org/name@../../x", "hf:org/name@a b"] {
        assert!(parse(bad).unwrap_err().to_string().contains("is not a revision"), "{bad}");
    }
    assert!(HubModel::from_path(Path::new("models/SmolLM2.gguf")).is_none());
    assert!(HubModel::from_path(Path::new("hf:org/name")).unwrap().is_ok());
}

#[test]
fn a_model_downloads_into_the_cache_once_then_loads_offline_without_requests() {
    let server = hub();
    let options = options(&server.url(), "download");
    let dir = fetch("hf:org/tiny", &options).unwrap();
    let folder = options.cache_dir.join("models--org--tiny");
    assert_eq!(dir, folder.join("snapshots").join(MAIN_COMMIT));
    assert_eq!(std::fs::read_to_string(folder.join("refs/main")).unwrap(), MAIN_COMMIT);
    assert_same_weights(&dir, &fixtures().main);
    let loaded = Pretrained::load(&dir).unwrap();
    assert!(loaded.chat_template.is_some(), "tokenizer_config.json came along");
    // The weights came through the Hub's LFS redirect.
    assert!(server.requests().iter().any(|r| r.path.starts_with("/blobs/")));

    let before = server.requests().len();
    assert_eq!(fetch("hf:org/tiny", &options).unwrap(), dir);
    assert_eq!(fetch("hf:org/tiny", &HubOptions { offline: true, ..options.clone() }).unwrap(), dir);
    assert_eq!(server.requests().len(), before, "a cached model loads without asking the Hub");
}

#[test]
fn a_revision_loads_that_revision() {
    let server = hub();
    let options = options(&server.url(), "revision");
    let v1 = fetch("hf:org/tiny@v1", &options).unwrap();
    assert_eq!(v1, options.cache_dir.join("models--org--tiny/snapshots").join(V1_COMMIT));
    assert_same_weights(&v1, &fixtures().v1);
    assert!(Pretrained::load(&v1).unwrap().chat_template.is_none(), "v1 has no tokenizer_config.json");
    let by_commit = fetch(&format!("hf:org/tiny@{MAIN_COMMIT}"), &options).unwrap();
    assert_same_weights(&by_commit, &fixtures().main);
    assert_same_weights(&fetch("hf:org/tiny", &options).unwrap(), &fixtures().main);

    // The Hub's "no tokenizer_config.json at v1" is remembered: the next load asks nothing.
    let before = server.requests().len();
    fetch("hf:org/tiny@v1", &options).unwrap();
    fetch("hf:org/tiny@v1", &HubOptions { offline: true, ..options.clone() }).unwrap();
    assert_eq!(server.requests().len(), before);
}

#[test]
fn a_branch_that_moved_since_an_interrupted_download_loads_its_new_commit_whole() {
    let server = hub();
    let options = options(&server.url(), "moved");
    let old = fetch("hf:org/tiny", &options).unwrap();
    // The weights never arrived, and main has moved to another commit since.
    std::fs::remove_file(old.join("model.safetensors")).unwrap();
    let mut moved = FakeHub::default();
    moved.add("org/tiny", "main", V1_COMMIT, files_of(&fixtures().v1));
    let moved = moved.serve();
    let dir = fetch("hf:org/tiny", &HubOptions { endpoint: moved.url(), ..options.clone() }).unwrap();
    assert_eq!(dir, options.cache_dir.join("models--org--tiny/snapshots").join(V1_COMMIT));
    assert_same_weights(&dir, &fixtures().v1);
    assert!(Pretrained::load(&dir).unwrap().chat_template.is_none(), "nothing of the old commit came along");
}

#[test]
fn a_sharded_model_loads_as_its_single_file_does() {
    let server = hub();
    let dir = fetch("hf:org/sharded", &options(&server.url(), "sharded")).unwrap();
    for file in ["model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    {
        assert!(dir.join(file).is_file(), "{file}");
    }
    assert_same_weights(&dir, &fixtures().main);
}

#[test]
fn missing_models_revisions_and_weights_are_clear_errors() {
    let server = hub();
    let options = options(&server.url(), "missing");
    let url = server.url();
    let e = error("hf:org/missing", &options);
    assert!(e.contains(&format!("no model org/missing on {url}")) && e.contains("check the name"), "{e}");
    let e = error("hf:org/tiny@nope", &options);
    assert!(e.contains(&format!("no model org/tiny at revision nope on {url}")), "{e}");
    let e = error("hf:org/pytorch", &options);
    assert!(
        e.contains("neither model.safetensors nor model.safetensors.index.json") && e.contains("pytorch_model.bin"),
        "{e}"
    );

    // A server that answers 404 without the Hub's error codes.
    let bare = TestServer::start(|_| Response::status(404, "Not Found"));
    let e = error("hf:org/tiny@v2", &HubOptions { endpoint: bare.url(), ..options.clone() });
    assert!(
        e.contains(&format!("no model org/tiny at revision v2 on {}: check the name and revision", bare.url())),
        "{e}"
    );

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = format!("http://127.0.0.1:{port}");
    let e = error("hf:org/tiny", &HubOptions { endpoint: closed.clone(), ..options.clone() });
    assert!(e.contains(&format!("cannot reach {closed}")) && e.contains("HF_HUB_OFFLINE=1"), "{e}");
}

#[test]
fn a_gated_model_needs_the_token() {
    let server = hub();
    let options = options(&server.url(), "gated");
    let e = error("hf:org/gated", &options);
    assert!(
        e.contains("org/gated is gated or private") && e.contains("accept its terms") && e.contains("set HF_TOKEN"),
        "{e}"
    );
    let e = error("hf:org/gated", &HubOptions { token: Some("hf_wrong".into()), ..options.clone() });
    assert!(e.contains("check that HF_TOKEN"), "{e}");

    let before = server.requests().len();
    let dir = fetch("hf:org/gated", &HubOptions { token: Some("hf_secret".into()), ..options.clone() }).unwrap();
    assert_same_weights(&dir, &fixtures().main);
    let hub_requests: Vec<_> =
        server.requests().into_iter().skip(before).filter(|r| r.path.starts_with("/org/")).collect();
    assert!(!hub_requests.is_empty());
    assert!(hub_requests.iter().all(|r| r.header("authorization") == Some("Bearer hf_secret")));
}

#[test]
fn offline_a_model_not_in_the_cache_is_a_clear_error() {
    let server = hub();
    let options = HubOptions { offline: true, ..options(&server.url(), "offline") };
    let e = error("hf:org/tiny", &options);
    assert!(e.contains("hf:org/tiny@main is not in the cache") && e.contains("config.json"), "{e}");
    assert!(e.contains("run once without HF_HUB_OFFLINE"), "{e}");
    assert!(server.requests().is_empty());
}

#[test]
fn pretrained_load_reads_hf_paths() {
    // Pretrained::load takes the HF_* variables (the CLI's tests set them); a malformed spec
    // fails before they matter.
    let e = Pretrained::load(Path::new("hf:no-slash")).err().unwrap().to_string();
    assert!(e.contains("is not a Hub model"), "{e}");
}
