"""check_dnsbl against the DNS behaviours of dnsbl_cases.py (scripted DNS server), and the
scripted server's faults those cases need."""

from __future__ import annotations

import socket

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from lab.dnsd import DNSBehaviour, Fault, ScriptedDNSServer
from tests.conftest import run_plugin
from tests.hostile.dnsbl_cases import BL, DNSBL_CASES, WORLD, DnsblCase
from tests.hostile.expect import Expect, assert_run


def argv(expect: Expect, nameserver: str) -> list[str]:
    extra = list(expect.args)
    target = [] if "-H" in extra else ["-H", "192.0.2.99"]
    return [*target, "--zone", BL, "--nameserver", nameserver, "-t", f"{expect.timeout:g}",
            *extra]


PARAMS = [pytest.param(c, e, id=f"{c.id}-{n}" if len(c.expect) > 1 else c.id)
          for c in DNSBL_CASES for n, e in enumerate(c.expect)]


@pytest.mark.parametrize(("case", "expect"), PARAMS)
def test_dnsbl_case(case: DnsblCase, expect: Expect) -> None:
    behaviour = DNSBehaviour(case.records, fault=case.fault, faults=case.faults)
    with ScriptedDNSServer(behaviour) as server:
        assert_run(run_plugin("check_dnsbl", *argv(expect, server.nameserver)), "DNSBL", expect)


def test_catalogue_covers_every_item() -> None:
    assert len({c.id for c in DNSBL_CASES}) == len(DNSBL_CASES)
    assert {c.item for c in DNSBL_CASES} == {"3", "4", "10", "11", "12"}


def test_one_round_is_real() -> None:
    """slow-listing's "one round" is what the server saw: the TXT reason and both test entries
    were asked, each once, over UDP."""
    case = next(c for c in DNSBL_CASES if c.id == "slow-listing")
    with ScriptedDNSServer(DNSBehaviour(case.records, fault=case.fault)) as server:
        assert_run(run_plugin("check_dnsbl", *argv(case.expect[0], server.nameserver)),
                   "DNSBL", case.expect[0])
        asked = sorted((q.qname, q.rdtype) for q in server.queries)
    assert asked == [("1.0.0.127.bl.lab.test.", "A"), ("10.2.0.192.bl.lab.test.", "A"),
                     ("10.2.0.192.bl.lab.test.", "TXT"), ("2.0.0.127.bl.lab.test.", "A")]


# -- the scripted server's faults used above (additions to lab/dnsd.py) ------------------------

def _ask(server: ScriptedDNSServer, name: str, rdtype: str = "A",
         tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, server.host, timeout=1.0, port=server.port)


def test_reflect_sends_the_query_back() -> None:
    with ScriptedDNSServer(DNSBehaviour(WORLD, fault=Fault(reflect=True))) as server:
        query = dns.message.make_query("mx.lab.test", "A")
        wire = query.to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.sendto(wire, (server.host, server.port))
            back, _ = sock.recvfrom(65535)
    reply = dns.message.from_wire(back)
    assert not reply.flags & dns.flags.QR
    assert reply.id == query.id and reply.question == query.question and not reply.answer


def test_reflect_with_truncate_reflects_over_tcp_only() -> None:
    behaviour = DNSBehaviour(WORLD, fault=Fault(truncate=True, reflect=True))
    with ScriptedDNSServer(behaviour) as server:
        udp = _ask(server, "mx.lab.test")
        assert udp.flags & dns.flags.TC and udp.flags & dns.flags.QR
        with pytest.raises(dns.query.BadResponse):  # dnspython refuses the reflected query too
            _ask(server, "mx.lab.test", tcp=True)


@pytest.mark.parametrize("fault", [Fault(other_port=True), Fault(other_address="127.0.0.53")])
def test_answers_from_elsewhere_are_refused_by_dnspython_too(fault: Fault) -> None:
    with ScriptedDNSServer(DNSBehaviour(WORLD, fault=fault)) as server, \
            pytest.raises(dns.query.UnexpectedSource):
        _ask(server, "mx.lab.test")


def test_fault_limited_to_some_types() -> None:
    faults = {"mx.lab.test": Fault(rcode="SERVFAIL", rdtypes=("AAAA",))}
    with ScriptedDNSServer(DNSBehaviour(WORLD, faults=faults)) as server:
        assert _ask(server, "mx.lab.test").answer[0][0].to_text() == "192.0.2.20"
        assert _ask(server, "mx.lab.test", "AAAA").rcode() == dns.rcode.SERVFAIL
