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
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a key's public half and ID.
    Show {
        /// A .pub or .key file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Print `v` as one JSON line, or run `human`.
fn report(json: bool, v: serde_json::Value, human: impl FnOnce()) {
    if json {
        println!("{}", p2pbroker::text::json_line(&v));
    } else {
        human();
    }
}

/// Run a `p2pb key` command.
pub fn key(cmd: KeyCommand) -> anyhow::Result<u8> {
    match cmd {
        KeyCommand::Generate { out, json } => {
            let (pk, sk, pubf) = keys::generate(&out)?;
            let v = serde_json::json!({
                "key_id": pk.id_hex(), "public": pk.hex(), "secret_file": sk, "public_file": pubf,
            });
            report(json, v, || {
                outln!("key id   {}", pk.id_hex());
                outln!("public   {}", pk.hex());
                outln!(
                    "secret   {} (owner-only; keep it off shared machines)",
                    sk.display()
                );
                outln!("pub file {}", pubf.display());
            });
        }
        KeyCommand::Show { file, json } => {
            let pk = keys::read_public(&file)?;
            let v = serde_json::json!({"key_id": pk.id_hex(), "public": pk.hex()});
            report(json, v, || {
                outln!("key id   {}", pk.id_hex());
                outln!("public   {}", pk.hex());
            });
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
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Sign a component, keeping signatures already present.
pub fn sign(a: SignArgs) -> anyhow::Result<u8> {
    let sk = keys::read_secret(&a.key)?;
    let bytes = super::read_component(&a.file)?;
    let signed = trust::sign(&bytes, &sk)?;
    let out = a.out.unwrap_or_else(|| a.file.clone());
    write_atomically(&out, &signed)?;
    let n = trust::signers(&signed, &[])?.len();
    let id = sk.public().id_hex();
    let v = serde_json::json!({"file": out, "key_id": id, "signatures": n});
    report(a.json, v, || {
        outln!(
            "signed {} with key {id} ({n} signature(s) now)",
            out.display()
        )
    });
    Ok(0)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("signing");
    std::fs::write(&tmp, bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", path.display()))?;
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
    /// Print JSON.
    #[arg(long)]
    json: bool,
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
    let mut list = Vec::new();
    for (k, path) in trusted.iter().zip(&a.keys) {
        let ok = found.contains(k);
        missing += usize::from(!ok);
        list.push(serde_json::json!({"key_id": k.id_hex(), "key_file": path, "signed": ok}));
        if a.json {
            continue;
        }
        if ok {
            outln!("ok       {} ({})", k.id_hex(), path.display());
        } else {
            outln!(
                "MISSING  {} ({}): no valid signature",
                k.id_hex(),
                path.display()
            );
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"valid": missing == 0, "keys": list})
        );
    }
    Ok(if missing == 0 { 0 } else { super::EXIT_FAILED })
}

/// `p2pb policy` subcommands.
#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Check a policy before deploying it: every problem with its line,
    /// or what it grants (MODs, signatures, orders, who may map and
    /// connect). Secrets in MOD config are never shown.
    Check {
        /// The policy file.
        file: PathBuf,
        /// Judge this MODs folder's components (with its allow.list) too,
        /// as `p2pb daemon --modes` would: whether the policy admits each
        /// and with which effective grants. The built-in MODs are always
        /// judged, unless `--no-builtin-modes`.
        #[arg(long)]
        modes: Option<PathBuf>,
        /// Judge only the `--modes` folder, as `p2pb daemon
        /// --no-builtin-modes` would load.
        #[arg(long, requires = "modes")]
        no_builtin_modes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Append a signature over FILE's exact bytes to FILE.sig.
    Sign {
        /// The secret key file.
        #[arg(long)]
        key: PathBuf,
        /// A policy (or, with --root, a root of trust).
        file: PathBuf,
        /// FILE is a root of trust (root.toml), not a policy.
        #[arg(long)]
        root: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a policy bundle (FILE + FILE.sig) against a root of trust.
    Verify {
        /// The policy file.
        file: PathBuf,
        /// The root of trust (root.toml).
        #[arg(long)]
        root: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy a signed policy (and the root, if given) into DIR for any
    /// static web server to serve; the broker polls it.
    Publish {
        /// The policy file (FILE.sig must exist).
        file: PathBuf,
        /// The folder to publish into.
        #[arg(long)]
        to: PathBuf,
        /// Also publish this root (root.toml + root.toml.sig).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn sig_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// A policy, root or signature file, read capped (see `p2pbroker::files`).
fn read_doc(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use p2pbroker::files::{Links, read_document};
    Ok(read_document(
        path,
        p2pbroker::trust::bundle::MAX_DOCUMENT,
        Links::Follow,
    )?)
}

pub(super) fn doc_text(path: &std::path::Path) -> anyhow::Result<String> {
    Ok(String::from_utf8(read_doc(path)?)?)
}

/// Run a `p2pb policy` command.
pub fn policy(cmd: PolicyCommand) -> anyhow::Result<u8> {
    use p2pbroker::trust::bundle;
    match cmd {
        PolicyCommand::Check {
            file,
            modes,
            no_builtin_modes,
            json,
        } => super::policy_check::run(&file, modes.as_deref(), !no_builtin_modes, json),
        PolicyCommand::Sign {
            key,
            file,
            root,
            json,
        } => {
            let sk = keys::read_secret(&key)?;
            let doc = read_doc(&file)?;
            if root {
                bundle::Root::parse(&doc)?;
            } else {
                p2pbroker::policy::Policy::parse(std::str::from_utf8(&doc)?)?;
            }
            let sig = sig_path(&file);
            let mut text = doc_text(&sig).unwrap_or_default();
            let id = sk.public().id_hex();
            if text
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(id.as_str()))
            {
                anyhow::bail!("{} already has a signature by key {id}", sig.display());
            }
            text.push_str(&bundle::sign_line(root, &doc, &sk));
            write_atomically(&sig, text.as_bytes())?;
            let v = serde_json::json!({"file": file, "key_id": id, "signature_file": sig});
            report(json, v, || {
                outln!(
                    "signed {} with key {id} -> {}",
                    file.display(),
                    sig.display()
                )
            });
            Ok(0)
        }
        PolicyCommand::Verify { file, root, json } => {
            let r = bundle::Root::parse(&read_doc(&root)?)?;
            let doc = read_doc(&file)?;
            let sigs = read_doc(&sig_path(&file))?;
            let checked = bundle::check_policy(
                &r,
                &bundle::Seen::default(),
                &doc,
                &sigs,
                std::time::SystemTime::now(),
            );
            match checked
                .map_err(anyhow::Error::from)
                .and_then(|(text, serial)| {
                    p2pbroker::policy::Policy::parse(&text)?;
                    Ok(serial)
                }) {
                Ok(serial) => {
                    let v = serde_json::json!({"valid": true, "serial": serial, "root_version": r.version});
                    report(json, v, || {
                        outln!(
                            "ok: serial {serial}, signed by the threshold of root v{}",
                            r.version
                        )
                    });
                    Ok(0)
                }
                Err(e) => {
                    let v = serde_json::json!({"valid": false, "error": e.to_string()});
                    report(json, v, || outln!("REFUSED: {e}"));
                    Ok(super::EXIT_FAILED)
                }
            }
        }
        PolicyCommand::Publish {
            file,
            to,
            root,
            json,
        } => {
            std::fs::create_dir_all(&to)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", to.display()))?;
            let mut done = Vec::new();
            let mut files = vec![(file.clone(), "policy.toml")];
            if let Some(r) = &root {
                files.push((r.clone(), "root.toml"));
            }
            for (src, name) in files {
                let sig = sig_path(&src);
                anyhow::ensure!(
                    sig.exists(),
                    "{} is not signed (no {})",
                    src.display(),
                    sig.display()
                );
                write_atomically(&to.join(name), &read_doc(&src)?)?;
                write_atomically(&to.join(format!("{name}.sig")), &read_doc(&sig)?)?;
                done.push(serde_json::json!({"file": src, "published": to.join(name)}));
                if !json {
                    outln!("published {} -> {}", src.display(), to.join(name).display());
                }
            }
            if json {
                println!("{}", serde_json::Value::Array(done));
            }
            Ok(0)
        }
    }
}
