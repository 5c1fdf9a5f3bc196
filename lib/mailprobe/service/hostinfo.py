"""The tested host's name and its postmaster (reports go to postmaster at the tested host).

The PTR name counts only when it is forward-confirmed (its A/AAAA records include the
address): anyone controlling a reverse zone can write any name there. Postmaster at the host
is ``postmaster@`` the PTR name's parent domain (``mx1.example.ac.uk`` -> ``example.ac.uk``;
the name itself when its parent is a public suffix), else ``postmaster@[address literal]``.
"""

from __future__ import annotations

import ipaddress

from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.dns import DNSFailure, Lookup, Nameserver, make_resolver


def host_name(address: str, nameserver: str, seconds: float = 10.0) -> str:
    """The forward-confirmed PTR name of ``address``, '' when there is none or DNS fails."""
    servers = [Nameserver.parse(nameserver)] if nameserver else None
    lookup = Lookup(make_resolver(servers, timeout=min(5.0, seconds)), Deadline(seconds))
    try:
        for name in lookup.ptr(address):
            family = 6 if ":" in address else 4
            forward = [str(ipaddress.ip_address(a)) for a in lookup.addresses(name, family)]
            if str(ipaddress.ip_address(address)) in forward:
                return name.lower()
    except (DNSFailure, BudgetExhausted):
        return ""
    return ""


def postmaster_of(address: str, name: str) -> str:
    if name and "." in name:
        from mailprobe.probes.dmarc import organizational_domain

        parent = name.split(".", 1)[1]
        domain = parent if organizational_domain(parent) else name
        return f"postmaster@{domain}"
    ip = ipaddress.ip_address(address)
    literal = f"[IPv6:{ip}]" if ip.version == 6 else f"[{ip}]"
    return f"postmaster@{literal}"


def recipients(*addresses: str) -> list[str]:
    """Distinct recipients in order (case-blind)."""
    seen: dict[str, str] = {}
    for address in addresses:
        if address and address.lower() not in seen:
            seen[address.lower()] = address
    return list(seen.values())
