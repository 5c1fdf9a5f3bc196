"""check_open_relay against real MTAs (Postfix, Exim) on loopback, probed from 127.0.0.2."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from lab.dnsd import DNSBehaviour, ScriptedDNSServer
from lab.postfix import LAB_DOMAIN, free_port_on_all
from lab.smtpd import Behaviour, RelayPolicy, ScriptedSMTPServer
from mailprobe.probes.relay.catalogue import CATALOGUE, EVERY_ATTEMPT
from tests.conftest import PluginRun, run_plugin

pytestmark = pytest.mark.integration

OUTSIDE = "127.0.0.2"  # outside every lab instance's mynetworks (127.0.0.1/32)
ALL = len(CATALOGUE)
# Not applicable to a lab Postfix probed by address without --nameserver: no PTR name looked
# up, and neither XCLIENT, XFORWARD nor AUTH offered.
PREAMBLES = {"xclient-loopback", "xforward-loopback", "auth-plain-null", "auth-login-null",
             "auth-anonymous", "auth-ntlm-null"}
NOT_APPLICABLE = {"helo-ptr-name", *PREAMBLES}
APPLICABLE = ALL - len(NOT_APPLICABLE)
# A backup MX for relaylab.test with allow_untrusted_routing = yes: the routed forms whose
# last domain is relaylab.test are accepted (and would be relayed on), nothing else.
PERCENT_HOLE_RELAYS = {"percent-hack-domain", "quoted-local-part-domain", "quoted-percent-domain",
                       "double-at-domain", "bang-path-domain", "quoted-bang-path-domain"}


def relay(server, *extra: str, source: str = OUTSIDE) -> PluginRun:
    return run_plugin("check_open_relay", "-H", server.host, "-p", str(server.port),
                      "--source-address", source, "--mail-domain", "relaylab.test", *extra)


def relayed_ids(run: PluginRun) -> set[str]:
    return {m.group(1) for line in run.long_output
            if (m := re.match(r"\[RELAYED\] ([a-z0-9-]+):", line))}


def test_open_postfix_is_critical_and_every_form_relays(postfix_open) -> None:
    run = relay(postfix_open)
    assert run.returncode == 2, run.stdout
    assert run.summary.startswith(
        f"OPEN_RELAY CRITICAL - {APPLICABLE} of {ALL} relay attempts accepted (plain, sender-null,")
    assert run.perf_value("relayed") == APPLICABLE
    assert run.perf_value("attempts") == ALL
    assert run.perf_value("tempfailed") == 0
    assert run.perfdata["relayed"].split(";")[2] == "0"  # the default -c 0
    assert run.perfdata["time"].split(";")[0].endswith("s")
    assert relayed_ids(run) == {a.id for a in CATALOGUE} - NOT_APPLICABLE
    assert {line.split(":")[0] for line in run.long_output if "NOT APPLICABLE" in line} == {
        f"[NOT APPLICABLE] {i}" for i in NOT_APPLICABLE}
    assert any(line.startswith("[ACCEPTED] control: ") for line in run.long_output)


def test_closed_postfix_from_outside_is_ok(postfix_closed) -> None:
    run = relay(postfix_closed)
    assert run.returncode == 0, run.stdout
    assert run.summary == (f"OPEN_RELAY OK - 0 of {ALL} relay attempts accepted "
                           f"({len(NOT_APPLICABLE)} not applicable); control "
                           "RCPT TO:<postmaster@relaylab.test> accepted")
    assert run.perf_value("relayed") == 0
    assert relayed_ids(run) == set()
    refused = [line for line in run.long_output if line.startswith(("[REFUSED]",
                                                                    "[SENDER REFUSED]"))]
    assert len(refused) == APPLICABLE


def test_closed_postfix_from_its_own_network_looks_open(postfix_closed) -> None:
    """The vantage point matters: from inside mynetworks relaying is allowed by policy."""
    run = relay(postfix_closed, source="127.0.0.1")
    assert run.returncode == 2, run.stdout
    assert "plain" in relayed_ids(run)


def test_relaying_on_the_sender_address_is_caught(postfix_sender_trust) -> None:
    run = relay(postfix_sender_trust)
    assert run.returncode == 2, run.stdout
    # Postfix qualifies <postmaster> with $myorigin before check_sender_access: it relays too
    assert relayed_ids(run) == {"sender-own-domain", "sender-unqualified"}
    assert run.summary.startswith(f"OPEN_RELAY CRITICAL - 2 of {ALL} relay attempts accepted "
                                  "(sender-own-domain, sender-unqualified)")


def test_routed_address_forms_through_a_backup_mx_are_caught(postfix_percent_hole) -> None:
    run = relay(postfix_percent_hole)
    assert run.returncode == 2, run.stdout
    assert relayed_ids(run) == PERCENT_HOLE_RELAYS
    assert "plain" not in relayed_ids(run)


def test_trusting_the_helo_name_is_caught(postfix_helo_trust) -> None:
    run = relay(postfix_helo_trust)
    assert run.returncode == 2, run.stdout
    # its helo_access lists mx.relaylab.test, relaylab.test (the mail domain) and localhost
    assert relayed_ids(run) == {"helo-server-name", "helo-localhost", "helo-mail-domain"}


PTR_OF_LOOPBACK = f"1.0.0.127.in-addr.arpa. PTR gw.{LAB_DOMAIN}.\n"


def test_trusting_localhost_localdomain_and_the_ptr_name_is_caught(postfix_factory) -> None:
    """DSBL greeted with every name it knew of the server: the PTR name (looked up through
    --nameserver) and localhost.localdomain are trusted here, the banner name is not."""
    server = postfix_factory("helonames", preset="helo_trust_names")
    with ScriptedDNSServer(DNSBehaviour(PTR_OF_LOOPBACK)) as dns:
        run = relay(server, "--nameserver", dns.nameserver, "-vvv")
    assert run.returncode == 2, run.stdout
    assert relayed_ids(run) == {"helo-localhost-localdomain", "helo-ptr-name"}
    assert f"-> EHLO gw.{LAB_DOMAIN}" in run.stdout
    assert "-> EHLO localhost.localdomain" in run.stdout
    without_dns = relay(server)
    assert relayed_ids(without_dns) == {"helo-localhost-localdomain"}
    assert ("[NOT APPLICABLE] helo-ptr-name: (PTR name not looked up (-H is an address and no "
            "--nameserver is given))") in without_dns.long_output


def test_no_ptr_name_is_not_applicable_and_a_failed_look_up_is_not_judged(postfix_closed) -> None:
    from lab.dnsd import Fault

    with ScriptedDNSServer(DNSBehaviour("")) as dns:
        missing = relay(postfix_closed, "--nameserver", dns.nameserver, "--tests",
                        "helo-ptr-name,plain")
    with ScriptedDNSServer(DNSBehaviour("", fault=Fault(rcode="SERVFAIL"))) as dns:
        failed = relay(postfix_closed, "--nameserver", dns.nameserver, "--tests",
                       "helo-ptr-name,plain")
    assert missing.returncode == 0, missing.stdout
    assert "[NOT APPLICABLE] helo-ptr-name: (127.0.0.1 has no PTR name)" in missing.long_output
    assert failed.returncode == 3, failed.stdout
    assert failed.summary.startswith("OPEN_RELAY UNKNOWN - only 1 of 2 attempts could be played "
                                     "(PTR look-up of 127.0.0.1 failed: ")


def test_xclient_open_to_any_client_is_critical_even_when_every_plain_attempt_is_refused(
        postfix_factory) -> None:
    server = postfix_factory("xclientopen", preset="xclient_open")
    run = relay(server, "-vvv")
    assert run.returncode == 2, run.stdout
    assert relayed_ids(run) == {"xclient-loopback"}
    assert run.summary.startswith(f"OPEN_RELAY CRITICAL - 1 of {ALL} relay attempts accepted "
                                  "(xclient-loopback)")
    assert re.search(r"\[RELAYED\] xclient-loopback: .* -> 250 2\.1\.5 Ok \(after XCLIENT "
                     r"NAME=localhost ADDR=127\.0\.0\.1 -> 220 mx\.relaylab\.test", run.stdout)
    assert "-> XCLIENT NAME=localhost ADDR=127.0.0.1" in run.stdout


def test_xforward_does_not_change_postfixs_relay_decision(postfix_factory) -> None:
    server = postfix_factory("xforwardopen", preset="xforward_open")
    run = relay(server, "--tests", "xforward-loopback,xclient-loopback,plain", "-vvv")
    assert run.returncode == 0, run.stdout
    assert "-> XFORWARD NAME=localhost ADDR=127.0.0.1" in run.stdout
    assert re.search(r"\[REFUSED\] xforward-loopback: .* -> 554 5\.7\.1 .*\(after XFORWARD "
                     r"NAME=localhost ADDR=127\.0\.0\.1 -> 250", run.stdout), run.stdout
    assert "[NOT APPLICABLE] xclient-loopback: (XCLIENT not offered)" in run.long_output


# Exim with an accept-everything RCPT ACL: it answers 501 to the forms it cannot parse
# (address literals are off by default, bang paths and double @ are syntax errors) and
# wants a greeting before MAIL; everything else is accepted.
EXIM_OPEN_RELAYS = {
    "plain", "sender-null", "sender-own-domain", "sender-localhost", "percent-hack-domain",
    "percent-hack-localhost", "quoted-local-part-domain", "quoted-percent-domain",
    "source-route-domain", "bang-path-domain", "quoted-bang-path-domain", "upper-case",
    "no-angle-brackets", "space-after-colon", "lower-case-verb", "helo-only", "helo-server-name",
    "helo-localhost", "helo-server-ip", "helo-localhost-localdomain", "helo-mail-domain",
}


def test_exim_open_relay_is_critical(exim_open) -> None:
    run = relay(exim_open)
    assert run.returncode == 2, run.stdout
    assert relayed_ids(run) == EXIM_OPEN_RELAYS
    assert run.perf_value("relayed") == len(EXIM_OPEN_RELAYS)


def test_server_rejecting_everything_is_inconclusive(postfix_reject_all) -> None:
    run = relay(postfix_reject_all)
    assert run.returncode == 3, run.stdout
    assert run.summary.startswith("OPEN_RELAY UNKNOWN - inconclusive: control "
                                  "RCPT TO:<postmaster@relaylab.test> not accepted (5")


def test_temporary_relay_refusals_are_a_warning(postfix_defer) -> None:
    run = relay(postfix_defer)
    assert run.returncode == 1, run.stdout
    assert run.summary.startswith(f"OPEN_RELAY WARNING - {APPLICABLE} of {ALL} relay attempts "
                                  "answered 4xx (a temporary refusal is not a proper relay "
                                  "refusal)")
    assert run.perf_value("tempfailed") == APPLICABLE
    assert run.perf_value("relayed") == 0


def test_server_deferring_everything_is_a_warning(postfix_factory) -> None:
    server = postfix_factory("deferall", {"smtpd_relay_restrictions": "defer"})
    run = relay(server, "--tests", "plain,percent-hack-domain")
    assert run.returncode == 1, run.stdout
    assert "defers even RCPT TO:<postmaster@relaylab.test>" in run.summary


def test_connection_refused_is_critical() -> None:
    from lab.process import free_port

    port = free_port()
    run = run_plugin("check_open_relay", "-H", "127.0.0.1", "-p", str(port),
                     "--mail-domain", "relaylab.test")
    assert run.returncode == 2
    assert run.summary.startswith(f"OPEN_RELAY CRITICAL - mail service down: cannot connect to "
                                  f"127.0.0.1:{port}: Connection refused")


def test_thresholds_apply_to_the_relayed_count(postfix_open) -> None:
    run = relay(postfix_open, "-w", "1", "-c", "100")
    assert run.returncode == 1, run.stdout
    assert run.perfdata["relayed"].split(";")[1:3] == ["1", "100"]


def test_selection_and_transcript(postfix_open) -> None:
    run = relay(postfix_open, "--tests", "plain,bang-path,no-greeting", "-vvv")
    assert run.returncode == 2
    assert run.perf_value("attempts") == 3
    assert relayed_ids(run) == {"plain", "bang-path", "no-greeting"}
    transcript = "\n".join(run.long_output)
    assert "-> RCPT TO:<example.net!relaytest>" in transcript
    assert "<- 220 mx.relaylab.test" in transcript
    assert re.search(r"cost: \d+ connections, \d+ SMTP round trips", transcript)


def test_skip_and_guessed_mail_domain(postfix_closed) -> None:
    run = run_plugin("check_open_relay", "-H", postfix_closed.host, "-p",
                     str(postfix_closed.port), "--source-address", OUTSIDE, "--skip", "plain")
    assert run.returncode == 0, run.stdout
    assert run.perf_value("attempts") == ALL - 1
    assert run.long_output[0].startswith("mail domain relaylab.test (guessed from the banner")


def test_data_depth_stops_at_354_and_delivers_nothing(postfix_open) -> None:
    run = relay(postfix_open, "--depth", "data", "--tests", "plain,percent-hack-domain", "-vvv")
    assert run.returncode == 2, run.stdout
    assert relayed_ids(run) == {"plain", "percent-hack-domain"}
    transcript = run.long_output
    assert any("-> DATA" in line for line in transcript)
    assert any("<- 354" in line for line in transcript)
    assert any("dropping the connection at 354" in line for line in transcript)
    assert not any(line.rstrip().endswith("-> .") for line in transcript)
    assert "status=sent" not in postfix_open.maillog()


def test_ipv6(postfix_ipv6) -> None:
    run = run_plugin("check_open_relay", "-H", "::1", "-p", str(postfix_ipv6.port), "-6",
                     "--mail-domain", "relaylab.test", "--tests", "plain,percent-hack-ip")
    assert run.returncode == 0, run.stdout
    assert "RCPT TO:<relaytest%example.net@[IPv6:::1]>" in run.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--tests", "nope"], "unknown test id nope"),
    (["-w", "x:y:z"], "invalid range"),
    (["-p", "70000"], "invalid port"),
    (["--external-domain", "bad domain"], "is not a domain name"),
    (["-t", "0"], "invalid seconds"),
    (["-t", "nan"], "invalid seconds"),
])
def test_bad_options_are_unknown_with_one_line(args: list[str], message: str) -> None:
    run = run_plugin("check_open_relay", "-H", "127.0.0.1", *args)
    assert run.returncode == 3
    assert run.stdout.count("\n") == 1
    assert run.status_line.startswith("OPEN_RELAY UNKNOWN - bad option: ")
    assert message in run.status_line


def test_list_tests_prints_the_catalogue() -> None:
    run = run_plugin("check_open_relay", "--list-tests")
    assert run.returncode == 0
    assert len(run.stdout.splitlines()) == len(EVERY_ATTEMPT) + 2  # header, control, attempts
    assert "header-from-own-domain" in run.stdout and "(--depth deliver only)" in run.stdout


# -- every address of a name (issue 12) ---------------------------------------------------------
NOBODY_TRUSTED = {"mynetworks": "127.0.0.3/32"}  # the probe's default source is outside it
DUAL_STACK = f"""
mx.{LAB_DOMAIN}. A 127.0.0.1
mx.{LAB_DOMAIN}. AAAA ::1
"""


@pytest.fixture(scope="module")
def dual_stack_dns() -> Iterator[ScriptedDNSServer]:
    """mx.relaylab.test: A 127.0.0.1, AAAA ::1."""
    with ScriptedDNSServer(DNSBehaviour(DUAL_STACK)) as server:
        yield server


def by_name(port: int, dns: ScriptedDNSServer, *extra: str) -> PluginRun:
    return run_plugin("check_open_relay", "-H", f"mx.{LAB_DOMAIN}", "-p", str(port),
                      "--nameserver", dns.nameserver, "--mail-domain", LAB_DOMAIN, *extra)


def test_a_relaying_ipv6_listener_beside_a_closed_postfix_is_critical(
        postfix_factory, dual_stack_dns) -> None:
    """A closed Postfix on 127.0.0.1 and, on the same port of ::1, a forgotten open relay: the
    name is probed on both addresses and the IPv6 one is named (it used to be OK: only the
    first IPv4 address was probed)."""
    port = free_port_on_all(["127.0.0.1", "::1"])
    postfix_factory("v4closed", NOBODY_TRUSTED, port=port)
    with ScriptedSMTPServer(Behaviour(hostname=f"mx.{LAB_DOMAIN}", relay=RelayPolicy.open(),
                                      local_domains=(LAB_DOMAIN,)), host="::1", port=port):
        run = by_name(port, dual_stack_dns, "--tests", "plain,percent-hack-domain", "-v")
        only_v4 = by_name(port, dual_stack_dns, "--tests", "plain,percent-hack-domain", "-4")
    assert run.returncode == 2, run.stdout
    assert run.summary == ("OPEN_RELAY CRITICAL - 2 of 4 relay attempts accepted (::1: plain, "
                           "percent-hack-domain); 127.0.0.1: 0 of 2 relay attempts accepted")
    assert run.perf_value("addresses") == 2
    assert run.perf_value("attempts") == 4
    sections = "\n".join(run.long_output)
    assert "address 127.0.0.1:\nbanner: 220 mx.relaylab.test ESMTP Postfix" in sections
    assert "address ::1:\nbanner: 220 mx.relaylab.test ESMTP mailprobe-lab" in sections
    assert only_v4.returncode == 0, only_v4.stdout
    assert only_v4.summary.startswith("OPEN_RELAY OK - 0 of 2 relay attempts accepted; control")


def test_dual_stack_postfix_closed_on_both_addresses_is_ok(postfix_factory,
                                                           dual_stack_dns) -> None:
    port = free_port_on_all(["127.0.0.1", "::1"])
    postfix_factory("dualclosed", NOBODY_TRUSTED, port=port, ipv6=True)
    run = by_name(port, dual_stack_dns)
    assert run.returncode == 0, run.stdout
    assert run.summary == (f"OPEN_RELAY OK - 0 of {2 * ALL} relay attempts accepted "
                           f"({2 * len(NOT_APPLICABLE)} not applicable) on 2 addresses (127.0.0.1, "
                           "::1); control RCPT TO:<postmaster@relaylab.test> accepted on each")
    assert run.perf_value("relayed") == 0
    assert relayed_ids(run) == set()
    assert not any("out of step" in line for line in run.long_output), run.stdout


# -- a tarpit is not a refusal (issue 12) ------------------------------------------------------
# An open relay that answers its own domain at once and makes every other recipient wait 3 s.
TARPIT_OPEN = {"mynetworks": "0.0.0.0/0",
               "smtpd_relay_restrictions": "check_recipient_access "
               "texthash:${config_directory}/own_domain, sleep 3, permit_mynetworks, "
               "reject_unauth_destination"}


def test_a_tarpitting_open_postfix_is_not_ok_when_its_replies_never_come(postfix_factory) -> None:
    server = postfix_factory("tarpit", TARPIT_OPEN, maps={"own_domain": f"{LAB_DOMAIN} OK\n"})
    tests = ("--tests", "plain,percent-hack-domain", "-t", "30")
    impatient = relay(server, *tests, "--command-timeout", "1")
    patient = relay(server, *tests, "--command-timeout", "5")
    assert impatient.returncode == 3, impatient.stdout
    assert impatient.summary.startswith(
        "OPEN_RELAY UNKNOWN - only 0 of 2 attempts could be played (2 never answered within "
        "--command-timeout 1s)"), impatient.stdout
    assert [line.split(":")[0] for line in impatient.long_output if line.startswith("[")] == [
        "[ACCEPTED] control", "[TIMEOUT] plain", "[TIMEOUT] percent-hack-domain"]
    assert patient.returncode == 2, patient.stdout
    assert relayed_ids(patient) == {"plain", "percent-hack-domain"}


def test_replies_of_a_real_postfix_are_never_out_of_step(postfix_closed, postfix_open) -> None:
    for server in (postfix_closed, postfix_open):
        run = relay(server, "-v")
        assert not any("out of step" in line or "unasked" in line
                       for line in run.long_output), run.stdout
