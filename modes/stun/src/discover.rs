//! The RFC 5780 behaviour-discovery procedure as a pure state machine:
//! [`Discovery::next`] says what to send, the glue reports what came back,
//! [`Discovery::report`] gives the verdict. No sockets, no clocks.
//!
//! Mapping (RFC 5780 §4.3), on one socket: test I to the server's primary
//! address gives the reflexive address M1 and OTHER-ADDRESS; test II to
//! the other IP (primary port) gives M2; M2 = M1 is endpoint-independent,
//! else test III to OTHER-ADDRESS gives M3: M3 = M2 is address-dependent,
//! else address-and-port-dependent.
//!
//! Filtering (§4.4), on a fresh socket that has only talked to the
//! primary address (the mapping socket has sent to the other address,
//! which would open the very filters under test): a response sent from
//! OTHER-ADDRESS (change IP and port) that arrives means
//! endpoint-independent; else one from the primary IP's other port
//! (change port) means address-dependent; else address-and-port-dependent.
//! A response from anywhere but the address asked for proves nothing (a
//! server ignoring CHANGE-REQUEST): the filtering is then unknown.
//!
//! Hairpinning (§4.5): a request sent from a third socket to M1 that
//! arrives on the mapping socket.

use core::net::SocketAddr;

use crate::codec::{Binding, Change};

/// RFC 4787's names for how a NAT maps or filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// The same for every remote endpoint.
    EndpointIndependent,
    /// Depends on the remote address, not its port.
    AddressDependent,
    /// Depends on the remote address and port.
    AddressAndPortDependent,
}

impl Behaviour {
    /// RFC 4787's term.
    pub fn term(self) -> &'static str {
        match self {
            Behaviour::EndpointIndependent => "endpoint-independent",
            Behaviour::AddressDependent => "address-dependent",
            Behaviour::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

/// Which local socket a test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sock {
    /// Mapping tests; the hairpinning target.
    Mapping,
    /// Filtering tests.
    Filtering,
    /// Sends the hairpinning probe.
    Hairpin,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send a Binding request from `sock` to `to`, asking for `change`,
    /// and report the response with [`Discovery::answered`].
    Ask {
        /// Socket to send from.
        sock: Sock,
        /// Destination.
        to: SocketAddr,
        /// CHANGE-REQUEST flags.
        change: Change,
    },
    /// Send a Binding request from [`Sock::Hairpin`] to `to` (our own
    /// reflexive address) and report with [`Discovery::hairpinned`]
    /// whether it arrived on [`Sock::Mapping`].
    Hairpin {
        /// The mapping socket's reflexive address.
        to: SocketAddr,
    },
    /// Finished: read [`Discovery::report`].
    Done,
}

/// The outcome of one test as the glue saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A response, and the address it came from.
    Answer(Binding, SocketAddr),
    /// Nothing within the test's time.
    Silence,
    /// The broker's gate refused the destination.
    Denied,
    /// The server answered with an error (e.g. 420: it does not know
    /// CHANGE-REQUEST); the text says which.
    Refused(String),
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The server asked.
    pub server: SocketAddr,
    /// Reflexive address of the mapping socket (test I).
    pub reflexive: SocketAddr,
    /// Whether the reflexive address differs from the local endpoint.
    pub nat: bool,
    /// Mapping behaviour, if determined.
    pub mapping: Option<Behaviour>,
    /// Filtering behaviour, if determined.
    pub filtering: Option<Behaviour>,
    /// Whether hairpinning works, if tested.
    pub hairpinning: Option<bool>,
    /// Why something is undetermined, in order.
    pub notes: Vec<String>,
}

/// Why no verdict at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// Test I got no response.
    NoAnswer,
    /// Test I's destination was refused by the gate.
    Denied,
    /// Test I got an error response.
    Refused(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Test1,
    Test2,
    Test3,
    Filter1,
    Filter2,
    Filter3,
    Hairpin,
    Done,
}

/// One run of the procedure.
#[derive(Debug, Clone)]
pub struct Discovery {
    server: SocketAddr,
    local: Vec<SocketAddr>,
    hairpin: bool,
    phase: Phase,
    failed: Option<Failed>,
    m1: Option<Binding>,
    m2: Option<SocketAddr>,
    report: Option<Report>,
}

