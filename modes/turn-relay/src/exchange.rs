//! STUN transactions over an unreliable link (RFC 8489 §6.2.1) and the
//! long-term credential dance (§9.2), independent of where the bytes go:
//! the [`Link`] trait is the relay channel on the guest and a scripted
//! fake server in tests, and time is the link's clock.
//!
//! Requests of one [`Session::run`] go out together (at most [`WINDOW`]
//! in flight), so a renewal that rebinds hundreds of peers costs a few
//! round trips, not hundreds. Each is retransmitted after [`RTO`],
//! doubling, until it is answered or the session's deadline passes.
//! A 401 with REALM and NONCE makes an unsigned request signed; a 438 (or
//! a 401 naming another NONCE than the one signed with) makes a signed
//! one signed again with the new NONCE, once. A 401 to a request signed
//! with the NONCE it names is final: the credentials are wrong.

use core::net::SocketAddr;
use core::time::Duration;

use p2pbroker_mode_sdk::{ModeError, escape};
use stun_types::message::IntegrityKey;

use crate::creds::Credentials;
use crate::proto::{self, Auth, Challenge, Ignored, Outcome, Request, Tid};

/// RFC 8489 §6.2.1: the first retransmission after 500 ms, then doubling.
pub const RTO: Duration = Duration::from_millis(500);
/// RFC 8489 §6.2.1: Rc, at most seven transmissions of one request.
pub const MAX_SENDS: u32 = 7;
/// Requests in flight at once: enough to rebind a lease's 256 peers in a
/// few round trips, few enough not to burst past a server's or a NAT's
/// per-client rate limit (coturn drops beyond its configured rate).
pub const WINDOW: usize = 16;
/// Signed sends of one request: the first signature, and one more after
/// a new NONCE (438, or a 401 naming another nonce).
const SIGNED_SENDS_MAX: u32 = 2;

/// Where STUN messages go and come from, and the clock they are timed by.
pub trait Link {
    /// Send one STUN message to the server.
    fn send(&mut self, message: &[u8]) -> Result<(), ModeError>;
    /// The next message from the server, waiting at most `wait`.
    fn receive(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, ModeError>;
    /// Monotonic time since an arbitrary origin.
    fn now(&self) -> Duration;
    /// A fresh random transaction id.
    fn tid(&mut self) -> Tid;
    /// A debug line for the log (the text is already escaped).
    fn debug(&mut self, _line: &str) {}
}

/// One request on the wire.
struct Flight {
    /// Index into the run's requests.
    index: usize,
    tid: Tid,
    bytes: Vec<u8>,
    /// The key it was signed with, to check the answer's integrity.
    key: Option<IntegrityKey>,
    /// The nonce it was signed with (empty: unsigned).
    nonce: String,
    sends: u32,
    rto: Duration,
    resend_at: Duration,
}

/// One call's conversation with a TURN server.
pub struct Session<'l, L: Link> {
    link: &'l mut L,
    server: SocketAddr,
    deadline: Duration,
    budget: Duration,
    creds: Option<Credentials>,
    challenge: Option<Challenge>,
}

impl<'l, L: Link> Session<'l, L> {
    /// A session with `server` over `link` that ends `budget` from now,
    /// signing with `creds` once a challenge is known (`challenge`: the
    /// one a previous call kept).
    pub fn new(
        link: &'l mut L,
        server: SocketAddr,
        budget: Duration,
        creds: Option<Credentials>,
        challenge: Option<Challenge>,
    ) -> Self {
        let deadline = link.now().saturating_add(budget);
        Session {
            link,
            server,
            deadline,
            budget,
            creds,
            challenge,
        }
    }

    /// The server.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The user name requests are signed with, if any.
    pub fn username(&self) -> Option<&str> {
        self.creds.as_ref().map(|c| c.username.as_str())
    }

    /// The server's latest challenge, to keep for the next call.
    pub fn challenge(&self) -> Option<&Challenge> {
        self.challenge.as_ref()
    }

    fn auth(&self) -> Option<Auth> {
        let (c, ch) = (self.creds.as_ref()?, self.challenge.as_ref()?);
        Some(Auth {
            username: c.username.clone(),
            password: c.password.clone(),
            realm: ch.realm.clone(),
            nonce: ch.nonce.clone(),
        })
    }

