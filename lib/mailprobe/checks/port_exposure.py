"""check_port_exposure: unsanctioned SMTP listeners and open NetBIOS/SMB ports on a network."""

from __future__ import annotations

import argparse
import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path

import nagiosplugin

from mailprobe.checks import plugin
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Lookup, make_resolver, resolve_target
from mailprobe.probes.exposure.model import (
    NETBIOS_PORTS,
    SUBMISSION_PORTS,
    ExposureReport,
    Listener,
    PortState,
    Service,
)
from mailprobe.probes.exposure.probe import ExposureOptions, probe
from mailprobe.probes.exposure.scan import DEFAULT_CONNECT_TIMEOUT, DEFAULT_IN_FLIGHT
from mailprobe.probes.exposure.targets import (
    DEFAULT_MAX_ADDRESSES,
    HARD_LIMIT,
    AllowList,
    IPAddress,
    IPNetwork,
    TargetError,
    Targets,
    build_targets,
    parse_entry,
    parse_prefix,
)
from mailprobe.probes.exposure.verdict import assess, how_closed, ok_text, unsanctioned_text
from mailprobe.probes.relay.catalogue import AddressError, check_domain

NAME = "PORT_EXPOSURE"
LISTED = 10  # filtered/unreachable/error ports listed one by one in the long output (-v: all)
DESCRIPTION = f"""\
Scan a site's addresses (-N prefixes, -H hosts, --hosts files) from outside, the way a spammer
looking for a relay does: which addresses answer on the SMTP port(s) (--ports, default 25;
--submission adds 465 and 587) without being sanctioned mailers (--allow, --allow-file), and,
with --netbios, which have the NetBIOS/SMB ports 139 and 445 open. Only what the command line
gives is scanned; prefixes over --max-addresses (default {DEFAULT_MAX_ADDRESSES}: an IPv4 /16,
an IPv6 /112) are refused unless --force.

For each unsanctioned SMTP listener the banner and EHLO reply are read and shown (what is
listening); --relay-check also plays check_open_relay's series on it. For an open port 445
the SMB dialects are read without credentials (SMBv1 noted when the server offers it).

States: CRITICAL for unsanctioned SMTP listeners (their count against -w/-c; default -c 0:
any), any open NetBIOS/SMB port, a listener that relays; WARNING for a sanctioned mailer
that answers on none of the SMTP ports ("down or filtered"); UNKNOWN for ports that could not
be probed (the time budget, no route, a bad --source-address) and relay series that prove
nothing; OK when nothing else is open. Precedence CRITICAL > UNKNOWN > WARNING > OK.
Filtered (no answer) and refused (RST) ports are told apart in the long output.

Perfdata: hosts, open (open ports of every kind), unsanctioned, netbios_open, time."""


# -- option values -------------------------------------------------------------------------------

def port_list(text: str) -> list[int]:
    """``--ports 25,587``: comma-separated port numbers."""
    ports = [plugin.port_number(part.strip()) for part in text.split(",") if part.strip()]
    if not ports:
        raise argparse.ArgumentTypeError(f"invalid port list {text!r}: give e.g. 25,587")
    return ports


