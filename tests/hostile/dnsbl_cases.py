"""The catalogue of DNS behaviours that gave check_dnsbl a wrong verdict (issue 12), and more.

Every case is a :class:`~lab.dnsd.ScriptedDNSServer` serving :data:`WORLD` (the list
bl.lab.test with its RFC 5782 test entry, 192.0.2.10 listed on it, 192.0.2.99 not; the
dual-stack mailer mx.lab.test at 192.0.2.20 and 2001:db8::20, and listed.lab.test at
192.0.2.10) with one thing broken. check_dnsbl runs as test_dnsbl_hostile.py says:
``check_dnsbl -H 192.0.2.99 --zone bl.lab.test --nameserver ... -t 4`` plus the case's own
options (an ``-H`` in them replaces the address). Each state was a wrong verdict (OK, or WARNING
where UNKNOWN or CRITICAL was due) before the issue-12 fixes unless noted "(was right)".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.dnsd import Fault
from tests.hostile.expect import CRITICAL, OK, UNKNOWN, WARNING, Expect, as_tuple

WORLD = """
2.0.0.127.bl.lab.test.   A     127.0.0.2
2.0.0.127.bl.lab.test.   TXT   "RFC 5782 test entry"
10.2.0.192.bl.lab.test.  A     127.0.0.4
10.2.0.192.bl.lab.test.  TXT   "Exploited host 192.0.2.10"
mx.lab.test.             A     192.0.2.20
mx.lab.test.             AAAA  2001:db8::20
listed.lab.test.         A     192.0.2.10
listed.lab.test.         AAAA  2001:db8::20
"""
BL = "bl.lab.test"
TEST_ENTRY = "2.0.0.127.bl.lab.test."
CLEAN = r"192\.0\.2\.99 not listed on 1 list"
MX = ("-H", "mx.lab.test")
QUICK = ("-t", "3", "--query-timeout", "1")  # for answers that never come


def without(records: str, *owners: str) -> str:
    """``records`` minus every line whose owner name (first word) is in ``owners``."""
    return "\n".join(line for line in records.splitlines()
                     if not line.split() or line.split()[0] not in owners)


def replacing(owner_type: str, *lines: str) -> str:
    """WORLD with the records of ``"OWNER TYPE"`` replaced by ``lines``."""
    owner, rtype = owner_type.split()
    kept = [line for line in WORLD.splitlines()
            if not (line.split()[:1] == [owner] and line.split()[1:2] == [rtype])]
    return "\n".join([*kept, *lines])


@dataclass(frozen=True)
class DnsblCase:
    id: str
    description: str
    records: str = WORLD
    fault: Fault = field(default_factory=Fault)
    faults: dict[str, Fault] = field(default_factory=dict)
    expect: tuple[Expect, ...] = ()
    item: str = ""  # the item of issue 12 it belongs to


def case(id_: str, item: str, description: str, expect: Expect | tuple[Expect, ...],
         records: str = WORLD, *, fault: Fault | None = None,
         faults: dict[str, Fault] | None = None) -> DnsblCase:
    return DnsblCase(id_, description, records, fault or Fault(), dict(faults or {}),
                     as_tuple(expect), item)


DNSBL_CASES: tuple[DnsblCase, ...] = (
    # -- item 10: a path that says "not listed" to everything ----------------------------
    case("nxdomain-for-everything", "10",
         "the resolver answers NXDOMAIN to every question (filtering, broken, or a dead list)",
         Expect(UNKNOWN, r"could not check any list \(bl\.lab\.test test entry not listed\)",
                detail=r"does not list its RFC 5782 test entry 127\.0\.0\.2"),
         fault=Fault(rcode="NXDOMAIN")),
    case("dead-list", "10", "the list's zone answers, but lists nothing at all (not even "
         "127.0.0.2)",
         (Expect(UNKNOWN, r"could not check any list \(bl\.lab\.test test entry not listed\)"),
          Expect(OK, CLEAN, ("--zone", "bl.lab.test:no-test-entry")),
          Expect(OK, CLEAN, ("--no-sanity-check",))),
         without(WORLD, TEST_ENTRY)),
    case("one-list-says-nxdomain", "10", "one of two lists answers NXDOMAIN to everything",
         Expect(UNKNOWN, r"192\.0\.2\.99 not listed on 1 of 2 lists; 1 list could not be "
                r"checked \(bl2\.lab\.test\)", ("--zone", "bl2.lab.test")),
         WORLD + "\n2.0.0.127.bl2.lab.test. A 127.0.0.2",
         faults={"bl2.lab.test": Fault(rcode="NXDOMAIN")}),
    case("test-entry-unanswered", "10", "the test entry is never answered (the real question "
         "is: NXDOMAIN)", Expect(UNKNOWN, r"bl\.lab\.test test entry timed out", QUICK, 3,
                                 detail=r"test entry 127\.0\.0\.2 could not be asked"),
         faults={TEST_ENTRY: Fault(silent=True)}),
    case("test-entry-error-code", "10", "the test entry gets the 'public resolver' error "
         "code 127.255.255.254, the real question NXDOMAIN",
         Expect(UNKNOWN, r"bl\.lab\.test test entry answered 127\.255\.255\.254"),
         replacing(f"{TEST_ENTRY} A", f"{TEST_ENTRY} A 127.255.255.254")),
    case("listed-without-test-entry", "10", "a list lists the address but not its test entry: "
         "the listing stands (was right)", Expect(WARNING, r"192\.0\.2\.10 listed on 1 of 1 "
                                                  r"list \(bl\.lab\.test\)", ("-H", "192.0.2.10")),
         without(WORLD, TEST_ENTRY)),
    # -- item 11: replies that are not the answer ------------------------------------------
    case("reflected-query", "11", "the query comes back as it was sent (QR flag clear): "
         "NOERROR, no records",
         Expect(UNKNOWN, r"could not check any list \(bl\.lab\.test unusable answer\)", QUICK, 3,
                detail=r"QR flag clear"), fault=Fault(reflect=True)),
    case("reflected-over-tcp", "11", "UDP answers are truncated; over TCP the query comes back",
         Expect(UNKNOWN, r"could not check any list \(bl\.lab\.test unusable answer\)",
                detail=r"QR flag clear.*over TCP"), fault=Fault(truncate=True, reflect=True)),
    case("answer-from-other-port", "11", "UDP answers come from another port than the one "
         "asked (a spoof, or a broken NAT)",
         Expect(UNKNOWN, r"could not check any list \(bl\.lab\.test timed out\)", QUICK, 3),
         fault=Fault(other_port=True)),
    case("answer-from-other-address", "11", "UDP answers come from 127.0.0.53, not the "
         "resolver asked (127.0.0.1)",
         Expect(UNKNOWN, r"could not check any list \(bl\.lab\.test timed out\)", QUICK, 3),
         fault=Fault(other_address="127.0.0.53")),
    case("records-for-another-name", "11", "NOERROR with A records for another name than "
         "the one asked (none for the question)",
         (Expect(UNKNOWN, r"could not check any list \(bl\.lab\.test unusable answer\)",
                 ("-H", "192.0.2.10"),
                 detail=r"holds records for elsewhere\.invalid A but none for the question "
                        r"\(10\.2\.0\.192\.bl\.lab\.test A\)"),
          Expect(UNKNOWN, r"could not check any list \(bl\.lab\.test test entry unusable "
                 r"answer\)")),
         fault=Fault(wrong_name=True)),
    # -- item 12: one round trip, listed or not --------------------------------------------
    case("slow-listing", "12", "every answer 0.5 s late: a listing with its TXT reason and "
         "the test entries in one round",
         Expect(WARNING, r"192\.0\.2\.10 listed on 1 of 1 list", ("-H", "192.0.2.10", "-v"),
                detail=r"DNS quer(y|ies) in one round"), fault=Fault(delay=0.5)),
    case("txt-never-answered", "12", "the list answers A but never TXT: a clean answer does "
         "not wait for its TXT, a listing is reported without its reason",
         (Expect(OK, CLEAN, ("-vvv",), detail=r"99\.2\.0\.192\.bl\.lab\.test TXT -> not waited "
                 r"for"),
          Expect(WARNING, r"192\.0\.2\.10 listed on 1 of 1 list", ("-H", "192.0.2.10", *QUICK),
                 3, detail=r"LISTED on bl\.lab\.test \(weight 1\): return code 127\.0\.0\.4: "
                           r"listed$")),
         faults={"bl.lab.test": Fault(silent=True, rdtypes=("TXT",))}),
    # -- item 3: a dual-stack mailer whose one family cannot be looked up ----------------
    case("aaaa-servfail", "3", "-H mx.lab.test: A answers, AAAA gets SERVFAIL",
         (Expect(UNKNOWN, r"mx\.lab\.test \(192\.0\.2\.20\): 192\.0\.2\.20 not listed on 1 list;"
                 r" mx\.lab\.test AAAA could not be looked up \(SERVFAIL\): IPv6 not checked", MX,
                 detail=r"mx\.lab\.test AAAA could not be looked up: the resolver answered "
                        r"SERVFAIL"),
          Expect(OK, r"192\.0\.2\.20 not listed on 1 list", ("-4", *MX))),
         faults={"mx.lab.test": Fault(rcode="SERVFAIL", rdtypes=("AAAA",))}),
    case("a-unanswered", "3", "-H mx.lab.test: AAAA answers, A never does",
         Expect(UNKNOWN, r"mx\.lab\.test \(2001:db8::20\): 2001:db8::20 not listed on 1 list; "
                r"mx\.lab\.test A could not be looked up \(timed out\): IPv4 not checked",
                (*MX, *QUICK), 3),
         faults={"mx.lab.test": Fault(silent=True, rdtypes=("A",))}),
    case("aaaa-servfail-but-listed", "3", "-H listed.lab.test: its IPv4 address is listed "
         "(weight 2), AAAA gets SERVFAIL: the listing outranks what could not be checked",
         Expect(CRITICAL, r"192\.0\.2\.10 listed on 1 of 1 list \(bl\.lab\.test\); "
                r"listed\.lab\.test AAAA could not be looked up \(SERVFAIL\)",
                ("-H", "listed.lab.test", "--zone", "bl.lab.test:2")),
         faults={"listed.lab.test": Fault(rcode="SERVFAIL", rdtypes=("AAAA",))}),
    case("both-families-fail", "3", "-H mx.lab.test: A and AAAA both get SERVFAIL (was right)",
         Expect(UNKNOWN, r"could not look up mx\.lab\.test A: .*SERVFAIL.*; AAAA: "
                r".*SERVFAIL.*; nothing was checked", MX),
         faults={"mx.lab.test": Fault(rcode="SERVFAIL")}),
    # -- item 4: addresses that cannot be a mail server ---------------------------------
    case("zero-address", "4", "-H mx.lab.test resolves to 0.0.0.0 only (a sinkhole)",
         Expect(UNKNOWN, r"mx\.lab\.test A answered 0\.0\.0\.0, which cannot be a mail server "
                r"\(the unspecified address.*a bad DNS answer", MX),
         without(WORLD, "mx.lab.test.") + "\nmx.lab.test. A 0.0.0.0"),
    case("multicast-aaaa", "4", "-H mx.lab.test: a good A, and AAAA ff02::1 (multicast)",
         Expect(UNKNOWN, r"192\.0\.2\.20 not listed on 1 list; mx\.lab\.test AAAA answered "
                r"ff02::1: bad DNS answer, not checked", MX),
         replacing("mx.lab.test. AAAA", "mx.lab.test. AAAA ff02::1")),
    case("broadcast-address", "4", "-H mx.lab.test: A 255.255.255.255 and a good AAAA",
         Expect(UNKNOWN, r"mx\.lab\.test A answered 255\.255\.255\.255: bad DNS answer", MX),
         replacing("mx.lab.test. A", "mx.lab.test. A 255.255.255.255")),
)
