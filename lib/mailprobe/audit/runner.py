"""Runs the sections of one mailer concurrently, and many mailers with bounded concurrency.

Every section runs in its own daemon thread (probes are blocking socket code, each bounded by
the mailer's :class:`Deadline`); a section that has not finished when the budget is spent is
reported UNKNOWN, and a daemon thread can never keep the process alive. ``on_section`` is
called (from the section's thread) as each section finishes: the web page and the progress
bar fill in from it.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from collections.abc import Callable, Collection, Sequence

from mailprobe import __version__
from mailprobe.audit.context import MailerContext
from mailprobe.audit.model import MailerReport, Report, Section
from mailprobe.audit.options import REPORT_MARGIN, AuditOptions, MailerTarget
from mailprobe.audit.sections import (
    ORDER,
    TITLES,
    backscatter,
    dnsbl,
    domain,
    exposure,
    geoip,
    identity,
    relay,
)
from mailprobe.findings import UNKNOWN, Finding
from mailprobe.net.addresses import unusable_reason
from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.dns import DNSFailure, resolve_target
from mailprobe.probes.geoip import GeoDatabase

SectionCallback = Callable[[MailerReport, Section], None]
MailerCallback = Callable[[MailerReport], None]
Adapter = Callable[[MailerContext], Section]

GRACE = 0.5  # seconds past the deadline a section may take to hand in what it found


def adapters(geo: GeoDatabase | None) -> dict[str, Adapter]:
    """Section key -> its adapter (one probe each)."""
    return {
        "relay": relay.run,
        "backscatter": backscatter.run,
        "dnsbl": dnsbl.run,
        "identity": identity.run,
        "domain": domain.run,
        "geoip": lambda ctx: geoip.run(ctx, geo),
        "exposure": exposure.run,
    }


def mailer_deadline(options: AuditOptions) -> Deadline:
    budget = options.timeout
    return Deadline(max(budget - REPORT_MARGIN, budget * 0.8), announced=budget)


def resolve(target: MailerTarget, options: AuditOptions, deadline: Deadline) -> list[str]:
    """The addresses to probe: given by the caller, or -H's own A/AAAA (DNSFailure if not)."""
    if target.addresses:
        return list(target.addresses)
    ctx = MailerContext(target.label, [], options, deadline)
    addresses = resolve_target(target.label.rstrip("."), ctx.lookup(), options.family)
    for address in addresses:
        why = unusable_reason(address)
        if why:
            raise DNSFailure(target.label, "A", f"{address} cannot be a mail server ({why})")
    return addresses


def audit_mailer(target: MailerTarget, options: AuditOptions, *,
                 geo: GeoDatabase | None = None,
                 on_section: SectionCallback | None = None,
                 only: Collection[str] | None = None) -> MailerReport:
    """Every section (or ``only`` these) for one mailer, concurrently, within
    ``options.timeout``."""
    wanted = [key for key in ORDER if only is None or key in only]
    running = set(wanted)
    if {"relay", "domain"} & running and not options.mail_domain:
        running.add("identity")  # its PTR and banner names guess the mail domain
    started = time.monotonic()
    deadline = mailer_deadline(options)
    report = MailerReport(target.label)
    try:
        report.addresses = resolve(target, options, deadline)
    except (DNSFailure, BudgetExhausted) as exc:
        report.error = f"cannot resolve {target.label}: {exc}"
    if not report.error and not report.addresses:
        which = {4: " IPv4", 6: " IPv6"}.get(options.family, "")
        report.error = f"{target.label} has no{which} address (A/AAAA): nothing to audit"
    if report.error:
        report.seconds = time.monotonic() - started
        return report
    ctx = MailerContext(target.label, report.addresses, options, deadline)
    report.address = ctx.address
    if "identity" not in running:
        ctx.identity_known(None)  # nobody waits for facts that are not gathered
    results: queue.Queue[Section] = queue.Queue()
    lock = threading.Lock()

    def one(key: str, adapter: Adapter) -> None:
        began = time.monotonic()
        try:
            section = adapter(ctx)
        except BudgetExhausted as exc:
            section = _failed(key, str(exc))
        except Exception as exc:  # one broken probe must not take the report with it
            detail = traceback.format_exc(limit=-3)
            section = _failed(key, f"internal error: {type(exc).__name__}: {exc}", detail)
        section.seconds = round(time.monotonic() - began, 3)
        if on_section is not None and key in wanted:
            with lock:
                on_section(report, section)
        results.put(section)

    threads = [threading.Thread(target=one, args=(key, adapter), daemon=True,
                                name=f"audit-{key}")
               for key, adapter in adapters(geo).items() if key in running]
    for thread in threads:
        thread.start()
    done: dict[str, Section] = {}
    while len(done) < len(threads):
        try:
            section = results.get(timeout=max(0.01, deadline.remaining() + GRACE))
        except queue.Empty:
            break
        done[section.key] = section
    for key in wanted:
        if key not in done:
            done[key] = _failed(key, f"did not finish within -t {options.timeout:g}s")
            if on_section is not None:
                with lock:
                    on_section(report, done[key])
    with lock:
        report.sections = [done[key] for key in wanted]
        report.mail_domain = ctx.mail_domain().name if ctx.domain_chosen else None
        report.mail_domain_source = ctx.mail_domain().source if ctx.domain_chosen else ""
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _failed(key: str, text: str, detail: str = "") -> Section:
    return Section(key, TITLES[key], UNKNOWN, text, [Finding(UNKNOWN, "failed", text, detail)])


def audit_fleet(targets: Sequence[MailerTarget], options: AuditOptions, *, jobs: int = 16,
                geo: GeoDatabase | None = None,
                on_section: SectionCallback | None = None,
                on_mailer: MailerCallback | None = None) -> Report:
    """Every mailer, ``jobs`` at a time, in one process; mailers keep the input order."""
    report = Report(version=__version__, options=options.describe())
    results: list[MailerReport | None] = [None] * len(targets)
    work: queue.Queue[int] = queue.Queue()
    for index in range(len(targets)):
        work.put(index)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                index = work.get_nowait()
            except queue.Empty:
                return
            mailer = audit_mailer(targets[index], options, geo=geo, on_section=on_section)
            results[index] = mailer
            if on_mailer is not None:
                with lock:
                    on_mailer(mailer)

    workers = [threading.Thread(target=worker, daemon=True, name=f"audit-worker-{n}")
               for n in range(max(1, min(jobs, len(targets))))]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    report.mailers = [m for m in results if m is not None]
    return report
