"""check_open_relay against scripted servers: misbehaviour no real MTA shows on request."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from lab.dnsd import DNSBehaviour, ScriptedDNSServer
from lab.postfix import free_port_on_all
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


# -- the addresses of -H, and where the probe speaks from (issue 12) ---------------------------
def dual_dns(records: str) -> ScriptedDNSServer:
    return ScriptedDNSServer(DNSBehaviour(records))


def test_an_address_of_the_other_family_than_source_address_is_not_tested() -> None:
    """--source-address 127.0.0.2 cannot speak to ::1: said plainly, never OK, never 'down'."""
    port = free_port_on_all(["127.0.0.1", "::1"])
    with dual_dns("mx.lab.test. A 127.0.0.1\nmx.lab.test. AAAA ::1") as dns, \
            ScriptedSMTPServer(Behaviour(), port=port), \
            ScriptedSMTPServer(Behaviour(relay=RelayPolicy.open()), host="::1", port=port):
        run = run_plugin("check_open_relay", "-H", "mx.lab.test", "-p", str(port),
                         "--source-address", "127.0.0.2", "--mail-domain", "lab.test",
                         "--nameserver", dns.nameserver, "--tests", "plain")
    assert run.returncode == 3, run.stdout
    assert run.summary == ("OPEN_RELAY UNKNOWN - ::1 not tested: --source-address 127.0.0.2 is "
                           "an IPv4 address (use -4, and a second check with -6 and an IPv6 "
                           "--source-address); 127.0.0.1: 0 of 1 relay attempts accepted")


def test_an_address_literal_of_the_other_family_than_source_address_is_a_bad_option() -> None:
    run = run_plugin("check_open_relay", "-H", "::1", "--source-address", "127.0.0.2")
    assert run.returncode == 3
    assert run.stdout == ("OPEN_RELAY UNKNOWN - bad option: --source-address 127.0.0.2 cannot "
                          "speak to -H ::1: one is IPv4, the other IPv6\n")


def test_a_source_address_this_host_does_not_have_is_not_a_service_down() -> None:
    """bind() fails before any packet: nothing is known about the server (was CRITICAL)."""
    if Path("/proc/sys/net/ipv4/ip_nonlocal_bind").read_text().strip() != "0":
        pytest.skip("this host lets sockets bind to addresses it does not have")
    with ScriptedSMTPServer(Behaviour()) as server:
        run = run_plugin("check_open_relay", "-H", "127.0.0.1", "-p", str(server.port),
                         "--source-address", "192.0.2.1", "--mail-domain", "lab.test")
        assert server.connections == 0
    assert run.returncode == 3, run.stdout
    assert run.summary.startswith(f"OPEN_RELAY UNKNOWN - not tested: cannot connect to "
                                  f"127.0.0.1:{server.port}: cannot use source address "
                                  "192.0.2.1: Cannot assign requested address"), run.stdout


def test_a_name_with_too_many_addresses_is_probed_on_the_first_sixteen() -> None:
    hosts = [f"127.0.0.{n}" for n in range(1, 18)]
    port = free_port_on_all(hosts)
    records = "\n".join(f"many.lab.test. A {host}" for host in hosts)
    with dual_dns(records) as dns, contextlib.ExitStack() as servers:
        started = [servers.enter_context(ScriptedSMTPServer(Behaviour(), host=host, port=port))
                   for host in hosts]
        run = run_plugin("check_open_relay", "-H", "many.lab.test", "-p", str(port), "-4",
                         "--mail-domain", "lab.test", "--nameserver", dns.nameserver,
                         "--tests", "plain")
        contacted = [server.host for server in started if server.connections]
    assert run.returncode == 3, run.stdout
    assert run.summary == ("OPEN_RELAY UNKNOWN - 1 more addresses of many.lab.test not tested "
                           "(at most 16 are probed); " + ", ".join(hosts[:16])
                           + ": 0 of 1 relay attempts accepted each"), run.stdout
    assert contacted == hosts[:16]
    assert run.perf_value("addresses") == 16


# -- AUTH without a password (issue 13) ---------------------------------------------------------
class NullSessionRelay(Behaviour):
    """Exchange 5.5 / Windows 2000 SMTP before MS02-011: an NTLM null session counts as
    authenticated and may relay (``trust_failed``: so does any failed AUTH). The other
    mechanisms answer 535. No real MTA in the lab does this."""

    def __init__(self, trust_failed: bool = False) -> None:
        super().__init__(ehlo_extensions=("PIPELINING", "AUTH PLAIN LOGIN ANONYMOUS NTLM",
                                          "ENHANCEDSTATUSCODES"))
        self.trust_failed = trust_failed

    def handle(self, session: Session, line: str):
        step = getattr(session, "sasl", "")
        if not step:
            return super().handle(session, line)
        if step == "login-user":
            session.sasl = "login-password"  # type: ignore[attr-defined]
            return "334 UGFzc3dvcmQ6"
        session.sasl = ""  # type: ignore[attr-defined]
        if step == "ntlm" and line.startswith("TlRMTVNTUAADAAAA"):
            session.trusted = True  # type: ignore[attr-defined]
            return "235 2.7.0 Authentication successful"
        return self._failed(session)

    def _failed(self, session: Session) -> str:
        session.trusted = self.trust_failed  # type: ignore[attr-defined]
        return "535 5.7.8 Authentication credentials invalid"

    def smtp_AUTH(self, session: Session, argument: str):
        mechanism = argument.split(" ")[0].upper()
        if mechanism == "NTLM":
            session.sasl = "ntlm"  # type: ignore[attr-defined]
            return "334 TlRMTVNTUAACAAAAAAAAAAAAAAABAgAAAAAAAAAAAAAAAAAAAAAAAA=="
        if mechanism == "LOGIN":
            session.sasl = "login-user"  # type: ignore[attr-defined]
            return "334 VXNlcm5hbWU6"
        return self._failed(session)

    def accepts_recipient(self, session: Session, address) -> bool:
        return getattr(session, "trusted", False) or super().accepts_recipient(session, address)


AUTH_ATTEMPTS = "auth-plain-null,auth-login-null,auth-anonymous,auth-ntlm-null,plain"


def test_an_ntlm_null_session_that_relays_is_critical() -> None:
    with ScriptedSMTPServer(NullSessionRelay()) as server:
        run = relay(server, "--tests", AUTH_ATTEMPTS, "-vvv")
    assert run.returncode == 2, run.stdout
    assert run.summary.startswith("OPEN_RELAY CRITICAL - 1 of 5 relay attempts accepted "
                                  "(auth-ntlm-null)"), run.stdout
    assert re.search(r"\[RELAYED\] auth-ntlm-null: .* -> 250 .*\(after AUTH NTLM without a "
                     r"password -> 235 2\.7\.0", run.stdout), run.stdout
    assert re.search(r"\[REFUSED\] auth-login-null: .*\(after AUTH LOGIN without a password -> "
                     r"535 5\.7\.8", run.stdout), run.stdout
    assert "-> AUTH PLAIN AAA=" in run.stdout      # empty user and password, never a guess
    assert "-> AUTH ANONYMOUS bWFpbHByb2Jl" in run.stdout


def test_a_relay_after_a_failed_auth_is_critical() -> None:
    with ScriptedSMTPServer(NullSessionRelay(trust_failed=True)) as server:
        run = relay(server, "--tests", AUTH_ATTEMPTS)
    assert run.returncode == 2, run.stdout
    assert run.summary.startswith("OPEN_RELAY CRITICAL - 4 of 5 relay attempts accepted "
                                  "(auth-plain-null, auth-login-null, auth-anonymous, "
                                  "auth-ntlm-null)"), run.stdout


def test_auth_mechanisms_not_offered_are_not_applicable() -> None:
    behaviour = Behaviour(ehlo_extensions=("PIPELINING", "AUTH PLAIN"))
    with ScriptedSMTPServer(behaviour) as server:
        run = relay(server, "--tests", AUTH_ATTEMPTS)
    assert run.returncode == 0, run.stdout
    assert run.summary.startswith("OPEN_RELAY OK - 0 of 5 relay attempts accepted (3 not "
                                  "applicable)"), run.stdout
    assert "[NOT APPLICABLE] auth-ntlm-null: (AUTH NTLM not offered)" in run.long_output
    assert any(line.startswith("[REFUSED] auth-plain-null:") for line in run.long_output)
