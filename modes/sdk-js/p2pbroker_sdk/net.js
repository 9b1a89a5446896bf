// UDP over wasi:sockets for MODs in JavaScript (componentize-qjs): every
// address passes the broker's capability gate (a refusal is a NetError of
// kind "denied"); a datagram from a source the MOD may not receive from is
// dropped by the host and shows up as a timeout. Runs inside the
// component only.

import { instanceNetwork } from 'wasi:sockets/instance-network@0.2.12';
import { createUdpSocket } from 'wasi:sockets/udp-create-socket@0.2.12';
import { now, subscribeInstant } from 'wasi:clocks/monotonic-clock@0.2.12';
import { poll } from 'wasi:io/poll@0.2.12';

/** A socket operation failed: `kind` is denied, timeout, refused, unreachable or other. */
export class NetError extends Error {
  constructor(kind, detail) {
    super(detail || kind);
    this.kind = kind;
  }
}

const KINDS = {
  'access-denied': 'denied',
  timeout: 'timeout',
  'connection-refused': 'refused',
  'connection-reset': 'refused',
  'remote-unreachable': 'unreachable',
};

/** The WASI error code a failed call threw. */
function code(e) {
  // componentize-qjs throws the error value itself (an enum: its case name).
  return typeof e === 'string' ? e : String(e && e.payload !== undefined ? e.payload : e);
}

function netError(e) {
  if (e instanceof NetError) return e;
  const c = code(e);
  return new NetError(KINDS[c] || 'other', c);
}

/** A NetError as the contract's error, to throw from a lifecycle call. */
export function modeError(e) {
  if (e.kind === 'denied') return { tag: 'denied', val: "denied by the broker's capability gate" };
  if (e.kind === 'timeout') return { tag: 'timeout', val: 'timed out' };
  return { tag: 'unavailable', val: `socket error: ${e.message}` };
}

/** "ip:port" (IPv4) as a WIT socket address. */
export function toWit(addr) {
  const [ip, port] = addr.split(':');
  return { tag: 'ipv4', val: { port: Number(port), address: ip.split('.').map(Number) } };
}

/** A WIT socket address (IPv4) as "ip:port". */
export function fromWit(a) {
  return `${a.val.address.join('.')}:${a.val.port}`;
}

function wait(pollable, deadlineNs) {
  if (now() >= deadlineNs) return false;
  poll([pollable, subscribeInstant(deadlineNs)]);
  return true;
}

/** A UDP socket bound to an ephemeral IPv4 port. */
export class UdpSocket {
  constructor() {
    try {
      this.socket = createUdpSocket('ipv4');
      this.socket.startBind(instanceNetwork(), toWit('0.0.0.0:0'));
      const deadline = now() + 1_000_000_000;
      for (;;) {
        try {
          this.socket.finishBind();
          break;
        } catch (e) {
          if (code(e) !== 'would-block') throw e;
          if (!wait(this.socket.subscribe(), deadline)) throw new NetError('timeout');
        }
      }
      [this.incoming, this.outgoing] = this.socket.stream(null);
    } catch (e) {
      throw netError(e);
    }
  }

  sendTo(data, to) {
    try {
      const deadline = now() + 1_000_000_000;
      while (this.outgoing.checkSend() === 0) {
        if (!wait(this.outgoing.subscribe(), deadline)) throw new NetError('timeout');
      }
      this.outgoing.send([{ data: Uint8Array.from(data), remoteAddress: toWit(to) }]);
    } catch (e) {
      throw netError(e);
    }
  }

  recvUntil(size, deadlineNs) {
    try {
      for (;;) {
        const got = this.incoming.receive(1);
        if (got.length > 0) return [got[0].data.slice(0, size), fromWit(got[0].remoteAddress)];
        if (!wait(this.incoming.subscribe(), deadlineNs)) return null;
      }
    } catch (e) {
      throw netError(e);
    }
  }

  nowNs() {
    return now();
  }
}
