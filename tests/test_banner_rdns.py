"""check_banner_rdns against real Postfix instances and a real authoritative DNS server (Knot)
on loopback; a scripted server only for banner delays, a non-220 banner and a refused EHLO."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.knot import KnotServer
from lab.postfix import PostfixServer
from lab.process import free_port
from lab.smtpd import Behaviour, ScriptedSMTPServer
from tests.conftest import PluginRun, run_plugin

pytestmark = pytest.mark.integration

PLUGIN = "check_banner_rdns"
MX = "mx.lab.test"
GENERIC = "1-0-0-127.dynamic.lab.test"
IP6_REVERSE = ".".join(["0"] * 31) + ".ip6.arpa"  # the zone holding ::1's PTR (label "1")

# One Knot instance per DNS scenario: each serves its own 0.0.127.in-addr.arpa.
ZONES: dict[str, dict[str, str]] = {
    "good": {
        "lab.test": f"mx A 127.0.0.1\nmx AAAA ::1\n{GENERIC.split('.lab')[0]} A 127.0.0.1\n",
        "0.0.127.in-addr.arpa": f"1 PTR {MX}.\n",
        IP6_REVERSE: f"1 PTR {MX}.\n",
    },
    "noptr": {
        "lab.test": "mx A 127.0.0.1\n",
        "0.0.127.in-addr.arpa": "9 PTR other.lab.test.\n",
    },
    "unconfirmed": {
        "lab.test": "mx A 127.0.0.9\n",
        "0.0.127.in-addr.arpa": f"1 PTR {MX}.\n",
    },
    "generic": {
        "lab.test": f"{GENERIC.split('.lab')[0]} A 127.0.0.1\n",
        "0.0.127.in-addr.arpa": f"1 PTR {GENERIC}.\n",
    },
}


# -- servers ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dns() -> Iterator[dict[str, KnotServer]]:
    servers: dict[str, KnotServer] = {}
    try:
        for name, zones in ZONES.items():
            servers[name] = KnotServer(zones).start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="module")
def silent_dns() -> Iterator[str]:
    """A UDP port that receives queries and never answers (a dead resolver)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def _require_postfix() -> None:
    if not (shutil.which("postfix") or os.path.exists("/usr/sbin/postfix")):
        pytest.skip("postfix is not installed (run ./dev setup)")
    if os.geteuid() != 0:
        pytest.skip("Postfix needs root to start (postfix -c DIR start)")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for mx.lab.test that expires in 5 days."""
    directory = tmp_path_factory.mktemp("banner-rdns-tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "5",
         "-subj", f"/CN={MX}", "-addext", f"subjectAltName=DNS:{MX}"],
        check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture(scope="module")
def postfixes(certificate: tuple[Path, Path]) -> Iterator[dict[str, PostfixServer]]:
    """good: names match, STARTTLS, also on ::1; plain: names match, no STARTTLS;
    banner: banner says another name than EHLO; other: banner and EHLO say another name;
    generic: named like its generic PTR."""
    _require_postfix()
    cert, key = certificate
    ipv6 = os.path.exists("/proc/net/if_inet6")
    tls = {"smtpd_tls_security_level": "may", "smtpd_tls_cert_file": str(cert),
           "smtpd_tls_key_file": str(key)}
    specs = {
        "good": (PostfixServer, {"myhostname": MX, "smtpd_banner": "$myhostname ESMTP", **tls},
                 ipv6),
        "plain": (PostfixServer, {"myhostname": MX, "smtpd_banner": "$myhostname ESMTP"}, False),
        "banner": (PostfixServer, {"myhostname": MX, "smtpd_banner": "mail.other.test ESMTP"},
                   False),
        "other": (PostfixServer, {"myhostname": "mail.other.test",
                                  "smtpd_banner": "$myhostname ESMTP"}, False),
        "generic": (PostfixServer, {"myhostname": GENERIC, "smtpd_banner": "$myhostname ESMTP"},
                    False),
    }
    servers: dict[str, PostfixServer] = {}
    try:
        for name, (cls, settings, v6) in specs.items():
            servers[name] = cls(f"brdns-{name}", settings, ipv6=v6).start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def check(knot: KnotServer | str, server: PostfixServer | ScriptedSMTPServer | int,
          *args: str, host: str = "127.0.0.1") -> PluginRun:
    nameserver = knot if isinstance(knot, str) else knot.nameserver
    port = server if isinstance(server, int) else server.port
    return run_plugin(PLUGIN, "--nameserver", nameserver, "-H", host, "-p", str(port), *args)


PERFDATA = re.compile(r"^\d+(\.\d+)?s;[^;]*;[^;]*;0;$")


def assert_timings(run: PluginRun, *labels: str) -> None:
    for label in labels:
        assert PERFDATA.match(run.perfdata[label] + ";"), run.perfdata


# -- identity --------------------------------------------------------------------------------

def test_matching_identity_is_ok(dns, postfixes) -> None:
    run = check(dns["good"], postfixes["good"])
    assert run.returncode == 0, run.stdout
    assert run.summary == (f"BANNER_RDNS OK - 127.0.0.1 -> {MX} -> 127.0.0.1, banner {MX}")
    assert set(run.perfdata) == {"banner_time", "ehlo_time", "time"}
    assert_timings(run, "banner_time", "ehlo_time", "time")
    assert "OK: STARTTLS offered" in run.long_output
    assert f"OK: PTR {MX} resolves back to 127.0.0.1 (FCrDNS)" in run.long_output


def test_no_ptr_is_critical(dns, postfixes) -> None:
    run = check(dns["noptr"], postfixes["good"])
    assert run.returncode == 2, run.stdout
    assert run.summary == ("BANNER_RDNS CRITICAL - 127.0.0.1 has no PTR record; "
                           f"127.0.0.1 -> (no PTR), banner {MX}")


def test_ptr_not_forward_confirmed_is_critical(dns, postfixes) -> None:
    run = check(dns["unconfirmed"], postfixes["good"])
    assert run.returncode == 2, run.stdout
    assert run.summary == (
        f"BANNER_RDNS CRITICAL - PTR {MX} does not resolve back to 127.0.0.1 (127.0.0.9); "
        f"127.0.0.1 -> {MX} -> 127.0.0.9, banner {MX}")


def test_generic_ptr_is_a_warning(dns, postfixes) -> None:
    run = check(dns["generic"], postfixes["generic"], "--no-starttls-ok")
    assert run.returncode == 1, run.stdout
    assert run.summary == (
        f"BANNER_RDNS WARNING - PTR {GENERIC} looks generic/dynamic: embeds the address "
        f"(127-0-0-1) and contains 'dynamic'; 127.0.0.1 -> {GENERIC} -> 127.0.0.1, "
        f"banner {GENERIC}")
    assert [line for line in run.long_output if not line.startswith("OK")] == [
        f"WARNING: PTR {GENERIC} looks generic/dynamic: embeds the address (127-0-0-1) "
        "and contains 'dynamic'"]


def test_banner_name_mismatch_is_a_warning(dns, postfixes) -> None:
    run = check(dns["good"], postfixes["banner"], "--no-starttls-ok")
    assert run.returncode == 1, run.stdout
    assert run.summary == (
        f"BANNER_RDNS WARNING - banner name mail.other.test does not match PTR {MX}; "
        f"127.0.0.1 -> {MX} -> 127.0.0.1, banner mail.other.test, EHLO {MX}")


def test_strict_makes_a_mismatch_critical(dns, postfixes) -> None:
    run = check(dns["good"], postfixes["banner"], "--no-starttls-ok", "--strict")
    assert run.returncode == 2, run.stdout
    assert "banner name mail.other.test does not match PTR mx.lab.test" in run.summary


def test_banner_and_ehlo_mismatch(dns, postfixes) -> None:
    run = check(dns["good"], postfixes["other"], "--no-starttls-ok")
    assert run.returncode == 1, run.stdout
    assert run.summary == (
        f"BANNER_RDNS WARNING - banner and EHLO name mail.other.test do not match PTR {MX}; "
        f"127.0.0.1 -> {MX} -> 127.0.0.1, banner mail.other.test")


def test_expect_name_pins_every_name(dns, postfixes) -> None:
    ok = check(dns["good"], postfixes["good"], "--expect-name", MX)
    assert ok.returncode == 0, ok.stdout
    # the server calls itself mail.other.test everywhere; the PTR is the odd one out
    run = check(dns["good"], postfixes["other"], "--no-starttls-ok",
                "--expect-name", "mail.other.test")
    assert run.returncode == 1, run.stdout
    assert run.summary.startswith(
        f"BANNER_RDNS WARNING - PTR {MX} is not the expected name mail.other.test; ")
    strict = check(dns["good"], postfixes["good"], "--expect-name", "mail.other.test",
                   "--strict")
    assert strict.returncode == 2, strict.stdout
    assert (f"banner and EHLO name {MX} do not match the expected name mail.other.test"
            in strict.summary)


def test_no_starttls_warns_unless_allowed(dns, postfixes) -> None:
    run = check(dns["good"], postfixes["plain"])
    assert run.returncode == 1, run.stdout
    assert run.summary == (f"BANNER_RDNS WARNING - no STARTTLS offered; "
                           f"127.0.0.1 -> {MX} -> 127.0.0.1, banner {MX}")
    allowed = check(dns["good"], postfixes["plain"], "--no-starttls-ok")
    assert allowed.returncode == 0, allowed.stdout


def test_name_target_checks_every_address(dns, postfixes) -> None:
    if not postfixes["good"].ipv6:
        pytest.skip("no IPv6 on this machine")
    run = check(dns["good"], postfixes["good"], host=MX)
    assert run.returncode == 0, run.stdout
    assert run.summary == (f"BANNER_RDNS OK - 127.0.0.1 -> {MX} -> 127.0.0.1, banner {MX}; "
                           f"::1 -> {MX} -> ::1, banner {MX}")
    only4 = check(dns["good"], postfixes["good"], "-4", host=MX)
    assert only4.summary == f"BANNER_RDNS OK - 127.0.0.1 -> {MX} -> 127.0.0.1, banner {MX}"


def test_ipv6_address(dns, postfixes) -> None:
    if not postfixes["good"].ipv6:
        pytest.skip("no IPv6 on this machine")
    run = check(dns["good"], postfixes["good"], "-v", host="::1")
    assert run.returncode == 0, run.stdout
    assert run.summary == f"BANNER_RDNS OK - ::1 -> {MX} -> ::1, banner {MX}"
    assert f"::1: PTR {MX} -> A/AAAA ::1" in run.long_output


def test_unknown_host_name_is_unknown(dns, postfixes) -> None:
    run = check(dns["good"], postfixes["good"], host="nomx.lab.test")
    assert run.returncode == 3, run.stdout
    assert run.summary == ("BANNER_RDNS UNKNOWN - nomx.lab.test has no address (A/AAAA); "
                           "nomx.lab.test")


# -- certificate -------------------------------------------------------------------------------

@pytest.mark.parametrize("days, code, text", [
    ("10,3", 1, "certificate expires in 5.0 days"),
    ("30,10", 2, "certificate expires in 5.0 days"),
    ("3,1", 0, "certificate valid for 5 more days"),
])
def test_starttls_certificate_days(dns, postfixes, days: str, code: int, text: str) -> None:
    run = check(dns["good"], postfixes["good"], "--starttls-cert-days", days, "-vvv")
    assert run.returncode == code, run.stdout
    assert any(text in line for line in run.long_output), run.stdout
    warn, crit = days.split(",")
    assert run.perfdata["cert_days"] == f"5.0;{warn}:;{crit}:"
    assert (f"OK: certificate (TLSv1.3, self-signed) for {MX}: covers PTR {MX}"
            in run.long_output)
    assert any(line.endswith("** TLS established (TLSv1.3)") for line in run.long_output)


# -- failures ----------------------------------------------------------------------------------

def test_connection_refused_is_critical(dns) -> None:
    port = free_port()
    run = check(dns["good"], port)
    assert run.returncode == 2, run.stdout
    assert run.summary == (
        f"BANNER_RDNS CRITICAL - mail service down: cannot connect to 127.0.0.1:{port}: "
        f"Connection refused; 127.0.0.1 -> {MX} -> 127.0.0.1, no banner")
    assert "banner_time" not in run.perfdata


def test_dead_dns_server_is_unknown_within_the_timeout(silent_dns, postfixes) -> None:
    run = check(silent_dns, postfixes["good"], "-t", "4")
    assert run.returncode == 3, run.stdout
    where = silent_dns.replace(":", " port ")
    assert run.summary.startswith(f"BANNER_RDNS UNKNOWN - DNS server {where} did not answer "
                                  "within ")
    assert run.summary.endswith(f"127.0.0.1 -> (PTR unknown: DNS failed), banner {MX}")
    assert run.seconds < 4 + 1


# -- scripted misbehaviour ---------------------------------------------------------------------

@pytest.fixture
def scripted() -> Iterator[Callable[[Behaviour], ScriptedSMTPServer]]:
    servers: list[ScriptedSMTPServer] = []

    def start(behaviour: Behaviour) -> ScriptedSMTPServer:
        server = ScriptedSMTPServer(behaviour).start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def test_slow_banner_crosses_the_thresholds(dns, scripted) -> None:
    server = scripted(Behaviour(hostname=MX, banner_delay=1.2, starttls=False))
    critical = check(dns["good"], server, "--no-starttls-ok", "-w", "0.3", "-c", "1")
    assert critical.returncode == 2, critical.stdout
    assert critical.summary.startswith("BANNER_RDNS CRITICAL - banner after 1.")
    assert critical.perfdata["banner_time"].endswith("s;0.3;1;0")
    assert critical.perf_value("banner_time") >= 1.2
    warning = check(dns["good"], server, "--no-starttls-ok", "-w", "0.3", "-c", "20")
    assert warning.returncode == 1, warning.stdout
    assert warning.summary.startswith("BANNER_RDNS WARNING - banner after 1.")
    relaxed = check(dns["good"], server, "--no-starttls-ok", "-w", "20", "-c", "30")
    assert relaxed.returncode == 0, relaxed.stdout


def test_tarpit_longer_than_the_timeout(dns, scripted) -> None:
    server = scripted(Behaviour(hostname=MX, banner_delay=60))
    run = check(dns["good"], server, "-t", "3", "-w", "1", "-c", "2")
    assert run.returncode == 2, run.stdout
    assert run.summary.startswith("BANNER_RDNS CRITICAL - no banner from 127.0.0.1:")
    assert "; banner after 2." in run.summary
    assert run.seconds < 3 + 1
    unjudged = check(dns["good"], server, "-t", "2")
    assert unjudged.returncode == 3, unjudged.stdout
    assert "UNKNOWN - no banner from 127.0.0.1:" in unjudged.summary
    assert unjudged.seconds < 2 + 1


def test_non_220_banner_is_critical_with_the_reply(dns, scripted) -> None:
    server = scripted(Behaviour(hostname=MX, banner="554 5.7.1 No SMTP service here"))
    run = check(dns["good"], server)
    assert run.returncode == 2, run.stdout
    assert run.summary == ("BANNER_RDNS CRITICAL - banner is not 220: 554 5.7.1 No SMTP "
                           f"service here; 127.0.0.1 -> {MX} -> 127.0.0.1, banner 554")
    assert "ehlo_time" not in run.perfdata


class HeloOnly(Behaviour):
    def smtp_EHLO(self, session: object, argument: str) -> str:
        return "502 5.5.2 Error: command not recognized"


def test_helo_fallback_when_ehlo_is_refused(dns, scripted) -> None:
    server = scripted(HeloOnly(hostname=MX))
    run = check(dns["good"], server, "--no-starttls-ok", "-vvv")
    assert run.returncode == 0, run.stdout
    assert "OK: EHLO refused, HELO accepted (no ESMTP)" in run.long_output
    assert any(line.endswith("-> HELO [127.0.0.1]") for line in run.long_output)


def test_bad_options_are_unknown() -> None:
    run = run_plugin(PLUGIN, "-H", "127.0.0.1", "--starttls-cert-days", "3,10")
    assert run.returncode == 3
    assert run.summary.startswith("BANNER_RDNS UNKNOWN - bad option: argument "
                                  "--starttls-cert-days: invalid days '3,10'")
    family = run_plugin(PLUGIN, "-H", "127.0.0.1", "-6", "--nameserver", "127.0.0.1:9")
    assert family.returncode == 3
    assert family.summary == ("BANNER_RDNS UNKNOWN - bad option: -H 127.0.0.1 is not an IPv6 "
                              "address")
    missing = run_plugin(PLUGIN, "--strict")
    assert missing.returncode == 3
    assert "-H/--hostname" in missing.summary


def test_garbage_instead_of_a_banner_is_critical(dns, scripted) -> None:
    server = scripted(Behaviour(hostname=MX, banner=b"HTTP/1.0 400 Bad Request\r\n"))
    run = check(dns["good"], server)
    assert run.returncode == 2, run.stdout
    assert run.summary.startswith(f"BANNER_RDNS CRITICAL - no banner from 127.0.0.1:{server.port}:"
                                  " not an SMTP reply: 'HTTP/1.0 400 Bad Request'")
