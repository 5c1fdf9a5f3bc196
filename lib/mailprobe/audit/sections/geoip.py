"""Section "geoip": where the mailer's addresses are (probes.geoip, offline data)."""

from __future__ import annotations

from mailprobe.audit.context import MailerContext
from mailprobe.audit.model import Link, Section
from mailprobe.audit.sections import TITLES
from mailprobe.findings import OK, UNKNOWN, Finding
from mailprobe.probes.geoip import GeoDatabase, GeoIPError, Location, locate

KEY = "geoip"


def run(ctx: MailerContext, database: GeoDatabase | None = None) -> Section:
    """Informational: OK with the places found, UNKNOWN only when the data cannot be read."""
    title = TITLES[KEY]
    findings: list[Finding] = []
    locations: list[Location] = []
    for address in ctx.addresses:
        try:
            location = locate(address, database)
        except GeoIPError as exc:
            findings.append(Finding(UNKNOWN, "geoip-error", str(exc), subject=address))
            continue
        locations.append(location)
        findings.append(Finding(OK, f"geoip-{location.scope}", location.line(),
                                subject=address))
    if not ctx.addresses:
        findings.append(Finding(UNKNOWN, "no-address", "no address to locate"))
    state = UNKNOWN if any(f.level == UNKNOWN for f in findings) else OK
    links = [Link(f"Map it: {loc.address}", loc.map_url) for loc in locations if loc.map_url]
    sources = {(loc.source, loc.built, loc.attribution) for loc in locations if loc.source}
    summary = "; ".join(f.text for f in findings[:2])
    return Section(KEY, title, state, summary, findings, links, evidence={
        "locations": [{
            "address": loc.address, "scope": loc.scope, "note": loc.note,
            "country_code": loc.country_code, "country": loc.country, "city": loc.city,
            "asn": loc.asn, "as_name": loc.as_name, "network": loc.network,
            "latitude": loc.latitude, "longitude": loc.longitude, "map_url": loc.map_url,
        } for loc in locations],
        "sources": [{"source": s, "built": b, "attribution": a} for s, b, a in sorted(sources)],
    })
