"""check_smtp_smuggling against real MTAs (Debian 12's Postfix 3.7 with and without
smtpd_forbid_bare_newline, Exim 4.96) and scripted servers for what no real one shows here."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator

import pytest

from lab.exim import EximServer, find_exim
from lab.postfix import PostfixServer
from lab.process import LabError, free_port
from lab.smtpd import Behaviour, ScriptedSMTPServer
from tests.conftest import PluginRun, run_plugin
from tests.fixtures.postfix import LAB_DOMAIN, OUTSIDE

RECIPIENT = f"postmaster@{LAB_DOMAIN}"
NAME = "SMTP_SMUGGLING"


def smuggling(server: object, *args: str, source: str = OUTSIDE,
              domain: str | None = LAB_DOMAIN) -> PluginRun:
    host, port = server.host, server.port  # type: ignore[attr-defined]
    extra = ("--mail-domain", domain) if domain else ()
    run = run_plugin("check_smtp_smuggling", "-H", host, "-p", str(port), "--source-address",
                     source, *extra, "-t", "30", *args)
    assert run.status_line.startswith(f"{NAME} "), run.stdout + run.stderr
    return run


def recipients_in(maillog: str) -> set[str]:
    """Every recipient Postfix delivered (here: discarded) a message to."""
    return set(re.findall(r" to=<([^>]*)>", maillog))


def line(run: PluginRun, pattern: str) -> str:
    found = [text for text in run.long_output if re.search(pattern, text)]
    assert found, f"/{pattern}/ not in:\n{run.stdout}"
    return found[0]


# --- Postfix 3.7 (Debian 12) ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def postfix_bare_newline(postfix_factory: Callable[..., PostfixServer]) -> PostfixServer:
    """smtpd_forbid_bare_newline = no: Debian 12's default."""
    return postfix_factory("smuggle-default", preset="bare_newline_default")


@pytest.fixture(scope="module")
def postfix_forbidden(postfix_factory: Callable[..., PostfixServer]) -> PostfixServer:
    """smtpd_forbid_bare_newline = yes with empty exclusions."""
    return postfix_factory("smuggle-fixed", preset="bare_newline_forbidden")


@pytest.mark.integration
def test_debian_default_postfix_ends_data_at_a_bare_lf(postfix_bare_newline: PostfixServer
                                                       ) -> None:
    run = smuggling(postfix_bare_newline)
    assert run.returncode == 2
    assert run.summary.startswith(
        f"{NAME} CRITICAL - ends DATA at 5 of 9 non-standard sequences: <LF>.<LF>, "
        "<LF>.<CR><LF>, <CR><LF>.<LF>, <LF>.<CR>, +1 more (SMTP smuggling, CVE-2023-51764)")
    assert run.perfdata["ends_data"] == "5;;0;0;9"
    assert run.perf_value("sequences") == 9
    line(run, r"^\[ENDS DATA\] lf-dot-crlf <LF>\.<CR><LF>: answered 250 2\.0\.0 Ok: queued "
              r"as \w+ right after the sequence$")
    # <LF>.<CR> then our <CR><LF>: Postfix strips every CR before the LF, so "." ends DATA
    line(run, r"^\[ENDS DATA\] lf-dot-cr <LF>\.<CR>: the message ended before our own end of "
              r"data: after 250 .* the rest of it was answered as a command \(221 2\.7\.0 "
              r"Error: I can break rules, too\. Goodbye\.\)$")
    line(run, r"^\[CARRIED\] cr-dot-crlf <CR>\.<CR><LF>: the sequence stayed inside")
    line(run, r"^\[CARRIED\] crlf-nul-dot-crlf ")
    line(run, r"^\[ACCEPTED\] pipelining past DATA: took message text sent before its 354")
    line(run, r"^advice: Postfix: set smtpd_forbid_bare_newline = yes")
    line(run, rf"^every test message went to {RECIPIENT} only \(from {RECIPIENT}\); "
              r"10 accepted$")


@pytest.mark.integration
def test_every_message_went_to_the_local_recipient_only(postfix_bare_newline: PostfixServer
                                                        ) -> None:
    smuggling(postfix_bare_newline, "--tests", "lf-dot-lf,cr-dot-crlf,pipelining")
    assert recipients_in(postfix_bare_newline.maillog()) == {RECIPIENT}


@pytest.mark.integration
def test_postfix_with_the_fix_carries_every_sequence(postfix_forbidden: PostfixServer) -> None:
    run = smuggling(postfix_forbidden)
    assert run.returncode == 0, run.stdout
    assert run.summary == (f"{NAME} OK - none of 9 non-standard end-of-data sequences ends DATA "
                           "(9 carried inside the message, 0 refused); pipelining past DATA "
                           "accepted")
    assert run.perfdata["ends_data"] == "0;;0;0;9"
    assert not [text for text in run.long_output if text.startswith("advice:")]
    assert len([t for t in run.long_output if t.startswith("[CARRIED] ")]) == 9


