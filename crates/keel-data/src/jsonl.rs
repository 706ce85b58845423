//! JSON Lines, read so that every problem names `file:line`: a line that is not UTF-8, a
//! byte-order mark past the start of the file, or a line that is not JSON.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

const BOM: &str = "\u{feff}";

/// The non-blank lines of a JSONL text, each with its 1-based line number. A BOM at the very
/// start is skipped (editors on Windows write one); at the start of a later line (files
/// concatenated) it is an error, since `serde_json` would reject the line without saying why.
/// Inside a line it is content: U+FEFF is also the zero-width no-break space, and Wikipedia
/// text (BoolQ's passages) holds it inside JSON strings.
pub fn lines(origin: &Path, bytes: &[u8]) -> Result<Vec<(usize, String)>> {
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(raw).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}: not valid UTF-8 (byte {} of the line); save the file as UTF-8",
                origin.display(),
                i + 1,
                e.valid_up_to() + 1
            )
        })?;
        let line = if i == 0 { line.strip_prefix(BOM).unwrap_or(line) } else { line };
        if line.trim_start_matches([' ', '\t']).starts_with(BOM) {
            bail!(
                "{}:{}: a byte-order mark (U+FEFF) inside the file (were files saved with a BOM concatenated?); remove it",
                origin.display(),
                i + 1
            );
        }
        if !line.trim().is_empty() {
            out.push((i + 1, line.trim_end_matches('\r').to_string()));
        }
    }
    Ok(out)
}

/// Reads `path` and parses each non-blank line as JSON, naming `file:line` on any error.
/// `hint` says where the file should come from when it cannot be read.
pub fn read_values(path: &Path, hint: &str) -> Result<Vec<(usize, Value)>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {} ({hint})", path.display()))?;
    parse_values(path, &bytes)
}

/// Parses each non-blank line of `bytes` as JSON; `origin` names the file in messages.
pub fn parse_values(origin: &Path, bytes: &[u8]) -> Result<Vec<(usize, Value)>> {
    lines(origin, bytes)?
        .into_iter()
        .map(|(n, line)| {
            let v = serde_json::from_str(&line).with_context(|| format!("{}:{n}: not valid JSON", origin.display()))?;
            Ok((n, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_and_a_bom_name_the_line() {
        let p = Path::new("d.jsonl");
        let err = parse_values(p, b"{\"a\": 1}\n\n{\"a\": \"\xff\"}\n").unwrap_err().to_string();
        assert!(err.contains("d.jsonl:3") && err.contains("UTF-8"), "{err}");
        let err = parse_values(p, "{\"a\": 1}\n\u{feff}{\"a\": 2}\n".as_bytes()).unwrap_err().to_string();
        assert!(err.contains("d.jsonl:2") && err.contains("byte-order mark"), "{err}");
        let inside = parse_values(p, "{\"a\": \"30N\u{feff} / \u{feff}98W\"}\n".as_bytes()).unwrap();
        assert_eq!(inside[0].1["a"], "30N\u{feff} / \u{feff}98W", "U+FEFF inside a string is content");
        let ok = parse_values(p, "\u{feff}{\"a\": 1}\r\n{\"a\": 2}".as_bytes()).unwrap();
        assert_eq!(ok.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2], "a leading BOM and CRLF are fine");
        let err = parse_values(p, b"{\"a\": 1}\nnot json\n").unwrap_err().to_string();
        assert!(err.contains("d.jsonl:2"), "{err}");
    }
}
