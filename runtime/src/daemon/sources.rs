//! Where the daemon's MODs come from: the built-in ones (inside the
//! binary, admitted by their own sha256 allow-list) and an optional MODs
//! folder (`*.wasm` with its `allow.list`). A folder's component that
//! declares a built-in's name replaces that built-in.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::files::Links;
use crate::netinfo::NetInfo;
use crate::policy::Policy;
use crate::sandbox::ModeHost;
use crate::sandbox::load::{AllowList, COMPONENT_MAX};

/// Largest `allow.list` read (64 hex digits and a name per line).
const ALLOW_LIST_MAX: usize = 1 << 20;

/// The daemon's MOD sources.
#[derive(Debug, Clone, Default)]
pub struct ModeSources {
    /// A MODs folder (`--modes`), if any.
    pub dir: Option<PathBuf>,
    /// Whether the built-in MODs serve (off with `--no-builtin-modes`).
    pub builtin: bool,
    /// Where MODs pulled from a registry are kept (`STATE/oci`); without
    /// it, a policy's `oci` MODs are not loaded.
    pub oci_cache: Option<PathBuf>,
}

/// How long one load waits for registries, all pulls together: a
/// registry that hangs delays a start or reload by at most this.
pub const OCI_PULL_BUDGET: std::time::Duration = std::time::Duration::from_secs(30);

/// One component to judge: where it came from, its bytes (or why they
/// could not be read) and the allow-list of its source.
pub struct Candidate {
    /// `built-in:FILE` or the folder's file name.
    pub label: String,
    /// The component.
    pub bytes: Result<std::borrow::Cow<'static, [u8]>, String>,
    /// Its source's allow-list.
    pub allow: Arc<HashSet<String>>,
    /// The name a built-in's manifest declares (`None` for a folder's).
    pub builtin: Option<String>,
    /// For a MOD from a registry: its policy name and manifest digest,
    /// recorded as its last good copy once it loads.
    pub pulled: Option<(String, crate::oci::Digest)>,
}

impl ModeSources {
    /// The built-in MODs only.
    pub fn builtin() -> ModeSources {
        ModeSources {
            dir: None,
            builtin: true,
            oci_cache: None,
        }
    }

    /// For messages: "the built-in MODs and FOLDER".
    pub fn describe(&self) -> String {
        let dir = self.dir.as_ref().map(|d| d.display().to_string());
        match (self.builtin, dir) {
            (true, Some(d)) => format!("the built-in MODs and {d}"),
            (true, None) => "the built-in MODs".into(),
            (false, Some(d)) => d,
            (false, None) => "no MOD source".into(),
        }
    }

    /// Every component to judge: the folder's first, then each built-in
    /// whose declared name no folder component declares.
    pub fn candidates(&self) -> anyhow::Result<Vec<Candidate>> {
        self.candidates_except(&HashSet::new())
    }

    /// [`Self::candidates`] but for the MODs named in `taken` (which the
    /// policy pulls from a registry): their folder and built-in
    /// components are not judged.
    pub fn candidates_except(&self, taken: &HashSet<String>) -> anyhow::Result<Vec<Candidate>> {
        let mut out = Vec::new();
        let mut claimed = taken.clone();
        if let Some(dir) = &self.dir {
            let allow = Arc::new(read_allow_list(dir)?);
            for (label, path) in component_files(dir)? {
                let bytes = read_component(&path).map(std::borrow::Cow::Owned);
                if let Ok(b) = &bytes
                    && let Ok(Some(m)) = crate::trust::manifest::read(b)
                    && let Some(name) = m.name
                {
                    if taken.contains(&name) {
                        tracing::info!(
                            "{label}: not used, the policy pulls `{name}` from a registry"
                        );
                        continue;
                    }
                    claimed.insert(name);
                }
                out.push(Candidate {
                    label,
                    bytes,
                    allow: allow.clone(),
                    builtin: None,
                    pulled: None,
                });
            }
        }
        if self.builtin {
            let allow = Arc::new(crate::builtin::allow_list().clone());
            for b in crate::builtin::all() {
                let name = b.name().unwrap_or_default();
                if claimed.contains(&name) {
                    tracing::info!(
                        "built-in {} replaced (its name is served from elsewhere)",
                        b.file
                    );
                    continue;
                }
                out.push(Candidate {
                    label: format!("built-in:{}", b.file),
                    bytes: Ok(std::borrow::Cow::Borrowed(b.bytes)),
                    allow: allow.clone(),
                    builtin: Some(name),
                    pulled: None,
                });
            }
        }
        Ok(out)
    }
}

