"""The curated DNS blacklists: who they are, what their answers mean, where to ask for removal.

Kept as data, dated: lists shut down, get taken over or change their codes, and a dead list that
answers every query as "listed" is the classic false alarm. Curated from the lists' own
documentation as of CURATED; re-check them before adding to the default set.

Categories are pydnsbl's names. pydnsbl also supplies a second, broader catalogue:
:func:`pydnsbl_zones` (``check_dnsbl --pydnsbl-lists``) asks every list pydnsbl knows, decoded
with our tables where we curate the list, minus the lists known to be dead. pydnsbl is imported
only then (it loads asyncio, aiodns and pycares: about 14 ms the default run does not pay).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# pydnsbl's category names (pydnsbl.providers.DNSBL_CATEGORY_*; a test keeps them equal)
DNSBL_CATEGORY_ABUSED = "abused"
DNSBL_CATEGORY_CNC = "cnc"
DNSBL_CATEGORY_EXPLOITS = "exploits"
DNSBL_CATEGORY_MALWARE = "malware"
DNSBL_CATEGORY_PHISH = "phish"
DNSBL_CATEGORY_SPAM = "spam"
DNSBL_CATEGORY_UNKNOWN = "unknown"

CURATED = "2025-06"
IP, DOMAIN = "ip", "domain"
POLICY = "policy"  # not a pydnsbl category: "this address should not send mail directly"

# RFC 5782 section 5: every list MUST list its test entry (127.0.0.2 for address lists, TEST for
# domain lists) and MUST NOT list 127.0.0.1 / INVALID.
RFC5782_LISTED = {IP: "127.0.0.2", DOMAIN: "test"}
RFC5782_NEVER_LISTED = {IP: "127.0.0.1", DOMAIN: "invalid"}


class Code(NamedTuple):
    """What one return code of a list means."""

    meaning: str
    category: str = DNSBL_CATEGORY_SPAM


@dataclass(eq=False)
class Zone:
    """One DNS blacklist zone: its name, kind, weight, return codes and removal page."""

    host: str
    kind: str = IP
    weight: float = 1.0
    codes: dict[str, Code] = field(default_factory=dict)
    bitmask: bool = False  # SURBL/URIBL style: the last octet is a set of bits
    errors: dict[str, str] = field(default_factory=dict)  # list-specific non-listing answers
    url: str = ""  # lookup/removal page; "{query}" is replaced by the address or domain
    description: str = ""
    ipv6: bool = True  # whether the list lists IPv6 addresses (ip lists only)
    suffixes: tuple[str, ...] = ()  # other names serving the same data (e.g. Spamhaus DQS)
    # The entry the list documents as always listed (its test point); None: RFC 5782's own
    # (127.0.0.2 or TEST), which a list not curated here is assumed to honour; "": the list
    # has no test entry (zone option no-test-entry), so its "not listed" cannot be confirmed.
    test_point: str | None = None

    @property
    def name(self) -> str:
        return self.host

    @property
    def listed_test_entry(self) -> str | None:
        """The entry this list must list (None when it has none)."""
        if self.test_point is None:
            return RFC5782_LISTED[self.kind]
        return self.test_point or None

    @property
    def never_listed_entry(self) -> str:
        """RFC 5782's entry this list must never list."""
        return RFC5782_NEVER_LISTED[self.kind]

    def lookup_url(self, query: str) -> str:
        return self.url.replace("{query}", query)

    def with_options(self, weight: float | None = None, kind: str | None = None,
                     test_point: str | None = None) -> Zone:
        """A copy with another weight, kind and/or test point ("" for none)."""
        copy = Zone(**{f: getattr(self, f) for f in self.__dataclass_fields__})
        if weight is not None:
            copy.weight = weight
        if kind is not None and kind != copy.kind:
            copy.kind = kind
            if copy.test_point:  # a documented test point is of the list's own kind
                copy.test_point = None
        if test_point is not None:
            copy.test_point = test_point
        return copy

    def __repr__(self) -> str:
        return f"<Zone {self.host} {self.kind} weight={self.weight:g}>"


