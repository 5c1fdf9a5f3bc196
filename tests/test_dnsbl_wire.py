"""Unit tests: check_dnsbl's DNS wire codec (against dnspython's reading of the same bytes) and
the fan-out's rules for what counts as the answer to a question."""

from __future__ import annotations

import contextlib
import struct

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailprobe.net import dnsfanout, dnswire
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Nameserver

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- names and queries -------------------------------------------------------------------------

def test_names_are_lower_case_label_tuples():
    assert dnswire.to_name("10.2.0.192.BL.Lab.Test.") == (b"10", b"2", b"0", b"192", b"bl",
                                                          b"lab", b"test")
    assert dnswire.to_name("bücher.example") == (b"xn--bcher-kva", b"example")
    assert dnswire.name_text(dnswire.to_name("Mail.Example.ORG")) == "mail.example.org"


@pytest.mark.parametrize("bad", ["", ".", "a..b", "x" * 64 + ".example", "a b.example",
                                 "a\\.b", "nul\x00.example", ".".join(["abcdefgh"] * 29)])
def test_bad_names(bad):
    with pytest.raises(dnswire.WireError):
        dnswire.to_name(bad)


def test_query_is_what_dnspython_reads():
    wire = dnswire.make_query(0x1234, dnswire.to_name("10.2.0.192.bl.lab.test"), dnswire.TXT)
    message = dns.message.from_wire(wire)
    assert message.id == 0x1234
    assert message.flags == dns.flags.RD  # a standard query, recursion desired, no EDNS
    assert message.question[0].name == dns.name.from_text("10.2.0.192.bl.lab.test.")
    assert message.question[0].rdtype == 16 and message.question[0].rdclass == 1
    assert message.edns < 0


# -- reading answers ---------------------------------------------------------------------------

def answer(qname: str, rdtype: str, *records: str, rcode: int = dns.rcode.NOERROR,
           flags: int = 0) -> bytes:
    """A response made and written by dnspython (name compression included)."""
    query = dns.message.make_query(qname, rdtype)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    response.flags |= flags
    for text in records:
        name, kind, data = text.split(None, 2)
        response.answer.append(dns.rrset.from_text(name, 300, "IN", kind, data))
    return response.to_wire()


def test_answers_read_as_dnspython_reads_them():
    wire = answer("x.bl.test", "A", "x.bl.test. CNAME y.bl.test.", "y.bl.test. A 127.0.0.2",
                  "y.bl.test. A 127.0.0.4")
    ours, theirs = dnswire.parse(wire), dns.message.from_wire(wire)
    assert ours.id == theirs.id and ours.is_response and ours.rcode == 0
    assert ours.question == ((dnswire.to_name("x.bl.test"), dnswire.A, 1),)
    assert [(r.name, r.rdtype) for r in ours.answer] == [
        (dnswire.to_name("x.bl.test"), dnswire.CNAME), (dnswire.to_name("y.bl.test"), 1),
        (dnswire.to_name("y.bl.test"), 1)]
    assert ours.answer[0].target == dnswire.to_name("y.bl.test")
    assert [r.text() for r in ours.answer[1:]] == [rr.to_text() for rr in theirs.answer[1]]
    txt = dnswire.parse(answer("x.bl.test", "TXT", 'x.bl.test. TXT "Listed, " "see x" ""'))
    assert txt.answer[0].text() == "Listed, see x"
    six = dnswire.parse(answer("x.test", "AAAA", "x.test. AAAA 2001:DB8:0:0::10"))
    assert six.answer[0].text() == "2001:db8::10"


def test_flags_and_rcode():
    nx = dnswire.parse(answer("x.bl.test", "A", rcode=dns.rcode.NXDOMAIN, flags=dns.flags.TC))
    assert (nx.rcode, nx.truncated, nx.is_response, nx.opcode) == (3, True, True, 0)
    query = dnswire.parse(dnswire.make_query(7, dnswire.to_name("x.test"), dnswire.A))
    assert not query.is_response


def header(qdcount: int = 1, ancount: int = 1) -> bytes:
    return struct.pack("!HHHHHH", 1, 0x8180, qdcount, ancount, 0, 0)


QUESTION = b"\x01x\x04test\x00" + struct.pack("!HH", 1, 1)


