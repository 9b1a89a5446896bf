//! `p2pb mode build` for MODs in Python (componentize-py) and JavaScript
//! (componentize-qjs): the language's toolchain turns the entry file (and
//! the modules beside it) into a component against the project's copy of
//! the contract (`p2pbroker/wit`, as `p2pb mode new --lang …` writes it).
//! The manifest comes from `p2pbroker.toml`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The manifest of a MOD that has no Cargo.toml.
pub const MANIFEST: &str = "p2pbroker.toml";

/// A language whose toolchain is a separate program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// componentize-py.
    Python,
    /// componentize-qjs (QuickJS).
    Js,
}

impl Lang {
    /// The language of the project in `dir`, by its entry file.
    pub fn detect(dir: &Path) -> Option<Lang> {
        [Lang::Python, Lang::Js]
            .into_iter()
            .find(|l| dir.join(l.entry()).is_file())
    }

    /// The file the toolchain starts from.
    pub fn entry(self) -> &'static str {
        match self {
            Lang::Python => "app.py",
            Lang::Js => "app.js",
        }
    }

    /// The toolchain's program name.
    pub fn tool(self) -> &'static str {
        match self {
            Lang::Python => "componentize-py",
            Lang::Js => "componentize-qjs",
        }
    }

    /// The environment variable that names the toolchain's program.
    pub fn env(self) -> &'static str {
        match self {
            Lang::Python => "P2PB_COMPONENTIZE_PY",
            Lang::Js => "P2PB_COMPONENTIZE_QJS",
        }
    }

    /// The release this is checked against.
    pub fn version(self) -> &'static str {
        match self {
            Lang::Python => "0.25.1",
            Lang::Js => "0.4.5",
        }
    }

    /// How to install the toolchain.
    fn install_hint(self) -> String {
        let v = self.version();
        match self {
            Lang::Python => format!(
                "`python3 -m venv V && V/bin/pip install componentize-py=={v}`, then put V/bin on PATH"
            ),
            Lang::Js => format!(
                "`npm install --prefix V componentize-qjs@{v}`, then put V/node_modules/.bin on PATH"
            ),
        }
    }

    /// The toolchain to run: `$ENV`, else the one on PATH.
    fn find(self) -> anyhow::Result<PathBuf> {
        if let Some(p) = std::env::var_os(self.env()).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(self.tool()))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "{} is not installed: {}, or set {}",
                    self.tool(),
                    self.install_hint(),
                    self.env()
                )
            })
    }
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

/// Compile the project in `dir` to a component (no manifest yet); the
/// toolchain writes it under `work` first.
pub fn compile(lang: Lang, dir: &Path, work: &Path, verbose: bool) -> anyhow::Result<Vec<u8>> {
    let wit = dir.join("p2pbroker/wit");
    if !wit.join("mode.wit").is_file() {
        bail!(
            "{} has no contract: a {lang:?} MOD carries it in p2pbroker/wit (`p2pb mode new` writes it)",
            dir.display()
        );
    }
    let tool = lang.find()?;
    let work = work.join(lang.tool());
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let work = work
        .canonicalize()
        .with_context(|| format!("cannot use {}", work.display()))?;
    let out = work.join("mod.wasm");
    let mut cmd = Command::new(&tool);
    match lang {
        Lang::Python => {
            cmd.arg("-d")
                .arg(&wit)
                .args(["-w", "p2pbroker:mode/mode", "componentize", "-p"])
                .arg(dir)
                .arg("-p")
                .arg(dir.join("p2pbroker/python"))
                .arg("app");
        }
        // QuickJS rather than StarlingMonkey (componentize-js 0.23): a
        // tenth of the size, and StarlingMonkey's bindings lack the class
        // of a resource whose interface has no functions (the `network`
        // that `instance-network` returns). The project's modules resolve
        // from its root; the synchronous runtime (the contract's calls are
        // synchronous).
        Lang::Js => {
            cmd.arg("--wit")
                .arg(&wit)
                .arg("--js")
                .arg(dir.join("app.js"))
                .arg("--module-root")
                .arg(dir)
                .args(["-n", "p2pbroker:mode/mode", "--sync"]);
        }
    }
    cmd.arg("-o").arg(&out);
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
