"""The Python SDK's pure parts: `python3 -m unittest` in modes/sdk-python."""

import unittest

from p2pbroker_sdk.addr import classify
from p2pbroker_sdk.exchange import IGNORE, Timeout, exchange_on
from p2pbroker_sdk.testing import FakeGateway

GW = ("192.0.2.1", 5351)


def schedule(n):
    return 250_000_000 << n if n < 4 else None


class ExchangeTests(unittest.TestCase):
    def test_a_silent_gateway_is_a_timeout_after_the_schedule(self):
        fake = FakeGateway(GW, lambda n, r: [])
        with self.assertRaises(Timeout):
            exchange_on(fake, GW, b"x", schedule, 60_000_000_000, lambda b: b)
        self.assertEqual(len(fake.sent), 4)
        self.assertEqual(fake.now, 3_750_000_000)

    def test_the_budget_cuts_the_schedule_short(self):
        fake = FakeGateway(GW, lambda n, r: [])
        with self.assertRaises(Timeout):
            exchange_on(fake, GW, b"x", schedule, 600_000_000, lambda b: b)
        self.assertEqual((len(fake.sent), fake.now), (2, 600_000_000))

    def test_strays_and_ignored_answers_are_skipped(self):
        fake = FakeGateway(GW, lambda n, r: [b"bad", b"ok"])
        fake.inject(("192.0.2.9", 5351), b"ok")
        got = exchange_on(fake, GW, b"x", schedule, 1_000_000_000, lambda b: b if b == b"ok" else IGNORE)
        self.assertEqual(got, b"ok")
        self.assertEqual((len(fake.sent), fake.now), (1, 0))


class ClassifyTests(unittest.TestCase):
    def test_classes(self):
        for ip, want in [("8.8.8.8", "global"), ("10.1.2.3", "private"), ("100.64.0.1", "shared"),
                         ("127.0.0.1", "loopback"), ("169.254.1.1", "link-local"),
                         ("203.0.113.7", "reserved"), ("2001:db8::1", "reserved"), ("fd00::1", "private")]:
            self.assertEqual(classify(ip), want, ip)


if __name__ == "__main__":
    unittest.main()
