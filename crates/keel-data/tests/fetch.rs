//! `keel data fetch` against a local HTTP server and local mirrors: verified downloads, skipped
//! re-runs, refused checksum mismatches that leave nothing behind, clear 404s, the MMLU
//! conversion, and the built-in list's checksums against the shared data.

use keel_data::fetch::{fetch, mmlu_csv, Fetched, Manifest, Source};
use keel_testkit::http::{Response, TestServer};
use keel_testkit::shared_data;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fetch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `dir`, relative, `/`-separated, sorted (temporary files included).
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// Two small synthetic files, as a set named `tiny`.
fn tiny_files() -> BTreeMap<&'static str, Vec<u8>> {
    BTreeMap::from([
        ("tiny/a.jsonl", b"{\"question\": \"1+1\", \"answer\": \"#### 2\"}\n".to_vec()),
        ("tiny/sub/b.txt", (0..200_000u32).map(|i| (i % 251) as u8).collect()),
    ])
}

/// A manifest of `files` as the set `tiny`, each downloaded from `base/files/<path>`, with the
/// pinned checksums of `pinned` (the real bytes unless a test wants a mismatch).
fn manifest(base: &str, pinned: &BTreeMap<&str, Vec<u8>>) -> Manifest {
    let mut text = String::from("[[set]]\nname = \"tiny\"\nlicense = \"MIT\"\nsource = \"a test server\"\n");
    for (path, bytes) in pinned {
        text.push_str(&format!(
            "[[set.file]]\npath = \"{path}\"\nsize = {}\nsha256 = \"{}\"\nurl = \"{base}/files/{path}\"\n",
            bytes.len(),
            sha256(bytes)
        ));
    }
    Manifest::parse(&text, "the test manifest").unwrap()
}

/// Serves `files` under `/files/` and `/mirror/`; anything else is a 404.
fn serve(files: BTreeMap<&'static str, Vec<u8>>) -> TestServer {
    let files = Arc::new(files);
    TestServer::start(move |req| {
        let path = req.path.strip_prefix("/files/").or_else(|| req.path.strip_prefix("/mirror/"));
        match path.and_then(|p| files.get(p)) {
            Some(body) => Response::ok(body.clone()),
            None => Response::status(404, "not found"),
        }
    })
}

#[test]
fn downloads_are_verified_and_a_rerun_fetches_nothing() {
    let server = serve(tiny_files());
    let m = manifest(&server.url(), &tiny_files());
    let dir = scratch("download");
    let sets = m.select(&[]).unwrap();
    assert_eq!(fetch(&sets, &dir, &Source::Upstream).unwrap(), Fetched { written: 2, present: 0 });
    for (path, bytes) in tiny_files() {
        assert_eq!(std::fs::read(dir.join(path)).unwrap(), bytes, "{path}");
    }
    assert_eq!(files_under(&dir), vec!["tiny/a.jsonl", "tiny/sub/b.txt"], "no temporary file is left");
    let gets = server.requests().len();
    assert_eq!(gets, 2);

    assert_eq!(fetch(&sets, &dir, &Source::Upstream).unwrap(), Fetched { written: 0, present: 2 });
    assert_eq!(server.requests().len(), gets, "a re-run downloads nothing");

    // A damaged copy is fetched again and replaced by a verified one.
    std::fs::write(dir.join("tiny/a.jsonl"), "damaged").unwrap();
    assert_eq!(fetch(&sets, &dir, &Source::Upstream).unwrap(), Fetched { written: 1, present: 1 });
    assert_eq!(std::fs::read(dir.join("tiny/a.jsonl")).unwrap(), tiny_files()["tiny/a.jsonl"]);
}

#[test]
fn a_checksum_mismatch_is_refused_and_leaves_nothing_behind() {
    let server = serve(tiny_files());
    let mut pinned = tiny_files();
    // The server sends other bytes than the ones pinned for b.txt (same size, so only the hash tells).
    pinned.get_mut("tiny/sub/b.txt").unwrap()[1000] ^= 1;
    let m = manifest(&server.url(), &pinned);
    let dir = scratch("mismatch");
    let err = format!("{:#}", fetch(&m.select(&[]).unwrap(), &dir, &Source::Upstream).unwrap_err());
    let (expected, actual) = (sha256(&pinned["tiny/sub/b.txt"]), sha256(&tiny_files()["tiny/sub/b.txt"]));
    for part in ["tiny/sub/b.txt", &format!("{}/files/tiny/sub/b.txt", server.url()), &expected, &actual, "--mirror"] {
        assert!(err.contains(part), "the error names {part}: {err}");
    }
    assert!(!dir.join("tiny/sub/b.txt").exists(), "nothing at the final path");
    assert_eq!(files_under(&dir), vec!["tiny/a.jsonl"], "no temporary file is left: only the verified a.jsonl");

    // A wrong size is refused the same way.
    let mut short = tiny_files();
    short.get_mut("tiny/a.jsonl").unwrap().push(b'\n');
    let dir = scratch("mismatch-size");
    let err = format!(
        "{:#}",
        fetch(&manifest(&server.url(), &short).select(&[]).unwrap(), &dir, &Source::Upstream).unwrap_err()
    );
    assert!(err.contains("refusing tiny/a.jsonl") && err.contains("bytes"), "{err}");
    assert!(files_under(&dir).is_empty(), "{:?}", files_under(&dir));
}

