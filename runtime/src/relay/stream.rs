//! How a stream channel (`tcp`, or `tls` since contract 0.1.5) reaches its
//! relay server: the policy's `[[services.turn]]` entry for the server
//! names the routes (`direct`, or a connector MOD such as `http-connect`,
//! whose proxy handshake runs in its own sandbox, as for `p2pb connect`)
//! and, for a `turns:` server, the certificate the broker accepts (a
//! pinned SHA-256 or a CA bundle). The TURN MOD asks for a stream to an
//! address; which proxy carries it and whom TLS trusts are the operator's
//! decisions, never the MOD's.
//!
//! What a hostile relay or proxy can make the broker hold here: one
//! connection and one handshake per open, each within [`DIAL_TIMEOUT`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::text::escape;

/// The longest one route's connection (and a proxy's handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a whole dial may take, every route and TLS included.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(12);
/// The route taken when the policy names none.
pub const DIRECT: &str = "direct";

/// A connected byte stream to a relay: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Whose certificate a `turns:` server may present.
#[derive(Clone)]
pub enum Trust {
    /// Exactly these leaf certificates (SHA-256 of the DER).
    Pins(Vec<[u8; 32]>),
    /// Any certificate for the server's address that chains to these roots.
    Roots(Arc<rustls::RootCertStore>),
}

/// How the policy says a server is reached over a stream.
#[derive(Clone, Default)]
pub struct Route {
    /// Routes in order (`direct` or a connector MOD); empty means direct.
    pub via: Vec<String>,
    /// The certificate trust for TLS: `None` when the policy gives none,
    /// an error when what it gives cannot be used (the reason says why).
    pub tls: Option<Result<Trust, String>>,
}

/// A connection through a connector MOD (the daemon's side).
pub type Tunnel = Pin<Box<dyn Future<Output = Result<std::net::TcpStream, String>> + Send>>;

/// What the daemon knows: the policy's route for a server, and how to
/// tunnel through a connector MOD.
pub trait Dialer: Send + Sync {
    /// The route for `server`.
    fn route(&self, server: SocketAddr) -> Route;
    /// A connection to `server` through the connector MOD `via`.
    fn tunnel(&self, via: &str, server: SocketAddr) -> Tunnel;
}

/// Why a dial failed, by the MOD's error kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialError {
    /// The policy trusts no such certificate, or none at all.
    Denied(String),
    /// No route connected, or the TLS handshake failed.
    Unavailable(String),
    /// The time ran out.
    Timeout(String),
}

/// A connected stream to `server` (TLS when `tls`) and how it was made
/// (`tcp`, `tls`, `tcp via http-connect`, ...).
pub async fn dial(
    dialer: Option<Arc<dyn Dialer>>,
    server: SocketAddr,
    tls: bool,
) -> Result<(Box<dyn Io>, String), DialError> {
    let route = dialer.as_ref().map(|d| d.route(server)).unwrap_or_default();
    let trust = if tls {
        Some(route.tls.clone().ok_or_else(|| {
            DialError::Denied(format!(
                "the policy trusts no certificate for {server}: its [[services.turn]] entry \
                 (a turns: URL) needs tls_pin or tls_ca"
            ))
        })?)
        .map(|t| t.map_err(DialError::Denied))
        .transpose()?
    } else {
        None
    };
    let attempt = async {
        let (tcp, via) = connect(dialer.as_deref(), &route.via, server).await?;
        let how = |leg: &str| match via.as_str() {
            DIRECT => leg.to_string(),
            v => format!("{leg} via {}", escape(v)),
        };
        match trust {
            None => Ok((Box::new(tcp) as Box<dyn Io>, how("tcp"))),
            Some(t) => {
                let tls = handshake(tcp, server, t).await?;
                Ok((Box::new(tls) as Box<dyn Io>, how("tls")))
            }
        }
    };
    tokio::time::timeout(DIAL_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(DialError::Timeout(format!(
                "no stream to {server} within {} s",
                DIAL_TIMEOUT.as_secs()
            )))
        })
}

