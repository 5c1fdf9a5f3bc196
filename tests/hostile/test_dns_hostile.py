"""Every plugin against every bad DNS behaviour of the catalogue (scripted DNS server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.dnsd import DNSBehaviour, ScriptedDNSServer
from lab.smtpd import Behaviour, ScriptedSMTPServer
from tests.conftest import run_plugin
from tests.hostile.dns_cases import DNS_CASES, DNSCase
from tests.hostile.expect import Expect, assert_run


@pytest.fixture(scope="module")
def mailer() -> Iterator[ScriptedSMTPServer]:
    """A correct, closed mail server mx.lab.test on 127.0.0.1 (only DNS is hostile here)."""
    with ScriptedSMTPServer(Behaviour(hostname="mx.lab.test")) as server:
        yield server


def argv(plugin: str, expect: Expect, nameserver: str, smtp: ScriptedSMTPServer) -> list[str]:
    common = ["--nameserver", nameserver, "-t", f"{expect.timeout:g}"]
    port = ["-p", str(smtp.port)]
    extra = list(expect.args)
    if plugin == "dnsbl":
        target = [] if "-H" in extra else ["-H", "192.0.2.10"]
        return ["check_dnsbl", *target, "--zone", "bl.lab.test", *common, *extra]
    if plugin == "spf":
        target = [] if "-H" in extra else ["-H", "mx.lab.test"]
        return ["check_spf_mx", "--mail-domain", "lab.test", *target, *common, *extra]
    if plugin == "rdns":
        target = [] if "-H" in extra else ["-H", "127.0.0.1"]
        return ["check_banner_rdns", *target, *port, "--no-starttls-ok", *common, *extra]
    return ["check_open_relay", "-H", "mx.lab.test", *port, "--source-address", "127.0.0.2",
            "--mail-domain", "lab.test", "--tests", "plain", *common, *extra]


NAMES = {"dnsbl": "DNSBL", "spf": "SPF_MX", "rdns": "BANNER_RDNS", "relay": "OPEN_RELAY"}
PARAMS = [pytest.param(c, p, id=f"{p}-{c.id}") for c in DNS_CASES for p in NAMES
          if getattr(c, p)]


@pytest.mark.parametrize(("case", "plugin"), PARAMS)
def test_dns_case(case: DNSCase, plugin: str, mailer: ScriptedSMTPServer) -> None:
    behaviour = DNSBehaviour(case.records, fault=case.fault, faults=case.faults)
    with ScriptedDNSServer(behaviour) as server:
        for expect in getattr(case, plugin):
            name, *args = argv(plugin, expect, server.nameserver, mailer)
            assert_run(run_plugin(name, *args), NAMES[plugin], expect)


def test_catalogue_is_big_enough() -> None:
    assert len(DNS_CASES) >= 15
    assert len({c.id for c in DNS_CASES}) == len(DNS_CASES)


def test_truncated_answers_are_fetched_over_tcp(mailer: ScriptedSMTPServer) -> None:
    """The OK of truncated-then-tcp is real: the plugins did retry over TCP."""
    case = next(c for c in DNS_CASES if c.id == "truncated-then-tcp")
    with ScriptedDNSServer(DNSBehaviour(case.records, fault=case.fault)) as server:
        expect = case.rdns[0]
        name, *args = argv("rdns", expect, server.nameserver, mailer)
        assert_run(run_plugin(name, *args), "BANNER_RDNS", expect)
        transports = {(q.qname, q.transport) for q in server.queries}
    assert ("1.0.0.127.in-addr.arpa.", "udp") in transports
    assert ("1.0.0.127.in-addr.arpa.", "tcp") in transports


@pytest.mark.parametrize("plugin", list(NAMES))
def test_nameserver_on_ipv6(plugin: str, mailer: ScriptedSMTPServer) -> None:
    """--nameserver [::1]:PORT works for every plugin (the good world, answered over IPv6)."""
    case = next(c for c in DNS_CASES if c.id == "truncated-then-tcp")  # its OK expectations
    with ScriptedDNSServer(DNSBehaviour(case.records), host="::1") as server:
        expect = getattr(case, plugin)[0]
        name, *args = argv(plugin, expect, server.nameserver, mailer)
        assert_run(run_plugin(name, *args), NAMES[plugin], expect)
        assert server.queries
