//! `cargo xtask`: project tasks.
//!
//! - `build-modes [--out DIR]`: build every MOD crate under `modes/` (all
//!   but the SDK and the template) into one folder, with `allow.list` holding their sha256s:
//!   the folder the broker loads its built-in MODs from.
//! - `deb [--dev]`: the Debian package, with cargo-deb (see deb.rs).
//! - `demo`: build the built-in MODs and `p2pb`, bring up the NAT lab, and
//!   show an application behind NAT made reachable through the broker
//!   (root; see demo.rs).
//! - `fuzz [--minutes N] [--target T] [--runs N]`: run the fuzz targets
//!   one after another and print a summary (see fuzz/mod.rs).
//! - `fuzz-seeds [--no-merge] [--target-dir DIR]`: regenerate the seed
//!   corpora `fuzz/corpus/T` from the NAT lab's captures (root) and the
//!   project's own files (see fuzz/seeds/mod.rs).
//! - `test`: install what the suite needs on a fresh machine (the wasm
//!   target; as root, the NAT lab's Debian packages), build the Debian
//!   package the install test installs (`deb --dev`), then run
//!   `cargo test --workspace`.

mod deb;
mod demo;
mod fuzz;

use std::path::{Path, PathBuf};

use p2pbroker::build::script::Lang;

use anyhow::{Context, bail};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("build-modes") => {
            let out = match args.get(1).map(String::as_str) {
                Some("--out") => PathBuf::from(args.get(2).context("--out needs a folder")?),
                _ => root().join("target/modes"),
            };
            build_modes(&out)?;
            Ok(())
        }
        Some("deb") => deb::build(args.get(1).is_some_and(|a| a == "--dev")).map(drop),
        Some("demo") => demo(),
        Some("fuzz") => fuzz::run(&root(), &args[1..]),
        Some("fuzz-seeds") => fuzz::seeds::run(&root(), &args[1..]),
        Some("test") => test(&args[1..]),
        _ => bail!(
            "usage: cargo xtask build-modes [--out DIR] | deb [--dev] | demo | fuzz [--minutes N] [--target T] \
             [--runs N] [--fresh] | fuzz-seeds [--no-merge] [--target-dir DIR] | test [CARGO TEST ARGS]"
        ),
    }
}

/// Build every MOD crate under `modes/` (not the SDK or the template) into `out`; returns (name, path).
fn build_modes(out: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root().join("modes"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // The SDK and `p2pb mode new`'s template are not MODs of the broker.
        .filter(|p| {
            p.join("Cargo.toml").exists() && !p.ends_with("sdk") && !p.ends_with("template")
        })
        .collect();
    crates.sort();
    let opts = p2pbroker::build::BuildOptions {
        target_dir: Some(root().join("target/guests")),
        out_dir: Some(out.to_path_buf()),
        verbose: false,
    };
    let mut built = Vec::new();
    let mut allow = String::new();
    for c in crates {
        let b = p2pbroker::build::build_mode(&c, &opts)
            .with_context(|| format!("building {}", c.display()))?;
        println!(
            "built {:<24} {:>8} bytes  sha256 {}",
            b.package, b.size, b.sha256
        );
        allow.push_str(&format!(
            "{}  {}\n",
            b.sha256,
            b.path.file_name().unwrap().to_string_lossy()
        ));
        built.push((b.package, b.path));
    }
    std::fs::write(out.join("allow.list"), allow)?;
    Ok(built)
}

fn demo() -> anyhow::Result<()> {
    ensure_lab_packages()?;
    p2pbroker::build::ensure_toolchain()?;
    let out = root().join("target/modes");
    build_modes(&out)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = std::process::Command::new(cargo)
        // p2pb and p2pbd, to which p2pb hands the daemon.
        .args([
            "build",
            "--quiet",
            "-p",
            "p2pb",
            "-p",
            "p2pbroker",
            "--bins",
        ])
        .current_dir(root())
        .status()?
        .success();
    if !ok {
        bail!("building p2pb and p2pbd failed");
    }
    demo::run(&out, &demo::p2pb_path(&root()))
}

/// Debian packages the NAT lab runs (see tests/lab).
const LAB_PACKAGES: &[&str] = &[
    "iproute2",
    "nftables",
    "procps",
    "miniupnpd",
    "miniupnpd-nftables",
    "miniupnpc",
    "natpmpc",
    "coturn",
    "python3",
    // The corporate lab (tests/lab/corp.rs): its proxies and the reference
    // client.
    "tinyproxy",
    "dante-server",
    "curl",
    // The Prometheus project's OpenMetrics parser, which the metrics test
    // scrapes with (Debian's python3).
    "python3-prometheus-client",
    // The status page's test drives headless Chromium over WebDriver.
    "chromium",
    "chromium-driver",
    // The venv componentize-py (MODs in Python) is installed into. Node.js
    // and npm (MODs in JavaScript) are installed only where missing (see
    // ensure_script_toolchain): a machine's own nodejs package may
    // conflict with Debian's npm.
    "python3-venv",
    // The registry MODs are pushed to and pulled from (tests/lab/registry.rs).
    "docker-registry",
];

fn installed(pkg: &str) -> bool {
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Debian's `policy-rc.d` (exit 101: "action forbidden") while packages
/// install, so no packaged service starts; removed when dropped. Left alone
/// if the machine already has one.
struct NoServiceStarts(Option<PathBuf>);

impl NoServiceStarts {
    fn install() -> NoServiceStarts {
        let path = PathBuf::from("/usr/sbin/policy-rc.d");
        if path.exists() {
            return NoServiceStarts(None);
        }
        use std::os::unix::fs::PermissionsExt;
        let written = std::fs::write(&path, "#!/bin/sh\nexit 101\n")
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)));
        NoServiceStarts(written.is_ok().then_some(path))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn ensure_lab_packages() -> anyhow::Result<()> {
    let uid = std::process::Command::new("id").arg("-u").output()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!("the test suite's NAT lab builds network namespaces: run it as root");
    }
    let missing: Vec<&str> = LAB_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing the NAT lab's packages: {}", missing.join(" "));
    apt_install(&missing)
}

