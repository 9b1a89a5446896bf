//! libFuzzer's output, read: the numbers of a run and what to show of a
//! failed one. Pure functions over the log text.

/// What one run's log says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Inputs executed.
    pub execs: Option<u64>,
    /// Average executions per second.
    pub exec_per_sec: Option<u64>,
    /// Coverage (code edges reached) at the last status line.
    pub cov: Option<u64>,
    /// Seconds fuzzed, as libFuzzer counts them (absent after a crash).
    pub secs: Option<u64>,
    /// Where libFuzzer wrote the input that crashed, hung or ran out of
    /// memory.
    pub artifact: Option<String>,
}

/// Read libFuzzer's output: its final stats (`-print_final_stats=1`), the
/// last status line's `cov:`, its `Done N runs in S second(s)`, and the
/// `Test unit written to PATH` of a crash.
pub fn parse_log(log: &str) -> Stats {
    let mut s = Stats::default();
    for line in log.lines() {
        let line = line.trim();
        let number = |prefix: &str| line.strip_prefix(prefix)?.trim().parse().ok();
        if let Some(n) = number("stat::number_of_executed_units:") {
            s.execs = Some(n);
        } else if let Some(n) = number("stat::average_exec_per_sec:") {
            s.exec_per_sec = Some(n);
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // "Done 1234 runs in 60 second(s)"
            let words: Vec<&str> = rest.split_whitespace().collect();
            if let [_, "runs", "in", secs, ..] = words[..] {
                s.secs = secs.parse().ok();
            }
        } else if let Some(path) = line.split("Test unit written to ").nth(1) {
            s.artifact = Some(path.trim().to_string());
        } else if line.starts_with('#')
            && let Some(cov) = line.split(" cov: ").nth(1)
        {
            s.cov = cov.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
    s
}

/// Lines of a failed run worth showing: from where libFuzzer or the panic
/// says what went wrong, else the end of the log.
pub fn excerpt(log: &str) -> Vec<&str> {
    const MARKS: [&str; 4] = ["panicked at", "ERROR: libFuzzer", "ALARM:", "out-of-memory"];
    const MAX_LINES: usize = 30;
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .position(|l| MARKS.iter().any(|m| l.contains(m)))
        .unwrap_or(lines.len().saturating_sub(MAX_LINES));
    lines[start..].iter().take(MAX_LINES).copied().collect()
}

/// `line` with its control characters escaped: a panic message may quote
/// the fuzz input, which must not drive the terminal.
pub fn printable(line: &str) -> String {
    line.chars()
        .map(|c| match c {
            '\t' => c.to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_gives_every_number() {
        let log = "\
INFO: Seed: 1234
#2\tINITED cov: 120 ft: 130 corp: 1/1b exec/s: 0 rss: 40Mb
#4096\tpulse  cov: 310 ft: 500 corp: 40/900b lim: 43 exec/s: 2048 rss: 45Mb
#123456\tDONE   cov: 345 ft: 611 corp: 52/1400b lim: 1200 exec/s: 2023 rss: 60Mb
Done 123456 runs in 61 second(s)
stat::number_of_executed_units: 123456
stat::average_exec_per_sec:     2023
stat::new_units_added:          51
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              60
";
        assert_eq!(
            parse_log(log),
            Stats {
                execs: Some(123456),
                exec_per_sec: Some(2023),
                cov: Some(345),
                secs: Some(61),
                artifact: None,
            }
        );
    }

    #[test]
    fn a_crash_names_its_input_file() {
        let log = "\
#1024\tpulse  cov: 77 ft: 80 corp: 9/99b lim: 14 exec/s: 512 rss: 41Mb
thread '<unnamed>' panicked at fuzz_targets/x.rs:9:5:
attempt to add with overflow
==4242== ERROR: libFuzzer: deadly signal
MS: 1 ChangeByte-; base unit: 0000
artifact_prefix='/p/fuzz/artifacts/x/'; Test unit written to /p/fuzz/artifacts/x/crash-da39a3ee
stat::number_of_executed_units: 1100
stat::average_exec_per_sec:     550
";
        let s = parse_log(log);
        assert_eq!(
            s.artifact.as_deref(),
            Some("/p/fuzz/artifacts/x/crash-da39a3ee")
        );
        assert_eq!(
            (s.execs, s.exec_per_sec, s.cov),
            (Some(1100), Some(550), Some(77))
        );
        assert_eq!(s.secs, None, "no Done line after a crash");
    }

    #[test]
    fn cargo_output_and_noise_are_not_stats() {
        let s = parse_log("   Compiling p2pbroker v0.1.0\nDone soon\ncov: 5\n#x cov: many\n");
        assert_eq!(s, Stats::default());
    }

    #[test]
    fn a_failed_run_shows_where_it_went_wrong() {
        let log = "#1 INITED\nthread '<unnamed>' panicked at x.rs:1:1:\nboom\nmore\n";
        assert_eq!(
            excerpt(log)[..2],
            ["thread '<unnamed>' panicked at x.rs:1:1:", "boom"]
        );
        let quiet: String = (0..50).map(|i| format!("{i}\n")).collect();
        assert_eq!(
            excerpt(&quiet).first(),
            Some(&"20"),
            "else the last 30 lines"
        );
    }

    #[test]
    fn control_characters_in_a_log_are_escaped() {
        assert_eq!(printable("ok\tline é"), "ok\tline é");
        assert_eq!(printable("a\x1b[2Jb\r"), "a\\u{1b}[2Jb\\r");
    }
}
