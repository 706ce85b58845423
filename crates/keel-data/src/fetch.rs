//! `keel data fetch`: the data sets keel trains and evaluates on, downloaded from their public
//! sources at pinned revisions, or copied from a mirror (a directory or a URL with the data
//! directory's layout). Every file is checked against its pinned size and sha256 before it
//! appears at its final path: it is streamed into a temporary file beside that path, hashed on
//! the way, and renamed into place only when both match, so a failed or refused fetch leaves
//! nothing half-written. Files already present with the right checksum are not fetched again.

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// The data sets keel knows (`src/data_sets.toml`, compiled in).
const BUILTIN: &str = include_str!("data_sets.toml");

/// The data sets `keel data fetch` can fetch.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// One entry per data set, in the order they are listed and fetched.
    #[serde(rename = "set")]
    pub sets: Vec<DataSet>,
}

/// A named data set: the files of one folder of the data directory.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSet {
    /// What `keel data fetch NAME` calls it (`gsm8k`, `mmlu`, ...).
    pub name: String,
    /// The license its files are under (they keep their upstream licenses).
    pub license: String,
    /// Where it comes from, in words: repository, revision, folder.
    pub source: String,
    /// Set when the files come out of one upstream archive rather than each from its own URL.
    #[serde(default)]
    pub archive: Option<Archive>,
    /// Its files.
    #[serde(rename = "file")]
    pub files: Vec<DataFile>,
}

/// An upstream archive that a data set's files are extracted (and converted) from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    /// Where the (uncompressed) tar archive is downloaded from.
    pub url: String,
    /// How a member becomes the file keel reads.
    pub convert: Conversion,
}

/// How an archive member is turned into the file written to the data directory.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Conversion {
    /// The MMLU authors' CSV (no header; question, four choices, answer letter A-D) to the layout
    /// of the Hugging Face copy `cais/mmlu` (header `question,choice0,...,answer`, answer 0-3).
    MmluCsv,
}

/// One file of a data set, with what pins its content.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// Its path in the data directory (and in a mirror), `/`-separated: `gsm8k/train.jsonl`.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, lower-case hex.
    pub sha256: String,
    /// Where it is downloaded from (a raw URL at a pinned revision), unless it comes from the
    /// set's archive.
    #[serde(default)]
    pub url: Option<String>,
    /// Its member path in the set's archive.
    #[serde(default)]
    pub member: Option<String>,
}

impl Manifest {
    /// The data sets keel knows, with their pinned sources and checksums.
    pub fn builtin() -> Result<Manifest> {
        Manifest::parse(BUILTIN, "keel's built-in data set list")
    }

    /// Reads a manifest from TOML (`origin` names it in errors) and checks that every file has
    /// a safe relative path, a sha256, and exactly one source.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest> {
        let manifest: Manifest = toml::from_str(text).with_context(|| format!("{origin} is invalid"))?;
        let mut names = std::collections::BTreeSet::new();
        for set in &manifest.sets {
            ensure!(names.insert(set.name.as_str()), "{origin}: the data set {} is listed twice", set.name);
            ensure!(!set.files.is_empty(), "{origin}: the data set {} has no files", set.name);
            for f in &set.files {
                let at = format!("{origin}: {} ({})", f.path, set.name);
                ensure!(is_safe_relative(&f.path), "{at}: the path must be relative, without `..`");
                ensure!(
                    f.sha256.len() == 64 && f.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
                    "{at}: sha256 must be 64 lower-case hex digits"
                );
                match (&f.url, &f.member, &set.archive) {
                    (Some(_), None, None) | (None, Some(_), Some(_)) => {}
                    _ => bail!("{at}: a file needs a url, or a member of its set's archive (and not both)"),
                }
            }
        }
        Ok(manifest)
    }

    /// The sets named (all of them when `names` is empty), in the manifest's order. An unknown
    /// name is an error that lists the known ones.
    pub fn select(&self, names: &[String]) -> Result<Vec<&DataSet>> {
        if let Some(unknown) = names.iter().find(|n| !self.sets.iter().any(|s| &s.name == *n)) {
            let known: Vec<&str> = self.sets.iter().map(|s| s.name.as_str()).collect();
            bail!("there is no data set named {unknown:?}; keel knows {}", known.join(", "));
        }
        Ok(self.sets.iter().filter(|s| names.is_empty() || names.contains(&s.name)).collect())
    }
}

