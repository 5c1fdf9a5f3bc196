"""The report model: data first, rendered last (text, JSON, HTML, the web page).

A :class:`Report` holds one :class:`MailerReport` per mailer; a mailer's report holds one
:class:`Section` per question (relay, DNSBL, identity, ...). A section has a state under the one
ranking rule, findings with levels, links, and the raw evidence (SMTP transcript, DNS records),
or it was not judged at all (``state`` None: the probe is not in this build, or was not asked
for), which is never shown as OK and never counted in the overall state.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from mailprobe.findings import LEVEL_NAMES, SEVERITY, Finding, Level, worst_level

SKIPPED = "SKIPPED"  # the state name of a section that was not judged


@dataclass(frozen=True)
class Link:
    """A page about a finding (a DNSBL's removal page, a map)."""

    label: str
    url: str


@dataclass
class Section:
    """One question about one mailer, answered by one probe."""

    key: str  # stable id: relay, backscatter, dnsbl, identity, domain, geoip, exposure
    title: str
    state: Level | None  # None: not judged (see ``skipped``)
    summary: str
    findings: list[Finding] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)  # JSON-able raw evidence
    skipped: str = ""  # why the section was not judged
    seconds: float = 0.0

    @property
    def state_name(self) -> str:
        return SKIPPED if self.state is None else LEVEL_NAMES[self.state]

    @classmethod
    def not_judged(cls, key: str, title: str, why: str) -> Section:
        return cls(key, title, None, why, skipped=why)


@dataclass
class MailerReport:
    """Every section for one mailer, in the order of :data:`SECTION_ORDER`."""

    target: str  # as the user gave it (a name or an address)
    addresses: list[str] = field(default_factory=list)
    address: str | None = None  # the address the SMTP probes spoke to
    mail_domain: str | None = None
    mail_domain_source: str = ""  # "given" or how it was guessed
    sections: list[Section] = field(default_factory=list)
    error: str = ""  # the mailer could not be audited at all (e.g. its name does not resolve)
    started: str = field(default_factory=lambda: now_iso())
    seconds: float = 0.0

    @property
    def state(self) -> Level:
        """The worst judged section (UNKNOWN when nothing could be judged)."""
        judged = [s.state for s in self.sections if s.state is not None]
        if self.error:
            judged.append(Level.UNKNOWN)
        return worst_level(judged)

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)

    def problems(self) -> list[str]:
        """Summaries of the non-OK judged sections, worst first (for one-line summaries)."""
        bad = [s for s in self.sections if s.state not in (None, Level.OK)]
        bad.sort(key=lambda s: -_rank(s.state))
        texts = [f"{s.title}: {s.summary}" for s in bad]
        return ([self.error] if self.error else []) + texts


@dataclass
class Report:
    """One run of ``mailprobe report`` (or one audit of the web page)."""

    mailers: list[MailerReport] = field(default_factory=list)
    generated: str = field(default_factory=lambda: now_iso())
    version: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # what the run was asked to do

    @property
    def state(self) -> Level:
        return worst_level(m.state for m in self.mailers)

    def worst_first(self) -> list[MailerReport]:
        """The mailers sorted worst first (stable: equal states keep their order)."""
        return sorted(self.mailers, key=lambda m: -_rank(m.state))


def _rank(level: Level | None) -> int:
    return -1 if level is None else SEVERITY[level]


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def section_state(findings: list[Finding]) -> Level:
    """A section's state from its findings: the worst (OK when all are information)."""
    return worst_level((f.level for f in findings), empty=Level.OK)
