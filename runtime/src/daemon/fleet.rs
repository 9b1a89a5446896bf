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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::broker::Broker;
pub use super::trust_state::{Loaded, TrustState, load_state};
use super::trust_state::{POLICY_FILE, ROOT_FILE, write_atomically, write_seen};
use crate::files::{Links, read_document};
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

/// Longest refusal kept for `status` and the log, so a server's error
/// text can flood neither.
const ERROR_MAX: usize = 1000;

/// `e` escaped for a terminal and a log line, and clipped.
fn clipped(e: &str) -> String {
    let e = crate::text::escape(e);
    match e.char_indices().nth(ERROR_MAX) {
        Some((at, _)) => format!("{}…", &e[..at]),
        None => e.into_owned(),
    }
}

/// The detached signature files next to the documents.
const POLICY_SIG: &str = "policy.toml.sig";
const ROOT_SIG: &str = "root.toml.sig";

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
            // A share others write: capped, regular files only, no links.
            let read = |n: &str| read_document(&d.join(n), MAX_DOCUMENT, Links::Refuse);
            let need = |n: &str| read(n).map_err(|e| e.to_string());
            // A rotation is optional, but a root that is there and
            // unreadable is reported, not skipped.
            let optional = |n: &str| match read(n) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e.to_string()),
            };
            let root = match (optional(ROOT_FILE)?, optional(ROOT_SIG)?) {
                (Some(r), Some(s)) => Some((r, s)),
                _ => None,
            };
            Ok(Some(Fetched {
                policy: need(POLICY_FILE)?,
                policy_sig: need(POLICY_SIG)?,
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
                    get(&a, &format!("{base}/{ROOT_SIG}"), None, true)?.map(|(s, _)| (r, s))
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
        let _applying = self.applying.lock().await;
        self.apply_policy_locked(policy, source).await
    }

    /// [`Self::apply_policy`] with [`Broker::applying`] held by the caller.
    pub async fn apply_policy_locked(
        self: &Arc<Self>,
        policy: Policy,
        source: String,
    ) -> Result<(), String> {
        let net = self.shared.lock().unwrap().net.clone();
        let super::sources::Loaded {
            modes,
            errors,
            notes,
            pulled,
        } = super::load_modes(&self.host, &self.modes, &policy, net)
            .await
            .map_err(|e| e.to_string())?;
        if modes.is_empty() {
            let why: Vec<String> = errors.iter().map(|(f, e)| format!("{f}: {e}")).collect();
            return Err(format!("no MOD would load under it ({})", why.join("; ")));
        }
        let policy = Arc::new(policy);
        let retired: Vec<(u64, Arc<crate::sandbox::Mode>)> = {
            let mut s = self.shared.lock().unwrap();
            if listen_changed(s.policy.lan.as_ref(), policy.lan.as_ref()) {
                // The listener is bound at start; its tokens follow below.
                tracing::warn!(
                    "the policy's [lan] listener changed: the new address is bound at the \
                     next restart; its tokens, uid and third_party apply now"
                );
            }
            if let Some(gate) = self.lan_gate.get() {
                // A token no longer listed (or other LAN terms) closes the
                // connections it let in, now.
                gate.set_lan(policy.lan.as_ref());
            }
            let old = std::mem::replace(&mut s.modes, modes);
            s.policy = policy.clone();
            s.load_errors = errors;
            s.mode_notes = notes;
            s.probed_at = None;
            s.nat = None;
            // Every lease of a retired MOD, releasing ones included, can
            // still be unmapped through it: kept before any await, so a
            // stop or a failed release finds it (`release_with`).
            let mut retiring = self.retiring.lock().unwrap();
            let mut gone = Vec::new();
            for l in s.table.all().filter(|l| !s.modes.contains_key(&l.rec.mode)) {
                let Some(m) = old.get(&l.rec.mode) else {
                    continue;
                };
                // Under the sha the lease records (the MOD's own may be a
                // newer version of the name, swapped in by an earlier
                // reload), which is what a release looks up.
                retiring.insert(l.rec.mode_sha256.clone(), m.clone());
                if !l.releasing {
                    gone.push((l.rec.id, m.clone()));
                }
            }
            gone
        };
        *self.policy_source.lock().unwrap() = source;
        super::sources::keep_in_cache(&self.modes, pulled, &policy).await;
        for (id, mode) in retired {
            let _ = self
                .release_with(
                    id,
                    "its MOD is no longer permitted by the policy",
                    Some(mode),
                )
                .await;
        }
        // Leases its access rules no longer allow go too, as a
        // re-establishment would find (else they renew until they end).
        for (id, why) in self.refused_by_policy() {
            let why = format!("no longer allowed by the new policy: {why}");
            tracing::info!("lease {id}: {}", crate::text::escaped(&why));
            let _ = self.release(id, &why).await;
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
        use super::metrics::FleetResult;
        let outcome = match fetched {
            Ok(None) => {
                self.metrics.fleet_fetch(FleetResult::Unchanged);
                return;
            }
            Ok(Some(f)) => {
                let r = self.check_and_apply(fleet, f, started).await;
                self.metrics.fleet_fetch(match r {
                    Ok(()) => FleetResult::Applied,
                    Err(_) => FleetResult::Refused,
                });
                r
            }
            Err(e) => {
                self.metrics.fleet_fetch(FleetResult::FetchFailed);
                Err(format!("fetching from {}: {e}", fleet.source))
            }
        };
        let mut t = self.trust.lock().unwrap();
        if let Some(t) = t.as_mut() {
            match outcome {
                Ok(()) => t.error = None,
                Err(e) => {
                    let e = clipped(&e);
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
        // Held from reading what was seen to recording the new serial: two
        // updates at once (the poll and a SIGHUP fetch) would otherwise
        // both check against the same record, and the older could be
        // applied after the newer: a rollback.
        let _applying = self.applying.lock().await;
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
            // The root first, then the record (see `trust_state`).
            write_atomically(&self.state_dir.join(ROOT_FILE), r).map_err(|e| e.to_string())?;
            let rotated = Seen {
                root_version: root.version,
                ..seen.clone()
            };
            write_seen(&self.state_dir, &rotated).map_err(|e| e.to_string())?;
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
        self.apply_policy_locked(
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
        // The policy first, then the record (see `trust_state`).
        write_atomically(&self.state_dir.join(POLICY_FILE), &f.policy)
            .map_err(|e| e.to_string())?;
        write_seen(&self.state_dir, &new_seen).map_err(|e| e.to_string())?;
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

/// Whether a new policy's LAN listener differs from the one in force
/// (dropping `[lan]` is not a change of address: the gate then accepts
/// no token).
fn listen_changed(
    old: Option<&crate::policy::LanSettings>,
    new: Option<&crate::policy::LanSettings>,
) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => o.listen != n.listen,
        (None, Some(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_lan_address_needs_a_restart() {
        let lan = |port: u16, token: &str| crate::policy::LanSettings {
            listen: std::net::SocketAddr::from(([192, 0, 2, 1], port)),
            token_sha256: vec![token.repeat(64)],
            uid: 65534,
            third_party: false,
        };
        assert!(!listen_changed(None, None));
        assert!(
            !listen_changed(Some(&lan(1, "a")), Some(&lan(1, "b"))),
            "tokens apply live"
        );
        assert!(
            !listen_changed(Some(&lan(1, "a")), None),
            "no token accepted: live"
        );
        assert!(listen_changed(Some(&lan(1, "a")), Some(&lan(2, "a"))));
        assert!(listen_changed(None, Some(&lan(1, "a"))));
    }

    fn fetch_dir(dir: &std::path::Path) -> Result<Fetched, String> {
        fetch(&Source::Dir(dir.to_path_buf()), &mut HashMap::new())
            .map(|f| f.expect("a folder always yields a bundle"))
    }

    #[test]
    fn a_published_folder_is_read_as_capped_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join(POLICY_SIG), "sig").unwrap();
        crate::files::tests::mkfifo(&d.join(POLICY_FILE));
        let e = fetch_dir(d).err().unwrap();
        assert!(e.contains("is a FIFO, not a regular file"), "{e}");
        std::fs::remove_file(d.join(POLICY_FILE)).unwrap();
        std::fs::write(d.join(POLICY_FILE), vec![b'#'; MAX_DOCUMENT + 1]).unwrap();
        let e = fetch_dir(d).err().unwrap();
        assert!(e.contains("more than"), "{e}");
        std::fs::write(d.join(POLICY_FILE), "version = 1\n").unwrap();
        let f = fetch_dir(d).unwrap();
        assert_eq!(f.policy, b"version = 1\n");
        assert!(f.root.is_none(), "no rotation published");
        // A rotation that is there but unreadable is reported, not skipped.
        std::fs::write(d.join("elsewhere"), "version = 2\n").unwrap();
        std::os::unix::fs::symlink(d.join("elsewhere"), d.join(ROOT_FILE)).unwrap();
        std::fs::write(d.join(ROOT_SIG), "sig").unwrap();
        let e = fetch_dir(d).err().unwrap();
        assert!(e.contains("is a symbolic link"), "{e}");
    }

    #[test]
    fn refusals_are_escaped_and_clipped() {
        assert_eq!(clipped("bad\nline"), "bad\\u{a}line");
        let long = clipped(&"x".repeat(ERROR_MAX * 3));
        assert_eq!(long.chars().count(), ERROR_MAX + 1);
        assert!(long.ends_with('…'));
    }
}