@pytest.mark.parametrize(("wire", "words"), [
    (b"\x00\x01\x80", "too short"),
    (header() + QUESTION, "name runs past the end"),
    (header() + QUESTION + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 5)
     + b"\x7f\x00\x00\x02\x00", "an A record of 5 octets"),
    (header() + QUESTION + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 8) + b"\x7f\x00",
     "runs past the end"),
    (header() + QUESTION + b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, 3) + b"\x05ab",
     "TXT string runs past"),
    (header(ancount=0)[:4] + struct.pack("!HHHH", 1, 0, 0, 0) + b"\xc0\x0c", "backwards"),
    (header(ancount=0) + b"\x01x\xc0\x0c" + struct.pack("!HH", 1, 1), "backwards"),  # a loop
    (header(ancount=0) + b"\x41x\x00" + struct.pack("!HH", 1, 1), "label type"),
    (header(ancount=0) + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63 + b"\x3f" + b"a" * 63
     + b"\x3f" + b"a" * 63 + b"\x00" + struct.pack("!HH", 1, 1), "longer than 255"),
])
def test_malformed_messages_raise_wire_error(wire, words):
    with pytest.raises(dnswire.WireError, match=words):
        dnswire.parse(wire)


@SETTINGS
@given(st.binary(max_size=600))
def test_parser_raises_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(dnswire.WireError):
        dnswire.parse(data)


GOOD = answer("10.2.0.192.bl.lab.test", "A", "10.2.0.192.bl.lab.test. A 127.0.0.4",
              '10.2.0.192.bl.lab.test. TXT "a reason"', "x.bl.lab.test. CNAME y.bl.lab.test.")


@SETTINGS
@given(st.integers(0, len(GOOD) - 1), st.integers(0, 255), st.integers(0, len(GOOD)))
def test_damaged_answers_raise_wire_error_or_read_like_dnspython(offset: int, byte: int,
                                                                 cut: int) -> None:
    """A damaged message either fails to parse, or parses to what dnspython reads from it."""
    data = (GOOD[:offset] + bytes([byte]) + GOOD[offset + 1:])[:cut]
    try:
        ours = dnswire.parse(data)
    except dnswire.WireError:
        return
    try:
        theirs = dns.message.from_wire(data, ignore_trailing=True, one_rr_per_rrset=True)
    except dns.exception.DNSException:
        return  # e.g. a record type whose data we keep raw, or a section we do not read
    assert ours.id == theirs.id and ours.rcode == (theirs.flags & 0xF)
    assert [q[0] for q in ours.question] == [
        tuple(label.lower() for label in q.name.labels[:-1]) for q in theirs.question]
    assert len(ours.answer) == sum(len(rrset) for rrset in theirs.answer)


# -- what counts as the answer (dnsfanout) ------------------------------------------------------

def question(qname: str = "10.2.0.192.bl.lab.test", rdtype: int = dnswire.A) -> dnsfanout._Question:
    return dnsfanout._Question([0], dnswire.to_name(qname), rdtype)


def test_mismatches_are_named():
    q = question()
    ok = dnswire.parse(answer("10.2.0.192.bl.lab.test", "A"))
    assert dnsfanout._mismatch(ok, q) is None
    reflected = dnswire.parse(dnswire.make_query(1, q.qname, dnswire.A))
    assert "QR flag clear" in (dnsfanout._mismatch(reflected, q) or "")
    other = dnswire.parse(answer("other.bl.lab.test", "A"))
    assert "another question (other.bl.lab.test A)" in (dnsfanout._mismatch(other, q) or "")
    txt = dnswire.parse(answer("10.2.0.192.bl.lab.test", "TXT"))
    assert "another question" in (dnsfanout._mismatch(txt, q) or "")


