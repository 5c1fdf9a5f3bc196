"""check_backscatter against real Postfix instances (rejecting, bouncing and discarding unknown
users), with the bounce proof read from a Maildir and over IMAP/IMAPS from a real Dovecot; the
pure verdict rules; scripted servers for the inconclusive cases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.dovecot import DovecotServer
from lab.postfix_mailbox import MailboxPostfix
from lab.process import free_port
from lab.smtpd import Behaviour, ReplyValue, ScriptedSMTPServer, Session
from mailprobe.findings import CRITICAL, OK, UNKNOWN, WARNING
from mailprobe.net.mailbox import Arrival
from mailprobe.net.smtp import Reply
from mailprobe.probes.backscatter import BackscatterReport, Proof, assess, random_local_part
from tests.conftest import PluginRun, run_plugin
from tests.fixtures.mailbox import PASSWORDS
from tests.fixtures.postfix import LAB_DOMAIN, OUTSIDE

NAME = "BACKSCATTER"
BOUNCE_TO = "probe@mailbox.test"


def backscatter(server: object, *args: str, domain: str = LAB_DOMAIN) -> PluginRun:
    host, port = server.host, server.port  # type: ignore[attr-defined]
    run = run_plugin("check_backscatter", "-H", host, "-p", str(port), "--source-address",
                     OUTSIDE, "--mail-domain", domain, "-t", "30", *args)
    assert run.status_line.startswith(f"{NAME} "), run.stdout + run.stderr
    return run


def proof_args(mailbox: str, wait: str = "15") -> tuple[str, ...]:
    return ("--bounce-to", BOUNCE_TO, "--mailbox", mailbox, "--bounce-wait", wait)


def token_of(run: PluginRun) -> str:
    match = re.search(r"\(token (mailprobe-backscatter-[0-9a-f]{16})\)", run.stdout)
    assert match, run.stdout
    return match.group(1)


def files_with(maildir: Path, text: str) -> list[Path]:
    return [path for path in maildir.rglob("*") if path.is_file() and path.parent.name in
            ("new", "cur") and text.encode() in path.read_bytes()]


# --- the RCPT test (nothing is sent) ---------------------------------------------------------

@pytest.mark.integration
def test_rejecting_unknown_users_is_ok(mailbox_postfix: MailboxPostfix) -> None:
    run = backscatter(mailbox_postfix)
    assert run.returncode == 0, run.stdout
    assert re.fullmatch(rf"{NAME} OK - refuses unknown users at RCPT \(550 5\.1\.1 "
                        rf"<mailprobe-nosuch-[0-9a-f]{{12}}@{LAB_DOMAIN}>: Recipient address "
                        r"rejected: User unknown in local recipient table\)", run.summary)
    assert run.perfdata["unknown_user_accepted"] == "0;;;0;1"
    assert "control: RCPT TO:<postmaster@relaylab.test> -> 250 2.1.5 Ok" in run.long_output
    assert "bounced" not in run.perfdata


@pytest.mark.integration
def test_accepting_unknown_users_is_a_warning(bounce_postfix: MailboxPostfix) -> None:
    before = bounce_postfix.maillog()
    run = backscatter(bounce_postfix)
    assert run.returncode == 1, run.stdout
    assert run.summary == (f"{NAME} WARNING - accepts mail for unknown users at RCPT (250 2.1.5 "
                           "Ok): any bounce later is backscatter")
    assert run.perfdata["unknown_user_accepted"] == "1;;;0;1"
    assert "sender: MAIL FROM:<relaytest@example.net> -> 250 2.1.0 Ok" in run.long_output
    # the default run stops at RCPT: no message, no bounce
    assert "status=bounced" not in bounce_postfix.maillog()[len(before):]


@pytest.mark.integration
@pytest.mark.parametrize(("state", "code"), [("critical", 2), ("ok", 0)])
def test_accept_state(bounce_postfix: MailboxPostfix, state: str, code: int) -> None:
    run = backscatter(bounce_postfix, "--accept-state", state)
    assert run.returncode == code
    assert "accepts mail for unknown users at RCPT (250 2.1.5 Ok)" in run.summary


# --- the bounce proof, through a Maildir and over IMAP ---------------------------------------

@pytest.mark.integration
def test_bounce_proof_through_the_maildir(bounce_postfix: MailboxPostfix) -> None:
    maildir = bounce_postfix.maildir("probe")
    run = backscatter(bounce_postfix, *proof_args(f"maildir:{maildir}"))
    assert run.returncode == 2, run.stdout
    assert re.match(rf"{NAME} CRITICAL - sent a bounce to a forged sender: backscatter \(from "
                    r"Mail Delivery System <MAILER-DAEMON@relaylab\.test>: Undelivered Mail "
                    r"Returned to Sender, after \d+\.\ds\); accepts mail for unknown users",
                    run.summary)
    assert run.perfdata["bounced"] == "1;;;0;1"
    assert "bounce_time" in run.perfdata
    token = token_of(run)
    assert any("removed from the mailbox" in line for line in run.long_output)
    assert files_with(maildir, token) == []       # the bounce was removed
    log = bounce_postfix.maillog()
    queue_id = re.search(r"-> 250 2\.0\.0 Ok: queued as (\w+)", run.stdout).group(1)  # type: ignore[union-attr]
    # the message went to the random user only; its bounce to --bounce-to only
    assert re.findall(rf"{queue_id}: to=<([^>]*)>", log) == [
        re.search(r"to (mailprobe-nosuch-\w+@relaylab\.test) from", run.stdout).group(1)]  # type: ignore[union-attr]
    assert f"{queue_id}: sender non-delivery notification" in log


@pytest.mark.integration
def test_keep_leaves_the_bounce(bounce_postfix: MailboxPostfix) -> None:
    maildir = bounce_postfix.maildir("probe")
    run = backscatter(bounce_postfix, *proof_args(f"maildir:{maildir}"), "--keep")
    assert run.returncode == 2, run.stdout
    kept = files_with(maildir, token_of(run))
    assert len(kept) == 1 and b"Undelivered Mail Returned to Sender" in kept[0].read_bytes()
    assert any("left in the mailbox" in line for line in run.long_output)
    kept[0].unlink()


@pytest.mark.integration
def test_bounce_proof_over_imap(bounce_postfix: MailboxPostfix, dovecot: DovecotServer,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The password comes from the environment: never on the command line."""
    monkeypatch.setenv("MAILPROBE_MAILBOX_PASSWORD", PASSWORDS["probe"])
    run = backscatter(bounce_postfix, *proof_args(dovecot.url("probe")))
    assert run.returncode == 2, run.stdout
    assert "sent a bounce to a forged sender: backscatter" in run.summary
    assert PASSWORDS["probe"] not in " ".join(run.argv)
    assert files_with(bounce_postfix.maildir("probe"), token_of(run)) == []   # expunged


