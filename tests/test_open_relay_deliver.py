"""check_open_relay --depth deliver (issue 13): proof by delivery, against real Postfix.

The Postfix under test also holds the operator's mailbox: ``probe@operator.test`` is routed by
``transport_maps`` into a Maildir, but operator.test is in no address class of the instance,
so to smtpd it is an outside domain: a closed instance refuses it to 127.0.0.2, and only a
relay (``mynetworks = 0.0.0.0/0``, an open XCLIENT) makes a message arrive there
(:class:`lab.postfix_mailbox.RelayingMailboxPostfix`). The honeypot is the lab's open Postfix,
which accepts every recipient and discards every message. Dovecot serves the same Maildirs
over IMAP. The header-originator proof runs against a real Exim whose DATA ACL trusts the
From:/Sender: header (:class:`lab.exim.HeaderTrustingExim`), which Postfix cannot be made to do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.dovecot import DovecotServer
from lab.exim import HeaderTrustingExim, find_exim
from lab.postfix import PostfixServer
from lab.postfix_mailbox import OPERATOR_DOMAIN, RelayingMailboxPostfix, make_maildir
from lab.process import LabError
from tests.conftest import PluginRun, run_plugin
from tests.fixtures.mailbox import MAILBOX_USERS, PASSWORDS
from tests.fixtures.postfix import LAB_DOMAIN, OUTSIDE

pytestmark = pytest.mark.integration

NAME = "OPEN_RELAY"
OPERATOR = f"probe@{OPERATOR_DOMAIN}"
TOKEN = re.compile(r"mailprobe-relay-[a-z0-9-]+-[0-9a-f]{16}")


def _relaying(name: str, root: Path, relay: dict[str, str]) -> Iterator[RelayingMailboxPostfix]:
    if os.geteuid() != 0:
        pytest.skip("Postfix needs root to start")
    if not shutil.which("postfix") and not os.path.exists("/usr/sbin/postfix"):
        pytest.skip("postfix is not installed (run ./dev setup)")
    server = RelayingMailboxPostfix(name, root, MAILBOX_USERS, relay=relay)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def own_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="mailprobe-relay-mailboxes-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="module")
def relaying(mail_root: Path) -> Iterator[RelayingMailboxPostfix]:
    """An open relay (every client trusted) delivering operator.test into mail_root, the
    Maildirs Dovecot serves."""
    yield from _relaying("deliver-open", mail_root, {"mynetworks": "0.0.0.0/0"})


@pytest.fixture(scope="module")
def closed(own_root: Path) -> Iterator[RelayingMailboxPostfix]:
    """Correctly closed: operator.test is outside, refused to 127.0.0.2."""
    yield from _relaying("deliver-closed", own_root, {})


@pytest.fixture(scope="module")
def xclient(own_root: Path) -> Iterator[RelayingMailboxPostfix]:
    """Closed, but XCLIENT open to every client."""
    yield from _relaying("deliver-xclient", own_root,
                         {"smtpd_authorized_xclient_hosts": "0.0.0.0/0"})


@pytest.fixture(scope="module")
def header_trusting_exim(own_root: Path) -> Iterator[HeaderTrustingExim]:
    """A real Exim accepting every recipient at RCPT and, at DATA, only messages whose From: or
    Sender: is in relaylab.test; operator.test goes to the Maildir own_root/exim/probe."""
    try:
        find_exim()
    except LabError as exc:
        pytest.skip(str(exc))
    if os.geteuid() != 0:
        pytest.skip("the lab Exim needs root to start (exim4 -bd)")
    server = HeaderTrustingExim("deliver-header-trust", own_root / "exim", ("probe",),
                                operator_domain=OPERATOR_DOMAIN)
    try:
        yield server.start()
    finally:
        server.stop()


def exim_mainlog_after(exim: HeaderTrustingExim, completed: int) -> str:
    """Exim's mainlog once ``completed`` messages are logged as Completed (the delivery
    process logs after the Maildir file appears; waits at most 10 s)."""
    path = exim.workdir / "log" / "mainlog"
    deadline = time.monotonic() + 10
    while True:
        log = path.read_text()
        if log.count(" Completed\n") >= completed or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


def deliver(server: PostfixServer | HeaderTrustingExim, mailbox: str, *args: str,
            wait: str = "10") -> PluginRun:
    run = run_plugin("check_open_relay", "-H", server.host, "-p", str(server.port),
                     "--source-address", OUTSIDE, "--mail-domain", LAB_DOMAIN,
                     "--depth", "deliver", "--deliver-to", OPERATOR, "--mailbox", mailbox,
                     "--deliver-wait", wait, "-t", "40", *args)
    assert run.status_line.startswith(f"{NAME} "), run.stdout + run.stderr
    return run


def maildir_url(maildir: Path) -> str:
    return f"maildir:{maildir}"


def messages_in(maildir: Path) -> list[bytes]:
    return [path.read_bytes() for sub in ("new", "cur") for path in (maildir / sub).iterdir()]


def outcome_of(run: PluginRun, attempt: str) -> str:
    for line in run.long_output:
        match = re.match(rf"\[([A-Z -]+)\] {re.escape(attempt)}:", line)
        if match:
            return match.group(1)
    raise AssertionError(f"{attempt} not in the long output:\n{run.stdout}")


def test_a_relay_that_delivers_is_critical_and_its_messages_are_removed(
        relaying: RelayingMailboxPostfix) -> None:
    maildir = relaying.maildir("probe")
    before = len(messages_in(maildir))
    run = deliver(relaying, maildir_url(maildir), "--tests",
                  "plain,percent-hack-domain,quoted-local-part-domain")
    assert run.returncode == 2, run.stdout
    # Postfix rewrites the routed forms ("user@ext"@dom, user%ext@dom) to user@ext: all arrive
    assert re.fullmatch(rf"{NAME} CRITICAL - 3 of 3 relay attempts delivered to {OPERATOR} "
                        r"\(plain, percent-hack-domain, quoted-local-part-domain; delivered: token "
                        r"seen in the mailbox after \d+\.\d s\)", run.summary), run.summary
    assert run.perf_value("delivered") == 3
    assert run.perf_value("undelivered") == 0
    assert run.perf_value("relayed") == 3
    assert outcome_of(run, "plain") == "RELAYED"
    assert re.search(r"\[RELAYED\] plain: MAIL FROM:<probe@operator\.test> / RCPT TO:<probe@"
                     r"operator\.test> -> 250 .*\(delivered: token seen in the mailbox after "
                     r"\d+\.\d s\)", run.stdout), run.stdout
    assert any(line.startswith("mailbox: 3 test message(s) taken, 3 arrived") and
               line.endswith("3 removed") for line in run.long_output), run.stdout
    assert len(messages_in(maildir)) == before          # the probe's own messages removed
    log = relaying.maillog()
    sent_to = set(re.findall(r"to=<([^>]+)>.*status=sent", log))
    assert sent_to == {OPERATOR}, sent_to               # nothing went anywhere else


def test_keep_leaves_the_labelled_messages(relaying: RelayingMailboxPostfix) -> None:
    maildir = relaying.maildir("probe")
    run = deliver(relaying, maildir_url(maildir), "--tests", "plain", "--keep")
    assert run.returncode == 2, run.stdout
    kept = [m for m in messages_in(maildir) if b"X-Mailprobe-Test: relay plain" in m]
    assert kept, run.stdout
    text = kept[-1].decode()
    assert f"From: mailprobe test <{OPERATOR}>" in text
    assert "Subject: [mailprobe test] relay test plain mailprobe-relay-plain-" in text
    assert "This is a relay test message of check_open_relay (mailprobe)" in text
    assert TOKEN.search(text.split("Test token: ")[1]), text
    assert any(line.endswith("0 removed (--keep)") for line in run.long_output), run.stdout
    for path in [p for sub in ("new", "cur") for p in (maildir / sub).iterdir()]:
        if b"X-Mailprobe-Test: relay plain" in path.read_bytes():
            path.unlink()


def test_the_header_originator_attempts_carry_the_servers_domain(
        relaying: RelayingMailboxPostfix) -> None:
    maildir = relaying.maildir("probe")
    run = deliver(relaying, maildir_url(maildir), "--tests",
                  "header-from-own-domain,header-sender-own-domain", "--keep")
    assert run.returncode == 2, run.stdout
    texts = [m.decode() for m in messages_in(maildir) if b"X-Mailprobe-Test: relay header-" in m]
    assert any(f"From: <postmaster@{LAB_DOMAIN}>" in t for t in texts), texts
    assert any(f"Sender: <postmaster@{LAB_DOMAIN}>" in t and f"From: mailprobe test <{OPERATOR}>"
               in t for t in texts), texts
    for sub in ("new", "cur"):
        for path in (maildir / sub).iterdir():
            if b"X-Mailprobe-Test: relay header-" in path.read_bytes():
                path.unlink()


def test_the_token_round_trip_over_imap(relaying: RelayingMailboxPostfix, dovecot: DovecotServer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILPROBE_MAILBOX_PASSWORD", PASSWORDS["probe"])
    run = deliver(relaying, dovecot.url("probe"), "--tests", "plain,bang-path")
    assert run.returncode == 2, run.stdout
    assert run.perf_value("delivered") == 2
    assert PASSWORDS["probe"] not in " ".join(run.argv)
    assert not [m for m in messages_in(relaying.maildir("probe"))
                if b"X-Mailprobe-Test: relay" in m]           # expunged over IMAP


def test_an_exim_relaying_on_the_header_originator_delivers_exactly_the_header_attempts(
        header_trusting_exim: HeaderTrustingExim) -> None:
    exim = header_trusting_exim
    maildir = exim.maildir("probe")
    run = deliver(exim, maildir_url(maildir), "--skip", "helo-ptr-name")
    assert run.returncode == 2, run.stdout
    assert re.fullmatch(rf"{NAME} CRITICAL - 2 of \d+ relay attempts delivered to {OPERATOR} "
                        r"\(header-from-own-domain, header-sender-own-domain; delivered: token "
                        r"seen in the mailbox after \d+\.\d s\)", run.summary), run.summary
    assert run.perf_value("delivered") == 2
    assert run.perf_value("relayed") == 2
    assert run.perf_value("undelivered") == 0
    assert outcome_of(run, "header-from-own-domain") == "RELAYED"
    assert outcome_of(run, "header-sender-own-domain") == "RELAYED"
    outcomes = [re.match(r"\[([A-Z -]+)\] ", line) for line in run.long_output]
    states = [match.group(1) for match in outcomes if match]
    assert states.count("RELAYED") == 2, run.stdout
    assert not {"ACCEPTED-NOT-DELIVERED", "ERROR", "TIMEOUT", "TEMPFAILED"} & set(states)
    # every other attempt Exim took at RCPT it refused at the end of the message
    for attempt in ("plain", "sender-own-domain", "sender-localhost", "percent-hack-domain",
                    "quoted-local-part-domain", "source-route-domain", "bang-path-domain",
                    "upper-case", "helo-server-name", "helo-mail-domain"):
        assert outcome_of(run, attempt) == "REFUSED AT DATA", run.stdout
    assert re.search(r"\[REFUSED AT DATA\] plain: MAIL FROM:<probe@operator\.test> / "
                     r"RCPT TO:<probe@operator\.test> -> 550 relay not permitted", run.stdout)
    assert any(line.startswith("mailbox: 2 test message(s) taken, 2 arrived") and
               line.endswith("2 removed") for line in run.long_output), run.stdout
    assert messages_in(maildir) == []                   # the probe's messages removed
    log = exim_mainlog_after(exim, completed=2)
    refused = re.findall(r" rejected after DATA: relay not permitted$", log, re.MULTILINE)
    assert len(refused) == states.count("REFUSED AT DATA"), log
    received = re.findall(r" <= (\S+) H=", log)
    assert received == [OPERATOR, OPERATOR], received  # the two header messages, no bounce
    deliveries = re.findall(r" (=>|->|\*\*|==) (.*)$", log, re.MULTILINE)
    into_maildir = ("=>", f"probe <{OPERATOR}> R=operator_mailbox T=operator_maildir")
    assert deliveries == [into_maildir] * 2, deliveries  # nothing went anywhere else


def test_a_honeypot_that_accepts_and_drops_is_a_warning(postfix_open: PostfixServer,
                                                        tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path / "probe")
    run = deliver(postfix_open, maildir_url(maildir), "--tests", "plain,percent-hack-domain",
                  wait="2")
    assert run.returncode == 1, run.stdout
    assert re.match(rf"{NAME} WARNING - 2 of 2 relay attempts accepted outside recipients but "
                    r"did not deliver within [23] s: honeypot, catch-all, or a queue "
                    r"\(plain, percent-hack-domain\)", run.summary), run.summary
    assert run.perf_value("relayed") == 0
    assert run.perf_value("delivered") == 0
    assert run.perf_value("undelivered") == 2


def test_a_closed_server_is_ok_and_gets_no_message(closed: RelayingMailboxPostfix) -> None:
    run = deliver(closed, maildir_url(closed.maildir("probe")))
    assert run.returncode == 0, run.stdout
    assert run.summary.startswith(f"{NAME} OK - 0 of ")
    assert "-> DATA" not in run.stdout
    assert "queued as" not in closed.maillog()


def test_xclient_open_to_anyone_delivers_through_xclient(xclient: RelayingMailboxPostfix) -> None:
    maildir = xclient.maildir("probe")
    run = deliver(xclient, maildir_url(maildir), "--skip", "helo-ptr-name")
    assert run.returncode == 2, run.stdout
    assert re.match(rf"{NAME} CRITICAL - 1 of \d+ relay attempts delivered to {OPERATOR} "
                    r"\(xclient-loopback; delivered", run.summary), run.summary
    assert messages_in(maildir) == []


def test_an_unusable_mailbox_stops_the_check_before_any_traffic(
        closed: RelayingMailboxPostfix, tmp_path: Path) -> None:
    before = closed.maillog()
    run = deliver(closed, maildir_url(tmp_path / "nothing-here"))
    assert run.returncode == 3, run.stdout
    assert run.summary.startswith(f"{NAME} UNKNOWN - no relay attempt made: the mailbox could "
                                  "not be opened (")
    assert closed.maillog() == before


@pytest.mark.parametrize(("args", "message"), [
    (("--depth", "deliver", "--mailbox", "maildir:/tmp"), "--depth deliver needs --deliver-to"),
    (("--depth", "deliver", "--deliver-to", OPERATOR), "--depth deliver needs --mailbox"),
    (("--depth", "deliver", "--deliver-to", f"me@{LAB_DOMAIN}", "--mailbox", "maildir:/tmp",
      "--mail-domain", LAB_DOMAIN, "-t", "200"), "is in the server's own mail domain"),
    (("--depth", "deliver", "--deliver-to", f"me@sub.{LAB_DOMAIN}", "--mailbox",
      "maildir:/tmp", "--mail-domain", LAB_DOMAIN, "-t", "200"),
     "is in the server's own mail domain"),
    (("--depth", "deliver", "--deliver-to", OPERATOR, "--mailbox", "maildir:/tmp"),
     "-t 60 leaves no room for --deliver-wait 120"),
    (("--depth", "deliver", "--deliver-to", OPERATOR, "--mailbox", "maildir:/tmp", "-t", "200",
      "--tests", "ip-literal-recipient"), "ip-literal-recipient cannot be addressed to"),
    (("--tests", "header-from-own-domain"), "header-from-own-domain needs --depth deliver"),
    (("--deliver-to", OPERATOR), "--deliver-to: only with --depth deliver"),
    (("--mailbox", "maildir:/tmp", "--keep"), "--mailbox, --keep: only with --depth deliver"),
    (("--depth", "deliver", "--deliver-to", "nobody", "--mailbox", "maildir:/tmp"),
     "--deliver-to 'nobody' is not an address"),
])
def test_bad_delivery_options_are_unknown_with_one_line(args: tuple[str, ...],
                                                        message: str) -> None:
    run = run_plugin("check_open_relay", "-H", "127.0.0.1", *args)
    assert run.returncode == 3, run.stdout
    assert run.stdout.count("\n") == 1
    assert run.status_line.startswith(f"{NAME} UNKNOWN - bad option: "), run.stdout
    assert message in run.status_line, run.stdout
