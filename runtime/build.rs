//! Embeds the built-in MODs in the `p2pb` binary: every crate under
//! `modes/` (but the SDK and the template) is compiled to a component with the same
//! pipeline as `p2pb mode build` (shared source: src/build/guest.rs) and
//! included as bytes, so `p2pb daemon` serves with no MODs folder.
//!
//! `P2PB_BUILTIN_MODES=DIR` embeds the components of DIR instead (a
//! packager's prebuilt, signed set); `P2PB_BUILTIN_MODES=none` embeds none.

use std::path::{Path, PathBuf};

#[path = "src/build/guest.rs"]
#[allow(dead_code)]
mod guest;

fn main() {
    println!("cargo:rerun-if-env-changed=P2PB_BUILTIN_MODES");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let files = match std::env::var("P2PB_BUILTIN_MODES") {
        Ok(v) if v == "none" => Vec::new(),
        Ok(dir) => prebuilt(Path::new(&dir)),
        Err(_) => build_all(&out),
    };
    let mut code = String::from("&[\n");
    for (name, path) in &files {
        code.push_str(&format!(
            "    Builtin {{ file: {name:?}, bytes: include_bytes!({:?}) }},\n",
            path.display().to_string()
        ));
    }
    code.push(']');
    std::fs::write(out.join("builtin_modes.rs"), code).expect("writing builtin_modes.rs");
}

/// The `*.wasm` files of `dir`, by name.
fn prebuilt(dir: &Path) -> Vec<(String, PathBuf)> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let read = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("P2PB_BUILTIN_MODES={}: {e}", dir.display()));
    let mut files: Vec<(String, PathBuf)> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .map(|p| {
            let abs = p.canonicalize().expect("a listed file exists");
            (p.file_name().unwrap().to_string_lossy().into_owned(), abs)
        })
        .collect();
    files.sort();
    files
}

/// Build every mode crate into `out/modes`.
fn build_all(out: &Path) -> Vec<(String, PathBuf)> {
    // Read when the script runs, not baked in when it was compiled: cargo
    // reuses a compiled script for a checkout elsewhere that shares the
    // target folder (a git worktree), whose modes/ the baked path is not.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join("..");
    for watched in ["modes", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("modes"))
        .expect("reading modes/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        // The SDK and `p2pb mode new`'s template are not MODs of the broker.
        .filter(|p| {
            p.join("Cargo.toml").exists() && !p.ends_with("sdk") && !p.ends_with("template")
        })
        .collect();
    crates.sort();
    let target = guests_dir(out);
    let dest = out.join("modes");
    std::fs::create_dir_all(&dest).expect("creating OUT_DIR/modes");
    let mut files = Vec::new();
    for c in crates {
        let built = guest::compile(&c, Some(&target), false).unwrap_or_else(|e| {
            panic!(
                "building the built-in MOD {}: {e:#}\n(P2PB_BUILTIN_MODES=none builds p2pb without built-in MODs)",
                c.display()
            )
        });
        let bytes = match &built.manifest {
            Some(m) => guest::append_manifest(&built.component, m),
            None => built.component,
        };
        let name = format!("{}.wasm", built.package);
        let path = dest.join(&name);
        std::fs::write(&path, bytes).expect("writing a built-in MOD");
        files.push((name, path));
    }
    files
}

/// cargo's folder for guest builds: `target/guests`, as `cargo xtask
/// build-modes` uses (so one build serves both), found from OUT_DIR
/// (`target/[TRIPLE/]PROFILE/build/PKG-HASH/out`); else inside OUT_DIR.
fn guests_dir(out: &Path) -> PathBuf {
    out.ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent()?.parent())
        .map_or_else(|| out.join("guests"), |t| t.join("guests"))
}
