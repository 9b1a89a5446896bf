//! The seeds made from the project's own files: policies, a root of
//! trust and signature files, the built MODs signed (and their custom
//! sections), client API lines from `docs/`, journals, and static forward
//! declarations. Kept apart from [`run`](super::run) and the merge, which
//! only move seeds: this is where most targets' inputs are made, and it
//! grows with the targets.

use std::path::Path;

use anyhow::{Context, bail};
use p2pbroker::trust::keys::SecretKey;
use p2pbroker::trust::{manifest, wasmsig};

use super::{Collected, SEED_MAX, files};
use crate::fuzz::shown;

/// The component header the `manifest` target puts before its input.
const COMPONENT_HEADER: &[u8; 8] = b"\0asm\x0d\0\x01\0";

/// A fixed signing key, so signatures (and seeds) are the same every run.
fn seed_key(n: u8) -> SecretKey {
    SecretKey {
        key: ed25519_dalek::SigningKey::from_bytes(&[n; 32]),
    }
}

/// Every policy under `policies/`, a root of trust and signature files as
/// `p2pb policy sign` writes them.
pub(super) fn policies(root: &Path, seeds: &Collected) -> anyhow::Result<()> {
    use p2pbroker::trust::bundle::sign_line;
    let key = seed_key(1);
    for (name, text) in files(&root.join("policies"))? {
        seeds.keep("policy", &name, &text)?;
        seeds.keep(
            "policy",
            &format!("{name}.sig"),
            sign_line(false, &text, &key).as_bytes(),
        )?;
    }
    let root_toml = format!(
        "version = 1\nexpires = \"2027-12-31T00:00:00Z\"\nthreshold = 1\n[keys]\nfleet = \"{}\"\n",
        key.public().hex()
    );
    p2pbroker::trust::bundle::Root::parse(root_toml.as_bytes())?;
    seeds.keep("policy", "root.toml", root_toml.as_bytes())?;
    // Signed by this root's key and by the next root's.
    let mut sigs = sign_line(true, root_toml.as_bytes(), &key);
    sigs.push_str(&sign_line(true, root_toml.as_bytes(), &seed_key(2)));
    seeds.keep("policy", "root.toml.sig", sigs.as_bytes())?;
    // A signed policy: the three fields signing adds (docs/trust.md).
    let default = std::fs::read_to_string(root.join("policies/default.toml"))?;
    let signed = format!(
        "serial = 4\nissued_at = \"2026-11-01T00:00:00Z\"\nexpires = \"2027-11-01T00:00:00Z\"\n{default}"
    );
    seeds.keep("policy", "default-signed.toml", signed.as_bytes())?;
    Ok(())
}

/// The built MODs, signed by the project's signing code: the smallest
/// whole (if small enough), and every MOD's manifest and signature
/// sections. Inputs of the `manifest` target go without the component
/// header, which the target adds.
pub(super) fn components(root: &Path, out: &Path, seeds: &Collected) -> anyhow::Result<()> {
    println!("building the MODs (cargo xtask build-modes)");
    let mut built = crate::build_modes(out)?;
    built.sort_by_key(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(u64::MAX));
    let key = seed_key(1);
    for (i, (name, path)) in built.iter().enumerate() {
        let bin = std::fs::read(path)?;
        if bin.get(..8) != Some(&COMPONENT_HEADER[..]) {
            bail!("{}: not a component", shown(root, path));
        }
        let signed = p2pbroker::trust::sign(&bin, &key)?;
        if i == 0 {
            if signed.len() - 8 <= SEED_MAX {
                seeds.keep("manifest", &format!("{name}-signed"), &signed[8..])?;
            } else {
                println!(
                    "  the smallest MOD, {name}, is {} bytes: seeding its custom sections only",
                    signed.len()
                );
            }
        }
        let mut manifest_section = None;
        for s in wasmsig::sections(&signed)? {
            let kind = match s.name.as_deref() {
                Some(manifest::MANIFEST_SECTION) => "manifest",
                Some(wasmsig::SIGNATURE_SECTION) => {
                    let data = &signed[s.payload.clone()];
                    seeds.keep("manifest", &format!("{name}-signature-data"), data)?;
                    "signature"
                }
                _ => continue,
            };
            let section = &signed[s.range.clone()];
            seeds.keep("manifest", &format!("{name}-{kind}-section"), section)?;
            if kind == "manifest" {
                manifest_section = Some(section.to_vec());
            }
        }
        // The manifest alone, signed by two keys: a whole signed binary
        // of a few hundred bytes.
        if i == 0 {
            let section = manifest_section.context("a MOD without a manifest section")?;
            let mut small = COMPONENT_HEADER.to_vec();
            small.extend_from_slice(&section);
            let small =
                p2pbroker::trust::sign(&p2pbroker::trust::sign(&small, &key)?, &seed_key(2))?;
            seeds.keep(
                "manifest",
                &format!("{name}-manifest-signed-twice"),
                &small[8..],
            )?;
        }
    }
    Ok(())
}

