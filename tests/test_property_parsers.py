"""Property-based tests: no input makes a parser raise anything but its own documented error.

The parsers: the SMTP reply parser (ProtocolError), the relay address builder (AddressError;
what it builds never carries a line break), the SPF term/record parser (SPFSyntaxError) and the
DNSBL answer decoder (AnswerError; an answer outside 127/8 is never a listing).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailprobe.net.smtp import (
    ProtocolError,
    Reply,
    greeting_name,
    parse_ehlo_extensions,
    parse_reply,
    parse_reply_line,
    printable,
)
from mailprobe.probes.dnsbl.decode import AnswerError, decode_answer, decode_answers
from mailprobe.probes.dnsbl.lookup import Target
from mailprobe.probes.dnsbl.zones import DOMAIN, KNOWN, Zone
from mailprobe.probes.relay.catalogue import (
    CATALOGUE,
    CONTROL,
    AddressError,
    Targets,
    check_domain,
    check_local_part,
    select,
)
from mailprobe.probes.spf.lint import SPFSyntaxError, parse_record, parse_term

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Bytes that look like SMTP replies often enough to reach the deep branches.
reply_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda code, sep, text, end: code + sep + text + end,
              st.sampled_from([b"220", b"250", b"354", b"421", b"554", b"199", b"600", b"25",
                               b"2a0", b""]),
              st.sampled_from([b" ", b"-", b"", b"\t", b"x", b"\x00"]),
              st.binary(max_size=120),
              st.sampled_from([b"\r\n", b"\n", b"", b"\r", b"\r\r\n"])),
)


# -- SMTP reply parser --------------------------------------------------------------------------
@SETTINGS
@given(reply_bytes)
@example(b"250")
@example(b"250-")
@example(b"\xff\xfe\x00")
def test_reply_line_raises_only_protocol_error(raw: bytes) -> None:
    try:
        code, last, text = parse_reply_line(raw)
    except ProtocolError:
        return
    assert 200 <= code <= 599
    assert isinstance(last, bool)
    assert all(ch.isprintable() for ch in text)


@SETTINGS
@given(st.lists(reply_bytes, max_size=8))
def test_reply_raises_only_protocol_error(lines: list[bytes]) -> None:
    try:
        reply = parse_reply(lines)
    except ProtocolError:
        return
    assert isinstance(reply, Reply)
    assert len(reply.lines) == len(lines)
    str(reply)  # rendering never fails
    assert "\n" not in reply.text and "\r" not in reply.text
    parse_ehlo_extensions(reply)
    greeting_name(reply)


@SETTINGS
@given(st.one_of(st.binary(max_size=500), st.text(max_size=500)), st.integers(0, 300))
def test_printable_is_printable_and_bounded(data: bytes | str, limit: int) -> None:
    shown = printable(data, limit)
    assert all(ch.isprintable() for ch in shown)
    assert len(shown) <= limit + 3


# -- relay address builder ----------------------------------------------------------------------
@SETTINGS
@given(st.text(max_size=300))
@example("example.net\r\nRCPT TO:<victim@example.org>")
@example("exa mple.net")
@example("a" * 64 + ".net")
def test_check_domain_raises_only_address_error(text: str) -> None:
    try:
        value = check_domain(text, "--external-domain")
    except AddressError:
        return
    assert value and not any(ch.isspace() or not ch.isprintable() for ch in value)
    assert all(ch not in value for ch in "<>@:\"%!")


@SETTINGS
@given(st.text(max_size=100))
@example("user\r\nDATA")
@example('"quoted"')
def test_check_local_part_raises_only_address_error(text: str) -> None:
    try:
        value = check_local_part(text, "--external-user")
    except AddressError:
        return
    assert value == text
    assert not any(ch.isspace() or not ch.isprintable() for ch in value)
    assert "@" not in value and "<" not in value and ">" not in value


def _checked(value: str, check) -> str | None:
    try:
        return check(value, "test")
    except AddressError:
        return None


domains = st.one_of(st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}(\.[a-z0-9-]{1,10}){0,3}",
                                  fullmatch=True), st.text(max_size=40))
local_parts = st.one_of(st.from_regex(r"[A-Za-z0-9._+-]{1,20}", fullmatch=True),
                        st.text(max_size=20))
ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@SETTINGS
@given(domains, local_parts, domains, ips)
def test_every_attempt_builds_one_command_line(ext: str, user: str, dom: str,
                                               ip: ipaddress.IPv4Address) -> None:
    """Checked values -> every MAIL/RCPT line of the catalogue is one line (no injection)."""
    ext_ok, user_ok, dom_ok = (_checked(ext, check_domain), _checked(user, check_local_part),
                               _checked(dom, check_domain))
    if ext_ok is None or user_ok is None or dom_ok is None:
        return
    from mailprobe.net.smtp import ip_literal

    targets = Targets(ext=ext_ok, user=user_ok, dom=dom_ok, ip=ip_literal(str(ip)))
    for attempt in (CONTROL, *CATALOGUE):
        for line in (attempt.mail_command(targets), attempt.rcpt_command(targets)):
            assert "\r" not in line and "\n" not in line and "\x00" not in line
            if "{" not in user_ok:  # a local part may hold braces; then they are its own
                assert not re.search(r"\{(user|ext|dom|ip|extip|USER|EXT)\}", line), line
            assert len(line) < 1000  # RFC 5321 command line limit (with room to spare)


@SETTINGS
@given(st.text(max_size=200))
def test_fill_never_raises(template: str) -> None:
    targets = Targets(ext="example.net", user="relaytest", dom="lab.test", ip="[192.0.2.1]")
    assert isinstance(targets.fill(template), str)


@SETTINGS
@given(st.lists(st.sampled_from([a.id for a in CATALOGUE] + ["nope", "", "PLAIN"]), max_size=6),
       st.lists(st.sampled_from([a.id for a in CATALOGUE] + ["nope"]), max_size=3))
def test_select_raises_only_key_error(only: list[str], skip: list[str]) -> None:
    try:
        chosen = select(only or None, skip or None)
    except KeyError:
        assert any(i not in {a.id for a in CATALOGUE} for i in only + skip)
        return
    assert all(a.id not in skip for a in chosen)


# -- SPF term parser ----------------------------------------------------------------------------
spf_terms = st.one_of(
    st.text(max_size=80),
    st.builds(lambda q, m, sep, arg: q + m + sep + arg,
              st.sampled_from(["", "+", "-", "~", "?", "!"]),
              st.sampled_from(["all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists",
                               "redirect", "exp", "foo", "v"]),
              st.sampled_from(["", ":", "=", "/", "//", ":%{"]),
              st.text(alphabet="abc.%{}_-:/0123456789lidhrv,=+", max_size=40)),
)


@SETTINGS
@given(spf_terms)
@example("ip4:192.0.2.0/33")
@example("ip6:::1//129")
@example("include:%{ir}.%{v}._spf.%{d2}")
@example("a:%{z}.example")
@example("exists:%{l1r+-}.e.example")
@example("mx/99999999999999999999")
def test_spf_term_raises_only_syntax_error(text: str) -> None:
    try:
        term = parse_term(text)
    except SPFSyntaxError:
        return
    assert term.name == term.name.lower()


@SETTINGS
@given(st.lists(spf_terms, max_size=8), st.sampled_from(["v=spf1", "V=SPF1", "v=spf2", "", "spf1"]))
def test_spf_record_raises_only_syntax_error(terms: list[str], version: str) -> None:
    text = " ".join([version, *terms])
    try:
        record = parse_record(text)
    except SPFSyntaxError:
        return
    assert record is not None


@SETTINGS
@given(st.text(max_size=200))
def test_spf_record_any_text(text: str) -> None:
    with contextlib.suppress(SPFSyntaxError):  # anything else fails the test
        parse_record(text)


# -- DNSBL answer decoder -----------------------------------------------------------------------
ZONES = [*KNOWN.values(), Zone("bl.lab.test"), Zone("dbl.lab.test", kind=DOMAIN),
         Zone("bits.lab.test", kind=DOMAIN, bitmask=True)]
answers = st.one_of(
    st.text(max_size=40),
    st.ip_addresses(v=4).map(str),
    st.integers(0, 255).map(lambda n: f"127.0.0.{n}"),
    st.integers(0, 2**24 - 1).map(lambda n: str(ipaddress.IPv4Address((127 << 24) + n))),
    st.ip_addresses(v=6).map(str),
)


@SETTINGS
@given(st.sampled_from(ZONES), answers)
@example(ZONES[0], "127.255.255.254")
@example(ZONES[0], " 127.0.0.2 ")
@example(ZONES[0], "0x7f.0.0.2")
def test_dnsbl_decode_raises_only_answer_error(zone: Zone, text: str) -> None:
    try:
        decoded = decode_answer(zone, text)
    except AnswerError:
        return
    address = ipaddress.IPv4Address(decoded.code)
    if decoded.listed:
        assert address in ipaddress.IPv4Network("127.0.0.0/8"), "a listing outside 127/8"
        assert decoded.code not in ("127.0.0.1", "127.255.255.254", "127.255.255.255")
    assert decoded.meaning


@SETTINGS
@given(st.sampled_from(ZONES), st.lists(answers, max_size=5))
def test_dnsbl_decode_answers_raises_only_answer_error(zone: Zone, texts: list[str]) -> None:
    try:
        listings, errors = decode_answers(zone, texts)
    except AnswerError:
        return
    assert len(listings) + len(errors) == len(texts)


@pytest.mark.parametrize("bad", [None, 127, b"127.0.0.2"])
def test_dnsbl_decode_non_text(bad: object) -> None:
    with pytest.raises(AnswerError):
        decode_answer(ZONES[0], bad)  # type: ignore[arg-type]


@SETTINGS
@given(st.text(max_size=80))
def test_dnsbl_domain_target_raises_only_value_error(text: str) -> None:
    try:
        target = Target.domain(text)
    except ValueError:
        return
    assert "\n" not in target.query_name("dbl.lab.test")
