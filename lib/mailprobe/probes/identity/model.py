"""The facts the identity probe gathers: PTR names, FCrDNS, the SMTP greeting, TLS."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailprobe.net.smtp import (
    Reply,
    Transcript,
    greeting_name,
)
from mailprobe.net.tlscert import CertificateInfo
from mailprobe.probes.identity.names import names_match


@dataclass
class PTRName:
    """One PTR name of an address and what its forward look-up says."""

    name: str
    forward: list[str] = field(default_factory=list)
    confirmed: bool = False
    generic: str | None = None
    looked_up: bool = False
    error: str | None = None  # its forward look-up failed (the DNS could not answer)
    invalid: str | None = None  # why it is not a host name (receivers take it as unknown)


@dataclass
class ReverseDNS:
    """PTR names of one address, forward-confirmed (FCrDNS) or not."""

    address: str
    names: list[PTRName] = field(default_factory=list)
    error: str | None = None  # the DNS could not answer
    looked_up: bool = False

    @property
    def confirmed_names(self) -> list[str]:
        return [p.name for p in self.names if p.confirmed]

    @property
    def ptr_names(self) -> list[str]:
        return [p.name for p in self.names]

    @property
    def fcrdns_known(self) -> bool:
        """Whether FCrDNS is decided: a name is confirmed, or every name was looked up."""
        return bool(self.confirmed_names) or not any(p.error for p in self.names)


@dataclass
class TLSFacts:
    version: str | None = None
    error: str | None = None
    certificate: CertificateInfo | None = None


@dataclass
class SMTPFacts:
    """What one SMTP connection showed."""

    address: str
    port: int
    error: str | None = None
    error_code: str = ""  # connect-failed | banner-timeout | timeout | dropped | protocol
    banner: Reply | None = None
    banner_time: float | None = None
    ehlo_sent: str = ""
    ehlo: Reply | None = None  # the reply to the last greeting sent (EHLO, or HELO after it)
    ehlo_verb: str = ""  # the greeting the server accepted ("" when none)
    helo_sent: bool = False  # HELO was tried after EHLO was refused
    ehlo_time: float | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    tls: TLSFacts | None = None
    elapsed: float = 0.0

    @property
    def banner_name(self) -> str:
        return greeting_name(self.banner) if self.banner and self.banner.code == 220 else ""

    @property
    def ehlo_name(self) -> str:
        return greeting_name(self.ehlo) if self.ehlo and self.ehlo.positive else ""

    @property
    def starttls_offered(self) -> bool:
        return "STARTTLS" in self.extensions


@dataclass
class AddressIdentity:
    address: str
    rdns: ReverseDNS
    smtp: SMTPFacts | None = None

    def line(self) -> str:
        """``127.0.0.1 -> mx.example.test -> 127.0.0.1, banner mx.example.test``."""
        text = self.address
        if self.rdns.error:
            text += " -> (PTR unknown: DNS failed)"
        elif not self.rdns.looked_up:
            text += " -> (PTR not looked up)"
        elif not self.rdns.names:
            text += " -> (no PTR)"
        else:
            text += " -> " + ",".join(self.rdns.ptr_names)
            first = next((p for p in self.rdns.names if p.confirmed), self.rdns.names[0])
            if first.confirmed:
                text += f" -> {self.address}"
            elif first.error:
                text += " -> (look-up failed)"
            elif first.looked_up:
                text += " -> " + (",".join(first.forward) if first.forward else "(no address)")
        smtp = self.smtp
        if smtp is None:
            return text
        if smtp.banner is None:
            return text + ", no banner"
        if smtp.banner.code != 220:
            return text + f", banner {smtp.banner.code}"
        text += f", banner {smtp.banner_name or '(no name)'}"
        if smtp.ehlo_name and not names_match(smtp.ehlo_name, smtp.banner_name):
            text += f", {smtp.ehlo_verb or 'EHLO'} {smtp.ehlo_name}"
        return text


@dataclass
class IdentityReport:
    target: str
    port: int
    addresses: list[AddressIdentity] = field(default_factory=list)
    resolve_error: str | None = None
    no_address: str = ""  # why the target has no address to check (empty when it has some)
    elapsed: float = 0.0
    dns_queries: int = 0
    transcript: Transcript = field(default_factory=Transcript)

    def line(self) -> str:
        return "; ".join(a.line() for a in self.addresses) or self.target


