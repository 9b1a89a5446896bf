//! The `http-connect` MOD: outbound tunnels through an HTTP proxy with
//! CONNECT (contract 0.1.2, `connector`).
//!
//! The broker connects to the proxy (config `proxy`, `IP:PORT`) and lends
//! the connection; this MOD sends the CONNECT request and reads the answer
//! up to the end of its head, one byte at a time, so not a byte of the
//! tunnel's data is consumed. Wire format in [`proto`] (pure).
//!
//! Config: `proxy`, `username` and `password` (Basic auth; both or
//! neither), `timeout_ms` (the whole handshake; default 3000).
//!
//! It maps nothing: `probe` checks that the proxy accepts a TCP connection;
//! `map` and `renew` are `unsupported`.

pub mod proto;
mod wit;

use p2pbroker_mode_sdk::bindings::wasi::io::streams::{InputStream, OutputStream};
use p2pbroker_mode_sdk::connector as proxy_config;
use p2pbroker_mode_sdk::stream::{read_byte, write_all};
use p2pbroker_mode_sdk::{MapRequest, Mapping, ModeError, ModeInfo, ProbeReport, escape};

use proto::{Head, Refusal, Step};
use wit::bindings::exports::p2pbroker::mode::connector::{self, Destination};

/// Who the stream errors name.
const PEER: &str = "the proxy";

/// The contract's error for a refusal.
pub fn refusal_error(r: Refusal, to: &str) -> ModeError {
    let text = |code: u16, reason: String| format!("{code} {}", escape(&reason, 100));
    match r {
        Refusal::Credentials(c, why) => ModeError::Denied(format!(
            "the proxy refused the credentials ({}): set or fix config `username`/`password`",
            text(c, why)
        )),
        Refusal::Forbidden(c, why) => {
            ModeError::Denied(format!("the proxy refuses {to} ({})", text(c, why)))
        }
        Refusal::Unreachable(c, why) => {
            ModeError::Unavailable(format!("the proxy cannot reach {to} ({})", text(c, why)))
        }
        Refusal::Status(c, why) => {
            ModeError::Protocol(format!("the proxy answered CONNECT with {}", text(c, why)))
        }
        Refusal::Garbage(why) => ModeError::Protocol(format!(
            "the proxy's answer is not HTTP: {}",
            escape(&why, 200)
        )),
    }
}

struct HttpConnect;

impl wit::bindings::exports::p2pbroker::mode::lifecycle::Guest for HttpConnect {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "http-connect".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "outbound tunnels through an HTTP proxy (CONNECT); maps nothing".into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        proxy_config::probe("HTTP proxy")
    }

    fn map(_: MapRequest) -> Result<Mapping, ModeError> {
        Err(unsupported())
    }

    fn renew(_: Mapping, _: u32) -> Result<Mapping, ModeError> {
        Err(unsupported())
    }

    fn unmap(_: Mapping) -> Result<(), ModeError> {
        Ok(())
    }
}

fn unsupported() -> ModeError {
    ModeError::Unsupported("the http-connect MOD opens outbound tunnels; it maps nothing".into())
}

impl connector::Guest for HttpConnect {
    fn handshake(
        to: Destination,
        input: InputStream,
        output: OutputStream,
    ) -> Result<(), ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        if !proto::valid_host(&to.host) || to.port == 0 {
            return Err(ModeError::InvalidRequest(format!(
                "destination {}:{} is not a host name or address and a port",
                escape(&to.host, 255),
                to.port
            )));
        }
        let creds = proxy_config::credentials()?;
        let deadline = proxy_config::handshake_deadline();
        let request = proto::request(
            &to.host,
            to.port,
            creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
        );
        write_all(&output, &request, deadline, PEER)?;
        let mut head = Head::default();
        loop {
            let Some(b) = read_byte(&input, deadline, PEER)? else {
                return Err(ModeError::Unavailable(if head.bytes().is_empty() {
                    "the proxy closed the connection without answering".into()
                } else {
                    "the proxy closed the connection in the middle of its answer".into()
                }));
            };
            match head.push(b) {
                Step::More => {}
                Step::Done => break,
                Step::TooLong => {
                    return Err(ModeError::Protocol(format!(
                        "the proxy's answer head exceeds {} bytes",
                        proto::HEAD_MAX
                    )));
                }
            }
        }
        let target = format!("{}:{}", escape(&to.host, 255), to.port);
        proto::answer(head.bytes()).map_err(|r| refusal_error(r, &target))
    }
}

// Only a component exports (host builds link no exports).
#[cfg(target_arch = "wasm32")]
wit::bindings::export_world!(HttpConnect with_types_in wit::bindings);
