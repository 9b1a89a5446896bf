//! Where the `p2pb` binary is: it belongs to the p2pb package (client/cli),
//! not to the p2pbroker package whose tests these are, so cargo gives them
//! no `CARGO_BIN_EXE_p2pb`. It is built beside `p2pbd`, in the same
//! profile, once per test process (a no-op when `cargo test --workspace`
//! has built it already; `cargo test -p p2pbroker` alone would not).
#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

/// The path of a fresh `p2pb` beside `p2pbd`; panics if it cannot be built.
pub fn p2pb() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let Some(p2pbd) = option_env!("CARGO_BIN_EXE_p2pbd") else {
            panic!("p2pb: only for the p2pbroker package's tests and benches")
        };
        let p2pbd = Path::new(p2pbd);
        let dir = p2pbd.parent().expect("p2pbd has a folder");
        // target/debug for tests, target/release for benches.
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("release") => "release",
            _ => "dev",
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let out = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "p2pb",
                "--bin",
                "p2pb",
                "--profile",
                profile,
            ])
            .current_dir(root)
            .output()
            .expect("running cargo to build p2pb");
        assert!(
            out.status.success(),
            "building p2pb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("p2pb").to_string_lossy().into_owned()
    })
}
