"""check_port_exposure against a small "site" on loopback: real Postfix instances on several
127.77.0.x addresses (some sanctioned, some not), silent addresses, a filtered port, scripted
SMB responders on port 445, and Postfix on ::1.

The site, every mailer on the same port (``site.port``; a real site uses 25):

    127.77.0.4   Postfix mx.site.test (closed)        sanctioned
    127.77.0.5   nothing listens                     sanctioned: "down or filtered"
    127.77.0.6   Postfix printer.site.test (open relay) unsanctioned
    127.77.0.7   Postfix lab-pc.site.test (closed)    unsanctioned
    127.77.0.8   a port that drops SYNs (lab.filtered) "filtered"
    127.77.0.9   SMB responder on 445, SMBv1 on
    127.77.0.10  SMB responder on 445, SMBv1 off
    the others of 127.77.0.0/28: nothing (refused)
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.dnsd import DNSBehaviour, ScriptedDNSServer
from lab.filtered import FilteredPort
from lab.postfix import PostfixServer, free_port_on_all
from lab.smbd import ScriptedSMBServer, SMBBehaviour
from lab.smtpd import Behaviour, ReplyValue, ScriptedSMTPServer, Session
from mailprobe.probes.relay.catalogue import CATALOGUE
from tests.conftest import PluginRun, run_plugin

pytestmark = pytest.mark.integration

NET = "127.77.0.0/28"
MX, DOWN, PRINTER, LABPC, FILTERED, SMB1, SMB2 = (f"127.77.0.{n}" for n in range(4, 11))
SANCTIONED = f"{MX},{DOWN}"


@dataclass
class Site:
    port: int
    smb1: ScriptedSMBServer
    smb2: ScriptedSMBServer


@pytest.fixture(scope="module")
def site(postfix_factory: Callable[..., PostfixServer]) -> Iterator[Site]:
    hosts = [f"127.77.0.{n}" for n in range(1, 15)]
    port = free_port_on_all(hosts)
    postfix_factory("site-mx", {"myhostname": "mx.site.test"}, host=MX, port=port)
    postfix_factory("site-printer", {"myhostname": "printer.site.test"}, preset="open",
                    host=PRINTER, port=port)
    postfix_factory("site-labpc", {"myhostname": "lab-pc.site.test"}, host=LABPC, port=port)
    with contextlib.ExitStack() as stack:
        try:
            smb1 = stack.enter_context(ScriptedSMBServer(SMBBehaviour(smb1=True), SMB1, 445))
            smb2 = stack.enter_context(ScriptedSMBServer(SMBBehaviour(smb1=False), SMB2, 445))
        except OSError as exc:
            pytest.skip(f"cannot listen on port 445 of {SMB1} and {SMB2} ({exc})")
        stack.enter_context(FilteredPort(FILTERED, port))
        yield Site(port, smb1, smb2)


def exposure(*args: str) -> PluginRun:
    run = run_plugin("check_port_exposure", *args)
    assert run.status_line.startswith("PORT_EXPOSURE "), run.stdout
    return run


def perf(run: PluginRun) -> dict[str, str]:
    return {label: value.split(";")[0] for label, value in run.perfdata.items()}


def test_unsanctioned_listeners_are_critical_with_what_they_say(site: Site) -> None:
    run = exposure("-N", NET, "--ports", str(site.port), "--allow", SANCTIONED,
                   "--connect-timeout", "1", "-t", "15")
    p = site.port
    assert run.returncode == 2, run.stdout
    assert run.summary == (
        f"PORT_EXPOSURE CRITICAL - 2 unsanctioned SMTP listeners: {PRINTER}:{p} (220 "
        f"printer.site.test ESMTP Postfix), {LABPC}:{p} (220 lab-pc.site.test ESMTP Postfix); "
        f"sanctioned mailer down or filtered: {DOWN} (refused on {p})")
    assert perf(run) == {"hosts": "14", "open": "3", "unsanctioned": "2", "netbios_open": "0",
                         "time": perf(run)["time"]}
    assert run.perfdata["unsanctioned"] == "2;;0;0"
    lines = run.long_output
    assert f"SANCTIONED {MX}:{p} open" in lines
    printer = next(line for line in lines if line.startswith(f"UNSANCTIONED {PRINTER}:{p}"))
    assert re.search(r"answers 220 printer\.site\.test ESMTP Postfix; EHLO 250 "
                     r"printer\.site\.test \(.*PIPELINING.*\)", printer), printer
    assert f"DOWN sanctioned mailer {DOWN}: refused on {p}" in lines
    assert f"FILTERED {FILTERED}:{p}: no answer within 1s" in lines
    assert lines[-1] == "ports: 3 open, 10 refused (RST), 1 filtered (no answer)"


def test_every_listener_sanctioned_is_ok(site: Site) -> None:
    run = exposure("-N", NET, "--ports", str(site.port), "--connect-timeout", "1",
                   "--allow", f"{MX},{PRINTER}", "--allow", LABPC)
    assert run.returncode == 0, run.stdout
    assert run.summary == ("PORT_EXPOSURE OK - no unsanctioned SMTP listener on 14 hosts; "
                           "3 sanctioned mailers answer")
    assert perf(run)["open"] == "3" and perf(run)["unsanctioned"] == "0"
    assert not any(line.startswith("UNSANCTIONED") for line in run.long_output)


def test_allow_file_takes_addresses_prefixes_and_comments(site: Site, tmp_path: Path) -> None:
    allow = tmp_path / "mailers"
    allow.write_text(f"# the site's mailers\n{MX}\n\n127.77.0.6/31   # the lab's own MTAs\n")
    run = exposure("-N", NET, "--ports", str(site.port), "--connect-timeout", "1",
                   "--allow-file", str(allow))
    assert run.returncode == 0, run.stdout
    # a prefix permits listening but names no mailer: only 127.77.0.4 is expected to answer
    assert run.summary.endswith("; 1 sanctioned mailer answers")


def test_hosts_file_and_thresholds_on_the_count(site: Site, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{MX}\n{PRINTER}\n{LABPC}\n127.77.0.12/30\n")
    run = exposure("--hosts", str(hosts), "--ports", str(site.port), "--allow", MX,
                   "-w", "1", "-c", "2")
    assert run.returncode == 1, run.stdout
    assert run.summary.startswith("PORT_EXPOSURE WARNING - 2 unsanctioned SMTP listeners: ")
    assert run.perfdata["unsanctioned"].startswith("2;1;2;0")
    assert perf(run)["hosts"] == "5"  # 3 addresses and 127.77.0.13-14 of the /30
    run = exposure("--hosts", str(hosts), "--ports", str(site.port), "--allow", MX, "-c", "5")
    assert run.returncode == 0, run.stdout


def test_silent_addresses_are_ok(site: Site) -> None:
    run = exposure("-N", "127.77.1.0/24", "--ports", f"{site.port},25", "--submission")
    assert run.returncode == 0, run.stdout
    assert run.summary == (f"PORT_EXPOSURE OK - nothing open on 254 hosts (ports {site.port}, "
                           "25, 465, 587)")
    assert perf(run)["hosts"] == "254" and perf(run)["open"] == "0"
    assert run.long_output[-1] == "ports: 0 open, 1016 refused (RST), 0 filtered (no answer)"


def test_open_netbios_ports_are_critical_and_smbv1_is_noted(site: Site) -> None:
    before = len(site.smb1.requests), len(site.smb2.requests)
    run = exposure("-N", "127.77.0.8/29", "--ports", str(site.port), "--netbios",
                   "--allow", "127.77.0.8/29")
    assert run.returncode == 2, run.stdout
    assert run.summary == (f"PORT_EXPOSURE CRITICAL - 2 NetBIOS/SMB ports open: {SMB1}:445 "
                           f"(SMBv1 offered), {SMB2}:445")
    assert perf(run)["netbios_open"] == "2" and perf(run)["open"] == "2"
    assert perf(run)["unsanctioned"] == "0"
    lines = run.long_output
    assert (f"NETBIOS {SMB1}:445 open (SMB): SMBv1 offered (chose NT LM 0.12 without "
            "credentials); SMB2 dialect 3.1.1") in lines
    assert (f"NETBIOS {SMB2}:445 open (SMB): SMBv1 not offered (closed the connection without "
            "a reply to the SMB1 negotiate); SMB2 dialect 3.1.1") in lines
    assert site.smb1.requests[before[0]:] == ["SMB1 NEGOTIATE", "SMB2 NEGOTIATE"]
    assert site.smb2.requests[before[1]:] == ["SMB1 NEGOTIATE", "SMB2 NEGOTIATE"]
    # 139 was asked too, and refused (RST); .8 and .15 are the /29's network and broadcast
    # addresses, not scanned: 6 addresses x 3 ports
    assert lines[-1] == "ports: 2 open, 16 refused (RST), 0 filtered (no answer)"


def test_ipv6_listener(postfix_ipv6: PostfixServer) -> None:
    port = str(postfix_ipv6.port)
    run = exposure("-H", "::1", "--ports", port)
    assert run.returncode == 2, run.stdout
    assert run.summary == (f"PORT_EXPOSURE CRITICAL - 1 unsanctioned SMTP listener: [::1]:{port} "
                           "(220 mx.relaylab.test ESMTP Postfix)")
    run = exposure("-N", "::1/128", "--ports", port, "--allow", "::1", "-6")
    assert run.returncode == 0, run.stdout
    assert run.summary == ("PORT_EXPOSURE OK - no unsanctioned SMTP listener on 1 host; "
                           "1 sanctioned mailer answers")
    run = exposure("-N", "::1/128", "--ports", port, "-4")
    assert run.returncode == 3 and "-4 given but ::1/128 is IPv6" in run.summary


def test_relay_check_finds_the_open_relay(site: Site) -> None:
    run = exposure("-H", PRINTER, "-H", LABPC, "--ports", str(site.port), "--relay-check",
                   "--mail-domain", "relaylab.test", "--source-address", "127.0.0.2", "-t", "30")
    p = site.port
    assert run.returncode == 2, run.stdout
    assert re.search(rf"; open relay: {re.escape(PRINTER)}:{p} \((\d+) of {len(CATALOGUE)} "
                     r"attempts accepted\)", run.summary), run.summary
    lines = run.long_output
    assert any(line.startswith(f"UNSANCTIONED {PRINTER}:{p}") and "; RELAYS " in line
               for line in lines), lines
    assert any(line.startswith(f"UNSANCTIONED {LABPC}:{p}") and line.endswith(
        f"; relay series: 0 of {len(CATALOGUE)} attempts relayed (control postmaster@relaylab.test "
        "accepted)") for line in lines), lines


def test_a_relay_series_that_proves_nothing_is_unknown(site: Site) -> None:
    """The mail domain guessed from lab-pc.site.test is site.test, which the lab Postfix does
    not take mail for: the control is refused, nothing is proven. With -c 5 the listener alone
    is not CRITICAL, so the doubt decides: UNKNOWN, never OK."""
    run = exposure("-H", LABPC, "--ports", str(site.port), "--relay-check", "-c", "5",
                   "--source-address", "127.0.0.2")
    assert run.returncode == 3, run.stdout
    assert run.summary.startswith(f"PORT_EXPOSURE UNKNOWN - relay series inconclusive on "
                                  f"{LABPC}:{site.port} (control postmaster@site.test not "
                                  "accepted (")


class ImplicitTLS(Behaviour):
    """SMTP over TLS from the first byte (port 465, RFC 8314)."""

    def greeting(self, session: Session) -> ReplyValue:
        session._wrap_tls()
        return super().greeting(session)


def test_port_465_is_read_over_tls() -> None:
    with ScriptedSMTPServer(ImplicitTLS(hostname="smtps.site.test"), "127.77.2.2", 465) as srv:
        run = exposure("-H", "127.77.2.2", "--ports", "465")
        until = time.monotonic() + 5  # its thread may record the QUIT after the plugin is gone
        while len(srv.commands) < 2 and time.monotonic() < until:
            time.sleep(0.05)
        commands = list(srv.commands)
    assert [c.split(" ")[0] for c in commands] == ["EHLO", "QUIT"], commands
    assert run.returncode == 2, run.stdout
    assert run.summary == ("PORT_EXPOSURE CRITICAL - 1 unsanctioned SMTP listener: "
                           "127.77.2.2:465 (220 smtps.site.test ESMTP mailprobe-lab)")
    assert ("UNSANCTIONED 127.77.2.2:465 answers 220 smtps.site.test ESMTP mailprobe-lab (over "
            "TLS); EHLO 250 smtps.site.test (8BITMIME, ENHANCEDSTATUSCODES, PIPELINING)"
            ) in run.long_output


def test_a_relay_series_never_played_is_unknown() -> None:
    """A listener that keeps its banner back past the budget: the series cannot be played, and
    with the listener itself tolerated (-c 5) the result is UNKNOWN, not OK."""
    with ScriptedSMTPServer(Behaviour(banner_delay=10), "127.77.2.1") as srv:
        run = exposure("-H", "127.77.2.1", "--ports", str(srv.port), "--relay-check",
                       "-c", "5", "-t", "3")
    assert run.returncode == 3, run.stdout
    assert run.summary.startswith(f"PORT_EXPOSURE UNKNOWN - relay series inconclusive on "
                                  f"127.77.2.1:{srv.port} (no 220 banner: the relay series was "
                                  "not played)")
    assert run.seconds < 3 + 1


def test_names_are_looked_up_through_the_nameserver(site: Site) -> None:
    records = f"mx.site.test. A {MX}\nprinter.site.test. A {PRINTER}\n"
    with ScriptedDNSServer(DNSBehaviour(records)) as dns:
        run = exposure("-H", "printer.site.test", "--ports", str(site.port),
                       "--allow", "mx.site.test", "--nameserver", dns.nameserver)
        assert run.returncode == 2, run.stdout
        assert run.summary.startswith(f"PORT_EXPOSURE CRITICAL - 1 unsanctioned SMTP "
                                      f"listener: {PRINTER}:{site.port} (220 printer.site.test")
        assert ("sanctioned mailers not among the targets (not scanned): mx.site.test "
                f"({MX})") in run.long_output
        run = exposure("-H", "printer.site.test", "--ports", str(site.port),
                       "--allow", "nothing.site.test", "--nameserver", dns.nameserver)
        assert run.returncode == 3, run.stdout
        assert "nothing.site.test has no A or AAAA address" in run.summary


def test_the_time_budget_running_out_is_unknown_and_kept(site: Site) -> None:
    run = exposure("-H", FILTERED, "--ports", str(site.port), "--connect-timeout", "30",
                   "-t", "2")
    assert run.returncode == 3, run.stdout
    assert run.summary.startswith("PORT_EXPOSURE UNKNOWN - 1 of 1 ports not probed: the time "
                                  "budget ran out")
    assert run.seconds < 2 + 1  # the contract's bound: -t plus 1 s
    # one connect at a time: the filtered port holds the only slot, the /24 is never reached
    run = exposure("-H", FILTERED, "-N", "127.77.5.0/24", "--ports", str(site.port),
                   "--connect-timeout", "30", "--max-in-flight", "1", "-t", "2")
    assert run.returncode == 3, run.stdout
    assert run.summary.startswith("PORT_EXPOSURE UNKNOWN - 255 of 255 ports not probed: ")
    assert run.long_output[-2:] == [
        "ports: 0 open, 0 refused (RST), 0 filtered (no answer), 255 not probed",
        "note: 254 ports were not reached before the time budget ran out"]


def test_a_source_address_of_another_host_is_unknown(site: Site) -> None:
    run = exposure("-H", MX, "--ports", str(site.port), "--source-address", "192.0.2.1")
    assert run.returncode == 3, run.stdout
    assert run.summary.startswith("PORT_EXPOSURE UNKNOWN - 1 port could not be probed: cannot "
                                  "connect from the source address")


def test_verbose_levels(site: Site) -> None:
    run = exposure("-H", PRINTER, "--ports", str(site.port), "-vvv")
    assert any(line.startswith("scan: 1 connects") for line in run.long_output)
    assert f"  connect {PRINTER}:{site.port} -> open" in " ".join(run.long_output)
    assert any("-> EHLO " in line for line in run.long_output)


@pytest.mark.parametrize("args, reason", [
    (["-N", "10.0.0.0/15"], "10.0.0.0/15 has 131072 addresses, more than the limit of 65536"),
    (["-N", "127.77.1.0/24", "--max-addresses", "100"], "more than the limit of 100"),
    (["-N", "2001:db8::/64"], "more than the limit"),
    (["-N", "224.0.0.0/28"], "multicast"),
    (["-N", "192.0.2.0/33"], "not an IPv4/IPv6 prefix"),
    (["-H", "0.0.0.0"], "cannot be scanned"),
    (["-H", "mx..example"], "not an IP address or a host name"),
    (["-N", "127.77.1.0/24", "--ports", "25,70000"], "port"),
    (["-N", "127.77.1.0/24", "--max-in-flight", "0"], "max-in-flight"),
    (["-N", "127.77.1.0/24", "--connect-timeout", "0"], "connect-timeout"),
    (["-N", "127.77.1.0/24", "--relay-check", "--mail-domain", "bad domain"], "mail-domain"),
    (["--ports", "25"], "give what to scan"),
    (["-N", "127.77.1.0/24", "--allow-file", "/nonexistent/mailers"], "cannot read"),
])
def test_bad_options_are_unknown_before_any_traffic(args: list[str], reason: str) -> None:
    run = run_plugin("check_port_exposure", *args)
    assert run.returncode == 3, run.stdout
    assert run.summary.startswith("PORT_EXPOSURE UNKNOWN - bad option: "), run.summary
    assert reason in run.summary, run.summary


def test_force_lifts_the_limit() -> None:
    run = run_plugin("check_port_exposure", "-N", "127.77.1.0/24", "--max-addresses", "100",
                     "--force", "--ports", "9")
    assert run.returncode == 0, run.stdout
    assert "nothing open on 254 hosts" in run.summary


def test_help_and_version() -> None:
    run = run_plugin("check_port_exposure", "--help")
    assert run.returncode == 0 and "--netbios" in run.stdout and "--allow-file" in run.stdout
    run = run_plugin("check_port_exposure", "-V")
    assert run.returncode == 0 and run.stdout.startswith("check_port_exposure (mailprobe) ")

