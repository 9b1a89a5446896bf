//! Network change detection by polling `/proc/net` and the interface list
//! (cheap: two small files and one getifaddrs per period). A change of
//! default gateway or local address recompiles every MOD's gate against the
//! new facts, drops cached probes, and makes every lease due for renewal at
//! once, so losses surface now rather than at the next half-life.
//!
//! The same loop ends leases made `until_closed` once every socket they
//! follow is gone from the host's socket table.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::broker::{Broker, now_ms};
use super::ownership;
use crate::gate::Transport;
use crate::netinfo::NetInfo;

/// What changed between two snapshots, for the log; `None` if nothing did.
pub fn describe_change(old: &NetInfo, new: &NetInfo) -> Option<String> {
    let mut parts = Vec::new();
    let list = crate::text::ip_list;
    if old.gateways != new.gateways {
        parts.push(format!(
            "gateways {} -> {}",
            list(&old.gateways),
            list(&new.gateways)
        ));
    }
    let addrs = |n: &NetInfo| n.addresses.iter().map(|a| a.address).collect::<Vec<_>>();
    if addrs(old) != addrs(new) {
        parts.push(format!(
            "addresses {} -> {}",
            list(&addrs(old)),
            list(&addrs(new))
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

impl Broker {
    /// Adopt a new network snapshot.
    pub fn network_changed(&self, net: NetInfo, why: &str) {
        tracing::info!("network changed: {why}");
        let net = Arc::new(net);
        let mut s = self.shared.lock().unwrap();
        s.modes = s
            .modes
            .iter()
            .map(|(k, m)| (k.clone(), Arc::new(m.with_net(net.clone()))))
            .collect();
        s.net = net;
        s.probed_at = None;
        // The NAT in front may be another one now.
        s.nat = None;
        s.table.renew_all_now(now_ms());
        drop(s);
        self.wake.notify_one();
    }

    /// Poll the network until the task is dropped.
    pub async fn netwatch_loop(self: Arc<Self>) {
        loop {
            let period = {
                let s = self.shared.lock().unwrap();
                Duration::from_millis(s.policy.broker.netwatch_ms)
            };
            tokio::time::sleep(period).await;
            let new = tokio::task::spawn_blocking(NetInfo::read)
                .await
                .unwrap_or_default();
            let old = self.shared.lock().unwrap().net.clone();
            if let Some(why) = describe_change(&old, &new) {
                self.network_changed(new, &why);
            }
            self.release_closed().await;
        }
    }

    /// Release every lease whose followed sockets have all closed.
    async fn release_closed(self: &Arc<Self>) {
        let followed: Vec<(u64, Transport, u16, Vec<u64>)> = {
            let s = self.shared.lock().unwrap();
            s.table
                .all()
                .filter(|l| !l.releasing && !l.rec.follows.is_empty())
                .map(|l| {
                    let m = &l.rec.mapping;
                    (
                        l.rec.id,
                        m.transport,
                        m.internal.port(),
                        l.rec.follows.clone(),
                    )
                })
                .collect()
        };
        if followed.is_empty() {
            return;
        }
        let transports: Vec<Transport> = [Transport::Tcp, Transport::Udp]
            .into_iter()
            .filter(|t| followed.iter().any(|(_, x, _, _)| x == t))
            .collect();
        let read = move || -> std::io::Result<HashSet<u64>> {
            let mut open = HashSet::new();
            for t in transports {
                open.extend(ownership::sockets_on(t, None)?.into_iter().map(|e| e.inode));
            }
            Ok(open)
        };
        let open = match tokio::task::spawn_blocking(read).await {
            Ok(Ok(open)) => open,
            // Unreadable now: nothing is released on a guess.
            _ => return,
        };
        // One dump of the whole table finds the candidates; it may miss a
        // socket that is open (see sockdiag), so each is confirmed by a
        // query of its port before its lease ends.
        for (id, transport, port, follows) in followed {
            if !ownership::all_closed(&follows, &open) {
                continue;
            }
            let confirm = move || ownership::sockets_on(transport, Some(port));
            let Ok(Ok(now)) = tokio::task::spawn_blocking(confirm).await else {
                continue;
            };
            let now: HashSet<u64> = now.into_iter().map(|e| e.inode).collect();
            if ownership::all_closed(&follows, &now) {
                let _ = self.release(id, "its socket closed").await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netinfo::LocalAddress;

    #[test]
    fn changes_are_described_and_sameness_is_silent() {
        let a = NetInfo {
            gateways: vec!["10.0.0.1".parse().unwrap()],
            addresses: vec![LocalAddress {
                address: "10.0.0.2".parse().unwrap(),
                prefix_len: 24,
                interface: "eth0".into(),
            }],
        };
        assert_eq!(describe_change(&a, &a.clone()), None);
        let mut b = a.clone();
        b.gateways = vec!["10.0.1.1".parse().unwrap()];
        let d = describe_change(&a, &b).unwrap();
        assert!(d.starts_with("gateways") && d.contains("10.0.1.1"), "{d}");
        b.addresses.clear();
        assert!(describe_change(&a, &b).unwrap().contains("addresses"));
    }
}
