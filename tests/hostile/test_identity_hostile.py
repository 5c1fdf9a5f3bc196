"""The identity catalogue (``identity_cases``): check_banner_rdns, check_open_relay and
check_spf_mx against scripted SMTP servers, each case with its own scripted DNS world; and a
--nameserver whose port is closed."""

from __future__ import annotations

import pytest

from lab.dnsd import DNSBehaviour, ScriptedDNSServer
from lab.process import free_port
from lab.smtpd import Behaviour, ScriptedSMTPServer
from tests.conftest import run_plugin
from tests.hostile.expect import UNKNOWN, Expect, assert_run
from tests.hostile.identity_cases import IDENTITY_CASES, IdentityCase

NAMES = {"rdns": "BANNER_RDNS", "relay": "OPEN_RELAY", "spf": "SPF_MX"}


def argv(plugin: str, expect: Expect, port: int, nameserver: str) -> list[str]:
    common = ["-H", "127.0.0.1", "-p", str(port), "--nameserver", nameserver,
              "-t", f"{expect.timeout:g}", *expect.args]
    if plugin == "rdns":
        return ["check_banner_rdns", *common]
    if plugin == "relay":
        return ["check_open_relay", *common, "--source-address", "127.0.0.2",
                "--mail-domain", "lab.test", "--tests", "plain"]
    return ["check_spf_mx", *common]


PARAMS = [pytest.param(c, p, id=f"{p}-{c.id}") for c in IDENTITY_CASES for p in NAMES
          if getattr(c, p)]


@pytest.mark.parametrize(("case", "plugin"), PARAMS)
def test_identity_case(case: IdentityCase, plugin: str) -> None:
    with (ScriptedDNSServer(DNSBehaviour(case.records)) as dns,
          ScriptedSMTPServer(case.behaviour()) as smtp):
        for expect in getattr(case, plugin):
            name, *args = argv(plugin, expect, smtp.port, dns.nameserver)
            assert_run(run_plugin(name, *args), NAMES[plugin], expect)


def test_catalogue_ids_are_unique() -> None:
    assert len({c.id for c in IDENTITY_CASES}) == len(IDENTITY_CASES)


REFUSED = r"the resolver at 127\.0\.0\.1:{port} refused the connection \(port closed\)"


@pytest.mark.parametrize("plugin", list(NAMES))
def test_closed_nameserver_port_fails_at_once(plugin: str) -> None:
    """A --nameserver whose port is closed answers every question with ICMP port unreachable:
    the plugins say so, instead of waiting for -t and reporting a timeout."""
    port = free_port()  # nothing listens there, on UDP or TCP
    with ScriptedSMTPServer(Behaviour()) as smtp:
        expect = Expect(UNKNOWN, REFUSED.format(port=port), timeout=20)
        name, *args = argv(plugin, expect, smtp.port, f"127.0.0.1:{port}")
        if plugin != "rdns":
            args[args.index("127.0.0.1")] = "mx.lab.test"  # a name: DNS must be asked first
        run = run_plugin(name, *args)
    assert_run(run, NAMES[plugin], expect)
    assert "time budget" not in run.stdout and "did not answer" not in run.stdout
