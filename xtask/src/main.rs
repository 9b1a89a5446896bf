//! `cargo xtask`: project tasks.
//!
//! - `build-modes [--out DIR]`: build every MOD crate under `modes/` (all
//!   but the SDK) into one folder, with `allow.list` holding their sha256s:
//!   the folder the broker loads its built-in MODs from.
//! - `demo`: build the built-in MODs, load them with the built-in default
//!   policy, and show what each one's probe sees on this host.
//! - `test`: install what the suite needs on a fresh machine (the wasm
//!   target; as root, the NAT lab's Debian packages), then run
//!   `cargo test --workspace`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use p2pbroker::audit::MemorySink;
use p2pbroker::host::{EngineConfig, ModeHost, Op};
use p2pbroker::loader::AllowList;
use p2pbroker::netinfo::NetInfo;
use p2pbroker::policy::Policy;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("build-modes") => {
            let out = match args.get(1).map(String::as_str) {
                Some("--out") => PathBuf::from(args.get(2).context("--out needs a folder")?),
                _ => root().join("target/modes"),
            };
            build_modes(&out)?;
            Ok(())
        }
        Some("demo") => demo(),
        Some("test") => test(&args[1..]),
        _ => bail!("usage: cargo xtask build-modes [--out DIR] | demo | test [CARGO TEST ARGS]"),
    }
}

/// Build every MOD crate under `modes/` into `out`; returns (name, path).
fn build_modes(out: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root().join("modes"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").exists() && !p.ends_with("sdk"))
        .collect();
    crates.sort();
    let opts = p2pbroker::build::BuildOptions {
        target_dir: Some(root().join("target/guests")),
        out_dir: Some(out.to_path_buf()),
        verbose: false,
    };
    let mut built = Vec::new();
    let mut allow = String::new();
    for c in crates {
        let b = p2pbroker::build::build_mode(&c, &opts)
            .with_context(|| format!("building {}", c.display()))?;
        println!(
            "built {:<24} {:>8} bytes  sha256 {}",
            b.package, b.size, b.sha256
        );
        allow.push_str(&format!(
            "{}  {}\n",
            b.sha256,
            b.path.file_name().unwrap().to_string_lossy()
        ));
        built.push((b.package, b.path));
    }
    std::fs::write(out.join("allow.list"), allow)?;
    Ok(built)
}

fn demo() -> anyhow::Result<()> {
    let out = root().join("target/modes");
    let built = build_modes(&out)?;
    let allow: HashSet<String> = std::fs::read_to_string(out.join("allow.list"))?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let allow = AllowList::Sha256(allow);
    let policy = Policy::default_policy();
    let net = Arc::new(NetInfo::read());
    println!(
        "\nthis host: {} gateway(s), {} address(es)",
        net.gateways.len(),
        net.addresses.len()
    );
    let sink = Arc::new(MemorySink::default());
    let host = ModeHost::new(
        EngineConfig {
            concurrent_calls: 8,
            cache_dir: Some(root().join("target/modes-cache")),
            ..Default::default()
        },
        sink.clone(),
    )
    .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        for (name, file) in built {
            let bytes = std::fs::read(&file)?;
            let (mut mode, report) = host
                .load(&bytes, &allow, Default::default(), net.clone())
                .await?;
            let Ok(spec) = policy.spec(mode.name()) else {
                println!("{:<10} not in the default policy: not run", mode.name());
                continue;
            };
            if !spec.grants.is_empty() {
                // Port-mapping MODs talk to the gateway: only inside the lab.
                println!("{:<10} needs the network: not probed here", mode.name());
                continue;
            }
            mode.respec(&host, spec)?;
            let r = mode.call(Op::Probe).await;
            let outcome = match &r.result {
                Ok(o) => p2pbroker::json::output(o).to_string(),
                Err(e) => p2pbroker::json::call_error(e).to_string(),
            };
            println!(
                "{:<10} ({name}, code {:?}) probe in {:.2} ms: {outcome}",
                mode.name(),
                report.cache,
                r.elapsed.as_secs_f64() * 1e3
            );
        }
        anyhow::Ok(())
    })?;
    println!("{} capability decision(s) audited", sink.take().len());
    Ok(())
}

/// Debian packages the NAT lab runs (see tests/lab).
const LAB_PACKAGES: &[&str] = &[
    "iproute2",
    "nftables",
    "procps",
    "miniupnpd",
    "miniupnpd-nftables",
    "miniupnpc",
    "natpmpc",
    "coturn",
    "python3",
];

fn installed(pkg: &str) -> bool {
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn ensure_lab_packages() -> anyhow::Result<()> {
    let uid = std::process::Command::new("id").arg("-u").output()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!("the test suite's NAT lab builds network namespaces: run it as root");
    }
    let missing: Vec<&str> = LAB_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing the NAT lab's packages: {}", missing.join(" "));
    let ok = std::process::Command::new("apt-get")
        .args(["update", "-qq"])
        .status()?
        .success()
        && std::process::Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .status()?
            .success();
    if !ok {
        bail!("apt-get could not install {}", missing.join(" "));
    }
    Ok(())
}

fn test(extra: &[String]) -> anyhow::Result<()> {
    ensure_lab_packages()?;
    p2pbroker::build::ensure_toolchain()?;
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["test", "--workspace"])
            .args(extra)
            .current_dir(root())
            .status()?;
    std::process::exit(status.code().unwrap_or(1));
}
