use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::daemon::fleet::Source;
use crate::files::tests::mkfifo;
use crate::trust::keys;

struct Setup {
    _dir: tempfile::TempDir,
    state: PathBuf,
    fleet: Fleet,
    key_hex: String,
}

fn root_text(version: u64, key_hex: &str) -> String {
    format!(
        "version = {version}\nexpires = \"2099-01-01T00:00:00Z\"\nthreshold = 1\n[keys]\nfleet = \"{key_hex}\"\n"
    )
}

fn policy_text(serial: u64) -> String {
    format!(
        "version = 1\nserial = {serial}\nissued_at = \"2026-11-25T00:00:00Z\"\n\
         expires = \"2099-01-01T00:00:00Z\"\n[modes.direct]\ngrants = []\n"
    )
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (pk, _, _) = keys::generate(&dir.path().join("fleet")).unwrap();
    let key_hex = pk.hex();
    let root = dir.path().join("root.toml");
    std::fs::write(&root, root_text(1, &key_hex)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    Setup {
        fleet: Fleet {
            source: Source::Dir(dir.path().join("site")),
            root,
            interval: Duration::from_secs(1),
        },
        state,
        key_hex,
        _dir: dir,
    }
}

fn seen(serial: u64, policy: &str) -> Seen {
    Seen {
        root_version: 1,
        policy_serial: serial,
        policy_sha256: hex::encode(crate::sandbox::sha256(policy.as_bytes())),
    }
}

/// A state folder as a run that applied `serial` leaves it.
fn applied(s: &Setup, serial: u64) -> String {
    let p = policy_text(serial);
    std::fs::write(s.state.join(POLICY_FILE), &p).unwrap();
    write_seen(&s.state, &seen(serial, &p)).unwrap();
    p
}

fn refusal(s: &Setup) -> String {
    let e = load_state(&s.fleet, &s.state).unwrap_err().to_string();
    // Every refusal names what the operator may do.
    assert!(e.contains("restore the state folder"), "{e}");
    e
}

fn in_state(s: &Setup, name: &str) -> String {
    s.state.join(name).display().to_string()
}

#[test]
fn a_first_start_writes_the_record_before_anything_else() {
    let s = setup();
    let l = load_state(&s.fleet, &s.state).unwrap();
    assert_eq!(l.state.seen.policy_serial, 0);
    assert_eq!(l.state.seen.root_version, 1);
    assert!(l.policy.is_none());
    assert!(s.state.join(SEEN_FILE).is_file(), "record written");
    // So a later start finds it, and a policy applied later is guarded.
    let p = applied(&s, 3);
    let l = load_state(&s.fleet, &s.state).unwrap();
    assert_eq!(l.policy, Some((p, 3)));
    assert_eq!(l.state.seen.policy_serial, 3);
}

#[test]
fn a_corrupt_record_stops_the_start() {
    let s = setup();
    applied(&s, 3);
    for junk in [
        &b"{\"root_version\": 1, \"policy_ser"[..],
        b"",
        b"\xff\xfe",
        b"[]",
    ] {
        std::fs::write(s.state.join(SEEN_FILE), junk).unwrap();
        let e = refusal(&s);
        assert!(
            e.contains(&format!("{} is corrupt", in_state(&s, SEEN_FILE))),
            "{e}"
        );
    }
    // A digest that is not one.
    std::fs::write(
        s.state.join(SEEN_FILE),
        br#"{"root_version":1,"policy_serial":3,"policy_sha256":"zz"}"#,
    )
    .unwrap();
    assert!(refusal(&s).contains("is not a sha256"));
}

#[test]
fn a_missing_record_stops_the_start_unless_nothing_was_persisted() {
    let s = setup();
    applied(&s, 3);
    std::fs::remove_file(s.state.join(SEEN_FILE)).unwrap();
    let e = refusal(&s);
    assert!(
        e.contains(&format!("{} is missing", in_state(&s, SEEN_FILE))),
        "{e}"
    );
    assert!(e.contains("persisted policy.toml"), "{e}");
    // A persisted rotated root alone is as telling.
    std::fs::remove_file(s.state.join(POLICY_FILE)).unwrap();
    std::fs::write(s.state.join(ROOT_FILE), root_text(2, &s.key_hex)).unwrap();
    assert!(refusal(&s).contains("persisted root.toml"));
}

#[test]
fn an_unparsable_persisted_root_stops_the_start() {
    let s = setup();
    applied(&s, 3);
    std::fs::write(s.state.join(ROOT_FILE), "version = \"two\"\n").unwrap();
    let e = refusal(&s);
    assert!(
        e.contains(&format!(
            "the persisted root of trust {} is unreadable",
            in_state(&s, ROOT_FILE)
        )),
        "{e}"
    );
}

#[test]
fn a_rotated_root_wins_and_its_loss_is_noticed() {
    let s = setup();
    applied(&s, 3);
    std::fs::write(s.state.join(ROOT_FILE), root_text(2, &s.key_hex)).unwrap();
    let l = load_state(&s.fleet, &s.state).unwrap();
    assert_eq!(l.state.root.version, 2);
    // The record follows the rotation; then the rotated root is lost.
    write_seen(
        &s.state,
        &Seen {
            root_version: 2,
            ..l.state.seen
        },
    )
    .unwrap();
    std::fs::remove_file(s.state.join(ROOT_FILE)).unwrap();
    let e = refusal(&s);
    assert!(e.contains("says root version 2 was accepted"), "{e}");
}

#[test]
fn the_recorded_policy_must_be_there_and_match() {
    let s = setup();
    applied(&s, 3);
    std::fs::remove_file(s.state.join(POLICY_FILE)).unwrap();
    let e = refusal(&s);
    assert!(
        e.contains("records signed policy serial 3 as applied"),
        "{e}"
    );
    // An older policy than recorded: a rollback of the state folder.
    std::fs::write(s.state.join(POLICY_FILE), policy_text(2)).unwrap();
    let e = refusal(&s);
    assert!(e.contains("(serial 2) is not the one"), "{e}");
    // Garbage.
    std::fs::write(s.state.join(POLICY_FILE), "serial = [").unwrap();
    assert!(refusal(&s).contains("is unreadable"));
}

#[test]
fn an_update_interrupted_between_policy_and_record_is_completed() {
    let s = setup();
    applied(&s, 3);
    let newer = policy_text(4);
    std::fs::write(s.state.join(POLICY_FILE), &newer).unwrap();
    let l = load_state(&s.fleet, &s.state).unwrap();
    assert_eq!(l.policy, Some((newer.clone(), 4)));
    assert_eq!(l.state.seen, seen(4, &newer));
    let on_disk: Seen =
        serde_json::from_slice(&std::fs::read(s.state.join(SEEN_FILE)).unwrap()).unwrap();
    assert_eq!(on_disk, seen(4, &newer), "the record is brought up to date");
}

#[test]
fn state_files_that_are_not_regular_files_are_refused_not_waited_on() {
    let s = setup();
    mkfifo(&s.state.join(SEEN_FILE));
    let e = refusal(&s);
    assert!(e.contains("is a FIFO, not a regular file"), "{e}");
    std::fs::remove_file(s.state.join(SEEN_FILE)).unwrap();
    applied(&s, 3);
    let elsewhere = s.state.join("elsewhere.toml");
    std::fs::rename(s.state.join(POLICY_FILE), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, s.state.join(POLICY_FILE)).unwrap();
    assert!(refusal(&s).contains("is a symbolic link"));
}

#[test]
fn the_operators_root_file_is_capped_and_may_be_a_link() {
    let s = setup();
    let link = s.state.parent().unwrap().join("root-link.toml");
    std::os::unix::fs::symlink(&s.fleet.root, &link).unwrap();
    let fleet = Fleet {
        root: link,
        ..s.fleet.clone()
    };
    assert_eq!(load_state(&fleet, &s.state).unwrap().state.root.version, 1);
    let fleet = Fleet {
        root: PathBuf::from("/dev/zero"),
        ..s.fleet.clone()
    };
    let e = load_state(&fleet, &s.state).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
}
