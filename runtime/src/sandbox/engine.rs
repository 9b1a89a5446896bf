//! The MOD host: one wasmtime engine and linker, one `InstancePre` per MOD,
//! and a fresh store per lifecycle call.
//!
//! Each call gets its own WASI context whose `socket_addr_check` is the MOD's
//! compiled [`Gate`], a [`Limiter`], an epoch deadline (for guests running
//! wasm) and an outer tokio timeout (for guests blocked in a host poll,
//! which epochs cannot interrupt). Whatever happens, the result is a typed
//! [`CallReport`]; a trapped store is dropped, never reused.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::cache::Cache;
use super::error::LoadError;
use super::wit::relay::{HasRelay, relay_view};
use super::wit::sockets::{HasCapped, HostSockets, capped};
use super::wit::tls::{HasTls, tls_view};
use super::wit::{self as bindings, BrokerCtx, CallState, ModePre};
use crate::audit::AuditSink;

/// How often the epoch ticks. Deadlines are whole ticks, so this is the
/// resolution of a wasm timeout; 10 ms costs nothing measurable.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Engine-wide settings, fixed for the broker's lifetime.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Lifecycle calls that may run at once (pool slots).
    pub concurrent_calls: u32,
    /// Largest memory any MOD may be given (pool slot size).
    pub max_memory_bytes: usize,
    /// Enable fuel metering (slower code; lets policies cap instructions).
    pub fuel: bool,
    /// Compiled-code cache folder; `None` compiles in memory every time.
    pub cache_dir: Option<PathBuf>,
    /// Sockets all MODs together may hold at once (each is a file
    /// descriptor of this process). The daemon sets it from its
    /// descriptor limit; default 4096.
    pub max_mod_sockets: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            concurrent_calls: 64,
            max_memory_bytes: 64 << 20,
            fuel: false,
            cache_dir: None,
            max_mod_sockets: 4096,
        }
    }
}

/// Increments the engine epoch until dropped.
struct EpochTicker(Arc<AtomicBool>);

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("p2pb-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch thread");
        EpochTicker(stop)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The sandbox host shared by all MODs.
pub struct ModeHost {
    pub(crate) engine: Engine,
    linker: Linker<CallState>,
    pub(crate) cache: Option<Cache>,
    pub(crate) cache_error: Option<String>,
    /// The engine's compatibility hash, computed once (cache key part).
    pub(crate) compat: [u8; 32],
    pub(crate) config: EngineConfig,
    audit: Arc<dyn AuditSink>,
    pub(crate) host_sockets: Arc<HostSockets>,
    pub(crate) relay: Option<Arc<crate::relay::RelayHub>>,
    _ticker: EpochTicker,
}

impl ModeHost {
    /// Build the engine, the linker with exactly the interfaces a MOD may
    /// import, and the cache.
    pub fn new(config: EngineConfig, audit: Arc<dyn AuditSink>) -> wasmtime::Result<ModeHost> {
        let mut c = Config::new();
        c.epoch_interruption(true);
        c.consume_fuel(config.fuel);
        let slots = config.concurrent_calls;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 4)
            .total_memories(slots * 2)
            .total_tables(slots * 4)
            .total_stacks(slots)
            .max_memory_size(config.max_memory_bytes)
            .max_core_instances_per_component(16)
            .max_memories_per_component(2)
            .max_tables_per_component(8);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&c)?;
        let linker = build_linker(&engine)?;
        let (cache, cache_error) = match &config.cache_dir {
            Some(dir) => match Cache::open(dir) {
                Ok(c) => (Some(c), None),
                Err(e) => {
                    tracing::warn!("compiled-code cache disabled: {e}");
                    (None, Some(e.to_string()))
                }
            },
            None => (None, None),
        };
        let mut hasher = super::cache::Sha256Hasher::default();
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        Ok(ModeHost {
            host_sockets: HostSockets::new(config.max_mod_sockets),
            relay: None,
            compat: hasher.digest(),
            _ticker: EpochTicker::start(engine.clone()),
            engine,
            linker,
            cache,
            cache_error,
            config,
            audit,
        })
    }

    /// Keep relay channels for MODs loaded from now on (contract 0.1.4
    /// `relay`), their data path running on `runtime`. Without it, `relay`
    /// refuses every call (a one-shot `p2pb mode run` has no lease to
    /// keep one for).
    pub fn enable_relay(&mut self, runtime: tokio::runtime::Handle) -> Arc<crate::relay::RelayHub> {
        self.relay
            .get_or_insert_with(|| crate::relay::RelayHub::new(runtime))
            .clone()
    }

    /// The relay hub, once [`ModeHost::enable_relay`] made one.
    pub fn relay_hub(&self) -> Option<&Arc<crate::relay::RelayHub>> {
        self.relay.as_ref()
    }

    /// The engine (for loaders and benchmarks).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Why the cache is off, if it was asked for and could not be used.
    pub fn cache_error(&self) -> Option<&str> {
        self.cache_error.as_deref()
    }

    /// Pre-link a compiled component into a runnable MOD.
    pub(crate) fn prepare(
        &self,
        component: &wasmtime::component::Component,
    ) -> Result<ModePre<CallState>, LoadError> {
        let provided = provided_interfaces();
        for (name, _) in component.component_type().imports(&self.engine) {
            if !provided.iter().any(|p| same_interface(p, name)) {
                return Err(LoadError::UnsupportedImport(name.to_string()));
            }
        }
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::WrongContract(format!("{e:#}")))?;
        ModePre::new(pre).map_err(|e| LoadError::WrongContract(format!("{e:#}")))
    }

    /// Where decisions and events are written.
    pub fn audit(&self) -> Arc<dyn AuditSink> {
        self.audit.clone()
    }
}

