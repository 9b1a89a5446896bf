//! The records inside results and events: leases, status, probes. The
//! broker builds them; clients read them leniently (unknown fields are
//! ignored, so a broker may add fields within protocol version 1).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::Transport;

/// A lease's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaseState {
    /// Mapped and kept alive.
    Active,
    /// The mapping was lost; the broker is trying to re-establish it.
    Lost,
    /// A re-establishment is in progress.
    ReEstablishing,
}

impl LeaseState {
    /// The wire name (`"re-establishing"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Active => "active",
            LeaseState::Lost => "lost",
            LeaseState::ReEstablishing => "re-establishing",
        }
    }
}

impl std::fmt::Display for LeaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An outbound connection the broker opened (`connect`): the connected
/// socket itself travels with the answer line (SCM_RIGHTS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The destination asked for.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The route: `direct`, or the connector MOD that opened the tunnel.
    pub via: String,
    /// The proxy the tunnel goes through (`IP:PORT`), for a MOD's route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The socket's local address (towards the destination or the proxy).
    pub local: SocketAddr,
    /// Milliseconds from the request to the open connection.
    pub elapsed_ms: u64,
    /// Routes tried first that failed, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<super::ModeReason>,
}

/// A lease: a mapping the broker holds for a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Lease id (for `unmap`).
    pub id: u64,
    /// TCP or UDP.
    pub transport: Transport,
    /// The local endpoint.
    pub internal: SocketAddr,
    /// Where peers reach it.
    pub external: SocketAddr,
    /// The MOD that holds it.
    pub mode: String,
    /// Active, lost or re-establishing.
    pub state: LeaseState,
    /// Seconds the gateway granted per renewal; 0 = permanent.
    pub gateway_lifetime: u32,
    /// Unix seconds of the next renewal.
    pub renew_at: Option<u64>,
    /// Unix seconds when the lease ends; `None` = until released.
    pub expires_at: Option<u64>,
    /// The client's uid.
    pub owner_uid: u32,
    /// The LAN client that holds it (`lan-` and a digest of its token),
    /// when a LAN client does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan_client: Option<String>,
    /// Outlives the client's connection.
    pub persist: bool,
    /// Unix seconds of creation.
    pub created_at: u64,
    /// For a lease served through a TURN relay: where it is relayed and
    /// which peers may reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<Box<Relay>>,
}

/// How a relayed lease is carried (`external` is the relayed address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    /// The TURN server.
    pub server: SocketAddr,
    /// How the broker reaches it: `udp`, `tcp`, `tls`, or a stream `via`
    /// a proxy's connector MOD (`tls via http-connect`).
    #[serde(default)]
    pub leg: String,
    /// The peers permitted to reach the application (`permit`), each with
    /// the local address the application sees its datagrams come from.
    pub peers: Vec<RelayPeer>,
}

/// A permitted peer of a relayed lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayPeer {
    /// The peer, as the relay sees it.
    pub peer: SocketAddr,
    /// Where its datagrams come from on this host (the broker's stand-in).
    pub local: SocketAddr,
}

/// One MOD's latest probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeView {
    /// The MOD.
    pub mode: String,
    /// Whether the probe succeeded.
    pub ok: bool,
    /// The error kind when it did not.
    pub kind: Option<String>,
    /// What it saw, or why it failed.
    pub detail: String,
    /// The gateway or server that answered.
    pub gateway: Option<IpAddr>,
    /// The external address it learned.
    pub external_address: Option<IpAddr>,
    /// That address's class (`global`, `private`, `shared`, ...).
    pub external_class: Option<String>,
    /// Probe duration.
    pub elapsed_ms: u64,
    /// Seconds since the probe.
    pub age_s: u64,
}

/// A MOD the broker loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeStatus {
    /// Its name.
    pub name: String,
    /// Its component's sha256.
    pub sha256: String,
    /// Its version.
    pub version: String,
    /// Its latest probe.
    pub probe: Option<ProbeView>,
}

