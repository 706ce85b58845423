//! A fake Hugging Face Hub for tests of `hf:` models, on [`TestServer`]: repositories in the
//! Hub's URL layout (`/ORG/NAME/resolve/REVISION/FILE`), answered with the headers hf-hub reads
//! (`X-Repo-Commit`, `ETag`), safetensors files redirected to a blob URL as the Hub does for LFS
//! files (with `X-Linked-Etag`), and the Hub's errors: 404 with `X-Error-Code` `RepoNotFound`,
//! `RevisionNotFound` or `EntryNotFound`, 401 `GatedRepo` without the repository's token.

use crate::http::{Request, Response, TestServer};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;

/// One revision of a repository: its commit hash and files.
struct Revision {
    name: String,
    commit: String,
    files: BTreeMap<String, Vec<u8>>,
}

#[derive(Default)]
struct Repository {
    revisions: Vec<Revision>,
    /// A gated repository answers only requests with `Authorization: Bearer TOKEN`.
    token: Option<String>,
}

/// The repositories to serve.
#[derive(Default)]
pub struct FakeHub {
    repos: BTreeMap<String, Repository>,
}

impl FakeHub {
    /// Adds revision `revision` (a branch or tag, at commit `commit`) of `repo` with these files.
    pub fn add(&mut self, repo: &str, revision: &str, commit: &str, files: BTreeMap<String, Vec<u8>>) -> &mut Self {
        let revision = Revision { name: revision.to_string(), commit: commit.to_string(), files };
        self.repos.entry(repo.to_string()).or_default().revisions.push(revision);
        self
    }

    /// Makes `repo` gated: readable only with `token`.
    pub fn gate(&mut self, repo: &str, token: &str) -> &mut Self {
        self.repos.entry(repo.to_string()).or_default().token = Some(token.to_string());
        self
    }

    /// Starts serving; `TestServer::url` is the `HF_ENDPOINT`.
    pub fn serve(self) -> TestServer {
        let mut blobs = HashMap::new();
        for revision in self.repos.values().flat_map(|r| &r.revisions) {
            for body in revision.files.values() {
                blobs.insert(etag(body), body.clone());
            }
        }
        TestServer::start(move |request| self.answer(request, &blobs))
    }

    fn answer(&self, request: &Request, blobs: &HashMap<String, Vec<u8>>) -> Response {
        if let Some(etag) = request.path.strip_prefix("/blobs/") {
            return blobs.get(etag).map_or_else(|| Response::status(404, "no such blob"), |b| Response::ok(b.clone()));
        }
        let parts: Vec<&str> = request.path.trim_start_matches('/').splitn(5, '/').collect();
        let [org, name, "resolve", revision, file] = parts[..] else { return Response::status(404, "not found") };
        // hf-hub escapes the `/` of revisions such as refs/pr/1.
        let revision = revision.replace("%2F", "/");
        let repo = format!("{org}/{name}");
        let Some(repository) = self.repos.get(&repo) else {
            return hub_error(404, "RepoNotFound", "Repository not found");
        };
        if let Some(token) = &repository.token {
            if request.header("authorization") != Some(&format!("Bearer {token}")) {
                let message = format!("Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in.");
                return hub_error(401, "GatedRepo", &message);
            }
        }
        let Some(found) = repository.revisions.iter().find(|r| r.name == revision || r.commit == revision) else {
            return hub_error(404, "RevisionNotFound", &format!("Invalid rev id: {revision}"));
        };
        let Some(body) = found.files.get(file) else {
            return hub_error(404, "EntryNotFound", &format!("{file} does not exist on \"{revision}\""))
                .with_header("X-Repo-Commit", &found.commit);
        };
        let tag = etag(body);
        if file.ends_with(".safetensors") {
            let host = request.header("host").unwrap_or("127.0.0.1");
            return Response::status(302, "")
                .with_header("Location", &format!("http://{host}/blobs/{tag}"))
                .with_header("X-Linked-Etag", &format!("\"{tag}\""))
                .with_header("ETag", "\"pointer\"")
                .with_header("X-Repo-Commit", &found.commit);
        }
        Response::ok(body.clone())
            .with_header("ETag", &format!("\"{tag}\""))
            .with_header("X-Repo-Commit", &found.commit)
    }
}

/// The files of a directory, by name.
pub fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

fn hub_error(status: u16, code: &str, message: &str) -> Response {
    Response::status(status, message).with_header("X-Error-Code", code).with_header("X-Error-Message", message)
}

/// A content hash standing in for the Hub's sha256 ETags: equal bodies share a blob.
fn etag(body: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("{:016x}{:08x}", hasher.finish(), body.len())
}
