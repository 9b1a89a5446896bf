//! The `socks5` MOD: outbound tunnels through a SOCKS5 proxy (RFC 1928)
//! with username/password authentication (RFC 1929), contract 0.1.2
//! `connector`.
//!
//! The broker connects to the proxy (config `proxy`, `IP:PORT`) and lends
//! the connection; this MOD negotiates and sends CONNECT, reading exactly
//! the proxy's answers (their lengths are in their first bytes), so not a
//! byte of the tunnel's data is consumed. Wire format in [`proto`] (pure).
//!
//! Config: `proxy`, `username` and `password` (both or neither),
//! `timeout_ms` (the whole handshake; default 3000). Names are sent to the
//! proxy to resolve (address type 3); IP literals as addresses.

pub mod proto;
mod wit;

use p2pbroker_mode_sdk::bindings::wasi::io::streams::{InputStream, OutputStream};
use p2pbroker_mode_sdk::clock::Deadline;
use p2pbroker_mode_sdk::connector as proxy_config;
use p2pbroker_mode_sdk::stream::{read_exact, write_all};
use p2pbroker_mode_sdk::{MapRequest, Mapping, ModeError, ModeInfo, ProbeReport, escape};

use proto::Refusal;
use wit::bindings::exports::p2pbroker::mode::connector::{self, Destination};

/// Who the stream errors name.
const PEER: &str = "the SOCKS proxy";

/// The contract's error for a refusal.
pub fn refusal_error(r: Refusal, to: &str) -> ModeError {
    match r {
        Refusal::Garbage(why) => ModeError::Protocol(format!(
            "the proxy's answer is not SOCKS5: {}",
            escape(&why, 200)
        )),
        Refusal::NoMethod {
            offered_credentials: false,
        } => ModeError::Denied(
            "the SOCKS proxy requires authentication: set config `username`/`password`".into(),
        ),
        Refusal::NoMethod {
            offered_credentials: true,
        } => ModeError::Denied(
            "the SOCKS proxy accepts neither no authentication nor username/password".into(),
        ),
        Refusal::UnofferedMethod(m) => ModeError::Protocol(format!(
            "the SOCKS proxy chose method {m}, which was not offered"
        )),
        Refusal::Credentials => ModeError::Denied(
            "the SOCKS proxy refused the credentials (config `username`/`password`)".into(),
        ),
        Refusal::Reply(code @ 2) => ModeError::Denied(format!(
            "the SOCKS proxy refuses {to}: {}",
            proto::reply_text(code)
        )),
        Refusal::Reply(code @ (3..=6)) => ModeError::Unavailable(format!(
            "the SOCKS proxy cannot reach {to}: {}",
            proto::reply_text(code)
        )),
        Refusal::Reply(code @ (7 | 8)) => {
            ModeError::Unsupported(format!("the SOCKS proxy: {}", proto::reply_text(code)))
        }
        Refusal::Reply(code) => ModeError::Unavailable(format!(
            "the SOCKS proxy failed ({code}: {})",
            proto::reply_text(code)
        )),
    }
}

fn two(input: &InputStream, deadline: Deadline) -> Result<[u8; 2], ModeError> {
    let b = read_exact(input, 2, deadline, PEER)?;
    Ok([b[0], b[1]])
}

struct Socks5;

impl wit::bindings::exports::p2pbroker::mode::lifecycle::Guest for Socks5 {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "socks5".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "outbound tunnels through a SOCKS5 proxy; maps nothing".into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        proxy_config::probe("SOCKS5 proxy")
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
    ModeError::Unsupported("the socks5 MOD opens outbound tunnels; it maps nothing".into())
}

impl connector::Guest for Socks5 {
    fn handshake(
        to: Destination,
        input: InputStream,
        output: OutputStream,
    ) -> Result<(), ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        let target = format!("{}:{}", escape(&to.host, 255), to.port);
        let request = proto::connect(&to.host, to.port)
            .filter(|_| to.port != 0 && p2pbroker_mode_sdk::addr::valid_host(&to.host))
            .ok_or_else(|| {
                ModeError::InvalidRequest(format!("destination {target} is not usable"))
            })?;
        let creds = proxy_config::credentials()?;
        let deadline = proxy_config::handshake_deadline();
        let refused = |r| refusal_error(r, &target);
        write_all(&output, &proto::greeting(creds.is_some()), deadline, PEER)?;
        let method = proto::method(two(&input, deadline)?, creds.is_some()).map_err(refused)?;
        if method == proto::USER_PASS {
            let (user, password) = creds.as_ref().expect("offered only with credentials");
            let auth = proto::credentials(user, password).ok_or_else(|| {
                ModeError::InvalidRequest(
                    "config `username` must be 1-255 bytes and `password` at most 255".into(),
                )
            })?;
            write_all(&output, &auth, deadline, PEER)?;
            proto::credentials_answer(two(&input, deadline)?).map_err(refused)?;
        }
        write_all(&output, &request, deadline, PEER)?;
        let head = read_exact(&input, 4, deadline, PEER)?;
        let rest = proto::reply_head([head[0], head[1], head[2], head[3]]).map_err(refused)?;
        let rest = if rest == 0 {
            let len = read_exact(&input, 1, deadline, PEER)?[0];
            proto::domain_rest(len)
        } else {
            rest
        };
        // The bound address: read so the application gets only its data.
        read_exact(&input, rest, deadline, PEER)?;
        Ok(())
    }
}

// Only a component exports (host builds link no exports).
#[cfg(target_arch = "wasm32")]
wit::bindings::export_world!(Socks5 with_types_in wit::bindings);