fn is_safe_relative(path: &str) -> bool {
    !path.is_empty() && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

/// Where the files come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Each file's pinned public source.
    Upstream,
    /// A local copy of a data directory (`../shared/data`), same layout.
    MirrorDir(PathBuf),
    /// A server holding a data directory's layout: `URL/<path>`.
    MirrorUrl(String),
}

impl Source {
    /// `--mirror DIR|URL`: a URL when it starts with `http://` or `https://`, else a directory.
    pub fn mirror(arg: &str) -> Source {
        if arg.starts_with("http://") || arg.starts_with("https://") {
            Source::MirrorUrl(arg.trim_end_matches('/').to_string())
        } else {
            Source::MirrorDir(PathBuf::from(arg))
        }
    }
}

/// What a fetch did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fetched {
    /// Files written (downloaded or copied, then verified).
    pub written: usize,
    /// Files already present with the right checksum, left alone.
    pub present: usize,
}

/// Fetches every file of `sets` into `data_dir` from `source`, verifying each one's size and
/// sha256 before it is renamed into place. Progress goes to stderr.
pub fn fetch(sets: &[&DataSet], data_dir: &Path, source: &Source) -> Result<Fetched> {
    let mut done = Fetched::default();
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .build();
    for set in sets {
        let mut missing = Vec::new();
        for file in &set.files {
            if is_present(data_dir, file)? {
                done.present += 1;
            } else {
                missing.push(file);
            }
        }
        if missing.is_empty() {
            eprintln!("fetch: {} is present ({} verified)", set.name, files(set.files.len()));
            continue;
        }
        eprintln!(
            "fetch: {} ({} of {}) from {}",
            set.name,
            missing.len(),
            files(set.files.len()),
            describe(set, source)
        );
        match (source, &set.archive) {
            (Source::Upstream, Some(archive)) => fetch_from_archive(&agent, archive, &missing, data_dir)?,
            _ => {
                for file in &missing {
                    let (origin, reader) = open_source(&agent, file, source)?;
                    write_verified(data_dir, file, &origin, reader)?;
                }
            }
        }
        done.written += missing.len();
    }
    Ok(done)
}

fn describe(set: &DataSet, source: &Source) -> String {
    match source {
        Source::Upstream => set.source.clone(),
        Source::MirrorDir(dir) => format!("the mirror {}", dir.display()),
        Source::MirrorUrl(url) => format!("the mirror {url}"),
    }
}

/// Whether `file` is at its final path with its pinned size and sha256. A file that differs is
/// reported and fetched again (it is replaced only by a verified copy).
fn is_present(data_dir: &Path, file: &DataFile) -> Result<bool> {
    let path = data_dir.join(&file.path);
    let Ok(meta) = std::fs::metadata(&path) else { return Ok(false) };
    let same = meta.len() == file.size && {
        let f = std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
        sha256_of(f).with_context(|| format!("cannot read {}", path.display()))? == file.sha256
    };
    if !same {
        eprintln!("fetch: {} differs from its pinned sha256; fetching it again", path.display());
    }
    Ok(same)
}

