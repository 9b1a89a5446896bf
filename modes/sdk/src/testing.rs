//! Helpers for a MOD's unit tests on the host, where there are no sockets
//! and no broker: a scripted gateway on a virtual clock.
//!
//! Write the MOD's talking part against [`Datagrams`] (as
//! [`exchange_on`](crate::net::exchange_on) is) and test it with a
//! [`FakeGateway`] that answers, stays silent, or answers garbage:
//!
//! ```
//! use core::time::Duration;
//! use p2pbroker_mode_sdk::net::{exchange_on, NetError, Reply};
//! use p2pbroker_mode_sdk::testing::FakeGateway;
//!
//! let gw = "192.0.2.1:5351".parse().unwrap();
//! // Silent to the first request, then echoes with a 0x80 bit set.
//! let mut fake = FakeGateway::new(gw, |n, req: &[u8]| {
//!     if n == 0 { vec![] } else { vec![vec![req[0] | 0x80]] }
//! });
//! let got: Result<u8, NetError> = exchange_on(
//!     &mut fake, gw, &[1],
//!     |n| (n < 3).then(|| Duration::from_millis(250)),
//!     Duration::from_secs(2),
//!     |b| Reply::Accept(b[0]),
//! );
//! assert_eq!(got, Ok(0x81));
//! assert_eq!(fake.sent.len(), 2, "retransmitted once");
//! assert_eq!(fake.now(), Duration::from_millis(250), "after one wait");
//! ```

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::VecDeque;

use crate::clock::Deadline;
pub use crate::net::Datagrams;
use crate::net::NetError;

/// A gateway at one address that answers each datagram sent to it with
/// what `answer(n, request)` returns (`n`: how many it was sent before),
/// on a virtual clock: waiting for an answer that does not come moves the
/// clock to the deadline at once, so retransmission schedules are tested
/// in no time.
pub struct FakeGateway<F> {
    addr: SocketAddr,
    answer: F,
    now_ns: u64,
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Every datagram sent through this socket, with its destination, in
    /// order.
    pub sent: Vec<(SocketAddr, Vec<u8>)>,
}

impl<F: FnMut(usize, &[u8]) -> Vec<Vec<u8>>> FakeGateway<F> {
    /// A gateway at `addr` that answers with `answer`.
    pub fn new(addr: SocketAddr, answer: F) -> Self {
        FakeGateway {
            addr,
            answer,
            now_ns: 0,
            queue: VecDeque::new(),
            sent: Vec::new(),
        }
    }

    /// Queue a datagram from `from` (a stray, or an answer from somewhere
    /// else) ahead of whatever comes next.
    pub fn inject(&mut self, from: SocketAddr, bytes: &[u8]) {
        self.queue.push_back((from, bytes.to_vec()));
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_ns)
    }

    /// Let `d` pass (a lease ageing between two calls).
    pub fn advance(&mut self, d: Duration) {
        self.now_ns = self
            .now_ns
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
}

impl<F: FnMut(usize, &[u8]) -> Vec<Vec<u8>>> Datagrams for FakeGateway<F> {
    fn send_to(&mut self, data: &[u8], to: SocketAddr) -> Result<(), NetError> {
        let n = self.sent.iter().filter(|(a, _)| *a == self.addr).count();
        self.sent.push((to, data.to_vec()));
        if to == self.addr {
            for reply in (self.answer)(n, data) {
                self.queue.push_back((self.addr, reply));
            }
        }
        Ok(())
    }

    fn recv_until(
        &mut self,
        buf: &mut [u8],
        deadline: Deadline,
    ) -> Result<(usize, SocketAddr), NetError> {
        if deadline.remaining_at(self.now_ns).is_none() {
            return Err(NetError::Timeout);
        }
        match self.queue.pop_front() {
            Some((from, bytes)) => {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                Ok((n, from))
            }
            None => {
                self.now_ns = self.now_ns.max(deadline.instant_ns());
                Err(NetError::Timeout)
            }
        }
    }

    fn now_ns(&self) -> u64 {
        self.now_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Reply, exchange_on};

    const GW: &str = "192.0.2.1:5351";

    fn schedule(n: u32) -> Option<Duration> {
        (n < 4).then(|| Duration::from_millis(250 << n))
    }

    /// Ask a gateway that never answers, within `budget`: what was sent
    /// and how long it took.
    fn silent(budget: Duration) -> (usize, Duration) {
        let gw: SocketAddr = GW.parse().unwrap();
        let mut fake = FakeGateway::new(gw, |_, _: &[u8]| vec![]);
        let r: Result<(), NetError> =
            exchange_on(&mut fake, gw, b"x", schedule, budget, |_| Reply::Accept(()));
        assert_eq!(r, Err(NetError::Timeout));
        (fake.sent.len(), fake.now())
    }

    #[test]
    fn a_silent_gateway_is_a_timeout_after_the_schedule() {
        let (sent, took) = silent(Duration::from_secs(60));
        assert_eq!(sent, 4);
        assert_eq!(took, Duration::from_millis(250 + 500 + 1000 + 2000));
    }

    #[test]
    fn the_budget_cuts_the_schedule_short() {
        assert_eq!(
            silent(Duration::from_millis(600)),
            (2, Duration::from_millis(600))
        );
    }

    #[test]
    fn strays_and_rejected_answers_are_skipped() {
        let gw: SocketAddr = GW.parse().unwrap();
        let mut fake = FakeGateway::new(gw, |_, _: &[u8]| vec![b"bad".to_vec(), b"ok".to_vec()]);
        fake.inject("192.0.2.9:5351".parse().unwrap(), b"ok");
        let r: Result<&str, NetError> = exchange_on(
            &mut fake,
            gw,
            b"x",
            schedule,
            Duration::from_secs(1),
            |b| match b {
                b"ok" => Reply::Accept("ok"),
                _ => Reply::Ignore,
            },
        );
        assert_eq!(r, Ok("ok"));
        assert_eq!(fake.sent.len(), 1);
        assert_eq!(fake.now(), Duration::ZERO);
    }

    #[test]
    fn a_failing_judge_stops_at_once() {
        let gw: SocketAddr = GW.parse().unwrap();
        let mut fake = FakeGateway::new(gw, |_, _: &[u8]| vec![vec![0]]);
        let r: Result<(), NetError> = exchange_on(
            &mut fake,
            gw,
            b"x",
            schedule,
            Duration::from_secs(1),
            |_| Reply::Fail(NetError::Refused),
        );
        assert_eq!(r, Err(NetError::Refused));
    }
}
