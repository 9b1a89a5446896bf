//! What `p2pb mode new` writes: a MOD project that builds, passes its own
//! unit tests and runs under `p2pb mode run` as it is.
//!
//! The Rust project is `modes/template` (a workspace member, so it is built,
//! linted and tested with everything else) under the new name, with a copy
//! of the SDK and the WIT contract this binary speaks in `p2pbroker/`, so
//! it builds on a machine with no checkout of the broker (the SDK is not
//! published). `--sdk DIR` uses an SDK crate already on disk instead.
//! Rendering is pure: a list of (relative path, contents).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// One file of a new project: where (relative to the project) and what.
pub type File = (PathBuf, String);

/// The template's source files, by their path under `src/`.
const TEMPLATE_SRC: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../modes/template/src/lib.rs")),
    (
        "natpmp.rs",
        include_str!("../../modes/template/src/natpmp.rs"),
    ),
    (
        "tests.rs",
        include_str!("../../modes/template/src/tests.rs"),
    ),
];

/// The template's manifest (for its grants and version).
const TEMPLATE_MANIFEST: &str = include_str!("../../modes/template/Cargo.toml");

/// The line of `lib.rs` that names the MOD.
const NAME_LINE: &str = "const NAME: &str = \"template\";";

/// The SDK crate's files, by their path in the crate.
const SDK: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../modes/sdk/Cargo.toml")),
    ("src/addr.rs", include_str!("../../modes/sdk/src/addr.rs")),
    (
        "src/classify.rs",
        include_str!("../../modes/sdk/src/classify.rs"),
    ),
    ("src/clock.rs", include_str!("../../modes/sdk/src/clock.rs")),
    (
        "src/connector.rs",
        include_str!("../../modes/sdk/src/connector.rs"),
    ),
    ("src/host.rs", include_str!("../../modes/sdk/src/host.rs")),
    ("src/http.rs", include_str!("../../modes/sdk/src/http.rs")),
    ("src/lib.rs", include_str!("../../modes/sdk/src/lib.rs")),
    ("src/net.rs", include_str!("../../modes/sdk/src/net.rs")),
    (
        "src/stream.rs",
        include_str!("../../modes/sdk/src/stream.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../modes/sdk/src/testing.rs"),
    ),
];

/// The contract, by its path under `wit/`.
const WIT: &[(&str, &str)] = &[
    ("mode.wit", include_str!("../../wit/mode.wit")),
    ("deps/clocks.wit", include_str!("../../wit/deps/clocks.wit")),
    ("deps/io.wit", include_str!("../../wit/deps/io.wit")),
    ("deps/random.wit", include_str!("../../wit/deps/random.wit")),
    (
        "deps/sockets.wit",
        include_str!("../../wit/deps/sockets.wit"),
    ),
];

/// The Python template, by its path in the project.
const PYTHON_TEMPLATE: &[(&str, &str)] = &[
    ("app.py", include_str!("../../modes/template-python/app.py")),
    (
        "natpmp.py",
        include_str!("../../modes/template-python/natpmp.py"),
    ),
    (
        "test_natpmp.py",
        include_str!("../../modes/template-python/test_natpmp.py"),
    ),
    (
        "p2pbroker.toml",
        include_str!("../../modes/template-python/p2pbroker.toml"),
    ),
];

/// The Python SDK, by its path under `p2pbroker/python`.
const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "p2pbroker_sdk/__init__.py",
        include_str!("../../modes/sdk-python/p2pbroker_sdk/__init__.py"),
    ),
    (
        "p2pbroker_sdk/addr.py",
        include_str!("../../modes/sdk-python/p2pbroker_sdk/addr.py"),
    ),
    (
        "p2pbroker_sdk/exchange.py",
        include_str!("../../modes/sdk-python/p2pbroker_sdk/exchange.py"),
    ),
    (
        "p2pbroker_sdk/net.py",
        include_str!("../../modes/sdk-python/p2pbroker_sdk/net.py"),
    ),
    (
        "p2pbroker_sdk/testing.py",
        include_str!("../../modes/sdk-python/p2pbroker_sdk/testing.py"),
    ),
];

