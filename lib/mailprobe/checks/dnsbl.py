"""check_dnsbl: is the mailer's address (or mail domain) listed on DNS blacklists?"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import nagiosplugin

from mailprobe.checks.plugin import (
    Check,
    PluginArgumentParser,
    UsageError,
    add_mail_domain,
    make_parser,
    nagios_range,
    positive_seconds,
    problem_texts,
    run,
    severity,
)
from mailprobe.net.addresses import unusable_reason
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import is_ip_address
from mailprobe.probes.dnsbl.lookup import (
    ERROR,
    FAILED,
    DnsblReport,
    HostLookupError,
    Target,
    Unchecked,
    probe,
    resolve_host,
)
from mailprobe.probes.dnsbl.zones import (
    CURATED,
    DOMAIN,
    IP,
    Zone,
    dead_reason,
    default_zones,
    known_zone,
    pydnsbl_zones,
)

NAME = "DNSBL"
MAX_NAMED = 3  # lists that could not be checked, named on the status line (all in long output)
STATES = {"ok": nagiosplugin.Ok, "warning": nagiosplugin.Warn,
          "critical": nagiosplugin.Critical, "unknown": nagiosplugin.Unknown}

DESCRIPTION = f"""\
Checks whether a mail server's IP addresses (-H) and/or a mail domain (--mail-domain) are
listed on DNS blacklists, and says what each listing means and where to ask for removal.

