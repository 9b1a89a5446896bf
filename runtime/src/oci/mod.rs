//! MODs through an OCI registry: `p2pb mode push`/`pull`, and the daemon's
//! pinned, cached MODs.
//!
//! A MOD travels as the OCI artifact wasm-pkg-tools defines for a
//! component (one `application/wasm` layer, an
//! `application/vnd.wasm.config.v0+json` config); its signatures travel
//! inside the component, so a registry is only a carrier: what a host runs
//! is judged by the same admission as a file. The codecs ([`reference`],
//! [`manifest`], [`auth`]) are pure; [`client`] is the HTTP glue (every
//! body capped, every request under a deadline), [`cache`] the daemon's
//! content-addressed copies.

pub mod auth;
pub mod cache;
pub mod client;
pub mod manifest;
pub mod reference;

pub use reference::{Digest, Reference};

/// The manifest's media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's media type (wasm-pkg-tools).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";

/// Why a push or pull failed. Text from the registry is escaped.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A reference that does not parse.
    #[error("{0}")]
    Reference(String),
    /// The registry could not be reached or did not answer in time.
    #[error("registry {registry}: {why}")]
    Unreachable {
        /// `HOST[:PORT]`.
        registry: String,
        /// What went wrong (escaped).
        why: String,
    },
    /// The registry answered, but not as the protocol says.
    #[error("registry {registry}: {why}")]
    Protocol {
        /// `HOST[:PORT]`.
        registry: String,
        /// What it did (escaped).
        why: String,
    },
    /// Bytes that do not match the digest they were asked or listed by.
    #[error("{what}: the registry sent {got}, not the {wanted} asked for")]
    Digest {
        /// What was fetched.
        what: String,
        /// The digest asked for.
        wanted: Digest,
        /// The digest of what came.
        got: Digest,
    },
    /// A manifest that is not a MOD's artifact.
    #[error("{0}")]
    Manifest(String),
    /// The local cache could not be read or written.
    #[error("MOD cache {path}: {why}")]
    Cache {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}
