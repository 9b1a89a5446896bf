// The MOD's conversations against the SDK's fake gateway, and its
// messages byte by byte: `node --test` on the host.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as natpmp from './natpmp.js';
import { FakeGateway } from './p2pbroker/js/p2pbroker_sdk/testing.js';

const GW = '192.168.1.1';
const EXTERNAL = '203.0.113.7';
const AT = `${GW}:${natpmp.PORT}`;

/** Version 0, opcode `op` + 128, result code, epoch 1000, `tail`. */
function answer(op, result, tail) {
  const b = new Uint8Array(8 + tail.length);
  const v = new DataView(b.buffer);
  b[1] = 128 + op;
  v.setUint16(2, result);
  v.setUint32(4, 1000);
  b.set(tail, 8);
  return b;
}

/** Its external address; every mapping granted as asked (external port 0 becomes 40000) for at most an hour. */
function goodGateway(n, req) {
  if (req.length === 2 && req[0] === 0 && req[1] === 0) return [answer(0, 0, EXTERNAL.split('.').map(Number))];
  if (req.length === 12 && (req[1] === 1 || req[1] === 2)) {
    const v = new DataView(req.buffer, req.byteOffset);
    const tail = new Uint8Array(8);
    const t = new DataView(tail.buffer);
    t.setUint16(0, v.getUint16(4));
    t.setUint16(2, v.getUint16(6) || 40000);
    t.setUint32(4, Math.min(v.getUint32(8), 3600));
    return [answer(req[1], 0, tail)];
  }
  return [];
}

function failsWith(kind, f) {
  assert.throws(f, (e) => e instanceof natpmp.Failure && e.kind === kind);
}

test('probe then map, renew and unmap on a fake gateway', () => {
  const fake = new FakeGateway(AT, goodGateway);
  const ext = natpmp.probeAt(fake, GW);
  assert.equal(ext, EXTERNAL);
  // A warm map uses the probe's state: one more request, not two.
  const m = natpmp.mapAt(fake, GW, [GW, ext], true, 6881, undefined, 7200);
  assert.equal(fake.sent.length, 2);
  assert.equal(m.external, `${EXTERNAL}:6881`);
  assert.equal(m.lifetime, 3600, "the gateway's grant, not the request");
  const r = natpmp.renewAt(fake, m.state, true, 6881, 6881, 600);
  assert.equal(r.external, m.external);
  assert.deepEqual(fake.sent[2][1], natpmp.mapRequest(2, 6881, 6881, 600));
  natpmp.unmapAt(fake, m.state, true, 6881);
  assert.deepEqual(fake.sent[3], [AT, natpmp.mapRequest(2, 6881, 0, 0)]);
});

test('a cold map asks for the external address first', () => {
  const fake = new FakeGateway(AT, goodGateway);
  const m = natpmp.mapAt(fake, GW, null, false, 7000, undefined, 60);
  assert.deepEqual(fake.sent[0][1], natpmp.externalRequest());
  assert.equal(m.lifetime, 60);
});

test('a silent gateway times out after four tries', () => {
  const fake = new FakeGateway(AT, () => []);
  failsWith('timeout', () => natpmp.probeAt(fake, GW));
  assert.equal(fake.sent.length, 4);
  assert.equal(fake.now, 3_750_000_000);
});

test('a lost request is sent again', () => {
  const fake = new FakeGateway(AT, (n, req) => (n === 0 ? [] : goodGateway(n, req)));
  natpmp.probeAt(fake, GW);
  assert.equal(fake.sent.length, 2);
  assert.equal(fake.now, 250_000_000);
});

test('garbage and strangers are ignored', () => {
  const fake = new FakeGateway(AT, (n, req) => [Uint8Array.of(255, 255, 255), answer(1, 0, new Uint8Array(8)), ...goodGateway(n, req)]);
  fake.inject(`192.168.1.66:${natpmp.PORT}`, answer(0, 0, [6, 6, 6, 6]));
  assert.equal(natpmp.probeAt(fake, GW), EXTERNAL);
});

test("refusals carry the gateway's reason", () => {
  const fake = new FakeGateway(AT, (n, req) => [answer(req[1], 2, new Uint8Array(8))]);
  assert.throws(
    () => natpmp.probeAt(fake, GW),
    (e) => e.kind === 'denied' && e.reason.includes('not authorized') && e.reason.includes('result 2'),
  );
});

test('an answer for another port is a protocol error', () => {
  const fake = new FakeGateway(AT, (n, req) => {
    const a = goodGateway(n, req);
    if (req.length === 12) a[0][9] ^= 1;
    return a;
  });
  failsWith('protocol', () => natpmp.mapAt(fake, GW, null, true, 7000, undefined, 60));
});

test('foreign state is refused before any packet', () => {
  const fake = new FakeGateway(AT, goodGateway);
  failsWith('invalid-request', () => natpmp.renewAt(fake, Uint8Array.of(1, 2), true, 1, 1, 60));
  failsWith('invalid-request', () => natpmp.unmapAt(fake, new Uint8Array(0), true, 1));
  assert.equal(fake.sent.length, 0);
});

test('messages byte by byte', () => {
  assert.deepEqual(natpmp.externalRequest(), Uint8Array.of(0, 0));
  assert.deepEqual(natpmp.mapRequest(1, 0x1234, 0x5678, 0x01020304), Uint8Array.of(0, 1, 0, 0, 0x12, 0x34, 0x56, 0x78, 1, 2, 3, 4));
  const tail = new Uint8Array(8);
  new DataView(tail.buffer).setUint16(0, 6881);
  new DataView(tail.buffer).setUint16(2, 40000);
  new DataView(tail.buffer).setUint32(4, 3600);
  assert.deepEqual(natpmp.parseMap(answer(2, 0, tail)), [6881, 40000, 3600]);
  assert.deepEqual(natpmp.readState(natpmp.state(GW, EXTERNAL)), [GW, EXTERNAL]);
  assert.equal(natpmp.readState(new Uint8Array(7)), null);
});