/// The hex sha256 digests listed in `DIR/allow.list` (`sha256  file` lines).
/// A folder without one lists nothing: only MODs the policy pins or that
/// enough trusted keys signed load from it.
pub fn read_allow_list(dir: &Path) -> anyhow::Result<HashSet<String>> {
    let path = dir.join("allow.list");
    let text = match crate::files::read_text(&path, ALLOW_LIST_MAX, Links::Follow) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return Ok(HashSet::new()),
        Err(e) => return Err(e).context("cannot read the allow-list"),
    };
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
        .collect())
}

/// The components (`*.wasm`) of a MODs folder, by file name, in name
/// order: what the daemon loads and `p2pb policy check --modes` judges.
pub fn component_files(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the MODs folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    files.sort();
    Ok(files
        .into_iter()
        .map(|f| {
            let label = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            (label, f)
        })
        .collect())
}

/// A component's bytes, capped and non-blocking (a FIFO named `x.wasm`
/// cannot hang the start).
pub fn read_component(path: &Path) -> Result<Vec<u8>, String> {
    crate::files::read_document(path, COMPONENT_MAX, Links::Follow).map_err(|e| e.to_string())
}

/// Admit, compile and configure one component: the admission decision
/// first (revocation, signatures, name, pin, grants — before any byte is
/// compiled), then compile and link with the admitted spec, and check the
/// MOD's own name against its manifest.
pub async fn load_one(
    host: &ModeHost,
    bytes: &[u8],
    allow_list: &HashSet<String>,
    policy: &Policy,
    net: Arc<NetInfo>,
) -> Result<crate::sandbox::Mode, String> {
    let admitted =
        crate::trust::admission::admit(bytes, allow_list, policy).map_err(|e| e.to_string())?;
    let allow = AllowList::Sha256(HashSet::from([admitted.sha256.clone()]));
    let (component, _) = host.compile(bytes, &allow).map_err(|e| e.to_string())?;
    let mode = host
        .link(&component, &admitted.sha256, admitted.spec.clone(), net)
        .await
        .map_err(|e| format!("mode `{}`: {e}", admitted.name))?;
    admitted
        .check_name(mode.name())
        .map_err(|e| e.to_string())?;
    Ok(mode.with_signers(admitted.signers))
}

/// What one load gave: the MODs by name, per component why it was not
/// loaded, and notes for `status` (a MOD serving its last good copy).
pub struct Loaded {
    /// The MODs by name.
    pub modes: BTreeMap<String, Arc<crate::sandbox::Mode>>,
    /// Per component (label), why it was not loaded.
    pub errors: Vec<(String, String)>,
    /// Warnings for `status`.
    pub notes: Vec<String>,
    /// The registry MODs that loaded: (label, policy name, manifest
    /// digest), for [`keep_in_cache`] once the policy is in force.
    pub pulled: Vec<(String, String, crate::oci::Digest)>,
}

