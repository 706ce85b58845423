//! Models on the Hugging Face Hub: `hf:ORG/NAME[@REVISION]` names a model repository, which
//! [`resolve`] turns into a snapshot directory of the Hub's standard cache
//! (`$HF_HOME/hub/models--ORG--NAME/snapshots/COMMIT`) holding its config, tokenizer files and
//! safetensors weights. Files the cache lacks are downloaded through the hf-hub crate; files it
//! has are used without asking the Hub, so a cached model loads offline and without a request.

use anyhow::{anyhow, bail, ensure, Context, Result};
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, CacheRepo, Repo, RepoType};
use serde_json::Value;
use std::fmt;
use std::fs::File;
use std::path::{Component, Path, PathBuf};

/// How a model path names a Hub repository.
pub const PREFIX: &str = "hf:";

/// The Hub's address when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A model repository on the Hub at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubModel {
    /// `ORG/NAME`.
    pub repo: String,
    /// A branch, tag or commit hash; `main` when the spec names none.
    pub revision: String,
}

impl HubModel {
    /// The Hub model a model path names when it starts with `hf:` (an error when the rest is
    /// malformed); `None` for a local path.
    pub fn from_path(path: &Path) -> Option<Result<Self>> {
        let spec = path.to_str()?;
        spec.starts_with(PREFIX).then(|| Self::parse(spec))
    }

    /// Parses `hf:ORG/NAME` or `hf:ORG/NAME@REVISION`.
    pub fn parse(spec: &str) -> Result<Self> {
        let usage = || {
            anyhow!(
                "{spec:?} is not a Hub model: write hf:ORG/NAME or hf:ORG/NAME@REVISION \
                 (e.g. hf:HuggingFaceTB/SmolLM2-135M-Instruct)"
            )
        };
        let rest = spec.strip_prefix(PREFIX).ok_or_else(usage)?;
        let (repo, revision) = rest.split_once('@').unwrap_or((rest, "main"));
        // The characters the Hub allows in repository names.
        let valid_part = |p: &str| {
            !matches!(p, "" | "." | "..") && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        let (org, name) = repo.split_once('/').ok_or_else(usage)?;
        ensure!(valid_part(org) && valid_part(name), usage());
        // A revision becomes a path under the cache's refs/ (`refs/pr/1` is one), so no `..`.
        let valid_revision = revision.split('/').all(|p| !matches!(p, "" | "." | ".."))
            && !revision.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\');
        ensure!(valid_revision, "{spec:?}: {revision:?} is not a revision (a branch, tag or commit hash)");
        Ok(HubModel { repo: repo.to_string(), revision: revision.to_string() })
    }

    /// The repository's name without its organization.
    pub fn name(&self) -> &str {
        self.repo.rsplit('/').next().unwrap_or(&self.repo)
    }
}

impl fmt::Display for HubModel {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{PREFIX}{}@{}", self.repo, self.revision)
    }
}

/// Where the Hub and its cache are; [`HubOptions::from_env`] reads the variables the Hub's own
/// clients read, tests set the fields.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// The Hub's address, without a trailing slash (`HF_ENDPOINT`).
    pub endpoint: String,
    /// The cache holding `models--ORG--NAME` folders (`HF_HUB_CACHE`, else `$HF_HOME/hub`).
    pub cache_dir: PathBuf,
    /// Sent as `Authorization: Bearer` for gated and private models (`HF_TOKEN`, else the token
    /// `huggingface-cli login` saved in `$HF_HOME/token`).
    pub token: Option<String>,
    /// Use only the cache, never the network (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Draw a progress bar on stderr for each download and say what was downloaded.
    pub progress: bool,
}