def test_records_follow_cnames_and_refuse_strays():
    q = question("x.bl.test")
    chained = dnswire.parse(answer("x.bl.test", "A", "x.bl.test. CNAME y.bl.test.",
                                   "y.bl.test. A 127.0.0.2"))
    assert dnsfanout._records(chained, q) == ["127.0.0.2"]
    nodata = dnswire.parse(answer("x.bl.test", "A", "x.bl.test. CNAME y.bl.test."))
    assert dnsfanout._records(nodata, q) is None  # a CNAME to a name without A: no data
    stray = dnswire.parse(answer("x.bl.test", "A", "elsewhere.invalid. A 127.0.0.2"))
    failure = dnsfanout._records(stray, q)
    assert isinstance(failure, dnsfanout.Failure) and failure.brief == "unusable answer"
    wrong_type = dnswire.parse(answer("x.bl.test", "A", 'x.bl.test. TXT "listed"'))
    assert isinstance(dnsfanout._records(wrong_type, q), dnsfanout.Failure)
    loop = dnswire.parse(answer("x.bl.test", "A", "x.bl.test. CNAME y.bl.test.",
                                "y.bl.test. CNAME x.bl.test."))
    looped = dnsfanout._records(loop, q)
    assert isinstance(looped, dnsfanout.Failure) and "CNAME chain is too long" in looped.reason


def test_the_same_question_is_asked_once():
    """Duplicates share one query (and one outcome), in the caller's order."""
    from lab.dnsd import DNSBehaviour, ScriptedDNSServer

    records = "2.0.0.127.bl.lab.test. A 127.0.0.2\n1.0.0.127.bl.lab.test. TXT \"x\""
    with ScriptedDNSServer(DNSBehaviour(records)) as server:
        outcomes = dnsfanout.ask(
            [("2.0.0.127.bl.lab.test", "A"), ("1.0.0.127.bl.lab.test", "A"),
             ("2.0.0.127.BL.lab.test.", "A"), ("bad..name", "A")],
            [Nameserver.parse(server.nameserver)], Deadline(5), timeout=2, per_try=1)
        asked = sorted(q.qname for q in server.queries)
    assert outcomes[:3] == [["127.0.0.2"], None, ["127.0.0.2"]]
    assert isinstance(outcomes[3], dnsfanout.Failure) and outcomes[3].brief == "bad name"
    assert asked == ["1.0.0.127.bl.lab.test.", "2.0.0.127.bl.lab.test."]


def test_system_nameservers_from_resolv_conf(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.org\nnameserver 192.0.2.53\n"
                    "nameserver fe80::1%eth0\nnameserver not-an-address\noptions rotate\n"
                    "nameserver ::1\n")
    assert dnsfanout.system_nameservers(str(conf)) == [
        Nameserver("192.0.2.53"), Nameserver("fe80::1%eth0"), Nameserver("::1")]
    conf.write_text("search example.org\n")
    assert dnsfanout.system_nameservers(str(conf)) == [Nameserver("127.0.0.1")]
    assert dnsfanout.system_nameservers(str(tmp_path / "missing")) == [Nameserver("127.0.0.1")]


def test_check_dnsbl_does_not_import_dnspython():
    """The point of the codec: a check_dnsbl run (its modules, a fan-out, the system resolver
    list) loads no dnspython module, whose import cost a run about 40 ms of CPU."""
    import subprocess
    import sys

    code = ("import sys, mailprobe.checks.dnsbl, mailprobe.net.dnsfanout as f\n"
            "f.system_nameservers('/nonexistent')\n"
            "print(sorted(m for m in sys.modules if m == 'dns' or m.startswith('dns.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_question_wanted_only_if_another_finds_records():
    """A TXT reason is dropped (not waited for) when its A question finds nothing, and waited
    for (here: until its timeout) when the A question finds a listing."""
    from lab.dnsd import DNSBehaviour, Fault, ScriptedDNSServer

    records = "2.0.0.127.bl.lab.test. A 127.0.0.2"
    faults = {"bl.lab.test": Fault(silent=True, rdtypes=("TXT",))}
    with ScriptedDNSServer(DNSBehaviour(records, faults=faults)) as server:
        transcript: list[str] = []
        outcomes = dnsfanout.ask(
            [("9.9.9.9.bl.lab.test", "A"), ("9.9.9.9.bl.lab.test", "TXT"),
             ("2.0.0.127.bl.lab.test", "A"), ("2.0.0.127.bl.lab.test", "TXT")],
            [Nameserver.parse(server.nameserver)], Deadline(5), timeout=1, per_try=1,
            transcript=transcript, wanted_if_found={1: 0, 3: 2})
    assert outcomes[:3] == [None, None, ["127.0.0.2"]]
    assert isinstance(outcomes[3], dnsfanout.Failure) and outcomes[3].brief == "timed out"
    assert any(line.startswith("9.9.9.9.bl.lab.test TXT -> not waited for") for line in transcript)
