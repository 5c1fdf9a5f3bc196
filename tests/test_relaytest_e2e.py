"""mailprobe relaytest end to end through a real Postfix: requests are mailed to the hub,
which pipes them to ``mailprobe relaytest receive``; the answers and reports come back through
the hub into Maildirs; ``run --once`` tests lab Postfix mailers from 127.0.0.2."""

from __future__ import annotations

import itertools
import re
import socket
import time
from email.message import Message

import pytest

from mailprobe.probes.relay.catalogue import CATALOGUE
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
    # the closed Postfix offers no XCLIENT, XFORWARD or AUTH and has no PTR-name trust: those
    # attempts do not apply to it, and the verdict says so instead of calling them refused
    assert re.match(r"VERDICT: NOT AN OPEN RELAY: all (\d+) relay attempts that apply were "
                    r"refused \((\d+) do not apply to this mailer: ", closed), closed[:300]
    applied, inapplicable = map(int, re.match(r"\D*(\d+)\D*(\d+)", closed).groups())
    assert applied + inapplicable == len(CATALOGUE) and inapplicable > 0
    deferred = body(by_subject(reports, f"Relay test of {DEFER}: NO RELAYING SEEN")[0])
    assert "DEFERRED (4xx)" in deferred and "defer_unauth_destination" in deferred
    assert "The mailer relays for outside clients" not in deferred    # the control is no finding
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


def new_mails(lab: RelayLab, address: str, before: int, count: int) -> list[Message]:
    return lab.hub.wait_for(address, before + count)[before:]


def message_id_of(raw: bytes) -> str:
    from email import message_from_bytes
    return str(message_from_bytes(raw)["Message-ID"])


def test_forged_and_unauthorised_requests_are_refused(relaylab: RelayLab) -> None:  # noqa: F811
    lab = relaylab
    lab.fresh_state()
    from tests.fixtures.relaytest import request_mail
    before = len(lab.hub.messages(ALICE))
    # 1. From: alice, no signature at all (anyone can write this From:)
    lab.submit(request_mail(f"test {CLOSED}\n"))
    # 2. signed, but by other.test: a valid signature that is not aligned with From: uni.test
    lab.submit(lab.key.sign(request_mail(f"test {CLOSED}\n"), "other.test"))
    # 3. signed by uni.test, but the body was changed after signing
    tampered = lab.signed_request(f"test {CLOSED}\n").replace(
        f"test {CLOSED}".encode(), f"test {OPEN}".encode())
    lab.submit(tampered)
    # 4. not understood
    lab.submit(lab.signed_request("Please test my mail server, thanks!\n", subject="hello"))
    answers = new_mails(lab, ALICE, before, 4)
    texts = {str(m["In-Reply-To"]): (str(m["Subject"]), body(m)) for m in answers}
    assert len(texts) == 4
    subjects = sorted(s for s, _ in texts.values())
    assert subjects == ["Re: relay test: not authorised"] * 3 + [
        "Re: relay test: request not understood"]
    joined = "\n".join(t for _, t in texts.values())
    assert "no DKIM signature of uni.test and no trusted Authentication-Results header" in joined
    assert "the valid signature of other.test is not aligned with uni.test" in joined
    assert "the signature of uni.test does not verify" in joined
    assert "the subject is 'hello', not 'relay test'" in joined
    assert "test <mailer-address> [<mailer-address> ...]" in joined
    # 5. bob of other.test may not have Uni Test's mailers tested; 127.0.0.99 is nobody's
    bob_before = len(lab.hub.messages(BOB))
    lab.submit(lab.signed_request(f"test {OPEN} {OUTSIDE_SITE}\n", sender=BOB), sender=BOB)
    bob = new_mails(lab, BOB, bob_before, 1)[0]
    assert bob["Subject"] == "Re: relay test: not authorised"
    assert f"{BOB} may not request tests of Uni Test's mailers" in body(bob)
    assert "outside every network this service tests; it was not touched" in body(bob)
    # nothing was queued, and status says why
    data = lab.status()
    assert data["tests"] == []
    outcomes = sorted(str(r["outcome"]) for r in data["requests"])  # type: ignore[union-attr]
    assert outcomes == ["refused"] * 4 + ["unparsable"]
    # 6. an auto-reply to the service is neither answered nor stored
    lab.submit(request_mail(f"test {CLOSED}\n", headers="Auto-Submitted: auto-replied\r\n"))
    deadline = time.monotonic() + 15
    while "Auto-Submitted: auto-replied" not in lab.hub.maillog() and \
            time.monotonic() < deadline:
        if lab.hub.queue_empty() and len(lab.status()["requests"]) == 5:  # type: ignore[arg-type]
            break
        time.sleep(0.2)
    assert len(lab.status()["requests"]) == 5  # type: ignore[arg-type]


