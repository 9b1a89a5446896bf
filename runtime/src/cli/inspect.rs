//! `p2pb mode inspect`.

use std::path::PathBuf;
use std::sync::Arc;

use p2pbroker::host::ModeSpec;
use p2pbroker::loader::AllowList;
use p2pbroker::netinfo::NetInfo;

/// Arguments of `p2pb mode inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// The component file.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
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
    if a.json {
        let mut v = serde_json::json!({
            "file": a.file, "sha256": report.sha256, "size": report.size,
            "imports": imports, "exports": exports,
        });
        match &info {
            Ok(i) => {
                v["name"] = i.name.clone().into();
                v["version"] = i.version.clone().into();
                v["summary"] = i.summary.clone().into();
            }
            Err(e) => v["error"] = e.clone().into(),
        }
        println!("{v}");
    } else {
        match &info {
            Ok(i) => {
                println!("name      {}", i.name);
                println!("version   {}", i.version);
                println!("summary   {}", i.summary);
            }
            Err(e) => println!("error     {e}"),
        }
        println!("sha256    {}", report.sha256);
        println!("size      {} bytes", report.size);
        println!("imports   (its capability surface; sockets still pass the policy's gate)");
        for i in &imports {
            println!("  {i}");
        }
        println!("exports");
        for e in &exports {
            println!("  {e}");
        }
    }
    Ok(if info.is_ok() { 0 } else { super::EXIT_USAGE })
}
