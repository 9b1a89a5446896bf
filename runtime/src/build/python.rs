//! `p2pb mode build` for a MOD in Python: componentize-py turns `app.py`
//! (and the modules beside it) into a component against the project's
//! copy of the contract (`p2pbroker/wit`, as `p2pb mode new --lang
//! python` writes it), with the Python SDK (`p2pbroker/python`) on its
//! path. The manifest comes from `p2pbroker.toml`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The componentize-py release this is checked against.
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// Environment variable naming the componentize-py executable.
pub const COMPONENTIZE_PY_ENV: &str = "P2PB_COMPONENTIZE_PY";
/// The project file that marks a Python MOD.
pub const ENTRY: &str = "app.py";
/// The manifest of a MOD that has no Cargo.toml.
pub const MANIFEST: &str = "p2pbroker.toml";

/// The componentize-py to run: `$P2PB_COMPONENTIZE_PY`, else the one on
/// PATH.
fn componentize_py() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(COMPONENTIZE_PY_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("componentize-py"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "componentize-py is not installed: `python3 -m venv V && V/bin/pip install \
                 componentize-py=={COMPONENTIZE_PY}`, then put V/bin on PATH or set \
                 {COMPONENTIZE_PY_ENV}=V/bin/componentize-py"
            )
        })
}

/// The manifest in `dir`/p2pbroker.toml, as JSON (name and grants).
pub fn manifest(dir: &Path) -> anyhow::Result<serde_json::Value> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not TOML", path.display()))?;
    serde_json::to_value(table).with_context(|| format!("{}", path.display()))
}

/// Compile the Python project in `dir` to a component (no manifest yet);
/// componentize-py writes it under `work` first.
pub fn compile(dir: &Path, work: &Path, verbose: bool) -> anyhow::Result<Vec<u8>> {
    let wit = dir.join("p2pbroker/wit");
    if !wit.join("mode.wit").is_file() {
        bail!(
            "{} has no contract: a Python MOD carries it in p2pbroker/wit (`p2pb mode new --lang python` writes it)",
            dir.display()
        );
    }
    let tool = componentize_py()?;
    let work = work.join("componentize-py");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let out = work.join("mod.wasm");
    let mut cmd = Command::new(&tool);
    cmd.arg("-d")
        .arg(&wit)
        .args(["-w", "p2pbroker:mode/mode", "componentize", "-p"])
        .arg(dir)
        .arg("-p")
        .arg(dir.join("p2pbroker/python"))
        .arg(ENTRY.trim_end_matches(".py"))
        .arg("-o")
        .arg(&out);
    if !verbose {
        cmd.stdout(std::process::Stdio::null());
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", tool.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", tool.display());
    }
    std::fs::read(&out).with_context(|| format!("reading {}", out.display()))
}
