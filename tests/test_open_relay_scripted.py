"""check_open_relay against scripted servers: misbehaviour no real MTA shows on request."""

from __future__ import annotations

import re

import pytest

from lab.smtpd import Behaviour, RelayPolicy, ScriptedSMTPServer, Session
from mailprobe.probes.relay.catalogue import CATALOGUE
from tests.conftest import PluginRun, run_plugin

ALL = len(CATALOGUE)


def relay(server: ScriptedSMTPServer, *extra: str) -> PluginRun:
    return run_plugin("check_open_relay", "-H", server.host, "-p", str(server.port),
                      "--source-address", "127.0.0.2", "--mail-domain", "lab.test", *extra)


def test_server_that_drops_us_every_few_commands_is_still_fully_tested() -> None:
    """421 + close after 4 commands: the runner reconnects and retries the attempt."""
    with ScriptedSMTPServer(Behaviour(command_limit=4, helo_required=False)) as server:
        run = relay(server, "-v")
    assert run.returncode == 0, run.stdout
    assert run.perf_value("attempts") == ALL
    assert run.perf_value("connections") > ALL / 2
    assert not [line for line in run.long_output if line.startswith(("[ERROR]", "[TEMP"))]


class TarpitOneForm(Behaviour):
    """Answers the bang-path recipient only after 3 s."""

    def smtp_RCPT(self, session: Session, argument: str):
        if "!" in argument:
            session.sleep(3)
        return super().smtp_RCPT(session, argument)


def test_one_unanswered_attempt_is_not_judged_and_never_ok() -> None:
    """A form the server never answers in time was not judged: UNKNOWN, not "refused"."""
    with ScriptedSMTPServer(TarpitOneForm()) as server:
        run = relay(server, "--command-timeout", "1", "--tests", "plain,bang-path,upper-case")
    assert run.returncode == 3, run.stdout
    assert run.summary.startswith("OPEN_RELAY UNKNOWN - only 2 of 3 attempts could be played "
                                  "(1 never answered within --command-timeout 1s)"), run.stdout
    assert any(line.startswith("[TIMEOUT] bang-path: MAIL FROM:<relaytest@example.net> / "
                               "RCPT TO:<example.net!relaytest>") for line in run.long_output)
    assert [line.split(":")[0] for line in run.long_output if line.startswith("[REFUSED]")] \
        == ["[REFUSED] plain", "[REFUSED] upper-case"]


def test_slow_server_ends_within_the_budget_as_unknown() -> None:
    with ScriptedSMTPServer(Behaviour(reply_delay=0.3)) as server:
        run = relay(server, "-t", "3")
    assert run.returncode == 3, run.stdout
    assert re.match(rf"OPEN_RELAY UNKNOWN - only \d+ of {ALL} attempts could be played",
                    run.summary)
    assert run.seconds < 3 + 1


class RefuseAtData(Behaviour):
    def smtp_DATA(self, session: Session, argument: str):
        return "554 5.7.1 No thanks"


def test_depth_data_tells_late_refusals_from_relays() -> None:
    behaviour = RefuseAtData(relay=RelayPolicy.open())
    with ScriptedSMTPServer(behaviour) as server:
        rcpt_only = relay(server, "--tests", "plain,bang-path")
        with_data = relay(server, "--tests", "plain,bang-path", "--depth", "data")
    assert rcpt_only.returncode == 2
    assert with_data.returncode == 0, with_data.stdout
    assert any(line.startswith("[REFUSED AT DATA] plain") for line in with_data.long_output)
    assert server.messages == []


@pytest.mark.parametrize(("banner", "state", "text"), [
    ("554 5.7.1 go away", 3, "inconclusive: 127.0.0.1 refuses this vantage point at the banner"),
    ("421 4.3.2 busy", 3, "inconclusive: 127.0.0.1 refuses this vantage point"),
])
def test_refusing_banner(banner: str, state: int, text: str) -> None:
    with ScriptedSMTPServer(Behaviour(banner=banner)) as server:
        run = relay(server)
    assert run.returncode == state, run.stdout
    assert text in run.summary


def test_no_banner_is_critical() -> None:
    with ScriptedSMTPServer(Behaviour(banner_delay=30)) as server:
        run = relay(server, "-t", "2")
    assert run.returncode == 2, run.stdout
    assert run.summary.startswith("OPEN_RELAY CRITICAL - mail service down: no banner")
    assert run.seconds < 3


def test_starttls_is_used_when_offered() -> None:
    with ScriptedSMTPServer(Behaviour(starttls=True)) as server:
        run = relay(server, "--tests", "plain,percent-hack-domain", "-v")
        assert any(cmd.upper() == "STARTTLS" for cmd in server.commands)
    assert run.returncode == 0, run.stdout
    assert "TLS yes" in run.stdout


def test_starttls_required_but_not_offered_is_unknown() -> None:
    with ScriptedSMTPServer(Behaviour(starttls=False)) as server:
        run = relay(server, "--starttls", "require")
    assert run.returncode == 3, run.stdout
    assert run.summary == ("OPEN_RELAY UNKNOWN - --starttls require: the server does not offer "
                           "STARTTLS")


def test_starttls_never_stays_in_clear() -> None:
    with ScriptedSMTPServer(Behaviour(starttls=True)) as server:
        run = relay(server, "--starttls", "never", "--tests", "plain")
        assert not any(cmd.upper() == "STARTTLS" for cmd in server.commands)
    assert run.returncode == 0, run.stdout