/// Client API lines from `docs/`: the examples (`→`/`←` lines) and inline
/// JSON lines (`` `{"v":1,...}` ``) that are JSON, one per file for
/// `api_request`, and streams of them for `api_framing`.
pub(super) fn client_api(root: &Path, seeds: &Collected) -> anyhow::Result<()> {
    let mut requests = Vec::new();
    let mut others = Vec::new();
    for (doc, text) in files(&root.join("docs"))? {
        let text = String::from_utf8_lossy(&text).into_owned();
        let stem = doc.trim_end_matches(".md");
        let inline = text
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("{\"v\":"));
        let arrows = text.lines().filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("→ ").or_else(|| l.strip_prefix("← "))
        });
        let mut n = 0;
        for line in arrows.chain(inline) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            n += 1;
            let request = v.get("op").or(v.get("auth")).is_some();
            let kind = match (
                v["op"].as_str(),
                v["event"].as_str(),
                v["error"]["code"].as_str(),
            ) {
                (Some(op), ..) => format!("request-{op}"),
                (_, Some(event), _) => format!("event-{event}"),
                (_, _, Some(code)) => format!("error-{code}"),
                _ if request => "request-auth".to_string(),
                _ => "response-ok".to_string(),
            };
            match request {
                true => requests.push(line.to_string()),
                false => others.push(line.to_string()),
            }
            seeds.keep(
                "api_request",
                &format!("{stem}-{n:02}-{kind}"),
                line.as_bytes(),
            )?;
        }
    }
    if requests.is_empty() {
        bail!("no client API request line in docs/");
    }
    // [cap, k, k chunk sizes, stream] (fuzz/checks/src/api_framing.rs).
    let framing = |cap: u8, sizes: &[u8], lines: &[String]| {
        let mut b = vec![cap, sizes.len() as u8];
        b.extend_from_slice(sizes);
        for l in lines {
            b.extend_from_slice(l.as_bytes());
            b.push(b'\n');
        }
        b
    };
    let all: Vec<String> = requests.iter().chain(&others).cloned().collect();
    seeds.keep(
        "api_framing",
        "docs-requests",
        &framing(255, &[1, 7, 64], &requests),
    )?;
    // Broker lines run longer than a cap of 255: frames too long.
    seeds.keep(
        "api_framing",
        "docs-broker-lines",
        &framing(255, &[0, 33], &others),
    )?;
    seeds.keep(
        "api_framing",
        "docs-all-cap-64",
        &framing(64, &[5, 200, 0, 1], &all),
    )?;
    // The last line without its newline (cut by a closed connection).
    let mut cut = framing(255, &[], &requests);
    cut.pop();
    seeds.keep("api_framing", "docs-requests-unterminated", &cut)?;
    Ok(())
}

