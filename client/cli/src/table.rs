//! Plain-text tables and relative times for the human output.
//!
//! Cells hold text from the broker (a MOD's probe detail, mode names,
//! reasons): each is escaped ([`crate::text::escape`]), so no control
//! character, escape sequence or bidi override reaches the terminal.

use std::fmt;

/// Columns padded to their widest cell; the last column is not padded, so
/// long details do not drag whitespace along.
pub struct Table {
    rows: Vec<Vec<String>>,
}

/// Longest cell shown, in characters; details beyond are cut with `…`.
const CELL_MAX: usize = 100;

impl Table {
    /// A table with these headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Add a row; each cell is cut to [`CELL_MAX`] characters, then escaped.
    pub fn row(&mut self, cells: Vec<String>) {
        let cells = cells
            .into_iter()
            .map(|c| {
                let c = if c.chars().count() > CELL_MAX {
                    format!("{}…", c.chars().take(CELL_MAX - 1).collect::<String>())
                } else {
                    c
                };
                crate::text::escaped(&c)
            })
            .collect();
        self.rows.push(cells);
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width: Vec<usize> = (0..cols)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in &self.rows {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    line.push_str(&format!("{c:<w$}  ", w = width[i]));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A duration in seconds, short (`1h 02m`, `3m 05s`, `42s`).
pub fn ago(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Time until unix second `at`, e.g. `in 29m 40s` (or `now`).
pub fn until(at: u64) -> String {
    match at.saturating_sub(now()) {
        0 => "now".into(),
        s => format!("in {}", ago(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_cells_are_cleaned() {
        let mut t = Table::new(&["A", "LONG HEADER", "X"]);
        t.row(vec!["wide cell".into(), "b".into(), "tail\nline".into()]);
        let s = t.to_string();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "A          LONG HEADER  X");
        assert_eq!(lines[1], "wide cell  b            tail\\u{a}line");
    }

    #[test]
    fn escape_sequences_and_bidi_controls_never_reach_the_terminal() {
        let mut t = Table::new(&["MOD", "SEEN"]);
        t.row(vec![
            "evil\u{1b}[2J".into(),
            "ok\u{202e}reversed\u{9b}31m\u{7f}".into(),
        ]);
        let s = t.to_string();
        assert_eq!(s.lines().count(), 2, "{s}");
        let unsafe_char = |l: &str| l.chars().any(crate::text::is_unsafe);
        assert!(!s.lines().any(unsafe_char), "{s:?}");
        assert!(s.contains("evil\\u{1b}[2J"), "{s}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(ago(42), "42s");
        assert_eq!(ago(185), "3m 05s");
        assert_eq!(ago(3720), "1h 02m");
        assert_eq!(ago(90_000), "1d 01h");
    }
}
