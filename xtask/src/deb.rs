//! `cargo xtask deb [--dev]`: the Debian package, built with cargo-deb
//! (installed with `cargo install --locked` if missing) from the
//! `[package.metadata.deb]` of runtime/Cargo.toml: `p2pb` with its MODs
//! built in, the default policy as /etc/p2pbroker/policy.toml, the systemd
//! unit, man pages generated from the CLI's own definitions (`p2pb man`)
//! and docs/operations.md. `--dev` packages the dev-profile binary (what
//! the test suite installs; it is the build the tests already made).

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
    run(
        cargo()
            .args(["build", "--profile", profile, "-p", "p2pbroker", "--bins"])
            .current_dir(&root),
        "building p2pb and p2pbd",
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    let dir = if dev { "debug" } else { "release" };
    let man = root.join("target/deb-staging/man");
    let _ = std::fs::remove_dir_all(&man);
    run(
        Command::new(target.join(dir).join("p2pb"))
            .arg("man")
            .arg(&man),
        "p2pb man",
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
