//! `p2pb mode push` and `p2pb mode pull`: a MOD to and from an OCI
//! registry (see [`p2pbroker::oci`]).

use std::path::{Path, PathBuf};

use p2pbroker::oci::client::Client;
use p2pbroker::oci::{Reference, auth::Credentials};
use p2pbroker::text::escaped;

/// Arguments of `p2pb mode push`.
#[derive(clap::Args)]
pub struct PushArgs {
    /// The component (signed as it is to be run: signatures travel inside
    /// it).
    file: PathBuf,
    /// Where to: `oci://REGISTRY/REPO:TAG` (HTTPS) or `oci+http://…`
    /// (plain HTTP, for a lab). Credentials, if the registry asks:
    /// P2PB_REGISTRY_USER and P2PB_REGISTRY_PASSWORD.
    reference: String,
    /// Give up after this long (e.g. `30s`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    timeout: std::time::Duration,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `p2pb mode pull`.
#[derive(clap::Args)]
pub struct PullArgs {
    /// What: `oci://REGISTRY/REPO:TAG`, optionally pinned
    /// (`…@sha256:DIGEST`: anything else is refused).
    reference: String,
    /// Where to write the component (default: ./REPO-NAME.wasm).
    #[arg(short, long)]
    out: Option<PathBuf>,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
    /// Give up after this long (e.g. `30s`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    timeout: std::time::Duration,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn mode_name(component: &[u8]) -> Option<String> {
    p2pbroker::trust::manifest::read(component)
        .ok()
        .flatten()?
        .name
}

/// Push; print the pinned reference a policy names.
pub fn push(a: PushArgs) -> anyhow::Result<u8> {
    let r = Reference::parse(&a.reference)?;
    let bytes = p2pbroker::daemon::read_component(&a.file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let name = mode_name(&bytes);
    let pushed =
        Client::new(Credentials::from_env(), a.timeout).push(&r, &bytes, name.as_deref())?;
    if a.json {
        let v = serde_json::json!({
            "reference": pushed.pinned.to_string(),
            "digest": pushed.pinned.digest.map(|d| d.to_string()),
            "mode": name,
            "sha256": pushed.layer.hex(),
            "size": bytes.len(),
            "uploaded": !pushed.layer_existed,
        });
        println!("{}", p2pbroker::text::json_line(&v));
    } else {
        outln!("pushed   {}", pushed.pinned);
        if let Some(n) = &name {
            outln!("mode     {}", escaped(n));
        }
        outln!(
            "sha256   {} ({} bytes{})",
            pushed.layer.hex(),
            bytes.len(),
            if pushed.layer_existed {
                ", already in the registry"
            } else {
                ""
            }
        );
        let key = name
            .as_deref()
            .map(escaped)
            .unwrap_or_else(|| "NAME".into());
        outln!("policy   [modes.{key}] oci = \"{}\"", pushed.pinned);
    }
    Ok(0)
}

/// Pull; write the component where asked, as a whole or not at all.
pub fn pull(a: PullArgs) -> anyhow::Result<u8> {
    let r = Reference::parse(&a.reference)?;
    let out = a.out.clone().unwrap_or_else(|| {
        let last = r.repository.rsplit('/').next().unwrap_or("mod");
        PathBuf::from(format!("{last}.wasm"))
    });
    if !a.force && std::fs::symlink_metadata(&out).is_ok() {
        anyhow::bail!("{} exists (--force replaces it)", out.display());
    }
    let pulled = Client::new(Credentials::from_env(), a.timeout).pull(&r)?;
    write_whole(&out, &pulled.component)?;
    let name = mode_name(&pulled.component);
    let sha = p2pbroker::oci::Digest::of(&pulled.component).hex();
    let pinned = r.pinned(pulled.digest);
    if a.json {
        let v = serde_json::json!({
            "reference": pinned.to_string(), "digest": pulled.digest.to_string(),
            "mode": name, "sha256": sha, "size": pulled.component.len(), "path": out,
        });
        println!("{}", p2pbroker::text::json_line(&v));
    } else {
        outln!("pulled   {pinned}");
        if let Some(n) = &name {
            outln!("mode     {}", escaped(n));
        }
        outln!("sha256   {sha} ({} bytes)", pulled.component.len());
        outln!("wrote    {}", out.display());
    }
    Ok(0)
}

/// `bytes` to `path` through a temporary file beside it and a rename.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{file}.{}.partial", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("cannot write {}: {e}", path.display());
    }
    Ok(())
}