const WASI_VERSION: &str = "0.2.12";

/// Whether the import `name` is the interface `provided` names, in a
/// semver-compatible version (as the linker resolves it): WASI 0.2.x
/// imports of any patch release (componentize-py's are 0.2.9) resolve to
/// our 0.2.12. The contract versions are listed one by one.
fn same_interface(provided: &str, name: &str) -> bool {
    if provided == name {
        return true;
    }
    match (provided.split_once('@'), name.split_once('@')) {
        (Some((p, pv)), Some((n, nv))) if p == n && p.starts_with("wasi:") => {
            let minor = |v: &str| v.rsplit_once('.').map(|(mm, _)| mm.to_string());
            pv.starts_with("0.2.") && minor(pv) == minor(nv)
        }
        _ => false,
    }
}

/// Versions of the `p2pbroker:mode` contract a MOD may be built against:
/// each minor release only adds, so the linker serves them all (wasmtime
/// matches semver-compatible names for imports and exports).
pub const CONTRACT_VERSIONS: [&str; 6] = ["0.1.0", "0.1.1", "0.1.2", "0.1.3", "0.1.4", "0.1.5"];

/// The first contract version with the `tls` import.
const TLS_SINCE: &str = "0.1.3";
/// The first contract version with the `relay` import.
const RELAY_SINCE: &str = "0.1.4";

/// Every interface the linker provides: what a MOD may import.
pub fn provided_interfaces() -> Vec<String> {
    let wasi = [
        "io/error",
        "io/poll",
        "io/streams",
        "clocks/monotonic-clock",
        "clocks/wall-clock",
        "random/random",
        "random/insecure",
        "random/insecure-seed",
        "sockets/network",
        "sockets/instance-network",
        "sockets/udp",
        "sockets/udp-create-socket",
        "sockets/tcp",
        "sockets/tcp-create-socket",
        "sockets/ip-name-lookup",
        // Empty (see `link_empty_cli`).
        "cli/environment",
        "cli/exit",
        "cli/stdin",
        "cli/stdout",
        "cli/stderr",
        "cli/terminal-input",
        "cli/terminal-output",
        "cli/terminal-stdin",
        "cli/terminal-stdout",
        "cli/terminal-stderr",
        "filesystem/types",
        "filesystem/preopens",
    ];
    let mut v: Vec<String> = wasi
        .iter()
        .map(|i| format!("wasi:{i}@{WASI_VERSION}"))
        .collect();
    for version in CONTRACT_VERSIONS {
        v.push(format!("p2pbroker:mode/types@{version}"));
        v.push(format!("p2pbroker:mode/broker@{version}"));
    }
    for version in CONTRACT_VERSIONS.iter().skip_while(|v| **v != TLS_SINCE) {
        v.push(format!("p2pbroker:mode/tls@{version}"));
    }
    for version in CONTRACT_VERSIONS.iter().skip_while(|v| **v != RELAY_SINCE) {
        v.push(format!("p2pbroker:mode/relay@{version}"));
    }
    v
}

