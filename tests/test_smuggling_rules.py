"""The pure parts of check_smtp_smuggling: the sequence catalogue, the verdict rules, the MTA
advice, and the labelled test message every probe sends."""

from __future__ import annotations

import re

import pytest

from mailprobe.net.smtp import Reply
from mailprobe.probes.smuggling.advice import advice_for, cves_for, identify_mta
from mailprobe.probes.smuggling.catalogue import BY_ID, PIPELINING, SEQUENCES, select
from mailprobe.probes.smuggling.verdict import (
    Observation,
    Outcome,
    PipeliningOutcome,
    Silence,
    classify,
    classify_pipelining,
)
from mailprobe.probes.testmail import ProbeMessage, new_token

OK250 = Reply(250, ("2.0.0 Ok: queued as ABC",))
NOOP250 = Reply(250, ("2.0.0 Ok",))
REJECT = Reply(550, ("5.5.2 Error: bare <LF> received",))
BOGUS = Reply(221, ("2.7.0 Error: I can break rules, too. Goodbye.",))
UNKNOWN_COMMAND = Reply(500, ("5.5.2 Error: command not recognized",))
SILENT, CLOSED = Silence.SILENT, Silence.CLOSED


# --- the catalogue ------------------------------------------------------------------------------

def test_every_sequence_is_non_standard_and_distinct() -> None:
    endings = [s.ending for s in SEQUENCES]
    assert len(set(endings)) == len(endings) == len(BY_ID)
    assert b"\r\n.\r\n" not in endings
    for sequence in SEQUENCES:
        assert b"." in sequence.ending and re.fullmatch(r"[a-z-]+", sequence.id)


def test_labels_name_every_byte() -> None:
    assert BY_ID["lf-dot-crlf"].label == "<LF>.<CR><LF>"
    assert BY_ID["crlf-nul-dot-crlf"].label == "<CR><LF><NUL>.<CR><LF>"


def test_select_tests_and_skip() -> None:
    sequences, pipelining = select()
    assert [s.id for s in sequences] == [s.id for s in SEQUENCES] and pipelining
    sequences, pipelining = select(["lf-dot-lf", PIPELINING])
    assert [s.id for s in sequences] == ["lf-dot-lf"] and pipelining
    sequences, pipelining = select(None, [PIPELINING, "cr-dot-cr"])
    assert "cr-dot-cr" not in [s.id for s in sequences] and not pipelining
    with pytest.raises(KeyError, match="nope"):
        select(["nope"])


# --- where did DATA end? ----------------------------------------------------------------------

