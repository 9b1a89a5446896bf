//! Loading: allow-list, malformed and foreign inputs, and the compiled-code
//! cache's refusal to trust anything it did not write.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use p2pbroker::netinfo::NetInfo;
use p2pbroker::sandbox::error::LoadError;
use p2pbroker::sandbox::load::{AllowList, CacheStatus};
use p2pbroker::sandbox::{EngineConfig, ModeHost, ModeSpec, Op, Output};

const DIRECT: &str = "modes/direct";

async fn load(host: &ModeHost, bytes: &[u8], allow: &AllowList) -> Result<CacheStatus, LoadError> {
    let (mode, report) = host
        .load(
            bytes,
            allow,
            ModeSpec::default(),
            Arc::new(NetInfo::default()),
        )
        .await?;
    assert!(matches!(
        mode.call(Op::Info).await.result,
        Ok(Output::Info(_))
    ));
    Ok(report.cache)
}

fn cached_host(dir: &std::path::Path) -> ModeHost {
    harness::host_with(EngineConfig {
        concurrent_calls: 4,
        cache_dir: Some(dir.to_path_buf()),
        ..Default::default()
    })
    .0
}

fn cache_entry(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a cache entry")
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_miss_then_hit_then_corrupt_entry_is_discarded_and_recompiled() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let bytes = harness::component(DIRECT);
    let host = cached_host(&dir);
    assert_eq!(
        load(&host, &bytes, &AllowList::Any).await.unwrap(),
        CacheStatus::Compiled
    );
    assert_eq!(
        load(&host, &bytes, &AllowList::Any).await.unwrap(),
        CacheStatus::Hit
    );

    let entry = cache_entry(&dir);
    let mut data = std::fs::read(&entry).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&entry, &data).unwrap();
    match load(&host, &bytes, &AllowList::Any).await.unwrap() {
        CacheStatus::Recompiled(why) => assert!(why.contains("authentication"), "{why}"),
        other => panic!("corrupt entry was used: {other:?}"),
    }
    // The recompiled code was written back, authenticated again.
    assert_eq!(
        load(&host, &bytes, &AllowList::Any).await.unwrap(),
        CacheStatus::Hit
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_file_written_by_someone_else_is_never_deserialized() {
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    let bytes = harness::component(DIRECT);
    let host = cached_host(&ours);
    let other = cached_host(&theirs);
    load(&host, &bytes, &AllowList::Any).await.unwrap();
    load(&other, &bytes, &AllowList::Any).await.unwrap();
    // A well-formed entry for the same component and engine, but written
    // under another installation's key.
    std::fs::copy(cache_entry(&theirs), cache_entry(&ours)).unwrap();
    assert!(matches!(
        load(&host, &bytes, &AllowList::Any).await.unwrap(),
        CacheStatus::Recompiled(_)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_writable_cache_folder_is_not_used() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let host = cached_host(&dir);
    assert!(
        host.cache_error()
            .unwrap()
            .contains("not writable by group or others")
    );
    let bytes = harness::component(DIRECT);
    assert_eq!(
        load(&host, &bytes, &AllowList::Any).await.unwrap(),
        CacheStatus::Disabled
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_component_is_malformed() {
    let (host, _) = harness::host();
    let bytes = harness::component(DIRECT);
    let err = load(&host, &bytes[..bytes.len() / 2], &AllowList::Any)
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Malformed(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn core_module_and_garbage_are_not_components() {
    let (host, _) = harness::host();
    let core = wat::parse_str("(module)").unwrap();
    let err = load(&host, &core, &AllowList::Any).await.unwrap_err();
    assert!(err.to_string().contains("core module"), "{err}");
    let err = load(&host, b"\x7fELF not wasm", &AllowList::Any)
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::NotAComponent(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn importing_what_the_broker_does_not_provide_is_named() {
    let (host, _) = harness::host();
    for name in [
        "wasi:http/outgoing-handler@0.2.12",
        // Another minor version is another interface.
        "wasi:sockets/udp@0.3.0",
    ] {
        let c = wat::parse_str(format!(r#"(component (import "{name}" (instance)))"#)).unwrap();
        match load(&host, &c, &AllowList::Any).await.unwrap_err() {
            LoadError::UnsupportedImport(got) => assert_eq!(got, name),
            other => panic!("{other}"),
        }
    }
    // The empty wasi:cli and wasi:filesystem other toolchains import, at
    // any 0.2 patch release, pass the check (this one then lacks the
    // lifecycle).
    for name in [
        "wasi:cli/environment@0.2.9",
        "wasi:filesystem/preopens@0.2.3",
    ] {
        let c = wat::parse_str(format!(r#"(component (import "{name}" (instance)))"#)).unwrap();
        match load(&host, &c, &AllowList::Any).await.unwrap_err() {
            LoadError::WrongContract(_) => {}
            other => panic!("{name}: {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_without_the_lifecycle_is_the_wrong_contract() {
    let (host, _) = harness::host();
    let c = wat::parse_str("(component)").unwrap();
    let err = load(&host, &c, &AllowList::Any).await.unwrap_err();
    assert!(matches!(err, LoadError::WrongContract(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_list_is_checked_before_compiling() {
    let (host, _) = harness::host();
    let bytes = harness::component(DIRECT);
    let sha = hex::encode(p2pbroker::sha256(&bytes));
    let other = AllowList::Sha256(HashSet::from(["00".repeat(32)]));
    match load(&host, &bytes, &other).await.unwrap_err() {
        LoadError::NotAllowed { sha256 } => assert_eq!(sha256, sha),
        e => panic!("{e}"),
    }
    // Garbage with a wrong hash is refused before anyone parses it.
    assert!(matches!(
        load(&host, b"garbage", &other).await.unwrap_err(),
        LoadError::NotAllowed { .. }
    ));
    let ok = AllowList::Sha256(HashSet::from([sha]));
    load(&host, &bytes, &ok).await.unwrap();
}

/// A MOD built against contract 0.1.0, before `discovery` was added (the
/// `direct` MOD as built then; the file is kept, not rebuilt).
const DIRECT_0_1_0: &str = "tests/fixtures/direct-contract-0.1.0.wasm";

#[tokio::test(flavor = "multi_thread")]
async fn a_mod_built_against_contract_0_1_0_still_loads_and_runs() {
    let bytes = std::fs::read(harness::root().join(DIRECT_0_1_0)).unwrap();
    let (host, _) = harness::host();
    let (mode, _) = host
        .load(
            &bytes,
            &AllowList::Any,
            ModeSpec::default(),
            Arc::new(NetInfo::default()),
        )
        .await
        .expect("a 0.1.0 MOD loads under the 0.1.2 broker");
    assert_eq!(mode.name(), "direct");
    assert!(!mode.discovers(), "0.1.0 has no discovery export");
    // Its lifecycle runs: with no global address, direct says so.
    let probe = mode.call(Op::Probe).await.result;
    assert!(
        matches!(&probe, Err(p2pbroker::sandbox::error::CallError::Mode(_))),
        "{probe:?}"
    );
    // Asking it to discover is a typed refusal, not a trap.
    let r = mode.call(Op::Discover).await.result;
    assert!(
        format!("{r:?}").contains("does not export discovery"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stun_mod_exports_discovery_and_plain_mods_do_not() {
    let (host, _) = harness::host();
    for (rel, discovers) in [("modes/stun", true), (DIRECT, false)] {
        let (mode, _) = host
            .load(
                &harness::component(rel),
                &AllowList::Any,
                ModeSpec::default(),
                Arc::new(NetInfo::default()),
            )
            .await
            .unwrap();
        assert_eq!(mode.discovers(), discovers, "{rel}");
    }
}