/// The first route that connects, in the policy's order.
async fn connect(
    dialer: Option<&dyn Dialer>,
    via: &[String],
    server: SocketAddr,
) -> Result<(tokio::net::TcpStream, String), DialError> {
    let direct = [DIRECT.to_string()];
    let via = if via.is_empty() { &direct[..] } else { via };
    let mut failures = Vec::new();
    for route in via {
        let attempt = async {
            if route == DIRECT {
                return tokio::net::TcpStream::connect(server)
                    .await
                    .map_err(|e| e.to_string());
            }
            let Some(d) = dialer else {
                return Err("no connector MODs here (not the daemon)".to_string());
            };
            let s = d.tunnel(route, server).await?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            tokio::net::TcpStream::from_std(s).map_err(|e| e.to_string())
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(s)) => {
                // Small request/answer turns and datagrams: never wait to
                // coalesce.
                let _ = s.set_nodelay(true);
                return Ok((s, route.clone()));
            }
            Ok(Err(e)) => failures.push(format!("{}: {e}", escape(route))),
            Err(_) => failures.push(format!(
                "{}: no connection within {} s",
                escape(route),
                CONNECT_TIMEOUT.as_secs()
            )),
        }
    }
    Err(DialError::Unavailable(format!(
        "cannot reach {server} over TCP ({})",
        failures.join("; ")
    )))
}

