"""Hostile SMTP servers for the identity side (issue 12), each with its own DNS world.

Played by ``test_identity_hostile.py``. Unlike ``smtp_cases`` (always a correct DNS), a case
here pairs a scripted SMTP server with the records its scripted DNS server serves, because
the problems of issue 12 are in how the two combine: a missing PTR next to a banner that never
comes, a PTR that is not a host name used as TLS SNI, control characters in the banner or the
certificate. The plugins run as:

* ``rdns``: ``check_banner_rdns -H 127.0.0.1 -p PORT``;
* ``relay``: ``check_open_relay -H 127.0.0.1 -p PORT --source-address 127.0.0.2
  --mail-domain lab.test --tests plain``;
* ``spf``: ``check_spf_mx -H 127.0.0.1 -p PORT`` (no ``--mail-domain``: it is guessed from the
  PTR name or the banner);

all with ``--nameserver`` pointing at the case's DNS server and ``-t 4`` unless noted.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.reversename

from lab.smtpd import Behaviour, ReplyValue, Session
from tests.hostile.expect import CRITICAL, OK, UNKNOWN, WARNING, Expect, as_tuple

PTR = dns.reversename.from_address("127.0.0.1").to_text()
DOMAIN = """
mx.lab.test.      A    127.0.0.1
lab.test.         MX   10 mx.lab.test.
lab.test.         TXT  "v=spf1 ip4:127.0.0.1 -all"
_dmarc.lab.test.  TXT  "v=DMARC1; p=reject"
"""
GOOD = f"{PTR} PTR mx.lab.test.\n{DOMAIN}"
NO_PTR = DOMAIN
# a label of 63 octets that are not letters or digits: valid on the wire, 252 characters in
# presentation form (\255 each), and no host name
LONG_LABEL = "\\255" * 63
# what a forged second status line looks like, hidden in server text
FORGED = "BANNER_RDNS OK - forged"


# -- behaviours no knob gives -------------------------------------------------------------------
class EhloRefusedAndClosed(Behaviour):
    """554 to EHLO, then the connection is closed (HELO cannot be tried)."""

    def smtp_EHLO(self, session: Session, argument: str) -> ReplyValue:
        session.close_after_reply()
        return "554 5.7.1 Go away"


class ControlCharsBanner(Behaviour):
    """A banner and an EHLO name with ESC, NUL, CR and a vertical tab, forging status lines."""

    def greeting(self, session: Session) -> ReplyValue:
        return (b"220 mx.lab.test\x1b[2J ESMTP \x00\r" + FORGED.encode()
                + b"\x0bOPEN_RELAY OK - forged\r\n")

    def smtp_EHLO(self, session: Session, argument: str) -> ReplyValue:
        session.reset(helo=argument.strip(), esmtp=True)
        return b"250-mx.lab.test\x1b]0;title\x07\r\n250 PIPELINING\r\n"


@functools.cache
def certificate_with_names(common_name: str, *dns_names: str) -> tuple[str, str]:
    """(certificate, key) PEM files of a self-signed certificate, valid for 30 days, whose
    names may hold anything (control characters included: openssl's command line cannot)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    directory = Path(tempfile.mkdtemp(prefix="mailprobe-tls-names-"))
    atexit.register(shutil.rmtree, directory, True)
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def control_chars_certificate() -> Behaviour:
    files = certificate_with_names("mx.lab.test\x1b[2J", "mx.lab.test",
                                   f"evil\n{FORGED}\x0b.lab.test")
    return Behaviour(starttls=True, certificate_files=files)


# -- the catalogue ------------------------------------------------------------------------------
@dataclass(frozen=True)
class IdentityCase:
    id: str
    description: str
    behaviour: Callable[[], Behaviour]
    records: str = GOOD
    rdns: tuple[Expect, ...] = ()
    relay: tuple[Expect, ...] = ()
    spf: tuple[Expect, ...] = ()


def case(id_: str, description: str, behaviour: Callable[[], Behaviour], records: str = GOOD,
         *, rdns: Expect | tuple[Expect, ...] = (), relay: Expect | tuple[Expect, ...] = (),
         spf: Expect | tuple[Expect, ...] = ()) -> IdentityCase:
    return IdentityCase(id_, description, behaviour, records, as_tuple(rdns), as_tuple(relay),
                        as_tuple(spf))


CERT_DAYS = ("--starttls-cert-days", "1")
CERT_KEPT = r"^OK: certificate \(TLSv1\.\d, self-signed\) for mx\.lab\.test: "
RELAY_OK = r"0 of 1 relay attempts accepted"

IDENTITY_CASES: tuple[IdentityCase, ...] = (
    case("no-ptr-banner-timeout", "no PTR record, and the banner never comes",
         lambda: Behaviour(banner_delay=60), NO_PTR,
         rdns=Expect(CRITICAL, r"^BANNER_RDNS CRITICAL - 127\.0\.0\.1 has no PTR record; no banner "
                               r"from 127\.0\.0\.1:\d+ within", timeout=3,
                     detail=r"^UNKNOWN: no banner from")),
    case("no-ptr-banner-421", "no PTR record, and a 421 banner",
         lambda: Behaviour(banner="421 4.3.2 Busy"), NO_PTR,
         rdns=Expect(CRITICAL, r"127\.0\.0\.1 has no PTR record; banner is not 220: 421 4\.3\.2")),
    case("ehlo-421", "421 to EHLO (HELO is never sent)",
         lambda: Behaviour(replies={"EHLO": "421 4.7.0 Try again later"}),
         rdns=Expect(WARNING, r"^(?!.*EHLO and HELO).*EHLO \[127\.0\.0\.1\] refused: 421 4\.7\.0 "
                              r"Try again later \(a temporary refusal: HELO not tried\)",
                     ("--no-starttls-ok",))),
    case("ehlo-554-close", "554 to EHLO, then the connection is closed (the HELO after it "
         "finds it closed)",
         lambda: EhloRefusedAndClosed(),
         rdns=Expect(CRITICAL, r"EHLO \[127\.0\.0\.1\] refused: 554 5\.7\.1 Go away, then "
                               r"127\.0\.0\.1:\d+ closed the connection while waiting for the "
                               r"reply to HELO", ("--no-starttls-ok",))),
    case("banner-control-chars", "ESC, NUL, CR and a vertical tab in banner and EHLO, forging "
         "two status lines", lambda: ControlCharsBanner(), NO_PTR,
         rdns=Expect(CRITICAL, r"has no PTR record; 127\.0\.0\.1 -> \(no PTR\), banner "
                               r"mx\.lab\.test\?\[2J", ("--no-starttls-ok",),
                     detail=r"^OK: banner 220 mx\.lab\.test\?\[2J ESMTP \?\?BANNER_RDNS OK - "
                            r"forged\?OPEN_RELAY OK - forged \("),
         relay=Expect(OK, RELAY_OK),
         spf=Expect(UNKNOWN, r"none could be guessed from -H: the banner name mx\.lab\.test\?\[2J "
                             r"of 127\.0\.0\.1 is not a host name")),
    case("certificate-control-chars", "the certificate's names carry ESC, a line break and a "
         "vertical tab, forging a status line", control_chars_certificate,
         rdns=Expect(OK, r"127\.0\.0\.1 -> mx\.lab\.test -> 127\.0\.0\.1, banner mx\.lab\.test",
                     CERT_DAYS, detail=r"^OK: certificate \(TLSv1\.\d, self-signed\) for "
                                       r"mx\.lab\.test, evil BANNER_RDNS OK - forged \.lab\.test: "
                                       r"covers PTR mx\.lab\.test$"),
         relay=Expect(OK, RELAY_OK)),
    case("ptr-is-root", "the PTR record is '.' (the root), with STARTTLS",
         lambda: Behaviour(starttls=True), f"{PTR} PTR .\n{DOMAIN}",
         rdns=Expect(CRITICAL, r"PTR \. is not a valid host name \(it is the DNS root, not a host "
                               r"name\)", CERT_DAYS, detail=CERT_KEPT + "no PTR name to compare$"),
         spf=Expect(OK, r"^SPF_MX OK - lab\.test \(guessed from mx\.lab\.test\): SPF pass",
                    detail=r"^domain lab\.test guessed from the banner name mx\.lab\.test of "
                           r"127\.0\.0\.1")),
    case("ptr-long-label", "the PTR name has a label of 63 escaped octets, with STARTTLS",
         lambda: Behaviour(starttls=True), f"{PTR} PTR {LONG_LABEL}.lab.test.\n{DOMAIN}",
         rdns=Expect(CRITICAL, r"is not a valid host name \(the label '(\\255){10}\.\.\.' is not "
                               r"1-63 letters, digits and hyphens\)", CERT_DAYS,
                     detail=CERT_KEPT + "no PTR name to compare$")),
    case("ptr-escaped-but-confirmed", "the PTR name holds a line feed (x\\010y.lab.test); its A "
         "record is the address (FCrDNS on paper)", lambda: Behaviour(starttls=True),
         f"{PTR} PTR x\\010y.lab.test.\nx\\010y.lab.test. A 127.0.0.1\n{DOMAIN}",
         rdns=Expect(CRITICAL, r"PTR x\\010y\.lab\.test is not a valid host name \(the label "
                               r"'x\\010y' is not", CERT_DAYS,
                     detail=CERT_KEPT + "no PTR name to compare$")),
)
