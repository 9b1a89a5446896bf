//! `cargo xtask fuzz [--minutes N] [--target T] [--runs N] [--fresh]`: run the
//! cargo-fuzz targets under `fuzz/` one after another and summarise.
//!
//! Each target runs for `--minutes` (default 1: a smoke run) or until
//! `--runs` executions, whichever comes first (`--runs` alone: no time
//! limit). Its corpus persists in `target/fuzz-corpus/T`, kept out of git;
//! the committed seeds in `fuzz/corpus/T` ([`seeds`] makes them) are read
//! too, never written, and `fuzz/dict/T.dict` is the dictionary. `--fresh`
//! starts from the seeds alone (an emptied `target/fuzz-fresh/T`), as a
//! time-to-find measurement must. The output of each run goes to
//! `target/fuzz-logs/T.log`; the summary reads libFuzzer's final stats
//! from it. Exits non-zero if any target crashed,
//! naming the file that holds the input.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

mod log;
pub mod seeds;

use log::{Stats, excerpt, parse_log, printable};

/// How targets are built (see fuzz/README.md for why): optimised like a
/// release; with debug assertions, hence overflow checks; without a
/// sanitizer, since the fuzzed code is safe Rust and AddressSanitizer
/// would only lengthen the build and slow every run.
pub const BUILD_FLAGS: &[&str] = &["-O", "--debug-assertions", "--sanitizer", "none"];
/// A single input running this long is a hang: report it, do not wait.
const UNIT_TIMEOUT_SECS: u32 = 20;

/// The command line.
struct Options {
    minutes: Option<u64>,
    runs: Option<u64>,
    target: Option<String>,
    /// Start from the committed seeds alone, not the grown corpus.
    fresh: bool,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        minutes: None,
        runs: None,
        target: None,
        fresh: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--minutes" => o.minutes = Some(value()?.parse().context("--minutes: a whole number")?),
            "--runs" => o.runs = Some(value()?.parse().context("--runs: a whole number")?),
            "--target" => o.target = Some(value()?.clone()),
            "--fresh" => o.fresh = true,
            _ => bail!("usage: cargo xtask fuzz [--minutes N] [--target T] [--runs N] [--fresh]"),
        }
    }
    if o.minutes.is_none() && o.runs.is_none() {
        o.minutes = Some(1);
    }
    Ok(o)
}

/// How one target's run ended.
enum Outcome {
    Clean,
    Crash(String),
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Clean => f.write_str("ok"),
            Outcome::Crash(path) => write!(f, "CRASH {path}"),
            Outcome::Failed(why) => write!(f, "FAILED {why}"),
        }
    }
}

/// Run the targets (all, or `--target`); see the module docs.
pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let o = options(args)?;
    ensure_cargo_fuzz()?;
    let targets = match &o.target {
        Some(t) => vec![t.clone()],
        None => list_targets(root)?,
    };
    println!(
        "building the fuzz targets (cargo fuzz build {})",
        BUILD_FLAGS.join(" ")
    );
    if !cargo_fuzz(root)
        .arg("build")
        .args(BUILD_FLAGS)
        .status()?
        .success()
    {
        bail!("building the fuzz targets failed");
    }
    let mut rows = Vec::new();
    for t in &targets {
        let (stats, outcome) = run_one(root, t, &o)?;
        rows.push((t.clone(), stats, outcome));
    }
    println!("\n{}", table(&rows));
    let bad: Vec<String> = rows
        .iter()
        .filter(|(_, _, o)| !matches!(o, Outcome::Clean))
        .map(|(t, _, o)| format!("{t}: {o}"))
        .collect();
    if !bad.is_empty() {
        bail!("{}", bad.join("; "));
    }
    Ok(())
}