fn sha256_of(mut reader: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The reader of one file from a mirror or its own upstream URL, with where it comes from.
fn open_source(agent: &ureq::Agent, file: &DataFile, source: &Source) -> Result<(String, Box<dyn Read>)> {
    match source {
        Source::MirrorDir(dir) => {
            let path = dir.join(&file.path);
            let f = std::fs::File::open(&path)
                .with_context(|| format!("cannot read {} from the mirror {}", file.path, dir.display()))?;
            Ok((path.display().to_string(), Box::new(f)))
        }
        Source::MirrorUrl(base) => {
            let url = format!("{base}/{}", file.path);
            Ok((url.clone(), get(agent, &url)?))
        }
        Source::Upstream => {
            let url = file.url.as_deref().context("the file has no url (it comes from an archive)")?;
            Ok((url.to_string(), get(agent, url)?))
        }
    }
}

fn get(agent: &ureq::Agent, url: &str) -> Result<Box<dyn Read>> {
    match agent.get(url).call() {
        Ok(response) => Ok(response.into_reader()),
        Err(ureq::Error::Status(code, response)) => {
            bail!("GET {url}: HTTP {code} {}", response.status_text())
        }
        Err(e) => Err(anyhow::Error::new(e)
            .context(format!("cannot download {url} (no network? `--mirror DIR|URL` reads an offline copy instead)"))),
    }
}

/// A temporary file beside a final path, removed unless it is renamed into place.
struct TempFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl TempFile {
    fn beside(path: &Path) -> Result<TempFile> {
        let dir = path.parent().context("a data file needs a parent directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let name = path.file_name().context("a data file needs a name")?.to_string_lossy();
        let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
        let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(TempFile { path: tmp, file: Some(file) })
    }

    fn persist(mut self, to: &Path) -> Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all().with_context(|| format!("cannot write {}", self.path.display()))?;
        }
        std::fs::rename(&self.path, to)
            .with_context(|| format!("cannot move {} to {}", self.path.display(), to.display()))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        // Gone already after a successful rename; nothing else to do if removal fails.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Streams `reader` into a temporary file beside `file`'s final path, hashing it, and renames it
/// into place only when its size and sha256 are the pinned ones.
fn write_verified(data_dir: &Path, file: &DataFile, origin: &str, mut reader: impl Read) -> Result<()> {
    let path = data_dir.join(&file.path);
    let mut tmp = TempFile::beside(&path)?;
    let mut sink = HashingWriter {
        inner: tmp.file.as_mut().context("the temporary file is closed")?,
        hasher: Sha256::new(),
        progress: ByteProgress::new(&file.path, file.size),
    };
    std::io::copy(&mut reader, &mut sink).with_context(|| format!("while fetching {} from {origin}", file.path))?;
    let (size, sha256) = (sink.progress.done, hex(&sink.hasher.finalize()));
    if size != file.size || sha256 != file.sha256 {
        bail!(
            "refusing {}: what {origin} gave has sha256 {sha256} ({size} bytes), not the pinned {} ({} bytes); \
             nothing was written. The source changed or the transfer was damaged: retry, or fetch from a \
             verified copy with --mirror",
            file.path,
            file.sha256,
            file.size
        );
    }
    sink.progress.finish();
    tmp.persist(&path)
}

/// Writes through to a file, hashing and counting (with progress) on the way.
struct HashingWriter<'a> {
    inner: &'a mut std::fs::File,
    hasher: Sha256,
    progress: ByteProgress,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.progress.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `fetch: PATH  done/total MB` on stderr every few seconds while a file streams (total 0:
/// unknown), and a line when it is verified.
struct ByteProgress {
    label: String,
    total: u64,
    done: u64,
    last_print: Instant,
}

impl ByteProgress {
    const EVERY: Duration = Duration::from_secs(3);

    fn new(label: &str, total: u64) -> ByteProgress {
        ByteProgress { label: label.to_string(), total, done: 0, last_print: Instant::now() }
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if self.last_print.elapsed() >= Self::EVERY {
            self.last_print = Instant::now();
            match self.total {
                0 => eprintln!("fetch: {}  {}", self.label, megabytes(self.done)),
                total => eprintln!("fetch: {}  {} / {}", self.label, megabytes(self.done), megabytes(total)),
            }
        }
    }

    fn finish(&self) {
        eprintln!("fetch: {}  {}, sha256 verified", self.label, megabytes(self.done));
    }
}

fn files(n: usize) -> String {
    format!("{n} file{}", if n == 1 { "" } else { "s" })
}

fn megabytes(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// Downloads the set's archive into the data directory (a temporary file, removed afterwards),
/// then extracts, converts and verifies each missing member.
fn fetch_from_archive(agent: &ureq::Agent, archive: &Archive, missing: &[&DataFile], data_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let mut tmp = TempFile::beside(&data_dir.join("archive.tar"))?;
    let file = tmp.file.as_mut().context("the temporary file is closed")?;
    // The archive itself is not pinned (its checksum is unknown here); what is written from it is.
    let mut progress = ByteProgress::new(&archive.url, 0);
    let mut reader = get(agent, &archive.url)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).with_context(|| format!("while downloading {}", archive.url))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).with_context(|| format!("cannot write {}", tmp.path.display()))?;
        progress.advance(n as u64);
    }
    file.flush()?;
    eprintln!("fetch: {}  {} downloaded; extracting", archive.url, megabytes(progress.done));
    let mut wanted: BTreeMap<&str, &DataFile> =
        missing.iter().filter_map(|f| Some((f.member.as_deref()?, *f))).collect();
    let tar = std::fs::File::open(&tmp.path).with_context(|| format!("cannot read {}", tmp.path.display()))?;
    let mut entries = tar::Archive::new(tar);
    for entry in entries.entries().with_context(|| format!("{} is not a tar archive", archive.url))? {
        let mut entry = entry.with_context(|| format!("{} is not a valid tar archive", archive.url))?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let Some(file) = wanted.remove(name.as_str()) else { continue };
        let mut raw = Vec::new();
        entry.read_to_end(&mut raw).with_context(|| format!("cannot read {name} from {}", archive.url))?;
        let converted = match archive.convert {
            Conversion::MmluCsv => mmlu_csv(&raw).with_context(|| format!("converting {name} of {}", archive.url))?,
        };
        write_verified(data_dir, file, &format!("{name} of {} (converted)", archive.url), converted.as_slice())?;
    }
    if let Some(member) = wanted.keys().next() {
        bail!("{} has no member {member}", archive.url);
    }
    Ok(())
}

/// The MMLU authors' CSV (rows of question, four choices, answer letter; no header) as the
/// `cais/mmlu` layout keel reads: a header, the answer as an index 0-3, fields quoted only where
/// needed, LF line ends.
pub fn mmlu_csv(raw: &[u8]) -> Result<Vec<u8>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(raw);
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    writer.write_record(["question", "choice0", "choice1", "choice2", "choice3", "answer"])?;
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("row {}: malformed CSV", i + 1))?;
        ensure!(record.len() == 6, "row {}: {} fields, expected 6 (question, 4 choices, answer)", i + 1, record.len());
        let answer = match &record[5] {
            "A" => "0",
            "B" => "1",
            "C" => "2",
            "D" => "3",
            other => bail!("row {}: answer {other:?}, expected A, B, C or D", i + 1),
        };
        writer.write_record(record.iter().take(5).chain([answer]))?;
    }
    writer.into_inner().map_err(|e| anyhow::anyhow!("cannot write CSV: {e}"))
}

/// `keel data fetch --list`: each set with its license and source, then its files and sizes.
pub fn list(sets: &[&DataSet]) -> String {
    let mut out = String::new();
    for set in sets {
        let bytes: u64 = set.files.iter().map(|f| f.size).sum();
        out.push_str(&format!(
            "{}  ({}, {})  license: {}\n  source: {}\n",
            set.name,
            files(set.files.len()),
            megabytes(bytes),
            set.license,
            set.source
        ));
        if let Some(archive) = &set.archive {
            out.push_str(&format!("  archive: {}\n", archive.url));
        }
        for f in &set.files {
            let from = f.url.as_deref().or(f.member.as_deref()).unwrap_or_default();
            out.push_str(&format!("  {:>10}  {}  {}\n", f.size, f.path, from));
        }
    }
    out
}
