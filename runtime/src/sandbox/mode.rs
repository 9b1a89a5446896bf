//! A loaded MOD and the fresh store each of its calls runs in.
//!
//! Each call gets its own WASI context whose `socket_addr_check` is the
//! MOD's compiled [`Gate`], a [`Limiter`], and an epoch deadline; a trapped
//! store is dropped, never reused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use super::call::{CallReport, Op};
use super::engine::ModeHost;
use super::error::LoadError;
use super::limits::{Limiter, Limits};
use super::wit::relay::{LeaseRelay, RelayCtx};
use super::wit::sockets::{Budget, HostSockets};
use super::wit::tls::TlsCtx;
use super::wit::{BrokerCtx, CallState, ModeInfo, ModePre};
use crate::audit::{AuditSink, CallAudit, Decision, MemorySink, Tee, now_rfc3339};
use crate::gate::{Gate, Grant, Transport, Use, Verdict};
use crate::netinfo::NetInfo;

/// What a MOD is allowed and given: grants, config values, limits.
#[derive(Debug, Clone, Default)]
pub struct ModeSpec {
    /// Socket grants.
    pub grants: Vec<Grant>,
    /// Config values the MOD reads through `broker.config`.
    pub config: BTreeMap<String, String>,
    /// Per-call limits.
    pub limits: Limits,
}

/// A loaded MOD: verified, compiled, linked, ready to call. Cheap to
/// clone (every field is shared), as each call does to move to the guest
/// runtime.
#[derive(Clone)]
pub struct Mode {
    pub(crate) pre: ModePre<CallState>,
    /// The optional exports' indices (discovery 0.1.1, connector 0.1.2).
    pub(crate) exports: Arc<super::call::Exports>,
    pub(crate) name: Arc<str>,
    pub(crate) info: Option<Arc<ModeInfo>>,
    pub(crate) sha256: Arc<str>,
    pub(crate) signers: Arc<[String]>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) net: Arc<NetInfo>,
    pub(crate) spec: Arc<ModeSpec>,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) engine: Engine,
    pub(crate) fuel: bool,
    pub(crate) host_sockets: Arc<HostSockets>,
    pub(crate) relay: Option<Arc<crate::relay::RelayHub>>,
}

impl Mode {
    /// The MOD's name, from its `info`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Name, version and summary, as the MOD's `info` reported at load.
    pub fn info(&self) -> &ModeInfo {
        self.info.as_ref().expect("set when loaded")
    }

    /// Hex sha256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The trusted keys that signed it (set by the daemon's admission).
    pub fn signers(&self) -> &[String] {
        &self.signers
    }

    /// This MOD with its admitted signers recorded.
    pub fn with_signers(mut self, signers: Vec<String>) -> Mode {
        self.signers = signers.into();
        self
    }

    /// Whether the MOD exports `discovery` (NAT behaviour, contract 0.1.1).
    pub fn discovers(&self) -> bool {
        self.exports.discovery.is_some()
    }

    /// Whether the MOD exports `relay-control` (relayed leases' peers,
    /// contract 0.1.4).
    pub fn relays(&self) -> bool {
        self.exports.relay_control.is_some()
    }

    /// Whether the MOD exports `connector` (proxy handshakes, contract
    /// 0.1.2).
    pub fn connects(&self) -> bool {
        self.exports.connector.is_some()
    }

    /// The compiled gate in force.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Spec it was loaded with.
    pub fn spec(&self) -> &ModeSpec {
        &self.spec
    }

    /// A fresh store for one call, recording decisions into `collector`.
    pub(crate) fn new_store(
        &self,
        collector: Arc<MemorySink>,
        lease: LeaseRelay,
    ) -> Store<CallState> {
        let limits = self.spec.limits;
        let budget = Budget::new(&limits, self.host_sockets.clone());
        let audit = Arc::new(CallAudit::new(limits.audit_lines));
        let check: Arc<dyn Fn(SocketAddr, Transport, Use) -> bool + Send + Sync> =
            Arc::new(self.socket_check(collector, budget.clone(), audit.clone()));
        let stdio: [super::wit::stdio::StdioLog; 2] = Default::default();
        let wasi = self.wasi_ctx(check.clone(), &stdio);
        let udp_check = check.clone();
        let relay_check = move |addr| {
            udp_check(addr, Transport::Udp, Use::Send)
                && udp_check(addr, Transport::Udp, Use::Receive)
        };
        let tcp = check.clone();
        let relay_tcp_check = move |addr| tcp(addr, Transport::Tcp, Use::Connect);
        let tls_check = move |addr| check(addr, Transport::Tcp, Use::Connect);
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.table_entries as usize);
        let state = CallState {
            spin: super::priority::SpinWatch::start(),
            wasi,
            table,
            limiter: Limiter::new(limits),
            budget,
            audit,
            broker: BrokerCtx {
                net: self.net.clone(),
                config: self.config.clone(),
                mode: self.name.clone(),
                logs: Vec::new(),
                logs_dropped: 0,
                stdio,
            },
            tls: TlsCtx::new(
                self.config.get("tls_pin").map(String::as_str),
                Arc::new(tls_check),
            ),
            relay: RelayCtx::new(
                self.relay.clone(),
                (Arc::new(relay_check), Arc::new(relay_tcp_check)),
                lease,
            ),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every epoch tick a guest running wasm yields to the executor, so a
        // spinning MOD holds a tokio worker for one tick at a time, never
        // for its whole budget; past the deadline it traps.
        let deadline = Instant::now() + limits.timeout();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            // A guest still running wasm at a tick may be spinning.
            ctx.data_mut().spin.tick();
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        if self.fuel {
            store
                .set_fuel(limits.fuel.unwrap_or(u64::MAX))
                .expect("fuel is enabled on this engine");
        }
        store
    }

