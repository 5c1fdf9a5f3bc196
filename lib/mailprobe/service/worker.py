"""One try of one test: play the relay series, record it, decide what follows, and when the
test is finished queue its report for every recipient, all in one transaction."""

from __future__ import annotations

import socket
import time

from mailprobe.service import decide, faults, hostinfo, listings, mailer, relayseries, render
from mailprobe.service.config import Settings
from mailprobe.service.report import TestReport, TryLine, advice_for, attempt_line
from mailprobe.service.store import CANCELLED, DONE, QUEUED, RUNNING, Row, Store, this_owner


def windows(settings: Settings) -> decide.Windows:
    return decide.Windows(settings.retry_initial, settings.retry_max,
                          settings.unreachable_window, settings.tempfail_window,
                          settings.requeue_interval)


def series_settings(settings: Settings, address: str) -> relayseries.SeriesSettings:
    return relayseries.SeriesSettings(
        port=settings.port, source_address=settings.source_for(address),
        helo=settings.helo or settings.service_domain or socket.gethostname(),
        external_domain=settings.external_domain, external_user=settings.external_user,
        depth=settings.depth, try_timeout=settings.try_timeout,
        command_timeout=settings.command_timeout)


def latest_outcomes(store: Store, test_id: int) -> dict[str, str]:
    return {str(r.attempt_id): str(r.outcome) for r in store.latest_results(test_id)
            if r.attempt_id != "control"}


def _summary(outcome: relayseries.SeriesOutcome, plan: decide.Plan) -> str:
    if outcome.kind != relayseries.PLAYED:
        return plan.why
    counts: dict[str, int] = {}
    for record in outcome.attempts:
        counts[record.outcome] = counts.get(record.outcome, 0) + 1
    parts = [f"{n} {render.OUTCOME_LABELS.get(o, o)}" for o, n in sorted(counts.items())]
    control = outcome.control.outcome if outcome.control else "not played"
    control_text = "accepted" if control == relayseries.RELAYED else control
    return (f"played {len(outcome.attempts)} attempts ({', '.join(parts) or 'none'}), control "
            f"{control_text}; {plan.why}")


def run_try(settings: Settings, store: Store, test_id: int) -> decide.Plan | None:
    """Play one try of a claimed test; None when the test is no longer ours (cancelled)."""
    test = store.test(test_id)
    assert test is not None
    latest = latest_outcomes(store, test_id)
    site = settings.site_named(str(test.site))
    domain = site.mail_domain if site and site.mail_domain else _last_domain(store, test_id)
    started = time.time()
    outcome = relayseries.play(str(test.address), series_settings(settings, str(test.address)),
                               decide.to_play(latest), domain)
    faults.point("run:after-play")
    finished = time.time()
    merged = {**latest, **{a.id: a.outcome for a in outcome.attempts}}
    clock = decide.TestClock(_float(test.first_unreachable_at), _float(test.first_tempfail_at))
    control = outcome.control.outcome if outcome.control else None
    plan = decide.after_try(outcome.kind, outcome.reason, control, merged, clock, finished,
                            windows(settings))
    extra = _report_facts(settings, str(test.address)) if plan.finished else None
    number = int(str(test.tries)) + 1
    records = ([outcome.control] if outcome.control else []) + outcome.attempts
    with store.transaction():
        now_row = store.test(test_id)
        if now_row is None or now_row.state != RUNNING or now_row.owner != this_owner():
            return None
        store.record_try(test_id, number, started, finished, outcome.kind,
                         _summary(outcome, plan), outcome.banner, outcome.mail_domain,
                         outcome.connections, outcome.round_trips,
                         [r.as_row() for r in records])
        fields: dict[str, object] = {
            "tries": number, "next_try_at": plan.next_try_at, "owner": None,
            "lease_until": None, "first_unreachable_at": plan.first_unreachable_at,
            "first_tempfail_at": plan.first_tempfail_at,
            "state": DONE if plan.finished else QUEUED}
        if plan.finished:
            verdict = decide.verdict(plan.end_reason, merged, plan.why, windows(settings))
            fields.update(verdict=verdict.code, verdict_line=verdict.line,
                          end_reason=plan.end_reason, finished_at=finished)
        store.update_test(test_id, **fields)
        if plan.finished:
            assert extra is not None
            queue_report(settings, store, test_id, extra, finished)
    faults.point("run:after-record")
    return plan


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _last_domain(store: Store, test_id: int) -> str:
    for attempt in reversed(store.tries(test_id)):
        if attempt.mail_domain:
            return str(attempt.mail_domain)
    return ""


