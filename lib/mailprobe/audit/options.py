"""What an audit is asked to do: the probe options the plugins share, one spelling each."""

from __future__ import annotations

from dataclasses import dataclass

from mailprobe.net.dns import Nameserver
from mailprobe.probes.dnsbl.zones import Zone

# Seconds kept back from -t for rendering what was found (as the plugins do).
REPORT_MARGIN = 0.4


@dataclass
class AuditOptions:
    """Server-side defaults of ``mailprobe report`` and ``mailprobe serve``.

    The relay series always stops at RCPT (nothing is ever sent); ``timeout`` is the ``-t``
    budget of each mailer.
    """

    port: int = 25
    source_address: str | None = None
    nameservers: list[Nameserver] | None = None
    zones: list[Zone] | None = None  # None: the curated default set
    mail_domain: str | None = None  # None: guessed (and the report says so)
    timeout: float = 60.0
    portscan: bool = False
    geoip_db: str | None = None
    helo: str | None = None  # our EHLO name for the relay series (default: this host's name)
    family: int = 0  # 4, 6 or 0
    external_domain: str = "example.net"
    external_user: str = "relaytest"
    # STARTTLS certificate: WARNING/CRITICAL when it expires within these days (None: the
    # certificate is reported but not judged, as check_banner_rdns without --starttls-cert-days)
    certificate_days: tuple[float, float] | None = (14.0, 0.0)

    def describe(self) -> dict[str, object]:
        """The options as JSON-able data (the report says what it was asked to do)."""
        return {
            "port": self.port,
            "source_address": self.source_address,
            "nameservers": [str(n) for n in self.nameservers or []],
            "zones": [z.host for z in self.zones] if self.zones is not None else "default",
            "mail_domain": self.mail_domain,
            "timeout": self.timeout,
            "portscan": self.portscan,
            "geoip_db": self.geoip_db,
            "relay_depth": "rcpt",
        }


@dataclass(frozen=True)
class MailerTarget:
    """A mailer to audit: the name or address the user gave and, when the caller has already
    resolved and vetted it (the web page's --allow), the addresses to probe, never resolved
    again."""

    label: str
    addresses: tuple[str, ...] = ()