    fn launch(&mut self, index: usize, req: &Request) -> Result<Flight, ModeError> {
        let tid = self.link.tid();
        let auth = self.auth();
        let bytes = proto::build_request(req, tid, auth.as_ref())
            .map_err(|e| ModeError::InvalidRequest(e.to_string()))?;
        self.link.send(&bytes)?;
        let now = self.link.now();
        Ok(Flight {
            index,
            tid,
            bytes,
            key: auth.as_ref().map(Auth::key),
            nonce: auth.map(|a| a.nonce).unwrap_or_default(),
            sends: 1,
            rto: RTO,
            resend_at: now.saturating_add(RTO),
        })
    }

    /// Whether `outcome` to `flight` calls for sending the request again,
    /// signed (updating the challenge it brings).
    fn again(&mut self, flight: &Flight, signed_sends: u32, outcome: &Outcome) -> bool {
        if self.creds.is_none() || signed_sends >= SIGNED_SENDS_MAX {
            return false;
        }
        match outcome {
            Outcome::Unauthorized(Some(ch))
                if flight.nonce.is_empty() || flight.nonce != ch.nonce =>
            {
                self.challenge = Some(ch.clone());
                true
            }
            Outcome::StaleNonce {
                nonce: Some(nonce),
                realm,
            } if !flight.nonce.is_empty() => {
                let realm = realm
                    .clone()
                    .or_else(|| self.challenge.as_ref().map(|c| c.realm.clone()));
                let Some(realm) = realm else { return false };
                self.challenge = Some(Challenge {
                    realm,
                    nonce: nonce.clone(),
                });
                true
            }
            _ => false,
        }
    }

    /// Send `reqs` and collect their final outcomes, in order. Errors: the
    /// link's, an unbuildable request (`invalid-request`), and `timeout`
    /// when one is still unanswered at the deadline.
    pub fn run(&mut self, reqs: &[Request]) -> Result<Vec<Outcome>, ModeError> {
        let mut done: Vec<Option<Outcome>> = vec![None; reqs.len()];
        let mut signed_sends = vec![0u32; reqs.len()];
        let mut flights: Vec<Flight> = Vec::new();
        let mut queue = (0..reqs.len()).rev().collect::<Vec<_>>();
        loop {
            while flights.len() < WINDOW
                && let Some(i) = queue.pop()
            {
                let f = self.launch(i, &reqs[i])?;
                signed_sends[i] += u32::from(f.key.is_some());
                flights.push(f);
            }
            if flights.is_empty() {
                break;
            }
            let now = self.link.now();
            if now >= self.deadline {
                return Err(self.timed_out(&reqs[flights[0].index]));
            }
            for f in flights.iter_mut().filter(|f| f.resend_at <= now) {
                if f.sends < MAX_SENDS {
                    self.link.send(&f.bytes)?;
                    f.sends += 1;
                    f.rto = f.rto.saturating_mul(2);
                }
                // After the last transmission, wait for it till the deadline.
                f.resend_at = if f.sends < MAX_SENDS {
                    now.saturating_add(f.rto)
                } else {
                    self.deadline
                };
            }
            let wake = flights
                .iter()
                .map(|f| f.resend_at)
                .min()
                .unwrap_or(self.deadline)
                .min(self.deadline);
            let Some(msg) = self.link.receive(wake.saturating_sub(now))? else {
                continue;
            };
            let Some(tid) = proto::transaction_id(&msg) else {
                self.link
                    .debug("ignored a message from the TURN server that is not STUN");
                continue;
            };
            let Some(at) = flights.iter().position(|f| f.tid == tid) else {
                continue; // a late answer to a retried request, an indication
            };
            let f = &flights[at];
            let outcome =
                match proto::parse_response(&msg, f.tid, reqs[f.index].method(), f.key.as_ref()) {
                    Ok(o) => o,
                    Err(Ignored::NotOurs) => continue,
                    Err(why) => {
                        let line = format!("ignored an answer from the TURN server: {why:?}");
                        self.link.debug(&escape(&line, 300));
                        continue;
                    }
                };
            let f = flights.swap_remove(at);
            if self.again(&f, signed_sends[f.index], &outcome) {
                queue.push(f.index);
            } else {
                done[f.index] = Some(outcome);
            }
        }
        Ok(done
            .into_iter()
            .map(|o| o.expect("every request ends answered"))
            .collect())
    }

    /// Send one request and return its final outcome.
    pub fn one(&mut self, req: Request) -> Result<Outcome, ModeError> {
        Ok(self.run(&[req])?.remove(0))
    }

    fn timed_out(&self, req: &Request) -> ModeError {
        ModeError::Timeout(format!(
            "the TURN server {} did not answer the {} request within {} ms",
            self.server,
            req.name(),
            self.budget.as_millis()
        ))
    }
}

#[cfg(test)]
mod tests;
