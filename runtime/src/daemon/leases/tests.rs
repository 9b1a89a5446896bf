//! The lease table's rules, with plain values: no socket, clock or wasm.

use super::*;
use crate::json::MappingJson;
use crate::netinfo::NetInfo;
use crate::policy::Policy;
use p2pbroker_client::MapParams;
use p2pbroker_client::Transport as Wire;

const NOW: u64 = 1_800_000_000_000;

fn policy(extra: &str) -> Policy {
    Policy::parse(&format!("version = 1\n{extra}\n[modes.pcp]\n")).unwrap()
}

fn local(uid: u32) -> Requester {
    Requester {
        uid,
        conn: u64::from(uid) + 100,
        lan: None,
        pid: None,
    }
}

fn lan(id: &str, ip: &str) -> Requester {
    Requester {
        uid: 65534,
        conn: 7,
        lan: Some(LanPeer {
            ip: ip.parse().unwrap(),
            third_party: false,
            id: id.into(),
        }),
        pid: None,
    }
}

fn ask(port: u16) -> MapParams {
    MapParams::new(Wire::Tcp, port)
}

fn record(id: u64, who: &Requester, internal: &str, external: &str) -> LeaseRecord {
    LeaseRecord {
        id,
        mode: "pcp".into(),
        mode_sha256: "ab".repeat(32),
        mapping: MappingJson {
            transport: Transport::Tcp,
            internal: internal.parse().unwrap(),
            external: external.parse().unwrap(),
            lifetime: 3600,
            state: String::new(),
        },
        granted_at: NOW / 1000,
        owner_uid: who.uid,
        owner_lan: who.lan.as_ref().map(|l| l.id.clone()),
        persist: false,
        expires_at: Some(NOW / 1000 + 86_400),
        created_at: NOW / 1000,
        follows: Vec::new(),
        owner_pid: None,
        owner_process: None,
    }
}

/// Authorise, reserve and install a lease for `who` on `port`.
fn lease_for(t: &mut LeaseTable, who: &Requester, port: u16, ext: u16) -> u64 {
    let p = policy("");
    let a = t
        .authorize(&ask(port), who, &p, &NetInfo::lab_host(), NOW)
        .unwrap();
    let id = t
        .reserve(Transport::Tcp, a.internal, Some(ext), who)
        .unwrap();
    let rec = record(
        id,
        who,
        &a.internal.to_string(),
        &format!("198.51.100.2:{ext}"),
    );
    t.install(rec, Some(who.conn), NOW, 0);
    id
}

#[test]
fn an_omitted_lifetime_takes_the_cap_that_applies() {
    let t = LeaseTable::new(0);
    let p = policy("[broker]\nmax_lifetime = 600");
    let a = t
        .authorize(&ask(6881), &local(1000), &p, &NetInfo::lab_host(), NOW)
        .unwrap();
    assert_eq!(a.expires_ms, NOW + 600_000);
    assert_eq!(a.internal, "10.0.0.2:6881".parse().unwrap());
    let mut long = ask(6881);
    long.lifetime = Some(601);
    let e = t
        .authorize(&long, &local(1000), &p, &NetInfo::lab_host(), NOW)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Limit);
}

#[test]
fn maps_in_flight_count_toward_every_cap() {
    let mut t = LeaseTable::new(0);
    let p = policy(
        "[broker]\nmax_leases = 3\n[[access]]\nuids = [1000]\nports = \"1024-65535\"\nmax_leases = 2\n[[access]]\nports = \"1024-65535\"",
    );
    let me = local(1000);
    for port in [7000, 7001] {
        let a = t
            .authorize(&ask(port), &me, &p, &NetInfo::lab_host(), NOW)
            .unwrap();
        t.reserve(Transport::Tcp, a.internal, None, &me).unwrap();
    }
    // Two maps in flight, none landed yet: the per-uid cap is reached.
    let e = t
        .authorize(&ask(7002), &me, &p, &NetInfo::lab_host(), NOW)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Limit);
    assert!(e.message.contains("uid 1000"), "{}", e.message);
    // Another user fits one more; then the broker-wide cap is reached.
    let other = local(1001);
    let a = t
        .authorize(&ask(7003), &other, &p, &NetInfo::lab_host(), NOW)
        .unwrap();
    t.reserve(Transport::Tcp, a.internal, None, &other).unwrap();
    let e = t
        .authorize(&ask(7004), &other, &p, &NetInfo::lab_host(), NOW)
        .unwrap_err();
    assert!(e.message.contains("maximum of 3"), "{}", e.message);
}

