"""Who may have which address tested (pure rules; the counts come from the queue).

Per address, in this order: it must be a usable host address; it must lie in a site's
``networks`` (else it is refused and never touched); the requester must match that site's
``requesters``; the request must be authenticated; and the rate limits must allow one more
test (per requester: requests in the window; per address: tests in the window).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from mailprobe.net.addresses import unusable_reason
from mailprobe.service.authn import Authentication
from mailprobe.service.config import Settings, Site


@dataclass(frozen=True)
class Decision:
    address: str
    authorised: bool
    site: str = ""
    reason: str = ""          # why refused; or, when authorised, who allowed it


def requester_allowed(requester: str, site: Site) -> bool:
    """``requester`` matches one of the site's patterns (``*@example.ac.uk``, an address)."""
    return any(fnmatch.fnmatchcase(requester.lower(), pattern) for pattern in site.requesters)


def site_of(settings: Settings, address: str) -> Site | None:
    return next((site for site in settings.sites if site.contains(address)), None)


def decide(settings: Settings, requester: str, addresses: list[str], auth: Authentication,
           requests_in_window: int, tests_in_window: dict[str, int]) -> list[Decision]:
    """One decision per address, in order."""
    limits = settings.limits
    over_requests = requests_in_window >= limits.requests_per_requester
    decisions = []
    for address in addresses:
        why = unusable_reason(address)
        if why:
            decisions.append(Decision(address, False, reason=f"not a host address ({why})"))
            continue
        site = site_of(settings, address)
        if site is None:
            decisions.append(Decision(address, False, reason="outside every network this "
                                      "service tests; it was not touched"))
            continue
        if not requester_allowed(requester, site):
            decisions.append(Decision(address, False, site.name,
                                      f"{requester} may not request tests of {site.name}'s "
                                      f"mailers (ask {site.postmaster})"))
            continue
        if not auth.ok:
            decisions.append(Decision(address, False, site.name, auth.reason))
            continue
        if over_requests:
            decisions.append(Decision(address, False, site.name,
                                      f"rate limit: {requester} sent "
                                      f"{limits.requests_per_requester} requests in the last "
                                      f"{_span(limits.window)}; try again later"))
            continue
        if tests_in_window.get(address, 0) >= limits.tests_per_address:
            decisions.append(Decision(address, False, site.name,
                                      f"rate limit: {address} was tested "
                                      f"{limits.tests_per_address} times in the last "
                                      f"{_span(limits.window)}; try again later"))
            continue
        decisions.append(Decision(address, True, site.name, f"in {site.name}'s networks"))
    return decisions


def _span(seconds: float) -> str:
    if seconds % 86400 == 0:
        days = int(seconds // 86400)
        return "day" if days == 1 else f"{days} days"
    if seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return "hour" if hours == 1 else f"{hours} hours"
    return f"{seconds:g} seconds"
