// How routable an IPv4 address is (RFC 6890 registries), as the Rust
// SDK's `classify`: pure, so tested under Node.

function inNet(octets, net, bits) {
  const v = (o) => ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return ((v(octets) & mask) >>> 0) === ((v(net) & mask) >>> 0);
}

const RESERVED = [
  [[0, 0, 0, 0], 8], [[192, 0, 0, 0], 24], [[192, 0, 2, 0], 24], [[198, 18, 0, 0], 15],
  [[198, 51, 100, 0], 24], [[203, 0, 113, 0], 24], [[224, 0, 0, 0], 4], [[240, 0, 0, 0], 4],
];

/** One of the contract's address classes for an IPv4 address "a.b.c.d". */
export function classify(ip) {
  const o = ip.split('.').map(Number);
  if (inNet(o, [127, 0, 0, 0], 8)) return 'loopback';
  if (inNet(o, [169, 254, 0, 0], 16)) return 'link-local';
  if (inNet(o, [100, 64, 0, 0], 10)) return 'shared';
  if (inNet(o, [10, 0, 0, 0], 8) || inNet(o, [172, 16, 0, 0], 12) || inNet(o, [192, 168, 0, 0], 16)) {
    return 'private';
  }
  if (RESERVED.some(([n, b]) => inNet(o, n, b))) return 'reserved';
  return 'global';
}
