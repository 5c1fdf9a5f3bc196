"""What the SMTP-speaking plugins that address one mail domain share: the address to probe,
the mail domain guessed from the banner, and checks of the addresses given as options.

(check_open_relay has its own copies of the first two; they behave the same.)
"""

from __future__ import annotations

import argparse
import ipaddress

from mailprobe.checks import plugin
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Lookup, is_ip_address, make_resolver, resolve_target
from mailprobe.net.smtp import SMTPSession, Transcript, greeting_name
from mailprobe.probes.domains import guess_mail_domain
from mailprobe.probes.relay.catalogue import AddressError, check_domain, check_local_part


def choose_address(args: argparse.Namespace, deadline: Deadline) -> str | None:
    """The address to probe: -H itself, or its first A (or AAAA with -6) record."""
    family = 4 if args.ipv4 else 6 if args.ipv6 else 0
    if is_ip_address(args.hostname):  # no resolver: dnspython is never loaded
        addresses = [str(ipaddress.ip_address(args.hostname))]
    else:
        resolver = make_resolver(args.nameserver, timeout=min(5.0, deadline.remaining()))
        addresses = resolve_target(args.hostname, Lookup(resolver, deadline), family)
    wanted = [a for a in addresses if family == 0 or (":" in a) == (family == 6)]
    return sorted(wanted, key=lambda a: ":" in a)[0] if wanted else None  # IPv4 first


def banner_domain(address: str, args: argparse.Namespace, deadline: Deadline,
                  transcript: Transcript) -> tuple[str | None, str]:
    """(the mail domain guessed from the banner, the banner as text) on a short connection.
    SMTP errors propagate (the caller reports the service as down)."""
    with SMTPSession(address, args.port, deadline=deadline, source_address=args.source_address,
                     transcript=transcript, step_timeout=args.command_timeout) as session:
        banner = session.connect()
        session.quit()
    return guess_mail_domain(greeting_name(banner)), str(banner)


def check_address(value: str, what: str) -> str:
    """``local@domain`` safe for MAIL FROM/RCPT TO and a header (angle brackets dropped)."""
    address = value.strip().removeprefix("<").removesuffix(">")
    local, at, domain = address.rpartition("@")
    try:
        if not at:
            raise AddressError(f"{what} {value!r} is not an address (local@domain)")
        check_local_part(local, what)
        check_domain(domain, what)
    except AddressError as exc:
        raise plugin.UsageError(str(exc)) from None
    return address


def check_names(args: argparse.Namespace) -> None:
    """--mail-domain and --helo as safe names (the values are normalised in place)."""
    try:
        if args.mail_domain:
            args.mail_domain = check_domain(args.mail_domain, "--mail-domain")
        if args.helo:
            check_domain(args.helo, "--helo")
    except AddressError as exc:
        raise plugin.UsageError(str(exc)) from None