#[test]
fn a_404_names_the_url() {
    let server = serve(BTreeMap::new());
    let m = manifest(&server.url(), &tiny_files());
    let dir = scratch("404");
    let err = format!("{:#}", fetch(&m.select(&[]).unwrap(), &dir, &Source::Upstream).unwrap_err());
    assert!(err.contains(&format!("GET {}/files/tiny/a.jsonl", server.url())) && err.contains("404"), "{err}");
    assert!(files_under(&dir).is_empty(), "{:?}", files_under(&dir));
}

#[test]
fn mirrors_are_read_by_relative_path_and_verified() {
    // A directory with the data directory's layout.
    let mirror = scratch("mirror-dir-src");
    for (path, bytes) in tiny_files() {
        std::fs::create_dir_all(mirror.join(path).parent().unwrap()).unwrap();
        std::fs::write(mirror.join(path), bytes).unwrap();
    }
    // Upstream URLs that would fail: a mirror must not touch them.
    let m = manifest("http://127.0.0.1:9", &tiny_files());
    let dir = scratch("mirror-dir");
    let from_dir = Source::mirror(mirror.to_str().unwrap());
    assert_eq!(from_dir, Source::MirrorDir(mirror.clone()));
    assert_eq!(fetch(&m.select(&[]).unwrap(), &dir, &from_dir).unwrap(), Fetched { written: 2, present: 0 });
    assert_eq!(std::fs::read(dir.join("tiny/sub/b.txt")).unwrap(), tiny_files()["tiny/sub/b.txt"]);

    // A damaged mirror copy is refused like a damaged download.
    std::fs::write(mirror.join("tiny/a.jsonl"), "{}\n").unwrap();
    let dir = scratch("mirror-dir-damaged");
    let err = format!("{:#}", fetch(&m.select(&[]).unwrap(), &dir, &from_dir).unwrap_err());
    assert!(err.contains("refusing tiny/a.jsonl") && err.contains(&mirror.display().to_string()), "{err}");
    assert!(files_under(&dir).is_empty(), "{:?}", files_under(&dir));

    // A server with the same layout: URL/<path>, with or without a trailing slash.
    let server = serve(tiny_files());
    let from_url = Source::mirror(&format!("{}/mirror/", server.url()));
    assert_eq!(from_url, Source::MirrorUrl(format!("{}/mirror", server.url())));
    let dir = scratch("mirror-url");
    assert_eq!(fetch(&m.select(&[]).unwrap(), &dir, &from_url).unwrap(), Fetched { written: 2, present: 0 });
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/mirror/tiny/a.jsonl", "/mirror/tiny/sub/b.txt"]);
}

#[test]
fn names_select_sets_and_an_unknown_name_lists_the_known_ones() {
    let m = Manifest::builtin().unwrap();
    let names: Vec<&str> = m.sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["gsm8k", "medcalc_bench", "ifeval", "humaneval", "arc", "boolq", "mmlu"]);
    let picked: Vec<&str> =
        m.select(&["mmlu".into(), "gsm8k".into()]).unwrap().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(picked, ["gsm8k", "mmlu"]);
    let err = format!("{:#}", m.select(&["gsm8k".into(), "hellaswag".into()]).unwrap_err());
    assert!(err.contains("\"hellaswag\"") && err.contains("gsm8k, medcalc_bench, ifeval"), "{err}");
    let listing = keel_data::fetch::list(&m.select(&["humaneval".into()]).unwrap());
    assert!(listing.contains("humaneval") && listing.contains("MIT") && listing.contains("44877"), "{listing}");
}

#[test]
fn a_manifest_with_an_unsafe_path_or_no_source_is_refused() {
    let file = |extra: &str| {
        format!(
            "[[set]]\nname = \"x\"\nlicense = \"MIT\"\nsource = \"s\"\n[[set.file]]\nsize = 1\nsha256 = \"{}\"\n{extra}",
            "0".repeat(64)
        )
    };
    for (extra, why) in [
        ("path = \"../x\"\nurl = \"http://h/x\"\n", "relative"),
        ("path = \"/etc/x\"\nurl = \"http://h/x\"\n", "relative"),
        ("path = \"x/y\"\n", "needs a url"),
        ("path = \"x/y\"\nmember = \"y\"\n", "needs a url"),
    ] {
        let err = format!("{:#}", Manifest::parse(&file(extra), "m.toml").unwrap_err());
        assert!(err.contains(why), "{extra}: {err}");
    }
}

