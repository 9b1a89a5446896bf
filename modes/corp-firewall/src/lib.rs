//! The `corp-firewall` MOD: inbound reachability through a corporate
//! firewall's management API — the example of a MOD a corporation writes,
//! signs with its security team's key and pushes by policy.
//!
//! `map` stages a DNAT rule (edge port → host) and an allow rule (the
//! edge's filter lets it through) as two API objects, applies them as a
//! revision that the API reverts by itself unless confirmed, waits for the
//! revision to take effect and confirms it. `renew` checks both rules are
//! still in force (else `mapping-lost`); `unmap` deletes them and applies
//! and confirms again. If anything fails after staging, the staged objects
//! are deleted before the error returns, so no rule is left behind; an
//! apply that never completes is a `timeout`, and its unconfirmed revision
//! reverts on the firewall.
//!
//! The API is HTTPS with a pinned, self-signed certificate: the broker
//! opens the TLS connection (contract 0.1.3 `tls`, pin in config
//! `tls_pin`, which only the broker acts on) and this MOD speaks HTTP/1.1
//! and JSON over it (SDK [`p2pbroker_mode_sdk::http`]; the API's objects in
//! [`api`], pure).
//!
//! Config: `api` (`IP:PORT`), `token` (header `X-API-Token`),
//! `external_address` (the edge's public IPv4), `tls_pin`; optional
//! `confirm_within_s` (60), `apply_timeout_ms` (3000), `budget_ms` (4500,
//! the whole call's API traffic), `name_prefix` (`p2pb`).

pub mod api;
mod wit;

use core::net::SocketAddr;
use core::time::Duration;

use p2pbroker_mode_sdk::addr::from_socket;
use p2pbroker_mode_sdk::bindings::wasi::clocks::monotonic_clock;
use p2pbroker_mode_sdk::classify::classify;
use p2pbroker_mode_sdk::clock::{Deadline, now_ns};
use p2pbroker_mode_sdk::http::{self, Conn, Response};
use p2pbroker_mode_sdk::{MapRequest, Mapping, ModeError, ModeInfo, ProbeReport, host};

use api::{Config, RevState, State};

/// A pending revision is looked at again after a twentieth of the time it
/// has been pending, within these bounds: the map ends at most ~5% (and
/// one round trip) after the firewall's apply — the goal is 10% —, and a
/// PAN-OS commit of tens of seconds costs about a hundred small requests on
/// one connection, not thousands.
const POLL_MIN: Duration = Duration::from_millis(5);
/// The longest wait between two looks.
const POLL_MAX: Duration = Duration::from_millis(500);

/// The wait before the next look at a revision pending for `pending`.
pub fn poll_pause(pending: Duration) -> Duration {
    (pending / 20).clamp(POLL_MIN, POLL_MAX)
}

/// One call's session with the API: a persistent connection, the config,
/// the call's deadline.
struct Session {
    conn: Conn,
    cfg: Config,
    deadline: Deadline,
}

impl Session {
    fn open() -> Result<Session, ModeError> {
        let cfg = Config::read(host::config)?;
        let deadline = Deadline::after(Duration::from_millis(cfg.budget_ms));
        let (input, output) = wit::bindings::p2pbroker::mode::tls::connect(from_socket(cfg.api))?;
        let conn = Conn::new(input, output, "the firewall API");
        Ok(Session {
            conn,
            cfg,
            deadline,
        })
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ModeError> {
        let host = self.cfg.api.to_string();
        let req = http::request(
            method,
            &host,
            path,
            &[("X-API-Token", &self.cfg.token)],
            body,
        )
        .map_err(|e| ModeError::InvalidRequest(e.to_string()))?;
        self.conn.exchange(&req, self.deadline)
    }

    /// Create an object; its id.
    fn create(&mut self, path: &str, body: &[u8], what: &str) -> Result<String, ModeError> {
        let r = self.send("POST", path, Some(body))?;
        api::created_id(&r, what)
    }

    /// Delete an object; one already gone is fine.
    fn delete(&mut self, path: &str, id: &str, what: &str) -> Result<(), ModeError> {
        let r = self.send("DELETE", &format!("{path}/{id}"), None)?;
        match r.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(api::refusal(&r, what)),
        }
    }