/// The JavaScript template, by its path in the project.
const JS_TEMPLATE: &[(&str, &str)] = &[
    ("app.js", include_str!("../../modes/template-js/app.js")),
    (
        "natpmp.js",
        include_str!("../../modes/template-js/natpmp.js"),
    ),
    (
        "natpmp.test.js",
        include_str!("../../modes/template-js/natpmp.test.js"),
    ),
    (
        "package.json",
        include_str!("../../modes/template-js/package.json"),
    ),
    (
        "p2pbroker.toml",
        include_str!("../../modes/template-js/p2pbroker.toml"),
    ),
];

/// The JavaScript SDK, by its path under `p2pbroker/js`.
const JS_SDK: &[(&str, &str)] = &[
    (
        "p2pbroker_sdk/addr.js",
        include_str!("../../modes/sdk-js/p2pbroker_sdk/addr.js"),
    ),
    (
        "p2pbroker_sdk/exchange.js",
        include_str!("../../modes/sdk-js/p2pbroker_sdk/exchange.js"),
    ),
    (
        "p2pbroker_sdk/net.js",
        include_str!("../../modes/sdk-js/p2pbroker_sdk/net.js"),
    ),
    (
        "p2pbroker_sdk/testing.js",
        include_str!("../../modes/sdk-js/p2pbroker_sdk/testing.js"),
    ),
];

/// A language whose project is the template, its SDK and the contract.
struct Script {
    template: &'static [(&'static str, &'static str)],
    sdk: &'static [(&'static str, &'static str)],
    /// Where the SDK goes in the project.
    sdk_dir: &'static str,
    /// The template's MOD name and the files that say it.
    name: &'static str,
    name_lines: [(&'static str, &'static str); 2],
    readme: fn(&str) -> String,
}

const PYTHON: Script = Script {
    template: PYTHON_TEMPLATE,
    sdk: PYTHON_SDK,
    sdk_dir: "p2pbroker/python",
    name: "template-python",
    name_lines: [
        ("app.py", "NAME = \"template-python\""),
        ("p2pbroker.toml", "name = \"template-python\""),
    ],
    readme: python_readme,
};

const JS: Script = Script {
    template: JS_TEMPLATE,
    sdk: JS_SDK,
    sdk_dir: "p2pbroker/js",
    name: "template-js",
    name_lines: [
        ("app.js", "const NAME = \"template-js\";"),
        ("p2pbroker.toml", "name = \"template-js\""),
    ],
    readme: js_readme,
};

/// The workspace manifest: what the SDK's `workspace = true` fields mean.
const WORKSPACE: &str = include_str!("../../Cargo.toml");

/// Where the copied SDK goes in a new project. The SDK finds the contract
/// at `../../wit` from its own folder, as in the broker's repository.
pub const SDK_DIR: &str = "p2pbroker/modes/sdk";

/// Where a new project takes the SDK from.
#[derive(Debug, Clone)]
pub enum Sdk {
    /// A copy of this binary's SDK and contract, inside the project.
    Copy,
    /// An SDK crate already on disk (an absolute path).
    At(PathBuf),
}

/// Refuse what cannot be a MOD (and package) name.
fn check_name(name: &str) -> anyhow::Result<()> {
    if !crate::sandbox::contract::valid_name(name) || !name.as_bytes()[0].is_ascii_lowercase() {
        bail!(
            "`{}` is no MOD name: use a-z, 0-9 and `-`, at most 32 bytes, starting with a letter",
            crate::text::escape(name)
        );
    }
    Ok(())
}

/// The contract's files, under `p2pbroker/wit`.
fn wit_files() -> impl Iterator<Item = File> {
    WIT.iter()
        .map(|(path, text)| (Path::new("p2pbroker/wit").join(path), text.to_string()))
}

/// The files of a new Python MOD project named `name`: the template, the
/// Python SDK under `p2pbroker/python` and the contract under
/// `p2pbroker/wit` (what `p2pb mode build` compiles it against).
pub fn python_project(name: &str) -> anyhow::Result<Vec<File>> {
    script_project(&PYTHON, name)
}

/// The files of a new JavaScript MOD project named `name`, laid out as
/// [`python_project`]'s (the SDK under `p2pbroker/js`).
pub fn js_project(name: &str) -> anyhow::Result<Vec<File>> {
    script_project(&JS, name)
}

