"""Unit tests for the SMTP reply parser and reply matching (mailprobe.net.smtp)."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailprobe.net.deadline import Deadline
from mailprobe.net.smtp import (
    Disconnected,
    ProtocolError,
    Reply,
    SMTPSession,
    can_answer,
    command_verb,
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


@pytest.mark.parametrize(("command", "code", "fits"), [
    ("EHLO mx.example.test", 250, True),
    ("EHLO mx.example.test", 220, False),  # an unasked greeting, not the reply to EHLO
    ("HELO mx.example.test", 221, False),
    ("MAIL FROM:<a@example.test>", 250, True),
    ("MAIL FROM:<a@example.test>", 354, False),
    ("RCPT TO:<b@example.net>", 251, True),
    ("rcpt to:<b@example.net>", 354, False),  # the verb is matched case-insensitively
    ("RCPT TO: <b@example.net>", 220, False),
    ("DATA", 354, True),
    ("DATA", 250, False),  # a 250 to DATA answers an earlier command
    ("RSET", 250, True),
    ("QUIT", 221, True),
    ("QUIT", 250, False),
    ("STARTTLS", 220, True),
    ("STARTTLS", 250, False),
    ("XFOO", 250, True),  # commands outside the table accept anything
])
def test_a_positive_reply_must_fit_its_command(command: str, code: int, fits: bool) -> None:
    assert can_answer(command, Reply(code)) is fits


@pytest.mark.parametrize("code", [421, 450, 500, 503, 530, 554])
def test_errors_can_answer_any_command(code: int) -> None:
    for command in ("EHLO x", "MAIL FROM:<>", "RCPT TO:<a@b>", "DATA", "RSET", "QUIT"):
        assert can_answer(command, Reply(code))


def test_command_verb() -> None:
    assert command_verb("MAIL FROM:<a@b>") == "MAIL"
    assert command_verb("rcpt to:<a@b>") == "RCPT"
    assert command_verb("RCPT TO: <a@b>") == "RCPT"
    assert command_verb("STARTTLS") == "STARTTLS"


def test_unread_shows_what_no_command_asked_for_without_waiting() -> None:
    """unread() returns at once: nothing, then a reply the server sent unasked, which the next
    read_reply() takes."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        session = SMTPSession("127.0.0.1", deadline=Deadline(5))
        session.sock = ours
        assert session.unread() == b""  # a blocking read would hang here: nothing comes
        theirs.sendall(b"250 2.1.0 Ok\r\n250 2.1.0 Ok again\r\n")
        until = time.monotonic() + 5
        while session.unread().count(b"\n") < 2 and time.monotonic() < until:
            time.sleep(0.01)
        assert session.unread() == b"250 2.1.0 Ok\r\n250 2.1.0 Ok again\r\n"
        assert session.read_reply() == Reply(250, ("2.1.0 Ok",))
        assert session.unread() == b"250 2.1.0 Ok again\r\n"
        theirs.close()
        assert session.unread() == b"250 2.1.0 Ok again\r\n"  # the end of stream stays unread
        assert session.read_reply() == Reply(250, ("2.1.0 Ok again",))
        with pytest.raises(Disconnected):
            session.read_reply()
