//! The `tls` import (contract 0.1.3): a TLS connection to a server whose
//! certificate the policy pinned, lent to the MOD as plaintext streams.
//!
//! The broker, not the MOD, holds the trust decision: the pin comes from
//! the MOD's policy config (`tls_pin`), the TCP connection passes the
//! MOD's capability gate like any socket it opens (and is audit-logged and
//! counted against its socket limits), and rustls checks that the server
//! proves possession of the pinned certificate's key. Only the record layer
//! runs natively; the API's protocol (HTTP, JSON) is parsed in the sandbox.
//!
//! A pin is the SHA-256 of the leaf certificate (DER), as `openssl x509
//! -outform der | sha256sum` prints it; colons and a `sha256:` prefix are
//! accepted, several pins separated by commas allow a rotation. Like an SSH
//! host key, a pinned certificate is trusted as it is: its names, issuer
//! and dates are not consulted (a firewall's self-signed certificate has
//! nothing else to check).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sockets::network::IpSocketAddress;
use wasmtime_wasi::p2::pipe::{AsyncReadStream, AsyncWriteStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use super::sockets::Budget;
use super::{CallState, ModeError};
use crate::text::escape;

/// Longest the TCP connection and the TLS handshake may take together.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// What a lent write stream buffers before it reports no room.
const WRITE_BUDGET: usize = 16 * 1024;
/// Most pins one `tls_pin` may list.
const PINS_MAX: usize = 8;

/// Decides whether the MOD may connect to an address (its gate, audited).
pub type ConnectCheck = Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>;

/// What the `tls` import needs besides the store's table and budget.
pub struct TlsCtx {
    pub(crate) pins: Result<Vec<[u8; 32]>, String>,
    pub(crate) check: ConnectCheck,
}

impl TlsCtx {
    /// The context for a MOD whose config holds `tls_pin` (or not).
    pub fn new(pin_config: Option<&str>, check: ConnectCheck) -> TlsCtx {
        TlsCtx {
            pins: match pin_config {
                Some(text) => parse_pins(text),
                None => Err(
                    "config `tls_pin` is not set: the broker opens TLS only to a \
                     pinned certificate"
                        .into(),
                ),
            },
            check,
        }
    }
}

/// Parse `tls_pin`: comma-separated SHA-256 fingerprints.
pub fn parse_pins(text: &str) -> Result<Vec<[u8; 32]>, String> {
    let mut pins = Vec::new();
    for piece in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let hex_text: String = piece
            .strip_prefix("sha256:")
            .unwrap_or(piece)
            .chars()
            .filter(|c| *c != ':')
            .collect();
        let mut pin = [0u8; 32];
        hex::decode_to_slice(&hex_text, &mut pin).map_err(|_| {
            format!(
                "config `tls_pin`: `{}` is not a SHA-256 fingerprint (64 hex digits)",
                escape(&clip(piece, 100))
            )
        })?;
        pins.push(pin);
    }
    if pins.is_empty() {
        return Err("config `tls_pin` is empty".into());
    }
    if pins.len() > PINS_MAX {
        return Err(format!("config `tls_pin` lists more than {PINS_MAX} pins"));
    }
    Ok(pins)
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Accepts exactly the pinned leaf certificates and checks that the server
/// signed the handshake with the certificate's key.
#[derive(Debug)]
pub(crate) struct PinVerifier {
    pins: Vec<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
    /// The fingerprint of a certificate that matched no pin, for the error.
    refused: Mutex<Option<String>>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = crate::sandbox::sha256(end_entity.as_ref());
        if self.pins.contains(&digest) {
            return Ok(ServerCertVerified::assertion());
        }
        *self.refused.lock().expect("not poisoned") = Some(hex::encode(digest));
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl PinVerifier {
    /// The fingerprint of the last certificate that matched no pin.
    pub(crate) fn refused(&self) -> Option<String> {
        self.refused.lock().expect("not poisoned").take()
    }
}

/// The broker's TLS client settings (ring, safe protocol versions), before
/// the choice of whom to trust.
pub(crate) fn client_builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider as Arc<CryptoProvider>)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))
}

/// A client configuration that accepts exactly the `pins`, and its
/// verifier (which names a refused certificate).
pub(crate) fn pinned_config(
    pins: Vec<[u8; 32]>,
) -> Result<(Arc<rustls::ClientConfig>, Arc<PinVerifier>), String> {
    let verifier = Arc::new(PinVerifier {
        pins,
        algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        refused: Mutex::new(None),
    });
    let config = client_builder()?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((Arc::new(config), verifier))
}

