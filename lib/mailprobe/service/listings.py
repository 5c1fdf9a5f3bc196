"""The DNSBL listings of a tested address, for the report (seed 001 "Getting off blacklists")."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Nameserver
from mailprobe.probes.dnsbl.lookup import Target, probe
from mailprobe.probes.dnsbl.zones import IP, Zone, default_zones, known_zone


@dataclass(frozen=True)
class Listing:
    zone: str
    meaning: str
    removal: str          # the list's look-up/removal page ('' when none is known)
    reason: str           # the list's TXT text


@dataclass
class Listings:
    listed: list[Listing] = field(default_factory=list)
    clean: list[str] = field(default_factory=list)
    unchecked: list[tuple[str, str]] = field(default_factory=list)   # (zone, why)


def zones_for(names: list[str]) -> list[Zone]:
    if not names:
        return [z for z in default_zones() if z.kind == IP]
    return [known_zone(n) or Zone(n.lower().rstrip(".")) for n in names]


def look_up(address: str, zone_names: list[str], nameserver: str,
            seconds: float = 20.0) -> Listings:
    """Ask every IP list about ``address`` through ``nameserver`` (the service's resolver)."""
    servers = [Nameserver.parse(nameserver)] if nameserver else None
    report = probe([Target.address(address)], zones_for(zone_names), Deadline(seconds),
                   nameservers=servers, query_timeout=min(5.0, seconds))
    found = Listings()
    for result in report.results:
        if result.status == "listed":
            meaning = "; ".join(d.meaning for d in result.listings) or "listed"
            found.listed.append(Listing(result.zone.host, meaning,
                                        result.zone.lookup_url(address),
                                        " ".join(result.txt)))
        elif result.status == "clean":
            found.clean.append(result.zone.host)
        else:
            found.unchecked.append((result.zone.host, result.reason or result.status))
    return found