/// A tar archive holding MMLU-style members in the authors' layout.
fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *bytes).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn archive_members_are_converted_then_verified() {
    let raw = b"What is 2+2?,3,4,5,\"6, or more\",B\n\"Say \"\"hi\"\"\",a,b,c,d,D\n";
    let converted =
        "question,choice0,choice1,choice2,choice3,answer\nWhat is 2+2?,3,4,5,\"6, or more\",1\n\"Say \"\"hi\"\"\",a,b,c,d,3\n";
    let tar = tar_of(&[("data/dev/x_dev.csv", raw), ("data/val/x_val.csv", b"q,a,b,c,d,A\n")]);
    let server = TestServer::start(move |req| match req.path.as_str() {
        "/data.tar" => Response::ok(tar.clone()),
        _ => Response::status(404, "not found"),
    });
    let text = |sha: &str| {
        format!(
            "[[set]]\nname = \"mmlu\"\nlicense = \"MIT\"\nsource = \"s\"\narchive = {{ url = \"{}/data.tar\", convert = \"mmlu-csv\" }}\n\
             [[set.file]]\npath = \"mmlu/dev/x_dev.csv\"\nsize = {}\nsha256 = \"{sha}\"\nmember = \"data/dev/x_dev.csv\"\n",
            server.url(),
            converted.len()
        )
    };
    let m = Manifest::parse(&text(&sha256(converted.as_bytes())), "m").unwrap();
    let dir = scratch("archive");
    assert_eq!(fetch(&m.select(&[]).unwrap(), &dir, &Source::Upstream).unwrap(), Fetched { written: 1, present: 0 });
    assert_eq!(std::fs::read_to_string(dir.join("mmlu/dev/x_dev.csv")).unwrap(), converted);
    assert_eq!(files_under(&dir), vec!["mmlu/dev/x_dev.csv"], "the archive is not left behind");

    // A conversion that does not give the pinned bytes is refused; neither it nor the archive stays.
    let m = Manifest::parse(&text(&"0".repeat(64)), "m").unwrap();
    let dir = scratch("archive-mismatch");
    let err = format!("{:#}", fetch(&m.select(&[]).unwrap(), &dir, &Source::Upstream).unwrap_err());
    assert!(err.contains("refusing mmlu/dev/x_dev.csv") && err.contains("data.tar"), "{err}");
    assert!(files_under(&dir).is_empty(), "{:?}", files_under(&dir));

    assert!(format!("{:#}", mmlu_csv(b"q,a,b,c,d,E\n").unwrap_err()).contains("answer \"E\""));
    assert!(format!("{:#}", mmlu_csv(b"q,a,b,c,A\n").unwrap_err()).contains("5 fields"));
}

/// The conversion reproduces the shared MMLU CSVs byte for byte from their content in the
/// authors' layout (no header, answer letters): quoting and line ends are the shared copy's.
#[test]
fn the_mmlu_conversion_reproduces_the_shared_csvs() {
    let m = Manifest::builtin().unwrap();
    let mmlu = m.select(&["mmlu".into()]).unwrap()[0];
    for file in &mmlu.files {
        let shared = std::fs::read(shared_data().join(&file.path)).unwrap();
        let mut reader = csv::Reader::from_reader(shared.as_slice());
        let mut authors = csv::WriterBuilder::new().from_writer(Vec::new());
        for record in reader.records() {
            let record = record.unwrap();
            let letter = ["A", "B", "C", "D"][record[5].parse::<usize>().unwrap()];
            authors.write_record(record.iter().take(5).chain([letter])).unwrap();
        }
        let authors = authors.into_inner().unwrap();
        assert!(mmlu_csv(&authors).unwrap() == shared, "{} is not reproduced", file.path);
    }
}

/// Every pinned size and sha256 is the shared copy's, and every shared file is listed.
#[test]
fn the_builtin_list_matches_the_shared_data() {
    let m = Manifest::builtin().unwrap();
    let mut listed = Vec::new();
    for set in &m.sets {
        for file in &set.files {
            let bytes = std::fs::read(shared_data().join(&file.path)).unwrap();
            assert_eq!(bytes.len() as u64, file.size, "{}", file.path);
            assert_eq!(sha256(&bytes), file.sha256, "{}", file.path);
            listed.push(file.path.clone());
        }
    }
    listed.sort();
    let mut shared = files_under(&shared_data());
    shared.retain(|p| p != "README.md");
    assert_eq!(listed, shared);
}
