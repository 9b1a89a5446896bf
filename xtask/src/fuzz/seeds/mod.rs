//! `cargo xtask fuzz-seeds [--no-merge] [--target-dir DIR]`: regenerate
//! the committed seed corpora `fuzz/corpus/T`, one folder per fuzz target.
//!
//! Seeds are collected in `target/fuzz-seeds/T` first:
//!
//! - the NAT lab's captures (`tests/fuzz_seeds_lab.rs`, run as root with
//!   `P2PB_FUZZ_SEEDS`): what a real miniupnpd answers over SSDP, HTTP,
//!   SOAP, NAT-PMP and PCP, and the kernel's socket tables;
//! - the project's own files: policies, a root of trust and signature
//!   files made with the project's signing code, the built MODs signed
//!   the same way (and their custom sections), client API lines from
//!   `docs/`, journals written by the journal itself, static forward
//!   declarations from the docs, policies and tests ([`collect`]);
//! - the fake gateways' replies from the test suite ([`fakes`]).
//!
//! Then each target's collection replaces `fuzz/corpus/T`: by default
//! through libFuzzer's `-merge=1`, which keeps only the seeds that add
//! coverage (the kept ones keep their descriptive names); with `--no-merge`
//! all of them, byte-identical ones once. `--target-dir DIR` is passed to
//! cargo-fuzz (an existing fuzz build spares the long first build).

mod collect;
mod fakes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::{BUILD_FLAGS, cargo, cargo_fuzz, ensure_cargo_fuzz, printable, shown};
use collect::{client_api, components, journals, oci_documents, policies, static_decls};

/// Largest seed committed: libFuzzer's inputs stay small, and so does the
/// repository.
const SEED_MAX: usize = 64 * 1024;

/// The command line.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    merge: bool,
    target_dir: Option<PathBuf>,
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        merge: true,
        target_dir: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--no-merge" => o.merge = false,
            "--target-dir" => {
                let dir = it.next().context("--target-dir needs a folder")?;
                o.target_dir = Some(PathBuf::from(dir));
            }
            _ => bail!("usage: cargo xtask fuzz-seeds [--no-merge] [--target-dir DIR]"),
        }
    }
    Ok(o)
}

/// Seeds collected per target, under one folder.
pub(super) struct Collected {
    dir: PathBuf,
}

impl Collected {
    /// Keep `bytes` as seed `name` of `target`.
    pub(super) fn keep(&self, target: &str, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        Ok(())
    }
}

/// Collect, then merge (or copy) into `fuzz/corpus/`; see the module docs.
pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let o = options(args)?;
    let scratch = root.join("target/fuzz-seeds");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let seeds = Collected {
        dir: scratch.join("collected"),
    };
    lab(root, &seeds.dir)?;
    policies(root, &seeds)?;
    components(root, &scratch.join("modes"), &seeds)?;
    client_api(root, &seeds)?;
    journals(&seeds)?;
    static_decls(root, &seeds)?;
    oci_documents(&seeds)?;
    fakes::collect(root, &seeds)?;

    let targets = targets(root)?;
    for t in &targets {
        if !seeds.dir.join(t).is_dir() {
            bail!("no seed was collected for target {t}");
        }
    }
    if o.merge {
        ensure_cargo_fuzz()?;
        println!(
            "building the fuzz targets (cargo fuzz build {})",
            BUILD_FLAGS.join(" ")
        );
        let mut build = cargo_fuzz(root);
        build.arg("build").args(BUILD_FLAGS);
        if let Some(d) = &o.target_dir {
            build.arg("--target-dir").arg(d);
        }
        if !build.status()?.success() {
            bail!("building the fuzz targets failed");
        }
    }
    println!(
        "\n{:<12} {:>9} {:>6} {:>9}",
        "target", "collected", "kept", "bytes"
    );
    for t in &targets {
        let collected = seeds.dir.join(t);
        let kept = if o.merge {
            merge(root, &o, t, &collected, &scratch.join("merged").join(t))?
        } else {
            distinct(&collected)?
        };
        let bytes = install(root, t, &kept)?;
        println!(
            "{t:<12} {:>9} {:>6} {bytes:>9}",
            std::fs::read_dir(&collected)?.count(),
            kept.len()
        );
    }
    Ok(())
}

