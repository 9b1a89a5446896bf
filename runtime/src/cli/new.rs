//! `p2pb mode new`: a MOD project to start from.

use std::path::PathBuf;

use p2pbroker::scaffold::{self, Sdk};

/// The language of a new MOD.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate on the broker's SDK.
    Rust,
    /// A Python project, built with componentize-py.
    Python,
    /// A JavaScript project, built with componentize-qjs (QuickJS).
    Js,
}

/// Arguments of `p2pb mode new`.
#[derive(clap::Args)]
pub struct Args {
    /// The MOD's name: a-z, 0-9 and `-`, starting with a letter (what
    /// policies call it).
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to write it (default: ./NAME); must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Use this SDK crate folder instead of a copy inside the project
    /// (Rust only).
    #[arg(long)]
    sdk: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Write the project; print where and what next.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let sdk = match &a.sdk {
        Some(_) if !matches!(a.lang, Lang::Rust) => {
            anyhow::bail!(
                "--sdk is for Rust projects: a Python or JavaScript project carries its SDK"
            )
        }
        None => Sdk::Copy,
        Some(dir) => {
            let dir = dir
                .canonicalize()
                .map_err(|e| anyhow::anyhow!("SDK folder {}: {e}", dir.display()))?;
            if !dir.join("Cargo.toml").is_file() {
                anyhow::bail!("SDK folder {} holds no Cargo.toml", dir.display());
            }
            Sdk::At(dir)
        }
    };
    let (files, lang) = match a.lang {
        Lang::Rust => (scaffold::rust_project(&a.name, &sdk)?, "rust"),
        Lang::Python => (scaffold::python_project(&a.name)?, "python"),
        Lang::Js => (scaffold::js_project(&a.name)?, "js"),
    };
    let dest = a.dir.unwrap_or_else(|| PathBuf::from(&a.name));
    scaffold::write_project(&dest, &files)?;
    if a.json {
        let v = serde_json::json!({
            "name": a.name, "lang": lang, "path": dest, "files": files.len(),
        });
        println!("{}", p2pbroker::text::json_line(&v));
    } else {
        outln!("created  {} ({} files)", dest.display(), files.len());
        let test = match a.lang {
            Lang::Rust => "cargo test",
            Lang::Python => "PYTHONPATH=p2pbroker/python python3 -m unittest",
            Lang::Js => "node --test",
        };
        outln!("next     cd {} && {test}", dest.display());
        outln!("         p2pb mode build .");
        outln!(
            "         p2pb mode run target/modes/{}.wasm probe --grant 'udp:send,receive@gateway:5351'",
            a.name
        );
    }
    Ok(0)
}