    /// Apply the staged configuration, wait for it, confirm it.
    fn commit(&mut self) -> Result<u64, ModeError> {
        let r = self.send(
            "POST",
            "/api/v1/apply",
            Some(&api::apply_body(self.cfg.confirm_within_s)),
        )?;
        let n = api::revision(&r)?;
        let wait = Deadline::after(Duration::from_millis(self.cfg.apply_timeout_ms));
        let since = now_ns();
        loop {
            let r = self.send("GET", &format!("/api/v1/revisions/{n}"), None)?;
            match api::rev_state(&r)? {
                RevState::Applied => break,
                RevState::Confirmed => return Ok(n),
                RevState::Pending => {}
                RevState::Failed(why) => {
                    return Err(ModeError::Unavailable(format!(
                        "the firewall could not apply revision {n}: {why}"
                    )));
                }
                RevState::Reverted => {
                    return Err(ModeError::Unavailable(format!(
                        "revision {n} reverted before it could be confirmed"
                    )));
                }
            }
            if wait.remaining().is_none() || self.deadline.remaining().is_none() {
                return Err(ModeError::Timeout(format!(
                    "the firewall's apply of revision {n} is still pending after {} ms; it \
                     reverts by itself unless confirmed",
                    self.cfg.apply_timeout_ms
                )));
            }
            let pending = Duration::from_nanos(now_ns().saturating_sub(since));
            let pause = poll_pause(pending).min(wait.remaining().unwrap_or_default());
            monotonic_clock::subscribe_duration(pause.as_nanos() as u64).block();
        }
        let r = self.send("POST", &format!("/api/v1/revisions/{n}/confirm"), None)?;
        if r.status != 200 {
            return Err(api::refusal(
                &r,
                &format!("the confirmation of revision {n}"),
            ));
        }
        Ok(n)
    }
}

const DNAT: &str = "/api/v1/nat/dnat";
const ALLOW: &str = "/api/v1/filter/allow";

fn map(req: MapRequest) -> Result<Mapping, ModeError> {
    let internal = p2pbroker_mode_sdk::addr::to_socket(&req.internal);
    let target = api::ipv4_target(internal)?;
    let port = req.external_port.unwrap_or(target.port());
    let mut s = Session::open()?;
    let name = api::rule_name(&s.cfg.prefix, req.transport, port);
    let listed = s.send("GET", DNAT, None)?;
    if let Some(taken) = api::port_taken(&listed, req.transport, port, &name, target)? {
        if let Some(m) = adopt(&mut s, &req, &taken, &name, target, port)? {
            return Ok(m);
        }
        return Err(ModeError::Conflict(format!(
            "{} port {port} is already forwarded on the firewall (rule `{}`)",
            api::protocol(req.transport),
            taken.name
        )));
    }
    let dnat = s.create(
        DNAT,
        &api::dnat_body(&name, req.transport, port, target),
        "the DNAT rule",
    )?;
    let staged = s
        .create(
            ALLOW,
            &api::allow_body(&name, req.transport, target),
            "the allow rule",
        )
        .and_then(|allow| s.commit().map(|_| allow));
    let allow = match staged {
        Ok(allow) => allow,
        Err(e) => {
            // Withdraw what is staged so no later apply carries it.
            if let Err(undo) = s.delete(DNAT, &dnat, "the DNAT rule") {
                host::warn(&format!(
                    "could not withdraw the staged DNAT rule {dnat}: {undo:?}"
                ));
            }
            withdraw_allow(&mut s, &name);
            return Err(e);
        }
    };
    Ok(mapping(&s, &req, dnat, allow, port))
}

/// This very mapping, already in force (a map repeated after a crash):
/// the mapping, without touching the firewall.
fn adopt(
    s: &mut Session,
    req: &MapRequest,
    taken: &api::Taken,
    name: &str,
    target: SocketAddr,
    port: u16,
) -> Result<Option<Mapping>, ModeError> {
    if !(taken.same && taken.running) {
        return Ok(None);
    }
    let allows = s.send("GET", ALLOW, None)?;
    let Some(allow) = api::running_allow(&allows, name, target)? else {
        return Ok(None);
    };
    host::info(&format!("rule `{name}` is already in force: adopted"));
    Ok(Some(mapping(s, req, taken.id.clone(), allow, port)))
}

fn mapping(s: &Session, req: &MapRequest, dnat: String, allow: String, port: u16) -> Mapping {
    let state = State {
        dnat,
        allow,
        api: s.cfg.api,
    };
    Mapping {
        transport: req.transport,
        internal: req.internal,
        external: from_socket(SocketAddr::new(s.cfg.external.into(), port)),
        lifetime: req.lifetime,
        state: state.encode(),
    }
}

