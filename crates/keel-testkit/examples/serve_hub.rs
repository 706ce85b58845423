//! Serves a model directory as a Hugging Face Hub repository on a local port, for trying `hf:`
//! paths end to end where the Hub cannot be reached (docs/new-user-path.md):
//!   cargo run -p keel-testkit --example serve_hub -- ORG/NAME DIR
//! prints the endpoint to give keel as HF_ENDPOINT, then serves until killed.

use keel_testkit::hub::{files_of, FakeHub};
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo, dir] = &args[..] else {
        eprintln!("usage: serve_hub ORG/NAME DIR   (DIR: config.json, *.safetensors, tokenizer files)");
        std::process::exit(2);
    };
    let files = files_of(Path::new(dir));
    if !files.contains_key("config.json") {
        eprintln!("serve_hub: {dir} has no config.json: give a Hugging Face model directory (keel convert makes one)");
        std::process::exit(2);
    }
    let mut hub = FakeHub::default();
    hub.add(repo, "main", "0123456789abcdef0123456789abcdef01234567", files);
    let server = hub.serve();
    println!("{}", server.url());
    eprintln!("serving {dir} as {repo}@main at {}; Ctrl-C stops", server.url());
    loop {
        std::thread::park();
    }
}