fn script_project(lang: &Script, name: &str) -> anyhow::Result<Vec<File>> {
    check_name(name)?;
    let mut files = vec![
        (
            PathBuf::from(".gitignore"),
            "/target\n__pycache__/\nnode_modules/\n".to_string(),
        ),
        (PathBuf::from("README.md"), (lang.readme)(name)),
    ];
    for (path, text) in lang.template {
        let mut text = text.to_string();
        for (file, line) in lang.name_lines {
            if file == *path {
                if !text.contains(line) {
                    bail!("the template's {file} lacks `{line}`");
                }
                text = text.replacen(line, &line.replace(lang.name, name), 1);
            }
        }
        files.push((PathBuf::from(path), text));
    }
    for (path, text) in lang.sdk {
        files.push((Path::new(lang.sdk_dir).join(path), text.to_string()));
    }
    files.extend(wit_files());
    Ok(files)
}

/// The files of a new Rust MOD project named `name`.
pub fn rust_project(name: &str, sdk: &Sdk) -> anyhow::Result<Vec<File>> {
    check_name(name)?;
    let sdk_path = match sdk {
        Sdk::Copy => SDK_DIR.to_string(),
        Sdk::At(p) => p
            .to_str()
            .context("the SDK's path is not UTF-8")?
            .to_string(),
    };
    let mut files = vec![
        (PathBuf::from("Cargo.toml"), manifest(name, &sdk_path)?),
        (PathBuf::from(".gitignore"), "/target\n".to_string()),
        (PathBuf::from("README.md"), readme(name)),
    ];
    for (path, text) in TEMPLATE_SRC {
        let text = if *path == "lib.rs" {
            if !text.contains(NAME_LINE) {
                bail!("the template's lib.rs lacks `{NAME_LINE}`");
            }
            text.replacen(NAME_LINE, &format!("const NAME: &str = \"{name}\";"), 1)
        } else {
            text.to_string()
        };
        files.push((Path::new("src").join(path), text));
    }
    if let Sdk::Copy = sdk {
        for (path, text) in SDK {
            let text = if *path == "Cargo.toml" {
                sdk_manifest()?
            } else {
                text.to_string()
            };
            files.push((Path::new(SDK_DIR).join(path), text));
        }
        files.extend(wit_files());
    }
    Ok(files)
}

/// The new project's Cargo.toml.
fn manifest(name: &str, sdk_path: &str) -> anyhow::Result<String> {
    let template: toml::Table = TEMPLATE_MANIFEST
        .parse()
        .context("the template's manifest")?;
    let grants = template
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("p2pbroker"))
        .and_then(|m| m.get("grants"))
        .cloned()
        .context("the template's manifest has no grants")?;
    let ws = workspace()?;
    let field = |k: &str| package_field(&ws, k);
    // Written out, not serialised: a table's keys would come out sorted,
    // [dependencies] before [package]. `name` is [a-z0-9-] (checked).
    let body = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = {}\n\
         rust-version = {}\npublish = false\n\n\
         [dependencies]\np2pbroker-mode-sdk = {{ path = {} }}\n\n\
         [package.metadata.p2pbroker]\nname = \"{name}\"\ngrants = {grants}\n\n\
         # A project of its own, even when created inside another workspace.\n[workspace]\n",
        field("edition")?,
        field("rust-version")?,
        toml::Value::from(sdk_path),
    );
    Ok(format!(
        "# A P2P Broker MOD (`p2pb mode new`). [package.metadata.p2pbroker] is its\n\
         # signed manifest: its name (what policies call it; `info()` says the same)\n\
         # and the capabilities it asks for (docs/capabilities.md).\n{body}"
    ))
}

/// The workspace manifest, parsed.
fn workspace() -> anyhow::Result<toml::Table> {
    WORKSPACE.parse().context("the workspace manifest")
}

/// `[workspace.package]`'s `key`.
fn package_field(ws: &toml::Table, key: &str) -> anyhow::Result<toml::Value> {
    ws.get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get(key))
        .cloned()
        .with_context(|| format!("the workspace has no package.{key}"))
}

