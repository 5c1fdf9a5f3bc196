"""The mailbox readers (net/mailbox): URLs and password sources, and a Maildir on disk."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from mailprobe.net.deadline import Deadline
from mailprobe.net.mailbox import (
    PASSWORD_ENV,
    MailboxError,
    MailboxURL,
    MailboxURLError,
    mailbox_password,
    open_mailbox,
    parse_mailbox_url,
)

# --- URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "path"), [
    ("maildir:/home/me/Maildir", "/home/me/Maildir"),
    ("maildir:///var/mail/probe", "/var/mail/probe"),
    ("MAILDIR:Maildir", "Maildir"),
])
def test_maildir_urls(text: str, path: str) -> None:
    url = parse_mailbox_url(text)
    assert (url.scheme, url.path, url.is_imap) == ("maildir", path, False)
    assert str(url) == f"maildir:{path}"


def test_imap_url_fields() -> None:
    url = parse_mailbox_url("imap://probe@127.0.0.1/INBOX")
    assert url == MailboxURL("imap", user="probe", host="127.0.0.1", port=143, folder="INBOX")
    assert url.password is None


def test_imaps_url_with_everything_percent_encoded() -> None:
    url = parse_mailbox_url("imaps://me%40example.org:p%40ss%3Aw@[::1]:1993/Sent%20Items")
    assert (url.scheme, url.user, url.password, url.host, url.port, url.folder) == (
        "imaps", "me@example.org", "p@ss:w", "::1", 1993, "Sent Items")


def test_imap_url_defaults() -> None:
    assert parse_mailbox_url("imaps://u@mail.example.org").port == 993
    assert parse_mailbox_url("imaps://u@mail.example.org/").folder == "INBOX"


def test_the_url_shown_never_carries_the_password() -> None:
    url = parse_mailbox_url("imap://probe:hunter2@127.0.0.1:1143/INBOX")
    assert url.password == "hunter2"
    assert "hunter2" not in str(url) and str(url) == "imap://probe@127.0.0.1:1143/INBOX"
    with pytest.raises(MailboxURLError) as bad:
        parse_mailbox_url("imap://probe:hunter2@127.0.0.1:1143/INBOX?x=1")
    assert "hunter2" not in str(bad.value)


@pytest.mark.parametrize(("text", "why"), [
    ("/home/me/Maildir", "is not maildir:PATH"),
    ("ftp://u@host/x", "is not maildir:PATH"),
    ("maildir:", "needs a path"),
    ("imap://host.example/INBOX", "names no user"),
    ("imap://u@/INBOX", "names no host"),
    ("imap://u@host:99999/INBOX", "out of range"),
    ("imap://u@host/INBOX#x", "no ?query or #fragment"),
    ("imap://u@[fe80::zz]/INBOX", "IPv6"),
    ("imap://u@host/IN%0ABOX", "line break"),
])
def test_bad_urls_say_why(text: str, why: str) -> None:
    with pytest.raises(MailboxURLError, match=re.escape(why)):
        parse_mailbox_url(text)


# --- the password: from one source -------------------------------------------------------------

IMAP = parse_mailbox_url("imap://probe@127.0.0.1/INBOX")


def test_password_from_a_file_first_line(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3 cret\nsecond line\n")
    assert mailbox_password(IMAP, str(secret), environ={}).password == "s3 cret"


def test_password_from_the_environment() -> None:
    assert mailbox_password(IMAP, None, environ={PASSWORD_ENV: "env-secret"}).password == \
        "env-secret"


def test_password_in_the_url_wins_over_the_environment() -> None:
    url = parse_mailbox_url("imap://probe:url-secret@127.0.0.1/INBOX")
    assert mailbox_password(url, None, environ={PASSWORD_ENV: "env"}).password == "url-secret"


def test_the_file_wins_over_the_environment(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("file-secret")
    url = mailbox_password(IMAP, str(tmp_path / "secret"), environ={PASSWORD_ENV: "env"})
    assert url.password == "file-secret"


@pytest.mark.parametrize(("url", "content", "env", "why"), [
    ("imap://probe:x@127.0.0.1/INBOX", "y", {}, "keep one"),
    ("imap://probe@127.0.0.1/INBOX", None, {}, f"give --mailbox-password-file FILE or set "
                                               f"{PASSWORD_ENV}"),
    ("imap://probe@127.0.0.1/INBOX", "\n", {}, "the first line is empty"),
    ("maildir:/tmp", "x", {}, "is for imap:// and imaps://"),
])
def test_password_problems(tmp_path: Path, url: str, content: str | None, env: dict[str, str],
                           why: str) -> None:
    secret = None
    if content is not None:
        secret = tmp_path / "secret"
        secret.write_text(content)
    with pytest.raises(MailboxURLError, match=why):
        mailbox_password(parse_mailbox_url(url), str(secret) if secret else None, environ=env)


def test_a_missing_password_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MailboxURLError, match=r"nosuch: No such file"):
        mailbox_password(IMAP, str(tmp_path / "nosuch"), environ={})


# --- a Maildir on disk -------------------------------------------------------------------------

def make_maildir(path: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def deliver(maildir: Path, name: str, text: str) -> Path:
    """Write a message the way an MTA does: into tmp/, then renamed into new/."""
    temporary = maildir / "tmp" / name
    temporary.write_bytes(text.replace("\n", "\r\n").encode())
    final = maildir / "new" / name
    os.rename(temporary, final)
    return final


def message(token: str, subject: str = "test") -> str:
    return f"From: Probe <probe@mailbox.test>\nSubject: {subject} {token}\n\nbody {token}\n"


def test_maildir_finds_a_token_that_arrives_while_waiting(tmp_path: Path) -> None:
    box = make_maildir(tmp_path / "Maildir")
    deliver(box, "1.old", message("tok-old"))
    mailbox = open_mailbox(parse_mailbox_url(f"maildir:{box}"), Deadline(30))
    later = threading.Timer(0.3, deliver, (box, "2.new", message("tok-new", "relay test")))
    later.start()
    found = mailbox.wait_for(["tok-new"], Deadline(30), wait=20)
    later.join()
    assert set(found) == {"tok-new"}
    arrival = found["tok-new"]
    assert arrival.subject == "relay test tok-new"
    assert arrival.sender == "Probe <probe@mailbox.test>"
    assert arrival.reference == "2.new" and arrival.seconds > 0


def test_maildir_never_reads_what_was_there_before(tmp_path: Path) -> None:
    """A message already in the Maildir when it is opened is not the probe's: never matched."""
    box = make_maildir(tmp_path / "Maildir")
    deliver(box, "1.old", message("tok-1"))
    mailbox = open_mailbox(parse_mailbox_url(f"maildir:{box}"), Deadline(30))
    assert mailbox.wait_for(["tok-1"], Deadline(30), wait=0.3) == {}
    assert mailbox.watched >= 0.3      # it looked for the whole wait


