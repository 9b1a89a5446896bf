// The JavaScript SDK's pure parts: `node --test` in modes/sdk-js.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { classify } from './p2pbroker_sdk/addr.js';
import { IGNORE, Timeout, exchangeOn } from './p2pbroker_sdk/exchange.js';
import { FakeGateway } from './p2pbroker_sdk/testing.js';

const GW = '192.0.2.1:5351';
const schedule = (n) => (n < 4 ? 250_000_000 * 2 ** n : null);

test('a silent gateway is a timeout after the schedule', () => {
  const fake = new FakeGateway(GW, () => []);
  assert.throws(() => exchangeOn(fake, GW, [1], schedule, 60_000_000_000, (b) => b), Timeout);
  assert.equal(fake.sent.length, 4);
  assert.equal(fake.now, 3_750_000_000);
});

test('the budget cuts the schedule short', () => {
  const fake = new FakeGateway(GW, () => []);
  assert.throws(() => exchangeOn(fake, GW, [1], schedule, 600_000_000, (b) => b), Timeout);
  assert.deepEqual([fake.sent.length, fake.now], [2, 600_000_000]);
});

test('strays and ignored answers are skipped', () => {
  const fake = new FakeGateway(GW, () => [[1], [2]]);
  fake.inject('192.0.2.9:5351', [2]);
  const got = exchangeOn(fake, GW, [0], schedule, 1_000_000_000, (b) => (b[0] === 2 ? 'ok' : IGNORE));
  assert.equal(got, 'ok');
  assert.deepEqual([fake.sent.length, fake.now], [1, 0]);
});

test('classes', () => {
  for (const [ip, want] of [['8.8.8.8', 'global'], ['10.1.2.3', 'private'], ['100.64.0.1', 'shared'],
    ['127.0.0.1', 'loopback'], ['169.254.1.1', 'link-local'], ['203.0.113.7', 'reserved'], ['172.32.0.1', 'global']]) {
    assert.equal(classify(ip), want, ip);
  }
});
