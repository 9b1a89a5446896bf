"""The MOD's conversations against the SDK's fake gateway, and its
messages byte by byte: `python3 -m unittest` on the host."""

import struct
import unittest

import natpmp
from natpmp import Failure
from p2pbroker_sdk.testing import FakeGateway

GW = "192.168.1.1"
EXTERNAL = "203.0.113.7"
AT = (GW, natpmp.PORT)


def answer(op, result, tail):
    """Version 0, opcode `op` + 128, result code, epoch 1000, `tail`."""
    return bytes([0, 128 + op]) + struct.pack("!HI", result, 1000) + tail


def good_gateway(n, req):
    """Its external address; every mapping granted as asked (external
    port 0 becomes 40000) for at most an hour."""
    if req == bytes([0, 0]):
        return [answer(0, 0, bytes(int(x) for x in EXTERNAL.split(".")))]
    if len(req) == 12 and req[1] in (1, 2):
        _, op, _, inside, outside, life = struct.unpack("!BBHHHI", req)
        return [answer(op, 0, struct.pack("!HHI", inside, outside or 40000, min(life, 3600)))]
    return []


class FakeGatewayTests(unittest.TestCase):
    def test_probe_then_map_renew_and_unmap(self):
        fake = FakeGateway(AT, good_gateway)
        ext = natpmp.probe_at(fake, GW)
        self.assertEqual(ext, EXTERNAL)
        # A warm map uses the probe's state: one more request, not two.
        m = natpmp.map_at(fake, GW, (GW, ext), True, 6881, None, 7200)
        self.assertEqual(len(fake.sent), 2)
        self.assertEqual(m["external"], (EXTERNAL, 6881))
        self.assertEqual(m["lifetime"], 3600, "the gateway's grant, not the request")
        r = natpmp.renew_at(fake, m["state"], True, 6881, 6881, 600)
        self.assertEqual(r["external"], m["external"])
        self.assertEqual(fake.sent[2][1], natpmp.map_request(2, 6881, 6881, 600))
        natpmp.unmap_at(fake, m["state"], True, 6881)
        self.assertEqual(fake.sent[3], (AT, natpmp.map_request(2, 6881, 0, 0)))

    def test_a_cold_map_asks_for_the_external_address_first(self):
        fake = FakeGateway(AT, good_gateway)
        m = natpmp.map_at(fake, GW, None, False, 7000, None, 60)
        self.assertEqual(fake.sent[0][1], natpmp.external_request())
        self.assertEqual(m["lifetime"], 60)

    def test_a_silent_gateway_times_out_after_four_tries(self):
        fake = FakeGateway(AT, lambda n, req: [])
        with self.assertRaises(Failure) as e:
            natpmp.probe_at(fake, GW)
        self.assertEqual(e.exception.kind, "timeout")
        self.assertEqual(len(fake.sent), 4)
        self.assertEqual(fake.now, (250 + 500 + 1000 + 2000) * 1_000_000)

    def test_a_lost_request_is_sent_again(self):
        fake = FakeGateway(AT, lambda n, req: [] if n == 0 else good_gateway(n, req))
        natpmp.probe_at(fake, GW)
        self.assertEqual(len(fake.sent), 2)
        self.assertEqual(fake.now, 250_000_000)

    def test_garbage_and_strangers_are_ignored(self):
        fake = FakeGateway(AT, lambda n, req: [b"\xff" * 3, answer(1, 0, bytes(8))] + good_gateway(n, req))
        fake.inject(("192.168.1.66", natpmp.PORT), answer(0, 0, bytes([6, 6, 6, 6])))
        self.assertEqual(natpmp.probe_at(fake, GW), EXTERNAL)

    def test_refusals_carry_the_gateways_reason(self):
        fake = FakeGateway(AT, lambda n, req: [answer(req[1], 2, bytes(8))])
        with self.assertRaises(Failure) as e:
            natpmp.probe_at(fake, GW)
        self.assertEqual(e.exception.kind, "denied")
        self.assertIn("not authorized", e.exception.reason)
        self.assertIn("result 2", e.exception.reason)

    def test_an_answer_for_another_port_is_a_protocol_error(self):
        def other_port(n, req):
            a = good_gateway(n, req)
            if len(req) == 12:
                a[0] = a[0][:9] + bytes([a[0][9] ^ 1]) + a[0][10:]
            return a
        fake = FakeGateway(AT, other_port)
        with self.assertRaises(Failure) as e:
            natpmp.map_at(fake, GW, None, True, 7000, None, 60)
        self.assertEqual(e.exception.kind, "protocol")

    def test_foreign_state_is_refused_before_any_packet(self):
        fake = FakeGateway(AT, good_gateway)
        for call in (lambda: natpmp.renew_at(fake, b"\x01\x02", True, 1, 1, 60),
                     lambda: natpmp.unmap_at(fake, b"", True, 1)):
            with self.assertRaises(Failure) as e:
                call()
            self.assertEqual(e.exception.kind, "invalid-request")
        self.assertEqual(fake.sent, [])


class MessageTests(unittest.TestCase):
    def test_messages_byte_by_byte(self):
        self.assertEqual(natpmp.external_request(), b"\x00\x00")
        self.assertEqual(
            natpmp.map_request(1, 0x1234, 0x5678, 0x01020304),
            bytes([0, 1, 0, 0, 0x12, 0x34, 0x56, 0x78, 1, 2, 3, 4]),
        )
        self.assertEqual(natpmp.parse_map(answer(2, 0, struct.pack("!HHI", 6881, 40000, 3600))), (6881, 40000, 3600))
        self.assertEqual(natpmp.read_state(natpmp.state(GW, EXTERNAL)), (GW, EXTERNAL))
        self.assertIsNone(natpmp.read_state(bytes(7)))


if __name__ == "__main__":
    unittest.main()
