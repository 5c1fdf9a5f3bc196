"""The durable queue: requests, tests, their tries and attempt results, and the outbox.

SQLite in WAL mode in ``state_dir`` (one file, ``relaytest.sqlite``), written by the
``receive`` processes and by the one ``run`` process at the same time (``BEGIN IMMEDIATE``
transactions, a generous busy timeout). Processing is at least once: a test or an outgoing
mail is *claimed* by a process (``owner`` = host:pid, with a lease); a claim whose process is
gone or whose lease ran out is taken over. Nothing is sent twice by design: every outgoing
mail is a row with a unique key (one per request answer, progress report and final report per
recipient) created in the same transaction as the state change that calls for it, and marked
sent after the smarthost accepted it. The one window left is a crash between the smarthost's
250 and that mark; the mail is then sent again with the same Message-ID.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    message_key TEXT NOT NULL UNIQUE,
    requester TEXT NOT NULL,
    from_header TEXT NOT NULL,
    subject TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    authentication TEXT NOT NULL,
    outcome TEXT NOT NULL,
    problems TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tests (
    id INTEGER PRIMARY KEY,
    request_id INTEGER REFERENCES requests(id),
    booking_key TEXT UNIQUE,
    address TEXT NOT NULL,
    site TEXT NOT NULL,
    requester TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_try_at REAL,
    tries INTEGER NOT NULL DEFAULT 0,
    first_unreachable_at REAL,
    first_tempfail_at REAL,
    finished_at REAL,
    verdict TEXT,
    verdict_line TEXT,
    end_reason TEXT,
    owner TEXT,
    lease_until REAL,
    progress_sent_at REAL
);
CREATE INDEX IF NOT EXISTS tests_due ON tests(state, next_try_at);
CREATE TABLE IF NOT EXISTS tries (
    test_id INTEGER NOT NULL REFERENCES tests(id),
    number INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    banner TEXT NOT NULL DEFAULT '',
    mail_domain TEXT NOT NULL DEFAULT '',
    connections INTEGER NOT NULL DEFAULT 0,
    round_trips INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (test_id, number)
);
CREATE TABLE IF NOT EXISTS results (
    test_id INTEGER NOT NULL,
    try_number INTEGER NOT NULL,
    position INTEGER NOT NULL,
    attempt_id TEXT NOT NULL,
    description TEXT NOT NULL,
    outcome TEXT NOT NULL,
    mail_command TEXT NOT NULL,
    rcpt_command TEXT NOT NULL,
    reply TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (test_id, try_number, attempt_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    request_id INTEGER,
    test_id INTEGER,
    recipient TEXT NOT NULL,
    message BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    created_at REAL NOT NULL,
    next_try_at REAL NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at REAL,
    owner TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_try_at);
"""

#: Test states. ``queued``: waiting for its next try; ``running``: claimed by a worker.
QUEUED, RUNNING, DONE, CANCELLED = "queued", "running", "done", "cancelled"
#: Outbox states.
PENDING, SENDING, SENT, REFUSED, FAILED = "pending", "sending", "sent", "refused", "failed"


class StoreError(Exception):
    """The queue cannot be opened or written (the caller exits 75 / retries)."""


