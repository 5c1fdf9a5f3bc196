"""check_smtp_smuggling: does the server end DATA at a non-standard end-of-data sequence?"""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Sequence

import nagiosplugin

from mailprobe.checks import plugin
from mailprobe.checks.plugin import CRITICAL, OK, UNKNOWN, WARNING, finding_metric
from mailprobe.checks.smtp_target import (
    banner_domain,
    check_address,
    check_names,
    choose_address,
)
from mailprobe.net.deadline import Deadline
from mailprobe.net.smtp import SMTPError, Transcript
from mailprobe.probes.smuggling.advice import advice_for
from mailprobe.probes.smuggling.catalogue import PIPELINING, SEQUENCES, EndSequence, select
from mailprobe.probes.smuggling.runner import (
    MAX_PARALLEL,
    RefusedAtBanner,
    ServiceDown,
    SmugglingOptions,
    SmugglingReport,
    SmugglingRunner,
)
from mailprobe.probes.smuggling.verdict import Outcome, PipeliningOutcome

NAME = "SMTP_SMUGGLING"
DESCRIPTION = """\
Test a mail server for SMTP smuggling (CVE-2023-51764 Postfix, CVE-2023-51765 Sendmail,
CVE-2023-51766 Exim): does it end a message at a non-standard end-of-data sequence such as
<LF>.<CR><LF>? One mail transaction per sequence, on its own connection, to ONE local
recipient (--recipient, default postmaster@MAIL-DOMAIN). This check sends DATA by nature: each
test is a small plain-text message labelled as a mailprobe smuggling test with the operator's
address (--sender), and it goes to that recipient only; expect one per test in that mailbox
(a dedicated local address that discards them is a good --recipient).

A 250 right after the sequence (or a late one, or a refusal after which the server reads
commands) means the server took the sequence as the end of the message. No reply within
--wait: a proper <CR><LF>.<CR><LF> follows, and a 250 then NOOP's own 250 mean the sequence
stayed inside the message. A 5xx or a closed connection is a refusal.

States: CRITICAL when a sequence ends DATA, or the service is down; UNKNOWN when a sequence
could not be judged (the recipient refused, no answer); OK otherwise. The pipelining test
(message text sent before the 354 reply) is reported with --pipelining-state (default ok)."""


def build_parser() -> plugin.PluginArgumentParser:
    parser = plugin.make_parser("check_smtp_smuggling", DESCRIPTION, default_timeout=30)
    target = parser.add_argument_group("target")
    plugin.add_hostname(target, "mail server name or address")
    plugin.add_mail_domain(target, "the server's own mail domain (default: guessed from the "
                           "banner)")
    target.add_argument("--recipient", metavar="ADDRESS",
                        help="the one local recipient of every test message (default "
                             "postmaster@MAIL-DOMAIN)")
    probe = parser.add_argument_group("probe")
    probe.add_argument("--sender", metavar="ADDRESS",
                       help="the operator's address: MAIL FROM and From: of the test messages "
                            "(default: the recipient)")
    plugin.add_helo(probe, "our EHLO name (default: this host's name)")
    probe.add_argument("--wait", type=plugin.positive_seconds, default=2.0, metavar="SECONDS",
                       help="how long a reply right after a sequence may take (default 2)")
    plugin.add_command_timeout(probe)
    probe.add_argument("--tests", metavar="ID,...", help="play only these tests")
    probe.add_argument("--skip", metavar="ID,...", help="leave these tests out")
    plugin.add_list_tests(probe, list_tests, "print the tests and exit")
    probe.add_argument("--pipelining-state", choices=["ok", "warning", "critical"],
                       default="ok", help="state when the server takes message text sent "
                       "before its 354 reply (default ok: a mitigation missing, not a flaw)")
    return parser


def list_tests() -> str:
    width = max(len(s.id) for s in SEQUENCES)
    lines = [f"{'id':<{width}}  sequence after the last line  -- listed by"]
    lines += [f"{s.id:<{width}}  {s.label:<28}  -- {s.known or '-'}" for s in SEQUENCES]
    lines.append(f"{PIPELINING:<{width}}  MAIL, RCPT, DATA and the message in one write, "
                 "before the 354 reply")
    return "\n".join(lines) + "\n"


PIPELINING_STATES = {"ok": OK, "warning": WARNING, "critical": CRITICAL}