@pytest.mark.integration
def test_bounce_proof_over_imaps(bounce_postfix: MailboxPostfix, dovecot: DovecotServer,
                                 tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(PASSWORDS["probe"] + "\n")
    run = backscatter(bounce_postfix, *proof_args(dovecot.url("probe", tls=True)),
                      "--mailbox-password-file", str(secret),
                      "--mailbox-cafile", dovecot.ca_file)
    assert run.returncode == 2, run.stdout
    assert "sent a bounce to a forged sender: backscatter" in run.summary


@pytest.mark.integration
def test_no_message_when_unknown_users_are_refused(mailbox_postfix: MailboxPostfix) -> None:
    before = mailbox_postfix.maillog()
    run = backscatter(mailbox_postfix,
                      *proof_args(f"maildir:{mailbox_postfix.maildir('probe')}"))
    assert run.returncode == 0, run.stdout
    assert "bounce test: no message sent (the unknown user was not accepted)" in run.long_output
    assert "queued as" not in mailbox_postfix.maillog()[len(before):]


@pytest.fixture(scope="module")
def discard_postfix(mail_root: Path) -> Iterator[MailboxPostfix]:
    """Accepts any user at RCPT and discards the mail: a catch-all that sends no bounce."""
    server = MailboxPostfix("discard", mail_root, ("probe", "other"), preset="discard_unknown")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.mark.integration
def test_accepted_but_no_bounce_within_the_wait(discard_postfix: MailboxPostfix) -> None:
    run = backscatter(discard_postfix,
                      *proof_args(f"maildir:{discard_postfix.maildir('probe')}", wait="2"))
    assert run.returncode == 1, run.stdout
    assert run.summary.startswith(f"{NAME} WARNING - accepts mail for unknown users at RCPT")
    assert run.perfdata["bounced"] == "0;;;0;1"
    assert "bounce: none within 2." in run.stdout
    log = discard_postfix.maillog()
    unknown = re.search(r"to (mailprobe-nosuch-\w+@relaylab\.test) from", run.stdout)
    assert unknown and re.search(rf"to=<{unknown.group(1)}>.*status=sent", log)  # dropped
    assert "sender non-delivery notification" not in log


@pytest.mark.integration
def test_a_mailbox_that_cannot_be_opened(bounce_postfix: MailboxPostfix,
                                         dovecot: DovecotServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrong IMAP password: no message is sent, the RCPT result still shows, UNKNOWN wins."""
    monkeypatch.setenv("MAILPROBE_MAILBOX_PASSWORD", "wrong")
    before = bounce_postfix.maillog()
    run = backscatter(bounce_postfix, *proof_args(dovecot.url("probe")))
    assert run.returncode == 3, run.stdout
    assert re.match(rf"{NAME} UNKNOWN - the bounce test was not run: imap://probe@127\.0\.0\.1:"
                    r"\d+/INBOX: login failed: \[AUTHENTICATIONFAILED\]", run.summary)
    assert "accepts mail for unknown users at RCPT" in run.summary
    assert "queued as" not in bounce_postfix.maillog()[len(before):]


# --- scripted servers: the inconclusive cases ---------------------------------------------------

class DefersUnknown(Behaviour):
    """450 for every recipient but postmaster@ (soft_bounce-like)."""

    def smtp_RCPT(self, session: Session, argument: str) -> ReplyValue:
        if "postmaster@" in argument.lower():
            return super().smtp_RCPT(session, argument)
        return "450 4.1.1 <x>: Recipient address rejected: try again later"


class AcceptsAllButPostmaster(Behaviour):
    def smtp_RCPT(self, session: Session, argument: str) -> ReplyValue:
        if "postmaster@" in argument.lower():
            return "550 5.1.1 <postmaster@lab.test>: User unknown"
        session.rcpts.append(argument)
        return "250 2.1.5 Ok"


@pytest.mark.parametrize(("behaviour", "code", "summary"), [
    (DefersUnknown(), 1, r"WARNING - defers unknown users with 450 4\.1\.1 .* instead of "
                         r"refusing them \(5xx\)"),
    (AcceptsAllButPostmaster(), 3, r"UNKNOWN - inconclusive: the control recipient was not "
                                   r"accepted \(550 5\.1\.1 .*\); accepts mail for unknown"),
    (Behaviour(replies={"MAIL": "553 5.7.1 Sender rejected"}), 3,
     r"UNKNOWN - inconclusive: MAIL FROM refused \(553 5\.7\.1 Sender rejected\)$"),
    (Behaviour(banner="554 5.7.1 Not for you"), 3,
     r"UNKNOWN - inconclusive: 127\.0\.0\.1 refuses this vantage point at the banner"),
])
def test_scripted(behaviour: Behaviour, code: int, summary: str) -> None:
    with ScriptedSMTPServer(behaviour) as server:
        run = backscatter(server, domain="lab.test")
    assert run.returncode == code, run.stdout
    assert re.search(summary, run.summary), run.summary


def test_nothing_listening_is_service_down() -> None:
    run = run_plugin("check_backscatter", "-H", "127.0.0.1", "-p", str(free_port()),
                     "--mail-domain", "lab.test", "-t", "10")
    assert run.returncode == 2
    assert re.match(rf"{NAME} CRITICAL - mail service down: no usable banner: cannot connect",
                    run.summary)


def test_the_mail_domain_is_guessed_from_the_banner() -> None:
    with ScriptedSMTPServer(Behaviour(hostname="mx.lab.test")) as server:
        run = run_plugin("check_backscatter", "-H", server.host, "-p", str(server.port),
                         "-t", "10")
    assert run.returncode == 1, run.stdout     # the scripted server takes any local part
    assert run.long_output[0] == "mail domain lab.test (guessed from the banner; set " \
                                 "--mail-domain)"
    assert re.search(r"RCPT TO:<mailprobe-nosuch-[0-9a-f]{12}@lab\.test> -> 250", run.stdout)


# --- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "why"), [
    (("--bounce-to", BOUNCE_TO), r"--bounce-to needs --mailbox"),
    (("--mailbox", "maildir:/tmp"), r"--mailbox and --keep are for the bounce proof"),
    (("--bounce-to", BOUNCE_TO, "--mailbox", "maildir:/tmp", "-t", "30"),
     r"-t 30 leaves no room for --bounce-wait 60 \(give -t 70 or more\)"),
    (("--bounce-to", BOUNCE_TO, "--mailbox", "pop3://u@h/"), r"--mailbox: 'pop3://u@h/' is not"),
    (("--bounce-to", BOUNCE_TO, "--mailbox", "imap://u@127.0.0.1/INBOX"),
     r"no password for imap://u@127\.0\.0\.1:143/INBOX"),
    (("--bounce-to", BOUNCE_TO, "--mailbox", "maildir:/tmp", "--mailbox-cafile", "/x"),
     r"--mailbox-cafile is for an imaps:// mailbox"),
    (("--bounce-to", "nobody", "--mailbox", "maildir:/tmp"),
     r"--bounce-to 'nobody' is not an address"),
    (("--accept-state", "unknown"), r"invalid choice"),
    (("--external-domain", "bad domain"), r"is not a domain name"),
])
def test_bad_options(args: tuple[str, ...], why: str) -> None:
    run = run_plugin("check_backscatter", "-H", "127.0.0.1", "--mail-domain", "lab.test", *args)
    assert run.returncode == 3
    assert re.search(rf"{NAME} UNKNOWN - bad option: .*{why}", run.status_line), run.stdout


# --- the verdict (pure) -------------------------------------------------------------------------

OK_MAIL, OK_RCPT = Reply(250, ("2.1.0 Ok",)), Reply(250, ("2.1.5 Ok",))
USER_UNKNOWN = Reply(550, ("5.1.1 User unknown",))
QUEUED = Reply(250, ("2.0.0 Ok: queued as X",))
BOUNCE = Arrival("t", 0.4, "Undelivered Mail Returned to Sender", "MAILER-DAEMON@x", "1")


def report(unknown: Reply | None = OK_RCPT, control: Reply | None = OK_RCPT,
           proof: Proof | None = None) -> BackscatterReport:
    return BackscatterReport(mail=OK_MAIL, control=control, unknown=unknown, proof=proof)


def levels(findings: list) -> list[tuple[int, str]]:
    return [(f.level, f.code) for f in findings]


def test_assess_rcpt_only() -> None:
    assert levels(assess(report(USER_UNKNOWN))) == [(OK, "unknown_user")]
    assert levels(assess(report())) == [(WARNING, "unknown_user")]
    assert levels(assess(report(), CRITICAL)) == [(CRITICAL, "unknown_user")]
    assert levels(assess(report(control=USER_UNKNOWN))) == [(WARNING, "unknown_user"),
                                                            (UNKNOWN, "control")]
    assert levels(assess(BackscatterReport(error="reset"))) == [(UNKNOWN, "rcpt")]


def test_assess_proof() -> None:
    sent = Proof("me@example.org", 60, token="t", message=QUEUED, watched=60.0)
    assert levels(assess(report(proof=sent))) == [(WARNING, "unknown_user"), (OK, "bounce")]
    bounced = Proof("me@example.org", 60, token="t", message=QUEUED, bounce=BOUNCE)
    assert (CRITICAL, "bounce") in levels(assess(report(proof=bounced)))
    refused = Proof("me@example.org", 60, token="t", message=USER_UNKNOWN)
    assert (OK, "bounce") in levels(assess(report(proof=refused)))
    broken = Proof("me@example.org", 60, mailbox_error="login failed")
    assert (UNKNOWN, "mailbox") in levels(assess(report(proof=broken)))
    lost = Proof("me@example.org", 60, token="t", message=QUEUED, mailbox_error="timed out")
    assert (UNKNOWN, "mailbox") in levels(assess(report(proof=lost)))
    not_sent = Proof("me@example.org", 60, not_sent="DATA refused: 554")
    assert (UNKNOWN, "bounce") in levels(assess(report(proof=not_sent)))
    assert levels(assess(report(USER_UNKNOWN, proof=Proof("me@example.org", 60)))) == [
        (OK, "unknown_user")]


def test_random_local_parts_differ() -> None:
    parts = {random_local_part() for _ in range(50)}
    assert len(parts) == 50 and all(re.fullmatch(r"mailprobe-nosuch-[0-9a-f]{12}", p)
                                    for p in parts)
