"""mailprobe relaytest: retry rules and verdicts, the durable queue, receive's exit codes,
status and cancel, bookings, the mail builder (no servers: the smarthost is a closed port)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from email import message_from_bytes
from pathlib import Path

import pytest

from lab.process import free_port
from mailprobe.service import advice, decide, hostinfo, mailer
from mailprobe.service.config import parse_config
from mailprobe.service.receive import handle
from mailprobe.service.relayseries import ALL_IDS
from mailprobe.service.scheduler import add_booked_tests
from mailprobe.service.store import PENDING, SENDING, Store

ROOT = Path(__file__).resolve().parent.parent
W = decide.Windows(retry_initial=300, retry_max=3600, unreachable_window=2 * 86400,
                   tempfail_window=12 * 3600, requeue_interval=1800)
NO_CLOCK = decide.TestClock(None, None)
T0 = 1_800_000_000.0


def every(outcome: str) -> dict[str, str]:
    return dict.fromkeys(ALL_IDS, outcome)


# --- retry rules -----------------------------------------------------------------------------

def test_unreachable_backs_off_then_times_out_after_two_days() -> None:
    plan = decide.after_try("unreachable", "connection refused", None, {}, NO_CLOCK, T0, W)
    assert not plan.finished and plan.next_try_at == T0 + 300 and plan.first_unreachable_at == T0
    clock = decide.TestClock(T0, None)
    later = decide.after_try("unreachable", "refused", None, {}, clock, T0 + 1000, W)
    assert later.next_try_at == T0 + 2000                     # the wait doubles ...
    much_later = decide.after_try("unreachable", "refused", None, {}, clock, T0 + 86400, W)
    assert much_later.next_try_at == T0 + 86400 + 3600        # ... up to retry_max
    last = decide.after_try("unreachable", "refused", None, {}, clock, T0 + 2 * 86400 - 60, W)
    assert last.next_try_at == T0 + 2 * 86400                 # never past the window
    end = decide.after_try("unreachable", "refused", None, {}, clock, T0 + 2 * 86400, W)
    assert end.finished and end.end_reason == decide.UNREACHABLE_TIMEOUT
    verdict = decide.verdict(end.end_reason, {}, "refused", W)
    assert verdict.code == decide.NOT_TESTED
    assert verdict.line == "NOT TESTED: the mailer could not be reached for 2 days (refused)"


def test_deferred_attempts_are_requeued_then_time_out_as_a_pass_that_says_so() -> None:
    latest = {**every("refused"), "plain": "tempfailed", "upper-case": "tempfailed"}
    plan = decide.after_try("played", "", "relayed", latest, NO_CLOCK, T0, W)
    assert not plan.finished and plan.next_try_at == T0 + 1800 and plan.first_tempfail_at == T0
    assert decide.to_play(latest) == ["plain", "upper-case"]
    clock = decide.TestClock(None, T0)
    end = decide.after_try("played", "", "relayed", latest, clock, T0 + 12 * 3600, W)
    assert end.finished and end.end_reason == decide.TEMPFAIL_TIMEOUT
    verdict = decide.verdict(end.end_reason, latest, end.why, W)
    assert verdict.code == decide.TIMED_OUT and verdict.title == "NO RELAYING SEEN (TIMED OUT)"
    assert "2 were only ever deferred (4xx) until the test timed out after 12 hours" in \
        verdict.line and "a 4xx is not a proper refusal" in verdict.line


def test_a_relay_ends_the_test_at_once() -> None:
    latest = {**every("tempfailed"), "sender-null": "relayed"}
    plan = decide.after_try("played", "", "relayed", latest, NO_CLOCK, T0, W)
    assert plan.finished and plan.end_reason == decide.RELAY_PROVEN
    verdict = decide.verdict(plan.end_reason, latest, plan.why, W)
    assert verdict.line == (f"OPEN RELAY: 1 of {len(ALL_IDS)} relay attempts were accepted "
                            "(sender-null)")


def test_every_attempt_refused_is_closed() -> None:
    plan = decide.after_try("played", "", "relayed", every("refused"), NO_CLOCK, T0, W)
    assert plan.finished and plan.end_reason == decide.COMPLETE
    assert decide.verdict(plan.end_reason, every("refused"), "", W).line == \
        f"NOT AN OPEN RELAY: all {len(ALL_IDS)} relay attempts were refused"


@pytest.mark.parametrize(("kind", "control", "finished", "reason"), [
    ("refused", None, True, decide.INCONCLUSIVE),           # 5xx banner
    ("no-domain", None, True, decide.INCONCLUSIVE),
    ("deferred", None, False, ""),                          # 4xx banner: requeued
    ("played", "refused", True, decide.INCONCLUSIVE),       # control refused
    ("played", "tempfailed", False, ""),                    # even postmaster deferred
    ("played", "error", False, ""),                         # control not played: retried
])
def test_other_tries(kind: str, control: str | None, finished: bool, reason: str) -> None:
    plan = decide.after_try(kind, "why", control, every("refused"), NO_CLOCK, T0, W)
    assert plan.finished is finished and plan.end_reason == reason
    if finished:
        assert decide.verdict(plan.end_reason, {}, plan.why, W).code == decide.UNDECIDED


def test_attempts_lost_mid_series_are_played_again() -> None:
    latest = {**every("refused"), "helo-only": "error", "helo-localhost": "not run"}
    plan = decide.after_try("played", "", "relayed", latest, NO_CLOCK, T0, W)
    assert not plan.finished and plan.first_unreachable_at == T0
    assert decide.to_play(latest) == ["helo-only", "helo-localhost"]
    end = decide.after_try("played", "", "relayed", latest, decide.TestClock(T0, None),
                           T0 + 3 * 86400, W)
    assert decide.verdict(end.end_reason, latest, end.why, W).line.startswith(
        f"INCONCLUSIVE: only {len(ALL_IDS) - 2} of {len(ALL_IDS)} attempts could be played")


def test_a_tarpit_is_never_a_refusal() -> None:
    """Attempts never answered (a tarpitting relay) are played again, and never end the test
    as NOT AN OPEN RELAY (issue 12: a timeout was counted as a refusal)."""
    latest = {**every("refused"), "plain": "timeout", "percent-hack-domain": "timeout"}
    plan = decide.after_try("played", "", "relayed", latest, NO_CLOCK, T0, W)
    assert not plan.finished
    assert set(decide.to_play(latest)) == {"plain", "percent-hack-domain"}
    end = decide.after_try("played", "", "relayed", latest, decide.TestClock(T0, None),
                           T0 + 3 * 86400, W)
    line = decide.verdict(end.end_reason, latest, end.why, W).line
    assert line.startswith("INCONCLUSIVE: ") and "NOT AN OPEN RELAY" not in line


def test_attempts_that_do_not_apply_are_not_called_refused() -> None:
    latest = {**every("refused"), "xclient-loopback": "not applicable"}
    plan = decide.after_try("played", "", "relayed", latest, NO_CLOCK, T0, W)
    assert plan.finished
    assert decide.verdict(plan.end_reason, latest, plan.why, W).line == (
        f"NOT AN OPEN RELAY: all {len(ALL_IDS) - 1} relay attempts that apply were refused "
        "(1 do not apply to this mailer: xclient-loopback)")


# --- advice, host postmaster -----------------------------------------------------------------

@pytest.mark.parametrize(("attempt", "group"), [
    ("plain", "plain"), ("sender-null", "sender"), ("percent-hack-ip", "routing"),
    ("quoted-local-part", "routing"), ("bang-path-domain", "routing"), ("helo-localhost", "helo"),
    ("no-greeting", "plain"), ("upper-case", "plain"), ("source-route-ip", "routing"),
])
def test_advice_groups(attempt: str, group: str) -> None:
    assert advice.group_of(attempt) == group


@pytest.mark.parametrize(("address", "name", "postmaster"), [
    ("192.0.2.25", "mx1.example.ac.uk", "postmaster@example.ac.uk"),
    ("192.0.2.25", "mx1.cs.example.ac.uk", "postmaster@cs.example.ac.uk"),
    ("192.0.2.25", "example.ac.uk", "postmaster@example.ac.uk"),     # parent is a suffix
    ("192.0.2.25", "", "postmaster@[192.0.2.25]"),
    ("2001:db8::25", "", "postmaster@[IPv6:2001:db8::25]"),
])
def test_postmaster_of_the_tested_host(address: str, name: str, postmaster: str) -> None:
    assert hostinfo.postmaster_of(address, name) == postmaster


def test_recipients_are_distinct_and_case_blind() -> None:
    assert hostinfo.recipients("Alice@uni.test", "postmaster@uni.test", "alice@UNI.test", "") \
        == ["Alice@uni.test", "postmaster@uni.test"]


# --- configuration for the rest --------------------------------------------------------------

def settings_for(tmp_path: Path, smarthost_port: int, **service: object):  # type: ignore[no-untyped-def]
    return parse_config({
        "service": {"address": "relaytest@relaytest.test",
                    "smarthost": f"127.0.0.1:{smarthost_port}", "state_dir": str(tmp_path / "q"),
                    "authserv_id": "mx.rt.test", **service},
        "limits": {"requests_per_requester": 2, "tests_per_address": 5},
        "site": [{"name": "Uni", "networks": ["192.0.2.0/24"], "requesters": ["*@uni.test"],
                  "postmaster": "postmaster@uni.test"}],
    })


def request(body: str, number: int = 1, authenticated: bool = True) -> bytes:
    result = ("Authentication-Results: mx.rt.test; dkim=pass header.d=uni.test\r\n"
              if authenticated else "")
    return (f"{result}From: alice@uni.test\r\nTo: relaytest@relaytest.test\r\n"
            f"Subject: relay test\r\nMessage-ID: <r{number}@uni.test>\r\n\r\n{body}").encode()


# --- the mail builder ------------------------------------------------------------------------

def test_built_mail_headers_and_stable_message_id(tmp_path: Path) -> None:
    config = settings_for(tmp_path, 1, html=True)
    out = mailer.Outgoing("report:test:7:alice@uni.test", "alice@uni.test", "Relay test",
                          "VERDICT: x\n", "<r1@uni.test>")
    first, second = (message_from_bytes(mailer.build(config, out)) for _ in range(2))
    assert first["Message-ID"] == second["Message-ID"] == mailer.message_id(out.key,
                                                                             "relaytest.test")
    assert first["From"] == "relaytest@relaytest.test" and first["To"] == "alice@uni.test"
    assert first["Auto-Submitted"] == "auto-replied" and first["In-Reply-To"] == "<r1@uni.test>"
    assert first.get_content_type() == "multipart/alternative"
    html_part = first.get_payload(1)
    assert isinstance(html_part, type(first)) and html_part.get_content_type() == "text/html"


# --- the queue -------------------------------------------------------------------------------

def test_store_claims_and_takes_over_from_dead_owners(tmp_path: Path) -> None:
    with Store(tmp_path / "q.sqlite") as store:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with store.transaction():
            test_id = store.add_test("192.0.2.25", "Uni", "alice@uni.test", T0)
            assert test_id is not None
            assert store.add_test("192.0.2.25", "Uni", "a", T0, booking_key="b:1") is not None
            assert store.add_test("192.0.2.25", "Uni", "a", T0, booking_key="b:1") is None
        assert store.claim_test(test_id, "somewhere:1", T0 + 10)
        assert not store.claim_test(test_id, "somewhere:2", T0 + 10)  # claimed once only
        dead = f"{os.uname().nodename}:{2 ** 22 + 12345}"
        with store.transaction():
            store.update_test(test_id, owner=dead, lease_until=T0 + 10 ** 9)
        assert store.release_abandoned(T0) == [test_id]
        assert store.test(test_id).state == "queued"  # type: ignore[union-attr]
        with store.transaction():
            assert store.queue_mail("k1", "report", "a@uni.test", b"x", T0, test_id=test_id)
            assert not store.queue_mail("k1", "report", "a@uni.test", b"x", T0, test_id=test_id)
        row = store.due_mails(T0)[0]
        assert store.claim_mail(row, f"{os.uname().nodename}:{os.getpid()}", T0 + 300)
        assert not store.claim_mail(row, "other:1", T0 + 300)         # compare and swap
        assert store.due_mails(T0) == []       # claimed by a live process with a lease
        with store.transaction():
            store.db.execute("UPDATE outbox SET owner = ? WHERE id = ?", (dead, row.id))
        stale = store.due_mails(T0)
        assert [r.state for r in stale] == [SENDING]                   # its owner is gone
        assert store.claim_mail(stale[0], "me:1", T0 + 300)


def test_booked_tests_are_added_once_per_date(tmp_path: Path) -> None:
    config = parse_config({
        "service": {"address": "r@rt.test", "smarthost": "127.0.0.1", "state_dir": "/x"},
        "site": [{"name": "Uni", "networks": ["192.0.2.0/24"], "requesters": ["*@uni.test"],
                  "postmaster": "postmaster@uni.test"}],
        "booking": [{"name": "q", "site": "Uni", "addresses": ["192.0.2.25", "192.0.2.26"],
                     "schedule": "third thursday of february, may, august, november"}]})
    on_the_day = datetime.datetime(2026, 5, 21, 10, 0).timestamp()
    with Store(tmp_path / "q.sqlite") as store:
        assert add_booked_tests(config, store, datetime.datetime(2026, 5, 21, 8).timestamp()) \
            == []                                                      # before 09:00
        added = add_booked_tests(config, store, on_the_day)
        assert len(added) == 2
        assert add_booked_tests(config, store, on_the_day + 3600) == []
        assert add_booked_tests(config, store, on_the_day + 2 * 86400) == []   # missed by 2 days
        keys = [t.booking_key for t in store.tests()]
        assert keys == ["q:2026-05-21:192.0.2.25", "q:2026-05-21:192.0.2.26"]
        assert {t.requester for t in store.tests()} == {"postmaster@uni.test"}


# --- receive ---------------------------------------------------------------------------------

def test_receive_stores_answers_and_dedups(tmp_path: Path) -> None:
    config = settings_for(tmp_path, free_port())      # nothing listens: the answer waits
    assert handle(config, request("test 192.0.2.25 198.51.100.1\n")) == 0
    assert handle(config, request("test 192.0.2.25 198.51.100.1\n")) == 0   # MTA retry
    with Store(config.database) as store:
        requests = store.requests()
        assert len(requests) == 1 and requests[0].outcome == "partly authorised"
        assert [t.address for t in store.tests()] == ["192.0.2.25"]
        answers = store.mails(request_id=int(str(requests[0].id)))
        assert len(answers) == 1 and answers[0].state == PENDING
        assert "Connection refused" in str(answers[0].last_error)
        text = message_from_bytes(bytes(answers[0].message)).get_payload(decode=True).decode()  # type: ignore[arg-type]
        assert "192.0.2.25                              AUTHORISED (Uni), test #1 is queued" \
            in text
        assert "198.51.100.1                            REFUSED: outside every network" in text


def test_receive_rate_limits_requesters(tmp_path: Path) -> None:
    config = settings_for(tmp_path, free_port())
    for number in range(1, 4):
        assert handle(config, request("test 192.0.2.25\n", number)) == 0
    with Store(config.database) as store:
        assert [r.outcome for r in store.requests()] == ["authorised", "authorised", "refused"]
        details = json.loads(str(store.requests()[2].problems))
        assert "rate limit: alice@uni.test sent 2 requests" in details["decisions"][0][3]


def run_receive(config: Path, raw: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "mailprobe", "relaytest", "receive",
                           "--config", str(config)], input=raw, capture_output=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT / "lib"),
                                           **env})


def write_config(tmp_path: Path, state_dir: Path) -> Path:
    config = tmp_path / "rt.toml"
    config.write_text(f"""