#[test]
fn the_default_access_rule_caps_each_user() {
    let rules = Policy::default_policy().access_rules();
    let everyone = rules.iter().find(|r| r.uids.is_none()).unwrap();
    assert!(everyone.max_leases.is_some_and(|m| m <= 64));
}

#[test]
fn reservations_conflict_on_endpoint_and_external_port_and_cancel_frees_them() {
    let mut t = LeaseTable::new(0);
    let me = local(1000);
    let internal: SocketAddr = "10.0.0.2:7000".parse().unwrap();
    let id = t
        .reserve(Transport::Tcp, internal, Some(9000), &me)
        .unwrap();
    let e = t.reserve(Transport::Tcp, internal, None, &me).unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    let other: SocketAddr = "10.0.0.2:7001".parse().unwrap();
    let e = t
        .reserve(Transport::Tcp, other, Some(9000), &me)
        .unwrap_err();
    assert!(e.message.contains("external port 9000"), "{}", e.message);
    // The same endpoint over UDP is another endpoint.
    t.reserve(Transport::Udp, internal, Some(9000), &me)
        .unwrap();
    t.cancel(id);
    t.reserve(Transport::Tcp, internal, Some(9000), &me)
        .unwrap();
}

#[test]
fn ids_are_never_reused() {
    let mut t = LeaseTable::new(41);
    let me = local(1000);
    let a = t
        .reserve(Transport::Tcp, "10.0.0.2:1".parse().unwrap(), None, &me)
        .unwrap();
    t.cancel(a);
    let b = t
        .reserve(Transport::Tcp, "10.0.0.2:1".parse().unwrap(), None, &me)
        .unwrap();
    assert_eq!((a, b), (42, 43));
}

#[test]
fn lan_clients_see_only_their_own_leases() {
    let mut t = LeaseTable::new(0);
    let (alice, bob) = (lan("lan-aaaa", "10.0.0.7"), lan("lan-bbbb", "10.0.0.8"));
    let id = lease_for(&mut t, &alice, 7000, 7000);
    assert_eq!(t.visible(&alice).count(), 1);
    assert_eq!(t.visible(&bob).count(), 0, "same uid, another token");
    assert_eq!(
        t.visible(&local(65534)).count(),
        0,
        "the local uid LAN clients map to"
    );
    assert_eq!(t.visible(&local(0)).count(), 1, "local root sees all");
    assert_eq!(
        t.may_unmap(id, &bob).unwrap_err().code,
        ErrorCode::NotFound,
        "another LAN client cannot even learn the id exists"
    );
    t.may_unmap(id, &alice).unwrap();
    t.may_unmap(id, &local(0)).unwrap();
    assert_eq!(
        t.may_unmap(id, &local(1000)).unwrap_err().code,
        ErrorCode::Unauthorized
    );
}

#[test]
fn a_lan_client_maps_only_its_own_address() {
    let t = LeaseTable::new(0);
    let p = policy("");
    let alice = lan("lan-aaaa", "10.0.0.7");
    let a = t
        .authorize(&ask(7000), &alice, &p, &NetInfo::lab_host(), NOW)
        .unwrap();
    assert_eq!(a.internal, "10.0.0.7:7000".parse().unwrap());
    let mut other = ask(7000);
    other.address = Some("10.0.0.8".parse().unwrap());
    let e = t
        .authorize(&other, &alice, &p, &NetInfo::lab_host(), NOW)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    // A local user may only name this host's addresses.
    let e = t
        .authorize(&other, &local(1000), &p, &NetInfo::lab_host(), NOW)
        .unwrap_err();
    assert!(e.message.contains("not an address of this host"));
}

#[test]
fn an_expired_policy_refuses_new_maps() {
    let t = LeaseTable::new(0);
    let p = policy("expires = \"2027-01-15T00:00:00Z\"");
    let before = p.expires_ms().unwrap() - 1;
    t.authorize(&ask(7000), &local(1000), &p, &NetInfo::lab_host(), before)
        .unwrap();
    let e = t
        .authorize(
            &ask(7000),
            &local(1000),
            &p,
            &NetInfo::lab_host(),
            before + 1,
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PolicyExpired);
    assert!(e.message.contains("2027-01-15T00:00:00Z"), "{}", e.message);
}

