"""What the sections of one mailer's audit share: the target, its addresses, the deadline, the
identity facts (read once, used by the mail-domain guess) and the mail domain itself."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from mailprobe.audit.options import AuditOptions
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Lookup, is_ip_address, make_resolver
from mailprobe.probes.dmarc import organizational_domain
from mailprobe.probes.identity.model import IdentityReport


@dataclass(frozen=True)
class MailDomain:
    """The mail domain the relay control and the MX/SPF/DMARC section use, and where it came
    from ("given", or how it was guessed); ``name`` None when it could not be guessed."""

    name: str | None
    source: str


class MailerContext:
    """Shared, thread-safe state of one mailer's audit."""

    def __init__(self, label: str, addresses: list[str], options: AuditOptions,
                 deadline: Deadline) -> None:
        self.label = label
        self.addresses = addresses
        # the address the SMTP probes speak to: IPv4 first, as check_open_relay
        self.address = sorted(addresses, key=lambda a: ":" in a)[0] if addresses else None
        self.options = options
        self.deadline = deadline
        self._identity: IdentityReport | None = None
        self._identity_done = threading.Event()
        self._domain: MailDomain | None = None
        self._domain_lock = threading.Lock()

    def lookup(self, deadline: Deadline | None = None) -> Lookup:
        """A fresh resolver and log for one section (``--nameserver``, within the deadline)."""
        deadline = deadline or self.deadline
        resolver = make_resolver(self.options.nameservers,
                                 timeout=max(0.1, min(5.0, deadline.remaining())))
        return Lookup(resolver, deadline)

    # -- the identity facts, published by the identity section ------------------------------
    def identity_known(self, report: IdentityReport | None) -> None:
        self._identity = report
        self._identity_done.set()

    def identity(self) -> IdentityReport | None:
        """The identity facts, waiting for the identity section (None if it failed)."""
        self._identity_done.wait(timeout=self.deadline.remaining() + 0.1)
        return self._identity

    # -- the mail domain ---------------------------------------------------------------------
    @property
    def domain_chosen(self) -> bool:
        """Whether a section has asked for the mail domain (the report shows it then)."""
        return self._domain is not None

    def mail_domain(self) -> MailDomain:
        """Given with --mail-domain, else guessed once: the host name, then the PTR name, then
        the banner name (registrable domain by the Public Suffix List)."""
        with self._domain_lock:
            if self._domain is None:
                self._domain = self._choose_domain()
            return self._domain

    def _choose_domain(self) -> MailDomain:
        if self.options.mail_domain:
            return MailDomain(self.options.mail_domain, "given with --mail-domain")
        tried: list[str] = []
        if not is_ip_address(self.label):
            domain = organizational_domain(self.label)
            if domain:
                return MailDomain(domain, f"guessed from the host name {self.label}")
            tried.append(f"{self.label} has no registrable domain")
        identity = self.identity()
        if identity is not None:
            for facts in identity.addresses:
                names = facts.rdns.confirmed_names + facts.rdns.ptr_names
                for name in dict.fromkeys(names):
                    domain = organizational_domain(name)
                    if domain:
                        return MailDomain(domain, f"guessed from the PTR name {name} of "
                                                  f"{facts.address}")
                    tried.append(f"the PTR name {name} has no registrable domain")
            for facts in identity.addresses:
                banner = facts.smtp.banner_name if facts.smtp is not None else ""
                domain = organizational_domain(banner) if banner else None
                if domain:
                    return MailDomain(domain, f"guessed from the banner name {banner}")
        why = "; ".join(tried) or "no host name, PTR name or banner name to guess from"
        return MailDomain(None, f"could not be guessed ({why}): give --mail-domain")