@pytest.mark.parametrize(("seen", "outcome", "reason"), [
    # a 250 within the wait: the message ended at the sequence
    (Observation(OK250), Outcome.ENDS_DATA, r"answered 250 .* right after the sequence"),
    # refused at the sequence, and what follows is read as commands: still smuggling
    (Observation(REJECT, after_noop=NOOP250), Outcome.ENDS_DATA,
     r"refused the message with 550 .*then went on answering commands"),
    (Observation(REJECT, after_noop=UNKNOWN_COMMAND), Outcome.ENDS_DATA, r"read as commands"),
    # refused and then closed, or deaf to commands: a refusal
    (Observation(REJECT, after_noop=CLOSED), Outcome.REFUSED, r"refused at the sequence: 550"),
    (Observation(REJECT, after_noop=SILENT), Outcome.REFUSED, r"refused at the sequence"),
    (Observation(CLOSED), Outcome.REFUSED, r"closed the connection at the sequence"),
    # silence, then the proper end answered and NOOP's own 250: carried inside
    (Observation(SILENT, after_end=OK250, after_end_unasked=SILENT, after_end_noop=(NOOP250,)),
     Outcome.CARRIED, r"stayed inside the message .*answered 250"),
    (Observation(SILENT, after_end=REJECT, after_end_unasked=SILENT,
                 after_end_noop=(NOOP250,)),
     Outcome.REFUSED, r"refused the message with the sequence inside: 550"),
    # more replies nobody asked for: the rest of our end of data was read as commands
    (Observation(SILENT, after_end=OK250, after_end_unasked=BOGUS), Outcome.ENDS_DATA,
     r"ended before our own end of data: after 250 .*answered as a command \(221 2\.7\.0"),
    # ... or they came late, before NOOP's own 250 (every reply of the server is slow)
    (Observation(SILENT, after_end=OK250, after_end_unasked=SILENT,
                 after_end_noop=(UNKNOWN_COMMAND, UNKNOWN_COMMAND, NOOP250)),
     Outcome.ENDS_DATA, r"answered as a command \(500"),
    # NOOP refused (a command limit): nobody can tell
    (Observation(SILENT, after_end=OK250, after_end_unasked=SILENT,
                 after_end_noop=(Reply(421, ("4.7.0 Too many commands",)), CLOSED)),
     Outcome.UNDETERMINED, r"then NOOP got 421 4\.7\.0 Too many commands, the connection was "
                           r"closed: where the message ended is unknown"),
    (Observation(SILENT, after_end=OK250, after_end_unasked=CLOSED), Outcome.UNDETERMINED,
     r"then the connection was closed"),
    (Observation(SILENT, after_end=REJECT, after_end_unasked=CLOSED), Outcome.REFUSED,
     r"refused the message with the sequence inside"),
    (Observation(SILENT, after_end=OK250, after_end_unasked=SILENT, after_end_noop=(SILENT,)),
     Outcome.UNDETERMINED, r"NOOP got no reply"),
    (Observation(SILENT, after_end=REJECT, after_end_unasked=SILENT, after_end_noop=(CLOSED,)),
     Outcome.REFUSED, r"refused the message with the sequence inside"),
    # no judgement possible
    (Observation(SILENT, after_end=SILENT), Outcome.UNDETERMINED,
     r"no reply to the sequence nor to a proper end"),
    (Observation(SILENT), Outcome.UNDETERMINED, r"nothing more was tried"),
    (Observation(SILENT, after_end=CLOSED), Outcome.REFUSED, r"closed the connection at the "
                                                             r"end of data"),
])
def test_classify(seen: Observation, outcome: Outcome, reason: str) -> None:
    got, text = classify(seen)
    assert got is outcome
    assert re.search(reason, text), text


def test_only_three_outcomes_are_judgements() -> None:
    assert {o for o in Outcome if o.determined} == {Outcome.ENDS_DATA, Outcome.CARRIED,
                                                     Outcome.REFUSED}


MAIL, RCPT = Reply(250, ("2.1.0 Ok",)), Reply(250, ("2.1.5 Ok",))
GO_AHEAD = Reply(354, ("End data with <CR><LF>.<CR><LF>",))
SYNC = Reply(554, ("5.5.0 Error: SMTP protocol synchronization",))


@pytest.mark.parametrize(("replies", "outcome", "reason"), [
    ([MAIL, RCPT, GO_AHEAD, OK250], PipeliningOutcome.ACCEPTED, r"took message text sent "
                                                                r"before its 354"),
    ([MAIL, RCPT, SYNC, CLOSED], PipeliningOutcome.REFUSED, r"refused at DATA: 554 5\.5\.0"),
    ([MAIL, Reply(554, ("SMTP synchronization error",))], PipeliningOutcome.REFUSED,
     r"refused at RCPT TO: 554 SMTP synchronization error"),
    ([MAIL, RCPT, GO_AHEAD, REJECT], PipeliningOutcome.REFUSED, r"refused at the end of data"),
    ([MAIL, RCPT, CLOSED], PipeliningOutcome.REFUSED, r"closed the connection at DATA"),
    ([MAIL, Reply(550, ("5.1.1 User unknown",))], PipeliningOutcome.NOT_TESTED,
     r"RCPT TO refused: 550 5\.1\.1"),
    ([CLOSED], PipeliningOutcome.NOT_TESTED, r"closed at MAIL FROM"),
    ([MAIL, RCPT, GO_AHEAD, SILENT], PipeliningOutcome.UNDETERMINED, r"no reply to the end"),
    ([], PipeliningOutcome.UNDETERMINED, r"no reply to MAIL FROM"),
])
def test_classify_pipelining(replies: list[Reply | Silence], outcome: PipeliningOutcome,
                             reason: str) -> None:
    got, text = classify_pipelining(replies)
    assert got is outcome
    assert re.search(reason, text), text


