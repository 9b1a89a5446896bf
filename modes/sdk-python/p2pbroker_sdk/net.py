"""UDP over wasi:sockets for MODs in Python: every address passes the
broker's capability gate (a refusal is `NetError("denied")`); a datagram
from a source the MOD may not receive from is dropped by the host and
shows up as a timeout. Runs inside the component only."""

from componentize_py_types import Err
from wit_world.imports import (
    instance_network,
    monotonic_clock,
    network,
    poll,
    types,
    udp,
    udp_create_socket,
)


class NetError(Exception):
    """A socket operation failed: `kind` is denied, timeout, refused,
    unreachable or other."""

    def __init__(self, kind, detail=""):
        super().__init__(detail or kind)
        self.kind = kind


def _net_error(e):
    code = e.value if isinstance(e, Err) else None
    kind = {
        network.ErrorCode.ACCESS_DENIED: "denied",
        network.ErrorCode.TIMEOUT: "timeout",
        network.ErrorCode.CONNECTION_REFUSED: "refused",
        network.ErrorCode.CONNECTION_RESET: "refused",
        network.ErrorCode.REMOTE_UNREACHABLE: "unreachable",
    }.get(code, "other")
    name = code.name.lower().replace("_", "-") if code is not None else str(e)
    return NetError(kind, name)


def mode_error(e):
    """A `NetError` as the contract's error, to raise from a lifecycle call."""
    if e.kind == "denied":
        return Err(types.ModeError_Denied("denied by the broker's capability gate"))
    if e.kind == "timeout":
        return Err(types.ModeError_Timeout("timed out"))
    return Err(types.ModeError_Unavailable(f"socket error: {e}"))


def to_wit(addr):
    """(ip_text, port) as a WIT socket address (IPv4)."""
    ip, port = addr
    octets = tuple(int(x) for x in ip.split("."))
    return network.IpSocketAddress_Ipv4(network.Ipv4SocketAddress(port=port, address=octets))


def from_wit(a):
    """A WIT socket address (IPv4) as (ip_text, port)."""
    v = a.value
    return (".".join(str(x) for x in v.address), v.port)


def _wait(pollable, deadline_ns):
    if monotonic_clock.now() >= deadline_ns:
        return False
    timer = monotonic_clock.subscribe_instant(deadline_ns)
    poll.poll([pollable, timer])
    return True


class UdpSocket:
    """A UDP socket bound to an ephemeral IPv4 port."""

    def __init__(self):
        try:
            self.socket = udp_create_socket.create_udp_socket(network.IpAddressFamily.IPV4)
            self.socket.start_bind(instance_network.instance_network(), to_wit(("0.0.0.0", 0)))
            deadline = monotonic_clock.now() + 1_000_000_000
            while True:
                try:
                    self.socket.finish_bind()
                    break
                except Err as e:
                    if e.value != network.ErrorCode.WOULD_BLOCK:
                        raise
                    if not _wait(self.socket.subscribe(), deadline):
                        raise NetError("timeout")
            self.incoming, self.outgoing = self.socket.stream(None)
        except Err as e:
            raise _net_error(e)

    def send_to(self, data, to):
        try:
            deadline = monotonic_clock.now() + 1_000_000_000
            while self.outgoing.check_send() == 0:
                if not _wait(self.outgoing.subscribe(), deadline):
                    raise NetError("timeout")
            self.outgoing.send([udp.OutgoingDatagram(bytes(data), to_wit(to))])
        except Err as e:
            raise _net_error(e)

    def recv_until(self, size, deadline_ns):
        try:
            while True:
                got = self.incoming.receive(1)
                if got:
                    return bytes(got[0].data[:size]), from_wit(got[0].remote_address)
                if not _wait(self.incoming.subscribe(), deadline_ns):
                    return None
        except Err as e:
            raise _net_error(e)

    def now_ns(self):
        return monotonic_clock.now()