class SmtpSmuggling(nagiosplugin.Resource):
    """Plays the tests and turns the report into metrics and findings."""

    def __init__(self, args: argparse.Namespace, deadline: Deadline,
                 sequences: list[EndSequence], pipelining: bool) -> None:
        self.args = args
        self.deadline = deadline
        self.sequences = sequences
        self.pipelining = pipelining
        self.report = SmugglingReport()
        self.options: SmugglingOptions | None = None
        self.transcript = Transcript()  # the banner connection, when the domain is guessed
        self.notes: list[str] = []

    def probe(self) -> list[nagiosplugin.Metric]:
        args = self.args
        started = time.monotonic()
        address = choose_address(args, self.deadline)
        if address is None:
            family = " IPv4" if args.ipv4 else " IPv6" if args.ipv6 else ""
            return [finding_metric("address", UNKNOWN, f"{args.hostname} has no{family} address")]
        recipient = args.recipient
        if recipient is None:
            domain = args.mail_domain
            if not domain:
                try:
                    domain, banner = banner_domain(address, args, self.deadline, self.transcript)
                except SMTPError as exc:
                    return self._down(str(exc), started)
                if not domain:
                    return [finding_metric("mail_domain", UNKNOWN, f"cannot guess the mail "
                                           f"domain from the banner {banner}; give "
                                           "--mail-domain or --recipient")]
                self.notes.append(f"mail domain {domain} (guessed from the banner; set "
                                  "--mail-domain)")
            recipient = f"postmaster@{domain}"
        options = SmugglingOptions(
            address=address, port=args.port, helo=args.helo or socket.gethostname()
            or "mailprobe.invalid", sender=args.sender or recipient, recipient=recipient,
            source_address=args.source_address, wait=args.wait,
            command_timeout=args.command_timeout, server=args.hostname)
        self.options = options
        runner = SmugglingRunner(options, self.deadline)
        self.report = runner.report
        try:
            report = runner.run(self.sequences, self.pipelining)
        except ServiceDown as exc:
            return self._down(str(exc), started)
        except RefusedAtBanner as exc:
            where = args.hostname + (f" ({address})" if address != args.hostname else "")
            return [finding_metric("service", UNKNOWN, f"inconclusive: {where} refuses this "
                                   f"vantage point at the banner ({exc.reply})")]
        return self._metrics(report, time.monotonic() - started)

    def _down(self, reason: str, started: float) -> list[nagiosplugin.Metric]:
        return [finding_metric("service", CRITICAL, f"mail service down: {reason}"),
                nagiosplugin.Metric("time", round(time.monotonic() - started, 3), "s", min=0)]

    def _metrics(self, report: SmugglingReport, elapsed: float) -> list[nagiosplugin.Metric]:
        results = report.results
        ends = sum(1 for r in results if r.outcome is Outcome.ENDS_DATA)
        judged = sum(1 for r in results if r.outcome.determined)
        metrics = [
            nagiosplugin.Metric("ends_data", ends, min=0, max=len(results)),
            nagiosplugin.Metric("sequences", judged, min=0, max=len(results), context="count"),
            nagiosplugin.Metric("connections", report.connections, min=0, context="count"),
            nagiosplugin.Metric("time", round(elapsed, 3), "s", min=0),
        ]
        open_ = [r for r in results if not r.outcome.determined]
        if open_:
            reasons = sorted({r.reason for r in open_})
            metrics.append(finding_metric(
                "undetermined", UNKNOWN,
                f"{len(open_)} of {len(results)} sequences could not be judged "
                f"({'; '.join(reasons)[:240]})"))
        metrics.extend(self._pipelining_findings(report))
        return metrics

    def _pipelining_findings(self, report: SmugglingReport) -> list[nagiosplugin.Metric]:
        result = report.pipelining
        if result is None:
            return []
        state = PIPELINING_STATES[self.args.pipelining_state]
        if result.outcome is PipeliningOutcome.ACCEPTED:
            return [finding_metric("pipelining", state, "takes message text sent before its "
                                   "354 reply (unauthenticated pipelining past DATA)")]
        if result.outcome is PipeliningOutcome.REFUSED or state == OK:
            return []
        return [finding_metric("pipelining", UNKNOWN, f"the pipelining test could not be "
                               f"judged ({result.reason})")]


