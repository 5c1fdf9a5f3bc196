"""The benchmarks' delaying DNS forwarder relays real answers from a real server, UDP and TCP."""

from __future__ import annotations

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from lab.dnsdelay import DelayingForwarder
from lab.knot import KnotServer


@pytest.fixture(scope="module")
def knot():
    server = KnotServer({"delay.test": "mx A 192.0.2.25\n"}).start()
    yield server
    server.stop()


def _ask(forwarder: DelayingForwarder, name: str, tcp: bool) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, forwarder.host, port=forwarder.port, timeout=5)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_forwards_the_servers_answer(knot: KnotServer, tcp: bool) -> None:
    with DelayingForwarder(knot.nameserver, 0.01) as forwarder:
        answer = _ask(forwarder, "mx.delay.test", tcp)
        missing = _ask(forwarder, "nothing.delay.test", tcp)
        assert forwarder.queries == 2
    assert [rr.to_text() for rrset in answer.answer for rr in rrset] == ["192.0.2.25"]
    assert missing.rcode() == dns.rcode.NXDOMAIN


def test_no_answer_when_the_upstream_is_silent() -> None:
    # nothing listens upstream: the forwarder drops the query, the client times out
    with (DelayingForwarder("127.0.0.1:9", 0.0, upstream_timeout=0.2) as forwarder,
          pytest.raises(dns.exception.Timeout)):
        dns.query.udp(dns.message.make_query("x.test", "A"), forwarder.host,
                      port=forwarder.port, timeout=1)
