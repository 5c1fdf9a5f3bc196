"""The mailbox readers against real servers: Postfix delivers into a Maildir, Dovecot serves it
over IMAP and IMAPS; the readers find the tokens and remove only the probe's messages."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from lab.dovecot import DovecotServer
from lab.postfix_mailbox import MailboxPostfix
from mailprobe.net.deadline import Deadline
from mailprobe.net.mailbox import (
    Mailbox,
    MailboxError,
    mailbox_password,
    open_mailbox,
    parse_mailbox_url,
)
from tests.fixtures.mailbox import PASSWORDS

pytestmark = pytest.mark.integration


def send(server: MailboxPostfix, token: str, to: str = "probe@mailbox.test") -> None:
    """Submit one small message carrying ``token`` to the lab Postfix."""
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.sendmail("sender@example.net", [to],
                        f"From: sender@example.net\r\nTo: {to}\r\nSubject: test {token}\r\n"
                        f"\r\nbody {token}\r\n")


def imap_session(dovecot: DovecotServer, user: str = "probe") -> imaplib.IMAP4:
    session = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    session.login(user, PASSWORDS[user])
    session.select("INBOX")
    return session


def subjects(dovecot: DovecotServer, user: str = "probe") -> list[str]:
    """Subjects of every message in the user's INBOX, read by a client of our own."""
    session = imap_session(dovecot, user)
    try:
        _, data = session.uid("SEARCH", "ALL")
        found = []
        for uid in data[0].split():
            _, fetched = session.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            found.append(fetched[0][1].decode().strip())
        return found
    finally:
        session.logout()


def watch(mailbox: Mailbox, tokens: list[str], wait: float = 20) -> dict[str, object]:
    return dict(mailbox.wait_for(tokens, Deadline(60), wait=wait))


# --- Maildir written by Postfix's virtual(8) -----------------------------------------------------

def test_maildir_sees_what_postfix_delivers(mailbox_postfix: MailboxPostfix) -> None:
    url = parse_mailbox_url(f"maildir:{mailbox_postfix.maildir('probe')}")
    with open_mailbox(url, Deadline(30)) as mailbox:
        send(mailbox_postfix, "tok-maildir-1")
        send(mailbox_postfix, "tok-maildir-other")
        found = watch(mailbox, ["tok-maildir-1", "tok-maildir-other"])
        assert set(found) == {"tok-maildir-1", "tok-maildir-other"}
        assert mailbox.remove(["tok-maildir-1"], Deadline(10)) == 1
    left = [p.read_text() for p in (mailbox_postfix.maildir("probe") / "new").iterdir()]
    assert not any("tok-maildir-1" in text for text in left)
    assert any("tok-maildir-other" in text for text in left)


# --- IMAP and IMAPS from Dovecot ------------------------------------------------------------------

@pytest.fixture
def imap_url(dovecot: DovecotServer) -> str:
    return dovecot.url("probe")


def test_imap_finds_the_token_and_expunges_only_it(dovecot: DovecotServer,
                                                    mailbox_postfix: MailboxPostfix,
                                                    imap_url: str) -> None:
    url = mailbox_password(parse_mailbox_url(imap_url), environ={
        "MAILPROBE_MAILBOX_PASSWORD": PASSWORDS["probe"]})
    send(mailbox_postfix, "tok-imap-before")       # there before: never the probe's
    until = time.monotonic() + 20
    while "Subject: test tok-imap-before" not in subjects(dovecot) and time.monotonic() < until:
        time.sleep(0.1)
    with open_mailbox(url, Deadline(30)) as mailbox:
        later = threading.Timer(0.3, send, (mailbox_postfix, "tok-imap-1"))
        later.start()
        send(mailbox_postfix, "tok-imap-unrelated")
        found = mailbox.wait_for(["tok-imap-1", "tok-imap-before", "tok-imap-unrelated"],
                                 Deadline(60), wait=3)
        later.join()
        assert set(found) == {"tok-imap-1", "tok-imap-unrelated"}
        assert found["tok-imap-1"].subject == "test tok-imap-1"
        assert found["tok-imap-1"].sender == "sender@example.net"
        assert mailbox.remove(["tok-imap-1"], Deadline(10)) == 1
    left = subjects(dovecot)
    assert "Subject: test tok-imap-before" in left
    assert "Subject: test tok-imap-unrelated" in left
    assert "Subject: test tok-imap-1" not in left


def test_imaps_verifies_the_certificate(dovecot: DovecotServer,
                                        mailbox_postfix: MailboxPostfix) -> None:
    url = parse_mailbox_url(dovecot.url("probe", password=PASSWORDS["probe"], tls=True))
    with pytest.raises(MailboxError, match=r"certificate is not trusted .*--mailbox-cafile"):
        open_mailbox(url, Deadline(10))
    with open_mailbox(url, Deadline(30), cafile=dovecot.ca_file) as mailbox:
        send(mailbox_postfix, "tok-imaps-1")
        assert set(watch(mailbox, ["tok-imaps-1"])) == {"tok-imaps-1"}
        assert mailbox.remove(["tok-imaps-1"], Deadline(10)) == 1


def test_imap_wrong_password(dovecot: DovecotServer) -> None:
    url = parse_mailbox_url(dovecot.url("probe", password="wrong"))
    with pytest.raises(MailboxError,
                       match=r"login failed: \[AUTHENTICATIONFAILED\] Authentication failed"):
        open_mailbox(url, Deadline(10))


def test_imap_missing_folder(dovecot: DovecotServer) -> None:
    url = parse_mailbox_url(dovecot.url("probe", "No Such", password=PASSWORDS["probe"]))
    with pytest.raises(MailboxError, match=r"selecting folder No Such refused"):
        open_mailbox(url, Deadline(10))


def test_imap_nobody_listening() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = parse_mailbox_url(f"imap://probe:x@127.0.0.1:{port}/INBOX")
    with pytest.raises(MailboxError, match=r"cannot connect to imap://probe@127.0.0.1:\d+/INBOX: "
                                           r"Connection refused"):
        open_mailbox(url, Deadline(10))


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_imap_silent_server_ends_with_the_deadline(silent_server: int) -> None:
    url = parse_mailbox_url(f"imap://probe:x@127.0.0.1:{silent_server}/INBOX")
    deadline = Deadline(1.0)
    with pytest.raises(MailboxError, match="timed out"):
        open_mailbox(url, deadline)


def test_imaps_speaking_to_a_plain_port(dovecot: DovecotServer) -> None:
    url = parse_mailbox_url(f"imaps://probe:x@{dovecot.host}:{dovecot.port}/INBOX")
    with pytest.raises(MailboxError, match=r"cannot connect to imaps://"):
        open_mailbox(url, Deadline(10), cafile=dovecot.ca_file)

