"""Unit tests for the SPF term parser, the lint and the evaluator adapter (no servers).

Includes the openspf RFC 7208 test suite (tests/data/rfc7208-tests.json, from pyspf 2.0.14,
BSD licence in tests/data/rfc7208-tests.LICENSE), served from memory through a Lookup.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailprobe.findings import CRITICAL, WARNING
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import DNSFailure, Lookup
from mailprobe.probes.dmarc import DMARCSyntaxError, organizational_domain, parse_dmarc
from mailprobe.probes.spf.evaluate import evaluate
from mailprobe.probes.spf.lint import (
    LOOKUP_LIMIT,
    VOID_LIMIT,
    SPFSyntaxError,
    is_spf_record,
    lint,
    parse_record,
    parse_term,
)

SUITE = Path(__file__).parent / "data" / "rfc7208-tests.json"

# -- the parser ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, names", [
    ("v=spf1", []),
    ("v=spf1 -all", ["all"]),
    ("V=SPF1   ip4:192.0.2.0/24  ~ALL ", ["ip4", "all"]),
    ("v=spf1 a mx/24//64 a:%{d}.example.org/28 ptr ptr:example.org ?all",
     ["a", "mx", "a", "ptr", "ptr", "all"]),
    ("v=spf1 ip6:2001:db8::/32 ip6:::1 ip4:0.0.0.0/0 -all", ["ip6", "ip6", "ip4", "all"]),
    ("v=spf1 exists:%{i}.%{l1r+-}._spf.%{d} include:_spf.example.org. -all",
     ["exists", "include", "all"]),
    ("v=spf1 redirect=_spf.example.org exp=explain.%{d}", ["redirect", "exp"]),
    ("v=spf1 foo=bar moo= -all", ["foo", "moo", "all"]),
    ("v=spf1 a:foo-bar.1-2 a//0", ["a", "a"]),
])
def test_valid_records(text, names):
    record = parse_record(text)
    assert [t.name for t in record.terms] == names


def test_term_fields():
    term = parse_term("~mx:mail.example.org/24//64")
    assert (term.qualifier, term.name, term.domain, term.cidr4, term.cidr6) == \
        ("~", "mx", "mail.example.org", 24, 64)
    assert term.queries_dns and not term.has_macros
    assert parse_term("redirect=x.example").queries_dns
    assert not parse_term("ip4:192.0.2.1").queries_dns
    assert parse_term("exists:%{i}.x.example").has_macros


def test_redirect_is_ignored_when_all_is_present():
    assert parse_record("v=spf1 redirect=a.example").redirect is not None
    assert parse_record("v=spf1 -all redirect=a.example").redirect is None


@pytest.mark.parametrize("text", [
    "v=spf10 -all", "spf1 -all", "v=spf1\t-all", "v=spf1 moo", "v=spf1 -all:x",
    "v=spf1 ip4:192.0.2.300", "v=spf1 ip4:192.0.2.01", "v=spf1 ip4:192.0.2.0/33",
    "v=spf1 ip4:192.0.2.0/024", "v=spf1 ip4", "v=spf1 ip6:2001:db8::/129", "v=spf1 ip6:zz::",
    "v=spf1 ip6:fe80::1%eth0", "v=spf1 a:example.org/33", "v=spf1 a:", "v=spf1 include:",
    "v=spf1 include", "v=spf1 include:com", "v=spf1 a:foo.example.123", "v=spf1 exists:%{x}.a.b",
    "v=spf1 exists:%{t}.a.b", "v=spf1 exists:%{l0}.a.b", "v=spf1 a:%{d.a.b", "v=spf1 a:%a.b.c",
    "v=spf1 redirect=a.example redirect=b.example", "v=spf1 exp=a.example exp=b.example",
    "v=spf1 =a", "v=spf1 -redirect=a.example", "v=spf1 a:ex\u00e4mple.org", "v=spf1 ptr/24",
    "v=spf1 ip4:192.0.2.1\n", "v=spf1 a:example.org\n",
])
def test_invalid_records(text):
    with pytest.raises(SPFSyntaxError):
        parse_record(text)


def test_record_selection():
    assert is_spf_record("v=spf1") and is_spf_record("V=SPF1 -all")
    assert not is_spf_record("v=spf10") and not is_spf_record("v=spf1\n")
    assert not is_spf_record(" v=spf1 -all")


SPF_ALPHABET = st.sampled_from(list("v=spf1 :/.%{}-+~?_,aAdilmoprstx0123469\t\n\u00e4"))
TERMS = st.sampled_from([
    "all", "-all", "+all", "~all", "?all", "a", "mx", "ptr", "ip4:", "ip6:", "include:",
    "exists:", "redirect=", "exp=", "a:", "mx:", "/", "//", "%{", "}", "%%", "%-", "%_",
    "192.0.2.1", "2001:db8::", "example.org", ".", "d", "i", "l1r", "ir", "24", "128", "0",
    "=", ":", "x", "-", "%{d}", "%{ir}.",
])


@settings(max_examples=1500, deadline=None)
@given(st.text())
def test_any_text_raises_only_our_error(text):
    _parse_or_syntax_error(text)
    _parse_or_syntax_error("v=spf1 " + text)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.lists(TERMS, max_size=5).map("".join), max_size=8),
       st.text(SPF_ALPHABET, max_size=40))
def test_spf_shaped_text_raises_only_our_error(words, noise):
    _parse_or_syntax_error("v=spf1 " + " ".join(words))
    _parse_or_syntax_error("v=spf1 " + " ".join(words) + noise)
    for word in words:
        with contextlib.suppress(SPFSyntaxError):
            parse_term(word)


def _parse_or_syntax_error(text: str) -> None:
    try:
        record = parse_record(text)
    except SPFSyntaxError:
        return
    for term in record.terms:  # what the lint reads must be well formed
        assert term.name
        assert term.is_modifier or term.qualifier in "+-~?"
        assert term.cidr4 is None or 0 <= term.cidr4 <= 32
        assert term.cidr6 is None or 0 <= term.cidr6 <= 128


# -- an in-memory Lookup (the suite's zone data, or a small dict) ---------------------------


class MemoryLookup(Lookup):
    """:class:`Lookup` over zone data ``{name: [(rdtype, value), ...]}``; no network."""

    def __init__(self, zone: dict[str, list]) -> None:
        super().__init__(resolver=None, deadline=Deadline(60))  # type: ignore[arg-type]
        self.zone = zone

    def query(self, qname: str, rdtype: str, _depth: int = 0):
        self.queries += 1
        name = qname.rstrip(".").lower()
        if any(not label or len(label) > 63 for label in name.split(".")):
            raise DNSFailure(qname, rdtype, "bad name")
        entries = self.zone.get(name)
        if entries is None:
            if name.startswith("error."):
                raise DNSFailure(qname, rdtype, "timed out")
            return None
        found = []
        for entry in entries:
            if entry == "TIMEOUT":  # as pyspf's driver: times out unless an answer came first
                if found:
                    break
                raise DNSFailure(qname, rdtype, "timed out")
            kind, value = entry
            if kind == rdtype:
                if value == "TIMEOUT":
                    raise DNSFailure(qname, rdtype, "timed out")
                if value != []:  # an empty TXT cannot be built (illegal on the wire anyway)
                    found.append(_rdata(kind, value))
        if not found and rdtype != "CNAME" and _depth < 10:
            for kind, value in entries:
                if kind == "CNAME":
                    return self.query(value, rdtype, _depth + 1)
        return found or None


def _rdata(kind: str, value):
    if kind in ("TXT", "SPF"):
        strings = [value] if isinstance(value, str) else list(value)
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT,
                                       [s.encode("utf-8") for s in strings])
    if kind == "MX":
        preference, exchange = value
        text = f"{preference} {exchange.rstrip('.')}."
    elif kind in ("PTR", "CNAME"):
        text = value.rstrip(".") + "."
    else:
        text = value
    return dns.rdata.from_text("IN", kind, text)


def _suite_zone(zonedata: dict) -> dict[str, list]:
    """The suite's zone data as the test driver (pyspf's testspf.py) reads it: SPF-type
    records are copied to TXT when a name has no TXT record; 'NONE' means absent."""
    zone: dict[str, list] = {}
    for name, records in zonedata.items():
        entries: list = []
        has_txt = any(isinstance(r, dict) and "TXT" in r for r in records)
        for record in records:
            if not isinstance(record, dict):
                entries.append(record)  # "TIMEOUT"
                continue
            for kind, value in record.items():
                if value == "NONE" or value == ["NONE"]:
                    continue
                entries.append((kind, value))
                if kind == "SPF" and not has_txt:
                    entries.append(("TXT", value))
        zone[name.lower()] = entries
    return zone


def _suite_cases():
    for scenario in json.loads(SUITE.read_text()):
        zone = _suite_zone(scenario["zonedata"])
        for test_id, test in scenario["tests"].items():
            yield pytest.param(zone, test, id=test_id)


SUITE_CASES = list(_suite_cases())


def _expected(test: dict) -> list[str]:
    result = test["result"]
    return result if isinstance(result, list) else [result]


def _sender_domain(test: dict) -> str:
    mailfrom = test.get("mailfrom") or ""
    return mailfrom.rpartition("@")[2] if mailfrom else test["helo"]


# -- the openspf RFC 7208 suite -------------------------------------------------------------


def test_suite_is_there():
    assert len(SUITE_CASES) == 203


@pytest.mark.parametrize("zone, test", SUITE_CASES)
def test_suite_through_our_adapter(zone, test):
    """pyspf's check_host(), asked through mailprobe's Lookup adapter, agrees with the suite."""
    mailfrom = test.get("mailfrom") or ""
    if "@" not in mailfrom or mailfrom.startswith("@") or "[" in mailfrom:
        pytest.skip("no plain local@domain sender (evaluate() takes a sender domain)")
    domain = mailfrom.rpartition("@")[2]
    result = evaluate(test["host"], domain, MemoryLookup(zone), helo=test["helo"],
                      sender=mailfrom)
    assert result.result in _expected(test), result.explanation


@pytest.mark.parametrize("zone, test", SUITE_CASES)
def test_suite_against_the_lint(zone, test):
    """Our parser never rejects a record the suite evaluates normally, and every record the
    suite calls a permerror is caught by the parser or by the lint's walk."""
    domain = _sender_domain(test)
    try:
        records = [t for t in MemoryLookup(zone).txt(domain) if is_spf_record(t)]
    except DNSFailure:
        pytest.skip("the suite's DNS times out here")
    if len(records) != 1:
        pytest.skip("no single record at the sender domain")
    expected = _expected(test)
    try:
        parse_record(records[0])
    except SPFSyntaxError as exc:
        assert "permerror" in expected, f"rejected {records[0]!r}: {exc}"
        return
    if expected != ["permerror"]:
        return
    report = lint(domain, MemoryLookup(zone))
    flagged = (any(f.level == CRITICAL for f in report.findings)
               or report.lookups > LOOKUP_LIMIT or report.void_lookups > VOID_LIMIT)
    assert flagged, f"lint missed the permerror in {records[0]!r}: {report.findings}"


