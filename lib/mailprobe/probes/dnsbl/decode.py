"""Decoding DNSBL answers: what one A record of a list's answer means.

Strict, after RFC 5782 and the lists' own codes: error answers (127.255.255.x, 127.0.0.1) and
anything outside 127.0.0.0/8 are never listings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from mailprobe.probes.dnsbl.zones import Zone

# Answers that are never listings, whatever the list (Spamhaus documents these codes; other
# lists reuse them). Everything outside 127.0.0.0/8 is an error too (see decode_answer).
ERROR_CODES = {
    "127.0.0.1": "the list answered 127.0.0.1, which RFC 5782 reserves for 'not listed' "
                 "(URIBL and SURBL answer it when they refuse your resolver)",
    "127.255.255.252": "the list says the query had a typing error in the zone name",
    "127.255.255.254": "the list refuses queries sent through a public or open resolver: "
                       "ask it through your own resolver (or a registered key)",
    "127.255.255.255": "the list rate-limits this resolver (too many queries)",
}


class AnswerError(ValueError):
    """An answer that cannot be decoded at all (not an IPv4 address)."""


@dataclass(frozen=True)
class Decoded:
    """What one A record of a DNSBL answer means."""

    code: str
    listed: bool
    meaning: str
    category: str = ""


def decode_answer(zone: Zone, text: str) -> Decoded:
    """Decode one A record; raises only :class:`AnswerError` (for non-IPv4 text)."""
    if not isinstance(text, str):
        raise AnswerError(f"answer {text!r} is not text")
    try:
        address = ipaddress.IPv4Address(text.strip())
    except (ValueError, TypeError) as exc:
        raise AnswerError(f"answer {text!r} is not an IPv4 address") from exc
    code = str(address)
    if address not in _LOOPBACK:
        return Decoded(code, False, f"the answer {code} is outside 127.0.0.0/8: the resolver "
                       "rewrites negative answers (ad blocking, captive portal) or the zone "
                       "is not a DNS blacklist")
    if code in zone.errors:
        return Decoded(code, False, zone.errors[code])
    if code in ERROR_CODES:
        return Decoded(code, False, ERROR_CODES[code])
    if zone.bitmask:
        return _decode_bitmask(zone, address)
    if code in zone.codes:
        meaning, category = zone.codes[code]
        return Decoded(code, True, meaning, category)
    if zone.codes:
        return Decoded(code, True, f"listed (return code {code} is not documented for "
                       f"{zone.host})", "unknown")
    return Decoded(code, True, "listed", "unknown")


_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def _decode_bitmask(zone: Zone, address: ipaddress.IPv4Address) -> Decoded:
    code = str(address)
    if code.rsplit(".", 1)[0] != "127.0.0":
        return Decoded(code, True, f"listed (return code {code} is not documented for "
                       f"{zone.host})", "unknown")
    bits = int(code.rsplit(".", 1)[1])
    meanings, categories, unknown = [], [], 0
    for bit in (1 << n for n in range(8)):
        if bits & bit:
            if str(bit) in zone.codes:
                meaning, category = zone.codes[str(bit)]
                meanings.append(meaning)
                categories.append(category)
            else:
                unknown |= bit
    if unknown:
        meanings.append(f"undocumented bits {unknown}")
    if not categories:
        return Decoded(code, True, f"listed (return code {code} is not documented for "
                       f"{zone.host})", "unknown")
    return Decoded(code, True, ", ".join(meanings), categories[0])


def decode_answers(zone: Zone, texts: Iterable[str]) -> tuple[list[Decoded], list[Decoded]]:
    """(listings, errors) of a whole answer; raises only :class:`AnswerError`."""
    listings: list[Decoded] = []
    errors: list[Decoded] = []
    for text in texts:
        decoded = decode_answer(zone, text)
        (listings if decoded.listed else errors).append(decoded)
    return listings, errors