#[test]
fn after_the_policy_expires_nothing_is_renewed_and_leases_lapse_with_the_gateway() {
    let mut t = LeaseTable::new(0);
    let me = local(1000);
    let id = lease_for(&mut t, &me, 7000, 7000);
    let granted = t.get(id).unwrap().rec.gateway_expiry().unwrap() * 1000;
    let renew_at = t.get(id).unwrap().due_ms.unwrap();
    // Policy still valid: renewal at half-life.
    let (due, _) = t.take_due(renew_at, Some(renew_at + 1));
    assert_eq!(due, vec![(id, Due::Renew)]);
    t.done(id);
    // Policy expired: no renewal; the lease waits for its gateway expiry.
    let (due, next) = t.take_due(renew_at, Some(renew_at));
    assert!(due.is_empty());
    assert_eq!(next, Some(granted));
    let (due, _) = t.take_due(granted, Some(renew_at));
    assert_eq!(due, vec![(id, Due::PolicyExpired)]);
}

#[test]
fn expiry_beats_renewal_and_busy_leases_are_skipped() {
    let mut t = LeaseTable::new(0);
    let me = local(1000);
    let id = lease_for(&mut t, &me, 7000, 7000);
    let end = t.get(id).unwrap().rec.expires_at.unwrap() * 1000;
    let (due, _) = t.take_due(end, None);
    assert_eq!(due, vec![(id, Due::Expire)]);
    // Busy until the task is done.
    assert!(t.take_due(end, None).0.is_empty());
    t.done(id);
    assert_eq!(t.take_due(end, None).0, vec![(id, Due::Expire)]);
}

#[test]
fn loss_re_establishment_and_release_follow_the_lease() {
    let mut t = LeaseTable::new(0);
    let me = local(1000);
    let id = lease_for(&mut t, &me, 7000, 7000);
    assert_eq!(t.mark_lost(id).unwrap().state, LeaseState::Lost);
    assert_eq!(
        t.begin_reestablish(id).unwrap().state,
        LeaseState::ReEstablishing
    );
    t.reestablish_failed(id, NOW);
    let l = t.get(id).unwrap();
    assert_eq!((l.state, l.failures), (LeaseState::Lost, 1));
    assert_eq!(l.due_ms, Some(NOW + timing::RETRY_MIN_MS));
    let (due, _) = t.take_due(NOW + timing::RETRY_MIN_MS, None);
    assert_eq!(due, vec![(id, Due::Reestablish)]);
    let rec = t.get(id).unwrap().rec.clone();
    let l = t.settle(rec.clone(), NOW, 0).unwrap();
    assert_eq!((l.state, l.failures), (LeaseState::Active, 0));
    // Releasing hides it; a settle arriving late is ignored.
    let (_, first) = t.begin_release(id).unwrap();
    assert!(first);
    assert!(t.visible(&me).next().is_none());
    assert!(t.settle(rec, NOW, 0).is_none());
    assert!(t.is_releasing(id));
    let (_, again) = t.begin_release(id).unwrap();
    assert!(!again, "the client hears `released` once");
    t.release_failed(id, NOW);
    assert_eq!(t.take_due(NOW + 60_000, None).0, vec![(id, Due::Release)]);
    assert!(t.remove(id).is_some());
}

#[test]
fn a_map_landing_after_its_client_left_is_orphaned() {
    let mut t = LeaseTable::new(0);
    let me = local(1000);
    let internal: SocketAddr = "10.0.0.2:7000".parse().unwrap();
    let id = t.reserve(Transport::Tcp, internal, None, &me).unwrap();
    t.close_connection(me.conn);
    assert!(t.of_connection(me.conn).is_empty());
    let (_, orphaned) = t.install(
        record(id, &me, "10.0.0.2:7000", "198.51.100.2:7000"),
        Some(me.conn),
        NOW,
        0,
    );
    assert!(orphaned);
    // A persistent lease has no connection to lose.
    let id = t
        .reserve(Transport::Tcp, "10.0.0.2:7001".parse().unwrap(), None, &me)
        .unwrap();
    t.close_connection(me.conn);
    let (_, orphaned) = t.install(
        record(id, &me, "10.0.0.2:7001", "198.51.100.2:7001"),
        None,
        NOW,
        0,
    );
    assert!(!orphaned);
    // The closed-connection note does not outlive its maps.
    assert!(t.closed.is_empty());
}

