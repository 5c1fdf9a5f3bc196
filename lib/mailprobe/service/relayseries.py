"""The one adapter between the service and the relay probe (:mod:`mailprobe.probes.relay`).

Everything the service knows about the runner, its options and its report is here: the rest
of the service sees :class:`SeriesOutcome` with plain strings. When the runner changes, this
is the module to fix.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.smtp import Transcript, ip_literal
from mailprobe.probes.domains import guess_mail_domain
from mailprobe.probes.relay.catalogue import (
    CATALOGUE,
    CONTROL,
    RelayAttempt,
    Targets,
)
from mailprobe.probes.relay.runner import (
    Depth,
    RelayOptions,
    RelayRunner,
    ServerRefusesUs,
    ServiceDown,
    StartTLS,
    TLSUnavailable,
)
from mailprobe.probes.relay.verdict import AttemptResult

# What a try showed, as a whole.
PLAYED = "played"                  # the control and the attempts were played
UNREACHABLE = "unreachable"        # no connection or no banner: retry with back-off
DEFERRED_BANNER = "deferred"       # a 4xx banner: like a 4xx answer, requeue
REFUSED_BANNER = "refused"         # a 5xx banner: this vantage point is refused (inconclusive)
NO_DOMAIN = "no-domain"            # no mail domain for the control recipient (inconclusive)

# Attempt outcomes (the runner's Outcome values).
RELAYED = "relayed"
TEMPFAILED = "tempfailed"
# could not be played, or never answered (a tarpit is not a refusal): retried like a lost
# connection, and never counted as refused
NOT_JUDGED = ("error", "not run", "timeout")
NOT_APPLICABLE = "not applicable"  # the route does not exist there (XCLIENT not offered, ...)

ALL_IDS: tuple[str, ...] = tuple(a.id for a in CATALOGUE)
DESCRIPTIONS: dict[str, str] = {a.id: a.description for a in (CONTROL, *CATALOGUE)}


@dataclass(frozen=True)
class AttemptRecord:
    id: str
    description: str
    outcome: str
    mail_command: str
    rcpt_command: str
    reply: str
    detail: str

    def as_row(self) -> tuple[str, str, str, str, str, str, str]:
        return (self.id, self.description, self.outcome, self.mail_command, self.rcpt_command,
                self.reply, self.detail)


@dataclass
class SeriesOutcome:
    kind: str
    reason: str = ""
    banner: str = ""
    mail_domain: str = ""
    control: AttemptRecord | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    connections: int = 0
    round_trips: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class SeriesSettings:
    port: int
    source_address: str
    helo: str
    external_domain: str
    external_user: str
    depth: str
    try_timeout: float
    command_timeout: float


def _record(result: AttemptResult) -> AttemptRecord:
    reply = result.deciding_reply
    return AttemptRecord(result.attempt.id, result.attempt.description, result.outcome.value,
                         result.mail_command, result.rcpt_command, str(reply) if reply else "",
                         result.detail)


def play(address: str, settings: SeriesSettings, attempt_ids: list[str],
         mail_domain: str = "") -> SeriesOutcome:
    """One try: the control and the chosen attempts against ``address``."""
    started = time.monotonic()
    attempts: list[RelayAttempt] = [a for a in CATALOGUE if a.id in attempt_ids]
    targets = Targets(ext=settings.external_domain, user=settings.external_user,
                      dom=mail_domain, ip=ip_literal(address))
    options = RelayOptions(
        address=address, port=settings.port, targets=targets, helo_name=settings.helo,
        source_address=settings.source_address or None, starttls=StartTLS.TRY,
        depth=Depth(settings.depth), command_timeout=settings.command_timeout)
    runner = RelayRunner(options, Deadline(settings.try_timeout), Transcript())
    outcome = SeriesOutcome(PLAYED, mail_domain=mail_domain)
    try:
        if not mail_domain:
            runner.open()
            guessed = guess_mail_domain(runner.report.server_name) or ""
            if not guessed:
                runner.close()
                outcome.kind = NO_DOMAIN
                outcome.reason = (f"no mail domain for the control recipient postmaster@...: "
                                  f"the banner ({runner.report.banner}) names no domain; set "
                                  "mail_domain for the site")
                return _finish(outcome, runner, started)
            options.targets = dataclasses.replace(targets, dom=guessed)
            outcome.mail_domain = guessed
        report = runner.run(attempts)
    except ServiceDown as exc:
        runner.close(polite=False)
        outcome.kind, outcome.reason = UNREACHABLE, str(exc)
        return _finish(outcome, runner, started)
    except ServerRefusesUs as exc:
        runner.close(polite=False)
        transient = exc.reply.transient
        outcome.kind = DEFERRED_BANNER if transient else REFUSED_BANNER
        outcome.reason = f"the mailer's banner is {exc.reply}"
        outcome.banner = str(exc.reply)
        return _finish(outcome, runner, started)
    except TLSUnavailable as exc:  # not raised with StartTLS.TRY; kept for a changed runner
        runner.close(polite=False)
        outcome.kind, outcome.reason = UNREACHABLE, str(exc)
        return _finish(outcome, runner, started)
    except BudgetExhausted as exc:
        runner.close(polite=False)
        outcome.kind, outcome.reason = UNREACHABLE, f"{exc} (try_timeout)"
        return _finish(outcome, runner, started)
    outcome.control = _record(report.control) if report.control else None
    outcome.attempts = [_record(r) for r in report.results]
    outcome.reason = "; ".join(report.notes)
    return _finish(outcome, runner, started)


def _finish(outcome: SeriesOutcome, runner: RelayRunner, started: float) -> SeriesOutcome:
    report = runner.report
    if report.banner is not None and not outcome.banner:
        outcome.banner = str(report.banner)
    outcome.connections = report.connections
    outcome.round_trips = report.round_trips
    outcome.seconds = time.monotonic() - started
    return outcome