impl Discovery {
    /// Discover against `server`. `local` are the mapping socket's local
    /// endpoints (one per host address): a reflexive address among them
    /// means no NAT. `hairpin`: whether to run the hairpinning test.
    pub fn new(server: SocketAddr, local: Vec<SocketAddr>, hairpin: bool) -> Discovery {
        Discovery {
            server,
            local,
            hairpin,
            phase: Phase::Test1,
            failed: None,
            m1: None,
            m2: None,
            report: None,
        }
    }

    fn other(&self) -> Option<SocketAddr> {
        self.m1.as_ref().and_then(|b| b.other)
    }

    /// What to do now.
    pub fn next(&self) -> Next {
        let ask = |sock, to, change| Next::Ask { sock, to, change };
        match (self.phase, self.other()) {
            (Phase::Test1, _) => ask(Sock::Mapping, self.server, Change::NONE),
            (Phase::Test2, Some(o)) => ask(
                Sock::Mapping,
                SocketAddr::new(o.ip(), self.server.port()),
                Change::NONE,
            ),
            (Phase::Test3, Some(o)) => ask(Sock::Mapping, o, Change::NONE),
            (Phase::Filter1, _) => ask(Sock::Filtering, self.server, Change::NONE),
            (Phase::Filter2, _) => ask(Sock::Filtering, self.server, Change::BOTH),
            (Phase::Filter3, _) => ask(Sock::Filtering, self.server, Change::PORT),
            (Phase::Hairpin, _) => match &self.m1 {
                Some(m1) => Next::Hairpin { to: m1.mapped },
                None => Next::Done,
            },
            _ => Next::Done,
        }
    }

    /// Report the outcome of the [`Next::Ask`] just made.
    pub fn answered(&mut self, outcome: Outcome) {
        if self.report.is_none() {
            // Test I.
            match outcome {
                Outcome::Answer(b, _) => {
                    let nat = !self.local.contains(&b.mapped);
                    let mut notes = Vec::new();
                    if b.other.is_none() {
                        notes.push(
                            "the server sent no OTHER-ADDRESS (no RFC 5780 support): \
                             mapping and filtering undetermined"
                                .into(),
                        );
                    }
                    self.report = Some(Report {
                        server: self.server,
                        reflexive: b.mapped,
                        nat,
                        mapping: (!nat).then_some(Behaviour::EndpointIndependent),
                        filtering: None,
                        hairpinning: None,
                        notes,
                    });
                    self.phase = match (b.other.is_some(), nat) {
                        (false, _) => self.after_filtering(),
                        (true, true) => Phase::Test2,
                        (true, false) => Phase::Filter1,
                    };
                    self.m1 = Some(b);
                }
                Outcome::Silence => self.fail(Failed::NoAnswer),
                Outcome::Denied => self.fail(Failed::Denied),
                Outcome::Refused(why) => self.fail(Failed::Refused(why)),
            }
            return;
        };
        let m1 = self.m1.as_ref().map(|b| b.mapped);
        let other = self.other();
        let after = self.after_filtering();
        let m2 = self.m2;
        let mut phase = self.phase;
        let mut new_m2 = None;
        let Some(report) = self.report.as_mut() else {
            return;
        };
        match self.phase {
            Phase::Test2 => match outcome {
                Outcome::Answer(b, _) if Some(b.mapped) == m1 => {
                    report.mapping = Some(Behaviour::EndpointIndependent);
                    phase = Phase::Filter1;
                }
                Outcome::Answer(b, _) => {
                    new_m2 = Some(b.mapped);
                    phase = Phase::Test3;
                }
                other_outcome => {
                    report.notes.push(format!(
                        "mapping test II (to the other address): {}",
                        describe(&other_outcome)
                    ));
                    phase = Phase::Filter1;
                }
            },
            Phase::Test3 => {
                match outcome {
                    Outcome::Answer(b, _) => {
                        report.mapping = Some(if Some(b.mapped) == m2 {
                            Behaviour::AddressDependent
                        } else {
                            Behaviour::AddressAndPortDependent
                        });
                    }
                    other_outcome => report.notes.push(format!(
                        "mapping test III (to OTHER-ADDRESS): {}",
                        describe(&other_outcome)
                    )),
                }
                phase = Phase::Filter1;
            }
            Phase::Filter1 => match outcome {
                Outcome::Answer(..) => phase = Phase::Filter2,
                other_outcome => {
                    report.notes.push(format!(
                        "filtering test I (fresh socket): {}",
                        describe(&other_outcome)
                    ));
                    phase = after;
                }
            },
            Phase::Filter2 => match outcome {
                Outcome::Answer(_, from) if Some(from) == other => {
                    report.filtering = Some(Behaviour::EndpointIndependent);
                    phase = after;
                }
                Outcome::Answer(_, from) => {
                    report.notes.push(format!(
                        "the server answered a change-IP-and-port request from {from}, \
                         not from its OTHER-ADDRESS: filtering undetermined"
                    ));
                    phase = after;
                }
                Outcome::Silence => phase = Phase::Filter3,
                other_outcome => {
                    report.notes.push(format!(
                        "filtering test II (change IP and port): {}",
                        describe(&other_outcome)
                    ));
                    phase = after;
                }
            },
            Phase::Filter3 => {
                let expected = SocketAddr::new(self.server.ip(), other.map_or(0, |o| o.port()));
                match outcome {
                    Outcome::Answer(_, from) if from == expected => {
                        report.filtering = Some(Behaviour::AddressDependent);
                    }
                    Outcome::Answer(_, from) => report.notes.push(format!(
                        "the server answered a change-port request from {from}, not from \
                         {expected}: filtering undetermined"
                    )),
                    Outcome::Silence => {
                        report.filtering = Some(Behaviour::AddressAndPortDependent);
                    }
                    other_outcome => report.notes.push(format!(
                        "filtering test III (change port): {}",
                        describe(&other_outcome)
                    )),
                }
                phase = after;
            }
            _ => {}
        }
        self.phase = phase;
        if new_m2.is_some() {
            self.m2 = new_m2;
        }
    }

