"""DMARC (RFC 7489), informational: is there a valid ``_dmarc`` record, and what policy?

Also home of :func:`organizational_domain` (the registrable domain by the Public Suffix List),
which DMARC falls back to and which check_spf_mx uses to guess a mail domain from a host name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from mailprobe.findings import OK, UNKNOWN, WARNING, Finding
from mailprobe.net.dns import DNSFailure, Lookup
from mailprobe.probes.domains import registrable_domain

POLICIES = ("none", "quarantine", "reject")


if TYPE_CHECKING:
    pass


@lru_cache(maxsize=1)
def organizational_domain(name: str) -> str | None:
    """The organizational domain (RFC 7489 3.2): the registrable domain of ``name``."""
    return registrable_domain(name)


class DMARCSyntaxError(ValueError):
    """Not a valid DMARC record."""


def parse_dmarc(text: str) -> dict[str, str]:
    """The tags of a DMARC record; DMARCSyntaxError if it is not valid."""
    tags: dict[str, str] = {}
    parts = [p.strip() for p in text.split(";")]
    for index, part in enumerate(parts):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or not key:
            raise DMARCSyntaxError(f"bad tag {part!r}")
        if index == 0 and (key != "v" or value != "DMARC1"):
            raise DMARCSyntaxError("must start with v=DMARC1")
        tags.setdefault(key, value)
    policy = tags.get("p", "").lower()
    if policy not in POLICIES:
        raise DMARCSyntaxError("p= must be none, quarantine or reject"
                               if policy else "no p= policy tag")
    sub = tags.get("sp", "").lower()
    if sub and sub not in POLICIES:
        raise DMARCSyntaxError("sp= must be none, quarantine or reject")
    return tags


@dataclass
class DMARCReport:
    domain: str
    found_at: str | None = None  # the name the record was found at
    record: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def policy(self) -> str | None:
        return self.tags.get("p", "").lower() or None


def check_dmarc(domain: str, lookup: Lookup, *, require: bool = False) -> DMARCReport:
    """Find and judge the DMARC record of ``domain`` (or of its organizational domain)."""
    domain = domain.rstrip(".").lower()
    report = DMARCReport(domain)
    missing = WARNING if require else OK
    names = [domain]
    org = organizational_domain(domain)
    if org and org != domain:
        names.append(org)
    try:
        for name in names:
            records = [t for t in lookup.txt(f"_dmarc.{name}")
                       if t.lower().startswith("v=dmarc1")]
            if records:
                report.found_at = f"_dmarc.{name}"
                break
        else:
            report.findings.append(Finding(missing, "dmarc-none", f"no DMARC record for {domain}"))
            return report
    except DNSFailure as exc:
        report.findings.append(Finding(UNKNOWN if require else OK, "dmarc-dns",
                                       f"DMARC look-up failed ({exc.reason})"))
        return report
    if len(records) > 1:
        report.findings.append(Finding(missing, "dmarc-multiple",
                                       f"{len(records)} DMARC records at {report.found_at}: "
                                       "receivers ignore them all"))
        return report
    report.record = records[0]
    try:
        report.tags = parse_dmarc(records[0])
    except DMARCSyntaxError as exc:
        report.findings.append(Finding(missing, "dmarc-invalid",
                                       f"invalid DMARC record at {report.found_at}: {exc}"))
        return report
    note = " (monitoring only)" if report.policy == "none" else ""
    report.findings.append(Finding(OK, "dmarc-ok",
                                   f"DMARC p={report.policy}{note} at {report.found_at}"))
    return report