/// The SDK's manifest with every `workspace = true` replaced by the
/// workspace's value, so it builds outside the workspace.
pub fn sdk_manifest() -> anyhow::Result<String> {
    let ws = workspace()?;
    let mut sdk: toml::Table = SDK[0].1.parse().context("the SDK's manifest")?;
    let inherited = |v: &toml::Value| {
        v.get("workspace")
            .and_then(toml::Value::as_bool)
            .unwrap_or(false)
    };
    if let Some(toml::Value::Table(package)) = sdk.get_mut("package") {
        for (k, v) in package.iter_mut() {
            if inherited(v) {
                *v = package_field(&ws, k)?;
            }
        }
        // The workspace's repository address means nothing to a copy.
        package.remove("repository");
    }
    if let Some(toml::Value::Table(deps)) = sdk.get_mut("dependencies") {
        for (k, v) in deps.iter_mut() {
            if !inherited(v) {
                continue;
            }
            let mut spec = match ws
                .get("workspace")
                .and_then(|w| w.get("dependencies"))
                .and_then(|d| d.get(k))
                .cloned()
                .with_context(|| format!("the workspace has no dependency {k}"))?
            {
                toml::Value::String(version) => {
                    [("version".to_string(), toml::Value::String(version))]
                        .into_iter()
                        .collect()
                }
                toml::Value::Table(t) => t,
                other => bail!("workspace dependency {k} is {other}"),
            };
            // Keys beside `workspace = true` (features) add to the
            // workspace's.
            if let toml::Value::Table(extra) = v {
                for (ek, ev) in extra.iter() {
                    if ek != "workspace" {
                        spec.insert(ek.clone(), ev.clone());
                    }
                }
            }
            *v = spec.into();
        }
    }
    // [package] first: a table's keys would come out sorted.
    let package = sdk
        .remove("package")
        .context("the SDK's manifest has no [package]")?;
    let head: toml::Table = [("package".to_string(), package)].into_iter().collect();
    let head = toml::to_string(&head).context("writing the SDK's manifest")?;
    let rest = toml::to_string(&sdk).context("writing the SDK's manifest")?;
    Ok(format!("{head}\n{rest}"))
}

/// The new project's README: the steps, with its own name.
fn readme(name: &str) -> String {
    format!(
        "# {name}\n\n\
         A P2P Broker MOD that maps ports with NAT-PMP, written by `p2pb mode new`.\n\
         Make it yours: `src/natpmp.rs` holds the messages, `src/lib.rs` the\n\
         conversations and the lifecycle, `src/tests.rs` the tests against a fake\n\
         gateway. `p2pbroker/` is a copy of the broker's SDK and contract.\n\n\
         ```sh\n\
         cargo test                       # on the host, against the fake gateway\n\
         p2pb mode build .                # → target/modes/{name}.wasm\n\
         p2pb mode inspect target/modes/{name}.wasm\n\
         # On a host behind a NAT-PMP gateway (RFC 6886):\n\
         p2pb mode run target/modes/{name}.wasm probe --grant 'udp:send,receive@gateway:5351'\n\
         p2pb mode run target/modes/{name}.wasm map --grant 'udp:send,receive@gateway:5351' \\\n\
         \x20   --transport tcp --internal 0.0.0.0:8080 --lifetime 600\n\
         ```\n\n\
         Then sign it (`p2pb mode sign`) and name it in a policy: see the broker's\n\
         docs/mod-authors.md.\n"
    )
}

/// The new Python project's README.
fn python_readme(name: &str) -> String {
    format!(
        "# {name}\n\n\
         A P2P Broker MOD in Python that maps ports with NAT-PMP, written by\n\
         `p2pb mode new --lang python`. `natpmp.py` holds the messages and the\n\
         conversations (plain Python), `app.py` the lifecycle the broker calls,\n\
         `test_natpmp.py` the tests against a fake gateway. `p2pbroker/` is a copy\n\
         of the broker's Python SDK and contract; `p2pbroker.toml` the manifest.\n\n\
         ```sh\n\
         PYTHONPATH=p2pbroker/python python3 -m unittest   # on the host, against the fake gateway\n\
         p2pb mode build .                 # componentize-py → target/modes/{name}.wasm\n\
         # On a host behind a NAT-PMP gateway (RFC 6886):\n\
         p2pb mode run target/modes/{name}.wasm probe --grant 'udp:send,receive@gateway:5351'\n\
         ```\n\n\
         The component is about 18 MB (the Python interpreter is inside it); the\n\
         broker compiles it once and caches the result. See the broker's\n\
         docs/mod-authors.md.\n"
    )
}

