"""check_backscatter: does the server accept mail for unknown users, and bounce it to a forged
sender (NST's bounce test)?"""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Sequence

import nagiosplugin

from mailprobe.checks import plugin
from mailprobe.checks.mailbox import add_mailbox, mailbox_url, open_for
from mailprobe.checks.plugin import CRITICAL, OK, UNKNOWN, WARNING, finding_metric
from mailprobe.checks.smtp_target import (
    banner_domain,
    check_address,
    check_names,
    choose_address,
)
from mailprobe.findings import Finding
from mailprobe.net.deadline import Deadline
from mailprobe.net.mailbox import Mailbox
from mailprobe.net.smtp import SMTPError, Transcript
from mailprobe.probes.backscatter import (
    BackscatterOptions,
    BackscatterProbe,
    BackscatterReport,
    Proof,
    RefusedAtBanner,
    ServiceDown,
    assess,
    random_local_part,
)
from mailprobe.probes.relay.catalogue import AddressError, check_domain, check_local_part

NAME = "BACKSCATTER"
DESCRIPTION = """\
Does the mail server accept mail for users it does not have? Such a server must later bounce
that mail to the envelope sender, which spammers forge: the bounces go to innocent third
parties (backscatter, and a listing on ips.backscatterer.org). The probe says MAIL FROM an
outside address, RCPT TO the control recipient (postmaster@MAIL-DOMAIN, must be accepted) and
RCPT TO a random local part at the mail domain, then RSET: nothing is sent.

Opt-in proof: --bounce-to ADDRESS (your own mailbox) --mailbox URL sends one small labelled
message to that random user only, with MAIL FROM ADDRESS, and watches the mailbox for a bounce
carrying its token for --bounce-wait seconds (inside -t); the bounce is removed afterwards
unless --keep. Never give someone else's address: the bounce goes there.

States: OK when the unknown user is refused at RCPT (5xx); --accept-state (default WARNING)
when it is accepted; WARNING for a 4xx; CRITICAL when the proof's bounce arrives, or the
service is down; UNKNOWN when the result is inconclusive (the control refused, MAIL FROM
refused, the mailbox unusable)."""

LEVELS = {"ok": OK, "warning": WARNING, "critical": CRITICAL}


def build_parser() -> plugin.PluginArgumentParser:
    parser = plugin.make_parser("check_backscatter", DESCRIPTION, default_timeout=90)
    target = parser.add_argument_group("target")
    plugin.add_hostname(target, "mail server name or address")
    plugin.add_mail_domain(target, "the server's own mail domain: the random user's domain "
                           "(default: guessed from the banner)")
    plugin.add_local_recipient(target)
    probe = parser.add_argument_group("probe")
    plugin.add_outside_address(probe, "sender (of the RCPT test)")
    plugin.add_helo(probe, "our EHLO name (default: this host's name)")
    plugin.add_command_timeout(probe)
    probe.add_argument("--accept-state", choices=list(LEVELS), default="warning",
                       help="state when an unknown user is accepted at RCPT (default warning)")
    proof = parser.add_argument_group("bounce proof (opt-in: sends one message)")
    proof.add_argument("--bounce-to", metavar="ADDRESS",
                       help="your own address: MAIL FROM of the test message, where a bounce "
                            "would go (needs --mailbox)")
    add_mailbox(proof, "the mail of --bounce-to")
    proof.add_argument("--bounce-wait", type=plugin.positive_seconds, default=60.0,
                       metavar="SECONDS", help="how long to watch the mailbox for the bounce "
                       "(default 60; -t must be 10 s longer)")
    return parser


class Backscatter(nagiosplugin.Resource):
    def __init__(self, args: argparse.Namespace, deadline: Deadline) -> None:
        self.args = args
        self.deadline = deadline
        self.report = BackscatterReport()
        self.options: BackscatterOptions | None = None
        self.transcript = Transcript()  # the banner connection, when the domain is guessed
        self.notes: list[str] = []
        self.findings: list[Finding] = []

    def probe(self) -> list[nagiosplugin.Metric]:
        args = self.args
        started = time.monotonic()
        url = mailbox_url(args)
        mailbox: Mailbox | None = None
        proof: Proof | None = None
        if url is not None:  # before anything is sent: a broken mailbox shows up first
            proof = Proof(bounce_to=args.bounce_to, wait=args.bounce_wait)
            mailbox, proof.mailbox_error = open_for(args, url, self.deadline)
        try:
            return self._probe(started, proof, mailbox)
        finally:
            if mailbox is not None:
                mailbox.close()

    def _probe(self, started: float, proof: Proof | None,
               mailbox: Mailbox | None) -> list[nagiosplugin.Metric]:
        args = self.args
        address = choose_address(args, self.deadline)
        if address is None:
            family = " IPv4" if args.ipv4 else " IPv6" if args.ipv6 else ""
            return [finding_metric("address", UNKNOWN, f"{args.hostname} has no{family} address")]
        domain = args.mail_domain
        if not domain:
            try:
                domain, banner = banner_domain(address, args, self.deadline, self.transcript)
            except SMTPError as exc:
                return self._down(str(exc), started)
            if not domain:
                return [finding_metric("mail_domain", UNKNOWN, f"cannot guess the mail domain "
                                       f"from the banner {banner}; give --mail-domain")]
            self.notes.append(f"mail domain {domain} (guessed from the banner; set "
                              "--mail-domain)")
        options = BackscatterOptions(
            address=address, port=args.port,
            helo=args.helo or socket.gethostname() or "mailprobe.invalid",
            sender=args.bounce_to or f"{args.external_user}@{args.external_domain}",
            control=args.local_recipient or f"postmaster@{domain}",
            unknown=f"{random_local_part()}@{domain}", source_address=args.source_address,
            command_timeout=args.command_timeout, server=args.hostname)
        self.options = options
        probe = BackscatterProbe(options, self.deadline)
        self.report = probe.report
        try:
            report = probe.run(proof, mailbox, keep=args.keep)
        except ServiceDown as exc:
            return self._down(str(exc), started)
        except RefusedAtBanner as exc:
            where = args.hostname + (f" ({address})" if address != args.hostname else "")
            return [finding_metric("service", UNKNOWN, f"inconclusive: {where} refuses this "
                                   f"vantage point at the banner ({exc.reply})")]
        self.findings = assess(report, LEVELS[args.accept_state])
        return self._metrics(report, time.monotonic() - started)

    def _down(self, reason: str, started: float) -> list[nagiosplugin.Metric]:
        return [finding_metric("service", CRITICAL, f"mail service down: {reason}"),
                nagiosplugin.Metric("time", round(time.monotonic() - started, 3), "s", min=0)]

    def _metrics(self, report: BackscatterReport, elapsed: float) -> list[nagiosplugin.Metric]:
        metrics = [nagiosplugin.Metric(f.code, f, context="finding") for f in self.findings]
        if report.unknown is not None:
            metrics.append(nagiosplugin.Metric("unknown_user_accepted",
                                               int(report.unknown.positive), min=0, max=1,
                                               context="count"))
        proof = report.proof
        if proof is not None and proof.message is not None and proof.message.positive:
            metrics.append(nagiosplugin.Metric("bounced", int(proof.bounce is not None),
                                               min=0, max=1, context="count"))
            if proof.bounce is not None:
                metrics.append(nagiosplugin.Metric("bounce_time", proof.bounce.seconds, "s",
                                                   min=0, context="time"))
        metrics.append(nagiosplugin.Metric("time", round(elapsed, 3), "s", min=0))
        return metrics


