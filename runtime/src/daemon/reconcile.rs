//! After a crash mid-map: the journal's open intents, reconciled at the
//! next start (see [`super::journal`]).

use std::sync::Arc;

use super::broker::Broker;
use super::holelog::{Activity, Hole, ModeRef, Who};
use super::journal::Intent;
use crate::json::wit_transport;
use crate::sandbox::wit::MapRequest;
use crate::sandbox::{Op, Output};

/// Gateway lifetime asked when reconciling a crashed map: the mapping is
/// deleted at once; if that fails, it does not outlive two minutes (the
/// smallest lifetime miniupnpd grants).
const RECONCILE_LIFETIME: u32 = 120;

impl Broker {
    /// After a crash mid-map: a MOD may have made a mapping whose lease was
    /// never journaled. Ask the same MOD to map the same endpoint again (a
    /// gateway answers with the mapping it holds) and unmap what it
    /// returns. Best effort: a MOD that is gone or fails is logged.
    pub async fn reconcile(self: &Arc<Self>, intents: Vec<Intent>) {
        for i in intents {
            // A re-establishment's intent: its lease lives on (journaled),
            // so the hole log already tells of it.
            let live = self.shared.lock().unwrap().table.get(i.id).is_some();
            let Some(mode) = self.mode_named(&i.mode) else {
                tracing::warn!(
                    "lease {}: a map through `{}` was cut short by a crash, and that MOD is not loaded: its mapping (if any) expires on its own",
                    i.id,
                    i.mode
                );
                if !live {
                    let why = "a map cut short by an unclean stop could not be reconciled (its \
                               MOD is not loaded): what it may have opened stays until its \
                               gateway lifetime ends";
                    self.log_hole(broker_hole(&i, None, "", why.into()));
                }
                self.forget(i.id);
                continue;
            };
            let req = MapRequest {
                transport: wit_transport(i.transport),
                internal: i.internal.into(),
                external_port: i.external_port,
                lifetime: RECONCILE_LIFETIME,
                permanent_allowed: false,
                probe_state: Vec::new(),
            };
            let mut external = None;
            let outcome = match Output::mapping(mode.call(Op::Map(req)).await.result) {
                Ok(m) => {
                    external = Some(crate::json::MappingJson::from(&m).external);
                    mode.call(Op::Unmap(m)).await.result.map(|_| ())
                }
                Err(e) => Err(e),
            };
            let why = match &outcome {
                Ok(()) => {
                    tracing::info!(
                        "lease {}: a map cut short by a crash was reconciled through `{}`",
                        i.id,
                        i.mode
                    );
                    "a map cut short by an unclean stop: what it may have opened was \
                     removed at the next start"
                        .to_string()
                }
                Err(e) => {
                    tracing::warn!(
                        "lease {}: reconciling a map cut short by a crash failed: {e}",
                        i.id
                    );
                    format!(
                        "a map cut short by an unclean stop could not be reconciled ({e}): \
                         what it may have opened stays until its gateway lifetime ends"
                    )
                }
            };
            // The hole was never a lease anyone was told of, but it may have
            // been open on the gateway: the hole log says so, as the broker's
            // own act.
            if !live {
                self.log_hole(broker_hole(&i, external, mode.sha256(), why));
            }
            self.forget(i.id);
        }
    }

    /// Drop an intent that has been dealt with (unless its lease lives on).
    fn forget(&self, id: u64) {
        let live = self.shared.lock().unwrap().table.get(id).is_some();
        let mut j = self.journal.lock().unwrap();
        let r = match j.live().get(&id).cloned() {
            // Re-putting the record supersedes the intent.
            Some(rec) if live => j.put(&rec),
            _ => j.del(id),
        };
        if let Err(e) = r {
            tracing::error!("{e}");
        }
    }
}

/// The hole-log line for a reconciled intent: the broker acting, not a
/// client (the intent does not say who asked).
fn broker_hole(
    i: &Intent,
    external: Option<std::net::SocketAddr>,
    sha256: &str,
    why: String,
) -> Hole {
    Hole {
        time_ms: super::broker::now_ms(),
        activity: Activity::Released,
        who: Who {
            // SAFETY: geteuid cannot fail.
            uid: unsafe { libc::geteuid() },
            pid: Some(std::process::id()),
            process: Some("p2pbd".into()),
            lan: None,
        },
        transport: i.transport.to_string(),
        internal: i.internal,
        external,
        lifetime: None,
        lease: Some(i.id),
        mode: Some(ModeRef {
            name: i.mode.clone(),
            sha256: sha256.to_string(),
            signers: Vec::new(),
        }),
        policy_serial: None,
        why: Some(why),
    }
}
