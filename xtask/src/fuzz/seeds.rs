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
//!   declarations from the docs, policies and tests;
//! - the fake gateways' replies from the test suite ([`fakes`]).
//!
//! Then each target's collection replaces `fuzz/corpus/T`: by default
//! through libFuzzer's `-merge=1`, which keeps only the seeds that add
//! coverage (the kept ones keep their descriptive names); with `--no-merge`
//! all of them, byte-identical ones once. `--target-dir DIR` is passed to
//! cargo-fuzz (an existing fuzz build spares the long first build).

mod fakes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use p2pbroker::trust::keys::SecretKey;
use p2pbroker::trust::{manifest, wasmsig};

use super::{BUILD_FLAGS, cargo, cargo_fuzz, ensure_cargo_fuzz, printable, shown};

/// Largest seed committed: libFuzzer's inputs stay small, and so does the
/// repository.
const SEED_MAX: usize = 64 * 1024;
/// The component header the `manifest` target puts before its input.
const COMPONENT_HEADER: &[u8; 8] = b"\0asm\x0d\0\x01\0";

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

/// A fixed signing key, so signatures (and seeds) are the same every run.
fn seed_key(n: u8) -> SecretKey {
    SecretKey {
        key: ed25519_dalek::SigningKey::from_bytes(&[n; 32]),
    }
}

/// Every policy under `policies/`, a root of trust and signature files as
/// `p2pb policy sign` writes them.
fn policies(root: &Path, seeds: &Collected) -> anyhow::Result<()> {
    use p2pbroker::trust::bundle::sign_line;
    let key = seed_key(1);
    for (name, text) in files(&root.join("policies"))? {
        seeds.keep("policy", &name, &text)?;
        seeds.keep(
            "policy",
            &format!("{name}.sig"),
            sign_line(false, &text, &key).as_bytes(),
        )?;
    }
    let root_toml = format!(
        "version = 1\nexpires = \"2027-12-31T00:00:00Z\"\nthreshold = 1\n[keys]\nfleet = \"{}\"\n",
        key.public().hex()
    );
    p2pbroker::trust::bundle::Root::parse(root_toml.as_bytes())?;
    seeds.keep("policy", "root.toml", root_toml.as_bytes())?;
    // Signed by this root's key and by the next root's.
    let mut sigs = sign_line(true, root_toml.as_bytes(), &key);
    sigs.push_str(&sign_line(true, root_toml.as_bytes(), &seed_key(2)));
    seeds.keep("policy", "root.toml.sig", sigs.as_bytes())?;
    // A signed policy: the three fields signing adds (docs/trust.md).
    let default = std::fs::read_to_string(root.join("policies/default.toml"))?;
    let signed = format!(
        "serial = 4\nissued_at = \"2026-11-01T00:00:00Z\"\nexpires = \"2027-11-01T00:00:00Z\"\n{default}"
    );
    seeds.keep("policy", "default-signed.toml", signed.as_bytes())?;
    Ok(())
}

