"""check_spf_mx: the mail domain's SPF and MX records, and whether the mailer passes its SPF.

Probes (``probes.spf.lint``, ``probes.spf.evaluate``, ``probes.mx``, ``probes.dmarc``) return
findings; this module only chooses the domain, runs them, and turns findings and counts into
nagiosplugin results and perfdata.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import nagiosplugin

from mailprobe.checks.plugin import (
    Check,
    FindingContext,
    PluginArgumentParser,
    UsageError,
    add_hostname,
    add_mail_domain,
    host_name_problem,
    make_parser,
    nagios_range,
    problem_texts,
    ranked,
    run,
)
from mailprobe.findings import CRITICAL, OK, UNKNOWN, WARNING, Finding
from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.dns import (
    DNSFailure,
    Lookup,
    is_ip_address,
    make_resolver,
    no_address_reason,
    resolve_target_partly,
)
from mailprobe.net.smtp import SMTPError, SMTPSession, greeting_name
from mailprobe.probes.dmarc import DMARCReport, check_dmarc, organizational_domain
from mailprobe.probes.identity.names import host_name_problem as name_problem
from mailprobe.probes.mx import MXReport, probe_mx
from mailprobe.probes.spf.evaluate import Evaluation, evaluate
from mailprobe.probes.spf.lint import LOOKUP_LIMIT, VOID_LIMIT, SPFReport, lint

NAME = "SPF_MX"
EVAL_LEVELS = {"pass": OK, "softfail": WARNING, "neutral": WARNING, "none": WARNING,
               "fail": CRITICAL, "permerror": CRITICAL, "temperror": UNKNOWN}
BANNER_CAP = 10.0  # seconds to wait for a banner when guessing the domain
T = TypeVar("T")


def build_parser() -> PluginArgumentParser:
    parser = make_parser(
        "check_spf_mx",
        "Audit a mail domain's SPF, MX and DMARC records, and evaluate SPF for the mailer.",
        default_timeout=30, default_port=25)
    opts = parser.add_argument_group("check_spf_mx options")
    add_mail_domain(opts, "the mail domain (default: guessed from -H's PTR name or banner "
                    "with the Public Suffix List)")
    add_hostname(opts, "the mailer (name or IP): evaluate SPF for its addresses")
    opts.add_argument("-w", "--warning", type=nagios_range, default=nagios_range("8"),
                      metavar="RANGE", help="spf_lookups warning range (default 8)")
    opts.add_argument("-c", "--critical", type=nagios_range,
                      default=nagios_range(str(LOOKUP_LIMIT)), metavar="RANGE",
                      help=f"spf_lookups critical range (default {LOOKUP_LIMIT}, RFC 7208 4.6.4)")
    opts.add_argument("--allow-null-mx", action="store_true",
                      help="a null MX (domain accepts no mail) is OK instead of CRITICAL")
    opts.add_argument("--expect-mx", action="store_true",
                      help="WARNING when the mailer (-H) is not one of the MX hosts")
    opts.add_argument("--require-dmarc", action="store_true",
                      help="WARNING when the domain has no valid DMARC record")
    return parser


@dataclass
class Audit:
    """Everything the check found, before any Nagios judgement."""

    domain: str
    guessed_from: str = ""  # how the domain was guessed; "" when given with --mail-domain
    guessed_name: str = ""  # the host name it was guessed from
    mailer: str | None = None
    mailer_addresses: list[str] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    spf: SPFReport | None = None
    mx: MXReport | None = None
    dmarc: DMARCReport | None = None
    problems: list[Finding] = field(default_factory=list)  # steps that could not be done
    stopped: bool = False  # the budget ran out or the resolver refused: no step after
    seconds: float = 0.0
    dns_log: list[str] = field(default_factory=list)  # every look-up (-vvv)

    def step(self, lookup: Lookup, action: Callable[[], T]) -> T | None:
        """Run one step of the audit; a DNS failure or a spent budget becomes an UNKNOWN
        problem instead of ending the check, so what the other steps prove still counts
        (a +all is CRITICAL even when the MX look-up fails)."""
        if self.stopped:
            return None
        try:
            return action()
        except DNSFailure as exc:
            self.problems.append(Finding(UNKNOWN, "dns-failure", str(exc)))
            self.stopped = lookup.unreachable
        except BudgetExhausted as exc:
            self.problems.append(Finding(UNKNOWN, "budget", str(exc)))
            self.stopped = True
        return None


def _family(args: argparse.Namespace) -> int:
    return 4 if getattr(args, "ipv4", False) else 6 if getattr(args, "ipv6", False) else 0


def guess_domain(args: argparse.Namespace, addresses: list[str], lookup: Lookup,
                 deadline: Deadline) -> tuple[str, str, str]:
    """(domain, how, name) from -H's name, its PTR name, or its SMTP banner; CheckError if none.

    Only a valid host name is cut down to a domain: a PTR or banner "name" with escapes,
    control characters or an address in it must not become the domain that is audited.
    """
    tried: list[str] = []

    def candidates() -> Iterator[tuple[str, str]]:
        if not is_ip_address(args.hostname):
            yield args.hostname, f"the host name {args.hostname}"
        for address in addresses[:2]:
            try:
                names = lookup.ptr(address)
            except DNSFailure as exc:
                tried.append(f"PTR of {address} failed ({exc.reason})")
                continue
            yield from ((n, f"the PTR name {n} of {address}") for n in names)
        if addresses:
            banner = _banner_name(addresses[0], args, deadline, tried)
            if banner:
                yield banner, f"the banner name {banner} of {addresses[0]}"

    for name, how in candidates():
        problem = name_problem(name)
        domain = None if problem else organizational_domain(name)
        if domain:
            return domain, how, name
        tried.append(f"{how} is not a host name ({problem})" if problem
                     else f"{name} has no registrable domain")
    raise nagiosplugin.CheckError("no --mail-domain given and none could be guessed from -H"
                                  + (f": {'; '.join(tried)}" if tried else ""))


def _banner_name(address: str, args: argparse.Namespace, deadline: Deadline,
                 tried: list[str]) -> str:
    session = SMTPSession(address, args.port, deadline=deadline,
                          source_address=args.source_address, step_timeout=BANNER_CAP)
    try:
        name = greeting_name(session.connect())
    except SMTPError as exc:
        tried.append(f"no banner from {address} port {args.port} ({exc})")
        return ""
    finally:
        session.quit()
    if not name:
        tried.append(f"the banner of {address} names no host")
    return name


def audit(args: argparse.Namespace, deadline: Deadline) -> Audit:
    """Run every probe for the domain (and the mailer) inside the deadline.

    Each step stands alone: one that fails (DNS, budget) is recorded as a problem and the
    others still run, unless nothing more can be asked (the budget is spent, or every
    resolver refused).
    """
    resolver = make_resolver(args.nameserver, timeout=min(5.0, deadline.remaining()))
    lookup = Lookup(resolver, deadline)
    mailer = args.hostname
    result = Audit("", mailer=mailer)
    addresses: list[str] | None = None  # every address of the mailer (None: not known)
    if mailer:
        found = result.step(lookup, lambda: resolve_target_partly(mailer, lookup, _family(args)))
        addresses, failure = found or (None, None)
        if failure is not None:  # the addresses that could be had are still evaluated
            result.problems.append(Finding(UNKNOWN, "mailer-dns", str(failure)))
            result.stopped = isinstance(failure, BudgetExhausted) or lookup.unreachable
            result.mailer_addresses = addresses or []
            addresses = None  # not all of them: the MX comparison cannot say "not an MX host"
        if addresses == []:
            reason = result.step(lookup,
                                 lambda: no_address_reason(mailer, lookup, _family(args)))
            result.problems.append(Finding(UNKNOWN, "mailer-no-address",
                                           f"the mailer {reason or f'{mailer} has no address'}"))
    if addresses is not None:
        result.mailer_addresses = addresses
    if args.mail_domain:
        domain, how, name = args.mail_domain.strip().rstrip(".").lower(), "", ""
        if not domain or is_ip_address(domain) or host_name_problem(domain):
            raise UsageError(f"invalid --mail-domain {args.mail_domain!r}")
    elif mailer:
        try:
            if result.stopped:
                raise nagiosplugin.CheckError("no --mail-domain given and none could be guessed")
            domain, how, name = guess_domain(args, result.mailer_addresses, lookup, deadline)
        except nagiosplugin.CheckError as exc:
            texts = [str(exc), *(f.text for f in result.problems)]
            raise nagiosplugin.CheckError("; ".join(texts)) from None
    else:
        raise UsageError("give --mail-domain (or -H to guess it)")
    result.domain, result.guessed_from, result.guessed_name = domain, how, name
    result.spf = result.step(lookup, lambda: lint(domain, lookup))
    helo = mailer if mailer and not is_ip_address(mailer) else domain
    for address in result.mailer_addresses:
        evaluation = result.step(lookup, _evaluation(address, domain, lookup, helo))
        if evaluation is not None:
            result.evaluations.append(evaluation)
    result.mx = result.step(lookup, lambda: probe_mx(
        domain, lookup, allow_null_mx=args.allow_null_mx, mailer=mailer,
        mailer_addresses=addresses, expect_mx=args.expect_mx))
    result.dmarc = result.step(lookup,
                               lambda: check_dmarc(domain, lookup, require=args.require_dmarc))
    result.seconds = deadline.elapsed()
    result.dns_log = lookup.log
    return result


def _evaluation(address: str, domain: str, lookup: Lookup,
                helo: str) -> Callable[[], Evaluation]:
    return lambda: evaluate(address, domain, lookup, helo=helo)


# -- Nagios side ---------------------------------------------------------------------------


def evaluation_finding(ev: Evaluation) -> Finding:
    """The receiver's verdict; pyspf's explanation goes to the long output only."""
    detail = ev.explanation if ev.result in ("permerror", "temperror") else ""
    return Finding(EVAL_LEVELS.get(ev.result, UNKNOWN), f"spf-eval-{ev.result}",
                   f"SPF {ev.result} for {ev.address}", detail)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _bound(word: str, rng: nagiosplugin.Range) -> str:
    """``limit 10`` for the plain range ``10``; ``outside 2:5`` for any other."""
    if not rng.invert and rng.start == 0 and rng.end != float("inf"):
        return f"{word} {rng.end:g}"
    return f"outside {rng}"


class LimitContext(nagiosplugin.Context):
    """A count with -w/-c style ranges and a sentence naming the limit."""

    def __init__(self, name: str, what: str, warning: nagiosplugin.Range | None,
                 critical: nagiosplugin.Range) -> None:
        super().__init__(name)
        self.what = what
        self.warning = warning
        self.critical = critical

    def evaluate(self, metric: nagiosplugin.Metric, resource: object) -> nagiosplugin.Result:
        value = metric.value
        audit = getattr(resource, "audit", None)
        if audit is not None and audit.spf is not None and not audit.spf.complete:
            # part of the tree could not be read: the count is a lower bound, so only a count
            # already beyond a limit is proven
            value_text = f"at least {plural(value, self.what)}"
        else:
            value_text = plural(value, self.what)
        if not self.critical.match(value):
            bound = _bound("limit", self.critical)
            return nagiosplugin.Result(nagiosplugin.Critical, f"{value_text} ({bound})", metric)
        if self.warning is not None and not self.warning.match(value):
            return nagiosplugin.Result(nagiosplugin.Warn,
                                       f"{value_text} ({_bound('warning above', self.warning)})",
                                       metric)
        return nagiosplugin.Result(nagiosplugin.Ok, value_text, metric)

    def performance(self, metric: nagiosplugin.Metric,
                    resource: object) -> nagiosplugin.Performance:
        return nagiosplugin.Performance(metric.name, metric.value, "", self.warning or "",
                                        self.critical, 0)


class PlainContext(nagiosplugin.Context):
    """Perfdata only (mx_hosts, time): always OK, not shown in the long output."""

    def performance(self, metric: nagiosplugin.Metric,
                    resource: object) -> nagiosplugin.Performance:
        return nagiosplugin.Performance(metric.name, metric.value, metric.uom, min=0)


class SpfMx(nagiosplugin.Resource):
    def __init__(self, args: argparse.Namespace, deadline: Deadline) -> None:
        self.args = args
        self.deadline = deadline
        self.audit: Audit | None = None

    def probe(self) -> list[nagiosplugin.Metric]:
        self.audit = result = audit(self.args, self.deadline)
        findings = [*result.problems, *(evaluation_finding(ev) for ev in result.evaluations)]
        findings += result.spf.findings if result.spf is not None else []
        metrics = [nagiosplugin.Metric(f"finding{i}", f, context="finding")
                   for i, f in enumerate(findings)]
        if result.spf is not None:  # no count when the record could not be read at all
            metrics.append(nagiosplugin.Metric("spf_lookups", result.spf.lookups, min=0))
            metrics.append(nagiosplugin.Metric("spf_void_lookups", result.spf.void_lookups,
                                               min=0))
        rest = [*(result.mx.findings if result.mx is not None else []),
                *(result.dmarc.findings if result.dmarc is not None else [])]
        metrics += [nagiosplugin.Metric(f"finding{i + len(findings)}", f, context="finding")
                    for i, f in enumerate(rest)]
        if result.mx is not None:
            metrics.append(nagiosplugin.Metric("mx_hosts", len(result.mx.hosts), min=0,
                                               context="plain"))
        metrics.append(nagiosplugin.Metric("time", round(result.seconds, 4), "s", min=0,
                                           context="plain"))
        return metrics


class SpfMxSummary(nagiosplugin.Summary):
    """Status line from the worst results; long output one line per finding (+ tree with -v)."""

    def __init__(self, resource: SpfMx, verbose: int) -> None:
        self.resource = resource
        self.verbose_level = verbose

    def _prefix(self) -> str:
        audit = self.resource.audit
        if audit is None or not audit.guessed_from:
            return ""
        return f"{audit.domain} (guessed from {audit.guessed_name}): "

    def ok(self, results: nagiosplugin.Results) -> str:
        audit = self.resource.audit
        assert audit and audit.spf and audit.mx and audit.dmarc
        parts = [f"SPF {ev.result} for {ev.address}" for ev in audit.evaluations]
        if audit.spf.all_qualifier:
            parts.append(f"SPF {audit.spf.all_qualifier}all")
        parts.append(plural(audit.spf.lookups, "DNS lookup"))
        if audit.mx.null_mx:
            parts.append("null MX (accepts no mail)")
        else:
            parts.append(plural(len(audit.mx.hosts), "MX host"))
        policy = audit.dmarc.policy
        parts.append(f"DMARC p={policy}" if policy else "no DMARC")
        return (self._prefix() or f"{audit.domain}: ") + ", ".join(parts)

    def problem(self, results: nagiosplugin.Results) -> str:
        return self._prefix() + "; ".join(problem_texts(results))

    def verbose(self, results: nagiosplugin.Results) -> list[str]:
        audit = self.resource.audit
        if audit is None:
            return []
        how = (f"guessed from {audit.guessed_from} (Public Suffix List)" if audit.guessed_from
               else "given with --mail-domain")
        lines = [f"domain {audit.domain} {how}"]
        if audit.mailer:
            lines.append(f"mailer {audit.mailer}: "
                         f"{', '.join(audit.mailer_addresses) or '(no address found)'}")
        for result in ranked(results):
            if result.metric is not None and result.metric.context == "plain":
                continue
            value = result.metric.value if result.metric is not None else None
            detail = f" ({value.detail})" if isinstance(value, Finding) and value.detail else ""
            lines.append(f"{str(result.state).upper()}: {result.hint}{detail}")
        if self.verbose_level >= 1:
            lines.extend(self._details(audit))
        if self.verbose_level >= 3:
            lines.append("DNS transcript:")
            lines.extend("  " + line for line in audit.dns_log)
        return lines

    @staticmethod
    def _details(audit: Audit) -> list[str]:
        lines = []
        if audit.spf is not None and audit.spf.tree:
            lines.append("SPF include tree:")
            lines.extend("  " + line for line in audit.spf.tree.lines())
        for host in audit.mx.hosts if audit.mx is not None else []:
            target = f" (CNAME {host.cname})" if host.cname else ""
            lines.append(f"MX {host.preference} {host.name}{target}: "
                         + (", ".join(host.addresses) or "no address"))
        for ev in audit.evaluations:
            lines.append(f"check_host({ev.address}, {ev.domain}, {ev.sender}) = {ev.result}: "
                         f"{ev.explanation}")
        return lines


def build(args: argparse.Namespace, deadline: Deadline) -> nagiosplugin.Check:
    resource = SpfMx(args, deadline)
    return Check(
        resource,
        FindingContext("finding"),
        LimitContext("spf_lookups", "DNS lookup", args.warning, args.critical),
        LimitContext("spf_void_lookups", "void lookup", None, nagiosplugin.Range(str(VOID_LIMIT))),
        PlainContext("plain"),
        SpfMxSummary(resource, args.verbose),
    )


def main(argv: Sequence[str] | None = None) -> None:
    run(NAME, build_parser(), build, argv)