    /// Report whether the hairpinning probe arrived (`None`: it could not
    /// be sent, e.g. the gate refused our own reflexive address).
    pub fn hairpinned(&mut self, arrived: Option<bool>) {
        if self.phase != Phase::Hairpin {
            return;
        }
        if let Some(r) = self.report.as_mut() {
            r.hairpinning = arrived;
            if arrived.is_none() {
                r.notes.push(
                    "the policy does not let this MOD send to its own reflexive address \
                     (optional grant udp:send,receive@0.0.0.0/0:1-65535)"
                        .into(),
                );
            }
        }
        self.phase = Phase::Done;
    }

    fn after_filtering(&self) -> Phase {
        if self.hairpin {
            Phase::Hairpin
        } else {
            Phase::Done
        }
    }

    fn fail(&mut self, why: Failed) {
        self.failed = Some(why);
        self.phase = Phase::Done;
    }

    /// The verdict, once [`Discovery::next`] says [`Next::Done`].
    pub fn report(&self) -> Result<&Report, Failed> {
        match (&self.report, &self.failed) {
            (Some(r), _) => Ok(r),
            (None, Some(f)) => Err(f.clone()),
            (None, None) => Err(Failed::NoAnswer),
        }
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Answer(..) => "answered".into(),
        Outcome::Silence => "no answer".into(),
        Outcome::Denied => "denied by the broker's gate".into(),
        Outcome::Refused(why) => format!("refused: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::IpAddr;

    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const WAN: &str = "198.51.100.2";

    /// A NAT and an RFC 5780 server, simulated: what each test would see.
    struct Sim {
        mapping: Behaviour,
        filtering: Behaviour,
        hairpin: bool,
        /// Destinations each socket has sent to.
        sent: [BTreeSet<SocketAddr>; 3],
    }

    fn primary() -> SocketAddr {
        sa("198.51.100.1:3478")
    }
    fn other() -> SocketAddr {
        sa("198.51.100.3:3479")
    }

    fn idx(s: Sock) -> usize {
        match s {
            Sock::Mapping => 0,
            Sock::Filtering => 1,
            Sock::Hairpin => 2,
        }
    }

    impl Sim {
        fn new(mapping: Behaviour, filtering: Behaviour, hairpin: bool) -> Sim {
            Sim {
                mapping,
                filtering,
                hairpin,
                sent: Default::default(),
            }
        }

        fn external(&self, sock: Sock, to: SocketAddr) -> SocketAddr {
            let base = 40000 + 100 * idx(sock) as u16;
            let IpAddr::V4(ip) = to.ip() else {
                unreachable!()
            };
            let port = match self.mapping {
                Behaviour::EndpointIndependent => base,
                Behaviour::AddressDependent => base + u16::from(ip.octets()[3]),
                Behaviour::AddressAndPortDependent => {
                    base + u16::from(ip.octets()[3]) + to.port() % 7
                }
            };
            SocketAddr::new(WAN.parse().unwrap(), port)
        }

        fn passes(&self, sock: Sock, from: SocketAddr) -> bool {
            let sent = &self.sent[idx(sock)];
            match self.filtering {
                Behaviour::EndpointIndependent => !sent.is_empty(),
                Behaviour::AddressDependent => sent.iter().any(|s| s.ip() == from.ip()),
                Behaviour::AddressAndPortDependent => sent.contains(&from),
            }
        }

        fn ask(&mut self, sock: Sock, to: SocketAddr, change: Change) -> Outcome {
            self.sent[idx(sock)].insert(to);
            let mapped = self.external(sock, to);
            let from = match (change.ip, change.port) {
                (false, false) => to,
                (true, true) => other(),
                (false, true) => SocketAddr::new(to.ip(), other().port()),
                (true, false) => SocketAddr::new(other().ip(), to.port()),
            };
            if !self.passes(sock, from) {
                return Outcome::Silence;
            }
            let b = Binding {
                mapped,
                origin: Some(from),
                other: Some(other()),
            };
            Outcome::Answer(b, from)
        }

        fn run(&mut self, d: &mut Discovery) -> usize {
            let mut steps = 0;
            loop {
                steps += 1;
                assert!(steps < 20, "the procedure ends");
                match d.next() {
                    Next::Ask { sock, to, change } => {
                        let o = self.ask(sock, to, change);
                        d.answered(o);
                    }
                    Next::Hairpin { .. } => d.hairpinned(Some(self.hairpin)),
                    Next::Done => return steps,
                }
            }
        }
    }

    fn classify(m: Behaviour, f: Behaviour, hairpin: bool) -> Report {
        let mut sim = Sim::new(m, f, hairpin);
        let mut d = Discovery::new(primary(), vec![sa("10.0.0.2:5000")], true);
        sim.run(&mut d);
        d.report().unwrap().clone()
    }

    #[test]
    fn every_combination_of_mapping_and_filtering_is_told_apart() {
        use Behaviour::*;
        for m in [
            EndpointIndependent,
            AddressDependent,
            AddressAndPortDependent,
        ] {
            for f in [
                EndpointIndependent,
                AddressDependent,
                AddressAndPortDependent,
            ] {
                for hairpin in [false, true] {
                    let r = classify(m, f, hairpin);
                    assert_eq!(r.mapping, Some(m), "{m:?}/{f:?}: {r:?}");
                    assert_eq!(r.filtering, Some(f), "{m:?}/{f:?}: {r:?}");
                    assert_eq!(r.hairpinning, Some(hairpin));
                    assert!(r.nat && r.notes.is_empty(), "{r:?}");
                    assert_eq!(r.reflexive.ip(), WAN.parse::<IpAddr>().unwrap());
                }
            }
        }
    }

    #[test]
    fn no_nat_when_the_reflexive_address_is_local() {
        let local = sa("198.51.100.9:5000");
        let mut d = Discovery::new(primary(), vec![local], false);
        let b = Binding {
            mapped: local,
            origin: None,
            other: Some(other()),
        };
        d.answered(Outcome::Answer(b, primary()));
        assert_eq!(
            d.next(),
            Next::Ask {
                sock: Sock::Filtering,
                to: primary(),
                change: Change::NONE
            }
        );
        let r = d.report().unwrap();
        assert!(!r.nat);
        assert_eq!(r.mapping, Some(Behaviour::EndpointIndependent));
    }

    #[test]
    fn a_server_without_rfc_5780_gives_the_reflexive_address_only() {
        let mut d = Discovery::new(primary(), vec![], true);
        let b = Binding {
            mapped: sa("198.51.100.2:40000"),
            origin: None,
            other: None,
        };
        d.answered(Outcome::Answer(b, primary()));
        assert_eq!(
            d.next(),
            Next::Hairpin {
                to: sa("198.51.100.2:40000")
            }
        );
        d.hairpinned(None);
        assert_eq!(d.next(), Next::Done);
        let r = d.report().unwrap();
        assert_eq!((r.mapping, r.filtering, r.hairpinning), (None, None, None));
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
    }

    #[test]
    fn silence_or_a_refusal_on_test_one_is_a_failure() {
        let mut d = Discovery::new(primary(), vec![], true);
        d.answered(Outcome::Silence);
        assert_eq!(d.next(), Next::Done);
        assert_eq!(d.report(), Err(Failed::NoAnswer));
        let mut d = Discovery::new(primary(), vec![], true);
        d.answered(Outcome::Denied);
        assert_eq!(d.report(), Err(Failed::Denied));
    }

    #[test]
    fn a_server_ignoring_change_request_leaves_filtering_unknown() {
        // It always answers from where the request went.
        let mut d = Discovery::new(primary(), vec![], false);
        let mut steps = 0;
        while let Next::Ask { to, .. } = d.next() {
            steps += 1;
            assert!(steps < 20);
            let b = Binding {
                mapped: sa("198.51.100.2:40000"),
                origin: None,
                other: Some(other()),
            };
            d.answered(Outcome::Answer(b, to));
        }
        let r = d.report().unwrap();
        assert_eq!(r.mapping, Some(Behaviour::EndpointIndependent));
        assert_eq!(r.filtering, None);
        assert!(
            r.notes[0].contains("not from its OTHER-ADDRESS"),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn a_denied_other_address_leaves_mapping_unknown_and_says_why() {
        let mut d = Discovery::new(primary(), vec![], false);
        let b = Binding {
            mapped: sa("198.51.100.2:40000"),
            origin: None,
            other: Some(other()),
        };
        d.answered(Outcome::Answer(b, primary()));
        d.answered(Outcome::Denied);
        let r = d.report().unwrap();
        assert_eq!(r.mapping, None);
        assert!(r.notes[0].contains("denied"), "{:?}", r.notes);
        // Filtering still runs, on the primary address.
        assert_eq!(
            d.next(),
            Next::Ask {
                sock: Sock::Filtering,
                to: primary(),
                change: Change::NONE
            }
        );
    }

    #[test]
    fn an_error_to_change_request_leaves_filtering_unknown_not_restrictive() {
        // A server without RFC 5780 support that still sent OTHER-ADDRESS
        // refuses CHANGE-REQUEST (420): that says nothing about the NAT.
        let mut d = Discovery::new(primary(), vec![], false);
        let mut steps = 0;
        while let Next::Ask { to, change, .. } = d.next() {
            steps += 1;
            assert!(steps < 20);
            let o = if change == Change::NONE {
                let b = Binding {
                    mapped: sa("198.51.100.2:40000"),
                    origin: None,
                    other: Some(other()),
                };
                Outcome::Answer(b, to)
            } else {
                Outcome::Refused("STUN error 420: Unknown Attribute".into())
            };
            d.answered(o);
        }
        let r = d.report().unwrap();
        assert_eq!(r.filtering, None);
        assert!(r.notes[0].contains("420"), "{:?}", r.notes);
        let mut d = Discovery::new(primary(), vec![], false);
        d.answered(Outcome::Refused("STUN error 500".into()));
        assert_eq!(d.report(), Err(Failed::Refused("STUN error 500".into())));
    }

    #[test]
    fn hairpinning_reports_out_of_turn_are_ignored() {
        let mut d = Discovery::new(primary(), vec![], true);
        d.hairpinned(Some(true));
        assert_eq!(
            d.next(),
            Next::Ask {
                sock: Sock::Mapping,
                to: primary(),
                change: Change::NONE
            }
        );
    }
}