def this_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool:
    """Whether the process named by ``owner`` (host:pid) still runs (other hosts: assume so)."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


@dataclass
class Row:
    """A database row as attributes (sqlite3.Row keeps only item access)."""

    data: dict[str, object]

    def __getattr__(self, name: str) -> object:
        try:
            return self.data[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


class Store:
    """One connection to the queue (one per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            with self.transaction():
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                                (str(SCHEMA_VERSION),))
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the queue {path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the queue {self.path}: {exc}") from exc
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the queue {self.path}: {exc}") from exc

    def _rows(self, sql: str, *args: object) -> list[Row]:
        return [Row(dict(r)) for r in self.db.execute(sql, args).fetchall()]

    def _row(self, sql: str, *args: object) -> Row | None:
        rows = self._rows(sql, *args)
        return rows[0] if rows else None

    # -- requests --------------------------------------------------------------------------
    def request_by_key(self, key: str) -> Row | None:
        return self._row("SELECT * FROM requests WHERE message_key = ?", key)

    def request(self, request_id: int) -> Row | None:
        return self._row("SELECT * FROM requests WHERE id = ?", request_id)

    def requests(self) -> list[Row]:
        return self._rows("SELECT * FROM requests ORDER BY id")

    def add_request(self, key: str, requester: str, from_header: str, subject: str,
                    message_id: str, received_at: float, authentication: str, outcome: str,
                    problems: str) -> int:
        cursor = self.db.execute(
            "INSERT INTO requests (message_key, requester, from_header, subject, message_id, "
            "received_at, authentication, outcome, problems) VALUES (?,?,?,?,?,?,?,?,?)",
            (key, requester, from_header, subject, message_id, received_at, authentication,
             outcome, problems))
        return int(cursor.lastrowid or 0)

    def count_requests(self, requester: str, since: float) -> int:
        row = self.db.execute("SELECT count(*) FROM requests WHERE requester = ? AND "
                              "received_at >= ?", (requester, since)).fetchone()
        return int(row[0])

    def count_tests(self, addresses: list[str], since: float) -> dict[str, int]:
        counts = {}
        for address in addresses:
            row = self.db.execute("SELECT count(*) FROM tests WHERE address = ? AND "
                                  "created_at >= ? AND booking_key IS NULL",
                                  (address, since)).fetchone()
            counts[address] = int(row[0])
        return counts

    # -- tests -----------------------------------------------------------------------------
    def add_test(self, address: str, site: str, requester: str, created_at: float,
                 request_id: int | None = None, booking_key: str | None = None) -> int | None:
        """A new queued test, due now; None when the booking key exists already."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO tests (request_id, booking_key, address, site, requester, "
            "state, created_at, next_try_at) VALUES (?,?,?,?,?,?,?,?)",
            (request_id, booking_key, address, site, requester, QUEUED, created_at, created_at))
        return int(cursor.lastrowid or 0) if cursor.rowcount else None

    def test(self, test_id: int) -> Row | None:
        return self._row("SELECT * FROM tests WHERE id = ?", test_id)

    def tests(self, request_id: int | None = None) -> list[Row]:
        if request_id is None:
            return self._rows("SELECT * FROM tests ORDER BY id")
        return self._rows("SELECT * FROM tests WHERE request_id = ? ORDER BY id", request_id)

    def due_tests(self, now: float) -> list[Row]:
        return self._rows("SELECT * FROM tests WHERE state = ? AND next_try_at <= ? "
                          "ORDER BY next_try_at, id", QUEUED, now)

    def next_due(self) -> float | None:
        row = self.db.execute("SELECT min(next_try_at) FROM tests WHERE state = ?",
                              (QUEUED,)).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def claim_test(self, test_id: int, owner: str, lease_until: float) -> bool:
        with self.transaction():
            cursor = self.db.execute(
                "UPDATE tests SET state = ?, owner = ?, lease_until = ? WHERE id = ? AND "
                "state = ?", (RUNNING, owner, lease_until, test_id, QUEUED))
        return cursor.rowcount == 1

    def release_abandoned(self, now: float) -> list[int]:
        """Tests left ``running`` by a process that is gone (or past its lease): queue them
        again, due now. Their recorded tries stay; the interrupted try is played again."""
        released = []
        for row in self._rows("SELECT id, owner, lease_until FROM tests WHERE state = ?",
                              RUNNING):
            lease = row.lease_until
            expired = isinstance(lease, float | int) and lease < now
            if expired or not owner_alive(str(row.owner or "")):
                with self.transaction():
                    cursor = self.db.execute(
                        "UPDATE tests SET state = ?, owner = NULL, lease_until = NULL, "
                        "next_try_at = ? WHERE id = ? AND state = ? AND owner IS ?",
                        (QUEUED, now, row.id, RUNNING, row.owner))
                if cursor.rowcount:
                    released.append(int(str(row.id)))
        return released

    def update_test(self, test_id: int, **fields: object) -> None:
        names = ", ".join(f"{name} = ?" for name in fields)
        self.db.execute(f"UPDATE tests SET {names} WHERE id = ?", (*fields.values(), test_id))

    def record_try(self, test_id: int, number: int, started_at: float, finished_at: float,
                   kind: str, summary: str, banner: str, mail_domain: str, connections: int,
                   round_trips: int, results: list[tuple[str, str, str, str, str, str, str]]
                   ) -> None:
        """One try and its attempt results (id, description, outcome, mail, rcpt, reply,
        detail); replaces a try of the same number left by an interrupted run."""
        self.db.execute("DELETE FROM results WHERE test_id = ? AND try_number = ?",
                        (test_id, number))
        self.db.execute(
            "INSERT OR REPLACE INTO tries VALUES (?,?,?,?,?,?,?,?,?,?)",
            (test_id, number, started_at, finished_at, kind, summary, banner, mail_domain,
             connections, round_trips))
        self.db.executemany(
            "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(test_id, number, position, *result) for position, result in enumerate(results)])

    def tries(self, test_id: int) -> list[Row]:
        return self._rows("SELECT * FROM tries WHERE test_id = ? ORDER BY number", test_id)

    def results(self, test_id: int) -> list[Row]:
        """Every attempt result of every try, oldest try first."""
        return self._rows("SELECT * FROM results WHERE test_id = ? ORDER BY try_number, "
                          "position", test_id)

    def latest_results(self, test_id: int) -> list[Row]:
        """The last result of each attempt (an attempt replayed later: its last try)."""
        latest: dict[str, Row] = {}
        for row in self.results(test_id):
            latest[str(row.attempt_id)] = row
        return list(latest.values())

    def running_long(self, older_than: float) -> list[Row]:
        """Unfinished tests created before ``older_than`` that had no progress report."""
        return self._rows("SELECT * FROM tests WHERE state IN (?, ?) AND created_at <= ? AND "
                          "progress_sent_at IS NULL", QUEUED, RUNNING, older_than)

    # -- outbox ----------------------------------------------------------------------------
    def queue_mail(self, key: str, kind: str, recipient: str, message: bytes, now: float,
                   request_id: int | None = None, test_id: int | None = None) -> bool:
        """Queue one outgoing mail; False when a mail with this key exists (no duplicates)."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO outbox (key, kind, request_id, test_id, recipient, message, "
            "created_at, next_try_at) VALUES (?,?,?,?,?,?,?,?)",
            (key, kind, request_id, test_id, recipient, message, now, now))
        return cursor.rowcount == 1

    def mails(self, request_id: int | None = None, test_id: int | None = None) -> list[Row]:
        if test_id is not None:
            return self._rows("SELECT * FROM outbox WHERE test_id = ? ORDER BY id", test_id)
        if request_id is not None:
            return self._rows("SELECT * FROM outbox WHERE request_id = ? AND test_id IS NULL "
                              "ORDER BY id", request_id)
        return self._rows("SELECT * FROM outbox ORDER BY id")

    def due_mails(self, now: float, request_id: int | None = None) -> list[Row]:
        """Mails to send now: pending and due, or claimed by a process that is gone."""
        rows = self._rows("SELECT * FROM outbox WHERE (state = ? AND next_try_at <= ?) OR "
                          "state = ? ORDER BY id", PENDING, now, SENDING)
        due = []
        for row in rows:
            if request_id is not None and row.request_id != request_id:
                continue
            if row.state == SENDING:
                lease = row.lease_until
                if owner_alive(str(row.owner or "")) and isinstance(lease, float | int) \
                        and lease >= now:
                    continue
            due.append(row)
        return due

    def claim_mail(self, row: Row, owner: str, lease_until: float) -> bool:
        """Claim a mail seen by :meth:`due_mails` (compare and swap on its state and owner)."""
        with self.transaction():
            cursor = self.db.execute(
                "UPDATE outbox SET state = ?, owner = ?, lease_until = ?, tries = tries + 1 "
                "WHERE id = ? AND state = ? AND owner IS ?",
                (SENDING, owner, lease_until, row.id, row.state, row.owner))
        return cursor.rowcount == 1

    def finish_mail(self, mail_id: int, state: str, now: float, error: str = "",
                    next_try_at: float | None = None) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE outbox SET state = ?, last_error = ?, sent_at = ?, "
                "next_try_at = coalesce(?, next_try_at), owner = NULL, lease_until = NULL "
                "WHERE id = ?", (state, error, now if state == SENT else None, next_try_at,
                                 mail_id))
