//! Progress lines on stderr for long jobs: done/total, throughput and ETA, at most every few
//! seconds (and always at the end) so logs stay readable.

use std::time::{Duration, Instant};

/// Reports `label  done/total  rate  ETA` as work advances.
pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    tokens: usize,
    started: Instant,
    last_print: Option<Instant>,
    every: Duration,
    quiet: bool,
}

impl Progress {
    /// Progress over `total` items, printed under `label` at most every 5 s (and when done).
    pub fn new(label: &str, total: usize) -> Self {
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            tokens: 0,
            started: Instant::now(),
            last_print: None,
            every: Duration::from_secs(5),
            quiet: false,
        }
    }

    /// Counts without printing (tests, library callers).
    pub fn quiet() -> Self {
        Progress { quiet: true, ..Progress::new("", 0) }
    }

    /// For work whose size is known only once it starts (deduplicated requests).
    pub fn set_total(&mut self, total: usize) {
        self.total = total;
    }

    /// Tokens processed so far: the sum of `advance`'s `tokens`.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Records `items` more finished and `tokens` more processed.
    pub fn advance(&mut self, items: usize, tokens: usize) {
        self.done += items;
        self.tokens += tokens;
        let due = self.last_print.is_none_or(|t| t.elapsed() >= self.every);
        if !self.quiet && (due || self.done >= self.total) {
            self.last_print = Some(Instant::now());
            eprintln!("{}", self.line());
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let left = (self.total.saturating_sub(self.done)) as f64 * secs / self.done.max(1) as f64;
        format!(
            "{}  {}/{}  {:.0} tok/s  {}  ETA {}",
            self.label,
            self.done,
            self.total,
            self.tokens as f64 / secs,
            format_duration(secs),
            format_duration(left)
        )
    }
}

/// `1m05s` or `2h03m`.
pub fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_minutes_or_hours() {
        assert_eq!(format_duration(65.4), "1m05s");
        assert_eq!(format_duration(7380.0), "2h03m");
        assert_eq!(format_duration(-3.0), "0m00s");
    }
}
