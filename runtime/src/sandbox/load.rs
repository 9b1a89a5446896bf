//! Loading a MOD: sha256 → allow-list → compile (or authenticated cache) →
//! link → `info`.
//!
//! Verification comes before compilation: bytes whose hash is not allowed
//! never reach Cranelift. (Signature checks join the allow-list when trust
//! lands; the order stays the same.)

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;

use super::cache::{Reject, sha256};
use super::call::{Op, Output};
use super::engine::ModeHost;
use super::error::LoadError;
use super::mode::{Mode, ModeSpec};
use crate::netinfo::NetInfo;

/// Largest component read from disk (a MOD built from Rust is ~50 KB, one
/// from Python ~18 MB).
pub const COMPONENT_MAX: usize = 64 << 20;

/// Which component hashes may be loaded.
#[derive(Debug, Clone)]
pub enum AllowList {
    /// Any bytes: only for a file an operator names by hand (`p2pb mode
    /// run`/`inspect`), whose hash is printed.
    Any,
    /// Only these hex sha256 digests.
    Sha256(HashSet<String>),
}

impl AllowList {
    fn allows(&self, sha: &str) -> bool {
        match self {
            AllowList::Any => true,
            AllowList::Sha256(set) => set.contains(sha),
        }
    }
}

/// How the compiled code was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// No cache configured (or unusable).
    Disabled,
    /// Loaded from a valid cache entry.
    Hit,
    /// No entry: compiled, and stored.
    Compiled,
    /// An entry failed its checks (reason given), was deleted, and the
    /// component recompiled.
    Recompiled(String),
}

impl std::fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheStatus::Disabled => f.write_str("compiled, no cache"),
            CacheStatus::Hit => f.write_str("from the cache"),
            CacheStatus::Compiled => f.write_str("compiled and cached"),
            CacheStatus::Recompiled(why) => write!(f, "recompiled ({why})"),
        }
    }
}

/// Facts about one load.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Hex sha256 of the component.
    pub sha256: String,
    /// Size in bytes.
    pub size: usize,
    /// Where the compiled code came from.
    pub cache: CacheStatus,
    /// Time to obtain compiled code (compile or cache load).
    pub compile_time: Duration,
}

impl ModeHost {
    /// The engine's compatibility hash as stable bytes (cache key part).
    pub fn compat_hash(&self) -> [u8; 32] {
        self.compat
    }

    /// Check `bytes` against `allow`, then compile them (or load them from
    /// the cache).
    pub fn compile(
        &self,
        bytes: &[u8],
        allow: &AllowList,
    ) -> Result<(Component, LoadReport), LoadError> {
        let digest = sha256(bytes);
        let sha = hex::encode(digest);
        if !allow.allows(&sha) {
            return Err(LoadError::NotAllowed { sha256: sha });
        }
        if !wasmparser::Parser::is_component(bytes) {
            let what = if wasmparser::Parser::is_core_wasm(bytes) {
                "it is a core module; run it through `p2pb mode build`"
            } else {
                "no component header"
            };
            return Err(LoadError::NotAComponent(what.into()));
        }
        let start = Instant::now();
        let compat = self.compat;
        let mut status = CacheStatus::Disabled;
        if let Some(cache) = &self.cache {
            match cache.get(&digest, &compat) {
                Ok(compiled) => {
                    // SAFETY: the cache returns only bytes this broker wrote
                    // (HMAC under its own key, for this component hash and
                    // this engine's compatibility hash).
                    match unsafe { Component::deserialize(&self.engine, &compiled) } {
                        Ok(c) => return Ok((c, report(sha, bytes, CacheStatus::Hit, start))),
                        Err(e) => status = CacheStatus::Recompiled(format!("{e:#}")),
                    }
                }
                Err(Reject::Missing) => status = CacheStatus::Compiled,
                Err(Reject::Discarded(why)) => status = CacheStatus::Recompiled(why),
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| LoadError::Malformed(format!("{e:#}")))?;
        if let Some(cache) = &self.cache {
            match component.serialize() {
                Ok(compiled) => {
                    if let Err(e) = cache.put(&digest, &compat, &compiled) {
                        tracing::warn!("cannot write compiled-code cache: {e}");
                    }
                }
                Err(e) => tracing::warn!("cannot serialise compiled component: {e:#}"),
            }
        }
        Ok((component, report(sha, bytes, status, start)))
    }

    /// Load a MOD: compile, link, and learn its name from `info`.
    pub async fn load(
        &self,
        bytes: &[u8],
        allow: &AllowList,
        spec: ModeSpec,
        net: Arc<NetInfo>,
    ) -> Result<(Mode, LoadReport), LoadError> {
        self.check_spec(&spec)?;
        let (component, report) = self.compile(bytes, allow)?;
        let mode = self.link(&component, &report.sha256, spec, net).await?;
        Ok((mode, report))
    }

    /// Link a compiled component into a MOD and learn its identity from
    /// `info` (run in the sandbox with `spec`'s grants).
    pub async fn link(
        &self,
        component: &Component,
        sha256: &str,
        spec: ModeSpec,
        net: Arc<NetInfo>,
    ) -> Result<Mode, LoadError> {
        self.check_spec(&spec)?;
        let pre = self.prepare(component)?;
        // A 0.1.0 MOD, or one without the optional exports, has none.
        let exports = Arc::new(super::call::Exports::of(&pre));
        let gate = Arc::new(super::mode::gate_for(&spec, &net));
        let mut mode = Mode {
            pre,
            exports,
            name: "unnamed".into(),
            info: None,
            sha256: sha256.into(),
            signers: Arc::from(Vec::<String>::new()),
            gate,
            net,
            config: Arc::new(spec.config.clone()),
            spec: Arc::new(spec),
            audit: self.audit(),
            engine: self.engine.clone(),
            fuel: self.config.fuel,
            host_sockets: self.host_sockets.clone(),
            relay: self.relay.clone(),
        };
        match mode.call(Op::Info).await.result {
            Ok(Output::Info(info)) => {
                mode.name = info.name.as_str().into();
                mode.info = Some(Arc::new(info));
            }
            Ok(_) => unreachable!("info returns info"),
            Err(e) => return Err(LoadError::WrongContract(format!("info() failed: {e}"))),
        }
        Ok(mode)
    }
}

impl ModeHost {
    /// Whether this engine can honour `spec`'s limits.
    pub fn check_spec(&self, spec: &ModeSpec) -> Result<(), LoadError> {
        spec.limits.validate().map_err(LoadError::Spec)?;
        if spec.limits.memory_bytes > self.config.max_memory_bytes {
            return Err(LoadError::Spec(format!(
                "memory limit {} exceeds the engine's slot size {}",
                spec.limits.memory_bytes, self.config.max_memory_bytes
            )));
        }
        if spec.limits.fuel.is_some() && !self.config.fuel {
            return Err(LoadError::Spec(
                "a fuel limit needs an engine with fuel metering enabled".into(),
            ));
        }
        Ok(())
    }
}

fn report(sha256: String, bytes: &[u8], cache: CacheStatus, start: Instant) -> LoadReport {
    LoadReport {
        sha256,
        size: bytes.len(),
        cache,
        compile_time: start.elapsed(),
    }
}
