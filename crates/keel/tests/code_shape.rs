//! The habits of a kept codebase that a compiler does not check: no function in keel's sources
//! runs over 100 lines (after rustfmt, which `.ci/run` checks first).

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 100;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Functions longer than `MAX_LINES`, as `file:line name (lines)`. A function starts at a line
/// whose code begins with `fn` (after visibility and qualifiers) and ends at the first later line
/// that is `}` at the same indentation, as rustfmt lays them out.
fn long_functions(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = line.len() - code.len();
        let head = ["pub(crate) ", "pub(super) ", "pub ", "const ", "async ", "unsafe ", "extern \"C\" "]
            .iter()
            .fold(code, |c, p| c.strip_prefix(p).unwrap_or(c));
        // A declaration without a body (a trait's or an extern block's) ends in `;`.
        let signature_end = lines[i..].iter().find(|l| l.ends_with('{') || l.ends_with(';') || l.ends_with('}'));
        if !head.starts_with("fn ") || signature_end.is_none_or(|l| l.ends_with(';')) {
            continue;
        }
        let close = " ".repeat(indent) + "}";
        if let Some(end) = lines[i..].iter().position(|l| *l == close) {
            if end + 1 > MAX_LINES {
                let name = head[3..].split(['(', '<']).next().unwrap_or("");
                found.push(format!("{}:{} {name} ({} lines)", path.display(), i + 1, end + 1));
            }
        }
    }
    found
}

#[test]
fn no_function_is_over_100_lines() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let long: Vec<String> = files.iter().flat_map(|f| long_functions(f)).collect();
    assert!(long.is_empty(), "functions over {MAX_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn the_checker_finds_a_long_function() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("code_shape");
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = (0..MAX_LINES).map(|i| format!("    let _x{i} = {i};\n")).collect();
    let file = dir.join("long.rs");
    std::fs::write(&file, format!("pub fn long() {{\n{body}}}\n\nfn short() {{}}\n")).unwrap();
    let found = long_functions(&file);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("long (102 lines)"), "{found:?}");
}
