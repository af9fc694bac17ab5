//! Human output: aligned tables and short ages. JSON output is in [`crate::json`].
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

/// `--output`
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned, human-readable text.
    Table,
    /// One JSON document (shapes in docs/rvcctl-json.md).
    Json,
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), crate::CtlError> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A text table whose columns are padded to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
            right: vec![false; header.len()],
        }
    }

    /// Right-aligns column `i` (numbers).
    pub fn right(mut self, cols: &[usize]) -> Self {
        for &c in cols {
            if let Some(r) = self.right.get_mut(c) {
                *r = true;
            }
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.header).chain(self.rows.iter()) {
            let mut text = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = line.get(i).map(String::as_str).unwrap_or("");
                let pad = w.saturating_sub(cell.chars().count());
                let last = i + 1 == n;
                if self.right[i] {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    if !last {
                        text.push_str(&" ".repeat(pad));
                    }
                }
                if !last {
                    text.push_str("  ");
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        }
        out
    }
}

/// `3d 4h`, `12m 5s`, `40s`.
pub fn human_secs(secs: f64) -> String {
    let s = secs.max(0.0).round() as i64;
    let (d, h, m, s) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `12m 5s ago` / `in 40s`.
pub fn relative(t: DateTime<Utc>) -> String {
    let secs = (Utc::now() - t).num_milliseconds() as f64 / 1000.0;
    if secs >= 0.0 {
        format!("{} ago", human_secs(secs))
    } else {
        format!("in {}", human_secs(-secs))
    }
}

/// `2024-05-01 10:00:00Z (12m 5s ago)`
pub fn when(t: DateTime<Utc>) -> String {
    format!("{} ({})", t.format("%Y-%m-%d %H:%M:%SZ"), relative(t))
}

pub fn opt_when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), when)
}

/// First line of `s`, at most `max` characters.
pub fn clip(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() <= max && line.len() == s.len() {
        return line.to_owned();
    }
    let cut: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

pub fn or_dash(s: Option<&str>) -> String {
    s.map_or_else(|| "-".to_owned(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["KIND", "ROWS"]).right(&[1]);
        t.row(vec!["upload_images".into(), "3".into()]);
        t.row(vec!["publish".into(), "12".into()]);
        assert_eq!(
            t.render(),
            "KIND           ROWS\nupload_images     3\npublish          12\n"
        );
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(human_secs(40.2), "40s");
        assert_eq!(human_secs(725.0), "12m 5s");
        assert_eq!(human_secs(3.0 * 86_400.0 + 4.0 * 3600.0), "3d 4h");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("ab\ncd", 10), "ab…");
        assert_eq!(clip("ab", 10), "ab");
    }
}
