"""Which IP addresses can be a mail server on the network at all.

A DNS answer of ``0.0.0.0`` (a sinkhole or a parked name) would make a probe connect to the
monitoring host itself and report *its* state for the target; multicast, broadcast and
reserved addresses cannot be an SMTP peer either. Loopback stays allowed: the lab lives there.
"""

from __future__ import annotations

import ipaddress

_NOT_A_HOST = (
    (ipaddress.ip_network("0.0.0.0/8"), "'this network' (0.0.0.0/8), not a host"),
    (ipaddress.ip_network("240.0.0.0/4"), "reserved (240.0.0.0/4)"),
    (ipaddress.ip_network("255.255.255.255/32"), "the broadcast address"),
)


def unusable_reason(address: str) -> str | None:
    """Why ``address`` cannot be a mail server (None when it can be one).

    Raises ValueError when ``address`` is not an IP address at all.
    """
    ip = ipaddress.ip_address(address.strip())
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "the unspecified address: connecting to it reaches this host, not the target"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address):
        for network, why in _NOT_A_HOST:
            if ip in network:
                return why
    return None
