//! `wasi:sockets` socket creation and name lookup, with caps.
//!
//! wasmtime-wasi's own implementations do the work; this view only counts.
//! Each socket is a file descriptor of the broker, so a MOD may create at
//! most `limits.sockets` per call, and all MODs together at most what the
//! host budget ([`HostSockets`]) allows: a MOD cannot exhaust the
//! descriptors the daemon needs to accept clients and write its journal.
//! Each name lookup may occupy a thread of the blocking pool, so lookups
//! are capped per call too. A refusal is the WASI error the guest expects
//! (`new-socket-limit`), and the call's report names the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use wasmtime::component::Resource;
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{self, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpAddress, IpAddressFamily, Network,
};
use wasmtime_wasi::p2::bindings::sockets::{tcp_create_socket, udp_create_socket};
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi_io::poll::DynPollable;

use super::CallState;
use crate::sandbox::limits::Limits;

/// Sockets MODs hold across all calls at once, and the cap on them.
#[derive(Debug)]
pub struct HostSockets {
    live: AtomicUsize,
    max: usize,
}

impl HostSockets {
    /// A budget of `max` sockets for all MODs together.
    pub fn new(max: usize) -> Arc<HostSockets> {
        Arc::new(HostSockets {
            live: AtomicUsize::new(0),
            max,
        })
    }

    /// Sockets MODs hold now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    fn take(&self) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }
}

/// Which per-call cap a call ran into, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// `limits.sockets`, or the host-wide socket budget.
    Sockets,
    /// `limits.name_lookups`.
    NameLookups,
}

/// One call's socket and lookup budget. Shared with the capability gate's
/// closure, which counts accepted connections.
#[derive(Debug)]
pub struct Budget {
    sockets_left: AtomicU32,
    lookups_left: AtomicU32,
    held: AtomicUsize,
    host: Arc<HostSockets>,
    socket_hit: AtomicBool,
    lookup_hit: AtomicBool,
}

impl Budget {
    /// A fresh budget for one call under `limits`.
    pub fn new(limits: &Limits, host: Arc<HostSockets>) -> Arc<Budget> {
        Arc::new(Budget {
            sockets_left: AtomicU32::new(limits.sockets),
            lookups_left: AtomicU32::new(limits.name_lookups),
            held: AtomicUsize::new(0),
            host,
            socket_hit: AtomicBool::new(false),
            lookup_hit: AtomicBool::new(false),
        })
    }

    fn decrement(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Take one socket; false (and noted) if the call or the host is out.
    pub fn take_socket(&self) -> bool {
        if !Self::decrement(&self.sockets_left) {
            self.socket_hit.store(true, Ordering::Relaxed);
            return false;
        }
        if !self.host.take() {
            // The call's own allowance is not spent on a refusal.
            self.sockets_left.fetch_add(1, Ordering::AcqRel);
            self.socket_hit.store(true, Ordering::Relaxed);
            return false;
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn take_lookup(&self) -> bool {
        let ok = Self::decrement(&self.lookups_left);
        if !ok {
            self.lookup_hit.store(true, Ordering::Relaxed);
        }
        ok
    }

    /// The cap this call ran into, if any.
    pub fn exhausted(&self) -> Option<Exhausted> {
        if self.socket_hit.load(Ordering::Relaxed) {
            Some(Exhausted::Sockets)
        } else if self.lookup_hit.load(Ordering::Relaxed) {
            Some(Exhausted::NameLookups)
        } else {
            None
        }
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        // The store, and every socket in it, is gone with the last holder.
        self.host
            .live
            .fetch_sub(*self.held.get_mut(), Ordering::AcqRel);
    }
}

/// The sockets view with the call's budget: what the linker hands the
/// socket-creating and name-lookup functions.
pub struct Capped<'a> {
    view: WasiSocketsCtxView<'a>,
    budget: &'a Budget,
}

/// Marker for the linker: the data of [`Capped`].
pub struct HasCapped;

impl wasmtime::component::HasData for HasCapped {
    type Data<'a> = Capped<'a>;
}

/// The capped view of a call's store.
pub fn capped(s: &mut CallState) -> Capped<'_> {
    Capped {
        view: WasiSocketsCtxView {
            ctx: s.wasi.sockets(),
            table: &mut s.table,
        },
        budget: &s.budget,
    }
}

// The error conversions the socket interfaces need, delegated as they are.
impl network::Host for Capped<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.view, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime_wasi_io::bindings::wasi::io::error::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.view, err)
    }
}

impl network::HostNetwork for Capped<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.view, this)
    }
}

impl udp_create_socket::Host for Capped<'_> {
    async fn create_udp_socket(
        &mut self,
        family: IpAddressFamily,
    ) -> Result<Resource<wasmtime_wasi::p2::bindings::sockets::udp::UdpSocket>, SocketError> {
        if !self.budget.take_socket() {
            return Err(ErrorCode::NewSocketLimit.into());
        }
        udp_create_socket::Host::create_udp_socket(&mut self.view, family).await
    }
}

impl tcp_create_socket::Host for Capped<'_> {
    fn create_tcp_socket(
        &mut self,
        family: IpAddressFamily,
    ) -> Result<Resource<wasmtime_wasi::p2::bindings::sockets::tcp::TcpSocket>, SocketError> {
        if !self.budget.take_socket() {
            return Err(ErrorCode::NewSocketLimit.into());
        }
        tcp_create_socket::Host::create_tcp_socket(&mut self.view, family)
    }
}

impl ip_name_lookup::Host for Capped<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        if !self.budget.take_lookup() {
            return Err(ErrorCode::PermanentResolverFailure.into());
        }
        ip_name_lookup::Host::resolve_addresses(&mut self.view, network, name)
    }
}

impl ip_name_lookup::HostResolveAddressStream for Capped<'_> {
    fn resolve_next_address(
        &mut self,
        r: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        ip_name_lookup::HostResolveAddressStream::resolve_next_address(&mut self.view, r)
    }

    fn subscribe(
        &mut self,
        r: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        ip_name_lookup::HostResolveAddressStream::subscribe(&mut self.view, r)
    }

    fn drop(&mut self, r: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        ip_name_lookup::HostResolveAddressStream::drop(&mut self.view, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_call_and_the_host_budget_both_bind_and_are_given_back() {
        let host = HostSockets::new(3);
        let limits = Limits {
            sockets: 2,
            ..Limits::default()
        };
        let a = Budget::new(&limits, host.clone());
        assert!(a.take_socket() && a.take_socket());
        assert!(!a.take_socket(), "per-call cap");
        assert_eq!(a.exhausted(), Some(Exhausted::Sockets));
        let b = Budget::new(&limits, host.clone());
        assert!(b.take_socket());
        assert!(!b.take_socket(), "host-wide cap");
        assert_eq!(host.live(), 3);
        drop(a);
        assert_eq!(host.live(), 1, "a finished call gives its sockets back");
        assert!(b.take_socket());
        assert_eq!(b.exhausted(), Some(Exhausted::Sockets));
        drop(b);
        assert_eq!(host.live(), 0);
    }

    #[test]
    fn lookups_are_capped_per_call() {
        let limits = Limits {
            name_lookups: 1,
            ..Limits::default()
        };
        let b = Budget::new(&limits, HostSockets::new(8));
        assert!(b.take_lookup());
        assert!(!b.take_lookup());
        assert_eq!(b.exhausted(), Some(Exhausted::NameLookups));
    }
}