/// The store's view for the `tls` import.
pub struct TlsView<'a> {
    table: &'a mut ResourceTable,
    tls: &'a TlsCtx,
    budget: &'a Budget,
}

/// Marker for the linker: the data of [`TlsView`].
pub struct HasTls;

impl HasData for HasTls {
    type Data<'a> = TlsView<'a>;
}

/// The `tls` view of a call's store.
pub fn tls_view(s: &mut CallState) -> TlsView<'_> {
    TlsView {
        table: &mut s.table,
        tls: &s.tls,
        budget: &s.budget,
    }
}

/// Open a pinned TLS connection to `server`: the plaintext stream.
async fn open(
    server: SocketAddr,
    pins: Vec<[u8; 32]>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ModeError> {
    let (config, verifier) = pinned_config(pins).map_err(ModeError::Unavailable)?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(server)
            .await
            .map_err(|e| ModeError::Unavailable(format!("cannot connect to {server}: {e}")))?;
        // API requests are small request/answer turns: never wait to
        // coalesce (Nagle would hold a request's last segment for an ACK).
        let _ = tcp.set_nodelay(true);
        connector
            .connect(ServerName::IpAddress(server.ip().into()), tcp)
            .await
            .map_err(|e| match verifier.refused() {
                Some(got) => ModeError::Denied(format!(
                    "the certificate of {server} (sha256 {got}) matches no pin in config \
                         `tls_pin`"
                )),
                None => ModeError::Unavailable(format!(
                    "TLS handshake with {server} failed: {}",
                    escape(&clip(&e.to_string(), 300))
                )),
            })
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(ModeError::Timeout(format!(
                "no TLS handshake with {server} within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            )))
        })
}

impl super::tls_bindings::p2pbroker::mode::tls::Host for TlsView<'_> {
    async fn connect(
        &mut self,
        server: IpSocketAddress,
    ) -> Result<(Resource<DynInputStream>, Resource<DynOutputStream>), ModeError> {
        let server: SocketAddr = server.into();
        let pins = self.tls.pins.clone().map_err(ModeError::Denied)?;
        if !(self.tls.check)(server) {
            return Err(ModeError::Denied(format!(
                "the policy does not grant this MOD tcp:connect to {server}"
            )));
        }
        if !self.budget.take_socket() {
            return Err(ModeError::Unavailable(
                "the call's socket limit is reached".into(),
            ));
        }
        let stream = open(server, pins).await?;
        let (read, write) = tokio::io::split(stream);
        let input: DynInputStream = Box::new(AsyncReadStream::new(read));
        let output: DynOutputStream = Box::new(AsyncWriteStream::new(WRITE_BUDGET, write));
        let table_full = |e: wasmtime::component::ResourceTableError| {
            ModeError::Unavailable(format!("the call's resource table is full: {e}"))
        };
        let input = self.table.push(input).map_err(table_full)?;
        let output = self.table.push(output).map_err(table_full)?;
        Ok((input, output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn pins_parse_in_the_forms_tools_print() {
        let one = parse_pins(PIN).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(hex::encode(one[0]), PIN);
        let colons: Vec<String> = PIN
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8(c.to_vec()).unwrap().to_uppercase())
            .collect();
        let two = parse_pins(&format!("sha256:{}, {PIN}", colons.join(":"))).unwrap();
        assert_eq!(two, vec![one[0], one[0]]);
    }

    #[test]
    fn bad_pins_are_named() {
        let e = parse_pins("abc").unwrap_err();
        assert!(e.contains("`abc` is not a SHA-256"), "{e}");
        assert!(parse_pins(" , ").unwrap_err().contains("empty"));
        let many = [PIN; PINS_MAX + 1].join(",");
        assert!(parse_pins(&many).unwrap_err().contains("more than"));
        // Text from the policy is escaped before it reaches an error.
        let e = parse_pins("\u{1b}[31m").unwrap_err();
        assert!(!e.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn no_pin_means_no_tls() {
        let ctx = TlsCtx::new(None, Arc::new(|_| true));
        assert!(ctx.pins.unwrap_err().contains("`tls_pin` is not set"));
    }
}
