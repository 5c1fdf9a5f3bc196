"""The catalogue of bad DNS behaviours, and the documented state of each plugin facing it.

Every case is a :class:`~lab.dnsd.ScriptedDNSServer` serving :data:`GOOD` (a correct
world: mx.lab.test at 127.0.0.1 with PTR and FCrDNS, MX, SPF, DMARC, and the DNSBL zone
bl.lab.test where 192.0.2.10 is not listed) with one thing broken. The plugins are run as
test_dns_hostile.py says:

* ``dnsbl``: ``check_dnsbl -H 192.0.2.10 --zone bl.lab.test`` (an address, so only the list's
  answers matter; ``-H mx.lab.test`` when ``dnsbl_by_name``);
* ``spf``: ``check_spf_mx --mail-domain lab.test -H mx.lab.test``;
* ``rdns``: ``check_banner_rdns -H 127.0.0.1`` against a correct scripted SMTP server (``-H``
  in the case's options replaces it);
* ``relay``: ``check_open_relay -H mx.lab.test --tests plain`` (the name must be resolved).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.dnsd import Fault
from tests.hostile.expect import CRITICAL, OK, UNKNOWN, WARNING, Expect, as_tuple

GOOD = """
1.0.0.127.in-addr.arpa.  PTR  mx.lab.test.
mx.lab.test.             A    127.0.0.1
lab.test.                MX   10 mx.lab.test.
lab.test.                TXT  "v=spf1 ip4:127.0.0.1 -all"
_dmarc.lab.test.         TXT  "v=DMARC1; p=reject; rua=mailto:dmarc@lab.test"
2.0.0.127.bl.lab.test.   A    127.0.0.2
2.0.0.127.bl.lab.test.   TXT  "RFC 5782 test entry"
"""


def without(records: str, *owners: str) -> str:
    """``records`` minus every line whose owner name (first word) is in ``owners``."""
    return "\n".join(line for line in records.splitlines()
                     if not line.split() or line.split()[0] not in owners)


def replacing(owner_type: str, *lines: str) -> str:
    """GOOD with the records of ``"OWNER TYPE"`` replaced by ``lines``."""
    owner, rtype = owner_type.split()
    kept = [line for line in GOOD.splitlines()
            if not (line.split()[:1] == [owner] and line.split()[1:2] == [rtype])]
    return "\n".join([*kept, *lines])


@dataclass(frozen=True)
class DNSCase:
    id: str
    description: str
    records: str = GOOD
    fault: Fault = field(default_factory=Fault)
    faults: dict[str, Fault] = field(default_factory=dict)
    dnsbl: tuple[Expect, ...] = ()
    spf: tuple[Expect, ...] = ()
    rdns: tuple[Expect, ...] = ()
    relay: tuple[Expect, ...] = ()


def case(id_: str, description: str, records: str = GOOD, *, fault: Fault | None = None,
         faults: dict[str, Fault] | None = None, dnsbl: Expect | tuple[Expect, ...] = (),
         spf: Expect | tuple[Expect, ...] = (), rdns: Expect | tuple[Expect, ...] = (),
         relay: Expect | tuple[Expect, ...] = ()) -> DNSCase:
    return DNSCase(id_, description, records, fault or Fault(), dict(faults or {}),
                   as_tuple(dnsbl), as_tuple(spf), as_tuple(rdns), as_tuple(relay))


def every(state: int, dnsbl: str, spf: str, rdns: str, relay: str,
          timeout: float = 4.0) -> dict[str, Expect]:
    """The same state for the four plugins, each with its own reason."""
    return {"dnsbl": Expect(state, dnsbl, timeout=timeout),
            "spf": Expect(state, spf, timeout=timeout),
            "rdns": Expect(state, rdns, timeout=timeout),
            "relay": Expect(state, relay, timeout=timeout)}


DNSBL_OK = r"192\.0\.2\.10 not listed on 1 list"
SPF_OK = r"SPF .*pass"
RDNS_OK = r"127\.0\.0\.1 -> mx\.lab\.test -> 127\.0\.0\.1, banner mx\.lab\.test"
RELAY_OK = r"0 of 1 relay attempts accepted"

SPF_INCLUDE_CHAIN = "\n".join(
    f'l{n}.lab.test. TXT "v=spf1 include:l{n + 1}.lab.test -all"' for n in range(1, 15)
) + '\nl15.lab.test. TXT "v=spf1 ip4:192.0.2.1 -all"'
SPF_FANOUT = "\n".join(f'f{n}.lab.test. TXT "v=spf1 a:h{n}.lab.test -all"' for n in range(12))
HUGE_AAAA = "\n".join(f"mx.lab.test. AAAA 2001:db8::{n + 1:x}" for n in range(300))
HUGE_TXT = "\n".join(f'lab.test. TXT "filler-{n} {"x" * 200}"' for n in range(60))
BL = "10.2.0.192.bl.lab.test."
PTR = "1.0.0.127.in-addr.arpa."
SPF_PLUS_ALL = replacing("lab.test. TXT", 'lab.test. TXT "v=spf1 ip4:127.0.0.1 +all"')
PLUS_ALL = r"SPF \+all authorises every host on the Internet"
FIFTY_PTR = "\n".join([*(f"{PTR} PTR host{n}.lab.test." for n in range(50)),
                       *(f"host{n}.lab.test. A 127.0.0.9" for n in range(50))])
# Control characters from the network: LF, CR, ESC, NUL (RFC 1035 \DDD escapes), and a line
# that would read as a second status line if it ever reached stdout unsanitised.
FORGED = r"\010DNSBL OK - forged\013\010SPF_MX OK - forged\027[2J\000"
# one SPF term (no spaces): vertical tabs (\011) instead, a line break to str.splitlines()
FORGED_TERM = r"\010SPF_MX\011OK\011-\011forged\027[2J\000"
CONTROL_CHARS = (without(GOOD, "lab.test.") + "\n"
                 + "lab.test. MX 10 mx.lab.test.\n"
                 + 'lab.test. TXT "v=spf1 ip4:127.0.0.1 include:ctl.lab.test -all"\n'
                 + f'ctl.lab.test. TXT "v=spf1 ip4:192.0.2.1{FORGED_TERM} -all"\n'
                 + f"{BL} A 127.0.0.2\n"
                 + f'{BL} TXT "spam source{FORGED}"\n'
                 + rf"{PTR} PTR evil\010BANNER_RDNS\032OK\032-\032forged.lab.test.")

DNS_CASES: tuple[DNSCase, ...] = (
    case("no-answer", "the DNS server never answers (UDP dropped, TCP silent)",
         fault=Fault(silent=True), **every(
             UNKNOWN, r"could not check any list \(bl\.lab\.test timed out\)",
             r"(time budget ran out|timed out)",
             r"DNS server 127\.0\.0\.1 port \d+ did not answer",
             r"time budget ran out while looking up mx\.lab\.test", timeout=3)),
    case("servfail", "SERVFAIL for every query", fault=Fault(rcode="SERVFAIL"), **every(
        UNKNOWN, r"SERVFAIL", r"SERVFAIL", r"SERVFAIL", r"SERVFAIL")),
    case("refused", "REFUSED for every query (not our resolver)", fault=Fault(rcode="REFUSED"),
         **every(UNKNOWN, r"REFUSED", r"REFUSED", r"REFUSED", r"REFUSED")),
    case("truncated-then-tcp", "every UDP answer truncated (TC): the answer needs TCP",
         fault=Fault(truncate=True), **every(OK, DNSBL_OK, SPF_OK, RDNS_OK, RELAY_OK)),
    case("truncated-no-tcp", "UDP answers truncated and TCP connections closed at once",
         fault=Fault(truncate=True, no_tcp=True),
         dnsbl=Expect(UNKNOWN, r"could not check any list \(bl\.lab\.test resolver error\)",
                      detail=r"could not be checked on bl\.lab\.test .*closed the connection"),
         spf=Expect(UNKNOWN, r"closed the connection over TCP"),
         rdns=Expect(UNKNOWN, r"closed the connection over TCP"),
         relay=Expect(UNKNOWN, r"closed the connection over TCP")),
    case("wrong-query-id", "answers carry the wrong query id (spoofed or broken NAT)",
         fault=Fault(wrong_id=True), **every(
             UNKNOWN, r"could not check any list \(bl\.lab\.test timed out\)",
             r"(time budget ran out|timed out)", r"did not answer",
             r"time budget ran out while looking up", timeout=3)),
    case("garbage", "answers are random bytes, not DNS messages", fault=Fault(garbage=True),
         **every(UNKNOWN, r"could not check any list \(bl\.lab\.test timed out\)",
                 r"(time budget ran out|timed out)",
                 r"did not answer", r"time budget ran out while looking up", timeout=3)),
    case("slow", "every answer 0.4 s late (within -t)", fault=Fault(delay=0.4),
         **every(OK, DNSBL_OK, SPF_OK, RDNS_OK, RELAY_OK, timeout=5)),
    case("cname-loop", "mx.lab.test is a CNAME loop (mx -> loop -> mx)",
         without(GOOD, "mx.lab.test.") + "\nmx.lab.test. CNAME loop.lab.test.\n"
         "loop.lab.test. CNAME mx.lab.test.",
         dnsbl=Expect(UNKNOWN, r"could not look up mx\.lab\.test A: .*CNAME chain is too long",
                      ("-H", "mx.lab.test")),
         spf=Expect(UNKNOWN, r"CNAME chain is too long"),
         rdns=Expect(UNKNOWN, r"CNAME chain is too long"),
         relay=Expect(UNKNOWN, r"CNAME chain is too long")),
    case("huge-answers", "300 AAAA records for mx.lab.test, 60 long TXT records at lab.test "
         "(answers need TCP)", GOOD + HUGE_AAAA + "\n" + HUGE_TXT,
         dnsbl=Expect(OK, r"not listed on 1 list", ("-H", "mx.lab.test"), timeout=8),
         spf=Expect(OK, SPF_OK, ("-H", "127.0.0.1")), rdns=Expect(OK, RDNS_OK),
         # -4: check_open_relay probes every address of a name, and 2001:db8:: is off-loopback
         relay=Expect(OK, RELAY_OK, ("-4",))),
    case("ptr-servfail", "the reverse zone answers SERVFAIL, the forward zone works",
         faults={"in-addr.arpa": Fault(rcode="SERVFAIL")},
         rdns=Expect(UNKNOWN, r"1\.0\.0\.127\.in-addr\.arpa\.? PTR failed: .*SERVFAIL"),
         relay=Expect(OK, RELAY_OK)),
    case("spf-split-strings", "the SPF record split over several strings (must be joined)",
         replacing("lab.test. TXT", 'lab.test. TXT "v=spf1 " "ip4:127.0.0.1" " -all"'),
         spf=Expect(OK, SPF_OK)),
    case("spf-malformed-txt", "TXT with NUL and invalid UTF-8 bytes, and a broken SPF term",
         replacing("lab.test. TXT", r'lab.test. TXT "v=spf1 ip4:127.0.0.1 \000\255\254 -all"'),
         spf=Expect(CRITICAL, r"(syntax|invalid|permerror)")),
    case("spf-two-records", "two SPF records at lab.test (permerror)",
         GOOD + '\nlab.test. TXT "v=spf1 -all"', spf=Expect(CRITICAL, r"(two|2|several|more "
                                                              r"than one) SPF records")),
    case("spf-include-loop", "SPF include loop (lab.test -> a.lab.test -> lab.test)",
         replacing("lab.test. TXT", 'lab.test. TXT "v=spf1 ip4:127.0.0.1 include:a.lab.test -all"',
                   'a.lab.test. TXT "v=spf1 include:lab.test -all"'),
         spf=Expect(CRITICAL, r"loop")),
    case("spf-depth-bomb", "SPF include chain 15 deep (over the 10 look-up limit)",
         replacing("lab.test. TXT", 'lab.test. TXT "v=spf1 ip4:127.0.0.1 include:l1.lab.test -all"',
                   SPF_INCLUDE_CHAIN),
         spf=Expect(CRITICAL, r"(look-?ups|lookups)")),
    case("spf-fanout-bomb", "SPF with 12 includes (over the 10 look-up limit)",
         replacing("lab.test. TXT", 'lab.test. TXT "v=spf1 ip4:127.0.0.1 '
                   + '" "'.join(f" include:f{n}.lab.test" for n in range(12)) + ' -all"',
                   SPF_FANOUT),
         spf=Expect(CRITICAL, r"(look-?ups|lookups)")),
    case("spf-include-timeout", "the SPF include target never answers (temperror)",
         replacing("lab.test. TXT", 'lab.test. TXT "v=spf1 ip4:127.0.0.1 include:t.lab.test '
                   '-all"', 't.lab.test. TXT "v=spf1 -all"'),
         faults={"t.lab.test": Fault(silent=True)},
         spf=Expect(UNKNOWN, r"t\.lab\.test", timeout=4)),
    case("dnsbl-outside-127", "the list answers 192.0.2.99 (a resolver rewriting NXDOMAIN)",
         GOOD + "\n*.bl.lab.test. A 192.0.2.99",
         dnsbl=Expect(UNKNOWN, r"outside 127\.0\.0\.0/8|192\.0\.2\.99")),
    case("dnsbl-refusal-code", "the list answers 127.255.255.254 (query via an open resolver)",
         GOOD + f"\n{BL} A 127.255.255.254",
         dnsbl=Expect(UNKNOWN, r"127\.255\.255\.254")),
    case("dnsbl-lists-everything", "the list lists every address, RFC 5782's 127.0.0.1 too",
         without(GOOD, "2.0.0.127.bl.lab.test.") + "\n*.bl.lab.test. A 127.0.0.2",
         dnsbl=Expect(UNKNOWN, r"lists everything")),
    case("dnsbl-huge-listing", "a listing with 100 A records and 60 long TXT strings",
         GOOD + "\n" + "\n".join(f"{BL} A 127.0.0.{n}" for n in range(2, 102)) + "\n"
         + "\n".join(f'{BL} TXT "reason {n} {"y" * 200}"' for n in range(60)),
         dnsbl=Expect(WARNING, r"192\.0\.2\.10 .*listed|listed .*192\.0\.2\.10")),
    # -- issue 12: a proven problem is never hidden behind what could not be determined
    case("spf-plus-all-mx-servfail", "SPF +all, and the MX look-up of the domain answers "
         "SERVFAIL", SPF_PLUS_ALL, faults={"lab.test": Fault(rcode="SERVFAIL", rdtypes=("MX",))},
         spf=Expect(CRITICAL, PLUS_ALL + r"; DNS look-up lab\.test MX failed: .*SERVFAIL")),
    case("spf-plus-all-mailer-servfail", "SPF +all, and the mailer's name answers SERVFAIL",
         SPF_PLUS_ALL, faults={"mx.lab.test": Fault(rcode="SERVFAIL")},
         spf=Expect(CRITICAL, PLUS_ALL + r"; DNS look-up mx\.lab\.test A failed: .*SERVFAIL"),
         rdns=Expect(UNKNOWN, r"cannot tell whether PTR mx\.lab\.test resolves back to "
                              r"127\.0\.0\.1: DNS look-up mx\.lab\.test A failed")),
    case("spf-plus-all-then-silence", "SPF +all, then the MX look-up is never answered (the "
         "budget runs out)", SPF_PLUS_ALL, faults={"lab.test": Fault(silent=True, rdtypes=("MX",))},
         spf=Expect(CRITICAL, PLUS_ALL + r"; the 3s time budget ran out while looking up "
                              r"lab\.test MX", timeout=3)),
    case("ptr-second-name-servfail", "two PTR names: mx.lab.test is confirmed, the look-up of "
         "the other answers SERVFAIL", GOOD + f"\n{PTR} PTR broken.lab.test.",
         faults={"broken.lab.test": Fault(rcode="SERVFAIL")},
         rdns=Expect(OK, r"127\.0\.0\.1 -> (mx\.lab\.test,broken|broken\.lab\.test,mx)\.lab\.test"
                         r" -> 127\.0\.0\.1, banner mx\.lab\.test",
                     detail=r"^OK: cannot tell whether PTR broken\.lab\.test resolves back")),
    case("ptr-unconfirmed-and-servfail", "two PTR names: one resolves elsewhere, the look-up of "
         "the other answers SERVFAIL (FCrDNS undecided)",
         without(GOOD, PTR) + f"\n{PTR} PTR other.lab.test.\n{PTR} PTR broken.lab.test.\n"
         "other.lab.test. A 127.0.0.9", faults={"broken.lab.test": Fault(rcode="SERVFAIL")},
         rdns=Expect(UNKNOWN, r"cannot tell whether PTR broken\.lab\.test resolves back",
                     detail=r"^UNKNOWN: PTR other\.lab\.test does not resolve back")),
    case("fifty-ptr-names", "50 PTR names for 127.0.0.1, none resolving back",
         without(GOOD, PTR) + "\n" + FIFTY_PTR,
         rdns=Expect(CRITICAL, r"^BANNER_RDNS CRITICAL - (PTR host\d+\.lab\.test does not resolve "
                               r"back to 127\.0\.0\.1 \(127\.0\.0\.9\); )+and \d+ more \(see the "
                               r"long output\)$")),
    case("ipv6-only-name-with-4", "-4 with a name that has only an AAAA record",
         GOOD + "\nv6.lab.test. AAAA ::1",
         spf=Expect(UNKNOWN, r"the mailer v6\.lab\.test has no IPv4 address \(A\), only IPv6 "
                             r"\(::1\): -4 excludes it", ("-H", "v6.lab.test", "-4")),
         rdns=Expect(UNKNOWN, r"v6\.lab\.test has no IPv4 address \(A\), only IPv6 \(::1\): -4 "
                              r"excludes it", ("-H", "v6.lab.test", "-4"))),
    case("ipv4-only-name-with-6", "-6 with a name that has only an A record",
         spf=Expect(UNKNOWN, r"mx\.lab\.test has no IPv6 address \(AAAA\), only IPv4 "
                             r"\(127\.0\.0\.1\): -6 excludes it", ("-6",)),
         rdns=Expect(UNKNOWN, r"mx\.lab\.test has no IPv6 address \(AAAA\), only IPv4",
                     ("-H", "mx.lab.test", "-6"))),
    case("control-chars-in-records", "line breaks, ESC and NUL in a DNSBL TXT reason, an SPF "
         "record and a PTR name, each forging a status line", CONTROL_CHARS,
         dnsbl=Expect(WARNING, r"192\.0\.2\.10 .*listed",
                      detail=r"spam source DNSBL OK - forged  SPF_MX OK - forged\?\[2J\?"),
         spf=Expect(CRITICAL, r"SPF permerror: syntax error in include ctl\.lab\.test: bad IPv4 "
                              r"address in ip4:192\.0\.2\.1 SPF_MX OK - forged\?\[2J\?", ("-v",),
                    detail=r"^    include:ctl\.lab\.test: \(syntax error: bad IPv4 address in "
                           r"ip4:192\.0\.2\.1 SPF_MX OK - forged\?\[2J\?\)$"),
         rdns=Expect(OK, r"127\.0\.0\.1 -> \S*evil\\010BANNER_RDNS\\032OK\\032-\\032forged",
                     ("-v",))),
    case("aaaa-servfail-no-ptr", "the mailer's AAAA question answers SERVFAIL (its A record "
         "works) and 127.0.0.1 has no PTR", without(GOOD, PTR),
         faults={"mx.lab.test": Fault(rcode="SERVFAIL", rdtypes=("AAAA",))},
         spf=Expect(UNKNOWN, r"DNS look-up mx\.lab\.test AAAA failed: .*SERVFAIL",
                    detail=r"^OK: SPF pass for 127\.0\.0\.1$"),
         rdns=Expect(CRITICAL, r"127\.0\.0\.1 has no PTR record; cannot resolve mx\.lab\.test: DNS "
                               r"look-up mx\.lab\.test AAAA failed", ("-H", "mx.lab.test"))),
    case("ptr-wrong-name", "the reverse zone answers with records for another name (a "
         "broken or spoofed answer, not 'no PTR')", faults={"in-addr.arpa": Fault(wrong_name=True)},
         rdns=Expect(UNKNOWN, r"1\.0\.0\.127\.in-addr\.arpa\.? PTR failed: the answer holds "
                              r"records for another name \(elsewhere\.invalid\.\)"),
         relay=Expect(OK, RELAY_OK)),
    case("dnsbl-slow-list", "the list answers after 2 s; --query-timeout 1",
         faults={"bl.lab.test": Fault(delay=2.0)},
         dnsbl=Expect(UNKNOWN, r"could not check any list \(bl\.lab\.test timed out\)",
                      ("--query-timeout", "1"))),
)
