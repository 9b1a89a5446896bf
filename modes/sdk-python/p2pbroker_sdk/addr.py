"""How routable an address is (RFC 6890 registries), as the Rust SDK's
`classify`: pure, so tested on the host."""

import ipaddress

_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]
_SHARED = ipaddress.ip_network("100.64.0.0/10")


def classify(ip):
    """One of global, private, shared (carrier-grade NAT), loopback,
    link-local or reserved, named as the contract's address-class."""
    a = ipaddress.ip_address(ip)
    if a.is_loopback:
        return "loopback"
    if a.is_link_local:
        return "link-local"
    if a.version == 4 and a in _SHARED:
        return "shared"
    if any(a in n for n in _PRIVATE if n.version == a.version):
        return "private"
    if a.is_global:
        return "global"
    return "reserved"