@pytest.mark.integration
def test_pipelining_state_makes_the_missing_mitigation_a_problem(
        postfix_forbidden: PostfixServer) -> None:
    run = smuggling(postfix_forbidden, "--tests", "pipelining", "--pipelining-state", "warning")
    assert run.returncode == 1, run.stdout
    assert run.summary == (f"{NAME} WARNING - takes message text sent before its 354 reply "
                           "(unauthenticated pipelining past DATA)")
    line(run, r"^advice: Postfix: .*smtpd_forbid_unauth_pipelining = yes")


@pytest.mark.integration
def test_hardened_postfix_refuses_pipelining(
        postfix_factory: Callable[..., PostfixServer]) -> None:
    server = postfix_factory("smuggle-hardened", preset="smuggling_hardened")
    run = smuggling(server, "--tests", "lf-dot-crlf,pipelining")
    assert run.returncode == 0, run.stdout
    assert run.summary == (f"{NAME} OK - none of 1 non-standard end-of-data sequence ends DATA "
                           "(1 carried inside the message, 0 refused); pipelining past DATA "
                           "refused")
    line(run, r"^\[REFUSED\] pipelining past DATA: refused at DATA: 554 5\.5\.0 Error: SMTP "
              r"protocol synchronization$")
    assert recipients_in(server.maillog()) == {RECIPIENT}


@pytest.mark.integration
def test_the_exclusions_make_the_vantage_point_matter(
        postfix_factory: Callable[..., PostfixServer]) -> None:
    """smtpd_forbid_bare_newline = yes with its default exclusions ($mynetworks): a probe from
    inside mynetworks (127.0.0.1) still finds the hole, one from outside (127.0.0.2) does not."""
    server = postfix_factory("smuggle-exclusions", preset="bare_newline_forbidden",
                             settings={"smtpd_forbid_bare_newline_exclusions": "$mynetworks"})
    inside = smuggling(server, "--tests", "lf-dot-crlf", source="127.0.0.1")
    outside = smuggling(server, "--tests", "lf-dot-crlf", source=OUTSIDE)
    assert inside.returncode == 2 and "ends DATA at 1 of 1" in inside.summary
    assert outside.returncode == 0 and "1 carried inside the message" in outside.summary


@pytest.mark.integration
def test_mail_domain_guessed_from_the_banner(postfix_forbidden: PostfixServer) -> None:
    run = smuggling(postfix_forbidden, "--tests", "cr-dot-crlf", domain=None)
    assert run.returncode == 0, run.stdout
    line(run, r"^mail domain relaylab\.test \(guessed from the banner; set --mail-domain\)$")
    line(run, rf"^every test message went to {RECIPIENT} only")


@pytest.mark.integration
def test_refused_recipient_is_inconclusive_after_one_try(postfix_closed: PostfixServer) -> None:
    run = smuggling(postfix_closed, "--recipient", f"nosuch@{LAB_DOMAIN}")
    assert run.returncode == 3, run.stdout
    assert re.match(rf"{NAME} UNKNOWN - 9 of 9 sequences could not be judged \(.*RCPT TO "
                    r"answered 550 5\.1\.1 .*, not 2xx \(see --recipient, --sender\)",
                    run.summary)
    assert run.perf_value("connections") == 1     # the others were not tried
    assert "pipelining past DATA" not in run.summary


@pytest.mark.integration
def test_nothing_listening_is_service_down() -> None:
    run = run_plugin("check_smtp_smuggling", "-H", "127.0.0.1", "-p", str(free_port()),
                     "--mail-domain", LAB_DOMAIN, "-t", "10")
    assert run.returncode == 2
    assert re.match(rf"{NAME} CRITICAL - mail service down: no usable banner: cannot connect "
                    r"to 127\.0\.0\.1:\d+: Connection refused", run.summary)


# --- Exim 4.96 (Debian 12, with the CVE-2023-51766 fix) ------------------------------------------

@pytest.fixture(scope="module")
def exim_factory() -> Iterator[Callable[..., EximServer]]:
    try:
        find_exim()
    except LabError as exc:
        pytest.skip(str(exc))
    if os.geteuid() != 0:
        pytest.skip("the lab Exim needs root to start (exim4 -bd)")
    started: list[EximServer] = []

    def start(name: str, **settings: str) -> EximServer:
        server = EximServer(name, acl="closed", settings=settings)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.mark.integration
