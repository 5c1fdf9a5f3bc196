"""Registrable domains by the Public Suffix List (the list bundled with publicsuffixlist: no
network), and the mail domain a server's host name suggests. One place for every guess: the
relay, backscatter, smuggling and exposure checks, the report and the request service."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from mailprobe.probes.relay.catalogue import AddressError, check_domain

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList


@functools.cache
def public_suffixes() -> PublicSuffixList:
    """The Public Suffix List, loaded on first use (about 20 ms)."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def registrable_domain(name: str) -> str | None:
    """The registrable domain of ``name`` (``mx1.mail.example.co.uk`` -> ``example.co.uk``).

    TLDs missing from the list (the lab's ``.test``) are treated as one-label public suffixes
    (the PSL's implicit ``*`` rule), so ``mail.example.test`` gives ``example.test``. None when
    the name is itself a public suffix or a single label.
    """
    name = name.strip().rstrip(".").lower()
    if not name or "." not in name:
        return None
    found: str | None = public_suffixes().privatesuffix(name)
    return found


def guess_mail_domain(server_name: str) -> str | None:
    """The mail domain a banner's (or PTR's) host name suggests: its registrable domain, when
    the name is a valid host name at all; None otherwise."""
    if not server_name or "." not in server_name.strip("."):
        return None
    try:
        check_domain(server_name, "server name")
    except AddressError:
        return None
    return registrable_domain(server_name)