/// The policy in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Where it came from.
    pub source: String,
    /// Its version, when signed.
    pub version: Option<u64>,
    /// The last refused policy update, if any.
    pub error: Option<String>,
    /// Unix seconds when the policy in force expires, if it says (a signed
    /// policy always does). Absent from brokers before this field.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// The policy in force has expired: new maps are refused
    /// (`policy-expired`) and leases are not renewed.
    #[serde(default)]
    pub expired: bool,
    /// What the operator should act on, most urgent first: the policy or
    /// the root of trust expired, or expires within a day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The host's network as the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkView {
    /// Default gateways.
    pub gateways: Vec<IpAddr>,
    /// Local addresses (`addr/prefix (iface)`).
    pub addresses: Vec<String>,
}

/// `status` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The broker's version.
    pub broker_version: String,
    /// Its protocol version.
    pub protocol: u32,
    /// Seconds since start.
    pub uptime_s: u64,
    /// The policy.
    pub policy: PolicyStatus,
    /// The network.
    pub network: NetworkView,
    /// Loaded MODs.
    pub modes: Vec<ModeStatus>,
    /// The caller's leases (root: all).
    pub leases: Vec<Lease>,
    /// Components the broker refused to load, with why (unsigned, revoked,
    /// asking for more than the policy grants, ...).
    #[serde(default)]
    pub refused: Vec<RefusedMod>,
}

/// A component the broker did not load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedMod {
    /// Its file name.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// `probe` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSummary {
    /// Every MOD's probe.
    pub probes: Vec<ProbeView>,
    /// The MOD a `map` would try first.
    pub chosen: Option<String>,
    /// Why.
    pub why: String,
    /// Default gateways.
    pub gateways: Vec<IpAddr>,
    /// The external address, if any probe learned one.
    pub external_address: Option<IpAddr>,
    /// An external address is not global, or a gateway's external address
    /// differs from what the STUN server sees: double NAT or CGNAT.
    pub double_nat: bool,
    /// Why `double_nat`, when the gateways and the STUN server disagree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub double_nat_why: Option<String>,
    /// The NAT's behaviour (RFC 5780), from a MOD that discovers it (the
    /// `stun` MOD), when the policy loads one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatView>,
}

/// How the NAT in front of the host behaves (RFC 4787's terms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatView {
    /// The MOD that found it.
    pub mode: String,
    /// Whether it succeeded; when not, `detail` says why and the rest is
    /// empty.
    pub ok: bool,
    /// The STUN server that answered.
    pub server: Option<SocketAddr>,
    /// The host's endpoint as the server saw it.
    pub reflexive: Option<SocketAddr>,
    /// Whether there is a NAT at all.
    pub nat: Option<bool>,
    /// `endpoint-independent`, `address-dependent` or
    /// `address-and-port-dependent`; none when undetermined.
    pub mapping: Option<String>,
    /// Same terms.
    pub filtering: Option<String>,
    /// Whether hairpinning works; none when untested.
    pub hairpinning: Option<bool>,
    /// What it means for an application: `direct` (no NAT),
    /// `hole-punching` (endpoint-independent mapping), `relay` (the mapping
    /// depends on the peer: only a relay gets through) or `unknown`.
    pub traversal: String,
    /// One line for humans.
    pub detail: String,
    /// Seconds since the discovery.
    pub age_s: u64,
}

/// `list` result: `{"leases":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseList {
    /// The caller's leases (root: all).
    pub leases: Vec<Lease>,
}

/// `reach` result: `{"lease":{...}}` when a MOD made the port reachable,
/// `{"punch":{...}}` when none did and the NAT lets the application punch
/// its own hole (no relay spent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reached {
    /// The lease, as `map` answers it.
    Lease(Lease),
    /// No lease: hole-punch instead.
    Punch(Punch),
}

/// Why the application should hole-punch, and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Punch {
    /// The NAT's external address as the STUN server saw it (the
    /// application learns its own port by STUN from its own socket).
    pub external_address: Option<IpAddr>,
    /// The discovery behind the verdict, as `probe` shows it: its
    /// `traversal` is `hole-punching` (endpoint-independent mapping) or
    /// `direct` (no NAT: only a stateful firewall, which outbound packets
    /// open as well).
    pub nat: NatView,
    /// Why each gateway MOD tried did not map.
    pub reasons: Vec<super::ModeReason>,
}
