"""What may be scanned: the targets of the command line, their size limits, the sanctioned mailers.

Nothing is ever scanned that the command line (or a file it names) does not give. A prefix
covers its addresses, except that an IPv4 prefix of four addresses or more leaves out its
network and broadcast addresses (as ``ipaddress``'s ``hosts()`` does): they are not hosts.
Prefixes are limited in size (``max_addresses``, by default 65536: an IPv4 /16 or an IPv6 /112)
unless forced, and never beyond :data:`HARD_LIMIT`. Ranges that cannot hold a host (0.0.0.0/8,
multicast, 240/4, IPv4-mapped IPv6) are refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from mailprobe.net.addresses import unusable_reason

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_ADDRESSES = 1 << 16  # an IPv4 /16, an IPv6 /112
HARD_LIMIT = 1 << 24  # an IPv4 /8: more is refused even with --force

_NOT_HOSTS: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("0.0.0.0/8"), "'this network' 0.0.0.0/8"),
    (ipaddress.ip_network("224.0.0.0/4"), "multicast 224.0.0.0/4"),
    (ipaddress.ip_network("240.0.0.0/4"), "reserved 240.0.0.0/4 and the broadcast address"),
    (ipaddress.ip_network("::/128"), "the unspecified address ::"),
    (ipaddress.ip_network("ff00::/8"), "multicast ff00::/8"),
    (ipaddress.ip_network("::ffff:0:0/96"), "IPv4-mapped addresses (give the IPv4 address)"),
)


class TargetError(ValueError):
    """A target or allow entry that cannot be used (a bad option)."""


def parse_entry(text: str) -> IPAddress | IPNetwork | str:
    """An address, a prefix (``CIDR``), or else the text itself (a host name, checked by the
    caller). Raises TargetError for a malformed prefix."""
    text = text.strip()
    if "/" in text:
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise TargetError(f"{text!r} is not an IPv4/IPv6 prefix ({exc})") from None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return text


def parse_prefix(text: str) -> IPNetwork:
    """argparse helper for ``-N``: a prefix (a bare address counts as a /32 or /128)."""
    entry = parse_entry(text)
    if isinstance(entry, str):
        raise TargetError(f"{text!r} is not an IPv4/IPv6 prefix (give e.g. 192.0.2.0/24)")
    return ipaddress.ip_network(entry) if not isinstance(entry, IPNetwork) else entry


def prefix_problem(network: IPNetwork) -> str | None:
    """Why ``network`` cannot be scanned (None when it can)."""
    for bad, why in _NOT_HOSTS:
        if network.version == bad.version and network.overlaps(bad):
            return f"it includes {why}"
    return None


def address_problem(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return "an IPv4-mapped address (give the IPv4 address)"
    return unusable_reason(str(address))


def _has_edges(network: IPNetwork) -> bool:
    """An IPv4 prefix of four addresses or more: its first and last are not hosts."""
    return network.version == 4 and network.prefixlen <= 30


def _is_host_of(address: IPAddress, network: IPNetwork) -> bool:
    return not (_has_edges(network)
                and address in (network.network_address, network.broadcast_address))


def _size(count: int) -> str:
    return f"{count} addresses"


@dataclass
class Targets:
    """The addresses to scan: collapsed prefixes, less the left-out network/broadcast addresses."""

    networks: list[IPNetwork] = field(default_factory=list)
    left_out: set[IPAddress] = field(default_factory=set)

    def __len__(self) -> int:
        inside = sum(1 for a in self.left_out if any(a in n for n in self.networks))
        return sum(n.num_addresses for n in self.networks) - inside

    def __iter__(self) -> Iterator[str]:
        for network in self.networks:
            for address in network:
                if address not in self.left_out:
                    yield str(address)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            try:
                address = ipaddress.ip_address(str(address))
            except ValueError:
                return False
        return address not in self.left_out and any(
            address in n for n in self.networks if n.version == address.version)


def build_targets(prefixes: Iterable[IPNetwork], addresses: Iterable[IPAddress], *,
                  max_addresses: int = DEFAULT_MAX_ADDRESSES, force: bool = False,
                  family: int = 0) -> Targets:
    """The scan's addresses from ``-N`` prefixes and single addresses (``-H``, ``--hosts``).

    Raises TargetError for a prefix or a total over the limit (unless ``force``; never over
    :data:`HARD_LIMIT`), a range that cannot hold hosts, or an address of the other family
    when ``family`` (4 or 6) is given.
    """
    limit = HARD_LIMIT if force else min(max_addresses, HARD_LIMIT)
    how = "" if force else " (raise --max-addresses or give --force)"
    networks: list[IPNetwork] = []
    left_out: set[IPAddress] = set()
    singles = [ipaddress.ip_network(a) for a in addresses]
    for network in prefixes:
        if family and network.version != family:
            raise TargetError(f"-{family} given but {network} is IPv{network.version}")
        problem = prefix_problem(network)
        if problem:
            raise TargetError(f"{network} cannot be scanned: {problem}")
        if network.num_addresses > limit:
            raise TargetError(f"{network} has {_size(network.num_addresses)}, more than the "
                              f"limit of {limit}{how}")
        networks.append(network)
    # a network or broadcast address stays out only if no prefix has it as a host
    for network in networks:
        if _has_edges(network):
            for edge in (network.network_address, network.broadcast_address):
                if not any(_is_host_of(edge, n) for n in networks if edge in n):
                    left_out.add(edge)
    for single in singles:
        address = single.network_address
        if family and single.version != family:
            raise TargetError(f"-{family} given but {address} is IPv{single.version}")
        problem = address_problem(address)
        if problem:
            raise TargetError(f"{address} cannot be scanned: {problem}")
        left_out.discard(address)  # named on its own: scanned whatever prefix it ends
        networks.append(single)
    collapsed: list[IPNetwork] = [
        *ipaddress.collapse_addresses(n for n in networks if isinstance(n, ipaddress.IPv4Network)),
        *ipaddress.collapse_addresses(n for n in networks if isinstance(n, ipaddress.IPv6Network)),
    ]
    targets = Targets(collapsed, left_out)
    total = len(targets)
    if total > limit:
        raise TargetError(f"the targets total {_size(total)}, more than the limit of {limit}"
                          f"{how}")
    return targets


@dataclass
class AllowList:
    """The sanctioned mailers: addresses (given, or looked up from names) and prefixes."""

    addresses: dict[IPAddress, str] = field(default_factory=dict)  # address -> as given
    networks: list[IPNetwork] = field(default_factory=list)

    def add(self, entry: IPAddress | IPNetwork, given: str = "") -> None:
        if isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
            if entry.num_addresses == 1:
                entry = entry.network_address
            else:
                if entry not in self.networks:
                    self.networks.append(entry)
                return
        self.addresses.setdefault(entry, given or str(entry))

    def sanctions(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return ip in self.addresses or any(
            ip in n for n in self.networks if n.version == ip.version)

    def mailers(self) -> list[str]:
        """The single sanctioned addresses (a mailer each), in address order."""
        return [str(a) for a in sorted(self.addresses, key=lambda a: (a.version, int(a)))]

    def label(self, address: str) -> str:
        """``192.0.2.25`` or ``mx.example.org (192.0.2.25)`` for a looked-up name."""
        given = self.addresses.get(ipaddress.ip_address(address), address)
        return address if given == address else f"{given} ({address})"