# -- the lint on small zones ---------------------------------------------------------------


def _zone(**records: str) -> MemoryLookup:
    return MemoryLookup({name.replace("_", "."): [("TXT", text)] for name, text in
                         records.items()})


def test_lint_counts_and_follows():
    lookup = MemoryLookup({
        "a.example": [("TXT", "v=spf1 include:b.example mx a:h.example ptr ~all"),
                      ("MX", (10, "h.example"))],
        "b.example": [("TXT", "v=spf1 +all")],
        "h.example": [("A", "192.0.2.1")],
    })
    report = lint("a.example", lookup)
    assert report.lookups == 4
    assert report.void_lookups == 0
    assert report.all_qualifier == "~"
    codes = {f.code: f.level for f in report.findings}
    assert codes["spf-plus-all"] == CRITICAL  # +all inside a +include authorises everyone
    assert codes["spf-ptr"] == WARNING
    assert report.tree is not None
    assert report.tree.lines() == [
        "a.example: v=spf1 include:b.example mx a:h.example ptr ~all",
        "  include:b.example: v=spf1 +all",
    ]


def test_lint_redirect_loop_and_missing_target():
    report = lint("a.example", _zone(a_example="v=spf1 redirect=b.example",
                                     b_example="v=spf1 redirect=a.example"))
    assert [f.code for f in report.findings if f.level == CRITICAL] == ["spf-loop"]
    report = lint("a.example", _zone(a_example="v=spf1 include:nowhere.example -all"))
    assert [f.code for f in report.findings if f.level == CRITICAL] == ["spf-target-missing"]


def test_lint_macros_are_not_followed():
    report = lint("a.example", _zone(a_example="v=spf1 include:%{ir}.x.example -all"))
    assert report.lookups == 1
    assert report.tree is not None
    assert report.tree.children[0].problem.startswith("macro")


# -- DMARC and the organizational domain ---------------------------------------------------


@pytest.mark.parametrize("name, org", [
    ("mail.example.test", "example.test"), ("example.test", "example.test"),
    ("mx1.mail.example.co.uk", "example.co.uk"), ("a.b.example.com.", "example.com"),
    ("test", None), ("co.uk", None), ("localhost", None),
])
def test_organizational_domain(name, org):
    assert organizational_domain(name) == org


def test_dmarc_parser():
    assert parse_dmarc("v=DMARC1; p=reject; rua=mailto:d@example.org")["p"] == "reject"
    for bad in ("p=reject; v=DMARC1", "v=DMARC1; p=maybe", "v=DMARC1", "v=DMARC1; p=none; sp=x",
                "v=DMARC1; junk"):
        with pytest.raises(DMARCSyntaxError):
            parse_dmarc(bad)
