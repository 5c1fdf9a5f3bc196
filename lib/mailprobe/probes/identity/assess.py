"""Turns the identity facts into findings, per the policy the check asks for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailprobe.findings import Finding, Level
from mailprobe.probes.identity.model import (
    AddressIdentity,
    IdentityReport,
    ReverseDNS,
)
from mailprobe.probes.identity.names import matches_any, names_match

Adder = Callable[[Level, str, str], None]


@dataclass
class Policy:
    """What the check demands (from the plugin's options)."""

    strict: bool = False  # name mismatches are CRITICAL instead of WARNING
    expect_name: str | None = None
    starttls_required: bool = True
    cert_days: tuple[float, float] | None = None  # warn, critical: days before expiry

    @property
    def mismatch(self) -> Level:
        return Level.CRITICAL if self.strict else Level.WARNING


def assess(report: IdentityReport, policy: Policy) -> list[Finding]:
    """Every finding, worst first within each address (OK findings are information)."""
    findings: list[Finding] = []
    if report.resolve_error:
        findings.append(Finding(Level.UNKNOWN, "dns-failure",
                                f"cannot resolve {report.target}: {report.resolve_error}"))
    elif not report.addresses:
        findings.append(Finding(Level.UNKNOWN, "no-address",
                                report.no_address or f"{report.target} has no address (A/AAAA)"))
    for identity in report.addresses:
        findings.extend(assess_address(identity, policy))
    return findings


def assess_address(identity: AddressIdentity, policy: Policy) -> list[Finding]:
    found: list[Finding] = []
    address = identity.address

    def add(level: Level, code: str, text: str) -> None:
        found.append(Finding(level, code, text, subject=address))

    rdns = identity.rdns
    if rdns.error:
        add(Level.UNKNOWN, "dns-failure", rdns.error)
    elif rdns.looked_up:
        _assess_rdns(rdns, policy, add)
    smtp = identity.smtp
    if smtp is not None:
        _assess_smtp(identity, policy, add)
    return found


def _assess_rdns(rdns: ReverseDNS, policy: Policy, add: Adder) -> None:
    """PTR and FCrDNS. One confirmed name is enough; without one, FCrDNS has failed only when
    every name was looked up (a name whose look-up failed might be the confirmed one)."""
    address = rdns.address
    if not rdns.names:
        add(Level.CRITICAL, "no-ptr", f"{address} has no PTR record")
        return
    if len(rdns.names) > 1:
        add(Level.OK, "several-ptr", f"{address} has {len(rdns.names)} PTR names: "
            + ", ".join(rdns.ptr_names))
    confirmed = rdns.confirmed_names
    unproven = Level.OK if confirmed else Level.CRITICAL if rdns.fcrdns_known else Level.UNKNOWN
    for ptr in rdns.names:
        if ptr.confirmed:
            add(Level.OK, "fcrdns", f"PTR {ptr.name} resolves back to {address} (FCrDNS)")
        elif ptr.invalid:
            add(unproven, "ptr-invalid", f"PTR {ptr.name} is not a valid host name "
                f"({ptr.invalid}): receiving MTAs take the client as unknown")
        elif ptr.error:
            add(unproven, "fcrdns-dns-failure",
                f"cannot tell whether PTR {ptr.name} resolves back to {address}: {ptr.error}")
        else:
            where = ", ".join(ptr.forward) if ptr.forward else "no address"
            add(unproven, "fcrdns-failed",
                f"PTR {ptr.name} does not resolve back to {address} ({where})")
        if ptr.generic:
            add(Level.WARNING, "generic-ptr", f"PTR {ptr.name} looks generic/dynamic: "
                f"{ptr.generic}")
    if policy.expect_name and not matches_any(policy.expect_name, rdns.ptr_names):
        add(policy.mismatch, "ptr-unexpected",
            f"PTR {', '.join(rdns.ptr_names)} is not the expected name {policy.expect_name}")


def _expected_names(identity: AddressIdentity, policy: Policy) -> tuple[list[str], str]:
    """The names banner and EHLO should show: --expect-name, else the confirmed PTR names,
    else every PTR name that is a host name at all (none: nothing to compare with)."""
    if policy.expect_name:
        return [policy.expect_name], "the expected name"
    rdns = identity.rdns
    if rdns.confirmed_names:
        return rdns.confirmed_names, "PTR"
    return [p.name for p in rdns.names if not p.invalid], "PTR"


def _assess_smtp(identity: AddressIdentity, policy: Policy, add: Adder) -> None:
    smtp = identity.smtp
    assert smtp is not None
    where = f"{smtp.address}:{smtp.port}" if ":" not in smtp.address \
        else f"[{smtp.address}]:{smtp.port}"
    if smtp.error_code == "connect-failed":
        add(Level.CRITICAL, "connect-failed", f"mail service down: {smtp.error}")
        return
    if smtp.error_code == "banner-timeout":
        add(Level.UNKNOWN, "banner-timeout",
            f"no banner from {where} within {smtp.banner_time or 0:.1f}s")
        return
    banner = smtp.banner
    if banner is None:
        reason = smtp.error or "no reply"
        text = f"no banner: {reason}" if where in reason else f"no banner from {where}: {reason}"
        add(Level.CRITICAL, smtp.error_code or "no-banner", text)
        return
    if banner.code != 220:
        add(Level.CRITICAL, "bad-banner",
            f"banner is not 220: {banner.code} {banner.text}".rstrip())
        return
    add(Level.OK, "banner", f"banner {banner.code} {banner.text} ({smtp.banner_time or 0:.3f}s)")
    expected, what = _expected_names(identity, policy)
    banner_ok = bool(smtp.banner_name) and matches_any(smtp.banner_name, expected)
    ehlo = smtp.ehlo
    ehlo_ok = bool(smtp.ehlo_name) and matches_any(smtp.ehlo_name, expected)
    verb = smtp.ehlo_verb or "EHLO"
    if expected:
        shown = ", ".join(expected)
        same = names_match(smtp.banner_name, smtp.ehlo_name)
        if not banner_ok and ehlo is not None and ehlo.positive and not ehlo_ok and same:
            add(policy.mismatch, "name-mismatch",
                f"banner and {verb} name {smtp.banner_name} do not match {what} {shown}")
        else:
            if not banner_ok:
                name = smtp.banner_name or "(none)"
                add(policy.mismatch, "banner-mismatch",
                    f"banner name {name} does not match {what} {shown}")
            if ehlo is not None and ehlo.positive and not ehlo_ok:
                add(policy.mismatch, "ehlo-mismatch",
                    f"{verb} name {smtp.ehlo_name or '(none)'} does not match {what} {shown}")
    if smtp.error_code:
        level = Level.UNKNOWN if smtp.error_code == "timeout" else Level.CRITICAL
        error = smtp.error or "failed"
        text = error if where in error else f"{where}: {error}"
        if ehlo is not None and not ehlo.positive:  # it went wrong on the HELO after it
            text = f"EHLO {smtp.ehlo_sent} refused: {ehlo.code} {ehlo.text}".rstrip() \
                + f", then {text}"
        add(level, smtp.error_code, text)
        return
    if ehlo is None:
        return
    if not ehlo.positive:
        if smtp.helo_sent:
            refused, untried = "EHLO and HELO", ""
        elif ehlo.transient:
            refused, untried = "EHLO", " (a temporary refusal: HELO not tried)"
        else:
            refused, untried = "EHLO", " (the server closed the connection: HELO not tried)"
        add(Level.WARNING, "ehlo-refused",
            f"{refused} {smtp.ehlo_sent} refused: {ehlo.code} {ehlo.text}".rstrip() + untried)
        return
    add(Level.OK, "ehlo", f"{verb} reply {ehlo.code} {ehlo.lines[0] if ehlo.lines else ''}"
        f" ({smtp.ehlo_time or 0:.3f}s)")
    if smtp.ehlo_verb == "HELO":
        add(Level.OK, "helo-only", "EHLO refused, HELO accepted (no ESMTP)")
    if smtp.starttls_offered:
        add(Level.OK, "starttls", "STARTTLS offered")
    else:
        add(Level.WARNING if policy.starttls_required else Level.OK, "no-starttls",
            "no STARTTLS offered")
    if policy.cert_days is not None and smtp.starttls_offered:
        _assess_tls(identity, policy, add)


def _assess_tls(identity: AddressIdentity, policy: Policy, add: Adder) -> None:
    smtp = identity.smtp
    assert smtp is not None and policy.cert_days is not None
    tls = smtp.tls
    if tls is None:
        return
    if tls.error or tls.certificate is None:
        add(Level.CRITICAL, "tls-failed", tls.error or "no certificate")
        return
    cert = tls.certificate
    warn_days, crit_days = policy.cert_days
    days = cert.days_left
    expires = cert.not_after.strftime("%Y-%m-%d %H:%M UTC")
    if cert.expired:
        add(Level.CRITICAL, "cert-expired", f"certificate expired on {expires}")
    elif days < crit_days:
        add(Level.CRITICAL, "cert-expiry", f"certificate expires in {days:.1f} days ({expires})")
    elif days < warn_days:
        add(Level.WARNING, "cert-expiry", f"certificate expires in {days:.1f} days ({expires})")
    else:
        add(Level.OK, "cert-expiry", f"certificate valid for {days:.0f} more days ({expires})")
    if cert.not_yet_valid:
        add(Level.CRITICAL, "cert-not-yet-valid",
            f"certificate not valid before {cert.not_before:%Y-%m-%d %H:%M} UTC")
    names = ", ".join(cert.names) or "(no names)"
    ptr = identity.rdns.confirmed_names or [p.name for p in identity.rdns.names if not p.invalid]
    if ptr:
        covered = [n for n in ptr if cert.covers(n)]
        verdict = f"covers PTR {covered[0]}" if covered else f"does not cover PTR {ptr[0]}"
    else:
        verdict = "no PTR name to compare"
    signed = ", self-signed" if cert.self_signed else ""
    add(Level.OK, "cert-names", f"certificate ({tls.version or 'TLS'}{signed}) for {names}: "
        f"{verdict}")