    /// The call's socket check: the gate's verdict on each address the
    /// MOD uses (an accepted connection counts against the budget),
    /// audit-logged once per distinct decision. Shared by the WASI sockets
    /// and the `tls` import.
    fn socket_check(
        &self,
        collector: Arc<MemorySink>,
        budget: Arc<Budget>,
        audit: Arc<CallAudit>,
    ) -> impl Fn(SocketAddr, Transport, Use) -> bool + Send + Sync + 'static {
        let gate = self.gate.clone();
        let sink: Arc<dyn AuditSink> = Arc::new(Tee(vec![self.audit.clone(), collector]));
        let (mode, sha) = (self.name.clone(), self.sha256.clone());
        move |addr, transport, use_| {
            let verdict = gate.check(transport, use_, addr);
            let allowed = verdict != Verdict::Deny && (use_ != Use::Accept || budget.take_socket());
            let d = Decision {
                time: now_rfc3339(),
                mode: mode.clone(),
                sha256: sha.clone(),
                address: addr,
                transport,
                use_,
                verdict: if allowed { "allow" } else { "deny" },
                grant: match verdict {
                    Verdict::Allow(i) if allowed => gate.grants().get(i).map(|g| g.to_string()),
                    _ => None,
                },
            };
            if audit.admit(&d) {
                sink.record(&d);
            }
            allowed
        }
    }

    fn wasi_ctx(
        &self,
        check: Arc<dyn Fn(SocketAddr, Transport, Use) -> bool + Send + Sync>,
        stdio: &[super::wit::stdio::StdioLog; 2],
    ) -> WasiCtx {
        let mut b = WasiCtxBuilder::new();
        // The rest of wasi:cli and wasi:filesystem stay empty (the
        // builder's defaults): no arguments, no environment, stdin at end
        // of file, no preopened folder, so no file can be opened at all.
        b.stdout(stdio[0].clone()).stderr(stdio[1].clone());
        // Both transports are on so that every attempt reaches the gate and
        // is audit-logged; the gate denies whatever is not granted.
        b.allow_udp(true)
            .allow_tcp(true)
            .allow_ip_name_lookup(self.gate.name_lookup())
            .socket_addr_check(move |addr, u| {
                let (transport, use_) = classify_use(u);
                let allowed = check(addr, transport, use_);
                Box::pin(async move { allowed })
            });
        b.build()
    }

    /// Run one lifecycle call in a fresh instance, on the guest runtime
    /// (see [`super::guests`]).
    pub async fn call(&self, op: Op) -> CallReport {
        self.call_for(op, LeaseRelay::default()).await
    }

    /// [`Mode::call`] for a lease: `lease` carries the relay channels it
    /// kept and its application's endpoint (contract 0.1.4 `relay`).
    pub async fn call_for(&self, op: Op, lease: LeaseRelay) -> CallReport {
        let mode = self.clone();
        super::guests::run(async move { super::call::run(&mode, op, lease).await }).await
    }
}

fn classify_use(u: SocketAddrUse) -> (Transport, Use) {
    match u {
        SocketAddrUse::TcpBind => (Transport::Tcp, Use::Bind),
        SocketAddrUse::TcpListen => (Transport::Tcp, Use::Listen),
        SocketAddrUse::TcpAccept => (Transport::Tcp, Use::Accept),
        SocketAddrUse::TcpConnect => (Transport::Tcp, Use::Connect),
        SocketAddrUse::UdpBind => (Transport::Udp, Use::Bind),
        SocketAddrUse::UdpSend => (Transport::Udp, Use::Send),
        SocketAddrUse::UdpReceive => (Transport::Udp, Use::Receive),
    }
}

impl Mode {
    /// Replace grants, config and limits, e.g. once the policy entry for
    /// this MOD's name is known. The gate is recompiled.
    pub fn respec(&mut self, host: &ModeHost, spec: ModeSpec) -> Result<(), LoadError> {
        host.check_spec(&spec)?;
        self.gate = Arc::new(gate_for(&spec, &self.net));
        self.config = Arc::new(spec.config.clone());
        self.spec = Arc::new(spec);
        Ok(())
    }
}

impl Mode {
    /// The same MOD for another snapshot of the network (gateways and
    /// addresses changed): its gate is recompiled against it.
    pub fn with_net(&self, net: Arc<NetInfo>) -> Mode {
        let mut m = self.clone();
        m.gate = Arc::new(gate_for(&m.spec, &net));
        m.net = net;
        m
    }
}

/// The gate for `spec` on the network `net`.
pub(crate) fn gate_for(spec: &ModeSpec, net: &NetInfo) -> Gate {
    Gate::compile_with(&spec.grants, net, &crate::gate::Services::of(&spec.config))
}
