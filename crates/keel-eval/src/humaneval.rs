//! HumanEval: the model completes a Python function; the program (the completion with the
//! task's tests) runs in the sandbox of [`crate::sandbox`] (its docs give the threat model),
//! with a time limit. Where no sandbox can be made, HumanEval is refused.

use anyhow::{Context, Result};
use regex::Regex;
use std::io::Read;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

/// One HumanEval problem, with the fields of `HumanEval.jsonl`.
#[derive(Clone, Debug)]
pub struct HumanEvalTask {
    /// `HumanEval/N`.
    pub task_id: String,
    /// The function's signature and docstring, which the model continues.
    pub prompt: String,
    /// The name of the function the tests call.
    pub entry_point: String,
    /// The unit tests, a `check(candidate)` function.
    pub test: String,
}

/// Reads `humaneval/HumanEval.jsonl.gz`.
pub fn read_tasks(data_dir: &Path) -> Result<Vec<HumanEvalTask>> {
    let path = data_dir.join("humaneval/HumanEval.jsonl.gz");
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot read {} ({})", path.display(), keel_data::fetch_hint("humaneval")))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{} is not valid gzip", path.display()))?;
    keel_data::jsonl::parse_values(&path, &bytes)?
        .into_iter()
        .map(|(n, v)| {
            let f = |k: &str| {
                v[k].as_str().map(String::from).with_context(|| format!("{}:{n}: no \"{k}\"", path.display()))
            };
            Ok(HumanEvalTask {
                task_id: f("task_id")?,
                prompt: f("prompt")?,
                entry_point: f("entry_point")?,
                test: f("test")?,
            })
        })
        .collect()
}

/// What the model is asked.
pub fn instruction(task: &HumanEvalTask) -> String {
    format!("Complete the following Python function. Reply with the whole function in a ```python code block.\n\n```python\n{}```", task.prompt)
}

static CODE_BLOCK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)```(?:python|py)?\s*\n(.*?)(?:```|$)").expect("valid regex"));

/// The program to run: the response's first code block (else the response), preceded by the
/// task's prompt when the response does not define the function itself, then the tests.
pub fn program(task: &HumanEvalTask, response: &str) -> String {
    let code = CODE_BLOCK.captures(response).map_or(response, |c| c.get(1).map_or("", |m| m.as_str()));
    let body = if code.contains(&format!("def {}", task.entry_point)) {
        code.to_string()
    } else {
        format!("{}{code}", task.prompt)
    };
    format!("{body}\n\n{}\n\ncheck({})\n", task.test, task.entry_point)
}

/// Runs `program` in the sandbox; true when it runs to its end and exits 0 within `limit`.
pub fn passes(program: &str, limit: Duration) -> Result<bool> {
    Ok(crate::sandbox::run(program, limit)?.passed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn task() -> HumanEvalTask {
        HumanEvalTask {
            task_id: "t/0".into(),
            prompt: "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n".into(),
            entry_point: "add".into(),
            test: "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n".into(),
        }
    }

    #[test]
    fn correct_wrong_endless_and_hostile_code() {
        if let Err(e) = crate::sandbox::probe("bwrap") {
            eprintln!("skipped: no sandbox here, so HumanEval is refused: {e:#}");
            return;
        }
        let t = task();
        let limit = Duration::from_secs(5);
        assert!(passes(&program(&t, "```python\ndef add(a, b):\n    return a + b\n```"), limit).unwrap());
        assert!(passes(&program(&t, "    return a + b\n"), limit).unwrap(), "a bare body continues the prompt");
        assert!(!passes(&program(&t, "```python\ndef add(a, b):\n    return a - b\n```"), limit).unwrap());
        assert!(!passes(&program(&t, ""), limit).unwrap(), "empty output is wrong");
        assert!(!passes(&program(&t, "this is not python at all ((("), limit).unwrap());
        let started = Instant::now();
        assert!(!passes(
            &program(&t, "```python\ndef add(a, b):\n    while True:\n        pass\n```"),
            Duration::from_secs(1)
        )
        .unwrap());
        assert!(started.elapsed() < Duration::from_secs(4), "an endless program is killed at the limit");
        let exits_early = "```python\nimport sys\nsys.exit(0)\n```";
        assert!(!passes(&program(&t, exits_early), limit).unwrap(), "exiting before the tests is not passing");
        let spams = "```python\ndef add(a, b):\n    print('x' * 10_000_000)\n    return a + b\n```";
        assert!(passes(&program(&t, spams), limit).unwrap(), "large output neither blocks nor fails a correct program");
    }
}