def test_maildir_remove_deletes_only_the_probes_messages(tmp_path: Path) -> None:
    box = make_maildir(tmp_path / "Maildir")
    mailbox = open_mailbox(parse_mailbox_url(f"maildir:{box}"), Deadline(30))
    deliver(box, "1.mine", message("tok-a"))
    deliver(box, "2.theirs", message("someone-else"))
    deliver(box, "3.mine", message("tok-b"))
    found = mailbox.wait_for(["tok-a", "tok-b", "tok-c"], Deadline(30), wait=0.5)
    assert set(found) == {"tok-a", "tok-b"}
    # a mail reader saw one of them meanwhile: moved to cur/ with flags
    os.rename(box / "new" / "3.mine", box / "cur" / "3.mine:2,S")
    assert mailbox.remove(["tok-a", "tok-b", "tok-c"], Deadline(30)) == 2
    assert sorted(p.name for p in box.rglob("*") if p.is_file()) == ["2.theirs"]


def test_maildir_that_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(MailboxError, match=r"is not a Maildir \(no new/, cur/, tmp/\)"):
        open_mailbox(parse_mailbox_url(f"maildir:{tmp_path / 'plain'}"), Deadline(5))
    with pytest.raises(MailboxError, match=r"does not exist"):
        open_mailbox(parse_mailbox_url(f"maildir:{tmp_path / 'nosuch'}"), Deadline(5))


def test_wait_ends_with_the_deadline(tmp_path: Path) -> None:
    """A wait longer than the deadline stops at the deadline, reporting how long it watched."""
    box = make_maildir(tmp_path / "Maildir")
    mailbox = open_mailbox(parse_mailbox_url(f"maildir:{box}"), Deadline(30))
    deadline = Deadline(0.5)
    assert mailbox.wait_for(["never"], deadline, wait=600) == {}
    assert deadline.expired()
    assert mailbox.watched < 600
