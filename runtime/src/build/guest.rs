//! The part of the MOD build pipeline that the runtime's own build script
//! shares (it is included there with `#[path]`, so it uses only std,
//! anyhow, serde, serde_json and wit-component, never `crate::`): find a
//! toolchain, compile a mode crate to a wasm core module, turn it into a
//! component, and read the crate's manifest table.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The guest target.
pub const TARGET: &str = "wasm32-unknown-unknown";
/// Debian's cargo for the fallback (rustup's comes first on PATH).
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
/// Custom section that carries a MOD's manifest.
pub const MANIFEST_SECTION: &str = "p2pbroker-manifest";

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

/// A mode crate compiled to a component, before its manifest goes in.
pub struct Compiled {
    /// Crate name.
    pub package: String,
    /// The component, without a manifest section.
    pub component: Vec<u8>,
    /// `[package.metadata.p2pbroker]` with `name` filled in (the package's
    /// name without the `p2pbroker-mode-` prefix unless it names one).
    pub manifest: Option<serde_json::Value>,
    /// Toolchain used, by name (`rustup`, `debian-build-std`; the other
    /// languages' pipelines name theirs).
    pub toolchain: String,
    /// cargo's target folder used.
    pub target_dir: PathBuf,
}

/// Compile the mode crate at `crate_dir` (cargo's intermediate files in
/// `target_dir`, default the crate's own) and componentize it.
pub fn compile(
    crate_dir: &Path,
    target_dir: Option<&Path>,
    verbose: bool,
) -> anyhow::Result<Compiled> {
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
    let target_dir = target_dir.map_or_else(|| meta.target_directory.clone(), Path::to_path_buf);
    run_cargo(&manifest, &target_dir, &toolchain, verbose)?;
    let core = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", lib.name.replace('-', "_")));
    let module = std::fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
    let mut manifest = pkg
        .metadata
        .as_ref()
        .and_then(|m| m.get("p2pbroker"))
        .cloned();
    if let Some(m) = manifest.as_mut() {
        let obj = m.as_object_mut().with_context(|| {
            format!("{}: [package.metadata.p2pbroker] is not a table", pkg.name)
        })?;
        if !obj.contains_key("name") {
            let name = pkg
                .name
                .strip_prefix("p2pbroker-mode-")
                .unwrap_or(&pkg.name);
            obj.insert("name".into(), name.into());
        }
    }
    Ok(Compiled {
        package: pkg.name.clone(),
        component: componentize(&module)?,
        manifest,
        toolchain: toolchain.to_string(),
        target_dir,
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

/// `bin` with `manifest` (JSON) appended as its manifest section.
pub fn append_manifest(bin: &[u8], manifest: &serde_json::Value) -> Vec<u8> {
    let json = serde_json::to_vec(manifest).expect("JSON values serialise");
    append_section(bin, MANIFEST_SECTION, &json)
}

/// `bin` with a custom section `name` holding `payload` appended.
pub fn append_section(bin: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(name.len() + payload.len() + 10);
    put_leb(&mut body, name.len() as u32);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = Vec::with_capacity(bin.len() + body.len() + 6);
    out.extend_from_slice(bin);
    out.push(0);
    put_leb(&mut out, body.len() as u32);
    out.extend_from_slice(&body);
    out
}

/// Append `v` as unsigned LEB128.
pub fn put_leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
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
    // Nor a wrapper: under `cargo clippy` (which runs the runtime's build
    // script) clippy-driver and its `-D warnings` would lint the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo build for {TARGET} failed ({status})");
    }
    Ok(())
}
