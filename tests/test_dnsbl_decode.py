"""Unit tests: decoding DNSBL answers, query names, the zone tables and zone selection."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailprobe.checks.dnsbl import (
    build_parser,
    no_jobs_reason,
    select_zones,
    summarize,
    zone_spec,
)
from mailprobe.checks.plugin import UsageError
from mailprobe.probes.dnsbl.decode import AnswerError, decode_answer, decode_answers
from mailprobe.probes.dnsbl.lookup import (
    CLEAN,
    ERROR,
    FAILED,
    LISTED,
    DnsblReport,
    Target,
    Unchecked,
    ZoneResult,
    entry_query_name,
    plan,
)
from mailprobe.probes.dnsbl.zones import (
    DEFAULT_DOMAIN,
    DEFAULT_IP,
    DOMAIN,
    IP,
    KNOWN,
    Code,
    Zone,
    dead_reason,
    default_zones,
    known_zone,
    pydnsbl_zones,
)

ZEN = KNOWN["zen.spamhaus.org"]
DBL = KNOWN["dbl.spamhaus.org"]
SURBL = KNOWN["multi.surbl.org"]
URIBL = KNOWN["multi.uribl.com"]
PLAIN = Zone("bl.example.net")


@pytest.mark.parametrize(("zone", "answer", "meaning"), [
    (ZEN, "127.0.0.2", "SBL: known spam source or spam operation"),
    (ZEN, "127.0.0.3", "CSS: snowshoe or low-reputation bulk sending"),
    (ZEN, "127.0.0.4", "XBL: exploited host (botnet, malware, open proxy)"),
    (ZEN, "127.0.0.9", "DROP: hijacked or leased-to-spammers netblock"),
    (ZEN, "127.0.0.10", "PBL (ISP-maintained): end-user range that should not send mail "
                        "directly"),
    (DBL, "127.0.1.2", "spam domain"),
    (DBL, "127.0.1.106", "abused legitimate domain (botnet C&C)"),
    (SURBL, "127.0.0.8", "PH: phishing"),
    (SURBL, "127.0.0.80", "MW: malware, ABUSE: spam and abuse"),
    (URIBL, "127.0.0.14", "black: domain in spam, grey: domain in grey (bulk) mail, "
                          "red: domain of a newly seen spam campaign"),
    (PLAIN, "127.0.0.2", "listed"),
    (PLAIN, "127.0.0.77", "listed"),
    (ZEN, "127.0.0.99", "listed (return code 127.0.0.99 is not documented for "
                        "zen.spamhaus.org)"),
])
def test_listing_codes(zone, answer, meaning):
    decoded = decode_answer(zone, answer)
    assert decoded.listed
    assert decoded.meaning == meaning


@pytest.mark.parametrize(("zone", "answer", "words"), [
    (ZEN, "127.255.255.252", "typing error"),
    (ZEN, "127.255.255.254", "public or open resolver"),
    (ZEN, "127.255.255.255", "rate-limits"),
    (PLAIN, "127.255.255.254", "public or open resolver"),
    (DBL, "127.0.1.255", "an IP address was queried against a domain list"),
    (URIBL, "127.0.0.1", "RFC 5782 reserves"),
    (SURBL, "127.0.0.1", "RFC 5782 reserves"),
    (PLAIN, "127.0.0.1", "RFC 5782 reserves"),
    (PLAIN, "192.0.2.1", "outside 127.0.0.0/8"),
    (PLAIN, "10.0.0.2", "outside 127.0.0.0/8"),
    (ZEN, "0.0.0.0", "outside 127.0.0.0/8"),
])
def test_error_answers_are_not_listings(zone, answer, words):
    decoded = decode_answer(zone, answer)
    assert not decoded.listed
    assert words in decoded.meaning


def test_mixed_answer_splits_listings_and_errors():
    listings, errors = decode_answers(ZEN, ["127.0.0.2", "127.255.255.254"])
    assert [d.code for d in listings] == ["127.0.0.2"]
    assert [d.code for d in errors] == ["127.255.255.254"]


@pytest.mark.parametrize("text", ["", "localhost", "127.0.0", "::1", "127.0.0.256",
                                  "127.000.0.2", "\uff11\uff12\uff17.0.0.2", "127.0.0.2 x"])
def test_undecodable_answers_raise_answer_error(text):
    with pytest.raises(AnswerError):
        decode_answer(PLAIN, text)


ZONES = st.sampled_from([ZEN, DBL, SURBL, URIBL, PLAIN, *KNOWN.values()])


@given(ZONES, st.one_of(st.text(max_size=40), st.binary(max_size=20), st.none(),
                        st.integers()))
def test_decoder_raises_only_its_own_error(zone, text):
    with contextlib.suppress(AnswerError):
        decode_answer(zone, text)  # type: ignore[arg-type]


@given(ZONES, st.integers(min_value=0, max_value=2**32 - 1))
def test_only_loopback_non_reserved_answers_are_listings(zone, number):
    address = ipaddress.IPv4Address(number)
    decoded = decode_answer(zone, str(address))
    if decoded.listed:
        assert address in ipaddress.IPv4Network("127.0.0.0/8")
        assert str(address) not in ("127.0.0.1", "127.255.255.252", "127.255.255.254",
                                    "127.255.255.255")
        assert str(address) not in zone.errors
    assert decoded.code == str(address)
    assert decoded.meaning


@given(st.dictionaries(st.ip_addresses(v=4).map(str),
                       st.text(min_size=1, max_size=10).map(Code), max_size=5),
       st.booleans(), st.ip_addresses(v=4).map(str))
def test_arbitrary_code_tables_decode(codes, bitmask, answer):
    zone = Zone("x.example", codes=codes, bitmask=bitmask)
    decoded = decode_answer(zone, answer)
    assert decoded.listed in (True, False)


def test_query_names():
    assert Target.address("192.0.2.10").query_name("bl.x") == "10.2.0.192.bl.x"
    v6 = Target.address("2001:db8::10").query_name("bl.x")
    assert v6 == "0.1.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.bl.x"
    assert len(v6.split(".")) == 32 + 2
    assert Target.address("::ffff:192.0.2.1") == Target("192.0.2.1", IP, 4)
    assert Target.domain("Mail.Example.ORG.").query_name("dbl.x") == "mail.example.org.dbl.x"
    assert Target.domain("bücher.example").text == "xn--bcher-kva.example"
    plain, domains = Zone("bl.x"), Zone("dbl.x", kind=DOMAIN)
    assert entry_query_name(plain, plain.never_listed_entry) == "1.0.0.127.bl.x"
    assert entry_query_name(plain, plain.listed_test_entry or "") == "2.0.0.127.bl.x"
    assert entry_query_name(domains, domains.never_listed_entry) == "invalid.dbl.x"
    assert entry_query_name(domains, domains.listed_test_entry or "") == "test.dbl.x"
    assert entry_query_name(DBL, DBL.listed_test_entry or "") == "dbltest.com.dbl.spamhaus.org"


@pytest.mark.parametrize("bad", ["", ".", "a..b", "x" * 64 + ".example", "a b.example",
                                 "a\\.example", "@", "tab\there.example"])
def test_bad_domains(bad):
    with pytest.raises(ValueError):
        Target.domain(bad)


def test_plan_matches_kinds_and_ipv6_support():
    targets = [Target.address("192.0.2.1"), Target.address("2001:db8::1"),
               Target.domain("a.example")]
    zones = [ZEN, KNOWN["bl.spamcop.net"], DBL]
    jobs, skipped = plan(targets, zones)
    assert [(t.text, z.host) for t, z in jobs] == [
        ("192.0.2.1", "zen.spamhaus.org"), ("192.0.2.1", "bl.spamcop.net"),
        ("2001:db8::1", "zen.spamhaus.org"), ("a.example", "dbl.spamhaus.org")]
    assert [(t.text, z.host) for t, z, _ in skipped] == [("2001:db8::1", "bl.spamcop.net")]


def test_curated_tables_are_sane():
    assert set(DEFAULT_IP) | set(DEFAULT_DOMAIN) <= set(KNOWN)
    for zone in KNOWN.values():
        assert dead_reason(zone.host) is None, zone.host
        assert zone.kind in (IP, DOMAIN)
        assert zone.host == zone.host.strip().lower()
        assert zone.url.startswith("https://")
        for code in zone.codes:
            if zone.bitmask:
                assert int(code) in (1, 2, 4, 8, 16, 32, 64, 128)
            else:
                address = ipaddress.IPv4Address(code)
                assert address in ipaddress.IPv4Network("127.0.0.0/8")
                assert code != "127.0.0.1"
    assert all(z.kind == IP for z in default_zones()[:len(DEFAULT_IP)])
    assert all(z.kind == DOMAIN for z in default_zones()[len(DEFAULT_IP):])


def test_dead_lists():
    assert dead_reason("dnsbl.sorbs.net") == "SORBS closed in June 2024"
    assert dead_reason("spam.dnsbl.sorbs.net.") == "SORBS closed in June 2024"
    assert dead_reason("cbl.abuseat.org")
    assert dead_reason("notsorbs.net") is None
    assert dead_reason("zen.spamhaus.org") is None


def test_known_zone_by_dqs_suffix():
    zone = known_zone("mykey.zen.dq.spamhaus.net")
    assert zone is not None and zone.host == "mykey.zen.dq.spamhaus.net"
    assert zone.codes is ZEN.codes
    assert ZEN.host == "zen.spamhaus.org"  # the curated entry is untouched


def test_zone_spec():
    assert zone_spec("zen.spamhaus.org").weight == 2
    spec = zone_spec("zen.spamhaus.org:0.5")
    assert (spec.weight, spec.kind, spec.codes is ZEN.codes) == (0.5, IP, True)
    assert ZEN.weight == 2
    other = zone_spec("dbl.lab.test:domain:3")
    assert (other.host, other.kind, other.weight) == ("dbl.lab.test", DOMAIN, 3)
    for bad in ("x", "bl.x:heavy", "bl.x:-1", "a/b.c", "bl.x:notest"):
        with pytest.raises(argparse.ArgumentTypeError):
            zone_spec(bad)


def test_zone_spec_no_test_entry():
    local = zone_spec("bl.local.test:no-test-entry:0.5")
    assert (local.weight, local.listed_test_entry, local.never_listed_entry) == (
        0.5, None, "127.0.0.1")
    assert zone_spec("bl.local.test").listed_test_entry == "127.0.0.2"  # RFC 5782's, assumed
    assert zone_spec("dbl.local.test:domain").listed_test_entry == "test"
    dbl = zone_spec("dbl.spamhaus.org:no-test-entry")
    assert dbl.listed_test_entry is None and DBL.listed_test_entry == "dbltest.com"
    # a curated list asked as the other kind loses its documented test point, not the RFC's
    assert zone_spec("dbl.spamhaus.org:ip").listed_test_entry == "127.0.0.2"


def test_every_curated_zone_says_which_test_entry_it_lists():
    for zone in KNOWN.values():
        assert zone.test_point is not None, zone.host  # curated: never left to the default
        assert zone.listed_test_entry, zone.host
        if zone.kind == IP:
            assert zone.listed_test_entry == "127.0.0.2"
        else:
            assert zone.listed_test_entry not in ("invalid", "")
    assert (DBL.listed_test_entry, SURBL.listed_test_entry, URIBL.listed_test_entry) == (
        "dbltest.com", "test.surbl.org", "test.uribl.com")
    assert known_zone("k.zen.dq.spamhaus.net").listed_test_entry == "127.0.0.2"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_select_zones():
    assert [z.host for z in select_zones(parse("-H", "x"))] == DEFAULT_IP + DEFAULT_DOMAIN
    only = select_zones(parse("--zone", "a.test", "--zone", "b.test:2", "--exclude", "a.test"))
    assert [(z.host, z.weight) for z in only] == [("b.test", 2)]
    more = select_zones(parse("--add-zone", "c.test", "--exclude", "bl.spamcop.net"))
    assert "c.test" in [z.host for z in more] and "bl.spamcop.net" not in [z.host for z in more]
    with pytest.raises(UsageError, match="SORBS"):
        select_zones(parse("--add-zone", "dnsbl.sorbs.net"))


def _result(target: Target, zone: Zone, status: str, brief: str = "") -> ZoneResult:
    return ZoneResult(target, zone, status, brief=brief)


def test_summarize_orders_listed_first_and_names_failures():
    a, b = Target.address("192.0.2.1"), Target.address("192.0.2.2")
    one, two = Zone("one.test"), Zone("two.test")
    report = DnsblReport("mail.example", [a, b], [one, two], [
        _result(a, one, CLEAN), _result(a, two, FAILED, "timed out"),
        _result(b, one, LISTED), _result(b, two, ERROR, "answered 127.255.255.254")])
    assert summarize(report) == (
        "mail.example (192.0.2.1, 192.0.2.2): 192.0.2.2 listed on 1 of 2 lists (one.test); "
        "192.0.2.1 not listed on 1 of 2 lists; 1 list could not be checked (two.test)")
    assert report.weight == 1
    assert len(report.failed) == 2 and len(report.checked) == 2


def test_what_was_not_checked_is_always_named():
    """Parts of -H not checked close the status line, also when nothing else was asked or no
    list answered."""
    a = Target.address("192.0.2.1")
    aaaa = Unchecked("long", "mail.example AAAA could not be looked up (SERVFAIL): IPv6 not "
                             "checked")
    report = DnsblReport("mail.example", [a], [Zone("one.test")],
                         [_result(a, Zone("one.test"), FAILED, "timed out")], unchecked=[aaaa])
    assert summarize(report) == ("mail.example (192.0.2.1): could not check any list (one.test "
                                 "timed out); " + aaaa.brief)
    six = Target.address("2001:db8::1")
    nothing = DnsblReport("mail.example", [six], [KNOWN["bl.spamcop.net"]], [],
                          skipped=[(six, KNOWN["bl.spamcop.net"], "no IPv6")],
                          unchecked=[Unchecked("long", "mail.example A ...: IPv4 not checked")])
    assert no_jobs_reason(nothing) == ("none of the selected lists lists IPv6 addresses: "
                                       "nothing was checked; mail.example A ...: IPv4 not "
                                       "checked")


def test_pydnsbl_catalogue_becomes_zones_without_dead_lists():
    """--pydnsbl-lists: pydnsbl's providers as zones, curated where we know them, dead left out."""
    import pydnsbl.providers

    import mailprobe.probes.dnsbl.zones as zones_module

    zones, dead = pydnsbl_zones()
    names = {z.host for z in zones}
    assert "zen.spamhaus.org" in names and "dbl.spamhaus.org" in names
    assert {z.kind for z in zones if z.host == "dbl.spamhaus.org"} == {DOMAIN}
    assert next(z for z in zones if z.host == "zen.spamhaus.org").codes  # our curated table
    assert all(dead_reason(name) for name in dead)
    assert not any(dead_reason(name) for name in names)
    assert all(name == name.strip() for name in names)  # pydnsbl has 'rhsbl.sorbs.net '
    every = {p.host.strip() for p in pydnsbl.providers.BASE_PROVIDERS
             + pydnsbl.providers.BASE_DOMAIN_PROVIDERS}
    assert names | set(dead) == every
    for name in dir(zones_module):
        if name.startswith("DNSBL_CATEGORY_"):
            assert getattr(zones_module, name) == getattr(pydnsbl.providers, name)
