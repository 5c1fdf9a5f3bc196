"""check_open_relay: is the mail server an open relay, seen from outside?"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import socket
import sys
import time
from collections.abc import Sequence

import nagiosplugin

from mailprobe.checks import plugin
from mailprobe.checks.plugin import CRITICAL, OK, UNKNOWN, WARNING, finding_metric
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Lookup, is_ip_address, make_resolver, resolve_target
from mailprobe.net.smtp import Transcript, ip_literal
from mailprobe.probes.relay.catalogue import (
    CATALOGUE,
    CONTROL,
    AddressError,
    RelayAttempt,
    Targets,
    check_domain,
    check_local_part,
    select,
)
from mailprobe.probes.relay.runner import (
    Depth,
    RelayOptions,
    RelayReport,
    RelayRunner,
    ServerRefusesUs,
    ServiceDown,
    StartTLS,
    TLSUnavailable,
)
from mailprobe.probes.relay.verdict import Outcome, Tally

NAME = "OPEN_RELAY"
DESCRIPTION = """\
Probe a mail server from outside with a series of relay attempts (standard and deliberately
non-RFC address forms), like the JANET relay tester. An attempt relays when the server
accepts an outside recipient at RCPT TO. No message is ever sent: by default the probe stops
at RCPT; --depth data goes as far as the server's 354 reply to DATA and then drops the line.

States: CRITICAL when relayed attempts exceed -c (default: any), or the service is down;
WARNING for 4xx answers (a temporary refusal is not a proper relay refusal); UNKNOWN when the
result is inconclusive (the control recipient postmaster@MAIL-DOMAIN is refused, the server
refuses us at the banner, or not every attempt could be played)."""


def build_parser() -> plugin.PluginArgumentParser:
    parser = plugin.make_parser("check_open_relay", DESCRIPTION, default_timeout=60)
    target = parser.add_argument_group("target")
    plugin.add_hostname(target, "mail server name or address")
    plugin.add_mail_domain(target, "the server's own mail domain (default: guessed from the "
                           "banner)")
    target.add_argument("--local-recipient", metavar="ADDRESS",
                        help="control recipient that must be accepted (default postmaster@DOMAIN)")
    probe = parser.add_argument_group("probe")
    probe.add_argument("--external-domain", default="example.net", metavar="DOMAIN",
                       help="outside recipient domain (default example.net, RFC 2606)")
    probe.add_argument("--external-user", default="relaytest", metavar="LOCALPART",
                       help="outside recipient local part (default relaytest)")
    plugin.add_helo(probe, "our EHLO name (default: this host's name)")
    probe.add_argument("--starttls", choices=[m.value for m in StartTLS], default="try",
                       help="use STARTTLS when offered (try, default), never, or require it")
    probe.add_argument("--depth", choices=[d.value for d in Depth], default="rcpt",
                       help="rcpt (default): never send DATA; data: send DATA after an accepted "
                            "outside RCPT and drop the connection at 354 (nothing is delivered)")
    probe.add_argument("--command-timeout", type=plugin.positive_seconds, default=20.0,
                       metavar="SECONDS", help="wait per SMTP command (default 20); a timeout "
                       "counts as refused and is reported")
    probe.add_argument("--tests", metavar="ID,...", help="play only these attempts")
    probe.add_argument("--skip", metavar="ID,...", help="leave these attempts out")
    probe.add_argument("--list-tests", action=_ListTests, help="print the catalogue and exit")
    limits = parser.add_argument_group("thresholds")
    limits.add_argument("-w", "--warning", type=plugin.nagios_range, metavar="RANGE",
                        help="relayed attempts range for WARNING (default none)")
    limits.add_argument("-c", "--critical", type=plugin.nagios_range, default="0",
                        metavar="RANGE", help="relayed attempts range for CRITICAL (default 0: "
                        "any relayed attempt is CRITICAL)")
    return parser


def list_tests() -> str:
    width = max(len(a.id) for a in CATALOGUE)
    targets = Targets(ext="EXT", user="user", dom="DOMAIN", ip="[SERVER-IP]", extip="[EXT-IP]")
    lines = [f"{'id':<{width}}  greeting     MAIL FROM / RCPT TO  -- description"]
    for attempt in (CONTROL, *CATALOGUE):
        lines.append(f"{attempt.id:<{width}}  {attempt.greeting.value:<11}  "
                     f"{attempt.mail_command(targets)} / {attempt.rcpt_command(targets)}"
                     f"  -- {attempt.description}")
    return "\n".join(lines) + "\n"


class _ListTests(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=kwargs.get("help"))  # type: ignore[arg-type]

    def __call__(self, *args: object, **kwargs: object) -> None:
        sys.stdout.write(list_tests())
        sys.exit(0)


def _ids(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _choose_address(host: str, args: argparse.Namespace, deadline: Deadline) -> str | None:
    """The address to probe: -H itself, or its first A (or AAAA with -6) record."""
    family = 4 if args.ipv4 else 6 if args.ipv6 else 0
    if is_ip_address(host):  # no resolver: a run that asks no DNS never loads dnspython
        addresses = [str(ipaddress.ip_address(host))]
    else:
        resolver = make_resolver(args.nameserver, timeout=min(5.0, deadline.remaining()))
        addresses = resolve_target(host, Lookup(resolver, deadline), family)
    wanted = [a for a in addresses if family == 0 or (":" in a) == (family == 6)]
    return sorted(wanted, key=lambda a: ":" in a)[0] if wanted else None  # IPv4 first


def guess_mail_domain(server_name: str) -> str | None:
    """The registrable domain of the banner's host name (Public Suffix List), or None."""
    if not server_name or "." not in server_name.strip("."):
        return None
    try:
        check_domain(server_name, "banner name")
    except AddressError:
        return None
    from publicsuffixlist import PublicSuffixList  # loaded only when guessing

    return PublicSuffixList().privatesuffix(server_name.lower().rstrip(".")) or None