State: the weights of all listings are summed (default weight 1 per list, 2 for Spamhaus ZEN
and DBL) and compared with -w/-c (Nagios ranges; the defaults -w 0 -c 1 mean WARNING from
weight 1, CRITICAL from weight 2). A list that answers with an error code (e.g. Spamhaus
127.255.255.254, or anything outside 127.0.0.0/8) or gives no usable answer (timeout,
SERVFAIL, REFUSED) "could not be checked": UNKNOWN by default (--error-state, --failed-state),
never clean and never listed; if no list could be checked the result is UNKNOWN. So is a list
whose RFC 5782 test entry (127.0.0.2, TEST, or the list's documented test point) is not listed:
the resolver answers NXDOMAIN for everything or the list is dead. Addresses of -H that could
not be looked up (a failed A or AAAA look-up, a bad DNS answer like 0.0.0.0) make it UNKNOWN.
Precedence: CRITICAL > UNKNOWN > WARNING > OK.

Zone syntax (--zone, --add-zone, --list lines): NAME[:WEIGHT][:ip|domain][:no-test-entry], e.g.
zen.spamhaus.org, bl.example.org:0.5, dbl.example.org:domain (in files, spaces also separate);
no-test-entry for a list without RFC 5782's test entry (its "not listed" is then taken as is).
Default lists curated {CURATED}; docs/check_dnsbl.md has the table.
"""

NO_TEST_ENTRY = "no-test-entry"


def _zone_spec(text: str) -> Zone:
    """Parse ``NAME[:WEIGHT][:ip|domain][:no-test-entry]`` (also space- or comma-separated)."""
    tokens = text.replace(",", " ").replace(":", " ").split()
    if not tokens:
        raise argparse.ArgumentTypeError("empty zone")
    name = tokens[0].lower().rstrip(".")
    if not name or any(c in name for c in "/\\@ ") or "." not in name:
        raise argparse.ArgumentTypeError(f"bad zone {tokens[0]!r}: give a DNS zone name")
    weight: float | None = None
    kind: str | None = None
    test_point: str | None = None
    for token in tokens[1:]:
        lowered = token.lower()
        if lowered in (IP, DOMAIN):
            kind = lowered
            continue
        if lowered == NO_TEST_ENTRY:
            test_point = ""
            continue
        try:
            weight = float(token)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad zone option {token!r} in {text!r}: give a weight, ip/domain or "
                f"{NO_TEST_ENTRY}") from None
        if not 0 <= weight <= 1000:
            raise argparse.ArgumentTypeError(f"bad weight {token!r}: give 0 to 1000")
    base = known_zone(name) or Zone(name)
    return base.with_options(weight, kind, test_point)


def _lines(option: str, path: str) -> list[tuple[int, str]]:
    """(line number, text) of a file's non-empty lines, '#' comments removed."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"cannot read {option} {path}: {exc}") from exc
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            found.append((number, line))
    return found


def read_hosts(path: str) -> list[Target]:
    """Mailer addresses from a file, one IPv4/IPv6 address a line ('#' comments)."""
    targets = []
    for number, line in _lines("--hosts", path):
        if not is_ip_address(line):
            raise UsageError(f"--hosts {path} line {number}: {line[:60]!r} is not an IP address")
        why = unusable_reason(line)
        if why:
            raise UsageError(f"--hosts {path} line {number}: {line} cannot be a mail server "
                             f"({why})")
        target = Target.address(line)
        if target not in targets:
            targets.append(target)
    if not targets:
        raise UsageError(f"--hosts {path} names no address")
    return targets


def read_list(path: str) -> list[Zone]:
    """Zones from a file: one ``NAME [WEIGHT] [ip|domain]`` a line, '#' comments."""
    zones = []
    for number, line in _lines("--list", path):
        try:
            zones.append(_zone_spec(line))
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--list {path} line {number}: {exc}") from exc
    if not zones:
        raise UsageError(f"--list {path} names no zone")
    return zones


def zone_spec(text: str) -> Zone:
    return _zone_spec(text)


def select_zones(args: argparse.Namespace) -> list[Zone]:
    """The zones to ask: --zone/--list (or the defaults), plus --add-zone, minus --exclude."""
    chosen: list[Zone] = list(args.zone or [])
    for path in args.list or []:
        chosen.extend(read_list(path))
    if getattr(args, "pydnsbl_lists", False):
        catalogue, args.dead_left_out = pydnsbl_zones()
        chosen.extend(catalogue)
    if not chosen:
        chosen = default_zones()
    chosen.extend(args.add_zone or [])
    by_name: dict[str, Zone] = {}
    for zone in chosen:
        by_name[zone.host] = zone  # a later spec overrides an earlier one
    for name in args.exclude or []:
        by_name.pop(name.lower().rstrip("."), None)
    for name in by_name:
        reason = dead_reason(name)
        if reason:
            raise UsageError(f"{name} must not be used: {reason} (a dead list can answer "
                             "'listed' for everything)")
    return list(by_name.values())


def make_targets(args: argparse.Namespace, deadline: Deadline
                 ) -> tuple[list[Target], list[Unchecked]]:
    """The targets to check, and what of -H could not be checked (a family, a bad answer)."""
    targets: list[Target] = []
    unchecked: list[Unchecked] = []
    if args.hostname:
        family = 4 if args.ipv4 else 6 if args.ipv6 else 0
        if is_ip_address(args.hostname):
            target = Target.address(args.hostname)
            if family and target.family != family:
                raise UsageError(f"-{family} given but -H {args.hostname} is IPv{target.family}")
            targets.append(target)
        else:
            try:
                found = resolve_host(args.hostname.rstrip("."), deadline, family=family,
                                     nameservers=args.nameserver,
                                     query_timeout=args.query_timeout)
            except HostLookupError as exc:
                raise nagiosplugin.CheckError(str(exc)) from exc
            unchecked = found.unchecked
            seen = []
            for address in found.addresses:
                target = Target.address(address)
                if target not in seen:
                    seen.append(target)
            targets.extend(seen)
    for path in args.hosts or []:
        family = 4 if args.ipv4 else 6 if args.ipv6 else 0
        targets.extend(t for t in read_hosts(path)
                       if t not in targets and (not family or t.family == family))
    for domain in args.mail_domain or []:
        try:
            targets.append(Target.domain(domain))
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    return targets, unchecked


class Dnsbl(nagiosplugin.Resource):
    """Runs the probe and turns its report into metrics."""

    def __init__(self, args: argparse.Namespace, deadline: Deadline,
                 zones: list[Zone]) -> None:
        self.args = args
        self.deadline = deadline
        self.zones = zones
        self.report: DnsblReport | None = None

    def probe(self) -> list[nagiosplugin.Metric]:
        started = time.monotonic()
        targets, unchecked = make_targets(self.args, self.deadline)
        self.report = report = probe(
            targets, self.zones, self.deadline, nameservers=self.args.nameserver,
            query_timeout=self.args.query_timeout, want_txt=not self.args.no_txt,
            sanity=not self.args.no_sanity_check, host=self.args.hostname, unchecked=unchecked)
        report.seconds = time.monotonic() - started  # with the resolution of -H
        total = len(report.results)
        return [
            nagiosplugin.Metric("weight", _number(report.weight), min=0, context="dnsbl"),
            nagiosplugin.Metric("listed", len(report.listed), min=0, max=total,
                                context="count"),
            nagiosplugin.Metric("checked", len(report.checked), min=0, max=total,
                                context="count"),
            nagiosplugin.Metric("failed", len(report.failed), min=0, max=total,
                                context="count"),
            nagiosplugin.Metric("time", round(report.seconds, 3), "s", min=0, context="count"),
        ]


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 3)


