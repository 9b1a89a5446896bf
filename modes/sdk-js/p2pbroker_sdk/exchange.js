// Request/answer over UDP with retransmission, as the Rust SDK's
// `net::exchange_on`: pure, so it runs under Node against
// `testing.js`'s FakeGateway and in the component over `net.js`'s socket.
//
// A socket is any object with `sendTo(bytes, addr)`,
// `recvUntil(size, deadlineNs)` -> `[bytes, addr]` or `null` at the
// deadline, and `nowNs()`. Times are nanoseconds as numbers (what
// componentize-qjs maps u64 to). Addresses are `"ip:port"` strings.

/** Nothing acceptable came back within the schedule and budget. */
export class Timeout extends Error {}

/** What a judge returns for a datagram that is not the answer: keep waiting. */
export const IGNORE = Symbol('ignore');

/**
 * Send `request` to `to` and return what `judge(bytes)` accepts (any value
 * but IGNORE; throw in `judge` for a definite failure). Sends again after
 * `schedule(n)` nanoseconds (null: no more attempts) until
 * `budgetNs` is spent; only datagrams from `to` are judged.
 */
export function exchangeOn(io, to, request, schedule, budgetNs, judge) {
  const overall = io.nowNs() + budgetNs;
  for (let attempt = 0; ; attempt++) {
    const wait = schedule(attempt);
    const now = io.nowNs();
    if (wait === null || now >= overall) throw new Timeout('timed out');
    io.sendTo(request, to);
    const thisTry = now + wait < overall ? now + wait : overall;
    for (;;) {
      const got = io.recvUntil(1500, thisTry);
      if (got === null) break;
      const [data, source] = got;
      if (source !== to) continue;
      const verdict = judge(data);
      if (verdict !== IGNORE) return verdict;
    }
  }
}