def build(args: argparse.Namespace, deadline: Deadline) -> nagiosplugin.Check:
    if not args.hostname:
        raise plugin.UsageError("-H/--hostname is required")
    check_names(args)
    try:
        check_domain(args.external_domain, "--external-domain")
        check_local_part(args.external_user, "--external-user")
    except AddressError as exc:
        raise plugin.UsageError(str(exc)) from None
    if args.local_recipient:
        args.local_recipient = check_address(args.local_recipient, "--local-recipient")
    if args.bounce_to:
        args.bounce_to = check_address(args.bounce_to, "--bounce-to")
        if not args.mailbox:
            raise plugin.UsageError("--bounce-to needs --mailbox (where the bounce would "
                                    "arrive)")
        if args.timeout < args.bounce_wait + 10:
            raise plugin.UsageError(f"-t {args.timeout:g} leaves no room for --bounce-wait "
                                    f"{args.bounce_wait:g} (give -t "
                                    f"{args.bounce_wait + 10:g} or more)")
    elif args.mailbox or args.keep:
        raise plugin.UsageError("--mailbox and --keep are for the bounce proof: give "
                                "--bounce-to too")
    mailbox_url(args)  # a bad URL or password source fails here, before any traffic
    resource = Backscatter(args, deadline)
    summary = BackscatterSummary(resource)
    return plugin.Check(
        resource,
        nagiosplugin.ScalarContext("count"),
        nagiosplugin.ScalarContext("time"),
        plugin.FindingContext(),
        summary,
    )


class BackscatterSummary(plugin.ProblemSummary):
    def __init__(self, resource: Backscatter) -> None:
        super().__init__("")
        self.resource = resource

    def ok(self, results: nagiosplugin.Results) -> str:
        texts = [f.text for f in self.resource.findings if f.level == OK]
        return "; ".join(texts)

    def verbose(self, results: nagiosplugin.Results) -> list[str]:
        resource = self.resource
        out = list(resource.notes)
        report, options = resource.report, resource.options
        if options is None:
            return out
        if report.banner is not None:
            out.append(f"banner: {report.banner}")
        for what, command, reply in (
                ("sender", f"MAIL FROM:<{options.sender}>", report.mail),
                ("control", f"RCPT TO:<{options.control}>", report.control),
                ("unknown user", f"RCPT TO:<{options.unknown}>", report.unknown)):
            out.append(f"{what}: {command} -> {reply if reply is not None else 'not judged'}")
        proof = report.proof
        if proof is not None:
            out.extend(self._proof_lines(proof, options))
        if report.error:
            out.append(f"note: {report.error}")
        if resource.args.verbose >= 1:
            out.append(f"cost: {report.connections} connection(s), {report.round_trips} SMTP "
                       f"round trips, source {options.source_address or 'default'}")
        if resource.args.verbose >= 3:
            out.append("transcript (-> sent, <- received, ** event):")
            out.extend(resource.transcript.render())
            out.extend(report.transcript.render())
        return out

    @staticmethod
    def _proof_lines(proof: Proof, options: BackscatterOptions) -> list[str]:
        if proof.message is None:
            return [f"bounce test: no message sent ({proof.not_sent or proof.mailbox_error})"]
        lines = [f"bounce test: one message (token {proof.token}) to {options.unknown} from "
                 f"{proof.bounce_to} -> {proof.message}"]
        if proof.bounce is not None:
            lines.append(f"bounce: {proof.bounce.describe()} after {proof.bounce.seconds:.1f}s"
                         + ("; removed from the mailbox" if proof.removed else
                            "; left in the mailbox"))
        elif proof.message.positive:
            lines.append(f"bounce: none within {proof.watched:.1f}s")
        if proof.removal_note:
            lines.append(f"note: {proof.removal_note}")
        return lines


def main(argv: Sequence[str] | None = None) -> None:
    plugin.run(NAME, build_parser(), build, argv)
