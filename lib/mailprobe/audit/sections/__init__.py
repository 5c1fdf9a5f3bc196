"""One adapter per report section: each calls ONE probe and turns its report into a
:class:`~mailprobe.audit.model.Section`. When a probe changes, only its adapter changes.

Sections and the keys of the report model, in report order (:data:`ORDER`).
"""

from __future__ import annotations

ORDER = ("relay", "backscatter", "dnsbl", "identity", "domain", "geoip", "exposure")
TITLES = {
    "relay": "Open relay",
    "backscatter": "Bounces (backscatter)",
    "dnsbl": "DNS blacklists",
    "identity": "Banner and reverse DNS",
    "domain": "Mail domain: MX, SPF, DMARC",
    "geoip": "Location (GeoIP)",
    "exposure": "Exposed ports",
}
