"""check_open_relay: is the mail server an open relay, seen from outside?"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import time
from collections.abc import Sequence

import nagiosplugin

from mailprobe.checks import plugin
from mailprobe.checks.mailbox import add_mailbox, mailbox_url, open_for
from mailprobe.checks.plugin import UNKNOWN, finding_metric
from mailprobe.checks.smtp_target import check_address
from mailprobe.findings import Finding
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import is_ip_address
from mailprobe.net.mailbox import Mailbox
from mailprobe.net.smtp import ip_literal
from mailprobe.probes.relay.catalogue import (
    CONTROL,
    EVERY_ATTEMPT,
    AddressError,
    Greeting,
    NotPlayable,
    RelayAttempt,
    Targets,
    check_domain,
    check_local_part,
    select,
)
from mailprobe.probes.relay.proof import Watch, watch
from mailprobe.probes.relay.resolve import FAMILY_NAMES, PTRName, family_of, ptr_name, resolve
from mailprobe.probes.relay.runner import Depth, RelayOptions, StartTLS
from mailprobe.probes.relay.survey import AddressRun, survey, within
from mailprobe.probes.relay.verdict import Outcome, Tally, control_finding, incomplete_finding

NAME = "OPEN_RELAY"
DESCRIPTION = """\
Probe a mail server from outside with a series of relay attempts (standard and deliberately
non-RFC address forms, HELO names a server may trust, XCLIENT/XFORWARD and AUTH without a
password when offered), like the JANET relay tester. An attempt relays when the server
accepts an outside recipient at RCPT TO. By default no message is sent: the probe stops at
RCPT; --depth data goes as far as the server's 354 reply to DATA and then drops the line.