_DRONEBL = {
    "127.0.0.3": Code("IRC drone", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.5": Code("bottler (spam-sending bot)", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.6": Code("unknown spambot or drone", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.7": Code("DDoS drone", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.8": Code("open SOCKS proxy", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.9": Code("open HTTP proxy", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.10": Code("proxy chain", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.11": Code("web page proxy", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.12": Code("open DNS resolver", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.13": Code("brute-force attacker", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.14": Code("open Wingate proxy", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.15": Code("compromised router or gateway", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.16": Code("autorooting worm", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.17": Code("botnet-infected host", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.18": Code("DNS/MX on IRC", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.19": Code("abused VPN service", DNSBL_CATEGORY_EXPLOITS),
    "127.0.0.255": Code("uncategorized abuse", DNSBL_CATEGORY_UNKNOWN),
}

TEST_ENTRY = RFC5782_LISTED[IP]

# Every known zone, default or not. "default" marks the ones checked when no --zone/--list.
# Test points: every address list here is asked RFC 5782's 127.0.0.2, which must be listed (seen
# listed on ZEN, SpamCop, Barracuda, PSBL, DroneBL, blocklist.de and the SpamRATS lists; RFC 5782
# requires it of the others); the domain lists document their own (Spamhaus dbltest.com, SURBL
# test.surbl.org, URIBL test.uribl.com). A list found not to honour its test entry must get
# test_point="" here, never be left to read as clean.
KNOWN: dict[str, Zone] = {z.host: z for z in [
    Zone("zen.spamhaus.org", weight=2, ipv6=True,
         description="Spamhaus ZEN (SBL, CSS, XBL, DROP, PBL combined)",
         url="https://check.spamhaus.org/results/?query={query}",
         suffixes=(".zen.dq.spamhaus.net",),
         test_point=TEST_ENTRY,
         codes={
             "127.0.0.2": Code("SBL: known spam source or spam operation"),
             "127.0.0.3": Code("CSS: snowshoe or low-reputation bulk sending"),
             "127.0.0.4": Code("XBL: exploited host (botnet, malware, open proxy)",
                               DNSBL_CATEGORY_EXPLOITS),
             "127.0.0.5": Code("XBL: exploited host", DNSBL_CATEGORY_EXPLOITS),
             "127.0.0.6": Code("XBL: exploited host", DNSBL_CATEGORY_EXPLOITS),
             "127.0.0.7": Code("XBL: exploited host", DNSBL_CATEGORY_EXPLOITS),
             "127.0.0.9": Code("DROP: hijacked or leased-to-spammers netblock"),
             "127.0.0.10": Code("PBL (ISP-maintained): end-user range that should not send "
                                "mail directly", POLICY),
             "127.0.0.11": Code("PBL (Spamhaus-maintained): end-user range that should not "
                                "send mail directly", POLICY),
             "127.0.0.30": Code("BCL: botnet controller", DNSBL_CATEGORY_CNC),
         }),
    Zone("b.barracudacentral.org", ipv6=False,
         description="Barracuda Reputation Block List (resolver must be registered)",
         url="https://www.barracudacentral.org/lookups/lookup-reputation",
         test_point=TEST_ENTRY,
         codes={"127.0.0.2": Code("poor sending reputation")}),
    Zone("bl.spamcop.net", ipv6=False, description="SpamCop Blocking List",
         url="https://www.spamcop.net/bl.shtml?{query}",
         test_point=TEST_ENTRY,
         codes={"127.0.0.2": Code("reported as a spam source by SpamCop users")}),
    Zone("bl.mailspike.net", ipv6=False, description="Mailspike blacklist",
         url="https://mailspike.org/",
         test_point=TEST_ENTRY,
         codes={"127.0.0.2": Code("listed (spam source)"),
                "127.0.0.10": Code("worst possible reputation"),
                "127.0.0.11": Code("very bad reputation"),
                "127.0.0.12": Code("bad reputation")}),
    Zone("psbl.surriel.com", ipv6=False, description="Passive Spam Block List (spam traps)",
         url="https://psbl.org/listing?ip={query}",
         test_point=TEST_ENTRY,
         codes={"127.0.0.2": Code("sent mail to spam traps")}),
    Zone("all.s5h.net", ipv6=False, description="s5h.net blacklist",
         url="https://www.usenix.org.uk/content/rbl.html",
         test_point=TEST_ENTRY,
         codes={"127.0.0.2": Code("sent mail to s5h.net spam traps")}),
    Zone("bl.blocklist.de", ipv6=False, description="blocklist.de (fail2ban reports)",
         url="https://www.blocklist.de/en/search.html?ip={query}",
         test_point=TEST_ENTRY,
         codes={"127.0.0.2": Code("reported for attacks (brute force, spam)",
                                  DNSBL_CATEGORY_EXPLOITS)}),
    Zone("dnsbl.dronebl.org", ipv6=True, description="DroneBL (drones, proxies, bots)",
         url="https://dronebl.org/lookup?ip={query}", test_point=TEST_ENTRY, codes=_DRONEBL),
    Zone("bl.spameatingmonkey.net", ipv6=False, description="Spam Eating Monkey blacklist",
         url="https://spameatingmonkey.com/lookup",
         test_point=TEST_ENTRY,
         codes={"127.0.0.2": Code("sent mail to spam traps")}),
    Zone("bl.0spam.org", ipv6=False, description="0spam blacklist",
         url="https://0spam.org/", test_point=TEST_ENTRY, codes={"127.0.0.2": Code("spam source")}),
    Zone("spam.spamrats.com", ipv6=False, description="SpamRATS RATS-Spam",
         url="https://www.spamrats.com/lookup.php?ip={query}",
         test_point=TEST_ENTRY,
         codes={"127.0.0.38": Code("RATS-Spam: sent spam or attempted dictionary attacks")}),
    # Domain lists.
    Zone("dbl.spamhaus.org", kind=DOMAIN, weight=2, description="Spamhaus Domain Block List",
         url="https://check.spamhaus.org/results/?query={query}", test_point="dbltest.com",
         suffixes=(".dbl.dq.spamhaus.net",),
         errors={"127.0.1.255": "an IP address was queried against a domain list"},
         codes={
             "127.0.1.2": Code("spam domain"),
             "127.0.1.4": Code("phishing domain", DNSBL_CATEGORY_PHISH),
             "127.0.1.5": Code("malware domain", DNSBL_CATEGORY_MALWARE),
             "127.0.1.6": Code("botnet C&C domain", DNSBL_CATEGORY_CNC),
             "127.0.1.102": Code("abused legitimate domain (spam)", DNSBL_CATEGORY_ABUSED),
             "127.0.1.103": Code("abused redirector or URL shortener (spam)",
                                 DNSBL_CATEGORY_ABUSED),
             "127.0.1.104": Code("abused legitimate domain (phishing)", DNSBL_CATEGORY_ABUSED),
             "127.0.1.105": Code("abused legitimate domain (malware)", DNSBL_CATEGORY_ABUSED),
             "127.0.1.106": Code("abused legitimate domain (botnet C&C)",
                                 DNSBL_CATEGORY_ABUSED),
         }),
    Zone("multi.surbl.org", kind=DOMAIN, bitmask=True, description="SURBL multi",
         url="https://www.surbl.org/surbl-analysis", test_point="test.surbl.org",
         codes={"8": Code("PH: phishing", DNSBL_CATEGORY_PHISH),
                "16": Code("MW: malware", DNSBL_CATEGORY_MALWARE),
                "64": Code("ABUSE: spam and abuse"),
                "128": Code("CR: cracked site", DNSBL_CATEGORY_ABUSED)}),
    Zone("multi.uribl.com", kind=DOMAIN, bitmask=True, description="URIBL multi",
         url="https://admin.uribl.com/?section=lookup", test_point="test.uribl.com",
         codes={"2": Code("black: domain in spam"),
                "4": Code("grey: domain in grey (bulk) mail"),
                "8": Code("red: domain of a newly seen spam campaign")}),
    # Known, but not checked by default (noisy, whole-network or policy lists).
    Zone("dnsbl-1.uceprotect.net", ipv6=False, description="UCEPROTECT level 1 (single IPs)",
         url="https://www.uceprotect.net/en/rblcheck.php?ipr={query}",
         test_point=TEST_ENTRY,
         codes={"127.0.0.2": Code("sent mail to UCEPROTECT spam traps")}),
    Zone("dnsbl-2.uceprotect.net", ipv6=False, weight=0.5,
         description="UCEPROTECT level 2 (whole allocations: noisy)",
         url="https://www.uceprotect.net/en/rblcheck.php?ipr={query}",
         test_point=TEST_ENTRY,
         codes={"127.0.0.2": Code("the address's allocation sent too much spam")}),
    Zone("dnsbl-3.uceprotect.net", ipv6=False, weight=0.5,
         description="UCEPROTECT level 3 (whole ASNs: noisy)",
         url="https://www.uceprotect.net/en/rblcheck.php?ipr={query}",
         test_point=TEST_ENTRY,
         codes={"127.0.0.2": Code("the address's network (ASN) sent too much spam")}),
    Zone("dyna.spamrats.com", ipv6=False, weight=0.5, description="SpamRATS RATS-Dyna",
         url="https://www.spamrats.com/lookup.php?ip={query}",
         test_point=TEST_ENTRY,
         codes={"127.0.0.36": Code("RATS-Dyna: dynamic/end-user address", POLICY)}),
    Zone("noptr.spamrats.com", ipv6=False, weight=0.5, description="SpamRATS RATS-NoPtr",
         url="https://www.spamrats.com/lookup.php?ip={query}",
         test_point=TEST_ENTRY,
         codes={"127.0.0.37": Code("RATS-NoPtr: no reverse DNS (PTR)", POLICY)}),
    Zone("ips.backscatterer.org", ipv6=False, weight=0.5,
         description="Backscatterer (bounces and auto-replies to forged senders)",
         url="https://www.backscatterer.org/?target=test&ip={query}",
         test_point=TEST_ENTRY,
         codes={"127.0.0.2": Code("sent backscatter (misdirected bounces)")}),
]}

DEFAULT_IP = ["zen.spamhaus.org", "b.barracudacentral.org", "bl.spamcop.net",
              "bl.mailspike.net", "psbl.surriel.com", "all.s5h.net", "bl.blocklist.de",
              "dnsbl.dronebl.org", "bl.spameatingmonkey.net", "bl.0spam.org",
              "spam.spamrats.com"]
DEFAULT_DOMAIN = ["dbl.spamhaus.org", "multi.surbl.org", "multi.uribl.com"]

# Lists that shut down: their zones may lapse and be re-registered to answer "listed" for
# everything. Still found in many tools' defaults (pydnsbl 1.1.7 carries several).
DEAD: dict[str, str] = {
    "sorbs.net": "SORBS closed in June 2024",
    "ahbl.org": "AHBL closed in 2015",
    "njabl.org": "NJABL closed in 2013",
    "dnsbl.cyberlogic.net": "Cyberlogic's list is no longer maintained",
    "virbl.bit.nl": "VirBL was discontinued",
    "db.wpbl.info": "WPBL shut down",
    "msrbl.net": "the MSRBL lists shut down",
    "ix.dnsbl.manitu.net": "NiX Spam's DNSBL was discontinued",
    "cbl.abuseat.org": "the CBL was merged into Spamhaus XBL (use zen.spamhaus.org)",
}


def dead_reason(name: str) -> str | None:
    """Why ``name`` must not be used, when it is (a zone of) a list that shut down."""
    name = name.lower().rstrip(".")
    for zone, reason in DEAD.items():
        if name == zone or name.endswith("." + zone):
            return reason
    return None


def known_zone(name: str) -> Zone | None:
    """The curated entry for ``name`` (also for a mirror named by a known suffix)."""
    name = name.lower().rstrip(".")
    if name in KNOWN:
        return KNOWN[name]
    for zone in KNOWN.values():
        if any(name.endswith(s) for s in zone.suffixes):
            copy = zone.with_options()
            copy.host = name
            return copy
    return None


def default_zones() -> list[Zone]:
    """The default set: fresh copies, IP lists first."""
    return [KNOWN[n].with_options() for n in DEFAULT_IP + DEFAULT_DOMAIN]


def pydnsbl_zones() -> tuple[list[Zone], list[str]]:
    """pydnsbl's provider catalogue as zones (our curated entry where we have one), and the
    names of the lists in it that are known to be dead, which are left out."""
    from pydnsbl import providers

    zones: list[Zone] = []
    dead: list[str] = []
    catalogue = ((IP, providers.BASE_PROVIDERS), (DOMAIN, providers.BASE_DOMAIN_PROVIDERS))
    for kind, group in catalogue:
        for provider in group:
            name = str(provider.host).strip().lower().rstrip(".")
            if dead_reason(name):
                dead.append(name)
            else:
                zones.append(known_zone(name) or Zone(name, kind=kind))
    return zones, dead
