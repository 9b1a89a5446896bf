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
}

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
}

impl ModeSources {
    /// The built-in MODs only.
    pub fn builtin() -> ModeSources {
        ModeSources {
            dir: None,
            builtin: true,
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
        let mut out = Vec::new();
        let mut claimed = HashSet::new();
        if let Some(dir) = &self.dir {
            let allow = Arc::new(read_allow_list(dir)?);
            for (label, path) in component_files(dir)? {
                let bytes = read_component(&path).map(std::borrow::Cow::Owned);
                if let Ok(b) = &bytes
                    && let Ok(Some(m)) = crate::trust::manifest::read(b)
                    && let Some(name) = m.name
                {
                    claimed.insert(name);
                }
                out.push(Candidate {
                    label,
                    bytes,
                    allow: allow.clone(),
                    builtin: None,
                });
            }
        }
        if self.builtin {
            let allow = Arc::new(crate::builtin::allow_list().clone());
            for b in crate::builtin::all() {
                let name = b.name().unwrap_or_default();
                if claimed.contains(&name) {
                    tracing::info!("built-in {} replaced by the MODs folder's", b.file);
                    continue;
                }
                out.push(Candidate {
                    label: format!("built-in:{}", b.file),
                    bytes: Ok(std::borrow::Cow::Borrowed(b.bytes)),
                    allow: allow.clone(),
                    builtin: Some(name),
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

/// Load every component of `sources` that the trust rules admit and the
/// policy permits. Returns the MODs by name and, per component, why it
/// was not loaded.
pub async fn load_modes(
    host: &ModeHost,
    sources: &ModeSources,
    policy: &Policy,
    net: Arc<NetInfo>,
) -> anyhow::Result<(
    BTreeMap<String, Arc<crate::sandbox::Mode>>,
    Vec<(String, String)>,
)> {
    let mut modes = BTreeMap::new();
    let mut errors = Vec::new();
    for c in sources.candidates()? {
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
                modes.insert(m.name().to_string(), Arc::new(m));
            }
            Err(e) => errors.push((c.label, e)),
        }
    }
    Ok((modes, errors))
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
        };
        assert!(labels(&s).is_empty());
        assert_eq!(
            labels(&ModeSources::builtin()).len(),
            crate::builtin::all().len()
        );
        let gone = ModeSources {
            dir: Some(dir.path().join("missing")),
            builtin: true,
        };
        let e = gone.candidates().err().unwrap().to_string();
        assert!(e.contains("cannot read the MODs folder"), "{e}");
    }
}
