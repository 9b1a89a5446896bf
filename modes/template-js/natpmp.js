// NAT-PMP (RFC 6886): the messages as pure functions over bytes, and one
// conversation per lifecycle call over any datagram socket (net.js's
// UdpSocket in the component, testing.js's FakeGateway in the tests).
// Nothing here imports the component's bindings, so all of it runs under
// Node.

import { IGNORE, Timeout, exchangeOn } from './p2pbroker/js/p2pbroker_sdk/exchange.js';

export const PORT = 5351;
const BUDGET_NS = 4_000_000_000;
const RESULTS = {
  1: 'unsupported version',
  2: 'not authorized or refused',
  3: 'network failure (no external address yet)',
  4: 'out of resources',
  5: 'unsupported opcode',
};

/** A lifecycle call failed: `kind` is one of the contract's error kinds. */
export class Failure extends Error {
  constructor(kind, reason) {
    super(reason);
    this.kind = kind;
    this.reason = reason;
  }
}

/** After 250 ms, doubling (RFC 6886 §3.1), four tries. */
export function schedule(attempt) {
  return attempt < 4 ? 250_000_000 * 2 ** attempt : null;
}

export function externalRequest() {
  return Uint8Array.of(0, 0);
}

/** `op` 1 for UDP, 2 for TCP; lifetime 0 removes the mapping. */
export function mapRequest(op, internal, external, lifetime) {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  b[1] = op;
  v.setUint16(4, internal);
  v.setUint16(6, external);
  v.setUint32(8, lifetime);
  return b;
}

function judged(parse, op, size) {
  return (data) => {
    if (data.length < size || data[0] !== 0 || data[1] !== 128 + op) return IGNORE;
    const code = new DataView(data.buffer, data.byteOffset).getUint16(2);
    if (code !== 0) {
      const kind = { 1: 'unsupported', 2: 'denied', 5: 'unsupported' }[code] || 'unavailable';
      const text = RESULTS[code] || 'unknown result code';
      throw new Failure(kind, `the gateway refused: ${text} (result ${code})`);
    }
    return parse(data);
  };
}

export function parseExternal(data) {
  return Array.from(data.slice(8, 12)).join('.');
}

/** [internal port, external port, lifetime]. */
export function parseMap(data) {
  const v = new DataView(data.buffer, data.byteOffset);
  return [v.getUint16(8), v.getUint16(10), v.getUint32(12)];
}

function ask(io, gateway, request, judge) {
  try {
    return exchangeOn(io, `${gateway}:${PORT}`, request, schedule, BUDGET_NS, judge);
  } catch (e) {
    if (e instanceof Timeout) throw new Failure('timeout', 'the gateway did not answer');
    throw e;
  }
}

/** The `state` blob: the gateway and its external address, 8 bytes. */
export function state(gateway, external) {
  return Uint8Array.from([...gateway.split('.'), ...external.split('.')].map(Number));
}

/** [gateway, external] from a `state` blob, or null if not ours. */
export function readState(blob) {
  if (blob.length !== 8) return null;
  return [Array.from(blob.slice(0, 4)).join('.'), Array.from(blob.slice(4)).join('.')];
}

/** The gateway's external address. */
export function probeAt(io, gateway) {
  return ask(io, gateway, externalRequest(), judged(parseExternal, 0, 12));
}

/**
 * Map `internalPort` on `gateway` (or the gateway of `known`, the probe's
 * state, skipping the address query): `{ external: "ip:port", lifetime, state }`.
 */
export function mapAt(io, gateway, known, tcp, internalPort, externalPort, lifetime) {
  const [gw, external] = known || [gateway, probeAt(io, gateway)];
  if (external === '0.0.0.0') throw new Failure('unavailable', 'the gateway has no external address yet');
  const op = tcp ? 2 : 1;
  const req = mapRequest(op, internalPort, externalPort || internalPort, lifetime);
  const [inside, outside, granted] = ask(io, gw, req, judged(parseMap, op, 16));
  if (inside !== internalPort || outside === 0 || granted === 0) {
    throw new Failure(
      'protocol',
      `the gateway answered for internal port ${inside}, external ${outside}, lifetime ${granted}`,
    );
  }
  return { external: `${external}:${outside}`, lifetime: granted, state: state(gw, external) };
}

export function renewAt(io, blob, tcp, internalPort, externalPort, lifetime) {
  const known = readState(blob);
  if (known === null) throw new Failure('invalid-request', "the mapping's state is not ours");
  return mapAt(io, known[0], known, tcp, internalPort, externalPort, lifetime);
}

export function unmapAt(io, blob, tcp, internalPort) {
  const known = readState(blob);
  if (known === null) throw new Failure('invalid-request', "the mapping's state is not ours");
  const op = tcp ? 2 : 1;
  ask(io, known[0], mapRequest(op, internalPort, 0, 0), judged(parseMap, op, 16));
}
