"""NAT-PMP (RFC 6886): the messages as pure functions over bytes, and one
conversation per lifecycle call over any datagram socket (`net.UdpSocket`
in the component, `testing.FakeGateway` in the tests). Nothing here
imports the component's bindings, so all of it runs under plain Python."""

import ipaddress
import struct

from p2pbroker_sdk.exchange import IGNORE, Timeout, exchange_on

PORT = 5351
BUDGET_NS = 4_000_000_000
RESULTS = {
    1: "unsupported version",
    2: "not authorized or refused",
    3: "network failure (no external address yet)",
    4: "out of resources",
    5: "unsupported opcode",
}


class Failure(Exception):
    """A lifecycle call failed: `kind` is one of the contract's error kinds
    (unavailable, denied, timeout, protocol, unsupported, invalid-request)."""

    def __init__(self, kind, reason):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def schedule(attempt):
    """After 250 ms, doubling (RFC 6886 §3.1), four tries."""
    return 250_000_000 << attempt if attempt < 4 else None


def external_request():
    return bytes([0, 0])


def map_request(op, internal, external, lifetime):
    """`op` 1 for UDP, 2 for TCP; lifetime 0 removes the mapping."""
    return struct.pack("!BBHHHI", 0, op, 0, internal, external, lifetime)


def _result(data, op, size):
    """None if `data` is not the answer to opcode `op`, else its result code."""
    if len(data) < size or data[0] != 0 or data[1] != 128 + op:
        return None
    return struct.unpack("!H", data[2:4])[0]


def _judged(parse, op, size):
    def judge(data):
        code = _result(data, op, size)
        if code is None:
            return IGNORE
        if code != 0:
            kind = {2: "denied", 1: "unsupported", 5: "unsupported"}.get(code, "unavailable")
            text = RESULTS.get(code, "unknown result code")
            raise Failure(kind, f"the gateway refused: {text} (result {code})")
        return parse(data)
    return judge


def parse_external(data):
    return str(ipaddress.IPv4Address(data[8:12]))


def parse_map(data):
    """(internal port, external port, lifetime)."""
    return struct.unpack("!HHI", data[8:16])


def ask(io, gateway, request, judge):
    try:
        return exchange_on(io, (gateway, PORT), request, schedule, BUDGET_NS, judge)
    except Timeout:
        raise Failure("timeout", "the gateway did not answer")


def state(gateway, external):
    """The `state` blob: the gateway and its external address, 8 bytes."""
    return ipaddress.IPv4Address(gateway).packed + ipaddress.IPv4Address(external).packed


def read_state(blob):
    """(gateway, external) from a `state` blob, or None if not ours."""
    if len(blob) != 8:
        return None
    return str(ipaddress.IPv4Address(blob[:4])), str(ipaddress.IPv4Address(blob[4:]))


def probe_at(io, gateway):
    """The gateway's external address."""
    return ask(io, gateway, external_request(), _judged(parse_external, 0, 12))


def map_at(io, gateway, known, tcp, internal_port, external_port, lifetime):
    """Map `internal_port` on `gateway` (or the gateway of `known`, the
    probe's state, skipping the address query): a dict with `external`
    ((ip, port)), `lifetime` and `state`."""
    if known is None:
        known = (gateway, probe_at(io, gateway))
    gateway, external = known
    if external == "0.0.0.0":
        raise Failure("unavailable", "the gateway has no external address yet")
    op = 2 if tcp else 1
    req = map_request(op, internal_port, external_port or internal_port, lifetime)
    inside, outside, granted = ask(io, gateway, req, _judged(parse_map, op, 16))
    if inside != internal_port or outside == 0 or granted == 0:
        raise Failure(
            "protocol",
            f"the gateway answered for internal port {inside}, external {outside}, lifetime {granted}",
        )
    return {"external": (external, outside), "lifetime": granted, "state": state(gateway, external)}


def renew_at(io, blob, tcp, internal_port, external_port, lifetime):
    known = read_state(blob)
    if known is None:
        raise Failure("invalid-request", "the mapping's state is not ours")
    return map_at(io, known[0], known, tcp, internal_port, external_port, lifetime)


def unmap_at(io, blob, tcp, internal_port):
    known = read_state(blob)
    if known is None:
        raise Failure("invalid-request", "the mapping's state is not ours")
    op = 2 if tcp else 1
    ask(io, known[0], map_request(op, internal_port, 0, 0), _judged(parse_map, op, 16))