def _report_facts(settings: Settings, address: str) -> tuple[str, listings.Listings | None]:
    """Network facts for the report: the host's name and its DNSBL listings."""
    name = hostinfo.host_name(address, settings.nameserver)
    try:
        found = listings.look_up(address, settings.dnsbl_zones,
                                 settings.dnsbl_nameserver or settings.nameserver)
    except Exception:  # the report goes out without listings rather than not at all
        found = None
    return name, found


def build_report(settings: Settings, store: Store, test: Row, host_name: str,
                 found: listings.Listings | None) -> TestReport:
    test_id = int(str(test.id))
    request = store.request(int(str(test.request_id))) if test.request_id else None
    verdict = decide.Verdict(str(test.verdict or decide.UNDECIDED),
                             str(test.verdict_line or "INCONCLUSIVE: not finished"))
    tries = []
    results = store.results(test_id)
    for attempt in store.tries(test_id):
        lines = [attempt_line(r) for r in results if r.try_number == attempt.number]
        tries.append(TryLine(int(str(attempt.number)), float(str(attempt.started_at)),
                             str(attempt.kind), str(attempt.summary), str(attempt.banner),
                             lines))
    final_rows = store.latest_results(test_id)
    final = [attempt_line(r) for r in final_rows]
    site = settings.site_named(str(test.site))
    report = TestReport(
        test_id=test_id, address=str(test.address), host_name=host_name, site=str(test.site),
        requester=str(test.requester),
        requested_at=float(str(request.received_at)) if request else float(str(test.created_at)),
        request_message_id=str(request.message_id) if request else "",
        booking=str(test.booking_key or "").split(":")[0], verdict=verdict,
        finished_at=_float(test.finished_at), mail_domain=_last_domain(store, test_id),
        tries=tries, final=final, advice=advice_for(final), listings=found,
        service_address=settings.address)
    report.recipients = hostinfo.recipients(
        str(test.requester), hostinfo.postmaster_of(str(test.address), host_name),
        site.postmaster if site else "")
    return report


def queue_report(settings: Settings, store: Store, test_id: int,
                 facts: tuple[str, listings.Listings | None], now: float) -> None:
    """Queue the final report for every recipient (inside the caller's transaction)."""
    test = store.test(test_id)
    assert test is not None
    report = build_report(settings, store, test, *facts)
    request = store.request(int(str(test.request_id))) if test.request_id else None
    text = render.report_text(report)
    for recipient in report.recipients:
        mailer.queue(store, settings, mailer.Outgoing(
            f"report:test:{test_id}:{recipient.lower()}", recipient, render.report_subject(report),
            text, str(request.message_id) if request else "",
            "auto-replied" if request else "auto-generated"),
            "report", now, test_id=test_id)


def queue_progress(settings: Settings, store: Store, test_id: int, now: float) -> bool:
    """Queue the progress report to the requester once (inside a transaction of its own)."""
    with store.transaction():
        test = store.test(test_id)
        if test is None or test.state not in (QUEUED, RUNNING) or test.progress_sent_at:
            return False
        report = build_report(settings, store, test, "", None)
        request = store.request(int(str(test.request_id))) if test.request_id else None
        mailer.queue(store, settings, mailer.Outgoing(
            f"progress:test:{test_id}", str(test.requester), render.progress_subject(report),
            render.progress_text(report, _float(test.next_try_at)),
            str(request.message_id) if request else ""), "progress", now, test_id=test_id)
        store.update_test(test_id, progress_sent_at=now)
    return True


def cancel(store: Store, test_id: int, now: float) -> tuple[bool, str]:
    """Cancel a queued or running test (a running try finishes but is not recorded)."""
    with store.transaction():
        test = store.test(test_id)
        if test is None:
            return False, f"no test #{test_id}"
        if test.state in (DONE, CANCELLED):
            return False, f"test #{test_id} is already {test.state}"
        store.update_test(test_id, state=CANCELLED, owner=None, lease_until=None,
                          next_try_at=None, finished_at=now, end_reason=decide.CANCELLED,
                          verdict=decide.CANCELLED,
                          verdict_line="CANCELLED: the test was cancelled before it finished")
    return True, f"test #{test_id} ({test.address}) cancelled"
