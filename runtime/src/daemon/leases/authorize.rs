//! Who asks, and whether the policy lets them: the access rules, the caps
//! (maps in flight count), lifetimes, whose address may be mapped, policy
//! expiry. Ownership of the endpoint is proven separately
//! ([`crate::daemon::ownership`]).

use std::net::{IpAddr, SocketAddr};

use p2pbroker_client::{ApiError, ErrorCode, MapParams};

use super::LeaseTable;
use crate::daemon::api;
use crate::gate::Transport;
use crate::netinfo::NetInfo;
use crate::policy::Policy;

/// A LAN client, told apart by the token it authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanPeer {
    /// Its address: it may only map that address...
    pub ip: IpAddr,
    /// ...unless the policy lets LAN clients map other hosts.
    pub third_party: bool,
    /// Its identity: a short digest of its token. Leases of one LAN client
    /// are invisible to every other.
    pub id: String,
}

/// Who asks: a local user (uid from SO_PEERCRED) or a LAN client, and the
/// connection (for release on close).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The uid the access rules see (a LAN client's is the policy's).
    pub uid: u32,
    /// The connection id.
    pub conn: u64,
    /// Set for a LAN client.
    pub lan: Option<LanPeer>,
    /// The local process that asked (SO_PEERCRED), for the hole log.
    pub pid: Option<u32>,
}

impl Requester {
    /// How refusals name the requester.
    pub fn describe(&self) -> String {
        match &self.lan {
            Some(l) => format!("LAN client {} ({})", l.id, l.ip),
            None => format!("uid {}", self.uid),
        }
    }

    /// Whether a lease with this owner is this requester's own.
    pub fn owns(&self, owner_uid: u32, owner_lan: Option<&str>) -> bool {
        match (&self.lan, owner_lan) {
            (Some(me), Some(them)) => me.id == them,
            (None, None) => self.uid == owner_uid,
            _ => false,
        }
    }

    /// Whether this requester may see and release such a lease: its own,
    /// and every lease for local root.
    pub fn sees(&self, owner_uid: u32, owner_lan: Option<&str>) -> bool {
        (self.lan.is_none() && self.uid == 0) || self.owns(owner_uid, owner_lan)
    }
}

/// A map the table allowed: what to map and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The internal endpoint.
    pub internal: SocketAddr,
    /// When the lease ends (unix ms): the request's lifetime, or the cap
    /// that applies to the requester when it gave none.
    pub expires_ms: u64,
}

impl LeaseTable {
    /// Whether `who` may release lease `id`.
    pub fn may_unmap(&self, id: u64, who: &Requester) -> Result<(), ApiError> {
        match self.leases.get(&id) {
            Some(l) if l.visible_to(who) => Ok(()),
            // Another's lease is "not found" to a LAN client, so one cannot
            // probe for the ids of another; local users share one host.
            Some(l) if !l.releasing && who.lan.is_none() => Err(api(
                ErrorCode::Unauthorized,
                format!("lease {id} belongs to another user"),
            )),
            _ => Err(api(ErrorCode::NotFound, format!("no lease {id}"))),
        }
    }

    /// Check a map request against the policy: expiry, access rules, caps
    /// (maps in flight count), lifetime, and whose address may be mapped.
    /// Ownership of the endpoint is checked by the caller against the
    /// host's socket table ([`super::ownership`]).
    pub fn authorize(
        &self,
        p: &MapParams,
        who: &Requester,
        policy: &Policy,
        net: &NetInfo,
        now_ms: u64,
    ) -> Result<Authorized, ApiError> {
        self.authorize_as(None, p, who, policy, net, now_ms)
    }

    /// [`LeaseTable::authorize`] for lease `id`, which already exists (it
    /// is being re-established): it does not count against the caps.
    pub fn authorize_existing(
        &self,
        id: u64,
        p: &MapParams,
        who: &Requester,
        policy: &Policy,
        net: &NetInfo,
        now_ms: u64,
    ) -> Result<Authorized, ApiError> {
        self.authorize_as(Some(id), p, who, policy, net, now_ms)
    }

    fn authorize_as(
        &self,
        existing: Option<u64>,
        p: &MapParams,
        who: &Requester,
        policy: &Policy,
        net: &NetInfo,
        now_ms: u64,
    ) -> Result<Authorized, ApiError> {
        if let Some(at) = policy.expires_ms().filter(|e| now_ms >= *e) {
            return Err(api(
                ErrorCode::PolicyExpired,
                format!(
                    "the policy in force expired at {}; no new mapping until a valid policy arrives",
                    crate::policy::rfc3339_ms(at)
                ),
            ));
        }
        let transport = gate_transport(p.transport);
        if p.port == 0 || p.external_port == Some(0) || p.lifetime == Some(0) {
            return Err(api(
                ErrorCode::BadRequest,
                "port and lifetime must be at least 1",
            ));
        }
        let ports: Vec<u16> = std::iter::once(p.port).chain(p.external_port).collect();
        let whom = who.describe();
        let rules = policy.access_rules();
        let rule = rule_for(&rules, who, transport, &ports, p.persist)?;
        let cap = rule
            .max_lifetime
            .unwrap_or(u32::MAX)
            .min(policy.broker.max_lifetime);
        let lifetime = p.lifetime.unwrap_or(cap);
        if lifetime > cap {
            return Err(api(
                ErrorCode::Limit,
                format!("lifetime {lifetime} s exceeds the cap of {cap} s for {whom}"),
            ));
        }
        let (total, mine) = self.counts(who, existing);
        if total >= policy.broker.max_leases as usize {
            return Err(api(
                ErrorCode::Limit,
                format!(
                    "the broker holds its maximum of {} leases (maps in flight included)",
                    policy.broker.max_leases
                ),
            ));
        }
        if let Some(max) = rule.max_leases.filter(|m| mine >= *m as usize) {
            return Err(api(
                ErrorCode::Limit,
                format!("{whom} already holds its maximum of {max} leases"),
            ));
        }
        let ip = match (p.address, &who.lan) {
            (Some(a), Some(l)) if l.third_party => a,
            (Some(a), Some(l)) if a != l.ip => {
                return Err(api(
                    ErrorCode::Unauthorized,
                    format!(
                        "a LAN client may only map its own address {}, not {a}",
                        l.ip
                    ),
                ));
            }
            (_, Some(l)) => l.ip,
            (Some(a), None) => {
                if !net.addresses.iter().any(|x| x.address == a) {
                    return Err(api(
                        ErrorCode::Unauthorized,
                        format!("{a} is not an address of this host"),
                    ));
                }
                a
            }
            (None, None) => local_internal(net)
                .ok_or_else(|| api(ErrorCode::NoMode, "this host has no address to map"))?,
        };
        Ok(Authorized {
            internal: SocketAddr::new(ip, p.port),
            expires_ms: now_ms.saturating_add(u64::from(lifetime) * 1000),
        })
    }

