"""``mailprobe relaytest run``: the queue runner (a daemon, or ``--once`` for cron and tests).

One runner at a time per state directory (a lock file). Each pass: tests left running by a
runner that died are queued again; booked tests that are due are added; due tests are claimed
and run, up to ``max_parallel`` at once (each in its own thread with its own connection to the
queue); progress reports are queued for tests older than ``progress_after``; the outbox is
sent. SIGTERM/SIGINT: no new tries are started, running ones finish, then the runner exits.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from mailprobe.service import mailer, worker
from mailprobe.service.config import Settings
from mailprobe.service.store import Store, this_owner

BOOKING_GRACE = 86400.0        # a booked date missed by less than this is still run


class Busy(Exception):
    """Another runner holds the lock of this state directory."""


@contextlib.contextmanager
def runner_lock(settings: Settings) -> Iterator[None]:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.state_dir / "run.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Busy(f"another 'mailprobe relaytest run' uses {settings.state_dir}") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log(text: str) -> None:
    print(f"mailprobe relaytest run: {text}", file=sys.stderr, flush=True)


def add_booked_tests(settings: Settings, store: Store, now: float) -> list[int]:
    """Tests for the bookings whose latest date is due (once per booking, date and address)."""
    added = []
    local_now = datetime.datetime.fromtimestamp(now)
    for booking in settings.bookings:
        latest = booking.schedule.latest(local_now)
        if latest is None or (local_now - latest).total_seconds() > BOOKING_GRACE:
            continue
        with store.transaction():
            for address in booking.addresses:
                key = f"{booking.name}:{latest.date().isoformat()}:{address}"
                test_id = store.add_test(address, booking.site, booking.requester, now,
                                         booking_key=key)
                if test_id is not None:
                    added.append(test_id)
                    _log(f"booked test #{test_id} of {address} ({booking.name}, "
                         f"{latest:%Y-%m-%d %H:%M})")
    return added


def _run_claimed(settings: Settings, test_id: int) -> None:
    with Store(settings.database) as store:
        try:
            plan = worker.run_try(settings, store, test_id)
        except Exception as exc:
            # Left "running": the next pass (or the next runner) takes it over and plays the
            # try again; nothing was recorded.
            _log(f"test #{test_id}: internal error, the try will be played again: {exc!r}")
            with contextlib.suppress(Exception), store.transaction():
                store.update_test(test_id, state="queued", owner=None, lease_until=None,
                                  next_try_at=time.time() + settings.retry_initial)
            return
        if plan is None:
            _log(f"test #{test_id}: cancelled while it ran; the try was not recorded")
        elif plan.finished:
            _log(f"test #{test_id}: finished ({plan.end_reason})")
        else:
            _log(f"test #{test_id}: {plan.why}")


class Runner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.database)
        self.pool = ThreadPoolExecutor(max_workers=settings.max_parallel,
                                       thread_name_prefix="relaytest")
        self.running: dict[int, Future[None]] = {}
        self.stopping = threading.Event()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.store.close()

    def start_due(self, now: float) -> int:
        """Claim and start due tests while slots are free; the number started."""
        self.running = {k: f for k, f in self.running.items() if not f.done()}
        started = 0
        for test in self.store.due_tests(now):
            if len(self.running) >= self.settings.max_parallel or self.stopping.is_set():
                break
            test_id = int(str(test.id))
            lease = now + self.settings.try_timeout + 600
            if test_id in self.running or not self.store.claim_test(test_id, this_owner(),
                                                                    lease):
                continue
            self.running[test_id] = self.pool.submit(_run_claimed, self.settings, test_id)
            started += 1
        return started

    def housekeeping(self, now: float) -> None:
        for test_id in self.store.release_abandoned(now):
            if test_id not in self.running:
                _log(f"test #{test_id} was left running by a runner that stopped: queued again")
        add_booked_tests(self.settings, self.store, now)

    def progress_reports(self, now: float) -> None:
        for test in self.store.running_long(now - self.settings.progress_after):
            if worker.queue_progress(self.settings, self.store, int(str(test.id)), now):
                _log(f"test #{test.id}: progress report queued")

    def once(self) -> None:
        """Everything due now (each due test gets one try), then return."""
        now = time.time()
        self.housekeeping(now)
        futures = []
        for test in self.store.due_tests(now):
            test_id = int(str(test.id))
            if self.store.claim_test(test_id, this_owner(),
                                     now + self.settings.try_timeout + 600):
                futures.append(self.pool.submit(_run_claimed, self.settings, test_id))
        for future in futures:  # the pool runs at most max_parallel at once
            future.result()
        self.progress_reports(time.time())
        mailer.deliver_due(self.store, self.settings)

    def forever(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        _log(f"started ({self.settings.max_parallel} tests at once, state in "
             f"{self.settings.state_dir})")
        while not self.stopping.is_set():
            now = time.time()
            self.housekeeping(now)
            self.start_due(now)
            self.progress_reports(now)
            mailer.deliver_due(self.store, self.settings)
            wake = now + self.settings.poll_interval
            due = self.store.next_due()
            if due is not None and not self.running:
                wake = min(wake, max(due, now + 0.5))
            self.stopping.wait(max(0.5, min(wake - time.time(), 5.0) if self.running
                                   else wake - time.time()))
        _log("stopping: waiting for the running tries")
        self.close()
