"""mailprobe relaytest end to end through a real Postfix: requests are mailed to the hub,
which pipes them to ``mailprobe relaytest receive``; the answers and reports come back through
the hub into Maildirs; ``run --once`` tests lab Postfix mailers from 127.0.0.2."""

from __future__ import annotations

import socket
import time
from email.message import Message

import pytest

from tests.fixtures.relaytest import (  # noqa: F401  (relaylab is a fixture)
    ALICE,
    BOB,
    CLOSED,
    DEFER,
    DEPT_POSTMASTER,
    GONE,
    OPEN,
    OUTSIDE_SITE,
    SERVICE,
    SITE_POSTMASTER,
    RelayLab,
    relaylab,
)

pytestmark = pytest.mark.integration


def body(message: Message) -> str:
    if message.is_multipart():
        part = message.get_payload(0)
        assert isinstance(part, Message)
        message = part
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def by_subject(messages: list[Message], text: str) -> list[Message]:
    return [m for m in messages if text in str(m["Subject"])]


def states_of(lab: RelayLab) -> dict[str, dict[str, object]]:
    """The latest test of each address, from ``status --json``."""
    found: dict[str, dict[str, object]] = {}
    tests = lab.status()["tests"]
    assert isinstance(tests, list)
    for test in tests:
        found[str(test["address"])] = test
    return found


def run_until_done(lab: RelayLab, addresses: list[str], rounds: int = 30) -> None:
    for _ in range(rounds):
        proc = lab.service("run", "--once")
        assert proc.returncode == 0, proc.stderr
        states = states_of(lab)
        if all(states[a]["state"] == "done" for a in addresses):
            return
        time.sleep(1)
    raise AssertionError(f"not done after {rounds} runs: {states_of(lab)}")


def test_request_answer_tests_and_reports(relaylab: RelayLab) -> None:  # noqa: F811
    lab = relaylab
    guard = socket.socket()
    guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    guard.bind((OUTSIDE_SITE, lab.port))
    guard.listen(5)
    guard.settimeout(0)
    lab.submit(lab.signed_request(
        f"Hello,\n\ntest {OPEN} {CLOSED}\ntest {DEFER}\ntest {GONE} {OUTSIDE_SITE}\n\n-- \n"
        "Alice\n"))
    answers = lab.hub.wait_for(ALICE, 1)
    answer = answers[-1]
    text = body(answer)
    assert "Undelivered" not in str(answer["Subject"]), text + lab.hub.maillog()[-3000:]
    assert answer["Subject"] == "Re: relay test: 4 of 5 addresses authorised"
    assert answer["From"] == SERVICE and answer["Auto-Submitted"] == "auto-replied"
    assert answer["In-Reply-To"] and answer["Message-ID"]
    assert f"{OPEN}" in text and "AUTHORISED (Uni Test)" in text
    assert f"{OUTSIDE_SITE}" in text and "REFUSED: outside every network" in text
    assert "DKIM signature of uni.test verified by the service" in text
    status = states_of(lab)
    assert {a: status[a]["state"] for a in (OPEN, CLOSED, DEFER, GONE)} == dict.fromkeys(
        (OPEN, CLOSED, DEFER, GONE), "queued")
    assert OUTSIDE_SITE not in status
    text_status = lab.service("status")
    assert text_status.returncode == 0 and f"refused {OUTSIDE_SITE}: outside every network" in \
        text_status.stdout

    proc = lab.service("run", "--once")
    assert proc.returncode == 0, proc.stderr
    status = states_of(lab)
    assert status[OPEN]["state"] == "done" and status[OPEN]["verdict"] == "open-relay"
    assert status[CLOSED]["state"] == "done" and status[CLOSED]["verdict"] == "closed"
    assert status[DEFER]["state"] == "queued" and status[GONE]["state"] == "queued"

    run_until_done(lab, [DEFER, GONE])
    status = states_of(lab)
    assert status[DEFER]["verdict"] == "timed-out"
    assert status[GONE]["verdict"] == "not-tested"
    # the outside address was never contacted
    try:
        guard.accept()
        contacted = True
    except BlockingIOError:
        contacted = False
    guard.close()
    assert not contacted

    reports = lab.hub.wait_for(ALICE, 1 + 4 + 2)
    open_report = by_subject(reports, f"Relay test of {OPEN}: OPEN RELAY")
    assert len(open_report) == 1
    text = body(open_report[0])
    print(text)
    assert text.startswith("VERDICT: OPEN RELAY: ")
    assert f"requested by {ALICE}" in text and "mx-open.dept.uni.test" in text
    assert "[RELAYED] plain:" in text and "Postfix:" in text and "Exim:" in text
    assert "zen.spamhaus.org" in text and "https://check.spamhaus.org/" in text
    closed = body(by_subject(reports, f"Relay test of {CLOSED}: NOT AN OPEN RELAY")[0])
    assert closed.startswith("VERDICT: NOT AN OPEN RELAY: all 38 relay attempts were refused")
    deferred = body(by_subject(reports, f"Relay test of {DEFER}: NO RELAYING SEEN")[0])
    assert "DEFERRED (4xx)" in deferred and "defer_unauth_destination" in deferred
    gone = body(by_subject(reports, f"Relay test of {GONE}: NOT TESTED")[0])
    assert "could not be reached" in gone
    assert len(by_subject(reports, "progress report")) == 2
    # the site postmaster and postmaster at the tested host got the final reports
    site = lab.hub.wait_for(SITE_POSTMASTER, 4)
    assert len(by_subject(site, "Relay test of")) == 4
    dept = lab.hub.wait_for(DEPT_POSTMASTER, 3)
    assert {str(m["Subject"]).split(":")[0] for m in dept} == {
        f"Relay test of {a}" for a in (OPEN, CLOSED, DEFER)}
    # postmaster@gone.test refused the report: logged, the others were still sent
    gone_test = states_of(lab)[GONE]
    mails = {m["recipient"]: m for m in gone_test["mails"]}  # type: ignore[union-attr]
    assert mails["postmaster@gone.test"]["state"] == "refused"
    assert mails["postmaster@gone.test"]["error"].startswith("554 5.1.2")
    assert mails[ALICE]["state"] == "sent" and mails[SITE_POSTMASTER]["state"] == "sent"
    assert BOB  # (used by the forged-request test)
