//! Per-call resource limits and the limiter that enforces them.
//!
//! Memory is not all a MOD can make the host hold: sockets (each a file
//! descriptor), resource-table entries (pollables, streams), audit lines
//! and name lookups each have a per-call cap here too, enforced by the WIT
//! glue ([`super::wit`]) and the audit budget ([`crate::audit`]).
//!
//! wasmtime's stock `StoreLimits` caps each memory separately; a component
//! can hold several, so this limiter caps their sum. A refused growth raises
//! [`LimitHit`], which the host turns into a typed `CallError::Limit`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;

use super::error::{Limit, LimitHit};

/// Limits for every lifecycle call of one MOD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Sum of all linear memories, bytes. Default 32 MiB: a protocol client
    /// needs a few hundred KiB; the rest is headroom for XML documents.
    pub memory_bytes: usize,
    /// Elements per table. Default 20,000 (Rust guests use a few hundred).
    pub table_elements: usize,
    /// Core instances per call. Default 16 (a wit-component MOD uses ~3).
    pub instances: usize,
    /// Tables per call. Default 8.
    pub tables: usize,
    /// Linear memories per call. Default 2.
    pub memories: usize,
    /// Wall-clock budget of one call, milliseconds. Default 5,000: the
    /// slowest legitimate call, a UPnP map with discovery, takes ~0.2 s in
    /// the lab; 25x headroom covers slow routers.
    pub timeout_ms: u64,
    /// Optional fuel budget per call (needs fuel enabled on the engine).
    pub fuel: Option<u64>,
    /// Sockets one call may create (or accept). Default 64: a protocol
    /// client uses one to four; each is a file descriptor of the broker.
    pub sockets: u32,
    /// Resource-table entries one call may hold at once (sockets, streams,
    /// pollables). Default 10,000: a MOD uses a few dozen.
    pub table_entries: u32,
    /// Audit lines one call may write. Repeats of a decision are counted,
    /// not written; lines past the cap are dropped and counted (one summary
    /// line says how many). Default 256.
    pub audit_lines: u32,
    /// Name lookups one call may start (only with a `name-lookup` grant).
    /// Default 16.
    pub name_lookups: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 32 << 20,
            table_elements: 20_000,
            instances: 16,
            tables: 8,
            memories: 2,
            timeout_ms: 5_000,
            fuel: None,
            sockets: 64,
            table_entries: 10_000,
            audit_lines: 256,
            name_lookups: 16,
        }
    }
}

/// Caps on the per-call host-resource limits: a policy may not lift a MOD
/// past what the broker as a whole can hold.
pub const MAX_SOCKETS: u32 = 1024;
/// See [`MAX_SOCKETS`].
pub const MAX_TABLE_ENTRIES: u32 = 100_000;
/// See [`MAX_SOCKETS`].
pub const MAX_AUDIT_LINES: u32 = 10_000;
/// See [`MAX_SOCKETS`].
pub const MAX_NAME_LOOKUPS: u32 = 256;

/// Longest call budget a policy may set. A lifecycle call that needs more
/// than ten minutes is broken, and a bound keeps deadline arithmetic finite.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

impl Limits {
    /// Check the values make sense; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!(
                "limits.timeout_ms = {} is outside 1..={MAX_TIMEOUT_MS}",
                self.timeout_ms
            ));
        }
        // One wasm page: a component cannot run in less.
        if self.memory_bytes < 64 * 1024 {
            return Err(format!(
                "limits.memory_bytes = {} is below one 64 KiB page",
                self.memory_bytes
            ));
        }
        for (name, v) in [
            ("table_elements", self.table_elements),
            ("instances", self.instances),
            ("tables", self.tables),
            ("memories", self.memories),
        ] {
            if v == 0 {
                return Err(format!("limits.{name} = 0 leaves nothing to run"));
            }
        }
        for (name, v, max) in [
            ("sockets", self.sockets, MAX_SOCKETS),
            ("table_entries", self.table_entries, MAX_TABLE_ENTRIES),
            ("audit_lines", self.audit_lines, MAX_AUDIT_LINES),
            ("name_lookups", self.name_lookups, MAX_NAME_LOOKUPS),
        ] {
            // 0 is allowed: a MOD that needs no socket can be held to none.
            if v > max {
                return Err(format!(
                    "limits.{name} = {v} is above the broker's cap of {max}"
                ));
            }
        }
        if self.table_entries < 16 {
            return Err(format!(
                "limits.table_entries = {} is below 16: a call cannot run in fewer",
                self.table_entries
            ));
        }
        if self.fuel == Some(0) {
            return Err("limits.fuel = 0 leaves nothing to run".into());
        }
        Ok(())
    }

    /// The call budget as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The store's limiter: tracks the memory total across memories.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    memory_total: usize,
}

impl Limiter {
    /// A limiter enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            memory_total: 0,
        }
    }

    /// Bytes of linear memory currently held.
    pub fn memory_total(&self) -> usize {
        self.memory_total
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_total - current.min(self.memory_total) + desired;
        if total > self.limits.memory_bytes {
            return Err(LimitHit(Limit::Memory(self.limits.memory_bytes)).into());
        }
        self.memory_total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.table_elements {
            return Err(LimitHit(Limit::TableElements(self.limits.table_elements)).into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.limits.instances
    }

    fn tables(&self) -> usize {
        self.limits.tables
    }

    fn memories(&self) -> usize {
        self.limits.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_capped_as_a_sum_over_memories() {
        let mut l = Limiter::new(Limits {
            memory_bytes: 100,
            ..Limits::default()
        });
        assert!(l.memory_growing(0, 60, None).unwrap());
        // A second memory may not take the total past the cap.
        let e = l.memory_growing(0, 50, None).unwrap_err();
        assert!(matches!(
            e.downcast_ref::<LimitHit>(),
            Some(LimitHit(Limit::Memory(100)))
        ));
        assert!(l.memory_growing(0, 40, None).unwrap());
        assert_eq!(l.memory_total(), 100);
        // Growing the first memory from 60 to 61 is one byte too many.
        assert!(l.memory_growing(60, 61, None).is_err());
    }

    #[test]
    fn absurd_limits_are_named() {
        assert!(Limits::default().validate().is_ok());
        let bad = |l: Limits| l.validate().unwrap_err();
        assert!(
            bad(Limits {
                timeout_ms: u64::MAX,
                ..Limits::default()
            })
            .contains("timeout_ms")
        );
        assert!(
            bad(Limits {
                timeout_ms: 0,
                ..Limits::default()
            })
            .contains("timeout_ms")
        );
        assert!(
            bad(Limits {
                memory_bytes: 10,
                ..Limits::default()
            })
            .contains("memory_bytes")
        );
        assert!(
            bad(Limits {
                instances: 0,
                ..Limits::default()
            })
            .contains("instances")
        );
        assert!(
            bad(Limits {
                fuel: Some(0),
                ..Limits::default()
            })
            .contains("fuel")
        );
    }

    #[test]
    fn tables_are_capped_per_table() {
        let mut l = Limiter::new(Limits {
            table_elements: 10,
            ..Limits::default()
        });
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(l.table_growing(10, 11, None).is_err());
    }
}
