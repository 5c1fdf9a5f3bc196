"""Is the request really from its From: address? (a From: is forged at will)

Two ways, in this order:

1. ``Authentication-Results`` (RFC 8601) added by the receiving MTA whose authserv-id is the
   configured ``authserv_id``: the topmost such header decides; ``dkim=pass`` with a signing
   domain aligned with the From: domain (same organisational domain, DMARC relaxed alignment)
   or ``dmarc=pass`` authenticates. That MTA must remove headers carrying its id from
   incoming mail (OpenDKIM and OpenDMARC do), or a sender could write its own.
2. Where no such header exists: the service verifies the DKIM signatures itself (dkimpy),
   asking the configured nameserver, and an aligned valid signature authenticates.

A DNS failure while fetching a key is *temporary* (the caller exits 75 and the MTA retries).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import compat32

from mailprobe.probes.dmarc import organizational_domain


@dataclass(frozen=True)
class Authentication:
    ok: bool
    how: str                 # "dkim example.ac.uk (verified here)", "dmarc (A-R mx...)"
    reason: str = ""         # why not, in plain words
    temporary: bool = False  # could not decide now (DNS failure): try again later


def aligned(signing_domain: str, from_domain: str) -> bool:
    """DMARC relaxed alignment: the same organisational domain."""
    a, b = signing_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if not a or not b:
        return False
    if a == b:
        return True
    org_a, org_b = organizational_domain(a), organizational_domain(b)
    return org_a is not None and org_a == org_b


_RESULT = re.compile(r"(?P<method>[a-z0-9_-]+)\s*=\s*(?P<result>[a-z]+)(?P<props>[^;]*)",
                     re.IGNORECASE)
_PROP = re.compile(r"(?P<key>header\.[a-z]+|policy\.[a-z]+)\s*=\s*(?P<value>\"[^\"]*\"|[^\s;]+)",
                   re.IGNORECASE)


def _strip_comments(text: str) -> str:
    previous = None
    while previous != text:
        previous, text = text, re.sub(r"\([^()]*\)", " ", text)
    return text


def parse_authentication_results(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """(authserv-id, [(method, result, {property: value})]) of one header field."""
    text = _strip_comments(" ".join(value.split()))
    head, _, rest = text.partition(";")
    authserv_id = head.strip().split()[0].lower() if head.strip() else ""
    results = []
    for part in rest.split(";"):
        match = _RESULT.search(part)
        if not match:
            continue
        props = {m["key"].lower(): m["value"].strip('"').lower()
                 for m in _PROP.finditer(match["props"])}
        results.append((match["method"].lower(), match["result"].lower(), props))
    return authserv_id, results


def from_trusted_header(message: Message, authserv_id: str,
                        from_domain: str) -> Authentication | None:
    """The verdict of the topmost A-R header from ``authserv_id``; None when there is none."""
    if not authserv_id:
        return None
    for value in message.get_all("Authentication-Results") or []:
        server, results = parse_authentication_results(str(value))
        if server != authserv_id.lower():
            continue
        seen = []
        for method, result, props in results:
            seen.append(f"{method}={result}")
            if result != "pass":
                continue
            if method == "dkim":
                domain = props.get("header.d") or props.get("header.i", "").rpartition("@")[2]
                if aligned(domain, from_domain):
                    return Authentication(True, f"dkim={result} header.d={domain} "
                                          f"(Authentication-Results of {server})")
            if method == "dmarc":
                checked = props.get("header.from", from_domain)
                if checked.rstrip(".") == from_domain:
                    return Authentication(True, f"dmarc=pass (Authentication-Results of "
                                          f"{server})")
        return Authentication(False, "", f"the Authentication-Results of {server} show no "
                              f"aligned DKIM or DMARC pass for {from_domain} "
                              f"({', '.join(seen) or 'no results'})")
    return None


TxtLookup = Callable[[str], "list[str] | None"]


class DNSTemporaryError(Exception):
    """The key could not be fetched now (timeout, SERVFAIL)."""


def verify_dkim(raw: bytes, from_domain: str, lookup: TxtLookup) -> Authentication:
    """Verify every DKIM-Signature with dkimpy; ok when one aligned signature verifies.

    ``lookup(name)`` returns the TXT strings of ``name`` (None when there are none) and raises
    :class:`DNSTemporaryError` when the DNS cannot answer now.
    """
    import dkim  # dkimpy: loaded only when a request has no trusted A-R header

    temporary: list[str] = []

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        try:
            records = lookup(text.rstrip("."))
        except DNSTemporaryError as exc:
            temporary.append(str(exc))
            raise dkim.DnsTimeoutError(str(exc)) from exc
        return records[0].encode() if records else None

    signer = dkim.DKIM(raw, timeout=5)
    count = sum(1 for name, _ in signer.headers if name.lower() == b"dkim-signature")
    if count == 0:
        return Authentication(False, "", f"the request has no DKIM signature of {from_domain} "
                              "and no trusted Authentication-Results header: a From: address "
                              "can be forged")
    failures = []
    for index in range(count):
        problem = ""
        try:
            valid = signer.verify(idx=index, dnsfunc=dnsfunc)
        except dkim.DKIMException as exc:
            valid, problem = False, str(exc).split(" (got ")[0]
        domain = (signer.domain or b"").decode(errors="replace")
        if valid and aligned(domain, from_domain):
            return Authentication(True, f"DKIM signature of {domain} verified by the service")
        if valid:
            failures.append(f"the valid signature of {domain} is not aligned with {from_domain}")
        else:
            failures.append(f"the signature of {domain or '?'} does not verify"
                            + (f" ({problem})" if problem else ""))
    if temporary:
        return Authentication(False, "", f"DKIM key look-up failed: {temporary[0]}",
                              temporary=True)
    return Authentication(False, "", "not authenticated: " + "; ".join(failures))


def authenticate(raw: bytes, requester: str, authserv_id: str,
                 lookup: TxtLookup) -> Authentication:
    """The trusted A-R header when there is one, else our own DKIM verification."""
    from_domain = requester.rpartition("@")[2].lower()
    message = message_from_bytes(raw, policy=compat32)
    trusted = from_trusted_header(message, authserv_id, from_domain)
    if trusted is not None:
        return trusted
    return verify_dkim(raw, from_domain, lookup)


def txt_lookup(nameserver: str, timeout: float = 10.0) -> TxtLookup:
    """A TXT look-up through mailprobe's resolver factory, asking ``nameserver``."""
    from mailprobe.net.deadline import BudgetExhausted, Deadline
    from mailprobe.net.dns import DNSFailure, Lookup, Nameserver, make_resolver

    servers = [Nameserver.parse(nameserver)] if nameserver else None
    resolver = make_resolver(servers, timeout=timeout)

    def lookup(name: str) -> list[str] | None:
        try:
            records = Lookup(resolver, Deadline(timeout)).txt(name)
        except DNSFailure as exc:
            raise DNSTemporaryError(f"{name} TXT: {exc.reason}") from exc
        except BudgetExhausted as exc:
            raise DNSTemporaryError(f"{name} TXT: no answer within {timeout:g}s") from exc
        return records or None

    return lookup