/// The new JavaScript project's README.
fn js_readme(name: &str) -> String {
    format!(
        "# {name}\n\n\
         A P2P Broker MOD in JavaScript that maps ports with NAT-PMP, written by\n\
         `p2pb mode new --lang js`. `natpmp.js` holds the messages and the\n\
         conversations (plain JavaScript), `app.js` the lifecycle the broker calls,\n\
         `natpmp.test.js` the tests against a fake gateway. `p2pbroker/` is a copy\n\
         of the broker's JavaScript SDK and contract; `p2pbroker.toml` the manifest.\n\n\
         ```sh\n\
         node --test                       # on the host, against the fake gateway\n\
         p2pb mode build .                 # componentize-qjs → target/modes/{name}.wasm\n\
         # On a host behind a NAT-PMP gateway (RFC 6886):\n\
         p2pb mode run target/modes/{name}.wasm probe --grant 'udp:send,receive@gateway:5351'\n\
         ```\n\n\
         The component is about 2 MB (the QuickJS engine is inside it); the\n\
         broker compiles it once and caches the result. See the broker's\n\
         docs/mod-authors.md.\n"
    )
}

/// Write `files` as a new folder `dest`: nothing is written unless all of
/// it is (staged beside `dest`, then renamed), and an existing `dest` is
/// used only if it is empty.
pub fn write_project(dest: &Path, files: &[File]) -> anyhow::Result<()> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{} exists and is not empty", dest.display());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot use {}: {e}", dest.display()),
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let leaf = dest
        .file_name()
        .with_context(|| format!("{} names no folder", dest.display()))?;
    let mut staged = leaf.to_os_string();
    staged.push(format!(".new-{}", std::process::id()));
    let staged = parent.join(staged);
    let result = (|| -> anyhow::Result<()> {
        for (rel, text) in files {
            let path = staged.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        std::fs::rename(&staged, dest).with_context(|| format!("cannot create {}", dest.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(files: &'a [File], path: &str) -> &'a str {
        &files
            .iter()
            .find(|(p, _)| p == Path::new(path))
            .unwrap_or_else(|| panic!("{path} missing"))
            .1
    }

    #[test]
    fn a_project_is_named_throughout_and_carries_its_sdk() {
        let files = rust_project("my-mode", &Sdk::Copy).unwrap();
        let m: toml::Table = find(&files, "Cargo.toml").parse().unwrap();
        assert_eq!(m["package"]["name"].as_str(), Some("my-mode"));
        assert_eq!(
            m["package"]["metadata"]["p2pbroker"]["name"].as_str(),
            Some("my-mode")
        );
        assert_eq!(
            m["dependencies"]["p2pbroker-mode-sdk"]["path"].as_str(),
            Some(SDK_DIR)
        );
        assert!(m["workspace"].as_table().unwrap().is_empty());
        let lib = find(&files, "src/lib.rs");
        assert!(lib.contains("const NAME: &str = \"my-mode\";"));
        assert!(!lib.contains(NAME_LINE));
        assert!(find(&files, "p2pbroker/wit/mode.wit").contains("package p2pbroker:mode@"));
        assert!(find(&files, "p2pbroker/modes/sdk/src/testing.rs").contains("FakeGateway"));
        assert!(find(&files, "README.md").contains("target/modes/my-mode.wasm"));
    }

    #[test]
    fn the_copied_sdk_manifest_inherits_nothing() {
        let text = sdk_manifest().unwrap();
        assert!(!text.contains("workspace"), "{text}");
        let m: toml::Table = text.parse().unwrap();
        let ws = workspace().unwrap();
        assert_eq!(
            m["package"]["edition"],
            ws["workspace"]["package"]["edition"]
        );
        let wit = &m["dependencies"]["wit-bindgen"];
        let ws_wit = &ws["workspace"]["dependencies"]["wit-bindgen"];
        assert_eq!(wit["version"], ws_wit["version"]);
        assert_eq!(wit["features"], ws_wit["features"]);
    }

    #[test]
    fn every_sdk_source_file_is_copied() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../modes/sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| format!("src/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut copied: Vec<String> = SDK[1..].iter().map(|(p, _)| p.to_string()).collect();
        copied.sort();
        assert_eq!(copied, on_disk);
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/deps");
        assert_eq!(std::fs::read_dir(wit).unwrap().count() + 1, WIT.len());
    }

    /// The files with one of `exts` in a folder of the repository.
    fn on_disk(rel: &str, exts: &[&str]) -> Vec<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| exts.iter().any(|x| n.ends_with(&format!(".{x}"))))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_python_project_is_named_throughout_and_carries_its_sdk() {
        let files = python_project("py-nat").unwrap();
        let m: toml::Table = find(&files, "p2pbroker.toml").parse().unwrap();
        assert_eq!(m["name"].as_str(), Some("py-nat"));
        assert!(find(&files, "app.py").contains("NAME = \"py-nat\""));
        assert!(!files.iter().any(|(_, t)| t.contains("template-python")));
        assert!(
            find(&files, "p2pbroker/python/p2pbroker_sdk/testing.py").contains("class FakeGateway")
        );
        assert!(find(&files, "p2pbroker/wit/mode.wit").contains("package p2pbroker:mode@"));
        // Every file of the template and the SDK is there.
        let mut template: Vec<String> =
            PYTHON_TEMPLATE.iter().map(|(p, _)| p.to_string()).collect();
        template.sort();
        assert_eq!(template, on_disk("modes/template-python", &["py", "toml"]));
        let mut sdk: Vec<String> = PYTHON_SDK
            .iter()
            .map(|(p, _)| p.trim_start_matches("p2pbroker_sdk/").to_string())
            .collect();
        sdk.sort();
        assert_eq!(sdk, on_disk("modes/sdk-python/p2pbroker_sdk", &["py"]));
        assert!(python_project("Py").is_err());
    }

    #[test]
    fn a_js_project_is_named_throughout_and_carries_its_sdk() {
        let files = js_project("js-nat").unwrap();
        let m: toml::Table = find(&files, "p2pbroker.toml").parse().unwrap();
        assert_eq!(m["name"].as_str(), Some("js-nat"));
        assert!(find(&files, "app.js").contains("const NAME = \"js-nat\";"));
        assert!(!files.iter().any(|(_, t)| t.contains("template-js")));
        assert!(
            find(&files, "p2pbroker/js/p2pbroker_sdk/testing.js").contains("class FakeGateway")
        );
        let mut sdk: Vec<String> = JS_SDK
            .iter()
            .map(|(p, _)| p.trim_start_matches("p2pbroker_sdk/").to_string())
            .collect();
        sdk.sort();
        assert_eq!(sdk, on_disk("modes/sdk-js/p2pbroker_sdk", &["js"]));
        let mut template: Vec<String> = JS_TEMPLATE.iter().map(|(p, _)| p.to_string()).collect();
        template.sort();
        assert_eq!(
            template,
            on_disk("modes/template-js", &["js", "json", "toml"])
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_rule() {
        for bad in [
            "",
            "My-Mode",
            "-x",
            "9lives",
            "a b",
            &"x".repeat(33),
            "x\u{1b}[2J",
        ] {
            let e = rust_project(bad, &Sdk::Copy).unwrap_err().to_string();
            assert!(e.contains("starting with a letter"), "{bad:?}: {e}");
            assert!(!e.contains('\u{1b}'));
        }
    }

    #[test]
    fn an_sdk_on_disk_is_used_as_it_is() {
        // Quoted as TOML: a path cannot break out of its string.
        let odd = "/opt/my \"sdk\"\\\n[x]";
        let files = rust_project("x", &Sdk::At(PathBuf::from(odd))).unwrap();
        let m: toml::Table = find(&files, "Cargo.toml").parse().unwrap();
        assert_eq!(
            m["dependencies"]["p2pbroker-mode-sdk"]["path"].as_str(),
            Some(odd)
        );
        assert!(m.get("x").is_none());
        assert!(!files.iter().any(|(p, _)| p.starts_with("p2pbroker")));
    }

    #[test]
    fn a_project_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let files = rust_project("x", &Sdk::Copy).unwrap();
        let dest = dir.path().join("x");
        write_project(&dest, &files).unwrap();
        assert!(dest.join("p2pbroker/wit/deps/io.wit").is_file());
        let e = write_project(&dest, &files).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        // An empty folder is fine.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write_project(&empty, &files).unwrap();
        // A file that cannot be written leaves nothing behind.
        let bad = vec![
            (PathBuf::from("a"), String::new()),
            (PathBuf::from("a/b"), String::new()),
        ];
        let dest = dir.path().join("bad");
        assert!(write_project(&dest, &bad).is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }
}
