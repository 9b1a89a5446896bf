//! Fleet push: the daemon polls a published bundle (a folder, or an
//! HTTP(S) URL with ETag / If-None-Match), checks it against its root of
//! trust, and applies a new policy without dropping leases. Leases held by a
//! MOD the new policy no longer permits are released (and the journal knows
//! it). On any failure the last good policy stays in force and the reason
//! shows in `p2pb status`.
//!
//! Files (as `p2pb policy publish` writes them): `policy.toml`,
//! `policy.toml.sig`, and optionally `root.toml`, `root.toml.sig` (a root
//! rotation, one version at a time). The root, the highest serial and the
//! applied policy are persisted in the state folder, so a restart neither
//! rolls back nor forgets a rotation.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::broker::Broker;
use crate::policy::Policy;
use crate::trust::bundle::{self, BundleError, MAX_DOCUMENT, Root, Seen};

/// How long one fetch may take: a slow server must not hold an update open
/// (and freeze protection judges expiry at the start anyway).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where bundles come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A folder (e.g. a mounted share).
    Dir(PathBuf),
    /// A base URL (`…/` + file names).
    Url(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Dir(d) => write!(f, "{}", d.display()),
            Source::Url(u) => f.write_str(u),
        }
    }
}

/// Fleet settings from the command line.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Where to fetch.
    pub source: Source,
    /// The initial root of trust (used until a rotation is accepted).
    pub root: PathBuf,
    /// Poll interval.
    pub interval: Duration,
}

/// Trust state kept across restarts.
#[derive(Debug, Clone)]
pub struct TrustState {
    /// The root in force.
    pub root: Root,
    /// Highest versions seen.
    pub seen: Seen,
    /// The last refused update, if the latest attempt failed.
    pub error: Option<String>,
}