[service]
address = "relaytest@relaytest.test"
smarthost = "127.0.0.1:{free_port()}"
state_dir = "{state_dir}"
authserv_id = "mx.rt.test"
[[site]]
name = "Uni"
networks = ["192.0.2.0/24"]
requesters = ["*@uni.test"]
postmaster = "postmaster@uni.test"
""")
    return config


def test_receive_exits_75_when_it_cannot_store(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    proc = run_receive(write_config(tmp_path, blocker / "state"), request("test 192.0.2.25\n"))
    assert proc.returncode == 75
    assert b"internal error, the MTA will retry" in proc.stderr and proc.stdout == b""


def test_receive_exits_75_on_a_bad_configuration(tmp_path: Path) -> None:
    config = tmp_path / "rt.toml"
    config.write_text("[service]\n")
    assert run_receive(config, request("test 192.0.2.25\n")).returncode == 75


def test_an_injected_failure_before_commit_stores_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "state")
    proc = run_receive(config, request("test 192.0.2.25\n"),
                       MAILPROBE_RELAYTEST_FAULT="receive:before-commit=fail")
    assert proc.returncode == 75 and b"injected fault" in proc.stderr
    status = subprocess.run([sys.executable, "-m", "mailprobe", "relaytest", "status",
                             "--config", str(config)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "lib")})
    assert status.returncode == 0 and status.stdout == "no requests and no tests\n"
    assert run_receive(config, request("test 192.0.2.25\n")).returncode == 0


def test_status_and_cancel(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "state")
    assert run_receive(config, request("test 192.0.2.25 192.0.2.26\n")).returncode == 0

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mailprobe", "relaytest", *args,
                               "--config", str(config)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "lib")})

    text = cli("status").stdout
    assert "request #1" in text and "alice@uni.test  authorised  answer pending" in text
    assert "test #1  192.0.2.25  Uni  queued  tries 0  (request #1, for alice@uni.test)" in text
    assert "next try" in text
    cancelled = cli("cancel", "2")
    assert cancelled.returncode == 0 and cancelled.stdout == "test #2 (192.0.2.26) cancelled\n"
    again = cli("cancel", "2")
    assert again.returncode == 1 and "already cancelled" in again.stdout
    assert cli("cancel", "9").stdout == "no test #9\n"
    data = json.loads(cli("status", "--json").stdout)
    assert [(t["id"], t["state"]) for t in data["tests"]] == [(1, "queued"), (2, "cancelled")]
    assert data["tests"][1]["verdict_line"].startswith("CANCELLED")
    help_text = subprocess.run([sys.executable, "-m", "mailprobe", "--help"],
                               capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "lib")}).stdout
    assert "relaytest" in help_text


# --- contrib ---------------------------------------------------------------------------------

CONTRIB = ROOT / "contrib"


def test_the_request_script_sends_a_request_the_service_reads(tmp_path: Path) -> None:
    from mailprobe.service.request import parse_request

    sink = tmp_path / "sent"
    fake = tmp_path / "sendmail"
    fake.write_text(f'#!/bin/sh\necho "$@" > {sink}.argv\ncat > {sink}\n')
    fake.chmod(0o755)
    proc = subprocess.run([str(CONTRIB / "relaytest" / "send-request"),
                           "relaytest@relaytest.example.org", "192.0.2.25", "2001:db8::25"],
                          env={**os.environ, "SENDMAIL": str(fake)}, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert sink.with_suffix(".argv").read_text().split() == [
        "-oi", "--", "relaytest@relaytest.example.org"]
    parsed = parse_request(b"From: pm@example.ac.uk\n" + sink.read_bytes())
    assert parsed.usable and parsed.addresses == ["192.0.2.25", "2001:db8::25"]


def test_the_booked_schedule_in_cron_and_the_systemd_timer() -> None:
    line = next(x for x in (CONTRIB / "relaytest" / "crontab").read_text().splitlines()
                if x and not x.startswith("#"))
    dom, months, dow = line.split()[2:5]
    assert (dom, months, dow) == ("15-21", "2,5,8,11", "*")
    assert '[ "$(date +\\%u)" = 4 ]' in line       # cron ORs dom and dow: test the weekday
    timer = (CONTRIB / "systemd" / "mailprobe-relaytest-request.timer").read_text()
    assert "OnCalendar=Thu *-02,05,08,11-15..21 09:00:00" in timer
    from mailprobe.service.schedule import Schedule
    janet = Schedule.parse("third thursday of february, may, august, november")
    for year in range(2026, 2036):                  # "15th to 21st and a Thursday" is the same
        for month in (2, 5, 8, 11):
            day = janet.day_in(year, month)
            assert day is not None and 15 <= day.day <= 21 and day.weekday() == 3
    service = (CONTRIB / "systemd" / "mailprobe-relaytest.service").read_text()
    assert "ExecStart=/opt/mailprobe/bin/mailprobe relaytest run --config " in service


def test_systemd_reads_the_timer_as_the_third_thursdays() -> None:
    import shutil

    from mailprobe.service.schedule import Schedule
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    proc = subprocess.run(["systemd-analyze", "calendar", "--iterations=8",
                           "Thu *-02,05,08,11-15..21 09:00:00"], capture_output=True, text=True,
                          env={**os.environ, "TZ": "UTC", "LC_ALL": "C"})
    dates = [line.split(": ", 1)[1].split()[1] for line in proc.stdout.splitlines()
             if "elapse:" in line or "Iter." in line]
    janet = Schedule.parse("third thursday of february, may, august, november")
    now = datetime.datetime.now()
    expected = []
    for _ in range(8):
        following = janet.next(now)
        assert following is not None
        expected.append(following.date().isoformat())
        now = following
    assert dates == expected
