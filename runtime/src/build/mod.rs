//! The MOD build pipeline behind `p2pb mode build`: compile a mode crate to
//! a wasm core module, then turn it into a component with wit-component.
//!
//! Toolchain, in order: the rustup toolchain with `wasm32-unknown-unknown`
//! already installed; else `rustup target add wasm32-unknown-unknown`; else
//! Debian's `rustc-web`/`cargo-web` building std from source
//! (`-Zbuild-std`). Guests target wasm32-unknown-unknown and reach the
//! outside only through the WIT imports, so no WASI adapter is needed.

mod guest;
pub mod script;

use std::path::{Path, PathBuf};

use anyhow::Context;

pub(crate) use guest::put_leb;
pub use guest::{
    MANIFEST_SECTION, TARGET, Toolchain, append_section, componentize, ensure_toolchain,
};

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
    /// Toolchain used (`rustup`, `debian-build-std`, `componentize-py`).
    pub toolchain: String,
}

/// Build the MOD project at `dir` into a component, its manifest checked
/// and appended: a Rust crate (`Cargo.toml`; the manifest is
/// `[package.metadata.p2pbroker]`), a Python project (`app.py`) or a
/// JavaScript one (`app.js`; for both the manifest is `p2pbroker.toml`).
pub fn build_mode(dir: &Path, opts: &BuildOptions) -> anyhow::Result<Built> {
    let c = if dir.join("Cargo.toml").is_file() {
        guest::compile(dir, opts.target_dir.as_deref(), opts.verbose)?
    } else if let Some(lang) = script::Lang::detect(dir) {
        let manifest = script::manifest(dir)?;
        let package = manifest
            .get("name")
            .and_then(|n| n.as_str())
            .with_context(|| format!("{}: no `name`", dir.join(script::MANIFEST).display()))?
            .to_string();
        let target_dir = opts
            .target_dir
            .clone()
            .unwrap_or_else(|| dir.join("target"));
        guest::Compiled {
            component: script::compile(lang, dir, &target_dir, opts.verbose)?,
            package,
            manifest: Some(manifest),
            toolchain: lang.tool().into(),
            target_dir,
        }
    } else {
        anyhow::bail!(
            "{}: no MOD project here (a Rust crate has Cargo.toml, a Python MOD app.py, a JavaScript MOD app.js)",
            dir.display()
        );
    };
    let mut component = c.component;
    // The manifest goes in before any signature, so signatures cover it.
    if let Some(m) = &c.manifest {
        let manifest: crate::trust::manifest::Manifest = serde_json::from_value(m.clone())
            .with_context(|| format!("{}: its manifest is not a valid manifest", c.package))?;
        let name = manifest.name.as_deref().unwrap_or_default();
        if !crate::sandbox::contract::valid_name(name) {
            anyhow::bail!(
                "{}: MOD name `{name}` is not [a-z0-9-]{{1,32}}; set `name` in its manifest",
                c.package
            );
        }
        manifest
            .parsed_grants()
            .with_context(|| format!("{}: its manifest", c.package))?;
        // The table as written, not re-serialised: the runtime's build
        // script embeds the built-in MODs with the same bytes.
        component = guest::append_manifest(&component, m);
    }
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| c.target_dir.join("modes"));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let path = out_dir.join(format!("{}.wasm", c.package));
    std::fs::write(&path, &component)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Built {
        package: c.package,
        size: component.len(),
        sha256: hex::encode(crate::sandbox::sha256(&component)),
        path,
        toolchain: c.toolchain,
    })
}
