//! The mode host: everything a MOD runs in, and nothing else.
//!
//! - [`engine`]: one wasmtime engine and linker (exactly the interfaces a
//!   MOD may import), the epoch ticker.
//! - [`load`]: bytes → compiled component (hash allow-list first, then the
//!   authenticated [`cache`]) → linked [`Mode`].
//! - [`mode`]: a loaded MOD and the fresh store each call gets (gate,
//!   limiter, deadlines).
//! - [`call`]: one lifecycle call, whatever happens, as a typed
//!   [`CallReport`].
//! - [`guests`]: the runtime guest code runs on, at lower CPU priority
//!   than the broker's own threads.
//! - [`limits`]: the per-call limits and the store's limiter.
//! - [`contract`]: checks on what goes into and comes out of a MOD.
//! - [`connect`]: outbound tunnels: the proxy connection the broker opens
//!   and lends to a connector MOD for its handshake.
//! - [`wit`]: the generated bindings and the broker interface a MOD imports.
//!
//! Whether a component may run at all, and with which grants, is decided
//! before any of this, by [`crate::trust::admission`].

pub mod cache;
pub mod call;
pub mod connect;
pub mod contract;
pub mod engine;
pub mod error;
pub mod guests;
pub mod limits;
pub mod load;
pub mod mode;
pub mod priority;
pub mod wit;

pub use cache::sha256;
pub use call::{CallReport, Op, Output};
pub use engine::{EPOCH_TICK, EngineConfig, ModeHost, provided_interfaces};
pub use error::{CallError, Limit, LimitHit, LoadError, TrapKind};
pub use limits::Limits;
pub use load::{AllowList, CacheStatus, LoadReport};
pub use mode::{Mode, ModeSpec};
pub use wit::LogLine;
