"""check_open_relay and check_banner_rdns against every misbehaving SMTP server of the catalogue."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dns.reversename
import pytest

from lab.dnsd import DNSBehaviour, ScriptedDNSServer
from lab.postfix import free_port_on_all
from lab.process import free_port
from lab.smtpd import ScriptedSMTPServer
from mailprobe.net.dns import is_ip_address
from tests.conftest import run_plugin
from tests.hostile.expect import assert_run
from tests.hostile.smtp_cases import SMTP_CASES, SMTPCase

GOOD_DNS = f"""
{dns.reversename.from_address("127.0.0.1")} PTR mx.lab.test.
{dns.reversename.from_address("::1")} PTR mx.lab.test.
mx.lab.test. A 127.0.0.1
mx.lab.test. AAAA ::1
"""


@pytest.fixture(scope="module")
def good_dns() -> Iterator[ScriptedDNSServer]:
    """A correct DNS server: 127.0.0.1 and ::1 <-> mx.lab.test (FCrDNS holds)."""
    with ScriptedDNSServer(DNSBehaviour(GOOD_DNS)) as server:
        yield server


@contextlib.contextmanager
def serving(case: SMTPCase) -> Iterator[tuple[str, int]]:
    if not is_ip_address(case.host):  # a name: a server on 127.0.0.1 and one on ::1, one port
        port = free_port_on_all(["127.0.0.1", "::1"])
        with contextlib.ExitStack() as servers:
            for host, make in (("127.0.0.1", case.behaviour), ("::1", case.behaviour6)):
                if make is not None:
                    servers.enter_context(ScriptedSMTPServer(make(), host=host, port=port))
            yield case.host, port
        return
    if case.behaviour is None:
        yield case.host, free_port()
        return
    with ScriptedSMTPServer(case.behaviour(), host=case.host) as server:
        yield server.host, server.port


@contextlib.contextmanager
def resolver(case: SMTPCase, good_dns: ScriptedDNSServer) -> Iterator[str]:
    """The --nameserver of a case: its own DNS server, or the correct one."""
    if case.dns is None:
        yield good_dns.nameserver
        return
    with ScriptedDNSServer(case.dns()) as server:
        yield server.nameserver


def _params(plugin: str) -> list[object]:
    return [pytest.param(c, id=c.id) for c in SMTP_CASES if getattr(c, plugin)]


@pytest.mark.parametrize("case", _params("relay"))
def test_open_relay(case: SMTPCase, good_dns: ScriptedDNSServer) -> None:
    with serving(case) as (host, port), resolver(case, good_dns) as nameserver:
        for expect in case.relay:
            ipv4 = is_ip_address(host) and ":" not in host
            source = ("--source-address", "127.0.0.2") if ipv4 else ()
            run = run_plugin("check_open_relay", "-H", host, "-p", str(port), *source,
                             "--mail-domain", "lab.test", "--nameserver", nameserver,
                             "-t", f"{expect.timeout:g}", *expect.args)
            assert_run(run, "OPEN_RELAY", expect)


@pytest.mark.parametrize("case", _params("rdns"))
def test_banner_rdns(case: SMTPCase, good_dns: ScriptedDNSServer) -> None:
    with serving(case) as (host, port):
        for expect in case.rdns:
            run = run_plugin("check_banner_rdns", "-H", host, "-p", str(port),
                             "--nameserver", good_dns.nameserver, "-t", f"{expect.timeout:g}",
                             *expect.args)
            assert_run(run, "BANNER_RDNS", expect)


def test_catalogue_is_big_enough() -> None:
    assert len(SMTP_CASES) >= 25
    assert len({c.id for c in SMTP_CASES}) == len(SMTP_CASES)