Proof by delivery (as DSBL and ORVEDB counted relays): --depth deliver --deliver-to ADDRESS
(your own mailbox, outside the server's domains) --mailbox URL sends, for each attempt the
server accepts at RCPT, one small labelled message to ADDRESS only, and watches the mailbox
for its token for --deliver-wait seconds (inside -t): delivered is RELAYED (CRITICAL),
accepted but never arrived is ACCEPTED-NOT-DELIVERED (WARNING: a honeypot, a catch-all or a
queue). The messages are removed afterwards unless --keep. At this depth the attempts whose
header From:/Sender: is in the server's own domain are played too.

A name is probed on every A and AAAA address (-4/-6: one family only), each address on its
own; the state is the worst over the addresses and the long output has a section for each.

States: CRITICAL when relayed attempts exceed -c (default: any), or the service is down;
WARNING for 4xx answers (a temporary refusal is not a proper relay refusal) and for messages
accepted but not delivered (--depth deliver); UNKNOWN when the
result is inconclusive (the control recipient postmaster@MAIL-DOMAIN is refused, the server
refuses us at the banner, an attempt could not be played or was never answered, an address or
an address family of -H could not be tested)."""

# Addresses of one name probed at most (a name with hundreds of records is not one mailer).
MAX_ADDRESSES = 16


def build_parser() -> plugin.PluginArgumentParser:
    parser = plugin.make_parser("check_open_relay", DESCRIPTION, default_timeout=60)
    target = parser.add_argument_group("target")
    plugin.add_hostname(target, "mail server name or address (a name: every address is probed)")
    plugin.add_mail_domain(target, "the server's own mail domain (default: guessed from the "
                           "banner)")
    plugin.add_local_recipient(target)
    probe = parser.add_argument_group("probe")
    plugin.add_outside_address(probe, "recipient")
    plugin.add_helo(probe, "our EHLO name (default: this host's name)")
    probe.add_argument("--starttls", choices=[m.value for m in StartTLS], default="try",
                       help="use STARTTLS when offered (try, default), never, or require it")
    probe.add_argument("--depth", choices=[d.value for d in Depth], default="rcpt",
                       help="rcpt (default): never send DATA; data: send DATA after an accepted "
                            "outside RCPT and drop the connection at 354 (nothing is "
                            "delivered); deliver: send one labelled message to --deliver-to "
                            "and watch --mailbox for it")
    plugin.add_command_timeout(probe, more="; an attempt not answered in time is not "
                               "judged (UNKNOWN)")
    probe.add_argument("--tests", metavar="ID,...", help="play only these attempts")
    probe.add_argument("--skip", metavar="ID,...", help="leave these attempts out")
    plugin.add_list_tests(probe, list_tests, "print the catalogue and exit")
    proof = parser.add_argument_group("delivery proof (--depth deliver: sends messages)")
    proof.add_argument("--deliver-to", metavar="ADDRESS",
                       help="your own address, outside the server's domains: the only "
                            "recipient of the test messages (needs --mailbox)")
    add_mailbox(proof, "the mail of --deliver-to")
    proof.add_argument("--deliver-wait", type=plugin.positive_seconds, default=120.0,
                       metavar="SECONDS", help="how long to watch the mailbox after the last "
                       "message (default 120; -t must be 10 s longer)")
    limits = parser.add_argument_group("thresholds")
    limits.add_argument("-w", "--warning", type=plugin.nagios_range, metavar="RANGE",
                        help="relayed attempts range for WARNING (default none)")
    limits.add_argument("-c", "--critical", type=plugin.nagios_range, default="0",
                        metavar="RANGE", help="relayed attempts range for CRITICAL (default 0: "
                        "any relayed attempt is CRITICAL)")
    return parser


def list_tests() -> str:
    width = max(len(a.id) for a in EVERY_ATTEMPT)
    targets = Targets(ext="EXT", user="user", dom="DOMAIN", ip="[SERVER-IP]", extip="[EXT-IP]")
    lines = [f"{'id':<{width}}  greeting               MAIL FROM / RCPT TO  -- description"]
    for attempt in (CONTROL, *EVERY_ATTEMPT):
        where = " (--depth deliver only)" if attempt.deliver_only else ""
        lines.append(f"{attempt.id:<{width}}  {attempt.greeting.value:<21}  "
                     f"{attempt.mail_command(targets)} / {attempt.rcpt_command(targets)}"
                     f"  -- {attempt.description}{where}")
    return "\n".join(lines) + "\n"


class OpenRelay(nagiosplugin.Resource):
    """Resolves -H, runs the series against every address and turns the runs into metrics and
    findings (the text is the summary's: :class:`OpenRelaySummary`)."""

    def __init__(self, args: argparse.Namespace, deadline: Deadline,
                 attempts: list[RelayAttempt], control: RelayAttempt = CONTROL) -> None:
        self.args = args
        self.control = control
        self.deadline = deadline
        self.attempts = attempts
        self.addresses: list[str] = []  # the addresses probed
        self.runs: list[AddressRun] = []
        self.untested: list[Finding] = []  # addresses or families of -H that were not probed
        self.notes: list[str] = []  # how the run was set up (the addresses of a name)
        self.watch: Watch | None = None  # --depth deliver: how the mailbox was watched

    @property
    def several(self) -> bool:
        """Whether -H stands for more than one address (texts then name the address)."""
        return len(self.addresses) > 1 or bool(self.untested)

    @property
    def deliver(self) -> bool:
        return self.args.depth == Depth.DELIVER.value

    def probe(self) -> list[nagiosplugin.Metric]:
        if not self.deliver:
            return self._probe(None)
        url = mailbox_url(self.args)
        assert url is not None
        # before anything is sent: a broken mailbox shows up first, and only messages that
        # arrive after this are ever read
        mailbox, error = open_for(self.args, url, self.deadline)
        if mailbox is None:
            return [finding_metric("mailbox", UNKNOWN, f"no relay attempt made: the mailbox "
                                   f"could not be opened ({error})")]
        try:
            return self._probe(mailbox)
        finally:
            mailbox.close()

    def _probe(self, mailbox: Mailbox | None) -> list[nagiosplugin.Metric]:
        args = self.args
        started = time.monotonic()
        family = 4 if args.ipv4 else 6 if args.ipv6 else 0
        resolution = resolve(args.hostname, args.nameserver, family, self.deadline)
        for fam, reason in sorted(resolution.failures.items()):
            self.untested.append(Finding(UNKNOWN, "lookup", f"{FAMILY_NAMES[fam]} not tested: "
                                         f"{reason}"))
        self.addresses = addresses = self._testable(resolution.addresses)
        if not is_ip_address(args.hostname) and (len(resolution.addresses) > 1
                                                 or resolution.failures):
            self.notes.append(f"{args.hostname} has {len(resolution.addresses)} address(es): "
                              f"{', '.join(resolution.addresses) or 'none'}")
        if not addresses:
            if self.untested:
                return [self._metric(f, "") for f in self.untested]
            which = f" {FAMILY_NAMES[family]}" if family else ""
            return [finding_metric("address", UNKNOWN, f"{args.hostname} has no{which} address")]
        self.runs = survey(addresses, self._options, self.attempts, self.deadline,
                           guess_domain=not args.mail_domain, where=self._where)
        if mailbox is not None:
            results = [r for run in self.runs if run.played for r in run.report.results]
            self.watch = watch(results, mailbox, self.deadline, args.deliver_wait, args.keep)
        return self._metrics(time.monotonic() - started)

    def _testable(self, addresses: list[str]) -> list[str]:
        """The addresses this host can probe; the others become "not tested" findings."""
        source = self.args.source_address
        usable: list[str] = []
        for address in addresses:
            if source and family_of(source) != family_of(address):
                self.untested.append(Finding(
                    UNKNOWN, "family", f"{address} not tested: --source-address {source} is an "
                    f"{FAMILY_NAMES[family_of(source)]} address (use -{family_of(source)}, and "
                    f"a second check with -{family_of(address)} and an "
                    f"{FAMILY_NAMES[family_of(address)]} --source-address)", subject=address))
            else:
                usable.append(address)
        if len(usable) > MAX_ADDRESSES:
            self.untested.append(Finding(
                UNKNOWN, "too-many", f"{len(usable) - MAX_ADDRESSES} more addresses of "
                f"{self.args.hostname} not tested (at most {MAX_ADDRESSES} are probed)"))
            usable = usable[:MAX_ADDRESSES]
        return usable

    def _options(self, address: str) -> RelayOptions:
        args = self.args
        helo = args.helo or socket.gethostname() or "mailprobe.invalid"
        user, ext = args.external_user, args.external_domain
        if self.deliver:  # every form of every attempt points at the operator's mailbox
            user, _, ext = args.deliver_to.rpartition("@")
        targets = Targets(ext=ext, user=user, dom=args.mail_domain or "", ip=ip_literal(address))
        ptr = self._ptr_name(address)
        return RelayOptions(
            address=address, port=args.port, targets=targets, helo_name=helo,
            source_address=args.source_address, starttls=StartTLS(args.starttls),
            depth=Depth(args.depth), command_timeout=args.command_timeout,
            control=self.control, ptr_name=ptr.name, ptr_note=ptr.missing,
            ptr_failure=ptr.failure, deliver_to=args.deliver_to or "", server=args.hostname,
        )

    def _ptr_name(self, address: str) -> PTRName:
        """The PTR name for helo-ptr-name: looked up only when that attempt is played and a
        resolver is in use anyway (-H is a name, or --nameserver is given)."""
        if not any(a.greeting is Greeting.PTR_NAME for a in self.attempts):
            return PTRName()
        if is_ip_address(self.args.hostname) and not self.args.nameserver:
            return PTRName(missing="PTR name not looked up (-H is an address and no "
                                   "--nameserver is given)")
        return ptr_name(address, self.args.nameserver, self.deadline)

    def _where(self, address: str) -> str:
        host = self.args.hostname
        return host if address == host or self.several else f"{host} ({address})"

    def _metric(self, finding: Finding, address: str) -> nagiosplugin.Metric:
        """A finding as a metric; with several addresses its text names the address."""
        prefix = f"{address}: " if address and self.several else ""
        named = dataclasses.replace(finding, text=prefix + finding.text)
        return nagiosplugin.Metric(f"{finding.code} {address or finding.subject}".strip(), named,
                                   context="finding")

    def _metrics(self, elapsed: float) -> list[nagiosplugin.Metric]:
        played = [run for run in self.runs if run.played]
        metrics: list[nagiosplugin.Metric] = []
        if played:
            tally = Tally.of([result for run in played for result in run.report.results])
            metrics += [
                nagiosplugin.Metric("relayed", tally.relayed, min=0, max=tally.attempts),
                nagiosplugin.Metric("tempfailed", tally.tempfailed, min=0, max=tally.attempts),
            ]
            if self.deliver:
                metrics += [
                    nagiosplugin.Metric("delivered", tally.delivered, min=0, max=tally.attempts,
                                        context="count"),
                    nagiosplugin.Metric("undelivered", tally.undelivered, min=0,
                                        max=tally.attempts),
                ]
            metrics += [
                nagiosplugin.Metric("attempts", tally.attempts, min=0, context="count"),
                nagiosplugin.Metric("addresses", len(self.runs), min=0, context="count"),
                nagiosplugin.Metric("round_trips", sum(r.report.round_trips for r in self.runs),
                                    min=0, context="count"),
                nagiosplugin.Metric("connections", sum(r.report.connections for r in self.runs),
                                    min=0, context="count"),
            ]
        for run in self.runs:
            if run.stopped is not None:
                metrics.append(self._metric(run.stopped, run.address))
                continue
            assert run.report.control is not None
            metrics.append(self._metric(control_finding(run.report.control), run.address))
            incomplete = incomplete_finding(run.report.results, run.options.command_timeout)
            if incomplete is not None:
                metrics.append(self._metric(incomplete, run.address))
        metrics += [self._metric(finding, "") for finding in self.untested]
        if self.watch is not None and self.watch.note:
            self.notes.append(f"mailbox: {self.watch.note}")
        metrics.append(nagiosplugin.Metric("time", round(elapsed, 3), "s", min=0))
        return metrics


def build(args: argparse.Namespace, deadline: Deadline) -> nagiosplugin.Check:
    if not args.hostname:
        raise plugin.UsageError("-H/--hostname is required")
    deliver = args.depth == Depth.DELIVER.value
    check_delivery_options(args, deliver)
    try:
        attempts = select(plugin.id_list(args.tests), plugin.id_list(args.skip), deliver=deliver)
        check_domain(args.external_domain, "--external-domain")
        check_local_part(args.external_user, "--external-user")
        if args.mail_domain:
            args.mail_domain = check_domain(args.mail_domain, "--mail-domain")
        if args.helo:
            check_domain(args.helo, "--helo")
    except KeyError as exc:
        raise plugin.UsageError(f"unknown test id {exc.args[0]} (see --list-tests)") from exc
    except (AddressError, NotPlayable) as exc:
        raise plugin.UsageError(str(exc)) from exc
    if deliver and args.mail_domain and within(args.deliver_to.rpartition("@")[2],
                                               args.mail_domain):
        raise plugin.UsageError(f"--deliver-to {args.deliver_to} is in the server's own mail "
                                f"domain {args.mail_domain}: give an address outside it")
    if not attempts:
        raise plugin.UsageError("--tests/--skip leave no attempt to play")
    source = args.source_address
    if source and is_ip_address(args.hostname) \
            and family_of(source) != family_of(args.hostname):
        raise plugin.UsageError(f"--source-address {source} cannot speak to -H "
                                f"{args.hostname}: one is IPv4, the other IPv6")
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
        plugin.ThresholdContext("undelivered", "0", None, describe=summary.undelivered_text),
        nagiosplugin.ScalarContext("count"),
        nagiosplugin.ScalarContext("time"),
        plugin.FindingContext(),
        summary,
    )


def check_delivery_options(args: argparse.Namespace, deliver: bool) -> None:
    """--deliver-to, --mailbox and friends: needed with --depth deliver, refused without it."""
    if not deliver:
        given = [option for option, value in (
            ("--deliver-to", args.deliver_to), ("--mailbox", args.mailbox),
            ("--mailbox-password-file", args.mailbox_password_file),
            ("--mailbox-cafile", args.mailbox_cafile), ("--keep", args.keep)) if value]
        if given:
            raise plugin.UsageError(f"{', '.join(given)}: only with --depth deliver")
        return
    if not args.deliver_to:
        raise plugin.UsageError("--depth deliver needs --deliver-to (your own address, outside "
                                "the server's domains)")
    args.deliver_to = check_address(args.deliver_to, "--deliver-to")
    if not args.mailbox:
        raise plugin.UsageError("--depth deliver needs --mailbox (where --deliver-to's mail "
                                "can be read)")
    if args.timeout < args.deliver_wait + 10:
        raise plugin.UsageError(f"-t {args.timeout:g} leaves no room for --deliver-wait "
                                f"{args.deliver_wait:g} (give -t {args.deliver_wait + 10:g} or "
                                "more)")
    mailbox_url(args)  # a bad URL or password source fails here, before any traffic


class OpenRelaySummary(plugin.ProblemSummary):
    """The status line and long output, from the resource's runs."""

    def __init__(self, resource: OpenRelay) -> None:
        super().__init__("")
        self.resource = resource

    def relayed_text(self, metric: nagiosplugin.Metric) -> str:
        """The problem text of the ``relayed`` metric: how many, and which attempts where."""
        groups = []
        for run in self.resource.runs:
            ids = [r.attempt.id for r in run.report.results if r.outcome is Outcome.RELAYED]
            if not ids:
                continue
            shown = ", ".join(ids[:6]) + (f", +{len(ids) - 6} more" if len(ids) > 6 else "")
            groups.append(f"{run.address}: {shown}" if self.resource.several else shown)
        if self.resource.deliver:
            first = min((r.delivery.arrived for run in self.resource.runs
                         for r in run.report.results if r.outcome is Outcome.RELAYED
                         and r.delivery is not None and r.delivery.arrived is not None),
                        default=None)
            seen = f"; delivered: token seen in the mailbox after {first:.1f} s" \
                if first is not None else ""
            return (f"{metric.value} of {metric.max} relay attempts delivered to "
                    f"{self.resource.args.deliver_to} ({'; '.join(groups)}{seen})")
        return f"{metric.value} of {metric.max} relay attempts accepted ({'; '.join(groups)})"

    def undelivered_text(self, metric: nagiosplugin.Metric) -> str:
        """The problem text of ``undelivered`` (--depth deliver)."""
        ids = [r.attempt.id for run in self.resource.runs for r in run.report.results
               if r.outcome is Outcome.ACCEPTED_NOT_DELIVERED]
        shown = ", ".join(ids[:6]) + (f", +{len(ids) - 6} more" if len(ids) > 6 else "")
        waited = self.resource.watch.watched if self.resource.watch is not None else 0.0
        return (f"{metric.value} of {metric.max} relay attempts accepted outside recipients but "
                f"did not deliver within {waited:.0f} s: honeypot, catch-all, or a queue "
                f"({shown})")

    def ok(self, results: nagiosplugin.Results) -> str:
        runs = self.resource.runs
        tally = Tally.of([r for run in runs for r in run.report.results])
        control = runs[0].report.control if runs else None
        rcpt = control.rcpt_command if control else ""
        apart = f" ({tally.inapplicable} not applicable)" if tally.inapplicable else ""
        if len(runs) > 1:
            return (f"0 of {tally.attempts} relay attempts accepted{apart} on {len(runs)} "
                    f"addresses ({', '.join(run.address for run in runs)}); control {rcpt} "
                    "accepted on each")
        return f"0 of {tally.attempts} relay attempts accepted{apart}; control {rcpt} accepted"

    def problem(self, results: nagiosplugin.Results) -> str:
        """The problems, worst first; with several addresses, then the addresses found clean
        (so that "not tested" is never read as "fine everywhere")."""
        text = super().problem(results)
        if not self.resource.several:
            return text
        clean: dict[int, list[str]] = {}  # attempts -> the clean addresses that played them
        for run in self.resource.runs:
            if is_clean(run):
                clean.setdefault(len(run.report.results), []).append(run.address)
        parts = [f"{', '.join(addresses)}: 0 of {attempts} relay attempts accepted"
                 + (" each" if len(addresses) > 1 else "")
                 for attempts, addresses in clean.items()]
        return "; ".join([text, *parts])

    def verbose(self, results: nagiosplugin.Results) -> list[str]:
        out = list(self.resource.notes)
        for run in self.resource.runs:
            if self.resource.several:
                out.append(f"address {run.address}:")
            self._long(out, run)
        return out

    def _long(self, out: list[str], run: AddressRun) -> None:
        report, options = run.report, run.options
        verbose = self.resource.args.verbose
        out.extend(run.notes)
        if run.stopped is not None and self.resource.several:
            out.append(run.stopped.text)
        if report.banner is not None:
            out.append(f"banner: {report.banner}")
        if report.control is not None:
            out.append(report.control.describe())
        out.extend(result.describe() for result in report.results)
        out.extend(f"note: {note}" for note in report.notes)
        watched = self.resource.watch
        if watched is not None and watched.messages and run is self.resource.runs[-1]:
            out.append(f"mailbox: {watched.messages} test message(s) taken, {watched.arrived} "
                       f"arrived within {watched.watched:.1f} s, {watched.removed} removed"
                       + (" (--keep)" if self.resource.args.keep else ""))
        if verbose >= 1:
            per = report.round_trips / max(1, len(report.results) + 1)
            out.append(f"cost: {report.connections} connections, {report.round_trips} SMTP round "
                       f"trips ({per:.2f} per attempt), TLS {'yes' if report.tls else 'no'}, "
                       f"source {options.source_address or 'default'}")
        if verbose >= 3:
            out.append("transcript (-> sent, <- received, ** event):")
            out.extend(run.transcript.render())


def is_clean(run: AddressRun) -> bool:
    """Every attempt judged and refused, and the control accepted."""
    tally = Tally.of(run.report.results)
    control = run.report.control
    return (run.played and control is not None and control.outcome is Outcome.RELAYED
            and tally.judged == tally.attempts and not tally.relayed and not tally.tempfailed
            and not tally.undelivered)


def main(argv: Sequence[str] | None = None) -> None:
    plugin.run(NAME, build_parser(), build, argv)