/// The built MODs, signed by the project's signing code: the smallest
/// whole (if small enough), and every MOD's manifest and signature
/// sections. Inputs of the `manifest` target go without the component
/// header, which the target adds.
fn components(root: &Path, out: &Path, seeds: &Collected) -> anyhow::Result<()> {
    println!("building the MODs (cargo xtask build-modes)");
    let mut built = crate::build_modes(out)?;
    built.sort_by_key(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(u64::MAX));
    let key = seed_key(1);
    for (i, (name, path)) in built.iter().enumerate() {
        let bin = std::fs::read(path)?;
        if bin.get(..8) != Some(&COMPONENT_HEADER[..]) {
            bail!("{}: not a component", shown(root, path));
        }
        let signed = p2pbroker::trust::sign(&bin, &key)?;
        if i == 0 {
            if signed.len() - 8 <= SEED_MAX {
                seeds.keep("manifest", &format!("{name}-signed"), &signed[8..])?;
            } else {
                println!(
                    "  the smallest MOD, {name}, is {} bytes: seeding its custom sections only",
                    signed.len()
                );
            }
        }
        let mut manifest_section = None;
        for s in wasmsig::sections(&signed)? {
            let kind = match s.name.as_deref() {
                Some(manifest::MANIFEST_SECTION) => "manifest",
                Some(wasmsig::SIGNATURE_SECTION) => {
                    let data = &signed[s.payload.clone()];
                    seeds.keep("manifest", &format!("{name}-signature-data"), data)?;
                    "signature"
                }
                _ => continue,
            };
            let section = &signed[s.range.clone()];
            seeds.keep("manifest", &format!("{name}-{kind}-section"), section)?;
            if kind == "manifest" {
                manifest_section = Some(section.to_vec());
            }
        }
        // The manifest alone, signed by two keys: a whole signed binary
        // of a few hundred bytes.
        if i == 0 {
            let section = manifest_section.context("a MOD without a manifest section")?;
            let mut small = COMPONENT_HEADER.to_vec();
            small.extend_from_slice(&section);
            let small =
                p2pbroker::trust::sign(&p2pbroker::trust::sign(&small, &key)?, &seed_key(2))?;
            seeds.keep(
                "manifest",
                &format!("{name}-manifest-signed-twice"),
                &small[8..],
            )?;
        }
    }
    Ok(())
}

/// Client API lines from `docs/`: the examples (`→`/`←` lines) and inline
/// JSON lines (`` `{"v":1,...}` ``) that are JSON, one per file for
/// `api_request`, and streams of them for `api_framing`.
fn client_api(root: &Path, seeds: &Collected) -> anyhow::Result<()> {
    let mut requests = Vec::new();
    let mut others = Vec::new();
    for (doc, text) in files(&root.join("docs"))? {
        let text = String::from_utf8_lossy(&text).into_owned();
        let stem = doc.trim_end_matches(".md");
        let inline = text
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("{\"v\":"));
        let arrows = text.lines().filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("→ ").or_else(|| l.strip_prefix("← "))
        });
        let mut n = 0;
        for line in arrows.chain(inline) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            n += 1;
            let request = v.get("op").or(v.get("auth")).is_some();
            let kind = match (
                v["op"].as_str(),
                v["event"].as_str(),
                v["error"]["code"].as_str(),
            ) {
                (Some(op), ..) => format!("request-{op}"),
                (_, Some(event), _) => format!("event-{event}"),
                (_, _, Some(code)) => format!("error-{code}"),
                _ if request => "request-auth".to_string(),
                _ => "response-ok".to_string(),
            };
            match request {
                true => requests.push(line.to_string()),
                false => others.push(line.to_string()),
            }
            seeds.keep(
                "api_request",
                &format!("{stem}-{n:02}-{kind}"),
                line.as_bytes(),
            )?;
        }
    }
    if requests.is_empty() {
        bail!("no client API request line in docs/");
    }
    // [cap, k, k chunk sizes, stream] (fuzz/checks/src/api_framing.rs).
    let framing = |cap: u8, sizes: &[u8], lines: &[String]| {
        let mut b = vec![cap, sizes.len() as u8];
        b.extend_from_slice(sizes);
        for l in lines {
            b.extend_from_slice(l.as_bytes());
            b.push(b'\n');
        }
        b
    };
    let all: Vec<String> = requests.iter().chain(&others).cloned().collect();
    seeds.keep(
        "api_framing",
        "docs-requests",
        &framing(255, &[1, 7, 64], &requests),
    )?;
    // Broker lines run longer than a cap of 255: frames too long.
    seeds.keep(
        "api_framing",
        "docs-broker-lines",
        &framing(255, &[0, 33], &others),
    )?;
    seeds.keep(
        "api_framing",
        "docs-all-cap-64",
        &framing(64, &[5, 200, 0, 1], &all),
    )?;
    // The last line without its newline (cut by a closed connection).
    let mut cut = framing(255, &[], &requests);
    cut.pop();
    seeds.keep("api_framing", "docs-requests-unterminated", &cut)?;
    Ok(())
}

