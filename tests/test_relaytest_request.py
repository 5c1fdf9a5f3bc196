"""mailprobe relaytest: request parsing, authentication headers, authorisation, configuration
and booking schedules (pure parts; DKIM through a real Knot is in test_relaytest_dkim.py)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from mailprobe.service import authz
from mailprobe.service.authn import (
    Authentication,
    aligned,
    from_trusted_header,
    parse_authentication_results,
)
from mailprobe.service.config import ConfigError, duration, load_config, parse_config
from mailprobe.service.request import automatic_reason, parse_request, read_token
from mailprobe.service.schedule import Schedule, ScheduleError

ROOT = Path(__file__).resolve().parent.parent


def mail(body: str, subject: str = "relay test", sender: str = "Alice <alice@uni.test>",
         headers: str = "", content_type: str = "text/plain; charset=utf-8") -> bytes:
    return (f"From: {sender}\r\nTo: relaytest@relaytest.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <req-1@uni.test>\r\nDate: Thu, 21 May 2026 09:00:00 +0000\r\n"
            f"{headers}MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n"
            f"{body}").encode()


# --- parsing ---------------------------------------------------------------------------------

def test_single_address() -> None:
    request = parse_request(mail("test 192.0.2.25\n"))
    assert request.usable and request.addresses == ["192.0.2.25"]
    assert request.requester == "alice@uni.test" and not request.problems
    assert request.key == "mid:<req-1@uni.test>"


def test_several_addresses_on_one_line_and_several_lines_ipv6_too() -> None:
    request = parse_request(mail("Hello,\n\ntest 192.0.2.25 192.0.2.26, 2001:DB8::25\n"
                                 "TEST 192.0.2.27\n  test 192.0.2.25\nThanks\n"))
    assert request.addresses == ["192.0.2.25", "192.0.2.26", "2001:db8::25", "192.0.2.27"]
    assert not request.problems


@pytest.mark.parametrize("subject", ["relay test", "Relay Test", "RELAY TEST", "Re: relay test",
                                     "RE: Re:  relay   test", "Fwd: relay test"])
def test_subject_forms(subject: str) -> None:
    assert parse_request(mail("test 192.0.2.25", subject=subject)).subject_ok


@pytest.mark.parametrize("subject", ["relay tests", "please relay test", "test", ""])
def test_wrong_subject_is_explained(subject: str) -> None:
    request = parse_request(mail("test 192.0.2.25", subject=subject))
    assert not request.usable and "not 'relay test'" in request.problems[0]


def test_quoted_lines_and_signature_are_ignored() -> None:
    body = ("test 192.0.2.25\n\nOn Monday you wrote:\n> test 192.0.2.99\n>> test 192.0.2.98\n"
            "-- \nAlice\ntest 192.0.2.97\n")
    assert parse_request(mail(body)).addresses == ["192.0.2.25"]


def test_html_only_mail() -> None:
    body = ("<html><head><style>p {}</style></head><body><p>Hi</p><p>test 192.0.2.25&nbsp;"
            "192.0.2.26</p><blockquote>test 192.0.2.99</blockquote></body></html>")
    request = parse_request(mail(body, content_type="text/html; charset=utf-8"))
    assert request.addresses == ["192.0.2.25", "192.0.2.26"]


def test_multipart_alternative_with_attachment_reads_the_plain_part() -> None:
    body = ("--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
            "quoted-printable\r\n\r\ntest 192.0.2.25=\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n"
            "<p>test 192.0.2.99</p>\r\n--b\r\nContent-Type: text/plain\r\nContent-Disposition: "
            "attachment; filename=x.txt\r\n\r\ntest 192.0.2.98\r\n--b--\r\n")
    request = parse_request(mail(body, content_type='multipart/mixed; boundary="b"'))
    assert request.addresses == ["192.0.2.25"]


@pytest.mark.parametrize(("word", "problem"), [
    ("mail.example.org", "a host name"), ("192.0.2.0/24", "a network range"),
    ("10.1", "dotted-quad"), ("192.0.2.300", "dotted-quad"), ("banana", "not an IP address"),
])
def test_bad_tokens_are_explained(word: str, problem: str) -> None:
    assert problem in read_token(word).problem


@pytest.mark.parametrize(("word", "address"), [
    ("[192.0.2.25]", "192.0.2.25"), ("[IPv6:2001:db8::1]", "2001:db8::1"),
    ("::ffff:192.0.2.25", "192.0.2.25"), ("192.0.2.25,", "192.0.2.25"),
])
def test_token_forms(word: str, address: str) -> None:
    assert read_token(word).address == address


def test_nothing_to_test_is_explained() -> None:
    request = parse_request(mail("please look at it\ntest my server\n"))
    assert not request.usable
    assert request.problems == ["'my' is not an IP address", "'server' is not an IP address"]
    empty = parse_request(mail("hello\n"))
    assert empty.problems == ["no line of the form 'test <mailer-address>' in the message"]


def test_forged_looking_from_with_two_addresses_is_unusable() -> None:
    request = parse_request(mail("test 192.0.2.25", sender="a@uni.test, b@uni.test"))
    assert not request.usable and "exactly one mail address" in request.problems[0]


def test_address_limit() -> None:
    body = "test " + " ".join(f"192.0.2.{n}" for n in range(1, 6))
    request = parse_request(mail(body), max_addresses=3)
    assert len(request.addresses) == 3 and "at most 3 addresses" in request.problems[0]


def test_message_without_message_id_gets_a_stable_key() -> None:
    raw = mail("test 192.0.2.25").replace(b"Message-ID: <req-1@uni.test>\r\n", b"")
    assert parse_request(raw).key == parse_request(raw).key
    assert parse_request(raw).key.startswith("sha256:")


@pytest.mark.parametrize(("headers", "why"), [
    ("Auto-Submitted: auto-replied\r\n", "Auto-Submitted"),
    ("Return-Path: <>\r\n", "null envelope sender"),
    ("Precedence: bulk\r\n", "Precedence"),
    ("List-Id: <x.lists.test>\r\n", "mailing list"),
])
def test_automatic_mail_is_recognised(headers: str, why: str) -> None:
    assert why in parse_request(mail("test 192.0.2.25", headers=headers)).automatic


def test_ordinary_mail_is_not_automatic() -> None:
    from email import message_from_bytes
    assert automatic_reason(message_from_bytes(
        mail("x", headers="Return-Path: <alice@uni.test>\r\nAuto-Submitted: no\r\n"))) == ""


# --- Authentication-Results ------------------------------------------------------------------

def test_authentication_results_parser() -> None:
    server, results = parse_authentication_results(
        "mx.relaytest.test (comment; with semicolon);\r\n dkim=pass (2048-bit key) "
        "header.d=uni.test header.s=sel; spf=fail smtp.mailfrom=x.test;\r\n dmarc=pass "
        "(p=reject) header.from=uni.test")
    assert server == "mx.relaytest.test"
    assert results == [("dkim", "pass", {"header.d": "uni.test", "header.s": "sel"}),
                       ("spf", "fail", {}), ("dmarc", "pass", {"header.from": "uni.test"})]


def _headers(*values: str):  # type: ignore[no-untyped-def]
    from email import message_from_bytes
    text = "".join(f"Authentication-Results: {v}\r\n" for v in values)
    return message_from_bytes(mail("x", headers=text))


@pytest.mark.parametrize(("values", "ok"), [
    (["mx.rt.test; dkim=pass header.d=uni.test"], True),
    (["mx.rt.test; dkim=pass header.d=mail.uni.test"], True),            # relaxed alignment
    (["mx.rt.test; dkim=pass header.i=@uni.test"], True),
    (["mx.rt.test; dmarc=pass header.from=uni.test"], True),
    (["mx.rt.test; dkim=pass header.d=other.test"], False),              # not aligned
    (["mx.rt.test; dkim=fail header.d=uni.test"], False),
    (["mx.rt.test; dmarc=pass header.from=other.test"], False),
    (["MX.RT.TEST; dkim=pass header.d=uni.test"], True),                 # ids are case-blind
    # the topmost header of the trusted id decides; a lower one (written by the sender) does not
    (["mx.rt.test; dkim=none", "mx.rt.test; dkim=pass header.d=uni.test"], False),
])
def test_trusted_header_decides(values: list[str], ok: bool) -> None:
    result = from_trusted_header(_headers(*values), "mx.rt.test", "uni.test")
    assert result is not None and result.ok is ok
    if not ok:
        assert "no aligned DKIM or DMARC pass" in result.reason


def test_untrusted_header_is_ignored() -> None:
    assert from_trusted_header(_headers("evil.test; dkim=pass header.d=uni.test"),
                               "mx.rt.test", "uni.test") is None
    assert from_trusted_header(_headers("mx.rt.test; dkim=pass header.d=uni.test"),
                               "", "uni.test") is None


@pytest.mark.parametrize(("a", "b", "ok"), [
    ("uni.test", "uni.test", True), ("mail.uni.test", "uni.test", True),
    ("uni.test", "dept.uni.test", True), ("example.ac.uk", "cs.example.ac.uk", True),
    ("ac.uk", "example.ac.uk", False), ("other.test", "uni.test", False), ("", "uni.test", False),
])
def test_alignment(a: str, b: str, ok: bool) -> None:
    assert aligned(a, b) is ok


# --- configuration ---------------------------------------------------------------------------

BASE = {
    "service": {"address": "relaytest@relaytest.test", "smarthost": "127.0.0.1:2525",
                "state_dir": "/tmp/x", "authserv_id": "mx.rt.test"},
    "site": [{"name": "Uni", "networks": ["192.0.2.0/24", "2001:db8::/32"],
              "requesters": ["*@uni.test", "boss@elsewhere.test"],
              "postmaster": "postmaster@uni.test"},
             {"name": "Other", "networks": ["198.51.100.0/24"], "requesters": ["*@other.test"],
              "postmaster": "postmaster@other.test"}],
}


def settings(**service: object):  # type: ignore[no-untyped-def]
    data = {**BASE, "service": {**BASE["service"], **service}}
    return parse_config(data)


def test_example_configuration_loads() -> None:
    loaded = load_config(ROOT / "contrib" / "relaytest" / "relaytest.toml")
    assert loaded.address.startswith("relaytest@") and loaded.sites
    assert loaded.unreachable_window == 2 * 86400 and loaded.tempfail_window == 12 * 3600
    assert loaded.progress_after == 4 * 3600
    assert loaded.bookings and loaded.bookings[0].schedule.months == (2, 5, 8, 11)


@pytest.mark.parametrize(("value", "seconds"), [(90, 90), ("90s", 90), ("30m", 1800),
                                                ("12h", 43200), ("2d", 172800), ("1.5h", 5400)])
def test_durations(value: object, seconds: float) -> None:
    assert duration(value, "x") == seconds


@pytest.mark.parametrize("value", ["soon", "-1h", 0, "2 days", True])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ConfigError):
        duration(value, "x")


@pytest.mark.parametrize(("change", "message"), [
    ({"service": {"address": "x@y.test"}}, "smarthost is not set"),
    ({"site": []}, "no [[site]]"),
    ({"site": [{"name": "A", "networks": ["192.0.2.1/24"], "requesters": ["*@a.test"],
                "postmaster": "p@a.test"}]}, "host bits set"),
    ({"site": [{"name": "A", "networks": ["192.0.2.0/24"], "requesters": ["a.test"],
                "postmaster": "p@a.test"}]}, "not an address"),
    ({"booking": [{"site": "Uni", "addresses": ["198.51.100.1"],
                   "schedule": "third thursday of may"}]}, "outside the networks"),
    ({"booking": [{"site": "Uni", "addresses": ["192.0.2.1"],
                   "schedule": "sometimes"}]}, "schedule"),
    ({"service": {**BASE["service"], "depth": "deliver"}}, "depth"),
    ({"service": {**BASE["service"], "colour": "red"}}, "unknown setting(s): colour"),
])
def test_bad_configuration(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, **change})
    assert message in str(info.value)


# --- authorisation ---------------------------------------------------------------------------

PASS = Authentication(True, "dkim uni.test")
FAIL = Authentication(False, "", "not authenticated: no DKIM signature")


def test_authorised_and_refused_addresses_with_reasons() -> None:
    decisions = authz.decide(settings(), "alice@uni.test",
                             ["192.0.2.25", "198.51.100.7", "203.0.113.9", "2001:db8::25",
                              "0.0.0.0"], PASS, 0, {})
    assert [(d.address, d.authorised) for d in decisions] == [
        ("192.0.2.25", True), ("198.51.100.7", False), ("203.0.113.9", False),
        ("2001:db8::25", True), ("0.0.0.0", False)]
    assert decisions[0].site == "Uni"
    assert "may not request tests of Other" in decisions[1].reason
    assert "outside every network" in decisions[2].reason and "not touched" in decisions[2].reason
    assert "not a host address" in decisions[4].reason


def test_exact_requester_pattern_and_case() -> None:
    decisions = authz.decide(settings(), "boss@elsewhere.test", ["192.0.2.25"], PASS, 0, {})
    assert decisions[0].authorised
    assert not authz.decide(settings(), "eve@elsewhere.test", ["192.0.2.25"], PASS, 0, {})[
        0].authorised


def test_unauthenticated_request_is_refused_with_the_reason() -> None:
    decision = authz.decide(settings(), "alice@uni.test", ["192.0.2.25"], FAIL, 0, {})[0]
    assert not decision.authorised and decision.reason == FAIL.reason


def test_rate_limits() -> None:
    config = settings()
    over = authz.decide(config, "alice@uni.test", ["192.0.2.25"], PASS,
                        config.limits.requests_per_requester, {})[0]
    assert not over.authorised and "rate limit: alice@uni.test sent 10 requests in the last day" \
        in over.reason
    busy = authz.decide(config, "alice@uni.test", ["192.0.2.25", "192.0.2.26"], PASS, 0,
                        {"192.0.2.25": config.limits.tests_per_address})
    assert [d.authorised for d in busy] == [False, True]
    assert "192.0.2.25 was tested 4 times" in busy[0].reason


# --- schedules -------------------------------------------------------------------------------

def test_the_janet_schedule() -> None:
    schedule = Schedule.parse("the third Thursday of each February, May, August and November")
    assert schedule.months == (2, 5, 8, 11) and schedule.weekday == 3 and schedule.ordinal == 3
    assert [schedule.day_in(2026, m) for m in (2, 5, 8, 11)] == [
        datetime.date(2026, 2, 19), datetime.date(2026, 5, 21), datetime.date(2026, 8, 20),
        datetime.date(2026, 11, 19)]
    assert schedule.day_in(2026, 3) is None
    now = datetime.datetime(2026, 5, 21, 10, 0)
    assert schedule.latest(now) == datetime.datetime(2026, 5, 21, 9, 0)
    assert schedule.next(now) == datetime.datetime(2026, 8, 20, 9, 0)
    assert schedule.latest(datetime.datetime(2026, 5, 21, 8, 59)) == \
        datetime.datetime(2026, 2, 19, 9, 0)


def test_schedule_forms() -> None:
    last = Schedule.parse("last fri of every month at 22:30")
    assert last.day_in(2026, 1) == datetime.date(2026, 1, 30) and last.at.hour == 22
    fifth = Schedule.parse("5th monday of jan, feb")
    assert fifth.day_in(2026, 2) is None                 # February 2026 has four Mondays
    assert fifth.next(datetime.datetime(2026, 1, 1)) == datetime.datetime(2028, 1, 31, 9, 0)


@pytest.mark.parametrize("text", ["every day", "third thursday of smarch",
                                  "sixth friday of may", "first thursday of may at 25:00"])
def test_bad_schedules(text: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.parse(text)


def test_vantage_point_per_address_family() -> None:
    both = settings(source_address="198.51.100.7", source_address6="2001:db8:ffff::7")
    assert both.source_for("192.0.2.25") == "198.51.100.7"
    assert both.source_for("2001:db8::25") == "2001:db8:ffff::7"
    v4_only = settings(source_address="198.51.100.7")
    assert v4_only.source_for("2001:db8::25") == ""        # the system chooses
    with pytest.raises(ConfigError, match="source_address6: not an IPv6 address"):
        settings(source_address6="198.51.100.7")