class DnsblContext(nagiosplugin.Context):
    """The one evaluated context: thresholds on the summed weight, plus the failures."""

    def __init__(self, warning: nagiosplugin.Range, critical: nagiosplugin.Range,
                 error_state: nagiosplugin.state.ServiceState,
                 failed_state: nagiosplugin.state.ServiceState) -> None:
        super().__init__("dnsbl")
        self.warning = warning
        self.critical = critical
        self.error_state = error_state
        self.failed_state = failed_state

    def evaluate(self, metric: nagiosplugin.Metric, resource: Dnsbl) -> nagiosplugin.Result:
        report = resource.report
        assert report is not None
        if not report.results:
            return self.result_cls(nagiosplugin.Unknown, no_jobs_reason(report), metric)
        if not report.checked:
            return self.result_cls(nagiosplugin.Unknown, "", metric)
        state = nagiosplugin.Ok
        if not self.critical.match(metric.value):
            state = nagiosplugin.Critical
        elif not self.warning.match(metric.value):
            state = nagiosplugin.Warn
        if report.by_status(ERROR):
            state = max(state, self.error_state, key=severity)
        if report.by_status(FAILED):
            state = max(state, self.failed_state, key=severity)
        if report.unchecked:  # addresses of -H not checked: never OK, never only a warning
            state = max(state, nagiosplugin.Unknown, key=severity)
        return self.result_cls(state, "", metric)

    def performance(self, metric: nagiosplugin.Metric,
                    resource: Dnsbl) -> nagiosplugin.Performance:
        return nagiosplugin.Performance("weight", metric.value, "", self.warning,
                                        self.critical, 0)


def no_jobs_reason(report: DnsblReport) -> str:
    if report.skipped:
        why = "none of the selected lists lists IPv6 addresses: nothing was checked"
    else:
        why = ("no selected list matches the targets (IP lists for -H, domain lists for "
               "--mail-domain)")
    return "; ".join([why, *(u.brief for u in report.unchecked)])


def _plural(count: int, word: str) -> str:
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word[:-1]}ies" if word.endswith("y") else f"{count} {word}s"


def summarize(report: DnsblReport) -> str:
    """The status line text: per target, how many lists list it and which."""
    parts: list[tuple[bool, str]] = []
    for target in report.targets:
        mine = [r for r in report.results if r.target == target]
        if not mine:
            continue
        lists = "domain list" if target.kind == DOMAIN else "list"
        listed = [r for r in mine if r.status == "listed"]
        answered = [r for r in mine if not r.could_not_check]
        if listed:
            named = ", ".join(r.zone.host for r in listed)
            parts.append((True, f"{target.text} listed on {len(listed)} of "
                                f"{_plural(len(mine), lists)} ({named})"))
        elif len(answered) == len(mine):
            parts.append((False, f"{target.text} not listed on {_plural(len(mine), lists)}"))
        elif answered:
            parts.append((False, f"{target.text} not listed on {len(answered)} of "
                                 f"{_plural(len(mine), lists)}"))
    texts = [text for listed, text in parts if listed]
    clean = [text for listed, text in parts if not listed]
    texts += clean[:MAX_NAMED]  # a name with hundreds of addresses must not flood the line
    if len(clean) > MAX_NAMED:
        texts.append(f"{len(clean) - MAX_NAMED} more addresses not listed")
    if report.host and not is_ip_address(report.host):
        ips = [t.text for t in report.targets if t.kind == IP]
        addresses = ", ".join(ips[:MAX_NAMED]) + (
            f" and {len(ips) - MAX_NAMED} more" if len(ips) > MAX_NAMED else "")
        prefix = f"{report.host} ({addresses}): "
    else:
        prefix = ""
    failed = report.failed
    if failed:
        names = sorted({r.zone.host for r in failed})
        if not report.checked:
            why = ", ".join(sorted({f"{r.zone.host} {r.brief}" for r in failed}))
            texts = [f"could not check any list ({why})"]
        else:
            shown = ", ".join(names[:MAX_NAMED])
            if len(names) > MAX_NAMED:
                shown += f" and {len(names) - MAX_NAMED} more"
            texts.append(f"{_plural(len(names), 'list')} could not be checked ({shown})")
    texts.extend(u.brief for u in report.unchecked)
    return prefix + "; ".join(texts)


