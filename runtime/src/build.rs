//! The MOD build pipeline behind `p2pb mode build`: compile a mode crate to
//! a wasm core module, then turn it into a component with wit-component.
//!
//! Toolchain, in order: the rustup toolchain with `wasm32-unknown-unknown`
//! already installed; else `rustup target add wasm32-unknown-unknown`; else
//! Debian's `rustc-web`/`cargo-web` building std from source
//! (`-Zbuild-std`). Guests target wasm32-unknown-unknown and reach the
//! outside only through the WIT imports, so no WASI adapter is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The guest target.
pub const TARGET: &str = "wasm32-unknown-unknown";
/// Debian's cargo for the fallback (rustup's comes first on PATH).
const DEBIAN_CARGO: &str = "/usr/bin/cargo";

/// How the wasm target is provided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's toolchain with the target installed.
    Rustup,
    /// Debian's toolchain building std from source.
    DebianBuildStd,
}

impl std::fmt::Display for Toolchain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Toolchain::Rustup => "rustup",
            Toolchain::DebianBuildStd => "debian-build-std",
        })
    }
}

/// Options for one build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Where cargo puts intermediate files (default: the crate's own).
    pub target_dir: Option<PathBuf>,
    /// Where the component goes (default: `<target-dir>/modes`).
    pub out_dir: Option<PathBuf>,
    /// Show cargo's progress on stderr.
    pub verbose: bool,
}

/// A built component.
#[derive(Debug, Clone)]
pub struct Built {
    /// Crate name.
    pub package: String,
    /// Path of the component file.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: usize,
    /// Hex sha256.
    pub sha256: String,
    /// Toolchain used.
    pub toolchain: Toolchain,
}

/// Find (or install) a toolchain that can build for [`TARGET`].
pub fn ensure_toolchain() -> anyhow::Result<Toolchain> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if let Ok(out) = &installed
        && out.status.success()
    {
        if String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == TARGET)
        {
            return Ok(Toolchain::Rustup);
        }
        let added = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status();
        if matches!(added, Ok(s) if s.success()) {
            return Ok(Toolchain::Rustup);
        }
    }
    if Path::new(DEBIAN_CARGO).exists() && Path::new("/usr/lib/rustlib/src/rust/library").exists() {
        return Ok(Toolchain::DebianBuildStd);
    }
    bail!(
        "no toolchain for {TARGET}: `rustup target add {TARGET}` failed and the fallback is missing \
         (apt-get install rustc-web cargo-web rust-web-src lld-22)"
    )
}

#[derive(serde::Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
}

#[derive(serde::Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
    /// `[package.metadata]`; its `p2pbroker` table is the MOD's manifest.
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