impl HubOptions {
    /// The options the environment sets, with the defaults of Python's `huggingface_hub`
    /// (`$HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`).
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let hf_home = match var("HF_HOME") {
            Some(home) => PathBuf::from(home),
            None => var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|home| Path::new(&home).join(".cache")))
                .context("cannot place the Hugging Face cache: set HF_HOME (HOME is not set)")?
                .join("huggingface"),
        };
        let saved_token = || std::fs::read_to_string(hf_home.join("token")).ok().filter(|t| !t.trim().is_empty());
        let token = var("HF_TOKEN").or_else(saved_token).map(|t| t.trim().to_string());
        let offline = var("HF_HUB_OFFLINE")
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true"));
        Ok(HubOptions {
            endpoint: var("HF_ENDPOINT").unwrap_or(DEFAULT_ENDPOINT.to_string()).trim_end_matches('/').to_string(),
            cache_dir: var("HF_HUB_CACHE").map(PathBuf::from).unwrap_or_else(|| hf_home.join("hub")),
            token,
            offline,
            progress: true,
        })
    }
}

/// The snapshot directory holding `model`'s `config.json`, `tokenizer.json`,
/// `tokenizer_config.json` (when the repository has one: it carries the chat template) and
/// safetensors weights (every shard of a sharded checkpoint), downloading what the cache lacks.
pub fn resolve(model: &HubModel, options: &HubOptions) -> Result<PathBuf> {
    let mut fetch = Fetch::new(model, options)?;
    // A download moves the revision's ref when the branch has moved on since the cache last saw
    // it: the files found before then belong to the old snapshot, and a second pass gathers the
    // new one.
    for _ in 0..2 {
        let files = fetch.gather()?;
        let snapshot = fetch.snapshot()?;
        if files.iter().all(|f| f.starts_with(&snapshot)) {
            if options.progress && fetch.downloaded_files > 0 {
                let (count, bytes) = (fetch.downloaded_files, fetch.downloaded_bytes);
                let noun = if count == 1 { "file" } else { "files" };
                eprintln!(
                    "downloaded {count} {noun} of {model} ({:.1} MB) into {}",
                    bytes as f64 / 1e6,
                    snapshot.display()
                );
            }
            return Ok(snapshot);
        }
    }
    bail!("{model} moved to a new commit twice while it was downloading: run again")
}

/// What the cache knows of one file at the revision's commit.
enum Cached {
    File(PathBuf),
    /// The Hub answered that the repository has no such file (a `.no_exist` marker, as Python's
    /// `huggingface_hub` writes).
    Absent,
    Unknown,
}

/// Why a download failed.
enum Failure {
    /// The repository (at this revision) has no such file.
    NoFile,
    Other(anyhow::Error),
}

/// One resolution: the cache first, then the Hub for what it lacks.
struct Fetch<'a> {
    model: &'a HubModel,
    options: &'a HubOptions,
    /// `$cache/models--ORG--NAME`.
    folder: PathBuf,
    cache: CacheRepo,
    /// `None` offline.
    api: Option<ApiRepo>,
    /// Held from the first download on, so that keel processes loading the same model at once
    /// (a sweep's jobs) download it once: hf-hub's own lock gives up after five seconds.
    lock: Option<File>,
    downloaded_files: usize,
    downloaded_bytes: u64,
}

impl<'a> Fetch<'a> {
    fn new(model: &'a HubModel, options: &'a HubOptions) -> Result<Self> {
        let repo = Repo::with_revision(model.repo.clone(), RepoType::Model, model.revision.clone());
        let cache = Cache::new(options.cache_dir.clone());
        let api = if options.offline {
            None
        } else {
            let api = ApiBuilder::from_cache(cache.clone())
                .with_endpoint(options.endpoint.clone())
                .with_token(options.token.clone())
                .with_progress(options.progress)
                .build()
                .context("cannot set up the Hub client")?;
            Some(api.repo(repo.clone()))
        };
        Ok(Fetch {
            model,
            options,
            folder: options.cache_dir.join(repo.folder_name()),
            cache: cache.repo(repo),
            api,
            lock: None,
            downloaded_files: 0,
            downloaded_bytes: 0,
        })
    }