def prefix(text: str) -> IPNetwork:
    try:
        return parse_prefix(text)
    except TargetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_count(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= HARD_LIMIT:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: give 1 to {HARD_LIMIT}")
    return int(text)


Entry = IPAddress | IPNetwork | str


def entry(text: str, what: str) -> Entry:
    """An address, a prefix or a host name, else UsageError."""
    try:
        parsed = parse_entry(text)
    except TargetError as exc:
        raise plugin.UsageError(f"{what}: {exc}") from None
    if isinstance(parsed, str):
        problem = plugin.host_name_problem(parsed)
        if problem:
            raise plugin.UsageError(f"{what} {plugin.printable(parsed)!r}: {problem}")
    return parsed


def read_entries(path: str, option: str) -> list[Entry]:
    """Entries of a file, one a line ('#' comments)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise plugin.UsageError(f"cannot read {option} {path}: {exc}") from exc
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            found.append(entry(line, f"{option} {path} line {number}"))
    if not found:
        raise plugin.UsageError(f"{option} {path} names nothing")
    return found


def build_parser() -> plugin.PluginArgumentParser:
    parser = plugin.make_parser("check_port_exposure", DESCRIPTION, default_timeout=30,
                                default_port=None)
    what = parser.add_argument_group("what to scan (nothing else is ever contacted)")
    what.add_argument("-N", "--network", type=prefix, action="append", metavar="CIDR",
                      help="an IPv4/IPv6 prefix to scan, e.g. 192.0.2.0/24 (repeatable)")
    # -H as every tool spells it (plugin.add_hostname), but repeatable here
    what.add_argument("-H", "--hostname", dest="hostnames", action="append", metavar="HOST",
                      help="an address or a host name (every A/AAAA address) to scan "
                           "(repeatable)")
    what.add_argument("--hosts", dest="hosts_files", action="append", metavar="FILE",
                      help="scan the addresses, prefixes and host names in FILE, one a line "
                           "(repeatable)")
    what.add_argument("--max-addresses", type=positive_count, default=DEFAULT_MAX_ADDRESSES,
                      metavar="N", help=f"refuse a prefix or targets of more than N addresses "
                      f"(default {DEFAULT_MAX_ADDRESSES}: an IPv4 /16, an IPv6 /112)")
    what.add_argument("--force", action="store_true",
                      help=f"scan beyond --max-addresses (never beyond {HARD_LIMIT}: a /8)")
    family = what.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ipv4", action="store_true", help="use IPv4 only")
    family.add_argument("-6", dest="ipv6", action="store_true", help="use IPv6 only")
    ports = parser.add_argument_group("ports")
    ports.add_argument("--ports", type=port_list, action="append", metavar="LIST",
                       help="SMTP ports to scan, comma-separated (default 25; repeatable)")
    ports.add_argument("--submission", action="store_true",
                       help="also scan 465 (SMTP over TLS) and 587 (submission)")
    ports.add_argument("--netbios", action="store_true",
                       help="also scan the NetBIOS/SMB ports 139 and 445: any open is CRITICAL")
    allowed = parser.add_argument_group("sanctioned mailers")
    allowed.add_argument("--allow", action="append", metavar="LIST",
                         help="sanctioned mailers: addresses, prefixes or host names, "
                              "comma-separated (repeatable)")
    allowed.add_argument("--allow-file", action="append", metavar="FILE",
                         help="sanctioned mailers in FILE, one a line (repeatable)")
    how = parser.add_argument_group("probe")
    how.add_argument("--connect-timeout", type=plugin.positive_seconds,
                     default=DEFAULT_CONNECT_TIMEOUT, metavar="SECONDS",
                     help=f"wait for each TCP handshake; no answer by then is 'filtered' "
                          f"(default {DEFAULT_CONNECT_TIMEOUT:g})")
    how.add_argument("--max-in-flight", type=positive_count, default=DEFAULT_IN_FLIGHT,
                     metavar="N", help=f"connects pending at once (default {DEFAULT_IN_FLIGHT}; "
                     "limited by the open-files limit)")
    plugin.add_command_timeout(how, default=10.0, more=" for each reply of a listener, SMTP "
                               "or SMB")
    how.add_argument("--source-address", metavar="ADDRESS",
                     help="local address to speak from (the probe's vantage point)")
    plugin.add_helo(how, "our EHLO name (default: this host's name)")
    how.add_argument("--relay-check", action="store_true",
                     help="play check_open_relay's relay series on each unsanctioned listener "
                          "(stops at RCPT: nothing is sent)")
    plugin.add_mail_domain(how, "with --relay-check: the listeners' mail domain for the control "
                           "recipient postmaster@DOMAIN (default: guessed from each banner)")
    limits = parser.add_argument_group("thresholds")
    limits.add_argument("-w", "--warning", type=plugin.nagios_range, metavar="RANGE",
                        help="unsanctioned SMTP listeners range for WARNING (default none)")
    limits.add_argument("-c", "--critical", type=plugin.nagios_range, default="0",
                        metavar="RANGE", help="unsanctioned SMTP listeners range for CRITICAL "
                        "(default 0: any is CRITICAL)")
    return parser


# -- the targets and the allow list, from the options ----------------------------------------

def split_list(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


class Plan:
    """What the options ask for: target and allow entries (names still to be looked up)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.family = 4 if args.ipv4 else 6 if args.ipv6 else 0
        self.prefixes: list[IPNetwork] = list(args.network or [])
        self.addresses: list[IPAddress] = []
        self.names: list[str] = []
        for text in args.hostnames or []:
            self._add_target(entry(text, "-H"))
        for path in args.hosts_files or []:
            for item in read_entries(path, "--hosts"):
                self._add_target(item)
        self.allow: list[Entry] = [entry(text, "--allow") for text in split_list(args.allow)]
        for path in args.allow_file or []:
            self.allow.extend(read_entries(path, "--allow-file"))
        if not (self.prefixes or self.addresses or self.names):
            raise plugin.UsageError("give what to scan: -N CIDR, -H HOST and/or --hosts FILE")
        self.max_addresses = args.max_addresses
        self.force = args.force

    def _add_target(self, item: Entry) -> None:
        if isinstance(item, str):
            self.names.append(item)
        elif isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            self.prefixes.append(item)
        else:
            self.addresses.append(item)

    def targets(self, resolved: Sequence[IPAddress] = ()) -> Targets:
        try:
            return build_targets(self.prefixes, [*self.addresses, *resolved],
                                 max_addresses=self.max_addresses, force=self.force,
                                 family=self.family)
        except TargetError as exc:
            raise plugin.UsageError(str(exc)) from None

    @property
    def allow_names(self) -> list[str]:
        return [item for item in self.allow if isinstance(item, str)]


def resolve(names: list[str], args: argparse.Namespace, deadline: Deadline,
            family: int) -> dict[str, list[IPAddress]]:
    """The addresses of host names (through --nameserver); a name without any is a bad option."""
    if not names:
        return {}
    lookup = Lookup(make_resolver(args.nameserver, timeout=min(5.0, deadline.remaining())),
                    deadline)
    found = {}
    for name in dict.fromkeys(names):
        addresses = [ipaddress.ip_address(a) for a in resolve_target(name, lookup, family)]
        if not addresses:
            which = {4: "A", 6: "AAAA"}.get(family, "A or AAAA")
            raise plugin.UsageError(f"{name} has no {which} address")
        found[name] = addresses
    return found


# -- the Nagios resource -------------------------------------------------------------------------

class PortExposure(nagiosplugin.Resource):
    """Runs the exposure probe; the report becomes metrics and findings."""

    def __init__(self, args: argparse.Namespace, deadline: Deadline, plan: Plan) -> None:
        self.args = args
        self.deadline = deadline
        self.plan = plan
        self.report: ExposureReport | None = None
        self.allow = AllowList()

    def probe(self) -> list[nagiosplugin.Metric]:
        args, plan = self.args, self.plan
        names = resolve(plan.names, args, self.deadline, plan.family)
        allow_names = resolve(plan.allow_names, args, self.deadline, 0)
        targets = plan.targets([a for found in names.values() for a in found])
        for item in plan.allow:
            if isinstance(item, str):
                for address in allow_names[item]:
                    self.allow.add(address, item)
            else:
                self.allow.add(item)
        options = ExposureOptions(
            ports=selected_ports(args), connect_timeout=args.connect_timeout,
            max_in_flight=args.max_in_flight, command_timeout=args.command_timeout,
            source_address=args.source_address,
            helo=args.helo or socket.gethostname() or "mailprobe.invalid",
            relay_check=args.relay_check, mail_domain=args.mail_domain,
            guess_domain=guess_domain, transcript=args.verbose >= 3)
        self.report = report = probe(targets, self.allow, options, self.deadline)
        metrics = [
            nagiosplugin.Metric("hosts", report.hosts, min=0, context="count"),
            nagiosplugin.Metric("open", report.open_ports, min=0, context="count"),
            nagiosplugin.Metric("unsanctioned", len(report.unsanctioned), min=0),
            nagiosplugin.Metric("netbios_open", len(report.netbios), min=0, context="count"),
            nagiosplugin.Metric("time", round(report.seconds, 3), "s", min=0, context="count"),
        ]
        metrics.extend(nagiosplugin.Metric(f.code, f, context="finding") for f in assess(report))
        return metrics


def selected_ports(args: argparse.Namespace) -> list[int]:
    ports = [p for group in args.ports or [[25]] for p in group]
    if args.submission:
        ports.extend(SUBMISSION_PORTS)
    if args.netbios:
        ports.extend(NETBIOS_PORTS)
    return list(dict.fromkeys(ports))


def guess_domain(server_name: str) -> str | None:
    """The mail domain a banner's host name suggests (as check_open_relay guesses it)."""
    from mailprobe.probes.domains import guess_mail_domain  # only with --relay-check

    return guess_mail_domain(server_name)


# -- the text ------------------------------------------------------------------------------------

class PortExposureSummary(plugin.ProblemSummary):
    """The status line (from the results) and the long output (from the report)."""

    def __init__(self, resource: PortExposure) -> None:
        super().__init__("")
        self.resource = resource

    def unsanctioned(self, metric: nagiosplugin.Metric) -> str:
        report = self.resource.report
        return unsanctioned_text(report) if report else f"{metric.value} unsanctioned"

    def ok(self, results: nagiosplugin.Results) -> str:
        report = self.resource.report
        return ok_text(report) if report else ""

    def verbose(self, results: nagiosplugin.Results) -> list[str]:
        report = self.resource.report
        if report is None:
            return []
        return long_output(report, self.resource.allow, self.resource.args.verbose)


def long_output(report: ExposureReport, allow: AllowList, verbose: int) -> list[str]:
    """One line per listener and per port that did not simply refuse, then the counts."""
    lines = [listener_line(x) for x in report.listeners]
    for address, results in report.sanctioned_down.items():
        lines.append(f"DOWN sanctioned mailer {allow.label(address)}: {how_closed(results)}")
    for state, label in ((PortState.FILTERED, "FILTERED"), (PortState.UNREACHABLE, "UNREACHABLE"),
                         (PortState.ERROR, "ERROR"), (PortState.NOT_PROBED, "NOT PROBED")):
        results = report.with_state(state)
        shown = results if verbose or len(results) <= LISTED + 1 else results[:LISTED]
        lines.extend(f"{label} {r.endpoint}: {r.detail or state.value}" for r in shown)
        if len(shown) < len(results):
            lines.append(f"... and {len(results) - len(shown)} more {state.value} ports "
                         "(-v lists all)")
    counts = ", ".join(f"{report.count(s)} {words}" for s, words in (
        (PortState.OPEN, "open"), (PortState.REFUSED, "refused (RST)"),
        (PortState.FILTERED, "filtered (no answer)"), (PortState.UNREACHABLE, "unreachable"),
        (PortState.ERROR, "could not be probed"), (PortState.NOT_PROBED, "not probed"))
        if report.count(s) or s in (PortState.OPEN, PortState.REFUSED, PortState.FILTERED))
    lines.append(f"ports: {counts}")
    lines.extend(f"note: {note}" for note in report.notes)
    if report.sanctioned_outside:
        lines.append("sanctioned mailers not among the targets (not scanned): "
                     + ", ".join(report.sanctioned_outside))
    if verbose:
        lines.append(f"scan: {report.probes} connects ({report.hosts} addresses x "
                     f"{len(report.ports)} ports: {', '.join(map(str, report.ports))}), "
                     f"{report.in_flight} at once, {report.scan_seconds:.3f}s; "
                     f"whole check {report.seconds:.3f}s")
    if verbose >= 3:
        lines.append("transcript:")
        lines.extend(f"  {line}" for line in report.transcript)
        for listener in report.listeners:
            if listener.transcript:
                lines.append(f"  {listener.endpoint} SMTP (-> sent, <- received, ** event):")
                lines.extend(f"    {line}" for line in listener.transcript)
    return lines


def listener_line(listener: Listener) -> str:
    """``UNSANCTIONED 127.0.0.6:25 answers 220 printer.example.org ESMTP; EHLO ...``."""
    where = listener.endpoint
    if not listener.service.is_smtp:
        if listener.smb is not None:
            facts = listener.smb.describe()
        elif listener.service is Service.SMB:
            facts = "dialects not read: the time budget ran out"
        else:
            facts = "the dialects are read on 445 only"
        return f"NETBIOS {where} open ({listener.service.value}): {facts}"
    if listener.sanctioned:
        return f"SANCTIONED {where} open"
    text = f"UNSANCTIONED {where} " + (listener.greeting.describe() if listener.greeting
                                       else "open (greeting not read: the time budget ran out)")
    relay = listener.relay
    if relay is not None:
        if relay.relayed:
            text += (f"; RELAYS {len(relay.relayed)} of {relay.attempts} attempts "
                     f"({', '.join(relay.relayed)})")
        elif relay.inconclusive:
            text += f"; relay series inconclusive: {relay.inconclusive}"
        else:
            text += (f"; relay series: 0 of {relay.attempts} attempts relayed (control "
                     f"postmaster@{relay.mail_domain} accepted)")
    return text


def build(args: argparse.Namespace, deadline: Deadline) -> nagiosplugin.Check:
    try:
        if args.helo:
            args.helo = check_domain(args.helo, "--helo")
        if args.mail_domain:
            args.mail_domain = check_domain(args.mail_domain, "--mail-domain")
    except AddressError as exc:
        raise plugin.UsageError(str(exc)) from exc
    plan = Plan(args)
    plan.targets()  # limits and unusable ranges: a bad option before any traffic
    resource = PortExposure(args, deadline, plan)
    summary = PortExposureSummary(resource)
    return plugin.Check(
        resource,
        plugin.ThresholdContext("unsanctioned", args.warning, args.critical,
                                describe=summary.unsanctioned),
        nagiosplugin.ScalarContext("count"),
        plugin.FindingContext(),
        summary,
    )


def main(argv: Sequence[str] | None = None) -> None:
    plugin.run(NAME, build_parser(), build, argv)