#[test]
fn adoption_keeps_live_persistent_leases_and_releases_the_rest() {
    let mut t = LeaseTable::new(0);
    let me = local(1000);
    let mut keep = record(5, &me, "10.0.0.2:7000", "198.51.100.2:7000");
    keep.persist = true;
    let held = record(9, &me, "10.0.0.2:7001", "198.51.100.2:7001");
    let mut ended = record(3, &me, "10.0.0.2:7002", "198.51.100.2:7002");
    ended.persist = true;
    ended.expires_at = Some(NOW / 1000 - 1);
    t.adopt([keep, held, ended], NOW);
    assert!(!t.get(5).unwrap().releasing);
    assert!(
        t.get(9).unwrap().releasing,
        "its connection died with the old broker"
    );
    assert!(t.get(3).unwrap().releasing);
    let next = t
        .reserve(Transport::Tcp, "10.0.0.2:1".parse().unwrap(), None, &me)
        .unwrap();
    assert_eq!(next, 10);
}

#[test]
fn re_authorising_an_existing_lease_does_not_count_it_twice() {
    let mut t = LeaseTable::new(0);
    let p = policy("[[access]]\nports = \"1024-65535\"\nmax_leases = 1");
    let me = local(1000);
    let a = t
        .authorize(&ask(7000), &me, &p, &NetInfo::lab_host(), NOW)
        .unwrap();
    let id = t.reserve(Transport::Tcp, a.internal, None, &me).unwrap();
    t.install(
        record(id, &me, "10.0.0.2:7000", "198.51.100.2:7000"),
        Some(me.conn),
        NOW,
        0,
    );
    assert!(
        t.authorize(&ask(7001), &me, &p, &NetInfo::lab_host(), NOW)
            .is_err()
    );
    t.authorize_existing(id, &ask(7000), &me, &p, &NetInfo::lab_host(), NOW)
        .unwrap();
    // A policy that no longer covers the port refuses it.
    let tighter = policy("[[access]]\nports = \"8000-9000\"");
    let e = t
        .authorize_existing(id, &ask(7000), &me, &tighter, &NetInfo::lab_host(), NOW)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized);
}

/// A clean stop with `keep_leases_on_stop` keeps a persistent, finite
/// lease, but never a relayed one (its allocation dies with the process)
/// nor one whose release is waiting for a retry.
#[test]
fn a_stop_keeps_persistent_leases_but_not_relayed_or_released_ones() {
    let me = local(1000);
    let mut rec = record(1, &me, "10.0.0.2:9000", "198.51.100.2:9000");
    rec.persist = true;
    let mut t = LeaseTable::new(0);
    t.adopt([rec.clone(), LeaseRecord { id: 2, ..rec }], NOW);
    let kept =
        |t: &LeaseTable, keep, id| crate::daemon::upkeep::kept_on_stop(keep, t.get(id).unwrap());
    assert!(kept(&t, true, 2));
    t.begin_release(2).unwrap();
    t.release_failed(2, NOW);
    assert!(
        !kept(&t, true, 2),
        "an unmap waiting for a retry is released at a stop, not kept for adoption"
    );
    let kept = |t: &LeaseTable, keep| kept(t, keep, 1);
    assert!(kept(&t, true));
    assert!(!kept(&t, false));
    t.set_relay(
        1,
        Relay {
            channels: vec![7],
            carrying: None,
        },
    );
    assert!(!kept(&t, true), "a relayed lease is released at a stop");
}

/// A reload judges a lease by its owner, transport and internal port: the
/// external port the gateway chose (another one, a relay's) is not the
/// owner's request, so a rule covering the internal port keeps the lease.
#[test]
fn a_reload_judges_leases_by_their_internal_port_only() {
    let me = local(1000);
    let mut t = LeaseTable::new(0);
    let mut rec = record(1, &me, "10.0.0.2:9000", "198.51.100.2:61234");
    // Adopted as a persistent lease: not releasing.
    rec.persist = true;
    t.adopt([rec], NOW);
    let covers_internal = policy("[[access]]\nports = \"9000\"");
    assert!(refused_by_rules(&t, &covers_internal).is_empty());
    let elsewhere = policy("[[access]]\nports = \"8000\"");
    let refused = refused_by_rules(&t, &elsewhere);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].1.contains("does not allow"), "{refused:?}");
    // Not another user's rule either.
    let theirs = policy("[[access]]\nuids = [1001]\nports = \"9000\"");
    assert_eq!(refused_by_rules(&t, &theirs).len(), 1);
}
