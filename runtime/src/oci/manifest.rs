//! A MOD's OCI artifact: the manifest and config written for a push, and
//! the checks a pulled manifest must pass before any blob is fetched
//! (pure).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CONFIG_MEDIA_TYPE, Digest, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, OciError};
use crate::sandbox::load::COMPONENT_MAX;

/// Largest manifest read (ours are under 1 KiB; the distribution
/// specification lets registries refuse those over 4 MiB).
pub const MANIFEST_MAX: usize = 64 << 10;

/// One blob a manifest names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// `sha256:HEX`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image manifest (the fields this broker reads or writes; others
/// are ignored when read).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA_TYPE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The component, alone.
    pub layers: Vec<Descriptor>,
    /// Title, creation time, MOD name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The config wasm-pkg-tools writes for a component.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig {
    created: String,
    architecture: String,
    os: String,
    layer_digests: Vec<String>,
    component: ComponentInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ComponentInfo {
    exports: Vec<String>,
    imports: Vec<String>,
}

/// What a push uploads: the component, its config and the manifest that
/// names both, and the manifest's digest (what a policy pins).
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The config blob.
    pub config: Vec<u8>,
    /// The manifest, as uploaded (its digest is over these bytes).
    pub manifest: Vec<u8>,
    /// The manifest's digest.
    pub digest: Digest,
    /// The component's digest.
    pub layer: Digest,
}

/// The top-level import and export names of a component (for the config;
/// a registry's readers show them).
fn world_names(component: &[u8]) -> (Vec<String>, Vec<String>) {
    use wasmparser::{Parser, Payload};
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        match payload {
            Ok(Payload::ModuleSection { .. } | Payload::ComponentSection { .. }) => depth += 1,
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(Payload::ComponentImportSection(s)) if depth == 0 => {
                imports.extend(s.into_iter().flatten().map(|i| i.name.name.to_string()));
            }
            Ok(Payload::ComponentExportSection(s)) if depth == 0 => {
                exports.extend(s.into_iter().flatten().map(|e| e.name.name.to_string()));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (imports, exports)
}

/// The artifact for `component`, titled `name`, created at `created`
/// (RFC 3339).
pub fn artifact(component: &[u8], name: Option<&str>, created: &str) -> Artifact {
    let layer = Digest::of(component);
    let (imports, exports) = world_names(component);
    let config = serde_json::to_vec(&WasmConfig {
        created: created.to_string(),
        architecture: "wasm".into(),
        os: "wasip2".into(),
        layer_digests: vec![layer.to_string()],
        component: ComponentInfo { exports, imports },
    })
    .expect("serialises");
    let mut annotations = BTreeMap::from([(
        "org.opencontainers.image.created".to_string(),
        created.to_string(),
    )]);
    if let Some(n) = name {
        annotations.insert("org.opencontainers.image.title".into(), n.to_string());
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE.into(),
            digest: Digest::of(&config).to_string(),
            size: config.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers: vec![Descriptor {
            media_type: LAYER_MEDIA_TYPE.into(),
            digest: layer.to_string(),
            size: component.len() as u64,
            annotations: BTreeMap::new(),
        }],
        annotations,
    };
    let manifest = serde_json::to_vec(&manifest).expect("serialises");
    Artifact {
        digest: Digest::of(&manifest),
        config,
        manifest,
        layer,
    }
}

/// The component layer a pulled manifest names, once the manifest is
/// known to be a MOD's: an OCI image manifest (not an index, not another
/// artifact) with the wasm config and exactly one `application/wasm`
/// layer no larger than a component may be.
pub fn component_layer(manifest: &[u8]) -> Result<(Digest, u64), OciError> {
    let bad = |why: String| OciError::Manifest(format!("not a MOD's manifest: {why}"));
    let m: Manifest =
        serde_json::from_slice(manifest).map_err(|e| bad(crate::text::escaped(&e.to_string())))?;
    if m.schema_version != 2 {
        return Err(bad(format!("schemaVersion {}", m.schema_version)));
    }
    if let Some(t) = &m.media_type
        && t != MANIFEST_MEDIA_TYPE
    {
        return Err(bad(format!("media type {}", crate::text::escaped(t))));
    }
    if m.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(bad(format!(
            "config media type {} (a wasm component's is {CONFIG_MEDIA_TYPE})",
            crate::text::escaped(&m.config.media_type)
        )));
    }
    let [layer] = m.layers.as_slice() else {
        return Err(bad(format!("{} layers (one component)", m.layers.len())));
    };
    if layer.media_type != LAYER_MEDIA_TYPE {
        return Err(bad(format!(
            "layer media type {}",
            crate::text::escaped(&layer.media_type)
        )));
    }
    let digest = Digest::parse(&layer.digest).map_err(bad)?;
    if layer.size > COMPONENT_MAX as u64 {
        return Err(bad(format!(
            "a component of {} bytes (at most {COMPONENT_MAX})",
            layer.size
        )));
    }
    Ok((digest, layer.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component() -> Vec<u8> {
        wat::parse_str("(component (import \"p2pbroker:mode/broker@0.1.0\" (instance)))").unwrap()
    }

    #[test]
    fn an_artifact_names_its_component_and_passes_its_own_check() {
        let c = component();
        let a = artifact(&c, Some("demo"), "2026-12-01T00:00:00Z");
        assert_eq!(a.digest, Digest::of(&a.manifest));
        assert_eq!(
            component_layer(&a.manifest).unwrap(),
            (Digest::of(&c), c.len() as u64)
        );
        let config: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(config["os"], "wasip2");
        assert_eq!(config["layerDigests"][0], Digest::of(&c).to_string());
        assert_eq!(
            config["component"]["imports"][0],
            "p2pbroker:mode/broker@0.1.0"
        );
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["annotations"]["org.opencontainers.image.title"], "demo");
        assert_eq!(m["config"]["digest"], Digest::of(&a.config).to_string());
    }

    #[test]
    fn manifests_that_are_not_a_mods_are_refused_by_what_is_wrong() {
        let a = artifact(&component(), None, "2026-12-01T00:00:00Z");
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut m = m.clone();
            f(&mut m);
            let e = component_layer(&serde_json::to_vec(&m).unwrap()).unwrap_err();
            e.to_string()
        };
        type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
        let cases: [(Edit, &str); 7] = [
            (&|m| m["schemaVersion"] = 1.into(), "schemaVersion 1"),
            (
                &|m| m["mediaType"] = "application/vnd.oci.image.index.v1+json".into(),
                "media type",
            ),
            (
                &|m| m["config"]["mediaType"] = "x/\u{1b}[2J".into(),
                "\\u{1b}",
            ),
            (&|m| m["layers"] = serde_json::json!([]), "0 layers"),
            (
                &|m| m["layers"][0]["mediaType"] = "application/tar".into(),
                "layer media type",
            ),
            (
                &|m| m["layers"][0]["digest"] = "sha512:00".into(),
                "not supported",
            ),
            (&|m| m["layers"][0]["size"] = (1u64 << 40).into(), "at most"),
        ];
        for (f, want) in cases {
            let e = edit(f);
            assert!(e.contains(want), "{want}: {e}");
            assert!(!e.contains('\u{1b}'), "{e}");
        }
        assert!(component_layer(b"{").is_err());
    }
}
