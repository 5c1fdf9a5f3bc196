"""The relay series against every address of a mailer.

A name with A and AAAA records is several doors into the same mail system, and each may have
its own policy (a forgotten IPv6 listener that relays). Each address gets its own
:class:`~mailprobe.probes.relay.runner.RelayRunner`, on its own thread when there are
several, all under the check's one deadline: a tarpit behind one address does not starve the
others. The result is data: one :class:`AddressRun` per address, with the report, or the
finding that says why the series could not be played there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from mailprobe.findings import CRITICAL, UNKNOWN, Finding
from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.smtp import Transcript
from mailprobe.probes.domains import guess_mail_domain
from mailprobe.probes.relay.catalogue import RelayAttempt
from mailprobe.probes.relay.runner import (
    CannotReach,
    RelayOptions,
    RelayReport,
    RelayRunner,
    ServerRefusesUs,
    ServiceDown,
    TLSUnavailable,
)

MAX_PARALLEL = 4  # addresses probed at once


@dataclass
class AddressRun:
    """The series against one address: its report, or why it could not be played."""

    address: str
    options: RelayOptions
    report: RelayReport = field(default_factory=RelayReport)
    transcript: Transcript = field(default_factory=Transcript)
    stopped: Finding | None = None  # service down, refused at the banner, no TLS, ...
    notes: list[str] = field(default_factory=list)  # how it was set up (a guessed domain)

    @property
    def played(self) -> bool:
        return self.stopped is None and self.report.control is not None


def play_address(options: RelayOptions, attempts: list[RelayAttempt], deadline: Deadline,
                 guess_domain: bool, where: str) -> AddressRun:
    """The control and the attempts against ``options.address`` (``where`` names it)."""
    run = AddressRun(options.address, options)
    runner = RelayRunner(options, deadline, run.transcript)
    run.report = runner.report
    try:
        if guess_domain:
            runner.open()
            guessed = guess_mail_domain(runner.report.server_name)
            if not guessed:
                run.stopped = Finding(UNKNOWN, "mail_domain", "cannot guess the mail domain from "
                                      f"the banner {runner.report.banner}; give --mail-domain",
                                      subject=options.address)
                return run
            options.targets = dataclasses.replace(options.targets, dom=guessed)
            run.notes.append(f"mail domain {guessed} (guessed from the banner name "
                             f"{runner.report.server_name}; set --mail-domain)")
            if options.deliver_to and within(options.targets.ext, guessed):
                run.stopped = Finding(UNKNOWN, "deliver_to", f"bad option: --deliver-to "
                                      f"{options.deliver_to} is in the server's own mail domain "
                                      f"{guessed} (guessed from the banner): give an address "
                                      "outside it", subject=options.address)
                return run
        runner.run(attempts)
    except ServiceDown as exc:
        run.stopped = Finding(CRITICAL, "service", f"mail service down: {exc}",
                              subject=options.address)
    except CannotReach as exc:
        run.stopped = Finding(UNKNOWN, "service", f"not tested: {exc}", subject=options.address)
    except ServerRefusesUs as exc:
        run.stopped = Finding(UNKNOWN, "service", f"inconclusive: {where} refuses this vantage "
                              f"point at the banner ({exc.reply})", subject=options.address)
    except TLSUnavailable as exc:
        run.stopped = Finding(UNKNOWN, "service", f"--starttls require: {exc}",
                              subject=options.address)
    except BudgetExhausted as exc:
        run.stopped = Finding(UNKNOWN, "budget", str(exc), subject=options.address)
    finally:
        runner.shutdown()
    return run


def within(domain: str, mail_domain: str) -> bool:
    """Whether ``domain`` is ``mail_domain`` or below it (case and final dot ignored)."""
    domain, mail_domain = domain.lower().rstrip("."), mail_domain.lower().rstrip(".")
    return domain == mail_domain or domain.endswith("." + mail_domain)


def survey(addresses: list[str], make_options: Callable[[str], RelayOptions],
           attempts: list[RelayAttempt], deadline: Deadline, guess_domain: bool,
           where: Callable[[str], str]) -> list[AddressRun]:
    """One :class:`AddressRun` per address, in the order given (several at once)."""

    def play(address: str) -> AddressRun:
        return play_address(make_options(address), attempts, deadline, guess_domain,
                            where(address))

    if len(addresses) == 1:
        return [play(addresses[0])]
    from concurrent.futures import ThreadPoolExecutor  # only a name with several addresses

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(addresses)),
                            thread_name_prefix="relay") as pool:
        return list(pool.map(play, addresses))