class OpenRelay(nagiosplugin.Resource):
    """Runs the series and turns the report into metrics and findings (the text is the
    summary's: :class:`OpenRelaySummary`)."""

    def __init__(self, args: argparse.Namespace, deadline: Deadline,
                 attempts: list[RelayAttempt], control: RelayAttempt = CONTROL) -> None:
        self.args = args
        self.control = control
        self.deadline = deadline
        self.attempts = attempts
        self.transcript = Transcript()
        self.report = RelayReport()
        self.options: RelayOptions | None = None
        self.notes: list[str] = []  # how the run was set up (e.g. a guessed mail domain)

    def probe(self) -> list[nagiosplugin.Metric]:
        args = self.args
        started = time.monotonic()
        address = _choose_address(args.hostname, args, self.deadline)
        if address is None:
            family = " IPv4" if args.ipv4 else " IPv6" if args.ipv6 else ""
            return [finding_metric("address", UNKNOWN, f"{args.hostname} has no{family} address")]
        helo = args.helo or socket.gethostname() or "mailprobe.invalid"
        targets = Targets(ext=args.external_domain, user=args.external_user,
                          dom=args.mail_domain or "", ip=ip_literal(address))
        options = RelayOptions(
            address=address, port=args.port, targets=targets, helo_name=helo,
            source_address=args.source_address, starttls=StartTLS(args.starttls),
            depth=Depth(args.depth), command_timeout=args.command_timeout,
            control=self.control,
        )
        self.options = options
        runner = RelayRunner(options, self.deadline, self.transcript)
        self.report = runner.report
        where = f"{args.hostname}" + (f" ({address})" if address != args.hostname else "")
        try:
            if not args.mail_domain:
                runner.open()
                guessed = guess_mail_domain(runner.report.server_name)
                if not guessed:
                    runner.close()
                    return [finding_metric("mail_domain", UNKNOWN,
                                           f"cannot guess the mail domain from the banner "
                                           f"{runner.report.banner}; give --mail-domain")]
                options.targets = dataclasses.replace(targets, dom=guessed)
                self.notes.append(f"mail domain {guessed} (guessed from the banner name "
                                  f"{runner.report.server_name}; set --mail-domain)")
            report = runner.run(self.attempts)
        except ServiceDown as exc:
            runner.close()
            return [finding_metric("service", CRITICAL, f"mail service down: {exc}"),
                    nagiosplugin.Metric("time", round(time.monotonic() - started, 3), "s", min=0)]
        except ServerRefusesUs as exc:
            runner.close()
            return [finding_metric("service", UNKNOWN, f"inconclusive: {where} refuses this "
                                   f"vantage point at the banner ({exc.reply})")]
        except TLSUnavailable as exc:
            runner.close()
            return [finding_metric("service", UNKNOWN, f"--starttls require: {exc}")]
        elapsed = time.monotonic() - started
        return self._metrics(report, elapsed)

    def _metrics(self, report: RelayReport, elapsed: float) -> list[nagiosplugin.Metric]:
        tally = Tally.of(report.results)
        metrics = [
            nagiosplugin.Metric("relayed", tally.relayed, min=0, max=tally.attempts),
            nagiosplugin.Metric("tempfailed", tally.tempfailed, min=0, max=tally.attempts),
            nagiosplugin.Metric("attempts", tally.attempts, min=0, context="count"),
            nagiosplugin.Metric("round_trips", report.round_trips, min=0, context="count"),
            nagiosplugin.Metric("connections", report.connections, min=0, context="count"),
            nagiosplugin.Metric("time", round(elapsed, 3), "s", min=0),
        ]
        metrics.append(self._control_finding(report, tally))
        if tally.errors or tally.not_run:
            reasons = {r.detail for r in report.results
                       if r.outcome in (Outcome.ERROR, Outcome.NOT_RUN) and r.detail}
            metrics.append(finding_metric(
                "incomplete", UNKNOWN,
                f"only {tally.completed} of {tally.attempts} attempts could be played "
                f"({'; '.join(sorted(reasons))[:200]})"))
        return metrics

    def _control_finding(self, report: RelayReport, tally: Tally) -> nagiosplugin.Metric:
        control = report.control
        assert control is not None
        reply = control.deciding_reply
        if control.outcome is Outcome.RELAYED:
            return finding_metric("control", OK, "control accepted")
        if control.outcome is Outcome.TEMPFAILED:
            return finding_metric("control", WARNING,
                                  f"the server defers even {control.rcpt_command} ({reply}); "
                                  "relay status unproven")
        if control.outcome is Outcome.TIMEOUT:
            return finding_metric("control", UNKNOWN, f"inconclusive: control timed out "
                                  f"({control.detail})")
        if control.outcome is Outcome.ERROR:  # never judged: connection lost, garbage reply
            return finding_metric("control", UNKNOWN, f"inconclusive: the control could not "
                                  f"be played ({control.detail})")
        what = control.rcpt_command or "the control"
        why = reply or control.detail
        return finding_metric("control", UNKNOWN,
                              f"inconclusive: control {what} not accepted ({why})")


