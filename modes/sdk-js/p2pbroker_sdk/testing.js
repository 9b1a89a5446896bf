// A scripted gateway on a virtual clock, for a MOD's tests under Node (no
// sockets, no broker): the JavaScript twin of the Rust SDK's
// `testing::FakeGateway`.

/**
 * A gateway at `addr` ("ip:port") that answers each datagram sent to it
 * with the array of datagrams `answer(n, request)` returns (`n`: how many
 * it was sent before). Waiting for an answer that does not come moves the
 * clock (`now`, in nanoseconds) to the deadline at once. `sent`
 * lists every [destination, bytes] in order.
 */
export class FakeGateway {
  constructor(addr, answer) {
    this.addr = addr;
    this.answer = answer;
    this.now = 0;
    this.queue = [];
    this.sent = [];
  }

  /** Queue a datagram from `source` (a stray, a forgery). */
  inject(source, data) {
    this.queue.push([Uint8Array.from(data), source]);
  }

  /** Let `ns` nanoseconds pass. */
  advance(ns) {
    this.now += ns;
  }

  sendTo(data, to) {
    const n = this.sent.filter(([a]) => a === this.addr).length;
    this.sent.push([to, Uint8Array.from(data)]);
    if (to === this.addr) {
      for (const reply of this.answer(n, Uint8Array.from(data))) {
        this.queue.push([Uint8Array.from(reply), this.addr]);
      }
    }
  }

  recvUntil(size, deadlineNs) {
    if (this.now >= deadlineNs) return null;
    if (this.queue.length > 0) {
      const [data, source] = this.queue.shift();
      return [data.slice(0, size), source];
    }
    if (deadlineNs > this.now) this.now = deadlineNs;
    return null;
  }

  nowNs() {
    return this.now;
  }
}