# --- advice ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("texts", "mta"), [
    (["mx.example.org ESMTP Postfix (Debian/GNU)"], "Postfix"),
    (["mx.example.org ESMTP Exim 4.96 Tue, 01 Dec 2026"], "Exim"),
    (["mail.example.org ESMTP Sendmail 8.17.1/8.17.1"], "Sendmail"),
    (["mx.example.org ESMTP", "mx.example.org Hello [192.0.2.1]"], None),
    (["mx.postfixed.example ESMTP"], None),
])
def test_identify_mta(texts: list[str], mta: str | None) -> None:
    assert identify_mta(texts) == mta


def test_advice_per_mta() -> None:
    assert advice_for("Postfix") == [advice_for("Postfix")[0]]
    assert "smtpd_forbid_bare_newline = yes" in advice_for("Postfix")[0]
    assert "4.97.1" in advice_for("Exim")[0]
    assert "8.18.1" in advice_for("Sendmail")[0] and "srv_features" in advice_for("Sendmail")[0]
    assert len(advice_for(None)) == 3
    assert cves_for("Exim") == "CVE-2023-51766"
    assert cves_for(None) == "CVE-2023-51764/51765/51766"


# --- the labelled test message ------------------------------------------------------------------

def message(**changes: object) -> ProbeMessage:
    fields = dict(operator="ops@example.org", recipient="postmaster@example.org",
                  subject="SMTP smuggling test lf-dot-lf", kind="smuggling lf-dot-lf",
                  token=new_token("smuggling"), explanation=(".leading dot", "plain line"))
    fields.update(changes)
    return ProbeMessage(**fields)  # type: ignore[arg-type]


def test_tokens_are_unique_and_labelled() -> None:
    tokens = {new_token("backscatter") for _ in range(100)}
    assert len(tokens) == 100
    assert all(re.fullmatch(r"mailprobe-backscatter-[0-9a-f]{16}", t) for t in tokens)


def test_message_is_labelled_and_carries_the_token_three_times() -> None:
    probe = message()
    text = probe.text().decode()
    assert text.count(probe.token) == 3   # Subject, Message-ID, body
    assert "From: mailprobe test <ops@example.org>\r\n" in text
    assert "To: <postmaster@example.org>\r\n" in text
    assert "X-Mailprobe-Test: smuggling lf-dot-lf\r\n" in text
    assert "Auto-Submitted: auto-generated\r\n" in text
    assert "Sent by mailprobe " in text and "for ops@example.org." in text


def test_message_is_dot_stuffed_and_ends_as_the_caller_says() -> None:
    probe = message()
    assert b"\r\n..leading dot\r\n" in probe.text()
    assert not probe.text().endswith(b"\r\n")
    assert probe.data().endswith(b"\r\n.\r\n") and probe.data().count(b"\r\n.\r\n") == 1
    assert b"\n" not in probe.text().replace(b"\r\n", b"")


def test_no_line_of_the_message_reads_as_an_smtp_command() -> None:
    """The pipelining test and a smuggling hit make a server read message lines as commands."""
    verbs = {"MAIL", "RCPT", "DATA", "BDAT", "RSET", "QUIT", "HELO", "EHLO", "VRFY", "EXPN",
             "ETRN", "AUTH", "STARTTLS", "XCLIENT", "XFORWARD", "TURN", "ATRN"}
    for line in message().lines():
        first = line.split(" ", 1)[0].rstrip(":").upper()
        assert first not in verbs, line


@pytest.mark.parametrize("field", ["operator", "recipient", "subject", "kind"])
def test_header_values_cannot_break_lines(field: str) -> None:
    with pytest.raises(ValueError, match="cannot go into a message header"):
        message(**{field: "x\r\nBcc: victim@example.net"}).lines()


def test_a_bug_in_one_test_is_reported_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test runs in a thread: an exception there becomes an UNDETERMINED result."""
    from mailprobe.net.deadline import Deadline
    from mailprobe.probes.smuggling.runner import SmugglingOptions, SmugglingRunner

    runner = SmugglingRunner(SmugglingOptions("127.0.0.1", 1, "probe.example", "a@b.example",
                                              "a@b.example"), Deadline(5))

    def broken(*args: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(runner, "play_sequence", broken)
    monkeypatch.setattr(runner, "play_pipelining", broken)
    result = runner._play(BY_ID["lf-dot-lf"])
    assert result.outcome is Outcome.UNDETERMINED
    assert result.reason == "internal error: ZeroDivisionError: boom"
    assert runner._play(PIPELINING).outcome is PipeliningOutcome.UNDETERMINED
