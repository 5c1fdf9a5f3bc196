"""The lab of ``mailprobe report`` and ``mailprobe serve``: what the issue's "done when" needs.

* an open relay: a real Postfix (preset "open") on 127.0.0.25, ``mx.relaylab.test``, with
  STARTTLS (a self-signed certificate made at start-up);
* a correctly closed Postfix on 127.0.0.26, ``mx2.relaylab.test``, on the same port (the report's
  ``--port`` is shared by every mailer);
* one real authoritative DNS server (Knot) for everything the report asks: the mail domain
  (MX, SPF, DMARC), reverse DNS with PTRs that resolve back (FCrDNS), and the DNSBL zone
  ``bl.spamcop.net`` served locally (a curated name, so the listing carries its lookup page)
  listing 127.0.0.25 with a TXT reason. The report takes one ``--nameserver``, as the plugins.

Postfix needs root. Speak from 127.0.0.2 (``OUTSIDE``): outside the closed Postfix's
mynetworks. Used by tests/test_report*.py, tests/test_web*.py and ``python -m lab.auditlab``
(keeps it running and prints the command lines to try).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

from lab.knot import KnotServer
from lab.postfix import LAB_DOMAIN, PostfixServer, free_port_on_all
from lab.process import LabServer

OPEN_ADDRESS = "127.0.0.25"
CLOSED_ADDRESS = "127.0.0.26"
OUTSIDE = "127.0.0.2"
OPEN_NAME = f"mx.{LAB_DOMAIN}"
CLOSED_NAME = f"mx2.{LAB_DOMAIN}"
DNSBL_ZONE = "bl.spamcop.net"  # curated: weight 1 (WARNING), lookup page known
LISTING_REASON = f"Blocked - see https://www.spamcop.net/bl.shtml?{OPEN_ADDRESS}"


def reversed_octets(address: str) -> str:
    return ".".join(reversed(address.split(".")))


def zones() -> dict[str, str]:
    return {
        LAB_DOMAIN: f"""\
@        MX    10 mx
@        MX    20 mx2
@        TXT   "v=spf1 ip4:{OPEN_ADDRESS} ip4:{CLOSED_ADDRESS} -all"
_dmarc   TXT   "v=DMARC1; p=reject; rua=mailto:postmaster@{LAB_DOMAIN}"
mx       A     {OPEN_ADDRESS}
mx2      A     {CLOSED_ADDRESS}
""",
        "0.0.127.in-addr.arpa": f"""\
{OPEN_ADDRESS.rsplit('.', 1)[1]}       PTR   {OPEN_NAME}.
{CLOSED_ADDRESS.rsplit('.', 1)[1]}       PTR   {CLOSED_NAME}.
""",
        DNSBL_ZONE: f"""\
{reversed_octets(OPEN_ADDRESS)}  A    127.0.0.2
{reversed_octets(OPEN_ADDRESS)}  TXT  "{LISTING_REASON}"
; RFC 5782 test entry: 127.0.0.2 listed, 127.0.0.1 never
2.0.0.127   A    127.0.0.2
""",
    }


def make_certificate(directory: Path, name: str = OPEN_NAME) -> tuple[Path, Path]:
    """A self-signed certificate for ``name``, valid for a year."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "365",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True, timeout=30)
    key.chmod(0o644)
    return cert, key


class AuditLab(LabServer):
    """Knot plus the open and the closed Postfix (``closed=False``: only the open one)."""

    def __init__(self, closed: bool = True) -> None:
        self.with_closed = closed
        hosts = [OPEN_ADDRESS] + ([CLOSED_ADDRESS] if closed else [])
        self.host = OPEN_ADDRESS
        self.port = free_port_on_all(hosts)
        self.certdir = Path(tempfile.mkdtemp(prefix="mailprobe-auditlab-"))
        self.certdir.chmod(0o755)
        self.knot = KnotServer(zones())
        self.open: PostfixServer | None = None
        self.closed: PostfixServer | None = None

    @property
    def nameserver(self) -> str:
        return self.knot.nameserver

    def start(self) -> Self:
        try:
            self.knot.start()
            cert, key = make_certificate(self.certdir)
            tls = {"smtpd_tls_security_level": "may", "smtpd_tls_cert_file": str(cert),
                   "smtpd_tls_key_file": str(key), "smtpd_banner": "$myhostname ESMTP"}
            self.open = PostfixServer.preset("open", name="audit-open", host=OPEN_ADDRESS,
                                             port=self.port)
            self.open.settings.update({"myhostname": OPEN_NAME, **tls})
            self.open.start()
            if self.with_closed:
                cert2, key2 = make_certificate(self.certdir, CLOSED_NAME)
                self.closed = PostfixServer(
                    "audit-closed", {"myhostname": CLOSED_NAME,
                                     **tls, "smtpd_tls_cert_file": str(cert2),
                                     "smtpd_tls_key_file": str(key2)},
                    host=CLOSED_ADDRESS, port=self.port)
                self.closed.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in (self.closed, self.open):
            if server is not None:
                server.stop()
        self.knot.stop()
        shutil.rmtree(self.certdir, ignore_errors=True)

    def report_args(self) -> list[str]:
        """The probe options every report/serve run against this lab needs."""
        return ["--nameserver", self.nameserver, "-p", str(self.port),
                "--source-address", OUTSIDE, "--zone", DNSBL_ZONE]


def main() -> int:
    with AuditLab() as lab:
        args = " ".join(lab.report_args())
        sys.stdout.write(f"audit lab up: open relay {OPEN_ADDRESS}, closed {CLOSED_ADDRESS}, "
                         f"port {lab.port}, DNS {lab.nameserver}\n"
                         f"  mailprobe report {args} {OPEN_ADDRESS} {CLOSED_ADDRESS}\n"
                         f"  mailprobe serve {args} --allow 127.0.0.0/24\n"
                         "Ctrl-C to stop\n")
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
