//! The fleet's trust state in the state folder, and why the daemon refuses
//! to start rather than guess when it is damaged.
//!
//! Three files: `trust-seen.json` (the anti-rollback record: highest root
//! version and policy serial accepted, and that policy's sha256),
//! `root.toml` (the latest rotated root) and `policy.toml` (the signed
//! policy last applied). The record is written on the very first start,
//! before anything else, and every later update writes its file first and
//! the record last, so on any start:
//!
//! - no record is normal only when neither other file exists (a first
//!   start); otherwise the record was lost, and starting from defaults
//!   would accept any older signed policy the fleet server (or an attacker
//!   in its place) offers;
//! - a record that does not parse, a persisted root that does not parse, a
//!   recorded root newer than the root in force, or a recorded policy
//!   missing or other than recorded, are damage: the daemon stops and says
//!   which file and what the operator may do;
//! - the one gap writes can leave — `policy.toml` written, the record not
//!   yet — shows as a persisted policy with a *higher* serial than
//!   recorded; it was checked and applied before it was written, so the
//!   start completes the update.
//!
//! The state folder is trusted storage (the broker's own, like its
//! journal): these checks catch loss and damage, not a local attacker who
//! can write there. Every read is capped and refuses anything but a
//! regular file ([`crate::files`]).

use std::path::Path;

use anyhow::bail;

use super::fleet::Fleet;
use crate::files::{Links, read_document};
use crate::policy::Policy;
use crate::trust::bundle::{MAX_DOCUMENT, Root, Seen};

/// The anti-rollback record.
pub const SEEN_FILE: &str = "trust-seen.json";
/// The latest rotated root.
pub const ROOT_FILE: &str = "root.toml";
/// The signed policy last applied.
pub const POLICY_FILE: &str = "policy.toml";

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

/// What a start finds: the trust state, and the signed policy to run
/// (text and serial) if one was applied before.
#[derive(Debug)]
pub struct Loaded {
    /// Root and record.
    pub state: TrustState,
    /// The persisted signed policy, if any.
    pub policy: Option<(String, u64)>,
}

/// Write `bytes` to `path` so that at every instant either the old or the
/// new content is there, complete, also across a power cut.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable only once the folder is synced.
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Write the anti-rollback record.
pub fn write_seen(state_dir: &Path, seen: &Seen) -> std::io::Result<()> {
    let json = serde_json::to_vec(seen).expect("serialises");
    write_atomically(&state_dir.join(SEEN_FILE), &json)
}

/// What the operator may do about damaged trust state.
fn remedy(state_dir: &Path) -> String {
    format!(
        "restore the state folder from a backup, or, knowing that the next signed policy \
         offered will then be accepted whatever its serial, remove {SEEN_FILE}, {ROOT_FILE} \
         and {POLICY_FILE} from {} to start over from --root",
        state_dir.display()
    )
}

/// A persisted file, `None` if absent; any other failure is fatal.
fn read_state_file(state_dir: &Path, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
    match read_document(&state_dir.join(name), MAX_DOCUMENT, Links::Refuse) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => bail!(
            "cannot read the persisted trust state: {e}; {}",
            remedy(state_dir)
        ),
    }
}

fn parse_seen(bytes: &[u8]) -> Result<Seen, String> {
    let seen: Seen = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let hex_digest =
        seen.policy_sha256.len() == 64 && seen.policy_sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if seen.policy_serial > 0 && !hex_digest {
        return Err("`policy_sha256` is not a sha256".into());
    }
    Ok(seen)
}