def build(args: argparse.Namespace, deadline: Deadline) -> nagiosplugin.Check:
    if not args.hostname:
        raise plugin.UsageError("-H/--hostname is required")
    check_names(args)
    if args.recipient:
        args.recipient = check_address(args.recipient, "--recipient")
    if args.sender:
        args.sender = check_address(args.sender, "--sender")
    try:
        sequences, pipelining = select(plugin.id_list(args.tests), plugin.id_list(args.skip))
    except KeyError as exc:
        raise plugin.UsageError(f"unknown test id {exc.args[0]} (see --list-tests)") from None
    if not sequences and not pipelining:
        raise plugin.UsageError("--tests/--skip leave no test to play")
    resource = SmtpSmuggling(args, deadline, sequences, pipelining)
    summary = SmugglingSummary(resource)
    return plugin.Check(
        resource,
        plugin.ThresholdContext("ends_data", None, "0", describe=summary.ends_data_text),
        nagiosplugin.ScalarContext("count"),
        nagiosplugin.ScalarContext("time"),
        plugin.FindingContext(),
        summary,
    )


class SmugglingSummary(plugin.ProblemSummary):
    """The status line and long output, from the resource's report."""

    def __init__(self, resource: SmtpSmuggling) -> None:
        super().__init__("")
        self.resource = resource

    def ends_data_text(self, metric: nagiosplugin.Metric) -> str:
        report = self.resource.report
        labels = [r.sequence.label for r in report.results if r.outcome is Outcome.ENDS_DATA]
        shown = ", ".join(labels[:4]) + (f", +{len(labels) - 4} more" if len(labels) > 4 else "")
        return (f"ends DATA at {metric.value} of {metric.max} non-standard sequences: {shown} "
                f"(SMTP smuggling, {report.cves})")

    def ok(self, results: nagiosplugin.Results) -> str:
        report = self.resource.report
        count = {o: sum(1 for r in report.results if r.outcome is o) for o in Outcome}
        text = ""
        if report.results:
            plural = "s" if len(report.results) != 1 else ""
            text = (f"none of {len(report.results)} non-standard end-of-data sequence{plural} "
                    f"ends DATA ({count[Outcome.CARRIED]} carried inside the message, "
                    f"{count[Outcome.REFUSED]} refused)")
        pipelining = report.pipelining
        if pipelining is not None and pipelining.outcome in (PipeliningOutcome.ACCEPTED,
                                                             PipeliningOutcome.REFUSED):
            done = ("accepted" if pipelining.outcome is PipeliningOutcome.ACCEPTED
                    else "refused")
            text += ("; " if text else "") + f"pipelining past DATA {done}"
        return text

    def verbose(self, results: nagiosplugin.Results) -> list[str]:
        resource = self.resource
        out = list(resource.notes)
        report, options = resource.report, resource.options
        if options is None:
            return out
        if report.banner is not None:
            out.append(f"banner: {report.banner}")
        out.append(f"every test message went to {options.recipient} only (from "
                   f"{options.sender}); {report.accepted} accepted")
        out.extend(result.describe() for result in report.results)
        if report.pipelining is not None:
            out.append(report.pipelining.describe())
        flagged = any(r.outcome is Outcome.ENDS_DATA for r in report.results) or (
            report.pipelining is not None
            and report.pipelining.outcome is PipeliningOutcome.ACCEPTED
            and resource.args.pipelining_state != "ok")
        if flagged:
            out.extend(f"advice: {text}" for text in advice_for(report.mta))
        if resource.args.verbose >= 1:
            out.append(f"cost: {report.connections} connections (up to {MAX_PARALLEL + 1} at "
                       f"once), wait "
                       f"{options.wait:g}s after each sequence, source "
                       f"{options.source_address or 'default'}")
        if resource.args.verbose >= 3:
            out.append("transcripts (-> sent, <- received, ** event):")
            out.extend(resource.transcript.render())
            for result in [*report.results, report.pipelining]:
                if result is not None:
                    name = getattr(getattr(result, "sequence", None), "id", PIPELINING)
                    out.append(f"-- {name}")
                    out.extend(result.transcript.render())
        return out


def main(argv: Sequence[str] | None = None) -> None:
    plugin.run(NAME, build_parser(), build, argv)
