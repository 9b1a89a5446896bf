//! Where the `p2pb` binary is: it belongs to the p2pb package (client/cli),
//! not to the p2pbroker package whose tests these are, so cargo gives them
//! no `CARGO_BIN_EXE_p2pb`. It is built beside `p2pbd`, in the same
//! profile, once per test process (a no-op when `cargo test --workspace`
//! has built it already; `cargo test -p p2pbroker` alone would not).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The path of a fresh `p2pb` beside `p2pbd`; panics if it cannot be built.
pub fn p2pb() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| build(None))
}

/// The path of a fresh static `p2pb`, built for musl as the Debian package
/// ships it (`cargo xtask deb`), in `p2pbd`'s profile; panics if it cannot
/// be built (`rustup target add` the musl target first).
pub fn static_p2pb() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        build(Some(&format!(
            "{}-unknown-linux-musl",
            std::env::consts::ARCH
        )))
    })
}

/// Build `p2pb` (for `target`, else the host) in `p2pbd`'s profile; its path.
fn build(target: Option<&str>) -> String {
    let Some(p2pbd) = option_env!("CARGO_BIN_EXE_p2pbd") else {
        panic!("p2pb: only for the p2pbroker package's tests and benches")
    };
    let dir = Path::new(p2pbd).parent().expect("p2pbd has a folder");
    // target/debug for tests, target/release for benches.
    let out_dir = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let profile = if out_dir == "release" {
        "release"
    } else {
        "dev"
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut args = vec!["build", "--quiet", "-p", "p2pb", "--bin", "p2pb"];
    args.extend(["--profile", profile]);
    args.extend(target.iter().flat_map(|t| ["--target", *t]));
    let out = std::process::Command::new(cargo)
        .args(&args)
        .current_dir(root)
        .output()
        .expect("running cargo to build p2pb");
    assert!(
        out.status.success(),
        "building p2pb ({}): {}",
        target.unwrap_or("host"),
        String::from_utf8_lossy(&out.stderr)
    );
    // target/<profile dir>/p2pb, or target/<triple>/<profile dir>/p2pb.
    let bin: PathBuf = match target {
        None => dir.join("p2pb"),
        Some(t) => dir.parent().unwrap().join(t).join(out_dir).join("p2pb"),
    };
    bin.to_string_lossy().into_owned()
}
