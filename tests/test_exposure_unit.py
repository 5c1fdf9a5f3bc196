"""Unit tests of the exposure probe: targets and limits, the allow list, the connect scan's
classification, the SMB negotiate requests and replies, and the verdict."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

import pytest

from lab.filtered import FilteredPort
from lab.smbd import smb1_dialects, smb1_reply, smb2_offered, smb2_reply
from mailprobe.findings import CRITICAL, UNKNOWN, WARNING
from mailprobe.net.deadline import Deadline
from mailprobe.probes.exposure.model import (
    Endpoint,
    ExposureReport,
    Listener,
    PortResult,
    PortState,
    RelayResult,
    Service,
    SMBFacts,
    SMTPGreeting,
)
from mailprobe.probes.exposure.scan import ConnectScan, classify_errno
from mailprobe.probes.exposure.smb import (
    frame,
    read_smb1_negotiate,
    read_smb2_negotiate,
    smb1_negotiate,
    smb2_negotiate,
)
from mailprobe.probes.exposure.targets import (
    DEFAULT_MAX_ADDRESSES,
    HARD_LIMIT,
    AllowList,
    TargetError,
    build_targets,
    parse_entry,
    parse_prefix,
)
from mailprobe.probes.exposure.verdict import assess, ok_text, unsanctioned_text

net = ipaddress.ip_network
ip = ipaddress.ip_address


# -- targets and limits ---------------------------------------------------------------------------

def test_entries_are_addresses_prefixes_or_names() -> None:
    assert parse_entry("192.0.2.7") == ip("192.0.2.7")
    assert parse_entry(" 192.0.2.0/24 ") == net("192.0.2.0/24")
    assert parse_entry("192.0.2.9/24") == net("192.0.2.0/24")  # host bits: its prefix
    assert parse_entry("2001:db8::/112") == net("2001:db8::/112")
    assert parse_entry("mx.example.org") == "mx.example.org"
    with pytest.raises(TargetError, match="not an IPv4/IPv6 prefix"):
        parse_entry("192.0.2.0/33")
    with pytest.raises(TargetError, match="not an IPv4/IPv6 prefix"):
        parse_prefix("mx.example.org")
    assert parse_prefix("192.0.2.7") == net("192.0.2.7/32")


def test_a_prefix_leaves_out_its_network_and_broadcast_addresses() -> None:
    targets = build_targets([net("192.0.2.0/29")], [])
    assert list(targets) == [f"192.0.2.{n}" for n in range(1, 7)]
    assert len(targets) == 6
    assert "192.0.2.0" not in targets and "192.0.2.3" in targets and "192.0.2.8" not in targets
    # /31 and /32 have no network or broadcast address
    assert list(build_targets([net("192.0.2.0/31")], [])) == ["192.0.2.0", "192.0.2.1"]
    # IPv6 has none either
    assert len(build_targets([net("2001:db8::/126")], [])) == 4


def test_a_single_address_is_scanned_even_where_a_prefix_would_leave_it_out() -> None:
    targets = build_targets([net("192.0.2.0/30")], [ip("192.0.2.0")])
    assert list(targets) == ["192.0.2.0", "192.0.2.1", "192.0.2.2"]
    targets = build_targets([net("192.0.2.0/30"), net("192.0.2.3/32")], [])
    assert list(targets) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


def test_overlapping_targets_are_scanned_once() -> None:
    targets = build_targets([net("192.0.2.0/25"), net("192.0.2.0/24"), net("192.0.2.128/25")],
                            [ip("192.0.2.5"), ip("::1")])
    addresses = list(targets)
    assert len(addresses) == len(set(addresses)) == len(targets)
    assert "::1" in addresses and "192.0.2.128" in addresses and "192.0.2.255" not in addresses


def test_prefixes_over_the_limit_are_refused_unless_forced() -> None:
    assert DEFAULT_MAX_ADDRESSES == 65536
    assert len(build_targets([net("10.1.0.0/16")], [])) == 65534
    with pytest.raises(TargetError, match=r"10\.0\.0\.0/15 has 131072 addresses, more than "
                                          r"the limit of 65536 \(raise --max-addresses or give "
                                          r"--force\)"):
        build_targets([net("10.0.0.0/15")], [])
    assert len(build_targets([net("10.0.0.0/15")], [], force=True)) == 131070
    with pytest.raises(TargetError, match="more than the limit of 16777216"):
        build_targets([net("10.0.0.0/7")], [], force=True)
    assert HARD_LIMIT == 1 << 24
    # IPv6: a /112 is the same 65536 addresses; a /64 never
    assert len(build_targets([net("2001:db8::/112")], [])) == 65536
    with pytest.raises(TargetError, match="more than the limit"):
        build_targets([net("2001:db8::/111")], [])
    with pytest.raises(TargetError, match="more than the limit"):
        build_targets([net("2001:db8::/64")], [], force=True)


def test_the_limit_applies_to_the_total_too() -> None:
    with pytest.raises(TargetError, match="the targets total 508 addresses, more than the "
                                          "limit of 300"):
        build_targets([net("10.1.0.0/24"), net("10.2.0.0/24")], [], max_addresses=300)
    assert len(build_targets([net("10.1.0.0/24")], [], max_addresses=256)) == 254
    with pytest.raises(TargetError, match="has 256 addresses"):
        build_targets([net("10.1.0.0/24")], [], max_addresses=255)


@pytest.mark.parametrize("prefix, why", [
    ("0.0.0.0/8", "'this network'"), ("224.0.0.0/24", "multicast"),
    ("240.0.0.0/24", "reserved"), ("ff02::/112", "multicast"),
    ("::ffff:192.0.2.0/120", "IPv4-mapped"), ("0.0.0.0/4", "'this network'"),
])
def test_ranges_without_hosts_are_refused(prefix: str, why: str) -> None:
    with pytest.raises(TargetError, match=f"cannot be scanned: it includes {why}"):
        build_targets([net(prefix)], [], force=True)


@pytest.mark.parametrize("address", ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::",
                                     "ff02::1", "::ffff:192.0.2.1"])
def test_addresses_that_cannot_be_hosts_are_refused(address: str) -> None:
    with pytest.raises(TargetError, match="cannot be scanned"):
        build_targets([], [ip(address)])


def test_family_options_refuse_the_other_family() -> None:
    with pytest.raises(TargetError, match=r"-4 given but 2001:db8::/120 is IPv6"):
        build_targets([net("2001:db8::/120")], [], family=4)
    with pytest.raises(TargetError, match=r"-6 given but 192\.0\.2\.1 is IPv4"):
        build_targets([], [ip("192.0.2.1")], family=6)


def test_allow_list_sanctions_addresses_and_prefixes() -> None:
    allow = AllowList()
    allow.add(ip("192.0.2.25"))
    allow.add(ip("192.0.2.26"), "mx.example.org")
    allow.add(net("198.51.100.0/28"))
    allow.add(net("2001:db8::25/128"))
    assert allow.sanctions("192.0.2.25") and allow.sanctions("198.51.100.15")
    assert allow.sanctions("2001:db8::25")
    assert not allow.sanctions("192.0.2.27") and not allow.sanctions("198.51.100.16")
    # single addresses are mailers (expected to answer); a prefix only permits listening
    assert allow.mailers() == ["192.0.2.25", "192.0.2.26", "2001:db8::25"]
    assert allow.label("192.0.2.26") == "mx.example.org (192.0.2.26)"
    assert allow.label("192.0.2.25") == "192.0.2.25"


def test_services_by_port() -> None:
    assert Service.of_port(25) is Service.SMTP and Service.of_port(2525) is Service.SMTP
    assert Service.of_port(465) is Service.SMTPS and Service.SMTPS.is_smtp
    assert Service.of_port(139) is Service.NETBIOS and Service.of_port(445) is Service.SMB
    assert not Service.SMB.is_smtp
    assert str(Endpoint("::1", 25)) == "[::1]:25" and str(Endpoint("192.0.2.1", 25)) == \
        "192.0.2.1:25"


# -- the connect scan -----------------------------------------------------------------------------

@pytest.mark.parametrize("code, state", [
    (0, PortState.OPEN), (errno.ECONNREFUSED, PortState.REFUSED),
    (errno.ETIMEDOUT, PortState.FILTERED), (errno.EHOSTUNREACH, PortState.UNREACHABLE),
    (errno.ENETUNREACH, PortState.ERROR), (errno.EADDRNOTAVAIL, PortState.ERROR),
    (errno.EACCES, PortState.ERROR), (errno.EMFILE, PortState.ERROR),
])
def test_connect_errors_are_classified(code: int, state: PortState) -> None:
    got, why = classify_errno(code)
    assert got is state
    assert bool(why) == (state not in (PortState.OPEN, PortState.REFUSED))
    assert state.judged == (state not in (PortState.ERROR, PortState.NOT_PROBED))


def _scan(endpoints: list[Endpoint], deadline: Deadline, **kwargs: object) -> dict[Endpoint,
                                                                                 PortResult]:
    found: dict[Endpoint, PortResult] = {}

    def record(result: PortResult) -> None:
        assert result.endpoint not in found, "recorded twice"
        found[result.endpoint] = result

    ConnectScan(deadline, **kwargs).run(endpoints, record)  # type: ignore[arg-type]
    return found


def test_scan_tells_open_refused_and_filtered_apart() -> None:
    host = "127.77.3.1"
    with socket.socket() as listener, FilteredPort(host) as filtered:
        listener.bind((host, 0))
        listener.listen(8)
        open_port = listener.getsockname()[1]
        with socket.socket() as probe:
            probe.bind((host, 0))
            closed_port = probe.getsockname()[1]  # bound, not listening: refused
            endpoints = [Endpoint(host, open_port), Endpoint(host, closed_port),
                         Endpoint(host, filtered.port)]
            found = _scan(endpoints, Deadline(10), connect_timeout=0.5, max_in_flight=2)
    assert [found[e].state for e in endpoints] == [PortState.OPEN, PortState.REFUSED,
                                                   PortState.FILTERED]
    assert found[endpoints[2]].detail == "no answer within 0.5s"


def test_scan_of_many_addresses_respects_the_concurrency_bound() -> None:
    endpoints = [Endpoint(f"127.77.4.{n}", 9) for n in range(1, 201)]
    found = _scan(endpoints, Deadline(10), max_in_flight=7)
    assert len(found) == 200
    assert {r.state for r in found.values()} == {PortState.REFUSED}


def test_what_the_deadline_leaves_unprobed_is_not_probed_never_filtered() -> None:
    with FilteredPort("127.77.3.2") as filtered:
        endpoints = [Endpoint("127.77.3.2", filtered.port)] + [
            Endpoint("127.77.3.3", port) for port in (9, 10, 11)]
        found: dict[Endpoint, PortResult] = {}
        finished = ConnectScan(Deadline(0.3), connect_timeout=5, max_in_flight=1).run(
            endpoints, lambda r: found.setdefault(r.endpoint, r))
    assert not finished
    # the one started was cut short (not probed, never "filtered"); the others never started
    assert list(found) == endpoints[:1]
    assert found[endpoints[0]].state is PortState.NOT_PROBED
    assert "time budget" in found[endpoints[0]].detail


def test_an_unusable_source_address_is_an_error() -> None:
    endpoint = Endpoint("127.77.3.4", 9)
    found = _scan([endpoint], Deadline(5), source_address="192.0.2.1")  # not on this host
    assert found[endpoint].state is PortState.ERROR
    assert "source address" in found[endpoint].detail


# -- SMB ------------------------------------------------------------------------------------------

def test_smb1_negotiate_offers_only_nt_lm_0_12() -> None:
    request = smb1_negotiate()
    assert request[:4] == frame(request[4:])[:4]
    message = request[4:]
    assert message[:5] == b"\xffSMB\x72" and len(message) == int.from_bytes(request[1:4], "big")
    assert smb1_dialects(message) == [b"NT LM 0.12"]


def test_smb2_negotiate_offers_2_0_2_to_3_1_1_with_the_preauth_context() -> None:
    message = smb2_negotiate(client_guid=b"g" * 16, salt=b"s" * 32)[4:]
    assert message[:4] == b"\xfeSMB" and struct.unpack_from("<H", message, 12)[0] == 0
    assert smb2_offered(message) == [0x0202, 0x0210, 0x0300, 0x0302, 0x0311]
    offset, count = struct.unpack_from("<IH", message, 64 + 28)
    assert offset % 8 == 0 and count == 1
    context_type, length = struct.unpack_from("<HH", message, offset)
    assert context_type == 1 and length == 38 and message[offset + 8 + 6:] == b"s" * 32


def test_smb1_replies_are_read() -> None:
    request = smb1_negotiate()[4:]
    assert read_smb1_negotiate(smb1_reply(request, 0)) == (True, "")
    offered, why = read_smb1_negotiate(smb1_reply(request, 0xFFFF))
    assert offered is False and "0xFFFF" in why
    assert read_smb1_negotiate(smb2_reply(smb2_negotiate()[4:], 0x0311))[0] is False
    assert read_smb1_negotiate(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 40) == (
        None, "the reply is not an SMB message")
    error = bytearray(smb1_reply(request, 0))
    error[5:9] = struct.pack("<I", 0xC0000002)
    assert read_smb1_negotiate(bytes(error)) == (False, "declined with status 0xc0000002")
    assert read_smb1_negotiate(smb1_reply(request, 3))[0] is None  # a dialect never offered
    assert read_smb1_negotiate(b"\xffSMB")[0] is None  # truncated


def test_smb2_replies_are_read() -> None:
    request = smb2_negotiate()[4:]
    assert read_smb2_negotiate(smb2_reply(request, 0x0311)) == ("3.1.1", "")
    assert read_smb2_negotiate(smb2_reply(request, 0x0202)) == ("2.0.2", "")
    assert read_smb2_negotiate(smb2_reply(request, None)) == (
        "", "refused the negotiate with status 0xc00000bb")
    assert read_smb2_negotiate(smb1_reply(smb1_negotiate()[4:], 0))[1] == "answered in SMB1 only"
    assert read_smb2_negotiate(b"garbage" * 20)[1] == "the reply is not an SMB2 message"


# -- the verdict ------------------------------------------------------------------------------

def _report(**kwargs: object) -> ExposureReport:
    values: dict[str, object] = {"hosts": 16, "ports": (25,), "probes": 16, **kwargs}
    return ExposureReport(**values)  # type: ignore[arg-type]


def _smtp(address: str, banner: str = "220 printer.example.org ESMTP", sanctioned: bool = False,
          relay: RelayResult | None = None) -> Listener:
    return Listener(Endpoint(address, 25), sanctioned=sanctioned,
                    greeting=SMTPGreeting(banner=banner, banner_code=220), relay=relay)


def test_nothing_open_is_ok_without_findings() -> None:
    report = _report(counts={PortState.REFUSED: 16})
    assert assess(report) == []
    assert unsanctioned_text(report) == "no unsanctioned SMTP listener"
    assert ok_text(report) == "nothing open on 16 hosts (ports 25)"


def test_sanctioned_listeners_only_is_ok() -> None:
    report = _report(counts={PortState.OPEN: 1, PortState.REFUSED: 15},
                     listeners=[_smtp("192.0.2.25", sanctioned=True)],
                     sanctioned_up=["192.0.2.25"])
    assert assess(report) == []
    assert ok_text(report) == "no unsanctioned SMTP listener on 16 hosts; 1 sanctioned mailer " \
                              "answers"


def test_unsanctioned_listeners_are_named_with_their_banner() -> None:
    listeners = [_smtp(f"192.0.2.{n}") for n in range(1, 6)]
    listeners[1].greeting = SMTPGreeting(problem="no SMTP banner: timed out")
    report = _report(listeners=listeners)
    assert unsanctioned_text(report) == (
        "5 unsanctioned SMTP listeners: 192.0.2.1:25 (220 printer.example.org ESMTP), "
        "192.0.2.2:25 (no SMTP banner: timed out), 192.0.2.3:25 (220 printer.example.org "
        "ESMTP), +2 more")
    assert assess(report) == []  # their state is the plugin's -w/-c on the count


def test_any_netbios_port_is_critical_and_smbv1_is_noted() -> None:
    report = _report(ports=(25, 139, 445), listeners=[
        Listener(Endpoint("192.0.2.9", 445), smb=SMBFacts(smb1=True, smb2_dialect="3.1.1")),
        Listener(Endpoint("192.0.2.10", 139)),
        Listener(Endpoint("192.0.2.11", 445), smb=SMBFacts(smb1=False))])
    [finding] = assess(report)
    assert finding.level == CRITICAL
    assert finding.text == ("3 NetBIOS/SMB ports open: 192.0.2.9:445 (SMBv1 offered), "
                            "192.0.2.10:139, 192.0.2.11:445")


def test_a_sanctioned_mailer_that_answers_nowhere_is_a_warning() -> None:
    down = [PortResult(Endpoint("192.0.2.25", 25), PortState.REFUSED),
            PortResult(Endpoint("192.0.2.25", 587), PortState.FILTERED, "no answer within 3s")]
    [finding] = assess(_report(sanctioned_down={"192.0.2.25": down}))
    assert finding.level == WARNING
    assert finding.text == ("sanctioned mailer down or filtered: 192.0.2.25 (refused on 25, "
                            "no answer on 587)")


def test_ports_not_judged_are_unknown() -> None:
    report = _report(counts={PortState.NOT_PROBED: 4, PortState.ERROR: 2, PortState.REFUSED: 10},
                     results=[PortResult(Endpoint("192.0.2.1", 25), PortState.ERROR, "no route"),
                              PortResult(Endpoint("192.0.2.2", 25), PortState.ERROR, "no route")])
    findings = assess(report)
    assert [f.level for f in findings] == [UNKNOWN, UNKNOWN]
    assert findings[0].text.startswith("4 of 16 ports not probed: the time budget ran out")
    assert findings[1].text == "2 ports could not be probed: no route"


def test_relay_series_results() -> None:
    relays = _smtp("192.0.2.1", relay=RelayResult(38, ["plain", "sender-null"]))
    closed = _smtp("192.0.2.2", relay=RelayResult(38, []))
    doubtful = _smtp("192.0.2.3", relay=RelayResult(38, [], "control postmaster@x.test not "
                                                            "accepted"))
    findings = assess(_report(listeners=[relays, closed, doubtful]))
    assert [(f.level, f.text) for f in findings] == [
        (CRITICAL, "open relay: 192.0.2.1:25 (2 of 38 attempts accepted)"),
        (UNKNOWN, "relay series inconclusive on 192.0.2.3:25 (control postmaster@x.test not "
                  "accepted)")]
    # a sanctioned mailer's relay series is check_open_relay's job, not this check's
    assert assess(_report(listeners=[_smtp("192.0.2.4", sanctioned=True,
                                           relay=RelayResult(38, ["plain"]))])) == []
