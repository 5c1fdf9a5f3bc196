"""What an open SMTP port says: its banner and its EHLO reply (read, then QUIT).

Port 465 speaks SMTP inside TLS from the first byte (RFC 8314), which ``SMTPSession.connect``
does not do: for it the TCP connection and the TLS handshake are made here, and the session
is handed the TLS socket before it reads the banner. Certificates are not verified: we want to
know what is listening, not to trust it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.smtp import (
    Reply,
    SMTPError,
    SMTPSession,
    Transcript,
    _audit_tls_context,
    printable,
)
from mailprobe.probes.exposure.model import Endpoint, Service, SMTPGreeting

MAX_EXTENSIONS = 12  # keywords of the EHLO reply shown


def first_line(reply: Reply) -> str:
    return printable(f"{reply.code} {reply.lines[0] if reply.lines else ''}".rstrip(), 120)


def read_greeting(endpoint: Endpoint, helo: str, deadline: Deadline, *,
                  source_address: str | None = None, step_timeout: float | None = None,
                  transcript: Transcript | None = None) -> SMTPGreeting:
    """The banner and EHLO reply of ``endpoint``; problems are described, never raised."""
    tls = endpoint.service is Service.SMTPS
    facts = SMTPGreeting(tls=tls)
    session = SMTPSession(endpoint.address, endpoint.port, deadline=deadline,
                          source_address=source_address, transcript=transcript,
                          step_timeout=step_timeout)
    try:
        banner = _connect_tls(session) if tls else session.connect()
        facts.banner, facts.banner_code = first_line(banner), banner.code
        if not banner.positive:
            facts.problem = "refuses to talk to this vantage point"
            return facts
        reply = session.hello(helo)
        facts.ehlo = first_line(reply)
        facts.extensions = sorted(session.esmtp)[:MAX_EXTENSIONS]
    except SMTPError as exc:
        facts.problem = _problem(exc, facts, endpoint)
    except BudgetExhausted:
        facts.problem = ("the time budget ran out before the banner" if not facts.banner
                         else "the time budget ran out before the EHLO reply")
    finally:
        session.quit()
    return facts


def _problem(exc: SMTPError, facts: SMTPGreeting, endpoint: Endpoint) -> str:
    """In plain words what went wrong (without repeating the address), from the stage."""
    where = str(endpoint)
    text = str(exc).replace(f" to {where}", "").replace(f" from {where}", "")
    text = text.replace(f"{where} ", "").replace(f"{where}: ", "")
    return f"no SMTP banner: {text}" if not facts.banner else f"no EHLO reply: {text}"


def _connect_tls(session: SMTPSession) -> Reply:
    """TCP connect and TLS handshake (port 465), then the banner, as ``connect`` would."""
    stage = f"connecting to {session.address} port {session.port}"
    family = socket.AF_INET6 if ":" in session.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if session.source_address:
            sock.bind((session.source_address, 0))
        sock.settimeout(session.deadline.timeout(stage, session.step_timeout))
        session.transcript.add("**", f"connect {session.address} port {session.port} (TLS)")
        sock.connect((session.address, session.port))
        stage = "negotiating TLS"
        sock.settimeout(session.deadline.timeout(stage, session.step_timeout))
        wrapped = _audit_tls_context().wrap_socket(sock, server_hostname=None)
    except TimeoutError as exc:
        sock.close()
        raise SMTPError(f"{stage}: timed out", stage) from exc
    except (OSError, ssl.SSLError) as exc:
        with contextlib.suppress(OSError):
            sock.close()
        raise SMTPError(f"{stage}: {exc}", stage) from exc
    except BudgetExhausted:
        sock.close()
        raise
    session.sock = wrapped
    session.tls = True
    session.round_trips += 3  # TCP, then the TLS handshake
    session.transcript.add("**", f"TLS established ({wrapped.version()})")
    session.banner = session.read_reply("waiting for the banner")
    return session.banner
