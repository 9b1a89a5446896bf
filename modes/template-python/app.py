"""A MOD that maps ports with NAT-PMP (RFC 6886), in Python: what
`p2pb mode new --lang python` writes. The conversations are in
natpmp.py (tested on the host by test_natpmp.py); this file is the
lifecycle the broker calls, and the only one that needs the component."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import broker, network, types

import natpmp
from p2pbroker_sdk import net
from p2pbroker_sdk.addr import classify

# This MOD's name: what policies call it. p2pbroker.toml says the same.
NAME = "template-python"


def _fail(f):
    """A natpmp.Failure as the contract's error."""
    kind = {
        "denied": types.ModeError_Denied,
        "timeout": types.ModeError_Timeout,
        "protocol": types.ModeError_Protocol,
        "unsupported": types.ModeError_Unsupported,
        "invalid-request": types.ModeError_InvalidRequest,
    }.get(f.kind, types.ModeError_Unavailable)
    return Err(kind(f.reason[:1024]))


def _gateway():
    for gw in broker.default_gateways():
        if isinstance(gw, network.IpAddress_Ipv4):
            return ".".join(str(x) for x in gw.value)
    raise natpmp.Failure("unavailable", "no IPv4 default gateway")


def _ip(text):
    return network.IpAddress_Ipv4(tuple(int(x) for x in text.split(".")))


def _call(f, *args):
    """Run a conversation on a fresh socket; errors as the contract's."""
    try:
        return f(net.UdpSocket(), *args)
    except natpmp.Failure as e:
        raise _fail(e)
    except net.NetError as e:
        raise net.mode_error(e)


def _mapping(transport, internal, got):
    return types.Mapping(
        transport=transport,
        internal=internal,
        external=net.to_wit(got["external"]),
        lifetime=got["lifetime"],
        state=got["state"],
    )


class Lifecycle(exports.Lifecycle):
    def info(self):
        return types.ModeInfo(name=NAME, version="0.1.0", summary="Maps ports with NAT-PMP (RFC 6886), in Python")

    def probe(self):
        try:
            gw = _gateway()
        except natpmp.Failure as e:
            raise _fail(e)
        ext = _call(natpmp.probe_at, gw)
        # Anything but global is a gateway behind another NAT: say so.
        cls = types.AddressClass[classify(ext).upper().replace("-", "_")]
        return types.ProbeReport(
            gateway=_ip(gw),
            external_address=_ip(ext),
            external_class=cls,
            detail=f"NAT-PMP gateway {gw}, external address {ext}",
            state=natpmp.state(gw, ext),
        )

    def map(self, request):
        if not isinstance(request.internal, network.IpSocketAddress_Ipv4):
            raise Err(types.ModeError_Unsupported("NAT-PMP maps IPv4 only"))
        ip, port = net.from_wit(request.internal)
        if ip != "0.0.0.0" and all(
            not isinstance(a.address, network.IpAddress_Ipv4)
            or ".".join(str(x) for x in a.address.value) != ip
            for a in broker.local_addresses()
        ):
            raise Err(types.ModeError_Unsupported(f"NAT-PMP maps this host only, not {ip}"))
        known = natpmp.read_state(request.probe_state)
        try:
            gw = known[0] if known else _gateway()
        except natpmp.Failure as e:
            raise _fail(e)
        tcp = request.transport == types.Transport.TCP
        got = _call(natpmp.map_at, gw, known, tcp, port, request.external_port, request.lifetime)
        return _mapping(request.transport, request.internal, got)

    def renew(self, current, lifetime):
        tcp = current.transport == types.Transport.TCP
        port = net.from_wit(current.internal)[1]
        ext_port = net.from_wit(current.external)[1]
        got = _call(natpmp.renew_at, current.state, tcp, port, ext_port, lifetime)
        return _mapping(current.transport, current.internal, got)

    def unmap(self, current):
        tcp = current.transport == types.Transport.TCP
        _call(natpmp.unmap_at, current.state, tcp, net.from_wit(current.internal)[1])