def test_a_crash_in_receive_loses_nothing(relaylab: RelayLab) -> None:  # noqa: F811
    """receive fails before it stores (exit 75), then is killed after it stored but before
    it answered: Postfix delivers again each time; one request, one answer each."""
    lab = relaylab
    lab.fresh_state()
    for fault in ("receive:before-commit=fail", "receive:after-commit=kill"):
        lab.fault_file.write_text(fault)
        before = len(lab.hub.messages(ALICE))
        raw = lab.signed_request(f"test {CLOSED}\n")
        lab.submit(raw)
        answer = lab.hub.wait_for(ALICE, before + 1, flush_every=3)[before]
        assert answer["In-Reply-To"] == message_id_of(raw)
        assert answer["Subject"] == "Re: relay test: authorised"
        time.sleep(1.5)
        assert len(lab.hub.messages(ALICE)) == before + 1
        lab.fault_file.write_text("")
    log = lab.hub.maillog()
    assert "status=deferred" in log and "injected fault at receive:before-commit" in log
    data = lab.status()
    requests = data["requests"]
    assert isinstance(requests, list) and len(requests) == 2
    assert [r["outcome"] for r in requests] == ["authorised", "authorised"]
    assert [len(r["tests"]) for r in requests] == [1, 1]
    assert all(r["answer"][0]["state"] == "sent" for r in requests)


def test_a_restart_in_the_middle_of_run_repeats_the_try_and_reports_once(
        relaylab: RelayLab) -> None:  # noqa: F811
    lab = relaylab
    lab.fresh_state()
    for fault in ("run:after-play=kill", "run:after-record=kill"):
        alice, site = len(lab.hub.messages(ALICE)), len(lab.hub.messages(SITE_POSTMASTER))
        lab.submit(lab.signed_request(f"test {CLOSED}\n"))
        new_mails(lab, ALICE, alice, 1)                          # the answer
        crashed = lab.service("run", "--once", env={"MAILPROBE_RELAYTEST_FAULT": fault})
        assert crashed.returncode == -9, crashed.stderr
        test = states_of(lab)[CLOSED]
        if fault.startswith("run:after-play"):
            # killed after playing, before recording: nothing recorded, left "running"
            assert test["state"] == "running" and test["tries"] == 0
        else:
            # killed after recording: the test is done, its reports not yet sent
            assert test["state"] == "done" and test["tries"] == 1
            assert {m["state"] for m in test["mails"]} == {"pending"}  # type: ignore[union-attr]
        status = lab.service("status")
        assert f"test #{test['id']}  {CLOSED}" in status.stdout
        proc = lab.service("run", "--once")
        assert proc.returncode == 0, proc.stderr
        test = states_of(lab)[CLOSED]
        assert test["state"] == "done" and test["tries"] == 1
        assert test["verdict"] == "closed"
        reports = new_mails(lab, ALICE, alice + 1, 1)
        assert reports[0]["Subject"] == f"Relay test of {CLOSED}: NOT AN OPEN RELAY"
        new_mails(lab, SITE_POSTMASTER, site, 1)
        proc = lab.service("run", "--once")                    # nothing left to do
        time.sleep(1.5)
        assert len(lab.hub.messages(ALICE)) == alice + 2
        assert len(lab.hub.messages(SITE_POSTMASTER)) == site + 1