struct HasIo;
impl wasmtime::component::HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    use wasmtime_wasi::p2::bindings::{clocks, random, sockets};
    use wasmtime_wasi::{clocks::WasiClocks, random::WasiRandom, sockets::WasiSockets};
    use wasmtime_wasi_io::bindings::wasi::io;

    let mut l = Linker::<CallState>::new(engine);
    io::error::add_to_linker::<CallState, HasIo>(&mut l, |s| &mut s.table)?;
    io::poll::add_to_linker::<CallState, HasIo>(&mut l, |s| &mut s.table)?;
    io::streams::add_to_linker::<CallState, HasIo>(&mut l, |s| &mut s.table)?;
    clocks::wall_clock::add_to_linker::<CallState, WasiClocks>(&mut l, clocks_view)?;
    clocks::monotonic_clock::add_to_linker::<CallState, WasiClocks>(&mut l, clocks_view)?;
    random::random::add_to_linker::<CallState, WasiRandom>(&mut l, |s| s.wasi.random())?;
    // Randomness too (QuickJS seeds its Math.random from it): no capability.
    random::insecure::add_to_linker::<CallState, WasiRandom>(&mut l, |s| s.wasi.random())?;
    random::insecure_seed::add_to_linker::<CallState, WasiRandom>(&mut l, |s| s.wasi.random())?;
    let opts = sockets::network::LinkOptions::default();
    sockets::network::add_to_linker::<CallState, WasiSockets>(&mut l, &opts, sockets_view)?;
    sockets::instance_network::add_to_linker::<CallState, WasiSockets>(&mut l, sockets_view)?;
    sockets::udp::add_to_linker::<CallState, WasiSockets>(&mut l, sockets_view)?;
    sockets::tcp::add_to_linker::<CallState, WasiSockets>(&mut l, sockets_view)?;
    // What creates sockets or lookups goes through the per-call budget.
    sockets::udp_create_socket::add_to_linker::<CallState, HasCapped>(&mut l, capped)?;
    sockets::tcp_create_socket::add_to_linker::<CallState, HasCapped>(&mut l, capped)?;
    sockets::ip_name_lookup::add_to_linker::<CallState, HasCapped>(&mut l, capped)?;
    link_empty_cli(&mut l)?;
    bindings::p2pbroker::mode::types::add_to_linker::<CallState, HasSelf<BrokerCtx>>(
        &mut l,
        |s| &mut s.broker,
    )?;
    bindings::p2pbroker::mode::broker::add_to_linker::<CallState, HasSelf<BrokerCtx>>(
        &mut l,
        |s| &mut s.broker,
    )?;
    super::wit::tls_bindings::p2pbroker::mode::tls::add_to_linker::<CallState, HasTls>(
        &mut l, tls_view,
    )?;
    super::wit::relay_bindings::p2pbroker::mode::relay::add_to_linker::<CallState, HasRelay>(
        &mut l, relay_view,
    )?;
    Ok(l)
}

/// What other languages' toolchains import whether the MOD uses it or not
/// (componentize-py, jco): wasi:cli and wasi:filesystem, linked but empty
/// (see `Mode::wasi_ctx`): no arguments, no environment, stdin at its end,
/// stdout and stderr into the call's log, no preopened folder (so no
/// file at all), `exit` ends the call as a trap.
fn link_empty_cli(l: &mut Linker<CallState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliCtxView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemCtxView};
    use wasmtime_wasi::p2::bindings::{cli, filesystem};
    fn cli_view(s: &mut CallState) -> WasiCliCtxView<'_> {
        WasiCliCtxView {
            ctx: s.wasi.cli(),
            table: &mut s.table,
        }
    }
    fn fs_view(s: &mut CallState) -> WasiFilesystemCtxView<'_> {
        WasiFilesystemCtxView {
            ctx: s.wasi.filesystem(),
            table: &mut s.table,
        }
    }
    cli::exit::add_to_linker::<CallState, WasiCli>(l, cli_view)?;
    cli::environment::add_to_linker::<CallState, WasiCli>(l, cli_view)?;
    cli::stdin::add_to_linker::<CallState, WasiCli>(l, cli_view)?;
    cli::stdout::add_to_linker::<CallState, WasiCli>(l, cli_view)?;
    cli::stderr::add_to_linker::<CallState, WasiCli>(l, cli_view)?;
    cli::terminal_input::add_to_linker::<CallState, WasiCli>(l, cli_view)?;
    cli::terminal_output::add_to_linker::<CallState, WasiCli>(l, cli_view)?;
    cli::terminal_stdin::add_to_linker::<CallState, WasiCli>(l, cli_view)?;
    cli::terminal_stdout::add_to_linker::<CallState, WasiCli>(l, cli_view)?;
    cli::terminal_stderr::add_to_linker::<CallState, WasiCli>(l, cli_view)?;
    filesystem::types::add_to_linker::<CallState, WasiFilesystem>(l, fs_view)?;
    filesystem::preopens::add_to_linker::<CallState, WasiFilesystem>(l, fs_view)?;
    Ok(())
}

fn clocks_view(s: &mut CallState) -> wasmtime_wasi::clocks::WasiClocksCtxView<'_> {
    wasmtime_wasi::clocks::WasiClocksCtxView {
        ctx: s.wasi.clocks(),
        table: &mut s.table,
    }
}

fn sockets_view(s: &mut CallState) -> wasmtime_wasi::sockets::WasiSocketsCtxView<'_> {
    wasmtime_wasi::sockets::WasiSocketsCtxView {
        ctx: s.wasi.sockets(),
        table: &mut s.table,
    }
}