/// Load every component of `sources` that the trust rules admit and the
/// policy permits.
pub async fn load_modes(
    host: &ModeHost,
    sources: &ModeSources,
    policy: &Policy,
    net: Arc<NetInfo>,
) -> anyhow::Result<Loaded> {
    let mut modes = BTreeMap::new();
    let mut errors = Vec::new();
    let mut loaded_pins = Vec::new();
    let (from_oci, taken, notes) = oci_candidates(sources, policy).await;
    for c in from_oci
        .into_iter()
        .chain(sources.candidates_except(&taken)?)
    {
        // A built-in the policy does not name is simply not wanted.
        if c.builtin
            .as_ref()
            .is_some_and(|n| !policy.modes.contains_key(n))
        {
            continue;
        }
        let loaded = match &c.bytes {
            Ok(bytes) => load_one(host, bytes, &c.allow, policy, net.clone()).await,
            Err(e) => Err(e.clone()),
        };
        match loaded {
            Ok(m) if modes.contains_key(m.name()) => {
                errors.push((
                    c.label,
                    format!("a second component for mode `{}`", m.name()),
                ));
            }
            Ok(m) => {
                // Loaded: this is now the copy to fall back to.
                loaded_pins.extend(c.pulled.map(|(name, d)| (c.label.clone(), name, d)));
                modes.insert(m.name().to_string(), Arc::new(m));
            }
            Err(e) => errors.push((c.label, e)),
        }
    }
    Ok(Loaded {
        modes,
        errors,
        notes,
        pulled: loaded_pins,
    })
}

/// Once `policy` is in force: record the registry MODs that loaded under
/// it (`loaded`, [`Loaded::pulled`]) as their last good copies, then prune
/// the MOD cache to those and the policy's pins (to nothing once the
/// policy names no registry MOD). On a blocking thread: both sync files.
/// A policy that is not applied changes neither.
pub async fn keep_in_cache(
    sources: &ModeSources,
    loaded: Vec<(String, String, crate::oci::Digest)>,
    policy: &Policy,
) {
    let Some(dir) = sources.oci_cache.clone() else {
        return;
    };
    // The policy's registry MODs: their names (whose last good copies
    // stay) and their pins.
    let (names, pins): (Vec<String>, Vec<crate::oci::Digest>) = policy
        .modes
        .iter()
        .filter_map(|(n, m)| Some((n.clone(), m.oci_reference()?.ok()?.digest?)))
        .unzip();
    let kept = tokio::task::spawn_blocking(move || {
        let cache = crate::oci::cache::Cache::new(dir);
        for (label, name, d) in loaded {
            if let Err(e) = cache.set_last_good(&name, &d) {
                tracing::warn!("{label}: {e}");
            }
        }
        cache.retain(&pins, &names);
    })
    .await;
    if let Err(e) = kept {
        tracing::warn!("the MOD cache was not pruned: {e}");
    }
}