/// Journals written by the journal itself: puts, an intent, a delete, a
/// torn tail, and a compacted one.
pub(super) fn journals(seeds: &Collected) -> anyhow::Result<()> {
    use p2pbroker::daemon::journal::{Intent, JOURNAL_FILE, Journal, LeaseRecord, written};
    use p2pbroker::gate::Transport;
    use p2pbroker::json::MappingJson;
    let lease = |id: u64, v6: bool| LeaseRecord {
        id,
        mode: if v6 { "pcp" } else { "upnp-igd" }.into(),
        mode_sha256: "9f2c".repeat(16),
        mapping: MappingJson {
            transport: if v6 { Transport::Udp } else { Transport::Tcp },
            internal: if v6 {
                "[2001:db8:1::2]:6881"
            } else {
                "10.0.0.2:6881"
            }
            .parse()
            .unwrap(),
            external: if v6 {
                "[2001:db8:1::2]:6881"
            } else {
                "198.51.100.2:6881"
            }
            .parse()
            .unwrap(),
            lifetime: if v6 { 7200 } else { 0 },
            state: "00010203".into(),
        },
        granted_at: 1_795_598_323,
        owner_uid: 1000,
        owner_lan: v6.then(|| "lan-0123456789ab".into()),
        persist: v6,
        expires_at: v6.then_some(1_795_601_923),
        created_at: 1_795_598_300,
        follows: if v6 { vec![35_644_248] } else { vec![] },
        owner_pid: (!v6).then_some(4242),
        owner_process: (!v6).then(|| "qbittorrent".into()),
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(JOURNAL_FILE);
    let (mut j, _) = Journal::open(dir.path())?;
    j.intent(&Intent {
        id: 1,
        mode: "upnp-igd".into(),
        transport: Transport::Tcp,
        internal: "10.0.0.2:6881".parse().unwrap(),
        external_port: Some(6881),
    })?;
    j.put(&lease(1, false))?;
    j.put(&lease(2, true))?;
    j.intent(&Intent {
        id: 3,
        mode: "pcp".into(),
        transport: Transport::Udp,
        internal: "[2001:db8:1::2]:7000".parse().unwrap(),
        external_port: None,
    })?;
    j.del(1)?;
    // The lines, without the zeros the journal writes ahead of them.
    let text = written(&std::fs::read(&path)?).to_vec();
    seeds.keep("journal", "intent-put-put-intent-del", &text)?;
    // As on disk: the lines, then zeros.
    let mut ahead = text.clone();
    ahead.extend_from_slice(&[0; 64]);
    seeds.keep("journal", "zeros-ahead", &ahead)?;
    // A crash mid-write: the last line cut short.
    let mut torn = text.clone();
    torn.truncate(text.len() - 20);
    seeds.keep("journal", "torn-tail", &torn)?;
    j.compact()?;
    seeds.keep("journal", "compacted", written(&std::fs::read(&path)?))?;
    Ok(())
}

/// Static forward declarations quoted (in backticks or double quotes) in
/// the docs, the policies and the static MOD's sources (its unit tests
/// hold IPv6 and malformed ones) and tests.
pub(super) fn static_decls(root: &Path, seeds: &Collected) -> anyhow::Result<()> {
    let mut sources = Vec::new();
    for dir in ["docs", "policies", "modes/static/src"] {
        sources.extend(files(&root.join(dir))?);
    }
    sources.push((
        "static_mode.rs".into(),
        std::fs::read(root.join("tests/static_mode.rs"))?,
    ));
    let mut seen = std::collections::HashSet::new();
    for (file, text) in sources {
        let text = String::from_utf8_lossy(&text).into_owned();
        let stem = file.split('.').next().unwrap_or(&file).to_string();
        let mut n = 0;
        for delim in ['`', '"'] {
            for span in text.split(delim).skip(1).step_by(2) {
                // Malformed ones too (the tests quote what is refused).
                let decl = (span.starts_with("tcp ") || span.starts_with("udp "))
                    && span.contains(':')
                    && !span.contains('\n');
                if decl && seen.insert(span.to_string()) {
                    n += 1;
                    seeds.keep("static_decl", &format!("{stem}-{n}"), span.as_bytes())?;
                }
            }
        }
    }
    Ok(())
}

/// What a registry sends and a policy names: the artifact manifest of a
/// built-in MOD and its edits a registry could make (an index, two layers,
/// another config), Bearer and Basic challenges, token answers, and
/// references and digests as docs and tests write them.
pub(super) fn oci_documents(seeds: &Collected) -> anyhow::Result<()> {
    use p2pbroker::oci::manifest::artifact;
    let first = p2pbroker::builtin::all()
        .first()
        .context("no built-in MOD to make a manifest of")?;
    let a = artifact(first.bytes, first.name().as_deref(), "2026-12-01T00:00:00Z");
    seeds.keep("oci", "manifest", &a.manifest)?;
    seeds.keep("oci", "config", &a.config)?;
    let m: serde_json::Value = serde_json::from_slice(&a.manifest)?;
    let mut edits: Vec<(&str, serde_json::Value)> = Vec::new();
    let mut index = m.clone();
    index["mediaType"] = "application/vnd.oci.image.index.v1+json".into();
    edits.push(("manifest-index", index));
    let mut two = m.clone();
    let layer = two["layers"][0].clone();
    two["layers"] = serde_json::json!([layer.clone(), layer]);
    edits.push(("manifest-two-layers", two));
    let mut image = m.clone();
    image["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    edits.push(("manifest-image-config", image));
    for (name, v) in edits {
        seeds.keep("oci", name, &serde_json::to_vec(&v)?)?;
    }
    let d = a.digest.to_string();
    let texts = [
        ("challenge-bearer", r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/m:pull""#.to_string()),
        ("challenge-basic", r#"Basic realm="registry""#.to_string()),
        ("token", r#"{"token":"abc.def.ghi","expires_in":300}"#.to_string()),
        ("token-oauth", r#"{"access_token":"abc"}"#.to_string()),
        ("reference-pinned", format!("oci://registry.example/team/nat-pmp:1.0.0@{d}")),
        ("reference-plain", "oci+http://198.51.100.1:5001/mods/nat-pmp:1".to_string()),
        ("reference-v6", "oci://[2001:db8::1]:5000/a/b__c/d-e".to_string()),
        ("digest", d),
    ];
    for (name, t) in texts {
        seeds.keep("oci", name, t.as_bytes())?;
    }
    Ok(())
}