const SEEN_FILE: &str = "trust-seen.json";
const ROOT_FILE: &str = "root.toml";
const POLICY_FILE: &str = "policy.toml";

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Load the persisted trust state, or start from `fleet.root`.
pub fn load_state(fleet: &Fleet, state_dir: &Path) -> anyhow::Result<TrustState> {
    let seen: Seen = std::fs::read(state_dir.join(SEEN_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let initial = Root::parse(&std::fs::read(&fleet.root)?)
        .map_err(|e| anyhow::anyhow!("root of trust {}: {e}", fleet.root.display()))?;
    // A rotated root persisted by an earlier run wins over an older file.
    let root = std::fs::read(state_dir.join(ROOT_FILE))
        .ok()
        .and_then(|b| Root::parse(&b).ok())
        .filter(|r| r.version > initial.version)
        .unwrap_or(initial);
    Ok(TrustState {
        root,
        seen,
        error: None,
    })
}

/// The last applied signed policy, if one was persisted.
pub fn last_applied(state_dir: &Path) -> Option<String> {
    std::fs::read_to_string(state_dir.join(POLICY_FILE)).ok()
}

struct Fetched {
    policy: Vec<u8>,
    policy_sig: Vec<u8>,
    root: Option<(Vec<u8>, Vec<u8>)>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into()
}

/// A fetched body and its ETag.
type Body = (Vec<u8>, Option<String>);

/// GET `url`; `Ok(None)` for 304 (or 404 when `optional`).
fn get(
    agent: &ureq::Agent,
    url: &str,
    etag: Option<&str>,
    optional: bool,
) -> Result<Option<Body>, String> {
    let mut req = agent.get(url);
    if let Some(e) = etag {
        req = req.header("If-None-Match", e);
    }
    let mut resp = req.call().map_err(|e| format!("{url}: {e}"))?;
    match resp.status().as_u16() {
        304 => return Ok(None),
        404 if optional => return Ok(None),
        200 => {}
        s => return Err(format!("{url}: HTTP {s}")),
    }
    let tag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let mut body = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(MAX_DOCUMENT as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("{url}: {e}"))?;
    if body.len() > MAX_DOCUMENT {
        return Err(format!("{url}: more than {MAX_DOCUMENT} bytes"));
    }
    Ok(Some((body, tag)))
}

/// Fetch a bundle; `Ok(None)` when the server says nothing changed.
fn fetch(source: &Source, etags: &mut HashMap<String, String>) -> Result<Option<Fetched>, String> {
    match source {
        Source::Dir(d) => {
            let read = |n: &str| {
                std::fs::read(d.join(n)).map_err(|e| format!("{}: {e}", d.join(n).display()))
            };
            let root = match (
                std::fs::read(d.join(ROOT_FILE)),
                std::fs::read(d.join("root.toml.sig")),
            ) {
                (Ok(r), Ok(s)) => Some((r, s)),
                _ => None,
            };
            Ok(Some(Fetched {
                policy: read(POLICY_FILE)?,
                policy_sig: read("policy.toml.sig")?,
                root,
            }))
        }
        Source::Url(base) => {
            let base = base.trim_end_matches('/');
            let a = agent();
            let url = format!("{base}/{POLICY_FILE}");
            let Some((policy, tag)) = get(&a, &url, etags.get(&url).map(String::as_str), false)?
            else {
                return Ok(None);
            };
            let (policy_sig, _) =
                get(&a, &format!("{url}.sig"), None, false)?.ok_or("no policy.toml.sig")?;
            let root = match get(&a, &format!("{base}/{ROOT_FILE}"), None, true)? {
                Some((r, _)) => {
                    get(&a, &format!("{base}/root.toml.sig"), None, true)?.map(|(s, _)| (r, s))
                }
                None => None,
            };
            if let Some(t) = tag {
                etags.insert(url, t);
            }
            Ok(Some(Fetched {
                policy,
                policy_sig,
                root,
            }))
        }
    }
}

impl Broker {
    /// Replace the policy: load the MODs it permits, swap them in, release
    /// leases of MODs it no longer permits (through the retiring MOD).
    /// Leases of MODs still permitted are kept as they are.
    pub async fn apply_policy(
        self: &Arc<Self>,
        policy: Policy,
        source: String,
    ) -> Result<(), String> {
        let net = self.shared.lock().unwrap().net.clone();
        let (modes, errors) = super::load_modes(&self.host, &self.modes_dir, &policy, net)
            .await
            .map_err(|e| e.to_string())?;
        if modes.is_empty() {
            let why: Vec<String> = errors.iter().map(|(f, e)| format!("{f}: {e}")).collect();
            return Err(format!("no MOD would load under it ({})", why.join("; ")));
        }
        let retired: Vec<(u64, Arc<crate::sandbox::Mode>)> = {
            let mut s = self.shared.lock().unwrap();
            let old = std::mem::replace(&mut s.modes, modes);
            s.policy = Arc::new(policy);
            s.load_errors = errors;
            s.probed_at = None;
            let gone: Vec<(u64, Arc<crate::sandbox::Mode>)> = s
                .table
                .all()
                .filter(|l| !l.releasing && !s.modes.contains_key(&l.rec.mode))
                .filter_map(|l| old.get(&l.rec.mode).map(|m| (l.rec.id, m.clone())))
                .collect();
            gone
        };
        *self.policy_source.lock().unwrap() = source;
        for (id, mode) in retired {
            let _ = self
                .release_with(
                    id,
                    "its MOD is no longer permitted by the policy",
                    Some(mode),
                )
                .await;
        }
        self.wake.notify_one();
        Ok(())
    }

    /// One fleet update: fetch, check, apply. Errors are recorded in the
    /// trust state (shown by `status`); the last good policy stays.
    pub async fn fleet_update(
        self: &Arc<Self>,
        fleet: &Fleet,
        etags: &mut HashMap<String, String>,
    ) {
        let started = SystemTime::now();
        let source = fleet.source.clone();
        let mut tags = std::mem::take(etags);
        let fetched = tokio::task::spawn_blocking(move || {
            let r = fetch(&source, &mut tags);
            (r, tags)
        })
        .await;
        let fetched = match fetched {
            Ok((r, tags)) => {
                *etags = tags;
                r
            }
            Err(e) => Err(e.to_string()),
        };
        let outcome = match fetched {
            Ok(None) => return,
            Ok(Some(f)) => self.check_and_apply(fleet, f, started).await,
            Err(e) => Err(format!("fetching from {}: {e}", fleet.source)),
        };
        let mut t = self.trust.lock().unwrap();
        if let Some(t) = t.as_mut() {
            match outcome {
                Ok(()) => t.error = None,
                Err(e) => {
                    tracing::warn!("policy update refused: {e}");
                    t.error = Some(e);
                }
            }
        }
    }

    async fn check_and_apply(
        self: &Arc<Self>,
        fleet: &Fleet,
        f: Fetched,
        started: SystemTime,
    ) -> Result<(), String> {
        let (mut root, seen) = {
            let t = self.trust.lock().unwrap();
            let t = t.as_ref().ok_or("no root of trust")?;
            (t.root.clone(), t.seen.clone())
        };
        if let Some((r, sig)) = &f.root
            && Root::parse(r).is_ok_and(|n| n.version > root.version)
        {
            root = bundle::update_root(&root, r, sig, started)
                .map_err(|e| format!("root update: {e}"))?;
            write_atomically(&self.state_dir.join(ROOT_FILE), r).map_err(|e| e.to_string())?;
            if let Some(t) = self.trust.lock().unwrap().as_mut() {
                t.root = root.clone();
                t.seen.root_version = root.version;
            }
        }
        let (text, serial) =
            match bundle::check_policy(&root, &seen, &f.policy, &f.policy_sig, started) {
                Ok(x) => x,
                Err(BundleError::Unchanged(_)) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            };
        let policy = Policy::parse(&text).map_err(|e| e.to_string())?;
        self.apply_policy(
            policy,
            format!("signed policy serial {serial} from {}", fleet.source),
        )
        .await?;
        // Recorded only once applied: a policy that could not be applied
        // may be offered again.
        let new_seen = Seen {
            root_version: root.version,
            policy_serial: serial,
            policy_sha256: hex::encode(crate::sandbox::sha256(&f.policy)),
        };
        write_atomically(&self.state_dir.join(POLICY_FILE), &f.policy)
            .map_err(|e| e.to_string())?;
        write_atomically(
            &self.state_dir.join(SEEN_FILE),
            &serde_json::to_vec(&new_seen).expect("serialises"),
        )
        .map_err(|e| e.to_string())?;
        if let Some(t) = self.trust.lock().unwrap().as_mut() {
            t.seen = new_seen;
        }
        tracing::info!(
            "applied signed policy serial {serial} from {}",
            fleet.source
        );
        Ok(())
    }

    /// Poll until the task is dropped.
    pub async fn fleet_loop(self: Arc<Self>, fleet: Fleet) {
        let mut etags = HashMap::new();
        loop {
            self.fleet_update(&fleet, &mut etags).await;
            tokio::time::sleep(fleet.interval).await;
        }
    }
}