    /// Live leases and maps in flight, but for `except`: in all, and
    /// `who`'s own.
    fn counts(&self, who: &Requester, except: Option<u64>) -> (usize, usize) {
        let lan = |l: &Option<String>| l.clone();
        let live = self
            .leases
            .values()
            .filter(|l| !l.releasing && Some(l.rec.id) != except)
            .map(|l| (l.rec.owner_uid, lan(&l.rec.owner_lan)));
        let pending = self
            .pending
            .values()
            .map(|p| (p.owner_uid, lan(&p.owner_lan)));
        live.chain(pending).fold((0, 0), |(t, m), (uid, lan)| {
            (t + 1, m + usize::from(who.owns(uid, lan.as_deref())))
        })
    }
}

/// The gate's transport for a client API transport.
pub fn gate_transport(t: p2pbroker_client::Transport) -> Transport {
    match t {
        p2pbroker_client::Transport::Tcp => Transport::Tcp,
        p2pbroker_client::Transport::Udp => Transport::Udp,
    }
}

/// The client API's transport for a gate transport.
pub fn wire_transport(t: Transport) -> p2pbroker_client::Transport {
    match t {
        Transport::Tcp => p2pbroker_client::Transport::Tcp,
        Transport::Udp => p2pbroker_client::Transport::Udp,
    }
}

/// This host's address to map for a local client: the one on the subnet of
/// the first default gateway, else the first IPv4 address.
pub fn local_internal(net: &NetInfo) -> Option<IpAddr> {
    let on_link = |gw: &IpAddr| {
        net.addresses
            .iter()
            .find(|a| ipnet::IpNet::new(a.address, a.prefix_len).is_ok_and(|n| n.contains(gw)))
    };
    net.gateways
        .iter()
        .find_map(on_link)
        .map(|a| a.address)
        .or_else(|| {
            net.addresses
                .iter()
                .map(|a| a.address)
                .find(IpAddr::is_ipv4)
        })
}

/// The access rule that lets `who` map `ports` over `transport` (the
/// first that covers them decides), or why none does; `persist`: the
/// lease is to outlive its connection, which the rule must allow.
pub fn rule_for<'a>(
    rules: &'a [crate::policy::AccessRule],
    who: &Requester,
    transport: Transport,
    ports: &[u16],
    persist: bool,
) -> Result<&'a crate::policy::AccessRule, ApiError> {
    let whom = || who.describe();
    let rule = rules
        .iter()
        .find(|r| r.applies_to(who.uid) && r.covers(transport, ports))
        .ok_or_else(|| {
            api(
                ErrorCode::Unauthorized,
                format!(
                    "policy does not allow {} to map {transport} port(s) {}",
                    whom(),
                    ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    if persist && !rule.persist {
        return Err(api(
            ErrorCode::Unauthorized,
            format!(
                "policy does not allow {} leases that outlive the connection",
                whom()
            ),
        ));
    }
    Ok(rule)
}

/// Who holds the lease, as the access rules see it under `policy`.
pub fn owner_in(rec: &crate::daemon::journal::LeaseRecord, policy: &Policy) -> Requester {
    let lan = rec.owner_lan.as_ref().map(|id| LanPeer {
        ip: rec.mapping.internal.ip(),
        third_party: policy.lan.as_ref().is_some_and(|l| l.third_party),
        id: id.clone(),
    });
    Requester {
        // A LAN client counts as the uid `[lan]` gives LAN clients now.
        uid: match (&lan, &policy.lan) {
            (Some(_), Some(l)) => l.uid,
            _ => rec.owner_uid,
        },
        conn: 0,
        lan,
        pid: rec.owner_pid,
    }
}

/// The leases `policy`'s access rules no longer allow their owners (no
/// rule covers the owner's uid, transport and internal port, or none lets
/// the lease outlive its connection), with why. Only the rules: a lower
/// lease or lifetime cap binds new maps, not leases held. One pass.
pub fn refused_by_rules(table: &LeaseTable, policy: &Policy) -> Vec<(u64, String)> {
    let rules = policy.access_rules();
    table
        .all()
        .filter(|l| !l.releasing)
        .filter_map(|l| {
            let who = owner_in(&l.rec, policy);
            let m = &l.rec.mapping;
            // The internal port, as a re-establishment asks: the external
            // one is what the gateway chose (a relay's is random).
            let ports = [m.internal.port()];
            rule_for(&rules, &who, m.transport, &ports, l.rec.persist)
                .err()
                .map(|e| (l.rec.id, e.message))
        })
        .collect()
}
