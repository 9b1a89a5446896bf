//! `p2pb mode inspect`.

use std::path::PathBuf;
use std::sync::Arc;

use p2pbroker::netinfo::NetInfo;
use p2pbroker::sandbox::ModeSpec;
use p2pbroker::sandbox::load::AllowList;

/// Arguments of `p2pb mode inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The component file.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Also show what this policy grants the MOD, and whether it would load
    /// (trust, pin, manifest ∩ policy).
    #[arg(long)]
    policy: Option<PathBuf>,
}

pub async fn run(a: Args) -> anyhow::Result<u8> {
    let bytes = super::read_component(&a.file)?;
    let host = super::one_off_host(None, false, Arc::new(p2pbroker::audit::NullSink))?;
    let (component, report) = host.compile(&bytes, &AllowList::Any)?;
    let engine = host.engine();
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    // Name and version come from the component's own `info`, run in the
    // sandbox with no capabilities at all.
    // (Compiled once: the imports above still print when linking fails.)
    let info = host
        .link(
            &component,
            &report.sha256,
            ModeSpec::default(),
            Arc::new(NetInfo::default()),
        )
        .await
        .map(|mode| mode.info().clone())
        .map_err(|e| e.to_string());
    let manifest = p2pbroker::trust::manifest::read(&bytes).map_err(|e| e.to_string());
    let signers = p2pbroker::trust::signers(&bytes, &[])?;
    // What signatures cover; what revocations and pins should name.
    let content = p2pbroker::trust::admission::content_sha256(&bytes)
        .map(hex::encode)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let policy = match &a.policy {
        Some(p) => Some(
            p2pbroker::policy::Policy::parse(&p2pbroker::files::read_text(
                p,
                p2pbroker::trust::bundle::MAX_DOCUMENT,
                p2pbroker::files::Links::Follow,
            )?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        ),
        None => None,
    };
    let verdict = match (&policy, &info) {
        (Some(p), Ok(i)) => {
            let granted = p.modes.get(&i.name).map(|m| m.grants.clone());
            let allow = std::collections::HashSet::from([report.sha256.clone()]);
            let load =
                p2pbroker::daemon::load_one(&host, &bytes, &allow, p, Arc::new(NetInfo::default()))
                    .await;
            Some((
                granted,
                load.map(|m| {
                    m.spec()
                        .grants
                        .iter()
                        .map(|g| g.to_string())
                        .collect::<Vec<_>>()
                }),
            ))
        }
        _ => None,
    };
    if a.json {
        let mut v = serde_json::json!({
            "file": a.file, "sha256": report.sha256, "content_sha256": content,
            "size": report.size,
            "imports": imports, "exports": exports,
            "manifest": manifest.as_ref().ok().cloned().flatten(),
            "signatures": signers.iter().map(|s| serde_json::json!({
                "key_id": s.key_id, "covers_content": s.covers_content,
            })).collect::<Vec<_>>(),
        });
        if let Some((granted, load)) = &verdict {
            v["policy_grants"] = serde_json::json!(granted);
            match load {
                Ok(g) => v["effective_grants"] = serde_json::json!(g),
                Err(e) => v["refused"] = e.clone().into(),
            }
        }
        match &info {
            Ok(i) => {
                v["name"] = i.name.clone().into();
                v["version"] = i.version.clone().into();
                v["summary"] = i.summary.clone().into();
            }
            Err(e) => v["error"] = e.clone().into(),
        }
        println!("{}", p2pbroker::text::json_line(&v));
    } else {
        match &info {
            Ok(i) => {
                outln!("name      {}", i.name);
                outln!("version   {}", i.version);
                outln!("summary   {}", i.summary);
            }
            Err(e) => outln!("error     {e}"),
        }
        outln!("sha256    {} (file)", report.sha256);
        outln!(
            "content   {} (what signatures cover: revoke and pin this)",
            content
        );
        outln!("size      {} bytes", report.size);
        outln!("imports   (its capability surface; sockets still pass the policy's gate)");
        for i in &imports {
            outln!("  {i}");
        }
        outln!("exports");
        for e in &exports {
            outln!("  {e}");
        }
        match &manifest {
            Ok(Some(m)) => {
                outln!(
                    "manifest  name {} grants {}",
                    m.name.as_deref().unwrap_or("(none: the daemon refuses it)"),
                    listed(&m.grants)
                );
                if !m.optional_grants.is_empty() {
                    outln!(
                        "          optional grants {} (only where the policy grants them)",
                        listed(&m.optional_grants)
                    );
                }
            }
            Ok(None) => outln!("manifest  none (the daemon refuses a MOD without one)"),
            Err(e) => outln!("manifest  INVALID: {e}"),
        }
        if signers.is_empty() {
            outln!("signed    no");
        }
        for s in &signers {
            let covers = if s.covers_content {
                "covers these bytes"
            } else {
                "does NOT cover these bytes"
            };
            outln!("signed    key {} ({covers})", s.key_id);
        }
        if let Some((granted, load)) = &verdict {
            outln!(
                "policy    grants {}",
                listed(granted.as_deref().unwrap_or_default())
            );
            match load {
                Ok(g) => outln!("effective {} (would load)", listed(g)),
                Err(e) => outln!("REFUSED   {e}"),
            }
        }
    }
    Ok(if info.is_ok() { 0 } else { super::EXIT_USAGE })
}

/// Grants as the policy writes them, comma-separated (`none` if empty).
fn listed<T: std::fmt::Display>(grants: &[T]) -> String {
    if grants.is_empty() {
        return "none".into();
    }
    grants
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
