//! `p2pb mode new`: a MOD project to start from.

use std::path::PathBuf;

use p2pbroker::scaffold::{self, Sdk};

/// The language of a new MOD.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate on the broker's SDK.
    Rust,
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
    /// Use this SDK crate folder instead of a copy inside the project.
    #[arg(long)]
    sdk: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Write the project; print where and what next.
pub fn run(a: Args) -> anyhow::Result<u8> {
    let Lang::Rust = a.lang;
    let sdk = match &a.sdk {
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
    let files = scaffold::rust_project(&a.name, &sdk)?;
    let dest = a.dir.unwrap_or_else(|| PathBuf::from(&a.name));
    scaffold::write_project(&dest, &files)?;
    if a.json {
        let v = serde_json::json!({
            "name": a.name, "lang": "rust", "path": dest, "files": files.len(),
        });
        println!("{}", p2pbroker::text::json_line(&v));
    } else {
        outln!("created  {} ({} files)", dest.display(), files.len());
        outln!("next     cd {} && cargo test", dest.display());
        outln!("         p2pb mode build .");
        outln!(
            "         p2pb mode run target/modes/{}.wasm probe --grant 'udp:send,receive@gateway:5351'",
            a.name
        );
    }
    Ok(0)
}
