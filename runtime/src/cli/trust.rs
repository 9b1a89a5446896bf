//! `p2pb key generate|show` and `p2pb mode sign|verify`.

use std::path::{Path, PathBuf};

use p2pbroker::trust::{self, keys};

/// `p2pb key` subcommands.
#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Generate an Ed25519 key pair: OUT.key (owner-only) and OUT.pub.
    Generate {
        /// Path without extension.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a key's public half and ID.
    Show {
        /// A .pub or .key file.
        file: PathBuf,
    },
}

/// Run a `p2pb key` command.
pub fn key(cmd: KeyCommand) -> anyhow::Result<u8> {
    match cmd {
        KeyCommand::Generate { out } => {
            let (pk, sk, pubf) = keys::generate(&out)?;
            println!("key id   {}", pk.id_hex());
            println!("public   {}", pk.hex());
            println!(
                "secret   {} (owner-only; keep it off shared machines)",
                sk.display()
            );
            println!("pub file {}", pubf.display());
        }
        KeyCommand::Show { file } => {
            let pk = keys::read_public(&file)?;
            println!("key id   {}", pk.id_hex());
            println!("public   {}", pk.hex());
        }
    }
    Ok(0)
}

/// `p2pb mode sign`.
#[derive(clap::Args)]
pub struct SignArgs {
    /// The secret key file.
    #[arg(long)]
    key: PathBuf,
    /// The component; signed in place unless --out is given.
    file: PathBuf,
    /// Write the signed component here instead.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Sign a component, keeping signatures already present.
pub fn sign(a: SignArgs) -> anyhow::Result<u8> {
    let sk = keys::read_secret(&a.key)?;
    let bytes = super::read_component(&a.file)?;
    let signed = trust::sign(&bytes, &sk)?;
    let out = a.out.unwrap_or_else(|| a.file.clone());
    write_atomically(&out, &signed)?;
    let n = trust::signers(&signed, &[])?.len();
    println!(
        "signed {} with key {} ({n} signature(s) now)",
        out.display(),
        sk.public().id_hex()
    );
    Ok(0)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("signing");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `p2pb mode verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The component.
    file: PathBuf,
    /// Public keys that must each have signed it.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
}

/// Exit 0 when every given key signed exactly these bytes, 1 otherwise.
pub fn verify(a: VerifyArgs) -> anyhow::Result<u8> {
    let bytes = super::read_component(&a.file)?;
    let trusted: Vec<keys::PublicKey> = a
        .keys
        .iter()
        .map(|k| keys::read_public(k))
        .collect::<Result<_, _>>()?;
    let found = trust::verify(&bytes, &trusted)?;
    let mut missing = 0;
    for (k, path) in trusted.iter().zip(&a.keys) {
        if found.contains(k) {
            println!("ok       {} ({})", k.id_hex(), path.display());
        } else {
            missing += 1;
            println!(
                "MISSING  {} ({}): no valid signature",
                k.id_hex(),
                path.display()
            );
        }
    }
    Ok(if missing == 0 { 0 } else { super::EXIT_FAILED })
}
