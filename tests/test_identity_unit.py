"""Unit tests for the identity probe's decision logic: generic PTR heuristics, name matching,
certificate names, and how facts become findings (no network)."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mailprobe.checks.banner_rdns import build_parser, cert_days
from mailprobe.findings import Level
from mailprobe.net.smtp import Reply
from mailprobe.net.tlscert import CertificateError, hostname_matches, parse_certificate
from mailprobe.probes.identity.assess import Policy, assess
from mailprobe.probes.identity.model import (
    AddressIdentity,
    IdentityReport,
    PTRName,
    ReverseDNS,
    SMTPFacts,
    TLSFacts,
)
from mailprobe.probes.identity.names import (
    generic_reason,
    host_name_problem,
    host_part,
    names_match,
)
from mailprobe.probes.identity.probe import sni_name

# -- generic / dynamic PTR heuristics ---------------------------------------------------------


@pytest.mark.parametrize("name, address", [
    ("c-73-1-2-3.hsd1.ma.comcast.net", "73.1.2.3"),            # octets in order
    ("3.2.1.73.dynamic.example.net", "73.1.2.3"),              # reversed, plus a word
    ("host-1-2-3.pool.example.net", "10.1.2.3"),                # three octets + 'pool'
    ("ip-10-0-0-1.ec2.internal", "10.0.0.1"),                   # four octets
    ("p5b0a0c0d.dip0.t-ipconnect.de", "91.10.12.13"),           # hex form
    ("192168001002.example.net", "192.168.1.2"),                # zero-padded, concatenated
    ("dsl-customer.example.net", "198.51.100.7"),               # words only
    ("adsl123.example.net", "198.51.100.7"),                     # word glued to digits
    ("ppp-7.dialup.example.net", "198.51.100.7"),
    ("cable.example.net", "198.51.100.7"),                       # cable is a host label here
    ("2001-db8--1.pool.example.net", "2001:db8::1"),            # IPv6 with dashes
    ("20010db8000000000000000000000042.v6.example.net", "2001:db8::42"),
])
def test_generic_names_are_recognised(name: str, address: str) -> None:
    assert generic_reason(name, address) is not None


@pytest.mark.parametrize("name, address", [
    ("mx.lab.test", "127.0.0.1"),
    ("mail.example.com", "192.0.2.10"),
    ("mx1.example.com", "10.0.0.1"),                 # one digit is not an address
    ("smtp-out-2.example.net", "192.0.2.2"),
    ("mail.dynamicnetworks.com", "192.0.2.3"),     # the word only inside the registrable domain
    ("poolside.example.com", "192.0.2.4"),          # a word inside a longer token
    ("dsl.net", "192.0.2.5"),                       # the registrable domain itself
    ("mx.lab.test", "::1"),
    ("mail.example.com", "2001:db8::25"),
])
def test_ordinary_names_are_not_generic(name: str, address: str) -> None:
    assert generic_reason(name, address) is None


def test_generic_reason_names_what_it_saw() -> None:
    reason = generic_reason("1-0-0-127.dynamic.lab.test", "127.0.0.1")
    assert reason == "embeds the address (127-0-0-1) and contains 'dynamic'"


@pytest.mark.parametrize("name, expected", [
    ("c-73-1-2-3.hsd1.ma.comcast.net", "c-73-1-2-3.hsd1.ma"),
    ("mail.example.co.uk", "mail"),
    ("mx.lab.test.", "mx"),
    ("example.com", ""),
    ("localhost", "localhost"),
])
def test_host_part_drops_the_registrable_domain(name: str, expected: str) -> None:
    assert host_part(name) == expected


# -- name matching ----------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, same", [
    ("mx.lab.test", "MX.Lab.Test.", True),
    ("mx.lab.test", "mx.lab.test", True),
    ("mx.lab.test", "mx2.lab.test", False),
    ("mx.lab.test", "", False),
    ("", "", False),
    ("bücher.example", "xn--bcher-kva.example", True),
])
def test_names_match(a: str, b: str, same: bool) -> None:
    assert names_match(a, b) is same


@pytest.mark.parametrize("pattern, host, covered", [
    ("mx.lab.test", "MX.lab.test.", True),
    ("*.lab.test", "mx.lab.test", True),
    ("*.lab.test", "a.mx.lab.test", False),   # one label only
    ("*.lab.test", "lab.test", False),
    ("*.test", "lab.test", False),            # never a wildcard over a bare suffix
    ("mx*.lab.test", "mx1.lab.test", False),  # partial wildcards are not supported
])
def test_certificate_hostname_matching(pattern: str, host: str, covered: bool) -> None:
    assert hostname_matches(pattern, host) is covered


def _certificate(cn: str, sans: list[str], days: float) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=days)))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_certificate_facts() -> None:
    info = parse_certificate(_certificate("mx.lab.test", ["mx.lab.test", "*.lab.test"], 5))
    assert info.common_names == ("mx.lab.test",)
    assert info.names == ("mx.lab.test", "*.lab.test")
    assert info.self_signed
    assert 4.9 < info.days_left <= 5.0
    assert info.covers("smtp.lab.test")
    assert not info.covers("mx.other.test")


def test_certificate_without_san_uses_the_common_name() -> None:
    info = parse_certificate(_certificate("mx.lab.test", [], 30))
    assert info.names == ("mx.lab.test",)
    assert info.covers("mx.lab.test")


def test_garbage_is_not_a_certificate() -> None:
    with pytest.raises(CertificateError):
        parse_certificate(b"\x30\x03\x02\x01\x00")


# -- facts -> findings ------------------------------------------------------------------------


def _identity(address: str = "127.0.0.1", ptr: list[tuple[str, list[str]]] | None = None,
              banner: str = "220 mx.lab.test ESMTP", ehlo: str = "mx.lab.test",
              extensions: tuple[str, ...] = ("STARTTLS",), verb: str = "EHLO") -> AddressIdentity:
    if ptr is None:
        ptr = [("mx.lab.test", [address])]
    names = [PTRName(n, forward=f, confirmed=address in f, looked_up=True,
                     generic=generic_reason(n, address)) for n, f in ptr]
    code, _, text = banner.partition(" ")
    smtp = SMTPFacts(address, 25, banner=Reply(int(code), (text,)), banner_time=0.01,
                     ehlo=Reply(250, (ehlo, *extensions)), ehlo_verb=verb, ehlo_time=0.01,
                     ehlo_sent="[127.0.0.9]", extensions={e: "" for e in extensions})
    return AddressIdentity(address, ReverseDNS(address, names, looked_up=True), smtp)


def _problems(identity: AddressIdentity, policy: Policy | None = None) -> dict[str, Level]:
    report = IdentityReport("127.0.0.1", 25, [identity])
    return {f.code: f.level for f in assess(report, policy or Policy()) if f.level != Level.OK}


def test_consistent_identity_has_no_problem() -> None:
    identity = _identity()
    assert _problems(identity) == {}
    assert identity.line() == "127.0.0.1 -> mx.lab.test -> 127.0.0.1, banner mx.lab.test"


def test_no_ptr_is_critical() -> None:
    identity = _identity(ptr=[])
    assert _problems(identity) == {"no-ptr": Level.CRITICAL}
    assert identity.line() == "127.0.0.1 -> (no PTR), banner mx.lab.test"


def test_unconfirmed_ptr_is_critical() -> None:
    identity = _identity(ptr=[("mx.lab.test", ["127.0.0.9"])])
    assert _problems(identity) == {"fcrdns-failed": Level.CRITICAL}
    assert identity.line() == "127.0.0.1 -> mx.lab.test -> 127.0.0.9, banner mx.lab.test"


def test_one_confirmed_ptr_name_is_enough() -> None:
    identity = _identity(ptr=[("old.lab.test", []), ("mx.lab.test", ["127.0.0.1"])])
    assert _problems(identity) == {}


def test_generic_ptr_is_a_warning() -> None:
    name = "1-0-0-127.dynamic.lab.test"
    identity = _identity(ptr=[(name, ["127.0.0.1"])], banner=f"220 {name} ESMTP", ehlo=name)
    assert _problems(identity) == {"generic-ptr": Level.WARNING}


def test_banner_mismatch_warns_and_strict_makes_it_critical() -> None:
    identity = _identity(banner="220 mail.other.test ESMTP")
    assert _problems(identity) == {"banner-mismatch": Level.WARNING}
    assert _problems(identity, Policy(strict=True)) == {"banner-mismatch": Level.CRITICAL}


def test_banner_and_ehlo_mismatch_is_one_finding() -> None:
    identity = _identity(banner="220 mail.other.test ESMTP", ehlo="mail.other.test")
    assert _problems(identity) == {"name-mismatch": Level.WARNING}
    assert identity.line().endswith("banner mail.other.test")


def test_ehlo_name_differing_from_banner_is_shown() -> None:
    identity = _identity(ehlo="mail.other.test")
    assert _problems(identity) == {"ehlo-mismatch": Level.WARNING}
    assert identity.line().endswith("banner mx.lab.test, EHLO mail.other.test")


def test_expect_name_pins_ptr_banner_and_ehlo() -> None:
    identity = _identity()
    assert _problems(identity, Policy(expect_name="MX.lab.test.")) == {}
    assert _problems(identity, Policy(expect_name="mail.lab.test")) == {
        "ptr-unexpected": Level.WARNING, "name-mismatch": Level.WARNING}


def test_starttls_missing_warns_unless_allowed() -> None:
    identity = _identity(extensions=("PIPELINING",))
    assert _problems(identity) == {"no-starttls": Level.WARNING}
    assert _problems(identity, Policy(starttls_required=False)) == {}


def test_non_220_banner_is_critical_and_stops_there() -> None:
    identity = _identity(banner="554 5.7.1 go away")
    identity.smtp.ehlo = None  # type: ignore[union-attr]
    findings = assess(IdentityReport("127.0.0.1", 25, [identity]), Policy())
    bad = [f for f in findings if f.level != Level.OK]
    assert [(f.code, f.text) for f in bad] == [
        ("bad-banner", "banner is not 220: 554 5.7.1 go away")]


def test_refused_connection_is_critical() -> None:
    identity = _identity()
    identity.smtp = SMTPFacts("127.0.0.1", 25, error="cannot connect to 127.0.0.1:25: "
                              "Connection refused", error_code="connect-failed")
    assert _problems(identity) == {"connect-failed": Level.CRITICAL}


def test_dns_failure_is_unknown() -> None:
    identity = _identity()
    identity.rdns = ReverseDNS("127.0.0.1", error="DNS server did not answer")
    assert _problems(identity) == {"dns-failure": Level.UNKNOWN}


def test_unresolvable_target_is_unknown() -> None:
    findings = assess(IdentityReport("nomx.lab.test", 25, []), Policy())
    assert [(f.level, f.text) for f in findings] == [
        (Level.UNKNOWN, "nomx.lab.test has no address (A/AAAA)")]


# -- issue 12: what DNS could not say never hides what it did say ------------------------------


def test_a_failed_look_up_beside_a_confirmed_name_keeps_the_confirmation() -> None:
    identity = _identity(ptr=[("mx.lab.test", ["127.0.0.1"]), ("broken.lab.test", [])])
    identity.rdns.names[1].error = "DNS look-up broken.lab.test A failed: SERVFAIL"
    identity.rdns.names[1].looked_up = False
    assert _problems(identity) == {}
    assert identity.line().startswith("127.0.0.1 -> mx.lab.test,broken.lab.test -> 127.0.0.1")


def test_a_failed_look_up_without_a_confirmed_name_leaves_fcrdns_undecided() -> None:
    identity = _identity(ptr=[("other.lab.test", ["127.0.0.9"]), ("broken.lab.test", [])])
    identity.rdns.names[1].error = "DNS look-up broken.lab.test A failed: SERVFAIL"
    identity.rdns.names[1].looked_up = False
    findings = assess(IdentityReport("127.0.0.1", 25, [identity]), Policy())
    levels = {f.code: f.level for f in findings if f.code.startswith("fcrdns")}
    assert levels == {"fcrdns-failed": Level.UNKNOWN, "fcrdns-dns-failure": Level.UNKNOWN}


@pytest.mark.parametrize("name, problem", [
    ("mx.lab.test", None),
    ("mx.lab.test.", None),
    ("_spf.lab.test", None),
    ("caf\u00e9.lab.test", None),
    (".", "it is the DNS root, not a host name"),
    ("192.0.2.1", "it is an IP address, not a host name"),
    ("x\\010y.lab.test", "the label 'x\\010y' is not 1-63 letters, digits and hyphens"),
    ("a..lab.test", "the label '' is not 1-63 letters, digits and hyphens"),
    ("-mx.lab.test", "the label '-mx' is not 1-63 letters, digits and hyphens"),
    ("host.123", "it ends in a number"),
    ("a" * 64 + ".lab.test", "the label '" + "a" * 40 + "...' is not 1-63 letters, digits "
     "and hyphens"),
    (".".join(["a" * 60] * 5), "it is 304 characters long (at most 253)"),
])
def test_host_name_problem(name: str, problem: str | None) -> None:
    assert host_name_problem(name) == problem


def test_invalid_ptr_name_is_never_confirmed_and_never_compared() -> None:
    identity = _identity(ptr=[(".", [])])
    identity.rdns.names[0].invalid = host_name_problem(".")
    assert _problems(identity) == {"ptr-invalid": Level.CRITICAL}  # no banner mismatch with '.'


def test_sni_is_only_ever_a_host_name() -> None:
    identity = _identity(ptr=[(".", [])])
    assert sni_name(identity, "127.0.0.1") is None
    assert sni_name(identity, "mx.lab.test") == "mx.lab.test"
    assert sni_name(_identity(), "127.0.0.1") == "mx.lab.test"


@pytest.mark.parametrize("reply, helo_sent, connected_text", [
    (Reply(421, ("4.7.0 Try again later",)), False,
     "EHLO [127.0.0.9] refused: 421 4.7.0 Try again later (a temporary refusal: HELO not tried)"),
    (Reply(550, ("5.7.1 No",)), True, "EHLO and HELO [127.0.0.9] refused: 550 5.7.1 No"),
    (Reply(554, ("5.7.1 Go away",)), False, "EHLO [127.0.0.9] refused: 554 5.7.1 Go away "
     "(the server closed the connection: HELO not tried)"),
])
def test_refused_greeting_says_which_greetings_were_sent(reply: Reply, helo_sent: bool,
                                                         connected_text: str) -> None:
    identity = _identity()
    assert identity.smtp is not None
    identity.smtp.ehlo, identity.smtp.helo_sent, identity.smtp.ehlo_verb = reply, helo_sent, ""
    findings = assess(IdentityReport("127.0.0.1", 25, [identity]), Policy())
    assert [f.text for f in findings if f.code == "ehlo-refused"] == [connected_text]


@pytest.mark.parametrize("days, warn, crit, expected", [
    (5, 10, 3, Level.WARNING),
    (5, 30, 10, Level.CRITICAL),
    (5, 3, 1, Level.OK),
    (-1, 3, 1, Level.CRITICAL),
])
def test_certificate_expiry_thresholds(days: float, warn: float, crit: float,
                                       expected: Level) -> None:
    identity = _identity()
    identity.smtp.tls = TLSFacts("TLSv1.3", certificate=parse_certificate(  # type: ignore[union-attr]
        _certificate("mx.lab.test", ["mx.lab.test"], days)))
    report = IdentityReport("127.0.0.1", 25, [identity])
    findings = {f.code: f for f in assess(report, Policy(cert_days=(warn, crit)))}
    expiry = findings.get("cert-expiry") or findings["cert-expired"]
    assert expiry.level == expected
    assert findings["cert-names"].text.endswith("for mx.lab.test: covers PTR mx.lab.test")


@pytest.mark.parametrize("text, expected", [("30,7", (30.0, 7.0)), ("14", (14.0, 0.0))])
def test_cert_days_option(text: str, expected: tuple[float, float]) -> None:
    assert cert_days(text) == expected


@pytest.mark.parametrize("text", ["7,30", "x", "1,2,3", "-1", ""])
def test_cert_days_option_rejects_nonsense(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cert_days(text)


def test_parser_requires_a_host() -> None:
    from mailprobe.checks.plugin import UsageError

    with pytest.raises(UsageError):
        build_parser().parse_args(["--strict"])


def test_the_probe_does_not_import_nagiosplugin() -> None:
    import subprocess
    import sys

    code = "import sys, mailprobe.probes.identity.probe; sys.exit('nagiosplugin' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
