"""check_host() (RFC 7208) for the mailer's addresses, by pyspf, through OUR resolver.

pyspf 2.0.14 asks DNS through the module-level function ``spf.DNSLookup`` (its dnspython
driver calls the deprecated ``dns.resolver.query`` on the system resolver, with no way to
choose a nameserver or port). Its maintainer's advice is to replace that function; we do so,
for the duration of one evaluation only, with an adapter over :class:`mailprobe.net.dns.Lookup`:
every question goes to ``--nameserver`` (port included), draws on the check's Deadline, and
a :class:`DNSFailure` becomes pyspf's ``TempError`` (so check_host() returns temperror).
The system resolver is never used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from mailprobe.net.dns import DNSFailure, Lookup


def _pyspf() -> ModuleType:
    """pyspf, imported when an evaluation is asked for (-H): a lint-only run is spared it."""
    import spf

    return spf

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")


@dataclass(frozen=True)
class Evaluation:
    """check_host(address, domain, sender) and pyspf's explanation."""

    address: str
    domain: str
    sender: str
    result: str
    explanation: str
    lookups: int


def _adapter(lookup: Lookup):
    """A replacement for ``spf.DNSLookup(name, qtype, strict, timeout)`` over ``lookup``."""

    def dns_lookup(name: str, qtype: str, strict: object = True, timeout: object = None):
        try:
            answer = lookup.query(name, qtype)
        except DNSFailure as exc:
            raise _pyspf().TempError(f"{name} {qtype}: {exc.reason}") from exc
        if answer is None:
            return []
        out = []
        for rdata in answer:
            if qtype in ("A", "AAAA"):
                value: object = rdata.address
            elif qtype == "MX":
                # null MX ("."): an empty name, which pyspf skips instead of choking on it
                exchange = "" if rdata.exchange.to_text() == "." else rdata.exchange.to_text()
                value = (rdata.preference, exchange.rstrip("."))
            elif qtype == "PTR":
                value = rdata.target.to_text(omit_final_dot=True)
            elif qtype in ("TXT", "SPF"):
                value = tuple(rdata.strings)
            else:
                continue
            out.append(((name, qtype), value))
        return out

    return dns_lookup


@contextlib.contextmanager
def using(lookup: Lookup) -> Iterator[None]:
    """Point pyspf at ``lookup`` while the block runs (the plugin is single-threaded)."""
    pyspf = _pyspf()
    saved = getattr(pyspf, "DNSLookup")  # noqa: B009 (pyspf picks its DNS layer at run time)
    setattr(pyspf, "DNSLookup", _adapter(lookup))  # noqa: B010
    try:
        yield
    finally:
        setattr(pyspf, "DNSLookup", saved)  # noqa: B010


def evaluate(address: str, domain: str, lookup: Lookup, helo: str | None = None,
             sender: str | None = None) -> Evaluation:
    """check_host() for one client address and sender domain.

    The sender defaults to ``postmaster@domain``. A timeout of the whole check
    (BudgetExhausted) is not an SPF result and propagates.
    """
    sender = sender or f"postmaster@{domain}"
    with using(lookup):
        query = _pyspf().query(i=address, s=sender, h=helo or domain, strict=True, querytime=0)
        result, _code, explanation = query.check()
    return Evaluation(address, domain, sender, result, explanation, query.lookups)