/// The TLS handshake on `tcp`, accepting only what `trust` allows.
async fn handshake(
    tcp: tokio::net::TcpStream,
    server: SocketAddr,
    trust: Trust,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, DialError> {
    let name = ServerName::IpAddress(server.ip().into());
    let (config, pinned) = match trust {
        Trust::Pins(pins) => {
            let (config, verifier) =
                crate::sandbox::wit::tls::pinned_config(pins).map_err(DialError::Unavailable)?;
            (config, Some(verifier))
        }
        Trust::Roots(roots) => {
            let config = crate::sandbox::wit::tls::client_builder()
                .map_err(DialError::Unavailable)?
                .with_root_certificates(roots)
                .with_no_client_auth();
            (Arc::new(config), None)
        }
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let done = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await;
    match done {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            if let Some(got) = pinned.and_then(|v| v.refused()) {
                return Err(DialError::Denied(format!(
                    "the certificate of {server} (sha256 {got}) matches no tls_pin of its \
                     [[services.turn]] entry"
                )));
            }
            let bad_cert = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
            let text: String = e.to_string().chars().take(300).collect();
            let why = escape(&text);
            Err(if bad_cert {
                DialError::Denied(format!(
                    "the certificate of {server} is not trusted by tls_ca: {why}"
                ))
            } else {
                DialError::Unavailable(format!("TLS handshake with {server} failed: {why}"))
            })
        }
        Err(_) => Err(DialError::Timeout(format!(
            "no TLS handshake with {server} within {} s",
            HANDSHAKE_TIMEOUT.as_secs()
        ))),
    }
}

/// The largest CA bundle read (Debian's whole system bundle is ~220 KiB).
const CA_FILE_MAX: u64 = 4 * 1024 * 1024;

/// Read a CA bundle (PEM) for [`Trust::Roots`]; the error names the file.
pub fn roots_from(path: &std::path::Path) -> Result<Trust, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let text = path.display().to_string();
    let shown = escape(&text);
    // A regular file of bounded size: never a device or a FIFO that would
    // be read without end.
    let meta = std::fs::metadata(path).map_err(|e| format!("tls_ca {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("tls_ca {shown} is not a regular file"));
    }
    if meta.len() > CA_FILE_MAX {
        return Err(format!(
            "tls_ca {shown} is larger than {} MiB",
            CA_FILE_MAX / (1024 * 1024)
        ));
    }
    // Read at most one byte past the cap from the file opened: one swapped
    // in after the check cannot make the read longer.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, CA_FILE_MAX + 1), &mut bytes)
        })
        .map_err(|e| format!("tls_ca {shown}: {e}"))?;
    if bytes.len() as u64 > CA_FILE_MAX {
        return Err(format!(
            "tls_ca {shown} is larger than {} MiB",
            CA_FILE_MAX / (1024 * 1024)
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_slice_iter(&bytes);
    for cert in certs {
        let cert = cert.map_err(|e| format!("tls_ca {shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("tls_ca {shown}: a certificate is unusable: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("tls_ca {shown} holds no certificate"));
    }
    Ok(Trust::Roots(Arc::new(roots)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes from a table; every tunnel fails with `refused`.
    struct Fixed(Route);

    impl Dialer for Fixed {
        fn route(&self, _: SocketAddr) -> Route {
            self.0.clone()
        }
        fn tunnel(&self, via: &str, _: SocketAddr) -> Tunnel {
            let why = format!("{via} refused");
            Box::pin(async move { Err(why) })
        }
    }

    fn dialer(via: &[&str], tls: Option<Result<Trust, String>>) -> Option<Arc<dyn Dialer>> {
        Some(Arc::new(Fixed(Route {
            via: via.iter().map(|v| v.to_string()).collect(),
            tls,
        })))
    }

    #[tokio::test]
    async fn tls_without_trust_from_the_policy_is_denied_before_connecting() {
        let nowhere = "192.0.2.1:443".parse().unwrap();
        let Err(DialError::Denied(why)) = dial(None, nowhere, true).await else {
            panic!("denied")
        };
        assert!(why.contains("tls_pin or tls_ca"), "{why}");
        let bad = dialer(&[], Some(Err("tls_ca /x: unreadable".into())));
        let Err(DialError::Denied(why)) = dial(bad, nowhere, true).await else {
            panic!("denied")
        };
        assert!(why.contains("/x"), "{why}");
    }

    #[tokio::test]
    async fn routes_are_tried_in_order_and_each_failure_is_named() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let (dialed, _) = tokio::join!(
            dial(dialer(&["socks5", "direct"], None), server, false),
            listener.accept()
        );
        let (_, how) = dialed.unwrap();
        assert_eq!(how, "tcp", "the proxy failed, direct carried it");

        let Err(DialError::Unavailable(why)) =
            dial(dialer(&["socks5", "http-connect"], None), server, false).await
        else {
            panic!("unavailable")
        };
        assert!(
            why.contains("socks5: socks5 refused")
                && why.contains("http-connect: http-connect refused"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_server_that_speaks_no_tls_is_unavailable_not_denied() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let answer = async {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                .await
                .unwrap();
        };
        let trust = Some(Ok(Trust::Pins(vec![[0; 32]])));
        let (dialed, ()) = tokio::join!(dial(dialer(&[], trust), server, true), answer);
        let Err(DialError::Unavailable(why)) = dialed else {
            panic!("unavailable")
        };
        assert!(why.contains("TLS handshake"), "{why}");
    }

    #[test]
    fn a_ca_bundle_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let Err(why) = roots_from(&empty) else {
            panic!("refused")
        };
        assert!(why.contains("holds no certificate"), "{why}");
        let Err(why) = roots_from(&dir.path().join("missing.pem")) else {
            panic!("refused")
        };
        assert!(why.contains("missing.pem"), "{why}");
        let Err(why) = roots_from(std::path::Path::new("/dev/zero")) else {
            panic!("refused")
        };
        assert!(why.contains("not a regular file"), "{why}");
        let big = dir.path().join("big.pem");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(CA_FILE_MAX + 1)
            .unwrap();
        let Err(why) = roots_from(&big) else {
            panic!("refused")
        };
        assert!(why.contains("larger than"), "{why}");
    }
}