/// The fuzz targets: the files of `fuzz/fuzz_targets/`.
fn targets(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = std::fs::read_dir(root.join("fuzz/fuzz_targets"))?
        .filter_map(|e| {
            let p = e.ok()?.path();
            Some(p.file_stem()?.to_str()?.to_string())
        })
        .collect();
    out.sort();
    Ok(out)
}

/// A folder's files as (name, bytes), sorted by name.
fn files(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_file() {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read(&p)?));
        }
    }
    out.sort();
    Ok(out)
}

/// The seeds of `dir` without byte-identical repeats (the first name in
/// order wins) and without any over [`SEED_MAX`].
fn distinct(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (name, bytes) in files(dir)? {
        if bytes.len() > SEED_MAX {
            println!("  skipped {name}: {} bytes", bytes.len());
        } else if seen.insert(bytes.clone()) {
            out.push((name, bytes));
        }
    }
    Ok(out)
}

/// libFuzzer's `-merge=1` of the seeds in `collected` into the empty
/// folder `out`: the seeds that add coverage, under their own names
/// (libFuzzer names them by content hash; the bytes say which seed each
/// is).
fn merge(
    root: &Path,
    o: &Options,
    target: &str,
    collected: &Path,
    out: &Path,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let inputs = distinct(collected)?;
    // Only the seeds that may be committed go in.
    let candidates = out.with_extension("in");
    std::fs::create_dir_all(&candidates)?;
    std::fs::create_dir_all(out)?;
    for (name, bytes) in &inputs {
        std::fs::write(candidates.join(name), bytes)?;
    }
    let logs = root.join("target/fuzz-logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("merge-{target}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = cargo_fuzz(root);
    cmd.arg("run").args(BUILD_FLAGS);
    if let Some(d) = &o.target_dir {
        cmd.arg("--target-dir").arg(d);
    }
    let status = cmd
        .arg(target)
        .arg(out)
        .arg(&candidates)
        .args(["--", "-merge=1"])
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .status()?;
    if !status.success() {
        let text = String::from_utf8_lossy(&std::fs::read(&log_path)?).into_owned();
        for line in text
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            eprintln!("{}", printable(line));
        }
        bail!(
            "merging {target}'s seeds failed: {status}, see {}",
            shown(root, &log_path)
        );
    }
    let by_bytes: HashMap<Vec<u8>, String> = inputs.into_iter().map(|(n, b)| (b, n)).collect();
    let mut kept = Vec::new();
    for (hash, bytes) in files(out)? {
        let name = by_bytes.get(&bytes).cloned().unwrap_or(hash);
        kept.push((name, bytes));
    }
    kept.sort();
    Ok(kept)
}

/// Replace `fuzz/corpus/TARGET` with `seeds`; returns their total size.
fn install(root: &Path, target: &str, seeds: &[(String, Vec<u8>)]) -> anyhow::Result<usize> {
    if seeds.is_empty() {
        bail!("no seed left for {target}");
    }
    let dir = root.join("fuzz/corpus").join(target);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(seeds.iter().map(|(_, b)| b.len()).sum())
}

/// The NAT lab's captures (root only: it builds network namespaces).
fn lab(root: &Path, out: &Path) -> anyhow::Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the seeds' NAT lab builds network namespaces: run cargo xtask fuzz-seeds as root");
    }
    println!("capturing the NAT lab's answers (tests/fuzz_seeds_lab.rs)");
    let ok = super::without_run_vars(Command::new(cargo()))
        .args([
            "test",
            "--quiet",
            "-p",
            "p2pbroker",
            "--test",
            "fuzz_seeds_lab",
        ])
        .env("P2PB_FUZZ_SEEDS", out)
        .current_dir(root)
        .status()?
        .success();
    if !ok {
        bail!("the lab test fuzz_seeds_lab failed: no lab captures");
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_merge_unless_told_not_to() {
        let o = options(&[]).unwrap();
        assert_eq!(
            o,
            Options {
                merge: true,
                target_dir: None
            }
        );
        let args = ["--no-merge", "--target-dir", "t"].map(String::from);
        let o = options(&args).unwrap();
        assert_eq!(
            o,
            Options {
                merge: false,
                target_dir: Some("t".into())
            }
        );
        assert!(options(&["--target-dir".to_string()]).is_err());
        assert!(options(&["--bogus".to_string()]).is_err());
    }
}