/// Load the trust state for `fleet` from `state_dir`, or refuse to start
/// with the file and the remedy named (see the module docs).
pub fn load_state(fleet: &Fleet, state_dir: &Path) -> anyhow::Result<Loaded> {
    // The operator names --root; a link there is theirs to make.
    let initial = read_document(&fleet.root, MAX_DOCUMENT, Links::Follow)
        .map_err(|e| anyhow::anyhow!("root of trust: {e}"))?;
    let initial = Root::parse(&initial)
        .map_err(|e| anyhow::anyhow!("root of trust {}: {e}", fleet.root.display()))?;
    let seen_bytes = read_state_file(state_dir, SEEN_FILE)?;
    let root_bytes = read_state_file(state_dir, ROOT_FILE)?;
    let policy_bytes = read_state_file(state_dir, POLICY_FILE)?;
    let path = |n: &str| state_dir.join(n).display().to_string();
    let persisted_root = match &root_bytes {
        Some(b) => Some(Root::parse(b).map_err(|e| {
            anyhow::anyhow!(
                "the persisted root of trust {} is unreadable ({e}); {}",
                path(ROOT_FILE),
                remedy(state_dir)
            )
        })?),
        None => None,
    };
    // A rotated root persisted by an earlier run wins over an older file.
    let root = match persisted_root {
        Some(r) if r.version > initial.version => r,
        _ => initial,
    };
    let seen = match &seen_bytes {
        Some(b) => parse_seen(b).map_err(|e| {
            anyhow::anyhow!(
                "the anti-rollback record {} is corrupt ({}); refusing to start rather than \
                 forget which policies were applied; {}",
                path(SEEN_FILE),
                crate::text::escape(&e),
                remedy(state_dir)
            )
        })?,
        None if root_bytes.is_some() || policy_bytes.is_some() => bail!(
            "the anti-rollback record {} is missing although {} holds a persisted {}; \
             refusing to start rather than forget which policies were applied; {}",
            path(SEEN_FILE),
            state_dir.display(),
            if policy_bytes.is_some() {
                POLICY_FILE
            } else {
                ROOT_FILE
            },
            remedy(state_dir)
        ),
        None => {
            // First start: the record exists before anything else is
            // written, so a later missing record is always damage.
            let fresh = Seen {
                root_version: root.version,
                ..Seen::default()
            };
            write_seen(state_dir, &fresh)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path(SEEN_FILE)))?;
            fresh
        }
    };
    if seen.root_version > root.version {
        bail!(
            "the anti-rollback record {} says root version {} was accepted, but the newest \
             root available ({} or --root) is version {}; {}",
            path(SEEN_FILE),
            seen.root_version,
            path(ROOT_FILE),
            root.version,
            remedy(state_dir)
        );
    }
    let (seen, policy) = persisted_policy(state_dir, seen, policy_bytes)?;
    Ok(Loaded {
        state: TrustState {
            root,
            seen,
            error: None,
        },
        policy,
    })
}

/// Check the persisted policy against the record (see the module docs).
fn persisted_policy(
    state_dir: &Path,
    seen: Seen,
    bytes: Option<Vec<u8>>,
) -> anyhow::Result<(Seen, Option<(String, u64)>)> {
    let path = state_dir.join(POLICY_FILE).display().to_string();
    let Some(bytes) = bytes else {
        if seen.policy_serial > 0 {
            bail!(
                "{} records signed policy serial {} as applied, but {path} is missing; \
                 refusing to start rather than fall back to an older policy; {}",
                state_dir.join(SEEN_FILE).display(),
                seen.policy_serial,
                remedy(state_dir)
            );
        }
        return Ok((seen, None));
    };
    let digest = hex::encode(crate::sandbox::sha256(&bytes));
    let unreadable = |why: String| {
        anyhow::anyhow!(
            "the persisted policy {path} is unreadable ({}); {}",
            crate::text::escape(&why),
            remedy(state_dir)
        )
    };
    let text = String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8".into()))?;
    if seen.policy_serial > 0 && digest.eq_ignore_ascii_case(&seen.policy_sha256) {
        return Ok((seen.clone(), Some((text, seen.policy_serial))));
    }
    let serial = Policy::parse(&text)
        .map_err(|e| unreadable(e.to_string()))?
        .serial
        .unwrap_or(0);
    if serial <= seen.policy_serial {
        bail!(
            "the persisted policy {path} (serial {serial}) is not the one {} records (serial \
             {}); {}",
            state_dir.join(SEEN_FILE).display(),
            seen.policy_serial,
            remedy(state_dir)
        );
    }
    // Written after it was checked and applied, the record not yet: finish.
    tracing::warn!(
        "completing an interrupted policy update: recording serial {serial} from {path}"
    );
    let done = Seen {
        policy_serial: serial,
        policy_sha256: digest,
        ..seen
    };
    write_seen(state_dir, &done)?;
    Ok((done, Some((text, serial))))
}

#[cfg(test)]
#[path = "trust_state_tests.rs"]
mod tests;