    /// Every file the model needs, as paths in the cache.
    fn gather(&mut self) -> Result<Vec<PathBuf>> {
        let mut files = vec![self.require("config.json")?];
        // Before tokenizer.json, so that once that is cached, whether the repository has this
        // one is known too.
        files.extend(self.get("tokenizer_config.json")?);
        files.push(self.require("tokenizer.json")?);
        if let Some(single) = self.get("model.safetensors")? {
            files.push(single);
            return Ok(files);
        }
        let Some(index) = self.get("model.safetensors.index.json")? else {
            if self.options.offline {
                bail!("{}", self.not_cached("model.safetensors or model.safetensors.index.json"));
            }
            bail!(
                "{} has neither model.safetensors nor model.safetensors.index.json on {}: keel reads \
                 safetensors weights only (a repository with pytorch_model.bin alone cannot be loaded)",
                self.model,
                self.options.endpoint
            );
        };
        for shard in shard_names(&index)? {
            files.push(self.require(&shard)?);
        }
        files.push(index);
        Ok(files)
    }

    /// The snapshot directory of the commit the revision's ref names.
    fn snapshot(&self) -> Result<PathBuf> {
        let commit = self.commit().with_context(|| format!("the cache {} lost its ref", self.folder.display()))?;
        Ok(self.folder.join("snapshots").join(commit))
    }

