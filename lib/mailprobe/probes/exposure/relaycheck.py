"""``--relay-check``: the relay series of check_open_relay, played on an unsanctioned listener."""

from __future__ import annotations

from collections.abc import Callable

from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.smtp import Transcript, ip_literal
from mailprobe.probes.exposure.model import Endpoint, RelayResult
from mailprobe.probes.relay.catalogue import CATALOGUE, Targets
from mailprobe.probes.relay.runner import (
    Depth,
    RelayOptions,
    RelayRunner,
    ServerRefusesUs,
    ServiceDown,
    StartTLS,
    TLSUnavailable,
)
from mailprobe.probes.relay.verdict import Outcome

EXTERNAL_DOMAIN = "example.net"  # the outside recipient, as check_open_relay's default
EXTERNAL_USER = "relaytest"


def relay_check(endpoint: Endpoint, deadline: Deadline, *, helo: str,
                mail_domain: str | None, guess_domain: Callable[[str], str | None],
                server_name: str, source_address: str | None, command_timeout: float,
                transcript: Transcript | None = None) -> RelayResult:
    """The whole catalogue (stopping at RCPT: nothing is ever sent) against ``endpoint``.

    The control recipient is postmaster@ the mail domain: ``mail_domain``, or the domain
    ``guess_domain`` makes of the banner's host name ``server_name``.
    """
    domain = mail_domain or guess_domain(server_name)
    result = RelayResult(attempts=len(CATALOGUE), mail_domain=domain or "")
    if not domain:
        result.inconclusive = (f"no mail domain for the control (banner name "
                               f"{server_name or 'none'!r}); give --mail-domain")
        return result
    targets = Targets(ext=EXTERNAL_DOMAIN, user=EXTERNAL_USER, dom=domain,
                      ip=ip_literal(endpoint.address))
    options = RelayOptions(address=endpoint.address, port=endpoint.port, targets=targets,
                           helo_name=helo, source_address=source_address,
                           starttls=StartTLS.TRY, depth=Depth.RCPT,
                           command_timeout=command_timeout)
    runner = RelayRunner(options, deadline, transcript)
    try:
        report = runner.run(list(CATALOGUE))
    except (ServiceDown, ServerRefusesUs, TLSUnavailable) as exc:
        result.inconclusive = f"the series could not start: {exc}"
        return result
    except BudgetExhausted as exc:
        result.inconclusive = str(exc)
        return result
    result.relayed = [r.attempt.id for r in report.results if r.outcome is Outcome.RELAYED]
    control = report.control
    unplayed = [r for r in report.results if r.outcome in (Outcome.ERROR, Outcome.NOT_RUN)]
    if control is None or control.outcome is not Outcome.RELAYED:
        reply = control.deciding_reply if control else None
        result.inconclusive = (f"control postmaster@{domain} not accepted"
                               + (f" ({reply})" if reply else ""))
    elif unplayed:
        result.inconclusive = f"{len(unplayed)} of {len(report.results)} attempts not played"
    return result
