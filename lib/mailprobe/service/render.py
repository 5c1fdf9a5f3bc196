"""Mail bodies from the models: the immediate answer, the progress report and the final
report (plain text, and an HTML part made from the same text when configured)."""

from __future__ import annotations

import datetime
import html
import textwrap

from mailprobe.service import advice
from mailprobe.service.authz import Decision
from mailprobe.service.report import TestReport
from mailprobe.service.request import SYNTAX, ParsedRequest

OUTCOME_LABELS = {
    "relayed": "RELAYED", "refused": "refused", "sender refused": "sender refused",
    "tempfailed": "DEFERRED (4xx)", "refused at DATA": "refused at DATA",
    "timeout": "no answer (counted as refused)", "error": "not played", "not run": "not played",
}


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def answer_subject(request: ParsedRequest, decisions: list[Decision]) -> str:
    if not request.usable:
        return "Re: relay test: request not understood"
    accepted = sum(d.authorised for d in decisions)
    if accepted == len(decisions):
        return "Re: relay test: authorised"
    if accepted:
        return f"Re: relay test: {accepted} of {len(decisions)} addresses authorised"
    return "Re: relay test: not authorised"


def answer_text(request: ParsedRequest, decisions: list[Decision], authentication: str,
                request_id: int | None, test_ids: dict[str, int], service: str,
                received_at: float) -> str:
    lines = [f"Your relay-test request of {when(received_at)} from {request.requester or '?'}",
             f"({request.message_id or 'no Message-ID'}) has been handled.", ""]
    if decisions:
        lines.append("Addresses:")
        for decision in decisions:
            if decision.authorised:
                lines.append(f"  {decision.address:<39} AUTHORISED ({decision.site}), test "
                             f"#{test_ids.get(decision.address, '?')} is queued")
            else:
                lines.append(f"  {decision.address:<39} REFUSED: {decision.reason}")
        lines.append("")
    if authentication:
        lines += [f"The request was authenticated by {authentication}.", ""]
    if request.problems:
        lines.append("What could not be read:")
        lines += [f"  - {problem}" for problem in request.problems]
        lines += ["", "The accepted form is:", "", *("    " + s for s in SYNTAX.splitlines()), ""]
    if any(d.authorised for d in decisions):
        lines += ["The tests connect to each authorised mailer and try to relay a series of "
                  "messages",
                  "through it, as bulk mailers do. The results go to you, to postmaster at the",
                  "tested host and to the site's postmaster. Testing takes from minutes to two "
                  "days,",
                  "depending on how the mailer reacts; you get a progress report if it takes "
                  "long.", ""]
    lines += ["-- ", f"{service}: the relay-test service (mailprobe relaytest)",
              f"request #{request_id}" if request_id else "this request was not stored"]
    return "\n".join(lines) + "\n"


def report_subject(report: TestReport) -> str:
    return f"Relay test of {report.address}: {report.verdict.title}"


def progress_subject(report: TestReport) -> str:
    return f"Relay test of {report.address}: still running (progress report)"


def _header(report: TestReport) -> list[str]:
    host = f" ({report.host_name})" if report.host_name else ""
    asked = (f"booked test '{report.booking}' on behalf of {report.requester}" if report.booking
             else f"requested by {report.requester} on {when(report.requested_at)}")
    lines = [f"Relay test of {report.address}{host}, site {report.site}",
             f"Test #{report.test_id}, {asked}"]
    if report.request_message_id:
        lines.append(f"Request: {report.request_message_id}")
    return lines


def progress_text(report: TestReport, next_try_at: float | None) -> str:
    lines = [*_header(report), "",
             f"The test is not complete yet: {len(report.tries)} tr"
             f"{'y' if len(report.tries) == 1 else 'ies'} so far, next try "
             f"{when(next_try_at)}.", "", "Tries so far:"]
    lines += [f"  {t.number}. {when(t.started_at)}  {t.summary}" for t in report.tries]
    lines += ["", "Mailers that cannot be reached are retried for up to two days; attempts "
              "answered", "with a 4xx code are requeued for up to 12 hours. The final report "
              "follows.", "", "-- ", f"{report.service_address}: the relay-test service "
              "(mailprobe relaytest)"]
    return "\n".join(lines) + "\n"


def report_text(report: TestReport) -> str:
    lines = [f"VERDICT: {report.verdict.line}", "", *_header(report)]
    lines.append(f"Finished {when(report.finished_at)}; mail domain of the control: "
                 f"{report.mail_domain or '-'}")
    lines.append(f"This report goes to: {', '.join(report.recipients)}")
    lines.append("")
    control = next((line for line in report.final if line.attempt_id == "control"), None)
    if control is not None:
        state = "accepted" if control.outcome == "relayed" else \
            OUTCOME_LABELS.get(control.outcome, control.outcome)
        lines += [f"Control (must be accepted, else the test proves nothing): {state}",
                  f"      {control.commands}", f"      -> {control.reply}", ""]
    attempts = [line for line in report.final if line.attempt_id != "control"]
    if attempts:
        lines.append("Result of every relay attempt (the last try of each):")
        for line in attempts:
            lines.append(f"  [{OUTCOME_LABELS.get(line.outcome, line.outcome)}] "
                         f"{line.attempt_id}: {line.description}")
            lines.append(f"      {line.commands}")
            if line.reply:
                lines.append(f"      -> {line.reply}")
            if line.detail:
                lines.append(f"      ({line.detail})")
        lines.append("")
    lines.append("Tries:")
    for attempt in report.tries:
        lines.append(f"  {attempt.number}. {when(attempt.started_at)}  {attempt.summary}")
        if attempt.banner:
            lines.append(f"      banner: {attempt.banner}")
    lines.append("")
    if report.advice:
        lines.append("What to do:")
        for item in report.advice:
            lines.append(f"  * {item.title}")
            for product, text in (("Postfix:", item.postfix), ("Exim:", item.exim),
                                  ("Sendmail:", item.sendmail)):
                lines += textwrap.wrap(text, 92, initial_indent=f"      {product:<10}",
                                       subsequent_indent=" " * 16, break_on_hyphens=False,
                                       break_long_words=False)
        lines.append("")
    lines += [advice.POLICY, ""]
    if report.listings is not None:
        listings = report.listings
        if listings.listed:
            lines.append(f"DNS blacklists that list {report.address}:")
            for listing in listings.listed:
                lines.append(f"  {listing.zone}: {listing.meaning}")
                if listing.reason:
                    lines.append(f"      says: {listing.reason}")
                if listing.removal:
                    lines.append(f"      removal: {listing.removal}")
            lines += ["", advice.BLACKLISTS, ""]
        else:
            lines.append(f"No DNS blacklist checked lists {report.address}.")
        if listings.clean:
            lines.append(f"Not listed on: {', '.join(listings.clean)}")
        if listings.unchecked:
            lines.append("Could not check: " + ", ".join(f"{z} ({why})"
                                                         for z, why in listings.unchecked))
        lines.append("")
    lines += ["-- ", f"{report.service_address}: the relay-test service (mailprobe relaytest). "
              "The tests send", "non-standard command sequences and addresses; nothing is "
              "delivered: the series stops", "at RCPT TO, or at the 354 reply to DATA."]
    return "\n".join(lines) + "\n"


def as_html(text: str) -> str:
    """The plain text as an HTML part (same content, monospaced, escaped)."""
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>"
            f"<pre style=\"font-family: monospace\">{html.escape(text)}</pre></body></html>\n")
