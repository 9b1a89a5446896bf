//! The protocol against golden lines written by hand from the spec
//! (docs/client-api.md), round trips of every message type, and every
//! refusal of `parse_request`. Shared fixtures here; the tests by side.

mod docs;
mod request;
mod response;

use super::*;

fn lease() -> Lease {
    Lease {
        id: 4,
        transport: Transport::Tcp,
        internal: "10.0.0.2:6881".parse().unwrap(),
        external: "198.51.100.2:6881".parse().unwrap(),
        mode: "pcp".into(),
        state: LeaseState::Active,
        gateway_lifetime: 3600,
        renew_at: Some(1795600123),
        expires_at: None,
        owner_uid: 1000,
        lan_client: None,
        persist: false,
        created_at: 1795598323,
        relay: None,
    }
}

const LEASE_JSON: &str = r#"{"id":4,"transport":"tcp","internal":"10.0.0.2:6881","external":"198.51.100.2:6881","mode":"pcp","state":"active","gateway_lifetime":3600,"renew_at":1795600123,"expires_at":null,"owner_uid":1000,"persist":false,"created_at":1795598323}"#;

fn probe_view() -> ProbeView {
    ProbeView {
        mode: "upnp-igd".into(),
        ok: false,
        kind: Some("unavailable".into()),
        detail: "no IGD answered SSDP".into(),
        gateway: Some("10.0.0.1".parse().unwrap()),
        external_address: None,
        external_class: Some("shared".into()),
        elapsed_ms: 1500,
        age_s: 12,
    }
}

fn status() -> Status {
    Status {
        broker_version: "0.1.0".into(),
        protocol: 1,
        uptime_s: 60,
        policy: PolicyStatus {
            source: "built-in".into(),
            version: Some(3),
            error: Some("signature below threshold".into()),
            expires_at: Some(1_795_600_000),
            expired: true,
            warnings: vec!["the policy in force expired".into()],
        },
        network: NetworkView {
            gateways: vec!["10.0.0.1".parse().unwrap(), "fe80::1".parse().unwrap()],
            addresses: vec!["10.0.0.2/24 (eth0)".into()],
        },
        modes: vec![ModeStatus {
            name: "upnp-igd".into(),
            sha256: "ab".repeat(32),
            version: "0.1.0".into(),
            probe: Some(probe_view()),
        }],
        leases: vec![lease()],
        refused: vec![RefusedMod {
            file: "x.wasm".into(),
            reason: "unsigned".into(),
        }],
    }
}

fn probe_summary() -> ProbeSummary {
    ProbeSummary {
        probes: vec![probe_view()],
        chosen: Some("pcp".into()),
        why: "first in policy order that probed ok".into(),
        gateways: vec!["10.0.0.1".parse().unwrap()],
        external_address: Some("100.64.0.5".parse().unwrap()),
        double_nat: true,
        double_nat_why: Some("pcp sees 100.64.0.5, STUN sees 198.51.100.7".into()),
        nat: Some(NatView {
            mode: "stun".into(),
            ok: true,
            server: Some("198.51.100.1:3478".parse().unwrap()),
            reflexive: Some("198.51.100.7:40000".parse().unwrap()),
            nat: Some(true),
            mapping: Some("endpoint-independent".into()),
            filtering: Some("address-and-port-dependent".into()),
            hairpinning: None,
            traversal: "hole-punching".into(),
            detail: "STUN 198.51.100.1:3478: …".into(),
            age_s: 3,
        }),
    }
}

fn no_mode() -> ApiError {
    ApiError {
        code: ErrorCode::NoMode,
        message: "no MOD could map".into(),
        reasons: vec![ModeReason {
            mode: "upnp-igd".into(),
            kind: "unavailable".into(),
            reason: "no IGD".into(),
        }],
    }
}

fn map_request() -> Request {
    Request {
        v: 1,
        id: 7,
        op: Op::Map(MapParams {
            transport: Transport::Tcp,
            port: 6881,
            external_port: Some(6881),
            lifetime: Some(3600),
            mode: Some("pcp".into()),
            persist: true,
            address: Some("10.0.0.2".parse().unwrap()),
            socket: false,
            until_closed: false,
        }),
    }
}