fn run_one(root: &Path, target: &str, o: &Options) -> anyhow::Result<(Stats, Outcome)> {
    let corpus = if o.fresh {
        let dir = root.join("target/fuzz-fresh").join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        dir
    } else {
        corpus_dir(root, target)
    };
    let logs = root.join("target/fuzz-logs");
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{target}.log"));
    let log = File::create(&log_path)?;
    let mut cmd = cargo_fuzz(root);
    cmd.args(["run"]).args(BUILD_FLAGS).arg(target).arg(&corpus);
    let curated = root.join("fuzz/corpus").join(target);
    if curated.is_dir() {
        cmd.arg(curated); // read as seeds; new inputs go to the first folder
    }
    cmd.arg("--");
    let dict = root.join("fuzz/dict").join(format!("{target}.dict"));
    if dict.is_file() {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    cmd.arg("-print_final_stats=1")
        .arg(format!("-timeout={UNIT_TIMEOUT_SECS}"));
    if let Some(m) = o.minutes {
        cmd.arg(format!("-max_total_time={}", m * 60));
    }
    if let Some(n) = o.runs {
        cmd.arg(format!("-runs={n}"));
    }
    println!("fuzzing {target} (log: {})", shown(root, &log_path));
    let started = Instant::now();
    let status = cmd
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .status()?;
    let text = String::from_utf8_lossy(&std::fs::read(&log_path)?).into_owned();
    let mut stats = parse_log(&text);
    stats.secs = stats.secs.or(Some(started.elapsed().as_secs()));
    let outcome = match (&stats.artifact, status.success()) {
        (Some(path), _) => Outcome::Crash(shown(root, Path::new(path))),
        (None, true) => Outcome::Clean,
        (None, false) => Outcome::Failed(format!("{status}, see {}", shown(root, &log_path))),
    };
    if !matches!(outcome, Outcome::Clean) {
        for line in excerpt(&text) {
            eprintln!("{}", printable(line));
        }
    }
    Ok((stats, outcome))
}

/// The summary table.
fn table(rows: &[(String, Stats, Outcome)]) -> String {
    let num = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
    let mut out = format!(
        "{:<12} {:>12} {:>8} {:>6} {:>6}  result\n",
        "target", "executions", "exec/s", "cov", "secs"
    );
    for (t, s, o) in rows {
        out.push_str(&format!(
            "{t:<12} {:>12} {:>8} {:>6} {:>6}  {o}\n",
            num(s.execs),
            num(s.exec_per_sec),
            num(s.cov),
            num(s.secs)
        ));
    }
    out
}

/// `path` relative to the project when inside it.
fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Variables `cargo run` sets for xtask itself (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`, ...). Build scripts track some of them (ring's does):
/// passed on, they would make every fuzz build differ from a manual
/// `cargo fuzz build` and rebuild half the tree.
const RUN_VARS: &[&str] = &[
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
];

/// `c` without [`RUN_VARS`].
fn without_run_vars(mut c: Command) -> Command {
    for (name, _) in std::env::vars_os() {
        if let Some(name) = name.to_str()
            && RUN_VARS.iter().any(|p| name.starts_with(p))
        {
            c.env_remove(name);
        }
    }
    c
}

/// `cargo fuzz` in the project root. cargo-fuzz needs nightly features;
/// `RUSTC_BOOTSTRAP` lets a stable toolchain provide them. The targets
/// link the runtime for its codecs, never its built-in MODs: building
/// those again under the fuzz target's folder would only cost time.
fn cargo_fuzz(root: &Path) -> Command {
    let mut c = without_run_vars(Command::new(cargo()));
    c.arg("fuzz")
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("P2PB_BUILTIN_MODES", "none");
    c
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let present = Command::new(cargo())
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    println!("installing cargo-fuzz");
    if !Command::new(cargo())
        .args(["install", "--locked", "cargo-fuzz"])
        .status()?
        .success()
    {
        bail!("cargo install cargo-fuzz failed");
    }
    Ok(())
}

/// The targets `fuzz/Cargo.toml` declares, in its order.
fn list_targets(root: &Path) -> anyhow::Result<Vec<String>> {
    let out = cargo_fuzz(root).arg("list").output()?;
    if !out.status.success() {
        bail!("cargo fuzz list: {}", String::from_utf8_lossy(&out.stderr));
    }
    let targets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        bail!("no fuzz targets in fuzz/Cargo.toml");
    }
    Ok(targets)
}

/// The persistent corpus of `target`: under `target/`, so never committed.
fn corpus_dir(root: &Path, target: &str) -> PathBuf {
    root.join("target/fuzz-corpus").join(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_to_a_one_minute_smoke_run() {
        let o = options(&[]).unwrap();
        assert_eq!((o.minutes, o.runs, o.target), (Some(1), None, None));
        let args = ["--runs", "1000", "--target", "pcp"].map(String::from);
        let o = options(&args).unwrap();
        assert_eq!((o.minutes, o.runs), (None, Some(1000)));
        assert_eq!(o.target.as_deref(), Some("pcp"));
        assert!(options(&["--minutes".to_string()]).is_err());
        assert!(options(&["--minutes".to_string(), "x".to_string()]).is_err());
        assert!(options(&["--bogus".to_string()]).is_err());
        assert!(!o.fresh && options(&["--fresh".to_string()]).unwrap().fresh);
    }
}
