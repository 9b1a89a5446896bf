// A MOD that maps ports with NAT-PMP (RFC 6886), in JavaScript: what
// `p2pb mode new --lang js` writes. The conversations are in natpmp.js
// (tested under Node by natpmp.test.js); this file is the lifecycle the
// broker calls, and the only one that needs the component.

import { defaultGateways, localAddresses } from 'p2pbroker:mode/broker@0.1.5';
import * as natpmp from './natpmp.js';
import { NetError, UdpSocket, fromWit, modeError, toWit } from './p2pbroker/js/p2pbroker_sdk/net.js';
import { classify } from './p2pbroker/js/p2pbroker_sdk/addr.js';

// This MOD's name: what policies call it. p2pbroker.toml says the same.
const NAME = "template-js";

/** A failure as the contract's error (thrown from a lifecycle call). */
function contractError(e) {
  if (e instanceof natpmp.Failure) return { tag: e.kind, val: e.reason.slice(0, 1024) };
  if (e instanceof NetError) return modeError(e);
  return { tag: 'protocol', val: String(e).slice(0, 1024) };
}

function gateway() {
  const gw = defaultGateways().find((g) => g.tag === 'ipv4');
  if (!gw) throw new natpmp.Failure('unavailable', 'no IPv4 default gateway');
  return gw.val.join('.');
}

function ip(text) {
  return { tag: 'ipv4', val: text.split('.').map(Number) };
}

/** Run `f` on a fresh socket; errors as the contract's. */
function call(f, ...args) {
  try {
    return f(new UdpSocket(), ...args);
  } catch (e) {
    throw contractError(e);
  }
}

function mapping(transport, internal, got) {
  return { transport, internal, external: toWit(got.external), lifetime: got.lifetime, state: got.state };
}

export const lifecycle = {
  info() {
    return { name: NAME, version: '0.1.0', summary: 'Maps ports with NAT-PMP (RFC 6886), in JavaScript' };
  },

  probe() {
    let gw;
    try {
      gw = gateway();
    } catch (e) {
      throw contractError(e);
    }
    const ext = call(natpmp.probeAt, gw);
    return {
      gateway: ip(gw),
      externalAddress: ip(ext),
      // Anything but global is a gateway behind another NAT: say so.
      externalClass: classify(ext),
      detail: `NAT-PMP gateway ${gw}, external address ${ext}`,
      state: natpmp.state(gw, ext),
    };
  },

  map(request) {
    if (request.internal.tag !== 'ipv4') throw { tag: 'unsupported', val: 'NAT-PMP maps IPv4 only' };
    const [address, port] = fromWit(request.internal).split(':');
    const own = localAddresses().some((a) => a.address.tag === 'ipv4' && a.address.val.join('.') === address);
    if (address !== '0.0.0.0' && !own) {
      throw { tag: 'unsupported', val: `NAT-PMP maps this host only, not ${address}` };
    }
    const known = natpmp.readState(request.probeState);
    let gw;
    try {
      gw = known ? known[0] : gateway();
    } catch (e) {
      throw contractError(e);
    }
    const tcp = request.transport === 'tcp';
    const got = call(natpmp.mapAt, gw, known, tcp, Number(port), request.externalPort, request.lifetime);
    return mapping(request.transport, request.internal, got);
  },

  renew(current, lifetime) {
    const port = Number(fromWit(current.internal).split(':')[1]);
    const extPort = Number(fromWit(current.external).split(':')[1]);
    const got = call(natpmp.renewAt, current.state, current.transport === 'tcp', port, extPort, lifetime);
    return mapping(current.transport, current.internal, got);
  },

  unmap(current) {
    const port = Number(fromWit(current.internal).split(':')[1]);
    call(natpmp.unmapAt, current.state, current.transport === 'tcp', port);
  },
};
