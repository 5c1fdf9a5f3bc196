"""What a server's TLS certificate says: names, validity, and whether it covers a host name.

The SMTP session hands us the peer certificate as DER (it does not verify it: we audit
servers, we do not trust them); this module parses it with the ``cryptography`` package.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field


class CertificateError(ValueError):
    """The certificate could not be parsed."""


@dataclass(frozen=True)
class CertificateInfo:
    """The facts about one certificate a postmaster cares about."""

    subject: str
    issuer: str
    common_names: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    self_signed: bool
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC), compare=False)

    @property
    def days_left(self) -> float:
        """Days until expiry (negative once expired)."""
        return (self.not_after - self.now).total_seconds() / 86400.0

    @property
    def expired(self) -> bool:
        return self.now >= self.not_after

    @property
    def not_yet_valid(self) -> bool:
        return self.now < self.not_before

    @property
    def names(self) -> tuple[str, ...]:
        """The names the certificate is for: SAN DNS names, else the subject CNs (RFC 6125)."""
        return self.dns_names or self.common_names

    def covers(self, hostname: str) -> bool:
        """Whether the certificate is valid for ``hostname`` (DNS name or IP address)."""
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            return any(hostname_matches(pattern, hostname) for pattern in self.names)
        return any(ipaddress.ip_address(ip) == address for ip in self.ip_addresses)


def hostname_matches(pattern: str, hostname: str) -> bool:
    """RFC 6125 matching: case-insensitive, one wildcard only as the whole left-most label."""
    pattern = pattern.strip().rstrip(".").lower()
    hostname = hostname.strip().rstrip(".").lower()
    if not pattern or not hostname:
        return False
    if not pattern.startswith("*."):
        return pattern == hostname
    suffix = pattern[2:]
    first, dot, rest = hostname.partition(".")
    # the wildcard stands for exactly one non-empty label, and never for a public suffix alone
    return bool(first and dot and "." in suffix and rest == suffix)


def parse_certificate(der: bytes, now: dt.datetime | None = None) -> CertificateInfo:
    """Parse a DER certificate; :class:`CertificateError` when it is not one."""
    # imported here: cryptography costs ~15 ms per plugin run, and most runs see no certificate
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID, NameOID

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateError(f"unreadable certificate: {exc}") from exc
    common_names = tuple(
        str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    )
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        pass
    else:
        if isinstance(san, x509.SubjectAlternativeName):
            dns_names = tuple(san.get_values_for_type(x509.DNSName))
            ip_addresses = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_names=common_names,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        self_signed=cert.subject == cert.issuer,
        now=now or dt.datetime.now(dt.UTC),
    )
