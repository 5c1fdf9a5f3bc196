"""check_banner_rdns: does the mailer's identity hold together (PTR, FCrDNS, banner, EHLO)?"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import nagiosplugin

from mailprobe.checks import plugin
from mailprobe.findings import Finding, Level
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Lookup, make_resolver
from mailprobe.probes.identity.assess import Policy, assess
from mailprobe.probes.identity.model import IdentityReport
from mailprobe.probes.identity.probe import ProbeOptions, TargetError, probe

NAME = "BANNER_RDNS"
DESCRIPTION = """\
Check a mail server's identity as receiving MTAs see it: the PTR name of each address of -H,
its forward confirmation (the name's A/AAAA contains the address: FCrDNS), the host name in
the SMTP banner and in the EHLO reply, and STARTTLS.

States: CRITICAL for no PTR, a PTR that does not resolve back or is not a host name, a banner
other than 220, a refused connection (mail service down); WARNING for a generic/dynamic-looking
PTR, a banner or EHLO name that differs from the PTR (--strict: CRITICAL), no STARTTLS (unless
--no-starttls-ok); -w/-c are ranges in seconds on the time to the banner. UNKNOWN when the DNS
server does not answer or -H does not resolve.

Perfdata: banner_time, ehlo_time (seconds; the slowest address when -H has several), time
(the whole check), cert_days with --starttls-cert-days."""

# Share of the time budget DNS may use, so a dead DNS server still leaves time for SMTP.
DNS_SHARE = 0.5


def cert_days(text: str) -> tuple[float, float]:
    """``--starttls-cert-days N[,M]``: warn below N days, critical below M (default 0)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 2 or any(v < 0 or v != v for v in values):
        raise argparse.ArgumentTypeError(f"invalid days {text!r}: give N or N,M (N >= M >= 0)")
    warn, crit = values[0], values[1] if len(values) == 2 else 0.0
    if crit > warn:
        raise argparse.ArgumentTypeError(f"invalid days {text!r}: N (warning) must be >= M")
    return warn, crit


def build_parser() -> plugin.PluginArgumentParser:
    parser = plugin.make_parser("check_banner_rdns", DESCRIPTION, default_timeout=30)
    target = parser.add_argument_group("target")
    plugin.add_hostname(target, "mail server name or address (a name: every address is "
                        "checked)", required=True)
    plugin.add_helo(target, "name we send in EHLO (default: our address literal, "
                    "e.g. [192.0.2.1])")
    policy = parser.add_argument_group("policy")
    policy.add_argument("--expect-name", metavar="NAME",
                        help="the name PTR, banner and EHLO must all show (default: the PTR name)")
    policy.add_argument("--strict", action="store_true",
                        help="a banner/EHLO/expected-name mismatch is CRITICAL, not WARNING")
    policy.add_argument("--no-starttls-ok", action="store_true",
                        help="no STARTTLS in the EHLO reply is OK, not WARNING")
    policy.add_argument("--starttls-cert-days", type=cert_days, metavar="N[,M]",
                        help="STARTTLS and check the certificate: WARNING when it expires within "
                             "N days, CRITICAL within M (default 0); reports its names")
    limits = parser.add_argument_group("thresholds")
    limits.add_argument("-w", "--warning", type=plugin.nagios_range, metavar="RANGE",
                        help="seconds to the banner for WARNING (e.g. 5)")
    limits.add_argument("-c", "--critical", type=plugin.nagios_range, metavar="RANGE",
                        help="seconds to the banner for CRITICAL (e.g. 20)")
    return parser


class BannerRdns(nagiosplugin.Resource):
    """Runs the identity probe and yields one metric per finding plus the timings."""

    def __init__(self, args: argparse.Namespace, deadline: Deadline) -> None:
        self.args = args
        self.deadline = deadline
        self.report: IdentityReport | None = None
        self.findings: list[Finding] = []
        self.lookup: Lookup | None = None

    @property
    def name(self) -> str:
        return NAME

    def probe(self) -> list[nagiosplugin.Metric]:
        args = self.args
        dns_deadline = self.deadline.sub(max(1.0, self.deadline.remaining() * DNS_SHARE))
        resolver = make_resolver(args.nameserver, timeout=min(2.0, dns_deadline.remaining()))
        options = ProbeOptions(
            port=args.port,
            family=4 if args.ipv4 else 6 if args.ipv6 else 0,
            source_address=args.source_address,
            ehlo_name=args.helo,
            starttls_certificate=args.starttls_cert_days is not None,
        )
        self.lookup = Lookup(resolver, dns_deadline)
        try:
            report = probe(args.hostname, self.lookup, self.deadline, options)
        except TargetError as exc:
            raise plugin.UsageError(str(exc)) from exc
        self.report = report
        policy = Policy(strict=args.strict, expect_name=args.expect_name,
                        starttls_required=not args.no_starttls_ok,
                        cert_days=args.starttls_cert_days)
        self.findings = [self._threshold_aware(f) for f in assess(report, policy)]
        metrics = [plugin.finding_metric(f"finding_{i}", f.level, self._text(f))
                   for i, f in enumerate(self.findings)]
        smtp = [a.smtp for a in report.addresses if a.smtp is not None]
        banner_times = [s.banner_time for s in smtp if s.banner_time is not None]
        ehlo_times = [s.ehlo_time for s in smtp if s.ehlo_time is not None]
        if banner_times:
            metrics.append(nagiosplugin.Metric("banner_time", round(max(banner_times), 6), "s",
                                               min=0, context="banner_time"))
        if ehlo_times:
            metrics.append(nagiosplugin.Metric("ehlo_time", round(max(ehlo_times), 6), "s",
                                               min=0, context="ehlo_time"))
        days = [s.tls.certificate.days_left for s in smtp
                if s.tls is not None and s.tls.certificate is not None]
        if days:
            metrics.append(nagiosplugin.Metric("cert_days", round(min(days), 1),
                                               context="cert_days"))
        metrics.append(nagiosplugin.Metric("time", round(report.elapsed, 6), "s", min=0,
                                           context="time"))
        return metrics

    def _text(self, finding: Finding) -> str:
        several = self.report is not None and len(self.report.addresses) > 1
        if several and finding.subject and finding.subject not in finding.text:
            return f"{finding.subject}: {finding.text}"
        return finding.text

    def _threshold_aware(self, finding: Finding) -> Finding:
        """A banner that never came is UNKNOWN unless -w/-c judge the wait: then it takes their
        state (the server made us wait longer than the whole budget)."""
        if finding.code != "banner-timeout" or self.report is None:
            return finding
        waited = max((a.smtp.banner_time or 0.0) for a in self.report.addresses
                     if a.smtp is not None)
        for level, limit in ((Level.CRITICAL, self.args.critical),
                             (Level.WARNING, self.args.warning)):
            if limit is not None and not limit.match(waited):
                return Finding(level, finding.code, finding.text, subject=finding.subject)
        return finding


class BannerRdnsSummary(nagiosplugin.Summary):
    """OK: the identity in one glance. Otherwise: the problems, worst first, then the identity."""

    def __init__(self, resource: BannerRdns, verbose: int) -> None:
        self.resource = resource
        self.verbosity = verbose

    def _identity(self) -> str:
        report = self.resource.report
        return report.line() if report is not None else ""

    def ok(self, results: nagiosplugin.Results) -> str:
        return self._identity()

    def problem(self, results: nagiosplugin.Results) -> str:
        problems = "; ".join(plugin.problem_texts(results))
        identity = self._identity()
        return "; ".join(part for part in (problems, identity) if part)

    def verbose(self, results: nagiosplugin.Results) -> list[str]:
        return long_output(self.resource, results, self.verbosity)


def long_output(resource: BannerRdns, results: nagiosplugin.Results, verbose: int) -> list[str]:
    """One line per finding (state first, the most severe first), then details by verbosity."""
    lines = []
    for result in plugin.ranked(results):
        is_finding = result.metric is not None and result.metric.context == "finding"
        if is_finding or result.state != nagiosplugin.Ok:
            lines.append(f"{str(result.state).upper()}: {result}")
    report = resource.report
    if report is None:
        return lines
    if verbose >= 1:
        for identity in report.addresses:
            smtp = identity.smtp
            if smtp is not None and smtp.extensions:
                lines.append(f"{identity.address}: {smtp.ehlo_verb} {smtp.ehlo_sent} -> "
                             f"extensions {' '.join(sorted(smtp.extensions))}")
            for ptr in identity.rdns.names:
                forward = "(look-up failed)" if ptr.error else ", ".join(ptr.forward) or "(none)"
                lines.append(f"{identity.address}: PTR {ptr.name} -> A/AAAA {forward}")
        lines.append(f"{report.dns_queries} DNS queries, {report.elapsed:.3f}s in all")
    if verbose >= 3:
        lines.append("DNS transcript:")
        lines.extend("  " + line for line in (resource.lookup.log if resource.lookup else []))
        lines.append("SMTP transcript:")
        lines.extend(report.transcript.render())
    return lines


class PerfOnly(nagiosplugin.ScalarContext):
    """Perfdata with thresholds shown, but the state comes from the findings."""

    def evaluate(self, metric: nagiosplugin.Metric, resource: object) -> nagiosplugin.Result:
        return nagiosplugin.Result(nagiosplugin.Ok, metric=metric)


def banner_wait(args: argparse.Namespace) -> Callable[[nagiosplugin.Metric], str]:
    """The sentence for a banner time outside -c (or -w): ``banner after 2.48s (outside
    range 0:2)``."""
    def describe(metric: nagiosplugin.Metric) -> str:
        critical, warning = args.critical, args.warning
        limit = critical if critical is not None and not critical.match(metric.value) \
            else warning
        return f"banner after {metric.value:.2f}s ({limit.violation})"

    return describe


def build(args: argparse.Namespace, deadline: Deadline) -> nagiosplugin.Check:
    if args.expect_name and plugin.host_name_problem(args.expect_name):
        raise plugin.UsageError(f"--expect-name {plugin.printable(args.expect_name)!r}: "
                                f"{plugin.host_name_problem(args.expect_name)}")
    resource = BannerRdns(args, deadline)
    days = args.starttls_cert_days
    return plugin.Check(
        resource,
        plugin.FindingContext(),
        plugin.ThresholdContext("banner_time", args.warning, args.critical,
                                describe=banner_wait(args)),
        nagiosplugin.ScalarContext("ehlo_time"),
        nagiosplugin.ScalarContext("time"),
        PerfOnly("cert_days", f"{days[0]:g}:" if days else None,
                 f"{days[1]:g}:" if days else None),
        BannerRdnsSummary(resource, args.verbose),
    )


def main(argv: Sequence[str] | None = None) -> None:
    plugin.run(NAME, build_parser(), build, argv)