def long_output(report: DnsblReport, verbose: int, dead_left_out: Sequence[str] = ()) -> list[str]:
    """One line per listing and per list that could not be checked (-v: every list)."""
    lines = []
    for r in report.listed:
        codes = "; ".join(f"return code {d.code}: {d.meaning}" for d in r.listings)
        line = f"{r.target.text} LISTED on {r.zone.host} (weight {r.zone.weight:g}): {codes}"
        if r.txt:
            line += " - reason: " + " / ".join(t.strip() for t in r.txt)
        if r.zone.url:
            line += f" - removal/lookup: {r.zone.lookup_url(r.target.text)}"
        lines.append(line)
    for r in report.failed:
        kind = "error answer" if r.status == ERROR else "no usable answer"
        lines.append(f"{r.target.text} could not be checked on {r.zone.host} ({kind}): "
                     f"{r.reason}")
    lines.extend(u.reason for u in report.unchecked)
    if verbose:
        for r in report.results:
            if r.status == "clean":
                lines.append(f"{r.target.text} not listed on {r.zone.host} "
                             f"({r.seconds * 1000:.0f} ms)")
        for name in dead_left_out:
            lines.append(f"{name} (in pydnsbl's catalogue) not asked: {dead_reason(name)}")
        for target, zone, why in report.skipped:
            lines.append(f"{target.text} not asked on {zone.host}: {why}")
        for host, said in report.test_entries.items():
            lines.append(f"{host} RFC 5782 test entries: {said}")
        rounds = {0: "no round", 1: "one round"}.get(report.rounds, f"{report.rounds} rounds")
        lines.append(f"{_plural(len(report.results), 'question')} to "
                     f"{_plural(len(report.zones), 'list')} for "
                     f"{_plural(len(report.targets), 'target')}: "
                     f"{_plural(report.queries, 'DNS query')} in {rounds}, "
                     f"{report.seconds:.3f}s")
    if verbose >= 3:
        lines.append("DNS transcript:")
        lines.extend(f"  {line}" for line in report.transcript)
    return lines


class DnsblSummary(nagiosplugin.Summary):
    def __init__(self, resource: Dnsbl, verbose: int) -> None:
        self.resource = resource
        self.verbose_level = verbose

    def _text(self, results: nagiosplugin.Results) -> str:
        report = self.resource.report
        if report is None or not report.results:
            return "; ".join(problem_texts(results)) or "nothing was checked"
        return summarize(report)

    def ok(self, results: nagiosplugin.Results) -> str:
        return self._text(results)

    def problem(self, results: nagiosplugin.Results) -> str:
        return self._text(results)

    def verbose(self, results: nagiosplugin.Results) -> list[str]:
        report = self.resource.report
        if report is None:
            return []
        args = self.resource.args
        lines = long_output(report, self.verbose_level, getattr(args, "dead_left_out", ()))
        lines.extend(f"{domain} not asked: no domain list selected (add ZONE:domain)"
                     for domain in args.domains_not_asked)
        return lines


def state_choice(text: str) -> nagiosplugin.state.ServiceState:
    try:
        return STATES[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"invalid state {text!r}: give ok, warning, critical or unknown") from None


