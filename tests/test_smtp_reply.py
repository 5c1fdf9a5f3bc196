"""Unit tests for the SMTP reply parser (mailprobe.net.smtp)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailprobe.net.smtp import (
    ProtocolError,
    Reply,
    greeting_name,
    ip_literal,
    parse_ehlo_extensions,
    parse_reply,
    parse_reply_line,
)


def test_single_line_reply() -> None:
    reply = parse_reply([b"250 2.1.5 Ok\r\n"])
    assert reply == Reply(250, ("2.1.5 Ok",))
    assert reply.positive and not reply.transient and not reply.permanent
    assert str(reply) == "250 2.1.5 Ok"


def test_multi_line_reply_keeps_every_line() -> None:
    reply = parse_reply([b"250-mx.example.test\r\n", b"250-PIPELINING\r\n", b"250 8BITMIME\r\n"])
    assert reply.code == 250
    assert reply.lines == ("mx.example.test", "PIPELINING", "8BITMIME")
    assert parse_ehlo_extensions(reply) == {"PIPELINING": "", "8BITMIME": ""}
    assert str(reply) == "250 mx.example.test (+2 lines)"


def test_bare_code_and_bare_lf_are_accepted() -> None:
    assert parse_reply([b"250\n"]) == Reply(250, ("",))
    assert parse_reply_line(b"354 go ahead\n") == (354, True, "go ahead")


@pytest.mark.parametrize("line", [b"hello\r\n", b"25\r\n", b"650 no such class\r\n",
                                  b"250+odd separator\r\n", b"\x00\x01\x02\r\n", b""])
def test_garbage_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_reply([line])


def test_code_change_inside_a_reply_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="changed from 250 to 550"):
        parse_reply([b"250-first\r\n", b"550 second\r\n"])


def test_classes() -> None:
    assert Reply(354).intermediate
    assert Reply(454).transient
    assert Reply(554).permanent


def test_control_characters_are_never_shown() -> None:
    reply = parse_reply([b"220 evil\x1b[31m\x00host\r\n"])
    assert "\x1b" not in reply.text and "\x00" not in reply.text


def test_greeting_name_and_literals() -> None:
    assert greeting_name(Reply(220, ("mx.example.test ESMTP Postfix",))) == "mx.example.test"
    assert greeting_name(Reply(220, ("",))) == ""
    assert ip_literal("192.0.2.1") == "[192.0.2.1]"
    assert ip_literal("2001:db8::1") == "[IPv6:2001:db8::1]"


@given(st.lists(st.binary(max_size=80), min_size=0, max_size=6))
def test_parser_raises_only_its_own_error(lines: list[bytes]) -> None:
    try:
        reply = parse_reply(lines)
    except ProtocolError:
        return
    assert 200 <= reply.code < 600
    assert len(reply.lines) == len(lines)
