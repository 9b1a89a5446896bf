//! `cargo xtask deb [--dev]`: the Debian package, built with cargo-deb
//! (installed with `cargo install --locked` if missing) from the
//! `[package.metadata.deb]` of runtime/Cargo.toml: `p2pbd` with its MODs
//! built in, `p2pb` built static for musl (it starts without the dynamic
//! loader's work; see BENCHMARKS.md), the default policy as
//! /etc/p2pbroker/policy.toml, the systemd unit, man pages generated from
//! the CLI's own definitions (`p2pbd man`) and docs/operations.md. `--dev`
//! packages dev-profile binaries (what the test suite installs; p2pbd is
//! the build the tests already made).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// The cargo-deb this task was written against (it warns that packaging a
/// dev-profile binary, which `--dev` does, may become an error later).
const CARGO_DEB_VERSION: &str = "3.8.0";

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let st = cmd.status().with_context(|| format!("running {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

/// The target `p2pb` is built for: static, no dynamic loader at start.
fn static_target() -> String {
    format!("{}-unknown-linux-musl", std::env::consts::ARCH)
}

/// Add the static target's standard library unless rustup has it.
fn ensure_static_target() -> anyhow::Result<()> {
    let target = static_target();
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (the static p2pb needs its musl target)")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == target)
    {
        run(
            Command::new("rustup").args(["target", "add", &target]),
            "rustup target add",
        )?;
    }
    Ok(())
}

/// Install cargo-deb unless `cargo deb` already answers.
fn ensure_cargo_deb() -> anyhow::Result<()> {
    let have = cargo()
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        run(
            cargo().args([
                "install",
                "--locked",
                "cargo-deb",
                "--version",
                CARGO_DEB_VERSION,
            ]),
            "cargo install cargo-deb",
        )?;
    }
    Ok(())
}

/// Build the package; returns the .deb's path.
pub fn build(dev: bool) -> anyhow::Result<PathBuf> {
    let root = super::root();
    ensure_cargo_deb()?;
    let profile = if dev { "dev" } else { "release" };
    ensure_static_target()?;
    let build = |args: &[&str], what: &str| {
        run(
            cargo()
                .args(["build", "--profile", profile])
                .args(args)
                .current_dir(&root),
            what,
        )
    };
    build(&["-p", "p2pbroker", "--bin", "p2pbd"], "building p2pbd")?;
    let musl = static_target();
    build(
        &["-p", "p2pb", "--target", &musl],
        "building the static p2pb",
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    let dir = if dev { "debug" } else { "release" };
    // cargo-deb takes `target/release/…` assets from one target's folder:
    // the static p2pb is staged where the package's other files are.
    let staging = root.join("target/deb-staging");
    let bin = staging.join("bin");
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(target.join(&musl).join(dir).join("p2pb"), bin.join("p2pb"))
        .context("staging the static p2pb")?;
    let man = staging.join("man");
    let _ = std::fs::remove_dir_all(&man);
    run(
        Command::new(target.join(dir).join("p2pbd"))
            .arg("man")
            .arg(&man),
        "p2pbd man",
    )?;
    let out = target.join("debian");
    std::fs::create_dir_all(&out)?;
    let before: Vec<PathBuf> = debs(&out);
    for d in before {
        let _ = std::fs::remove_file(d);
    }
    run(
        cargo()
            .args([
                "deb",
                "-p",
                "p2pbroker",
                "--no-build",
                "--profile",
                profile,
                "--output",
            ])
            .arg(&out)
            .current_dir(&root),
        "cargo deb",
    )?;
    match debs(&out).as_slice() {
        [one] => {
            println!("built {}", one.display());
            Ok(one.clone())
        }
        other => bail!(
            "cargo deb left {} packages in {}",
            other.len(),
            out.display()
        ),
    }
}

fn debs(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                .collect()
        })
        .unwrap_or_default()
}