    /// The commit the cache last saw at the revision.
    fn commit(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.folder.join("refs").join(&self.model.revision)).ok()?;
        Some(text.trim().to_string())
    }

    /// A file the model cannot do without.
    fn require(&mut self, name: &str) -> Result<PathBuf> {
        match self.get(name)? {
            Some(path) => Ok(path),
            None if self.options.offline => bail!("{}", self.not_cached(name)),
            None => bail!(
                "{} has no {name} on {}: keel loads a model from config.json, tokenizer.json and safetensors weights",
                self.model,
                self.options.endpoint
            ),
        }
    }

    fn not_cached(&self, name: &str) -> String {
        format!(
            "{} is not in the cache {} ({name} is missing) and HF_HUB_OFFLINE is set: run once without \
             HF_HUB_OFFLINE to download it",
            self.model,
            self.options.cache_dir.display()
        )
    }

    /// A file from the cache, else from the Hub; `None` when the repository has no such file
    /// (offline: when the cache does not have it).
    fn get(&mut self, name: &str) -> Result<Option<PathBuf>> {
        match self.look_up(name) {
            Cached::File(path) => return Ok(Some(path)),
            Cached::Absent => return Ok(None),
            Cached::Unknown => {}
        }
        let Some(api) = &self.api else { return Ok(None) };
        if self.lock.is_none() {
            self.lock = Some(lock_repo(&self.options.cache_dir, &self.folder)?);
            // Another process may have downloaded it while this one waited for the lock.
            if let Cached::File(path) = self.look_up(name) {
                return Ok(Some(path));
            }
        }
        match api.download(name) {
            Ok(path) => {
                self.downloaded_files += 1;
                self.downloaded_bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                Ok(Some(path))
            }
            Err(error) => match self.explain(name, &api.url(name), error) {
                Failure::NoFile => {
                    self.mark_absent(name);
                    Ok(None)
                }
                Failure::Other(error) => Err(error),
            },
        }
    }

    fn look_up(&self, name: &str) -> Cached {
        if let Some(path) = self.cache.get(name) {
            return Cached::File(path);
        }
        match self.commit() {
            Some(commit) if self.folder.join(".no_exist").join(&commit).join(name).exists() => Cached::Absent,
            _ => Cached::Unknown,
        }
    }

    /// Remembers that the repository lacks `name`, so the next load asks no more. Best effort:
    /// without the marker the next load asks again.
    fn mark_absent(&self, name: &str) {
        let Some(commit) = self.commit() else { return };
        let marker = self.folder.join(".no_exist").join(commit).join(name);
        if let Some(dir) = marker.parent() {
            let _ = std::fs::create_dir_all(dir).and_then(|()| File::create(&marker));
        }
    }

    /// hf-hub's error as what happened and what to do about it.
    fn explain(&self, name: &str, url: &str, error: ApiError) -> Failure {
        let (model, endpoint) = (self.model, &self.options.endpoint);
        let repo = &model.repo;
        let response = match error {
            ApiError::RequestError(request) => match *request {
                ureq::Error::Status(status, response) => (status, response),
                ureq::Error::Transport(transport) => {
                    return Failure::Other(anyhow!(
                        "cannot reach {endpoint} to download {name} of {model}: {transport} (without a network, \
                         set HF_HUB_OFFLINE=1 to use only the cache {})",
                        self.options.cache_dir.display()
                    ))
                }
            },
            ApiError::MissingHeader(header) => {
                return Failure::Other(anyhow!(
                    "{endpoint} answered {url} without the {header} header the Hub sends: does HF_ENDPOINT point at a Hugging Face Hub?"
                ))
            }
            other => {
                return Failure::Other(
                    anyhow::Error::new(other).context(format!("cannot download {name} of {model} from {endpoint}")),
                )
            }
        };
        let (status, response) = response;
        // The Hub says which of repository, revision or file is missing (`X-Error-Code`), and
        // answers 401 for a repository that does not exist, so as not to reveal private ones.
        let code = response.header("x-error-code").unwrap_or_default().to_string();
        // What the server answered, after the advice.
        let answer = match response.header("x-error-message") {
            Some(message) => format!("{endpoint} answered {status} for {name}: {message}"),
            None => format!("{endpoint} answered {status} for {name}"),
        };
        let token_hint = match self.options.token {
            None => "set HF_TOKEN to an access token of an account that may read it",
            Some(_) => "check that HF_TOKEN belongs to an account that may read it",
        };
        Failure::Other(match (status, code.as_str()) {
            (_, "RepoNotFound") => {
                anyhow!("no model {repo} on {endpoint}: check the name; if it is private, {token_hint} ({answer})")
            }
            (_, "RevisionNotFound") => anyhow!(
                "no model {repo} at revision {} on {endpoint}: check the revision, a branch, tag or commit hash ({answer})",
                model.revision
            ),
            (_, "GatedRepo") | (401 | 403, _) => {
                anyhow!("{repo} is gated or private: accept its terms on {endpoint}/{repo} and {token_hint} ({answer})")
            }
            (404, _) if code == "EntryNotFound" || name != "config.json" => return Failure::NoFile,
            (404, _) => {
                anyhow!("no model {repo} at revision {} on {endpoint}: check the name and revision", model.revision)
            }
            _ => anyhow!("{answer} ({url}): try again later"),
        })
    }
}

/// Waits until no other keel process is downloading into this repository's cache folder.
fn lock_repo(cache_dir: &Path, folder: &Path) -> Result<File> {
    let dir = cache_dir.join(".locks").join(folder.file_name().unwrap_or_default());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("keel.lock");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

/// The shard files a `model.safetensors.index.json` names, each once.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).with_context(|| format!("cannot read {}", index.display()))?;
    let json: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", index.display()))?;
    let map = json
        .get("weight_map")
        .and_then(Value::as_object)
        .with_context(|| format!("{} has no \"weight_map\"", index.display()))?;
    let mut names: Vec<String> = map.values().filter_map(Value::as_str).map(String::from).collect();
    names.sort();
    names.dedup();
    for name in &names {
        // The name becomes a path in the cache: it must stay inside the snapshot.
        ensure!(
            Path::new(name).components().all(|c| matches!(c, Component::Normal(_))),
            "{}: the shard {name:?} is not a file of the repository",
            index.display()
        );
    }
    Ok(names)
}
