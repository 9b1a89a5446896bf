//! The lease journal's replay. On any bytes: no panic; every live lease
//! sits under its own id and that id is at most `max_id`; compacting the
//! live set and replaying that gives the same live set, with no warning.
//! On a well-formed journal built from the input (puts and dels of
//! records with every field drawn from it, torn lines mid-file and at the
//! end): the live set is what applying the readable lines in order gives,
//! each torn line is one warning, and `max_id` is the highest id applied.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use p2pbroker::daemon::journal::{LeaseRecord, Replay, compacted, replay};
use p2pbroker::gate::Transport;
use p2pbroker::json::MappingJson;
use serde_json::json;

/// One input.
pub fn run(data: &[u8]) {
    check(&replay(data));
    let built = Built::from(data);
    let r = replay(&built.text);
    assert_eq!(r.leases, built.live);
    assert_eq!(r.warnings.len(), built.torn, "{:?}", r.warnings);
    assert_eq!(r.max_id, built.max_id);
    check(&r);
}

/// What holds for the replay of any bytes.
fn check(r: &Replay) {
    for (id, lease) in &r.leases {
        assert_eq!(*id, lease.id);
        assert!(*id <= r.max_id, "lease {id} above max_id {}", r.max_id);
    }
    assert!(r.leases.len() + r.warnings.len() <= r.lines);
    let again = replay(compacted(&r.leases, &r.intents, r.max_id).as_bytes());
    assert_eq!(again.leases, r.leases, "compaction changed the live set");
    assert_eq!(
        again.intents, r.intents,
        "compaction changed the open intents"
    );
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    assert_eq!(again.lines, 1 + r.leases.len() + r.intents.len());
    // Ids are never reused: compaction keeps the highest one used.
    assert_eq!(again.max_id, r.max_id);
}

fn put(lease: &LeaseRecord) -> String {
    json!({ "op": "put", "lease": lease }).to_string()
}

fn del(id: u64) -> String {
    json!({ "op": "del", "id": id }).to_string()
}

/// A journal built from the input, and what its replay must give.
struct Built {
    text: Vec<u8>,
    live: BTreeMap<u64, LeaseRecord>,
    torn: usize,
    max_id: u64,
}

impl Built {
    /// The input is a list of ops `[kind, id, n, n bytes]`. `kind` bit 0:
    /// put or del; bit 6: torn (a proper prefix of the line, ended by a
    /// newline unless last: never applied); bit 7: ids from the top of
    /// the range. The other bits and the n bytes shape the record.
    fn from(data: &[u8]) -> Built {
        let mut b = Built {
            text: Vec::new(),
            live: BTreeMap::new(),
            torn: 0,
            max_id: 0,
        };
        let mut rest = data;
        while let [kind, id, n, tail @ ..] = rest {
            let (bytes, tail) = tail.split_at(usize::from(*n).min(tail.len()));
            rest = tail;
            let id = match kind & 0x80 {
                0 => u64::from(*id),
                _ => u64::MAX - u64::from(*id),
            };
            let lease = (kind & 1 == 0).then(|| record(id, *kind, bytes));
            let line = lease.as_ref().map_or_else(|| del(id), put);
            if kind & 0x40 != 0 {
                let cut = bytes.len() % line.len();
                if cut > 0 {
                    b.text.extend_from_slice(&line.as_bytes()[..cut]);
                    b.torn += 1;
                    if !rest.is_empty() {
                        b.text.push(b'\n');
                    }
                }
                continue;
            }
            b.text.extend_from_slice(line.as_bytes());
            b.text.push(b'\n');
            b.max_id = b.max_id.max(id);
            match lease {
                Some(l) => b.live.insert(id, l),
                None => b.live.remove(&id),
            };
        }
        b
    }
}

/// A lease record whose fields all come from `kind` and `bytes`.
fn record(id: u64, kind: u8, bytes: &[u8]) -> LeaseRecord {
    let v = bytes
        .iter()
        .fold(u64::from(kind), |a, b| a.rotate_left(8) ^ u64::from(*b));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    LeaseRecord {
        id,
        mode: String::from_utf8_lossy(bytes).into_owned(),
        mode_sha256: hex.clone(),
        mapping: MappingJson {
            transport: if kind & 2 == 0 {
                Transport::Tcp
            } else {
                Transport::Udp
            },
            internal: addr(kind & 4 != 0, v),
            external: addr(kind & 8 != 0, v.rotate_left(29)),
            lifetime: v as u32,
            state: hex,
        },
        granted_at: v,
        owner_uid: (v >> 32) as u32,
        owner_lan: (kind & 0x04 != 0).then(|| hex_prefix(bytes)),
        persist: kind & 0x10 != 0,
        expires_at: (kind & 0x20 != 0).then(|| v.rotate_left(7)),
        created_at: v.rotate_left(13),
        follows: bytes
            .iter()
            .take(3)
            .map(|b| u64::from(*b).wrapping_mul(v))
            .collect(),
        owner_pid: (kind & 0x40 != 0).then_some(v as u32),
        owner_process: (kind & 0x80 != 0).then(|| hex_prefix(bytes)),
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// An address from `v`; IPv6 with a scope id, as link-local ones carry.
fn addr(v6: bool, v: u64) -> SocketAddr {
    let port = v as u16;
    if v6 {
        let ip = Ipv6Addr::from(u128::from(v) << 64 | u128::from(v.rotate_left(32)));
        SocketAddr::V6(SocketAddrV6::new(ip, port, 0, (v >> 40) as u32))
    } else {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from((v >> 16) as u32), port))
    }
}
