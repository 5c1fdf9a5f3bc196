"""Host names as a receiving MTA compares them, and the generic/dynamic PTR heuristics."""

from __future__ import annotations

import contextlib
import ipaddress
import re

from mailprobe.probes.domains import public_suffixes


def normalise_name(name: str) -> str:
    """Lower case, no trailing dot, IDNA (A-label) form where the name is Unicode."""
    name = name.strip().rstrip(".")
    with contextlib.suppress(UnicodeError):
        name = name.encode("idna").decode("ascii")
    return name.lower()


def names_match(first: str, second: str) -> bool:
    """Whether two host names are the same name (case, trailing dot and IDNA ignored)."""
    a, b = normalise_name(first), normalise_name(second)
    return bool(a) and a == b


def matches_any(name: str, candidates: list[str]) -> bool:
    return any(names_match(name, other) for other in candidates)


_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")


def host_name_problem(name: str) -> str | None:
    """Why ``name`` is not a usable host name (None when it is one).

    Applied to PTR names (a receiving MTA such as Postfix treats a client whose PTR is not a
    valid host name as "unknown") and to every name before it is sent as TLS SNI. Names from
    dnspython arrive in presentation form, so a byte that is not a letter, digit or hyphen
    shows as an escape (``\\010``) and fails here.
    """
    text = name[:-1] if name.endswith(".") else name
    if not text:
        return "it is the DNS root, not a host name"
    try:
        ipaddress.ip_address(text)
        return "it is an IP address, not a host name"
    except ValueError:
        pass
    try:
        text = text if text.isascii() else text.encode("idna").decode("ascii")
    except UnicodeError:
        return "it is not a valid international name"
    labels = text.split(".")
    bad = next((label for label in labels if not _LABEL.match(label)), None)
    if bad is not None:
        shown = bad if len(bad) <= 40 else bad[:40] + "..."
        return f"the label '{shown}' is not 1-63 letters, digits and hyphens"
    if len(text) > 253:
        return f"it is {len(text)} characters long (at most 253)"
    if labels[-1].isdigit():
        return "it ends in a number"
    return None


# -- generic / dynamic PTR heuristics ------------------------------------------------------------

# Words ISPs use in the reverse names of access lines and address pools (compared with whole
# tokens: a label split at dots, dashes and letter/digit boundaries, so "adsl123" has "adsl").
GENERIC_WORDS = frozenset({
    "dynamic", "dyn", "dynip", "dip", "dsl", "adsl", "vdsl", "xdsl", "sdsl", "dhcp", "pool",
    "pools", "cable", "ppp", "pppoe", "pppoa", "dial", "dialup", "dialin", "modem", "broadband",
    "client", "clients", "customer", "cust", "subscriber", "residential", "dyndsl", "unassigned",
    "nat", "cpe", "ftth", "fttx", "wireless", "wifi", "mobile", "lte", "hsd", "dslam",
    "catv", "resnet", "noptr", "nxdomain",
})


def host_part(name: str) -> str:
    """The labels left of the registrable domain (``c-1-2-3-4.hsd1`` of ``…comcast.net``).

    Falls back to everything but the last two labels; a bare registrable domain yields ''.
    """
    name = normalise_name(name)
    registrable = public_suffixes().privatesuffix(name)
    if not registrable:
        labels = name.split(".")
        registrable = ".".join(labels[-2:]) if len(labels) > 2 else ""
    if registrable and name.endswith("." + registrable):
        return name[: -len(registrable) - 1]
    return "" if registrable else name.split(".")[0]


def _contiguous(needle: list[int], haystack: list[int]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def _embeds_ipv4(host: str, address: ipaddress.IPv4Address) -> str | None:
    octets = list(address.packed)
    numbers = [int(run) for run in re.findall(r"\d+", host) if len(run) <= 3]
    for size in (4, 3):
        for start in range(0, 5 - size):
            part = octets[start : start + size]
            if _contiguous(part, numbers) or _contiguous(part[::-1], numbers):
                return "-".join(str(o) for o in part)
    compact = re.sub(r"[^0-9a-z]", "", host)
    padded = "".join(f"{o:03d}" for o in octets)
    if padded in compact or padded in re.sub(r"\D", "", host):
        return padded
    hexform = address.packed.hex()
    if hexform in compact:
        return hexform
    decimal = str(int(address))
    if len(decimal) >= 8 and decimal in re.findall(r"\d+", host):
        return decimal
    return None


def _embeds_ipv6(host: str, address: ipaddress.IPv6Address) -> str | None:
    compact = re.sub(r"[^0-9a-f]", "", host)
    full = address.exploded.replace(":", "")
    if full in compact:
        return address.compressed
    dashed = address.compressed.replace(":", "-")
    if len(dashed) >= 6 and dashed in host:
        return dashed
    groups = [int(g, 16) for g in address.exploded.split(":")]
    tokens = [int(t, 16) for t in re.findall(r"[0-9a-f]+", host) if len(t) <= 4]
    for start in range(0, 5):
        part = groups[start : start + 4]
        if any(part) and _contiguous(part, tokens):
            return ":".join(f"{g:x}" for g in part)
    return None


def generic_reason(name: str, address: str) -> str | None:
    """Why ``name`` looks like a generic/dynamic reverse name for ``address``, or None."""
    host = host_part(name)
    if not host:
        return None
    ip = ipaddress.ip_address(address)
    embedded = _embeds_ipv4(host, ip) if isinstance(ip, ipaddress.IPv4Address) \
        else _embeds_ipv6(host, ip)
    reasons = []
    if embedded:
        reasons.append(f"embeds the address ({embedded})")
    tokens = [tok for label in re.split(r"[^0-9a-z]+", host) for tok in
              re.findall(r"[a-z]+|[0-9]+", label)]
    words = sorted({tok for tok in tokens if tok in GENERIC_WORDS})
    if words:
        reasons.append("contains " + ", ".join(f"'{w}'" for w in words))
    return " and ".join(reasons) if reasons else None


