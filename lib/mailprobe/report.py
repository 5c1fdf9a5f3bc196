"""``mailprobe report``: the one-click audit of one or many mailers (NST's Relay Check).

For each mailer, in one process and concurrently: the relay series (stopping at RCPT), DNSBL,
banner/rDNS/FCrDNS/STARTTLS, the mail domain's MX, SPF (evaluated for the mailer) and DMARC,
GeoIP, and, when they land, backscatter and (``--portscan``) port exposure. Output as text
(colours on a terminal), JSON (docs/mailprobe-report.md) or one self-contained HTML page. The
exit code is the worst state, as a plugin's would be.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mailprobe import __version__
from mailprobe.audit.model import MailerReport, Report
from mailprobe.audit.options import AuditOptions, MailerTarget
from mailprobe.audit.runner import audit_fleet
from mailprobe.checks.dnsbl import zone_spec
from mailprobe.checks.plugin import (
    PluginArgumentParser,
    UsageError,
    add_mail_domain,
    host_name_problem,
    nameserver,
    port_number,
    positive_seconds,
    printable,
)
from mailprobe.findings import LEVEL_NAMES, UNKNOWN
from mailprobe.net.addresses import unusable_reason
from mailprobe.net.dns import is_ip_address
from mailprobe.probes.geoip import GeoDatabase, GeoIPError, MMDBGeoIP

FORMATS = ("text", "json", "html")
DEFAULT_TIMEOUT = 60.0
DEFAULT_JOBS = 16


def add_probe_options(parser: argparse.ArgumentParser) -> None:
    """The probe options ``report`` and ``serve`` share with the plugins (one spelling)."""
    probe = parser.add_argument_group("probe options (as the plugins spell them)")
    probe.add_argument("-p", "--port", type=port_number, default=25,
                       help="SMTP port (default 25)")
    probe.add_argument("--source-address", metavar="ADDRESS",
                       help="local address to speak from (the probe's vantage point)")
    probe.add_argument("--nameserver", type=nameserver, action="append", metavar="HOST[:PORT]",
                       help="resolver to ask for every DNS look-up (default: the system's)")
    probe.add_argument("--zone", action="append", type=zone_spec, metavar="ZONE",
                       help="DNSBL zone to ask, NAME[:WEIGHT][:ip|domain] (repeatable; "
                            "replaces the curated default set)")
    add_mail_domain(probe, "the mailers' mail domain (default: guessed from the host name, "
                    "the PTR name or the banner, and the report says so)")
    probe.add_argument("-t", "--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT,
                       metavar="SECONDS", help=f"time budget per mailer (default "
                       f"{DEFAULT_TIMEOUT:g})")
    probe.add_argument("--helo", "--ehlo", dest="helo", metavar="NAME",
                       help="our EHLO name in the relay series (default: this host's name)")
    probe.add_argument("--geoip-db", metavar="FILE.mmdb",
                       help="a MaxMind or DB-IP database (city, coordinates); default: the "
                            "bundled country and AS data")
    family = probe.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ipv4", action="store_true", help="use IPv4 only")
    family.add_argument("-6", dest="ipv6", action="store_true", help="use IPv6 only")


def build_parser(prog: str) -> PluginArgumentParser:
    parser = PluginArgumentParser(
        prog=prog, add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1] if __doc__ else "")
    parser.add_argument("-h", "--help", action="help", help="show this help and exit")
    parser.add_argument("-V", "--version", action="version",
                        version=f"{prog} (mailprobe) {__version__}")
    what = parser.add_argument_group("what to audit")
    what.add_argument("hosts", nargs="*", metavar="HOST", help="mailer name or address")
    what.add_argument("--hosts", dest="hosts_file", action="append", metavar="FILE",
                      help="audit the mailers in FILE too, one name or address a line "
                           "('#' comments)")
    what.add_argument("--portscan", action="store_true",
                      help="also check exposed ports (NETBIOS 139/445, submission)")
    add_probe_options(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS, default="text",
                     help="text (default; colours on a terminal), json, or html")
    out.add_argument("-o", "--output", metavar="FILE",
                     help="write the report to FILE instead of standard output")
    out.add_argument("--color", "--colour", dest="color", choices=("auto", "always", "never"),
                     default="auto", help="colours in text: auto (a terminal without "
                     "NO_COLOR), always, never")
    out.add_argument("-v", "--verbose", action="count", default=0,
                     help="text: -v the evidence (attempts, records), -vv the transcripts")
    out.add_argument("--jobs", type=int, default=DEFAULT_JOBS, metavar="N",
                     help=f"mailers audited at once (default {DEFAULT_JOBS})")
    return parser


def read_hosts(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"cannot read --hosts {path}: {exc}") from exc
    hosts = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        problem = check_host(line)
        if problem:
            raise UsageError(f"--hosts {path} line {number}: {problem}")
        hosts.append(line)
    return hosts


def check_host(host: str) -> str | None:
    """Why ``host`` cannot be audited (None when it can)."""
    problem = host_name_problem(host)
    if problem:
        return f"{printable(host)!r}: {problem}"
    if is_ip_address(host) and unusable_reason(host):
        return f"{host}: cannot be a mail server ({unusable_reason(host)})"
    return None


def options_from(args: argparse.Namespace) -> AuditOptions:
    """AuditOptions from the shared probe options (``report`` and ``serve``)."""
    if args.source_address and not is_ip_address(args.source_address):
        raise UsageError(f"--source-address {printable(args.source_address)!r}: give an IP "
                         "address of this host")
    mail_domain = args.mail_domain
    if mail_domain:
        mail_domain = mail_domain.strip().rstrip(".").lower()
        if is_ip_address(mail_domain) or host_name_problem(mail_domain):
            raise UsageError(f"--mail-domain {printable(args.mail_domain)!r} is not a domain")
    if args.helo and host_name_problem(args.helo):
        raise UsageError(f"--helo {printable(args.helo)!r}: {host_name_problem(args.helo)}")
    return AuditOptions(port=args.port, source_address=args.source_address,
                        nameservers=args.nameserver, zones=args.zone, mail_domain=mail_domain,
                        timeout=args.timeout, portscan=getattr(args, "portscan", False),
                        geoip_db=args.geoip_db, helo=args.helo,
                        family=4 if args.ipv4 else 6 if args.ipv6 else 0)


def open_geoip(path: str | None) -> GeoDatabase | None:
    if not path:
        return None
    try:
        return MMDBGeoIP(path)
    except GeoIPError as exc:
        raise UsageError(f"--geoip-db: {exc}") from exc


class Progress:
    """A progress bar on a terminal (rich) while a fleet is audited; nothing otherwise."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.bar = None
        if total > 1 and getattr(stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("auditing"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"),
                                console=Console(file=stream), transient=True)
            self.task = self.bar.add_task("", total=total)
            self.bar.start()

    def done(self, mailer: MailerReport) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1,
                            description=f"{mailer.target} {LEVEL_NAMES[mailer.state]}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def render(report: Report, args: argparse.Namespace, stream: TextIO) -> str:
    if args.format == "json":
        from mailprobe.render.jsondoc import render_json

        return render_json(report)
    if args.format == "html":
        from mailprobe.render.htmlpage import render_html

        return render_html(report)
    from mailprobe.render.text import render_report, use_colour

    forced = {"always": True, "never": False}.get(args.color)
    colour = use_colour(stream, forced) if not args.output else bool(forced)
    return render_report(report, colour=colour, verbose=args.verbose)


def main(argv: Sequence[str] | None = None, prog: str = "mailprobe report") -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
        hosts = list(args.hosts)
        for path in args.hosts_file or []:
            hosts.extend(read_hosts(path))
        if not hosts:
            raise UsageError("give at least one HOST or --hosts FILE")
        for host in args.hosts:
            problem = check_host(host)
            if problem:
                raise UsageError(problem)
        if args.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        options = options_from(args)
        geo = open_geoip(args.geoip_db)
    except UsageError as exc:
        sys.stdout.write(f"{prog}: UNKNOWN - bad option: {exc} (see --help)\n")
        return UNKNOWN
    targets = [MailerTarget(h) for h in dict.fromkeys(hosts)]
    progress = Progress(len(targets), sys.stderr)
    try:
        report = audit_fleet(targets, options, jobs=args.jobs, geo=geo,
                             on_mailer=progress.done)
    finally:
        progress.close()
    text = render(report, args, sys.stdout)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            sys.stdout.write(f"{prog}: UNKNOWN - cannot write {args.output}: {exc}\n")
            return UNKNOWN
        sys.stdout.write(f"{prog}: {LEVEL_NAMES[report.state]} - {len(report.mailers)} "
                         f"mailer(s), {args.format} report written to {args.output}\n")
    else:
        sys.stdout.write(text)
    sys.stdout.flush()
    return int(report.state)


if __name__ == "__main__":
    sys.exit(main())