def test_exim_carries_every_sequence(exim_factory: Callable[..., EximServer]) -> None:
    run = smuggling(exim_factory("smuggle"))
    assert run.returncode == 0, run.stdout
    assert run.summary == (f"{NAME} OK - none of 9 non-standard end-of-data sequences ends DATA "
                           "(9 carried inside the message, 0 refused); pipelining past DATA "
                           "accepted")
    line(run, r"^\[CARRIED\] crlf-dot-lf <CR><LF>\.<LF>: the sequence stayed inside the "
              r"message \(the proper end of data was answered 250 OK id=")


@pytest.mark.integration
def test_exim_without_pipelining_refuses_the_batch(exim_factory: Callable[..., EximServer]
                                                   ) -> None:
    """Exim's smtp_enforce_sync refuses a client that does not wait, when PIPELINING is not
    advertised (Postfix has a setting of its own for it instead)."""
    run = smuggling(exim_factory("smuggle-nopipe", pipelining_advertise_hosts=":"),
                    "--tests", "pipelining,lf-dot-crlf")
    assert run.returncode == 0, run.stdout
    assert run.summary.endswith("pipelining past DATA refused")
    line(run, r"^\[REFUSED\] pipelining past DATA: refused at RCPT TO: 554 SMTP "
              r"synchronization error$")


# --- scripted servers: what no real server here shows -------------------------------------------

SCRIPTED_DOMAIN = "lab.test"


def scripted(behaviour: Behaviour, *args: str) -> PluginRun:
    with ScriptedSMTPServer(behaviour) as server:
        return smuggling(server, *args, domain=SCRIPTED_DOMAIN)


def test_a_late_250_is_still_the_end_of_data() -> None:
    """A slow server answers the sequence after the wait: the rest of our own end of data is
    then read as a command, so the 250 belonged to the sequence."""
    run = scripted(Behaviour(reply_delay=1.2), "--tests", "lf-dot-lf", "--wait", "0.3")
    assert run.returncode == 2, run.stdout
    line(run, r"^\[ENDS DATA\] lf-dot-lf <LF>\.<LF>: the message ended before our own end "
              r"of data: after 250 .* answered as a command \(500 5\.5\.2 Error: command not "
              r"recognized\)$")


def test_a_server_that_drops_bare_lf_clients() -> None:
    """Postfix 3.8.4's smtpd_forbid_bare_newline = yes: the connection is closed."""
    run = scripted(Behaviour(data_bare_lf="close"),
                   "--tests", "lf-dot-lf,lf-dot-crlf,cr-dot-crlf")
    assert run.returncode == 0, run.stdout
    assert "(1 carried inside the message, 2 refused)" in run.summary
    line(run, r"^\[REFUSED\] lf-dot-lf <LF>\.<LF>: closed the connection at the sequence$")


def test_a_refusal_that_keeps_reading_commands_is_smuggling() -> None:
    """550 at the bare LF, but what follows is read as commands: a smuggled transaction
    would run."""
    run = scripted(Behaviour(data_bare_lf="reject"), "--tests", "lf-dot-crlf")
    assert run.returncode == 2, run.stdout
    line(run, r"^\[ENDS DATA\] lf-dot-crlf <LF>\.<CR><LF>: refused the message with 550 5\.5\.2 "
              r"Error: bare <LF> received at the sequence, then went on answering commands "
              r"\(500 5\.5\.2 Error: command not recognized\): what follows the sequence is "
              r"read as commands$")


def test_refused_at_the_banner_is_inconclusive() -> None:
    run = scripted(Behaviour(banner="554 5.7.1 No SMTP service for you"))
    assert run.returncode == 3
    assert re.search(r"UNKNOWN - inconclusive: 127\.0\.0\.1 refuses this vantage point at the "
                     r"banner \(554 5\.7\.1", run.summary)


# --- options -----------------------------------------------------------------------------------

def test_help_says_that_data_goes_to_the_local_recipient_only() -> None:
    run = run_plugin("check_smtp_smuggling", "--help")
    assert run.returncode == 0
    text = " ".join(run.stdout.split())
    assert "This check sends DATA by nature" in text
    assert "it goes to that recipient only" in text


@pytest.mark.parametrize(("args", "why"), [
    (("--recipient", "postmaster"), r"--recipient 'postmaster' is not an address"),
    (("--sender", "a b@example.org"), r"--sender 'a b' is not a plain local part"),
    (("--wait", "0"), r"invalid seconds"),
    (("--tests", "lf-dot-lf", "--skip", "lf-dot-lf,pipelining"), r"leave no test to play"),
    (("--pipelining-state", "unknown"), r"invalid choice"),
])
def test_bad_options(args: tuple[str, ...], why: str) -> None:
    run = run_plugin("check_smtp_smuggling", "-H", "127.0.0.1", "--mail-domain", "lab.test", *args)
    assert run.returncode == 3
    assert re.search(rf"{NAME} UNKNOWN - bad option: .*{why}", run.status_line), run.stdout
