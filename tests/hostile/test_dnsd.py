"""The scripted DNS server itself: it answers like an authoritative server, and each fault
does what it says (seen from dnspython's low-level query functions)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from lab.dnsd import DNSBehaviour, Fault, ScriptedDNSServer

RECORDS = """
mx.lab.test.          A     127.0.0.1
lab.test.             TXT   "v=spf1 " "-all"
alias.lab.test.       CNAME mx.lab.test.
loop1.lab.test.       CNAME loop2.lab.test.
loop2.lab.test.       CNAME loop1.lab.test.
*.bl.lab.test.        A     127.0.0.2
2.0.0.127.bl.lab.test. A    127.0.0.3
""" + "\n".join(f"big.lab.test. A 10.0.{n // 250}.{n % 250}" for n in range(100))


def ask(server: ScriptedDNSServer, name: str, rdtype: str = "A", tcp: bool = False,
        timeout: float = 1.0) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, server.host, timeout=timeout, port=server.port)


@pytest.fixture(scope="module")
def good() -> Iterator[ScriptedDNSServer]:
    with ScriptedDNSServer(DNSBehaviour(RECORDS)) as server:
        yield server


def test_answers_nxdomain_nodata_and_cname(good: ScriptedDNSServer) -> None:
    assert ask(good, "mx.lab.test").answer[0][0].to_text() == "127.0.0.1"
    assert ask(good, "nope.lab.test").rcode() == dns.rcode.NXDOMAIN
    nodata = ask(good, "mx.lab.test", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    chain = ask(good, "alias.lab.test")
    assert [r.rdtype for r in chain.answer] == [5, 1]  # CNAME, then A
    assert b"".join(ask(good, "lab.test", "TXT").answer[0][0].strings) == b"v=spf1 -all"


def test_wildcards_stop_at_existing_names(good: ScriptedDNSServer) -> None:
    assert ask(good, "10.2.0.192.bl.lab.test").answer[0][0].to_text() == "127.0.0.2"
    assert ask(good, "2.0.0.127.bl.lab.test").answer[0][0].to_text() == "127.0.0.3"
    # 0.0.127.bl.lab.test exists (an empty non-terminal): the wildcard does not cover below it
    assert not ask(good, "1.0.0.127.bl.lab.test").answer


def test_big_answers_are_truncated_on_udp_only(good: ScriptedDNSServer) -> None:
    udp = ask(good, "big.lab.test")
    assert udp.flags & dns.flags.TC and not udp.answer
    assert len(ask(good, "big.lab.test", tcp=True).answer[0]) == 100


def test_cname_loop_is_answered_not_followed_forever(good: ScriptedDNSServer) -> None:
    answer = ask(good, "loop1.lab.test")
    assert {r.name.to_text() for r in answer.answer} == {"loop1.lab.test.", "loop2.lab.test."}


@pytest.mark.parametrize(("fault", "rcode"), [(Fault(rcode="SERVFAIL"), dns.rcode.SERVFAIL),
                                              (Fault(rcode="REFUSED"), dns.rcode.REFUSED)])
def test_rcode_faults(fault: Fault, rcode: int) -> None:
    with ScriptedDNSServer(DNSBehaviour(RECORDS, fault=fault)) as server:
        assert ask(server, "mx.lab.test").rcode() == rcode


def test_fault_for_a_subtree_only() -> None:
    behaviour = DNSBehaviour(RECORDS, faults={"bl.lab.test": Fault(rcode="SERVFAIL")})
    with ScriptedDNSServer(behaviour) as server:
        assert ask(server, "x.bl.lab.test").rcode() == dns.rcode.SERVFAIL
        assert ask(server, "mx.lab.test").rcode() == dns.rcode.NOERROR


def test_fault_for_some_query_types_only() -> None:
    """``Fault(rdtypes=...)`` breaks one type of question and answers the others."""
    behaviour = DNSBehaviour(RECORDS, faults={"lab.test": Fault(rcode="SERVFAIL",
                                                                rdtypes=("MX",))})
    with ScriptedDNSServer(behaviour) as server:
        assert ask(server, "lab.test", "MX").rcode() == dns.rcode.SERVFAIL
        assert ask(server, "mx.lab.test").rcode() == dns.rcode.NOERROR
        assert ask(server, "mx.lab.test").answer


def test_silent_and_wrong_id_never_give_an_answer() -> None:
    for fault in (Fault(silent=True), Fault(wrong_id=True), Fault(garbage=True)):
        with ScriptedDNSServer(DNSBehaviour(RECORDS, fault=fault)) as server:
            with pytest.raises((dns.exception.Timeout, dns.query.BadResponse,
                                dns.exception.FormError, dns.message.ShortHeader)):
                ask(server, "mx.lab.test", timeout=0.5)
            assert server.queries[0].qname == "mx.lab.test."


def test_truncate_fault_answers_over_tcp_and_no_tcp_closes() -> None:
    with ScriptedDNSServer(DNSBehaviour(RECORDS, fault=Fault(truncate=True))) as server:
        assert ask(server, "mx.lab.test").flags & dns.flags.TC
        assert ask(server, "mx.lab.test", tcp=True).answer
    fault = Fault(truncate=True, no_tcp=True)
    with (ScriptedDNSServer(DNSBehaviour(RECORDS, fault=fault)) as server,
          pytest.raises((EOFError, ConnectionError))):
        ask(server, "mx.lab.test", tcp=True)


def test_stop_frees_the_port() -> None:
    server = ScriptedDNSServer(DNSBehaviour(RECORDS)).start()
    port = server.port
    server.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))