/// Build the mode crate at `crate_dir` into a component.
pub fn build_mode(crate_dir: &Path, opts: &BuildOptions) -> anyhow::Result<Built> {
    let manifest = crate_dir.join("Cargo.toml");
    let manifest = manifest
        .canonicalize()
        .with_context(|| format!("no Cargo.toml in {}", crate_dir.display()))?;
    let meta = cargo_metadata(&manifest)?;
    let pkg = meta
        .packages
        .iter()
        .find(|p| p.manifest_path == manifest)
        .context("cargo metadata does not list the crate")?;
    let lib = pkg
        .targets
        .iter()
        .find(|t| {
            t.kind
                .iter()
                .any(|k| k == "lib" || k == "cdylib" || k == "rlib")
        })
        .with_context(|| format!("{} has no library target (src/lib.rs)", pkg.name))?;
    let toolchain = ensure_toolchain()?;
    let target_dir = opts
        .target_dir
        .clone()
        .unwrap_or_else(|| meta.target_directory.clone());
    run_cargo(&manifest, &target_dir, &toolchain, opts.verbose)?;
    let core = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", lib.name.replace('-', "_")));
    let module = std::fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
    let mut component = componentize(&module)?;
    // The manifest goes in before any signature, so signatures cover it.
    if let Some(m) = pkg.metadata.as_ref().and_then(|m| m.get("p2pbroker")) {
        let mut manifest: crate::trust::manifest::Manifest = serde_json::from_value(m.clone())
            .with_context(|| {
                format!(
                    "{}: [package.metadata.p2pbroker] is not a valid manifest",
                    pkg.name
                )
            })?;
        // The name defaults to the package's, without the usual prefix.
        let name = manifest.name.take().unwrap_or_else(|| {
            pkg.name
                .strip_prefix("p2pbroker-mode-")
                .unwrap_or(&pkg.name)
                .to_string()
        });
        if !crate::sandbox::contract::valid_name(&name) {
            anyhow::bail!(
                "{}: MOD name `{name}` is not [a-z0-9-]{{1,32}}; set `name` in [package.metadata.p2pbroker]",
                pkg.name
            );
        }
        manifest.name = Some(name);
        manifest
            .parsed_grants()
            .with_context(|| format!("{}: [package.metadata.p2pbroker]", pkg.name))?;
        component = crate::trust::manifest::append(&component, &manifest);
    }
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| target_dir.join("modes"));
    std::fs::create_dir_all(&out_dir)?;
    let path = out_dir.join(format!("{}.wasm", pkg.name));
    std::fs::write(&path, &component)?;
    Ok(Built {
        package: pkg.name.clone(),
        size: component.len(),
        sha256: hex::encode(crate::sandbox::sha256(&component)),
        path,
        toolchain,
    })
}

/// Turn a core module (with its embedded component-type section, as
/// wit-bindgen emits it) into a component.
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .context("the module carries no usable component-type section (is it built with the SDK?)")?
        .validate(true)
        .encode()
        .context("encoding the component")
}

fn cargo_metadata(manifest: &Path) -> anyhow::Result<Metadata> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata")
}

fn run_cargo(
    manifest: &Path,
    target_dir: &Path,
    tc: &Toolchain,
    verbose: bool,
) -> anyhow::Result<()> {
    let mut cmd = match tc {
        Toolchain::Rustup => Command::new("cargo"),
        Toolchain::DebianBuildStd => {
            let mut c = Command::new(DEBIAN_CARGO);
            c.env("RUSTC_BOOTSTRAP", "1")
                .env("RUSTC", "/usr/bin/rustc")
                .arg("-Zbuild-std=std,panic_abort");
            c
        }
    };
    // Size matters more than speed for a MOD: it is compiled once, cached,
    // and spends its time waiting on the network.
    // `cargo rustc --crate-type cdylib` makes the wasm artifact without the
    // crate declaring cdylib, which would break its host builds (export
    // names such as `p2pbroker:mode/lifecycle@0.1.2#info` are not valid in
    // a host linker's version script).
    cmd.args([
        "rustc",
        "--release",
        "--lib",
        "--crate-type",
        "cdylib",
        "--target",
        TARGET,
        "--manifest-path",
    ])
    .arg(manifest)
    .arg("--target-dir")
    .arg(target_dir)
    .args([
        "--config",
        "profile.release.opt-level=\"s\"",
        "--config",
        "profile.release.lto=true",
        "--config",
        "profile.release.codegen-units=1",
        "--config",
        "profile.release.panic=\"abort\"",
        "--config",
        "profile.release.strip=true",
        // getrandom 0.3 (pulled in by crates such as stun-types) has no
        // source on wasm32-unknown-unknown; a MOD that links it supplies
        // one from wasi:random (see modes/stun). Unused otherwise.
        "--config",
        "target.wasm32-unknown-unknown.rustflags=[\"--cfg\", \"getrandom_backend=\\\"custom\\\"\"]",
    ]);
    if !verbose {
        cmd.arg("--quiet");
    }
    // A host build's flags (e.g. coverage, sanitizers) must not leak into
    // the guest build.
    cmd.env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo build for {TARGET} failed ({status})");
    }
    Ok(())
}
