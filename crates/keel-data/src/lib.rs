//! keel's data side: tokenizers, chat templates, dataset readers, loss masks and batching.

#![warn(missing_docs)]

pub mod batching;
pub mod chat;
pub mod dataset;
pub mod fetch;
pub mod fuzzing;
pub mod gguf_vocab;
pub mod holdout;
pub mod jsonl;
pub mod mask;
pub mod medcalc;
pub mod tokenizer;

/// Where the data sets live unless a path is given: `$KEEL_DATA`, or `./data` (what
/// `keel data fetch` fills).
pub fn default_data_dir() -> std::path::PathBuf {
    std::env::var_os("KEEL_DATA").filter(|v| !v.is_empty()).map_or_else(|| "data".into(), Into::into)
}

/// What to do about a missing file of the data set `set` (`gsm8k`, `mmlu`, ...; empty: any):
/// the command that downloads it.
pub fn fetch_hint(set: &str) -> String {
    match set {
        "" => "`keel data fetch` downloads the data sets keel knows into $KEEL_DATA (default ./data)".into(),
        set => format!("`keel data fetch {set}` downloads it into $KEEL_DATA (default ./data)"),
    }
}
