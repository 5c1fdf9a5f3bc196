"""The lab's scripted SMTP server: its state machine, relay policies and misbehaviour hooks."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time

import pytest

from lab.smtpd import (
    Behaviour,
    RelayPolicy,
    ScriptedSMTPServer,
    Session,
    parse_path,
)
from mailprobe.net.deadline import Deadline
from mailprobe.net.smtp import Disconnected, ProtocolError, SMTPSession, SMTPTimeout


def session(srv: ScriptedSMTPServer, seconds: float = 10, **kwargs) -> SMTPSession:
    return SMTPSession(srv.host, srv.port, deadline=Deadline(seconds), **kwargs)


@pytest.fixture
def server():
    with ScriptedSMTPServer(Behaviour()) as srv:
        yield srv


# -- parse_path ------------------------------------------------------------------------------
@pytest.mark.parametrize(("argument", "route", "local", "domain"), [
    ("<user@example.net>", "", "user", "example.net"),
    ("user@example.net", "", "user", "example.net"),
    ("<user@example.net> SIZE=100", "", "user", "example.net"),
    ('<"user@example.net"@lab.test>', "", '"user@example.net"', "lab.test"),
    ("<user@example.net@lab.test>", "", "user@example.net", "lab.test"),
    ("<@lab.test:user@example.net>", "@lab.test", "user", "example.net"),
    ("<example.net!user>", "", "example.net!user", ""),
    ("<>", "", "", ""),
    ("<postmaster@[127.0.0.1]>", "", "postmaster", "[127.0.0.1]"),
])
def test_parse_path(argument, route, local, domain):
    address = parse_path(argument)
    assert address is not None
    assert (address.route, address.local, address.domain) == (route, local, domain)


def test_parse_path_unclosed_bracket():
    assert parse_path("<user@example.net") is None


# -- the default state machine ---------------------------------------------------------------
def test_banner_and_ehlo(server):
    with session(server) as client:
        assert str(client.connect()) == "220 mx.lab.test ESMTP mailprobe-lab"
        reply = client.hello("client.example")
        assert reply.code == 250
        assert client.greeting_verb == "EHLO"
        assert set(client.esmtp) == {"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"}
    assert server.commands == ["EHLO client.example"]


def test_helo_and_transaction(server):
    with session(server) as client:
        client.connect()
        assert client.hello("client.example", helo_only=True).code == 250
        assert client.command("MAIL FROM:<f@example.org>").code == 250
        assert client.command("RCPT TO:<postmaster@lab.test>").code == 250
        assert client.command("DATA").code == 354
        client.send_line(b"Subject: test\r\n\r\n..dot-stuffed\r\nbody\r\n.", "sending the body")
        assert client.read_reply().code == 250
        assert client.command("NOOP").code == 250
        assert client.command("QUIT").code == 221
        with pytest.raises(Disconnected):
            client.read_reply()
    assert server.messages == [b"Subject: test\r\n\r\n.dot-stuffed\r\nbody\r\n"]


@pytest.mark.parametrize(("commands", "last_code"), [
    (["MAIL FROM:<f@example.org>"], 503),  # before HELO
    (["EHLO c", "RCPT TO:<postmaster@lab.test>"], 503),  # before MAIL
    (["EHLO c", "MAIL FROM:<f@example.org>", "DATA"], 503),  # before RCPT
    (["EHLO c", "MAIL FROM:<f@example.org>", "MAIL FROM:<f@example.org>"], 503),  # nested
    (["EHLO c", "MAIL FROM:<f@example.org>", "RSET", "RCPT TO:<postmaster@lab.test>"], 503),
    (["EHLO c", "MAIL TO:<f@example.org>"], 501),
    (["EHLO c", "MAIL FROM:<f@example.org", ], 501),
    (["EHLO"], 501),
    (["HELO"], 501),
    (["EHLO c", "XYZZY"], 500),
    (["EHLO c", ""], 500),
    (["EHLO c", "EXPN staff"], 502),
    (["EHLO c", "STARTTLS"], 502),  # not offered
    (["EHLO c", "VRFY postmaster"], 252),
    (["EHLO c", "HELP"], 214),
    (["EHLO c", "NOOP " + "x" * 1200], 500),  # line too long
])
def test_errors(server, commands, last_code):
    with session(server) as client:
        client.connect()
        replies = [client.command(line) for line in commands]
    assert replies[-1].code == last_code


def test_pipelined_commands_answered_in_order(server):
    with session(server) as client:
        client.connect()
        client.hello("c")
        replies = client.pipeline(["MAIL FROM:<f@example.org>", "RCPT TO:<u@example.net>",
                                   "RCPT TO:<postmaster@lab.test>", "RSET"])
    assert [r.code for r in replies] == [250, 554, 250, 250]


def test_helo_not_required():
    with ScriptedSMTPServer(Behaviour(helo_required=False)) as srv, session(srv) as client:
        client.connect()
        assert client.command("MAIL FROM:<f@example.org>").code == 250


# -- relay policies ---------------------------------------------------------------------------
RECIPIENTS = {
    "plain-external": "<u@example.net>",
    "local": "<postmaster@lab.test>",
    "hostname": "<postmaster@mx.lab.test>",
    "ip-literal": "<postmaster@[127.0.0.1]>",
    "unqualified-postmaster": "<postmaster>",
    "percent": "<u%example.net@lab.test>",
    "percent-unqualified": "<u%example.net>",
    "percent-literal": "<u%example.net@[127.0.0.1]>",
    "bang": "<example.net!u>",
    "bang-local": "<example.net!u@lab.test>",
    "quoted": '<"u@example.net"@lab.test>',
    "quoted-percent": '<"u%example.net"@lab.test>',
    "quoted-alone": '<"u@example.net">',
    "double-at": "<u@example.net@lab.test>",
    "source-route": "<@lab.test:u@example.net>",
    "no-brackets": "u@example.net",
    "other-literal": "<u@[192.0.2.1]>",
}
LOCAL = {"local", "hostname", "ip-literal", "unqualified-postmaster"}
SLOPPY_HOLES = {"percent", "percent-unqualified", "percent-literal", "bang", "bang-local",
                "quoted", "quoted-percent"}


def accepted(policy: RelayPolicy, sender: str = "<f@example.org>") -> set[str]:
    with ScriptedSMTPServer(Behaviour(relay=policy)) as srv, session(srv) as client:
        client.connect()
        client.hello("outside.example")
        result = set()
        for name, recipient in RECIPIENTS.items():
            assert client.command(f"MAIL FROM:{sender}").code == 250
            reply = client.command(f"RCPT TO:{recipient}")
            assert reply.code in (250, 554), reply
            if reply.code == 250:
                result.add(name)
            else:
                assert "Relay access denied" in reply.text
            client.command("RSET")
    return result


def test_closed_by_default():
    assert accepted(RelayPolicy.closed()) == LOCAL


def test_open_relay():
    assert accepted(RelayPolicy.open()) == set(RECIPIENTS)


def test_sloppy_relays_the_classic_holes():
    assert accepted(RelayPolicy.sloppy()) == LOCAL | SLOPPY_HOLES


def test_sloppy_relays_for_local_senders():
    assert accepted(RelayPolicy.sloppy(), "<postmaster@lab.test>") == set(RECIPIENTS)
    assert accepted(RelayPolicy.closed(), "<postmaster@lab.test>") == LOCAL


def test_single_holes():
    assert accepted(RelayPolicy(double_at=True)) == LOCAL | {"double-at"}
    assert accepted(RelayPolicy(source_route=True)) == LOCAL | {"source-route"}


# -- banners, delays, drip --------------------------------------------------------------------
def test_custom_banner_and_hostname():
    behaviour = Behaviour(hostname="mail.example.test", banner="220-first\n220 second line")
    with ScriptedSMTPServer(behaviour) as srv, session(srv) as client:
        banner = client.connect()
        assert (banner.code, banner.lines) == (220, ("first", "second line"))
        assert client.hello("c").lines[0] == "mail.example.test"


def test_554_banner_refuses_everything_but_quit():
    with ScriptedSMTPServer(Behaviour(banner="554 5.7.1 No SMTP service here")) as srv, \
            session(srv) as client:
        assert client.connect().code == 554
        assert client.command("EHLO c").code == 503
        assert client.command("MAIL FROM:<f@example.org>").code == 503
        assert client.command("QUIT").code == 221


def test_421_banner_closes():
    with ScriptedSMTPServer(Behaviour(banner="421 4.3.2 Busy")) as srv, session(srv) as client:
        assert client.connect().code == 421
        with pytest.raises(Disconnected):
            client.command("EHLO c")


def test_banner_delay_beyond_the_clients_patience():
    with ScriptedSMTPServer(Behaviour(banner_delay=30)) as srv:
        client = session(srv, step_timeout=0.3)
        with pytest.raises(SMTPTimeout):
            client.connect()
        client.close()
    assert all(not s.sock or s.closed for s in srv.sessions)


def test_banner_delay_within_patience():
    with ScriptedSMTPServer(Behaviour(banner_delay=0.3)) as srv, session(srv) as client:
        assert client.connect().code == 220
        assert client.banner_time is not None and client.banner_time >= 0.3


def test_drip_sends_one_byte_at_a_time():
    with ScriptedSMTPServer(Behaviour(drip=0.2, banner="220 x")) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=5) as raw:
            first = raw.recv(100)
            rest = b""
            while not rest.endswith(b"\r\n"):
                rest += raw.recv(100)
        assert first == b"2"
        assert first + rest == b"220 x\r\n"


def test_reply_delay_tarpit():
    with ScriptedSMTPServer(Behaviour(reply_delay=5)) as srv, \
            session(srv, step_timeout=0.3) as client:
        client.connect()
        with pytest.raises(SMTPTimeout):
            client.command("EHLO c")


def test_command_limit():
    with ScriptedSMTPServer(Behaviour(command_limit=2)) as srv, session(srv) as client:
        client.connect()
        assert client.command("NOOP").code == 250
        assert client.command("NOOP").code == 250
        assert client.command("NOOP").code == 421
        with pytest.raises(Disconnected):
            client.command("NOOP")


# -- STARTTLS, IPv6 ---------------------------------------------------------------------------
def test_starttls():
    behaviour = Behaviour(hostname="tls.lab.test", starttls=True)
    with ScriptedSMTPServer(behaviour) as srv, session(srv) as client:
        client.connect()
        client.hello("c")
        assert "STARTTLS" in client.esmtp
        assert client.starttls().code == 220
        assert client.tls
        assert client.peer_certificate
        assert b"tls.lab.test" in client.peer_certificate
        client.hello("c")
        assert "STARTTLS" not in client.esmtp
        assert client.command("MAIL FROM:<f@example.org>").code == 250
        assert client.command("STARTTLS").code == 502
    assert srv.sessions[0].tls


def test_failed_tls_handshake_does_not_hang_the_server():
    with ScriptedSMTPServer(Behaviour(starttls=True)) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=5) as raw:
            raw.recv(100)
            raw.sendall(b"STARTTLS\r\n")
            assert raw.recv(100).startswith(b"220")
            raw.sendall(b"this is not a TLS client hello\r\n" * 10)
            with contextlib.suppress(ConnectionResetError):  # unread data: RST, not FIN
                while raw.recv(100):  # the server may send a TLS alert, then it closes
                    pass
        with session(srv) as client:  # still serving
            assert client.connect().code == 220


def test_ipv6():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with ScriptedSMTPServer(Behaviour(), host="::1") as srv, session(srv) as client:
        client.connect()
        client.hello("c")
        assert client.command("RCPT TO:<x@lab.test>").code == 503
        assert client.command("MAIL FROM:<f@example.org>").code == 250
        assert client.command("RCPT TO:<postmaster@[IPv6:::1]>").code == 250
    assert srv.sessions[0].peer[0] == "::1"


# -- misbehaviour through hooks -----------------------------------------------------------------
class Greylist(Behaviour):
    def smtp_RCPT(self, session: Session, argument: str):
        return "450 4.2.0 Greylisted, try again later"


def test_override_one_verb():
    with ScriptedSMTPServer(Greylist()) as srv, session(srv) as client:
        client.connect()
        client.hello("c")
        client.command("MAIL FROM:<f@example.org>")
        assert client.command("RCPT TO:<postmaster@lab.test>").code == 450


class Garbage(Behaviour):
    def handle(self, session: Session, line: str):
        return b"\x00\xffHELLO garbage\r\n"


def test_garbage_reply():
    with ScriptedSMTPServer(Garbage()) as srv, session(srv) as client:
        client.connect()
        with pytest.raises(ProtocolError):
            client.command("EHLO c")


class SilentClose(Behaviour):
    def greeting(self, session: Session):
        session.close()
        return None


class ResetAfterEhlo(Behaviour):
    def smtp_EHLO(self, session: Session, argument: str):
        session.reset_connection()
        return None


def test_close_without_banner():
    with ScriptedSMTPServer(SilentClose()) as srv, session(srv) as client, \
            pytest.raises(Disconnected):
        client.connect()


def test_reset_after_ehlo():
    with ScriptedSMTPServer(ResetAfterEhlo()) as srv, session(srv) as client:
        client.connect()
        with pytest.raises(Disconnected):
            client.command("EHLO c")


class Endless(Behaviour):
    def smtp_EHLO(self, session: Session, argument: str):
        while session.sleep(0) and not session.closed:
            session.send_raw(b"250-more\r\n" * 100)
        return None


def test_endless_multiline_reply_is_cut_by_the_client():
    with ScriptedSMTPServer(Endless()) as srv, session(srv) as client:
        client.connect()
        with pytest.raises(ProtocolError):
            client.command("EHLO c")
    # stop() returned: the endless sender noticed the client was gone or the server stopped
    assert all(session.closed for session in srv.sessions)


class OutOfOrder(Behaviour):
    """Holds the replies of a pipelined group and sends them reversed at DATA."""

    def handle(self, session: Session, line: str):
        held = session.__dict__.setdefault("held", [])
        if line.upper().startswith(("MAIL", "RCPT")):
            held.append(super().handle(session, line))
            return None
        if line.upper() == "DATA":
            return [*reversed(held), "554 5.5.0 no DATA here"]
        return super().handle(session, line)


def test_out_of_order_pipelining():
    with ScriptedSMTPServer(OutOfOrder()) as srv, session(srv) as client:
        client.connect()
        client.hello("c")
        replies = client.pipeline(["MAIL FROM:<f@example.org>", "RCPT TO:<u@example.net>",
                                   "DATA"])
        assert [r.code for r in replies] == [554, 250, 554]


def wait_until(condition, seconds: float = 5.0) -> None:
    until = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < until, "condition not reached"
        time.sleep(0.01)


# -- stopping ---------------------------------------------------------------------------------
def test_stop_closes_idle_connections_and_threads():
    srv = ScriptedSMTPServer(Behaviour(banner_delay=60)).start()
    clients = [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(4)]
    wait_until(lambda: srv.connections == 4)  # accepted, not just queued in the backlog
    srv.stop()
    for client in clients:
        assert client.recv(100) == b""
        client.close()
    assert not any(thread.is_alive() for thread in srv._threads)
    assert srv._acceptor is not None and not srv._acceptor.is_alive()
    with pytest.raises(OSError):
        socket.create_connection((srv.host, srv.port), timeout=2)


def test_stop_interrupts_a_drip():
    srv = ScriptedSMTPServer(Behaviour(drip=30)).start()
    with socket.create_connection((srv.host, srv.port), timeout=5) as client:
        assert client.recv(100) == b"2"
        srv.stop()
        assert client.recv(100) == b""
    assert not any(thread.is_alive() for thread in srv._threads)


def test_tls_certificate_is_loadable():
    from lab.smtpd import self_signed_certificate

    cert, key = self_signed_certificate("a.lab.test", "a.lab.test", "127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)


# -- the declarative knobs -------------------------------------------------------------------
def test_fixed_replies_per_verb():
    behaviour = Behaviour(replies={"EHLO": "502 5.5.1 EHLO not here", "RCPT": "451 4.7.1 later"})
    with ScriptedSMTPServer(behaviour) as srv, session(srv) as client:
        client.connect()
        assert client.hello("c").code == 250  # HELO fallback after the 502
        assert client.greeting_verb == "HELO"
        assert client.command("MAIL FROM:<f@example.org>").code == 250
        assert client.command("RCPT TO:<postmaster@lab.test>").code == 451
    assert srv.commands[:2] == ["EHLO c", "HELO c"]


def test_fixed_reply_to_everything():
    with ScriptedSMTPServer(Behaviour(replies={"*": "250 Ok"})) as srv, session(srv) as client:
        client.connect()
        assert client.command("XYZZY").code == 250
        assert client.command("RCPT TO:<u@example.net>").code == 250  # no MAIL: still 250
        assert client.command("QUIT").code == 250
        with pytest.raises(Disconnected):
            client.read_reply()


def test_bare_lf_line_ends():
    with ScriptedSMTPServer(Behaviour(line_end="\n", banner="220 x")) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=5) as raw:
            assert raw.recv(100) == b"220 x\n"
        with session(srv) as client:  # our client copes
            assert client.connect().code == 220
            assert client.hello("c").code == 250


def test_silent_close_after_command_limit():
    behaviour = Behaviour(command_limit=1, command_limit_reply=None)
    with ScriptedSMTPServer(behaviour) as srv, session(srv) as client:
        client.connect()
        assert client.command("NOOP").code == 250
        with pytest.raises(Disconnected):
            client.command("NOOP")


def test_a_client_that_resets_does_not_stop_the_server() -> None:
    """A port scanner's RST (SO_LINGER 0 close) right after connecting: later clients are served."""
    import struct

    with ScriptedSMTPServer(Behaviour()) as server:
        for _ in range(5):
            rude = socket.create_connection((server.host, server.port))
            rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            rude.close()
        with socket.create_connection((server.host, server.port), timeout=5) as polite:
            assert polite.recv(100).startswith(b"220 ")