def test_the_daemon_runs_the_queue_and_stops_on_sigterm(relaylab: RelayLab) -> None:  # noqa: F811
    import signal
    import subprocess

    lab = relaylab
    lab.fresh_state()
    alice = len(lab.hub.messages(ALICE))
    daemon = subprocess.Popen(lab.command("run"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              **lab.as_user())  # type: ignore[call-overload]
    try:
        assert daemon.stderr is not None
        assert "started" in daemon.stderr.readline()             # it holds the lock now
        second = lab.service("run", "--once")
        assert second.returncode == 1 and "another 'mailprobe relaytest run'" in second.stderr
        lab.submit(lab.signed_request(f"test {OPEN}\n"))
        mails = new_mails(lab, ALICE, alice, 2)
        assert mails[1]["Subject"] == f"Relay test of {OPEN}: OPEN RELAY"
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert "stopping" in err


def test_a_booked_test_runs_once_on_its_date(relaylab: RelayLab) -> None:  # noqa: F811
    import datetime

    from mailprobe.service.schedule import MONTHS, WEEKDAYS

    lab = relaylab
    now = datetime.datetime.now() - datetime.timedelta(minutes=1)
    ordinal = ["first", "second", "third", "fourth", "fifth"][(now.day - 1) // 7]
    schedule = (f"{ordinal} {WEEKDAYS[now.weekday()]} of {MONTHS[now.month - 1]} "
                f"at {now:%H:%M}")
    lab.fresh_state(extra=f"""
[[booking]]
name = "quarterly"
site = "Uni Test"
addresses = ["{CLOSED}"]
schedule = "{schedule}"
""")
    site = len(lab.hub.messages(SITE_POSTMASTER))
    for _ in range(2):
        proc = lab.service("run", "--once")
        assert proc.returncode == 0, proc.stderr
    tests = lab.status()["tests"]
    assert isinstance(tests, list) and len(tests) == 1
    assert str(tests[0]["booking"]).startswith(f"quarterly:{now:%Y-%m-%d}:{CLOSED}")
    report = new_mails(lab, SITE_POSTMASTER, site, 1)[0]
    assert report["Subject"] == f"Relay test of {CLOSED}: NOT AN OPEN RELAY"
    assert report["Auto-Submitted"] == "auto-generated"
    assert "booked test 'quarterly' on behalf of postmaster@uni.test" in body(report)


def test_an_ipv6_mailer(relaylab: RelayLab) -> None:  # noqa: F811
    from tests.fixtures.relaytest import CLOSED6
    lab = relaylab
    if CLOSED6 not in lab.mailers:
        pytest.skip("no IPv6 on this machine")
    lab.fresh_state()
    alice = len(lab.hub.messages(ALICE))
    lab.submit(lab.signed_request("test 0:0:0:0:0:0:0:1\n"))
    answer = new_mails(lab, ALICE, alice, 1)[0]
    assert answer["Subject"] == "Re: relay test: authorised" and "::1 " in body(answer)
    assert lab.service("run", "--once").returncode == 0
    report = new_mails(lab, ALICE, alice + 1, 1)[0]
    assert report["Subject"] == "Relay test of ::1: NOT AN OPEN RELAY"
    text = body(report)
    assert "RCPT TO:<relaytest%example.net@[IPv6:::1]>" in text
    assert "postmaster@[IPv6:::1]" in text                 # no PTR name: the address literal


def test_max_parallel_bounds_the_tries_running_at_once(relaylab: RelayLab) -> None:  # noqa: F811
    lab = relaylab
    lab.fresh_state(extra_service="max_parallel = 1")
    alice = len(lab.hub.messages(ALICE))
    lab.submit(lab.signed_request(f"test {OPEN} {CLOSED} {DEFER}\n"))
    new_mails(lab, ALICE, alice, 1)
    assert lab.service("run", "--once").returncode == 0
    tests = lab.status()["tests"]
    assert isinstance(tests, list) and len(tests) == 3
    spans = sorted((t["history"][0]["started_at"], t["history"][0]["finished_at"])
                   for t in tests)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