/// Journals written by the journal itself: puts, an intent, a delete, a
/// torn tail, and a compacted one.
fn journals(seeds: &Collected) -> anyhow::Result<()> {
    use p2pbroker::daemon::journal::{Intent, JOURNAL_FILE, Journal, LeaseRecord};
    use p2pbroker::gate::Transport;
    use p2pbroker::json::MappingJson;
    let lease = |id: u64, v6: bool| LeaseRecord {
        id,
        mode: if v6 { "pcp" } else { "upnp-igd" }.into(),
        mode_sha256: "9f2c".repeat(16),
        mapping: MappingJson {
            transport: if v6 { Transport::Udp } else { Transport::Tcp },
            internal: if v6 {
                "[2001:db8:1::2]:6881"
            } else {
                "10.0.0.2:6881"
            }
            .parse()
            .unwrap(),
            external: if v6 {
                "[2001:db8:1::2]:6881"
            } else {
                "198.51.100.2:6881"
            }
            .parse()
            .unwrap(),
            lifetime: if v6 { 7200 } else { 0 },
            state: "00010203".into(),
        },
        granted_at: 1_795_598_323,
        owner_uid: 1000,
        owner_lan: v6.then(|| "lan-0123456789ab".into()),
        persist: v6,
        expires_at: v6.then_some(1_795_601_923),
        created_at: 1_795_598_300,
        follows: if v6 { vec![35_644_248] } else { vec![] },
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(JOURNAL_FILE);
    let (mut j, _) = Journal::open(dir.path())?;
    j.intent(&Intent {
        id: 1,
        mode: "upnp-igd".into(),
        transport: Transport::Tcp,
        internal: "10.0.0.2:6881".parse().unwrap(),
        external_port: Some(6881),
    })?;
    j.put(&lease(1, false))?;
    j.put(&lease(2, true))?;
    j.intent(&Intent {
        id: 3,
        mode: "pcp".into(),
        transport: Transport::Udp,
        internal: "[2001:db8:1::2]:7000".parse().unwrap(),
        external_port: None,
    })?;
    j.del(1)?;
    let text = std::fs::read(&path)?;
    seeds.keep("journal", "intent-put-put-intent-del", &text)?;
    // A crash mid-write: the last line cut short.
    let mut torn = text.clone();
    torn.truncate(text.len() - 20);
    seeds.keep("journal", "torn-tail", &torn)?;
    j.compact()?;
    seeds.keep("journal", "compacted", &std::fs::read(&path)?)?;
    Ok(())
}

/// Static forward declarations quoted (in backticks or double quotes) in
/// the docs, the policies and the static MOD's sources (its unit tests
/// hold IPv6 and malformed ones) and tests.
fn static_decls(root: &Path, seeds: &Collected) -> anyhow::Result<()> {
    let mut sources = Vec::new();
    for dir in ["docs", "policies", "modes/static/src"] {
        sources.extend(files(&root.join(dir))?);
    }
    sources.push((
        "static_mode.rs".into(),
        std::fs::read(root.join("tests/static_mode.rs"))?,
    ));
    let mut seen = std::collections::HashSet::new();
    for (file, text) in sources {
        let text = String::from_utf8_lossy(&text).into_owned();
        let stem = file.split('.').next().unwrap_or(&file).to_string();
        let mut n = 0;
        for delim in ['`', '"'] {
            for span in text.split(delim).skip(1).step_by(2) {
                // Malformed ones too (the tests quote what is refused).
                let decl = (span.starts_with("tcp ") || span.starts_with("udp "))
                    && span.contains(':')
                    && !span.contains('\n');
                if decl && seen.insert(span.to_string()) {
                    n += 1;
                    seeds.keep("static_decl", &format!("{stem}-{n}"), span.as_bytes())?;
                }
            }
        }
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