/// The MODs the policy pulls from registries (`oci = …`), each from the
/// cache, the registry or its last good copy, within [`OCI_PULL_BUDGET`]
/// for all; and their names. Each is admitted by its pin (the component
/// its pinned manifest names) as an allow-list entry admits a folder's.
async fn oci_candidates(
    sources: &ModeSources,
    policy: &Policy,
) -> (Vec<Candidate>, HashSet<String>, Vec<String>) {
    use crate::oci::cache::{Cache, Origin};
    let wanted: Vec<(String, Result<crate::oci::Reference, String>)> = policy
        .modes
        .iter()
        .filter_map(|(n, m)| Some((n.clone(), m.oci_reference()?)))
        .collect();
    let taken = wanted.iter().map(|(n, _)| n.clone()).collect();
    if wanted.is_empty() {
        return (Vec::new(), taken, Vec::new());
    }
    let Some(dir) = sources.oci_cache.clone() else {
        let out = wanted
            .into_iter()
            .map(|(n, _)| Candidate {
                label: format!("oci:{n}"),
                bytes: Err("MODs from a registry need the daemon's state folder".into()),
                allow: Arc::new(HashSet::new()),
                builtin: None,
                pulled: None,
            })
            .collect();
        return (out, taken, Vec::new());
    };
    let got = tokio::task::spawn_blocking(move || {
        let cache = Cache::new(dir);
        let end = std::time::Instant::now() + OCI_PULL_BUDGET;
        let mut out = Vec::new();
        let mut notes = Vec::new();
        for (name, r) in wanted {
            let label = format!("oci:{name}");
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    out.push((label, Err(e), None));
                    continue;
                }
            };
            let left = end.saturating_duration_since(std::time::Instant::now());
            let o = cache.obtain(&name, &r, left.max(std::time::Duration::from_millis(1)));
            let o = o.map_err(|e| format!("{r}: {e}")).and_then(|g| {
                // The pin admits a component for this entry only.
                let declared = crate::trust::manifest::read(&g.component).ok().flatten();
                match declared.and_then(|m| m.name) {
                    Some(d) if d != name => Err(format!(
                        "{r}: the component is MOD `{}`, not `{name}`",
                        crate::text::escaped(&d)
                    )),
                    _ => Ok(g),
                }
            });
            if let Ok(got) = &o {
                match &got.origin {
                    Origin::Cache => tracing::info!("{label}: {r} from the MOD cache"),
                    Origin::Registry => tracing::info!("{label}: {r} pulled"),
                    Origin::LastGood { wanted, why } => {
                        let note = format!(
                            "MOD `{name}`: {wanted} cannot be pulled ({why}); the last good \
                             copy {} serves until it can",
                            got.digest
                        );
                        tracing::warn!("{label}: {note}");
                        notes.push(note);
                    }
                }
            }
            let pulled = o.as_ref().ok().map(|g| (name.clone(), g.digest));
            out.push((label, o.map(|g| g.component), pulled));
        }
        (out, notes)
    })
    .await
    .unwrap_or_default();
    let (got, notes) = got;
    let out = got
        .into_iter()
        .map(|(label, bytes, pulled)| {
            let allow = match &bytes {
                Ok(b) => HashSet::from([hex::encode(crate::sandbox::sha256(b))]),
                Err(_) => HashSet::new(),
            };
            Candidate {
                label,
                bytes: bytes.map(std::borrow::Cow::Owned),
                allow: Arc::new(allow),
                builtin: None,
                pulled,
            }
        })
        .collect();
    (out, taken, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin(name: &str) -> &'static crate::builtin::Builtin {
        crate::builtin::all()
            .iter()
            .find(|b| b.name().as_deref() == Some(name))
            .expect("built in")
    }

    fn labels(s: &ModeSources) -> Vec<String> {
        s.candidates()
            .unwrap()
            .into_iter()
            .map(|c| c.label)
            .collect()
    }

    #[test]
    fn a_folder_component_replaces_the_built_in_of_its_name_only() {
        let dir = tempfile::tempdir().unwrap();
        // Another build of `direct` (a custom section changes its hash).
        let own = crate::build::append_section(builtin("direct").bytes, "x-local", b"1");
        std::fs::write(dir.path().join("my-direct.wasm"), &own).unwrap();
        let s = ModeSources {
            dir: Some(dir.path().to_path_buf()),
            builtin: true,
            oci_cache: None,
        };
        let l = labels(&s);
        assert_eq!(l[0], "my-direct.wasm");
        assert!(
            !l.contains(&"built-in:p2pbroker-mode-direct.wasm".to_string()),
            "{l:?}"
        );
        assert!(
            l.contains(&"built-in:p2pbroker-mode-pcp.wasm".to_string()),
            "{l:?}"
        );
        assert_eq!(l.len(), crate::builtin::all().len());
        // The folder's own allow-list judges it, not the built-ins'.
        let c = s.candidates().unwrap();
        assert!(c[0].allow.is_empty());
        assert!(c[1].allow.contains(&builtin("pcp").sha256()));
    }

    #[test]
    fn without_built_ins_only_the_folder_counts() {
        let dir = tempfile::tempdir().unwrap();
        let s = ModeSources {
            dir: Some(dir.path().to_path_buf()),
            builtin: false,
            oci_cache: None,
        };
        assert!(labels(&s).is_empty());
        assert_eq!(
            labels(&ModeSources::builtin()).len(),
            crate::builtin::all().len()
        );
        let gone = ModeSources {
            dir: Some(dir.path().join("missing")),
            builtin: true,
            oci_cache: None,
        };
        let e = gone.candidates().err().unwrap().to_string();
        assert!(e.contains("cannot read the MODs folder"), "{e}");
    }
}