/// Install Debian packages, no packaged service starting: the lab runs
/// its daemons itself, in its namespaces (tinyproxy, danted, coturn must
/// not start on the machine).
fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let _no_services = NoServiceStarts::install();
    let ok = std::process::Command::new("apt-get")
        .args(["update", "-qq"])
        .status()?
        .success()
        && std::process::Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .status()?
            .success();
    if !ok {
        bail!("apt-get could not install {}", packages.join(" "));
    }
    Ok(())
}

/// The toolchain of MODs in `lang` under target/toolchains, installed from
/// the package registry if missing (`$P2PB_COMPONENTIZE_…` if set): a venv
/// with componentize-py, an npm prefix with componentize-qjs. Its path.
fn ensure_script_toolchain(lang: Lang) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(lang.env()).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let v = lang.version();
    let home = root().join("target/toolchains").join(lang.tool());
    let tool = match lang {
        Lang::Python => home.join("bin/componentize-py"),
        Lang::Js => home.join("node_modules/.bin/componentize-qjs"),
    };
    // The version installed: componentize-py says it; componentize-qjs's
    // package says it.
    let has = |t: &Path| match lang {
        Lang::Python => std::process::Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(v)),
        Lang::Js => {
            std::fs::read_to_string(home.join("node_modules/componentize-qjs/package.json"))
                .is_ok_and(|j| j.contains(&format!("\"version\": \"{v}\"")))
        }
    };
    if has(&tool) {
        return Ok(tool);
    }
    println!("installing {} {v} into {}", lang.tool(), home.display());
    let run = |c: &mut std::process::Command| c.status().is_ok_and(|s| s.success());
    let ok = match lang {
        Lang::Python => {
            run(std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&home))
                && run(std::process::Command::new(home.join("bin/pip")).args([
                    "install",
                    "-q",
                    &format!("componentize-py=={v}"),
                ]))
        }
        Lang::Js => {
            // A machine without Node.js gets Debian's (with its npm); one
            // that has it keeps its own.
            let has_npm = run(std::process::Command::new("npm").arg("--version"));
            (has_npm || apt_install(&["nodejs", "npm"]).is_ok())
                && run(std::process::Command::new("npm")
                    .args(["install", "--silent", "--no-fund", "--no-audit", "--prefix"])
                    .arg(&home)
                    .arg(format!("componentize-qjs@{v}")))
        }
    };
    if !ok || !has(&tool) {
        bail!(
            "could not install {} {v} (the {lang:?} MODs' tests need it)",
            lang.tool()
        );
    }
    Ok(tool)
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    ensure_lab_packages()?;
    p2pbroker::build::ensure_toolchain()?;
    let tools = [
        (Lang::Python, ensure_script_toolchain(Lang::Python)?),
        (Lang::Js, ensure_script_toolchain(Lang::Js)?),
    ];
    // tests/package_lab.rs installs it into a container-like root.
    let deb = deb::build(true)?;
    let mut cargo =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args(["test", "--workspace"])
        .env("P2PB_TEST_DEB", &deb);
    for (lang, tool) in tools {
        cargo.env(lang.env(), tool);
    }
    let status = cargo.args(extra).current_dir(root()).status()?;
    std::process::exit(status.code().unwrap_or(1));
}