def build(args: argparse.Namespace, deadline: Deadline) -> nagiosplugin.Check:
    if not args.hostname:
        raise plugin.UsageError("-H/--hostname is required")
    try:
        attempts = select(_ids(args.tests), _ids(args.skip))
        check_domain(args.external_domain, "--external-domain")
        check_local_part(args.external_user, "--external-user")
        if args.mail_domain:
            args.mail_domain = check_domain(args.mail_domain, "--mail-domain")
        if args.helo:
            check_domain(args.helo, "--helo")
    except KeyError as exc:
        raise plugin.UsageError(f"unknown test id {exc.args[0]} (see --list-tests)") from exc
    except AddressError as exc:
        raise plugin.UsageError(str(exc)) from exc
    if not attempts:
        raise plugin.UsageError("--tests/--skip leave no attempt to play")
    control = CONTROL
    if args.local_recipient:
        local = args.local_recipient.strip("<>")
        if "@" not in local or any(c in local for c in " \r\n"):
            raise plugin.UsageError(f"--local-recipient {local!r} is not an address")
        control = dataclasses.replace(CONTROL, rcpt_to=f"<{local}>",
                                      description=f"outside sender to {local} (must be accepted)")
    resource = OpenRelay(args, deadline, attempts, control)
    summary = OpenRelaySummary(resource)
    return plugin.Check(
        resource,
        plugin.ThresholdContext("relayed", args.warning, args.critical,
                                describe=summary.relayed_text),
        plugin.ThresholdContext(
            "tempfailed", "0", None,
            describe=lambda m: f"{m.value} of {m.max} relay attempts answered 4xx (a temporary "
                               "refusal is not a proper relay refusal)"),
        nagiosplugin.ScalarContext("count"),
        nagiosplugin.ScalarContext("time"),
        plugin.FindingContext(),
        summary,
    )


class OpenRelaySummary(plugin.ProblemSummary):
    """The status line and long output, from the resource's report."""

    def __init__(self, resource: OpenRelay) -> None:
        super().__init__("")
        self.resource = resource

    def relayed_text(self, metric: nagiosplugin.Metric) -> str:
        """The problem text of the ``relayed`` metric: how many, and which attempts."""
        ids = [r.attempt.id for r in self.resource.report.results
               if r.outcome is Outcome.RELAYED]
        shown = ", ".join(ids[:6]) + (f", +{len(ids) - 6} more" if len(ids) > 6 else "")
        return f"{metric.value} of {metric.max} relay attempts accepted ({shown})"

    def ok(self, results: nagiosplugin.Results) -> str:
        report, options = self.resource.report, self.resource.options
        tally = Tally.of(report.results)
        control = report.control
        text = (f"0 of {tally.attempts} relay attempts accepted; control "
                f"{control.rcpt_command if control else ''} accepted")
        if tally.timeouts and options is not None:
            text += (f"; {tally.timeouts} attempt(s) timed out after "
                     f"{options.command_timeout:g}s (counted as refused)")
        return text

    def verbose(self, results: nagiosplugin.Results) -> list[str]:
        out = list(self.resource.notes)
        if self.resource.options is not None:
            self._long(out, self.resource.report, self.resource.options)
        return out

    def _long(self, out: list[str], report: RelayReport, options: RelayOptions) -> None:
        tally = Tally.of(report.results)
        verbose = self.resource.args.verbose
        if report.banner is not None:
            out.append(f"banner: {report.banner}")
        if report.control is not None:
            out.append(report.control.describe())
        out.extend(result.describe() for result in report.results)
        out.extend(f"note: {note}" for note in report.notes)
        if verbose >= 1:
            per = report.round_trips / max(1, tally.attempts + 1)
            out.append(f"cost: {report.connections} connections, {report.round_trips} SMTP round "
                       f"trips ({per:.2f} per attempt), TLS {'yes' if report.tls else 'no'}, "
                       f"source {options.source_address or 'default'}")
        if verbose >= 3:
            out.append("transcript (-> sent, <- received, ** event):")
            out.extend(self.resource.transcript.render())


def main(argv: Sequence[str] | None = None) -> None:
    plugin.run(NAME, build_parser(), build, argv)