def build_parser() -> PluginArgumentParser:
    parser = make_parser("check_dnsbl", DESCRIPTION, default_timeout=30, default_port=None)
    what = parser.add_argument_group("what to check")
    what.add_argument("-H", "--hostname", metavar="HOST",
                      help="IPv4/IPv6 address, or a name whose every A/AAAA address is checked")
    what.add_argument("--hosts", action="append", metavar="FILE",
                      help="also check the addresses in FILE, one IPv4/IPv6 address a line: "
                           "one run audits many mailers (repeatable)")
    add_mail_domain(what, "a mail domain to check on the domain lists (repeatable)",
                    repeatable=True)
    family = what.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ipv4", action="store_true",
                        help="check only the IPv4 addresses of -H")
    family.add_argument("-6", dest="ipv6", action="store_true",
                        help="check only the IPv6 addresses of -H")
    lists = parser.add_argument_group("which lists")
    lists.add_argument("--zone", action="append", type=zone_spec, metavar="ZONE",
                       help="ask this zone (repeatable); replaces the default set")
    lists.add_argument("--list", action="append", metavar="FILE",
                       help="ask the zones in FILE (one a line); replaces the default set")
    lists.add_argument("--pydnsbl-lists", action="store_true",
                       help="ask every list in pydnsbl's catalogue (minus lists known to be "
                       "dead); replaces the default set")
    lists.add_argument("--add-zone", action="append", type=zone_spec, metavar="ZONE",
                       help="ask this zone in addition (repeatable)")
    lists.add_argument("--exclude", action="append", metavar="ZONE",
                       help="do not ask this zone (repeatable)")
    states = parser.add_argument_group("states")
    states.add_argument("-w", "--warning", type=nagios_range, default=nagiosplugin.Range("0"),
                        metavar="RANGE", help="summed weight of listings (default 0: WARNING "
                        "when listed with weight >= 1)")
    states.add_argument("-c", "--critical", type=nagios_range, default=nagiosplugin.Range("1"),
                        metavar="RANGE", help="summed weight of listings (default 1: CRITICAL "
                        "from weight 2)")
    states.add_argument("--error-state", type=state_choice, default=nagiosplugin.Unknown,
                        metavar="STATE", help="state when a list answers with an error code "
                        "(refused, rate-limited, outside 127/8; default unknown)")
    states.add_argument("--failed-state", type=state_choice, default=nagiosplugin.Unknown,
                        metavar="STATE", help="state when a list gives no usable answer "
                        "(timeout, SERVFAIL, REFUSED; default unknown)")
    dns_group = parser.add_argument_group("queries")
    dns_group.add_argument("--query-timeout", type=positive_seconds, default=5.0,
                           metavar="SECONDS", help="time per list (default 5); all lists are "
                           "asked at once, and all within -t")
    dns_group.add_argument("--no-txt", action="store_true",
                           help="do not look up the TXT reason of listings")
    dns_group.add_argument("--no-sanity-check", action="store_true",
                           help="do not ask the lists' RFC 5782 test entries (127.0.0.2 or "
                           "TEST must be listed, 127.0.0.1 or INVALID must not): a dead list "
                           "or a resolver answering NXDOMAIN for everything then reads as "
                           "clean")
    return parser


def build(args: argparse.Namespace, deadline: Deadline) -> nagiosplugin.Check:
    if not args.hostname and not args.mail_domain and not args.hosts:
        raise UsageError("give -H HOST, --hosts FILE and/or --mail-domain DOMAIN")
    zones = select_zones(args)
    if (args.hostname or args.hosts) and not any(z.kind == IP for z in zones):
        raise UsageError("-H/--hosts given but no IP list selected")
    args.domains_not_asked = []
    if args.mail_domain and not any(z.kind == DOMAIN for z in zones):
        if not (args.hostname or args.hosts):
            raise UsageError("--mail-domain given but no domain list selected (add ZONE:domain)")
        # with addresses to check (e.g. mailprobe cron passing the mailer's domain to a check
        # limited to IP lists), the domain is left out and the long output says so
        args.domains_not_asked, args.mail_domain = args.mail_domain, None
    resource = Dnsbl(args, deadline, zones)
    return Check(
        resource,
        DnsblContext(args.warning, args.critical, args.error_state, args.failed_state),
        nagiosplugin.ScalarContext("count"),
        DnsblSummary(resource, args.verbose),
    )


def main(argv: Sequence[str] | None = None) -> None:
    run(NAME, build_parser(), build, argv)