/// Delete any staged allow object named `name` (one created before a
/// failure whose id was not kept).
fn withdraw_allow(s: &mut Session, name: &str) {
    let Ok(r) = s.send("GET", ALLOW, None) else {
        return;
    };
    for id in api::staged_named(&r, name) {
        if s.delete(ALLOW, &id, "the allow rule").is_err() {
            host::warn("could not withdraw a staged allow rule");
        }
    }
}

fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
    let state = State::decode(&current.state)?;
    let mut s = Session::open()?;
    if state.api != s.cfg.api {
        return Err(ModeError::MappingLost(format!(
            "the mapping was made on the API {}, the policy now names {}",
            state.api, s.cfg.api
        )));
    }
    let dnat = s.send("GET", DNAT, None)?;
    let allow = s.send("GET", ALLOW, None)?;
    let gone = [
        (!api::is_running(&dnat, &state.dnat, "the DNAT rules")?).then_some("DNAT"),
        (!api::is_running(&allow, &state.allow, "the allow rules")?).then_some("allow"),
    ];
    let gone: Vec<&str> = gone.into_iter().flatten().collect();
    if !gone.is_empty() {
        return Err(ModeError::MappingLost(format!(
            "the firewall no longer holds the {} rule(s) of this mapping",
            gone.join(" and ")
        )));
    }
    Ok(Mapping {
        lifetime,
        ..current
    })
}

fn unmap(current: Mapping) -> Result<(), ModeError> {
    let state = State::decode(&current.state)?;
    let mut s = Session::open()?;
    if state.api != s.cfg.api {
        return Err(ModeError::Unavailable(format!(
            "the mapping lives on the API {}, which the policy no longer names",
            state.api
        )));
    }
    s.delete(DNAT, &state.dnat, "the DNAT rule")?;
    s.delete(ALLOW, &state.allow, "the allow rule")?;
    s.commit().map(|_| ())
}

fn probe() -> Result<ProbeReport, ModeError> {
    let mut s = Session::open()?;
    let r = s.send("GET", DNAT, None)?;
    if r.status != 200 {
        return Err(api::refusal(&r, "the rule list"));
    }
    let external = core::net::IpAddr::V4(s.cfg.external);
    Ok(ProbeReport {
        gateway: Some(p2pbroker_mode_sdk::addr::from_ip(s.cfg.api.ip())),
        external_address: Some(p2pbroker_mode_sdk::addr::from_ip(external)),
        external_class: Some(classify(external)),
        detail: format!(
            "firewall API {} answers (pinned TLS, token accepted); DNAT on {}",
            s.cfg.api, s.cfg.external
        ),
        state: Vec::new(),
    })
}

struct CorpFirewall;

impl wit::bindings::exports::p2pbroker::mode::lifecycle::Guest for CorpFirewall {
    fn info() -> ModeInfo {
        ModeInfo {
            name: "corp-firewall".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "inbound DNAT + allow rules through a corporate firewall's management API"
                .into(),
        }
    }

    fn probe() -> Result<ProbeReport, ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        probe().map_err(p2pbroker_mode_sdk::clip_error)
    }

    fn map(req: MapRequest) -> Result<Mapping, ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        map(req).map_err(p2pbroker_mode_sdk::clip_error)
    }

    fn renew(current: Mapping, lifetime: u32) -> Result<Mapping, ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        renew(current, lifetime).map_err(p2pbroker_mode_sdk::clip_error)
    }

    fn unmap(current: Mapping) -> Result<(), ModeError> {
        p2pbroker_mode_sdk::install_panic_hook();
        unmap(current).map_err(p2pbroker_mode_sdk::clip_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_follow_a_twentieth_of_the_wait_within_bounds() {
        assert_eq!(poll_pause(Duration::ZERO), POLL_MIN);
        assert_eq!(
            poll_pause(Duration::from_millis(400)),
            Duration::from_millis(20)
        );
        assert_eq!(poll_pause(Duration::from_secs(60)), POLL_MAX);
        // How many looks an apply of a given length costs, and when the
        // last one sees it done.
        let looks = |apply: Duration| {
            let (mut t, mut n) = (Duration::ZERO, 0);
            while t < apply {
                t += poll_pause(t);
                n += 1;
            }
            (n, t)
        };
        let (n, seen) = looks(Duration::from_millis(200));
        assert!(n < 40 && seen <= Duration::from_millis(211), "{n} {seen:?}");
        let (n, seen) = looks(Duration::from_secs(30));
        assert!(
            n < 160 && seen <= Duration::from_millis(30_500),
            "{n} {seen:?}"
        );
    }
}

// Only a component exports (host builds link no exports).
#[cfg(target_arch = "wasm32")]
wit::bindings::export_world!(CorpFirewall with_types_in wit::bindings);
