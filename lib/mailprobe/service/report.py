"""The report model: everything a requester is told about one test, as data (rendered by
:mod:`.render`). Built from the queue's rows, the verdict, the DNSBL listings and the advice."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailprobe.service import advice
from mailprobe.service.decide import Verdict
from mailprobe.service.listings import Listings
from mailprobe.service.relayseries import RELAYED, TEMPFAILED
from mailprobe.service.store import Row


@dataclass(frozen=True)
class AttemptLine:
    attempt_id: str
    description: str
    outcome: str
    commands: str
    reply: str
    detail: str


@dataclass(frozen=True)
class TryLine:
    number: int
    started_at: float
    kind: str
    summary: str
    banner: str
    attempts: list[AttemptLine]


@dataclass
class TestReport:
    test_id: int
    address: str
    host_name: str                    # forward-confirmed PTR name ('' when none)
    site: str
    requester: str
    requested_at: float
    request_message_id: str
    booking: str
    verdict: Verdict
    finished_at: float | None
    mail_domain: str
    tries: list[TryLine] = field(default_factory=list)
    final: list[AttemptLine] = field(default_factory=list)   # last result of each attempt
    advice: list[advice.Advice] = field(default_factory=list)
    listings: Listings | None = None
    recipients: list[str] = field(default_factory=list)
    service_address: str = ""


def advice_for(final: list[AttemptLine]) -> list[advice.Advice]:
    """The fixes the results call for, in a stable order."""
    keys = []
    for line in final:
        if line.attempt_id == "control":   # accepted on purpose: not a finding
            continue
        if line.outcome == RELAYED:
            keys.append(advice.group_of(line.attempt_id))
        elif line.outcome == TEMPFAILED:
            keys.append(advice.DEFERRED.key)
    return [advice.GROUPS[k] for k in advice.GROUPS if k in keys]


def attempt_line(row: Row) -> AttemptLine:
    mail, rcpt = str(row.mail_command), str(row.rcpt_command)
    commands = f"{mail} / {rcpt}" if rcpt else mail
    return AttemptLine(str(row.attempt_id), str(row.description), str(row.outcome), commands,
                       str(row.reply), str(row.detail))
