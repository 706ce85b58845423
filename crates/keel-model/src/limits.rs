//! Bounds on sizes that come from files or from the command line: every size is computed with
//! checked arithmetic and compared with the machine's memory before anything is allocated, so
//! that a crafted file or a typo gives an error naming the culprit instead of an abort.

use anyhow::{bail, Context, Result};
use std::fmt::Display;
use std::sync::OnceLock;

/// The machine's physical memory in bytes (`MemTotal`), or `u64::MAX` where it cannot be read.
pub fn memory_bytes() -> u64 {
    static TOTAL: OnceLock<u64> = OnceLock::new();
    *TOTAL.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                kib.checked_mul(1024)
            })
            .unwrap_or(u64::MAX)
    })
}

/// Refuses `bytes` that exceed the machine's memory; `what` names what would be allocated.
pub fn ensure_fits(bytes: u128, what: impl Display) -> Result<()> {
    let total = memory_bytes();
    if bytes > total as u128 {
        bail!(
            "{what} would need {:.1} GiB, more than this machine's {:.1} GiB of memory (a corrupt file or a size typo?)",
            bytes as f64 / (1u64 << 30) as f64,
            total as f64 / (1u64 << 30) as f64
        );
    }
    Ok(())
}

/// The number of elements of `shape`, refusing a product that overflows.
pub fn numel(shape: &[usize], what: impl Display) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .with_context(|| format!("{what}: the shape {shape:?} has more elements than can be counted"))
}

/// The product of `factors` in u128 (which cannot overflow for a few usize factors), saturating.
pub fn product(factors: &[usize]) -> u128 {
    factors.iter().fold(1u128, |acc, &f| acc.saturating_mul(f as u128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_overflow_and_more_than_memory() {
        assert_eq!(numel(&[2, 3, 4], "t").unwrap(), 24);
        let err = numel(&[1 << 40, 1 << 40], "tensor x").unwrap_err().to_string();
        assert!(err.contains("tensor x"), "{err}");
        assert!(ensure_fits(1 << 20, "a small buffer").is_ok());
        let err = ensure_fits(product(&[1 << 40, 1 << 40]), "the weights").unwrap_err().to_string();
        assert!(err.contains("the weights") && err.contains("GiB"), "{err}");
    }
}
