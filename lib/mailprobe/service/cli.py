"""``mailprobe relaytest``: receive | run [--once] | status [--json] | cancel ID."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from mailprobe import __version__

DEFAULT_CONFIG = Path("/etc/mailprobe/relaytest.toml")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="The relay-test request service: postmasters mail a request "
        "('Subject: relay test', body 'test <address>'), the service answers at once, tests "
        "the mailers and mails the reports. See docs/mailprobe-relaytest.md.")
    parser.add_argument("-V", "--version", action="version", version=f"{prog} {__version__}")
    commands = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    receive = commands.add_parser("receive", help="read one request mail on stdin (MTA pipe); "
                                  "exit 75 on internal errors so the MTA retries")
    run = commands.add_parser("run", help="run the queue (a daemon; --once: what is due now)")
    run.add_argument("--once", action="store_true", help="process what is due now and exit")
    status = commands.add_parser("status", help="list requests and tests")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    cancel = commands.add_parser("cancel", help="cancel a queued or running test")
    cancel.add_argument("test_id", type=int, metavar="ID")
    for sub in (receive, run, status, cancel):
        sub.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                         help=f"configuration file (default {DEFAULT_CONFIG})")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "mailprobe relaytest") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.action == "receive":
        return _receive(args.config)
    from mailprobe.service.config import ConfigError, load_config
    from mailprobe.service.store import Store, StoreError

    try:
        settings = load_config(args.config)
        if args.action == "run":
            return _run(settings, args.once)
        with Store(settings.database) as store:
            if args.action == "status":
                from mailprobe.service import status

                data = status.snapshot(store)
                sys.stdout.write(json.dumps(data, indent=1) + "\n" if args.json
                                 else status.as_text(data))
                return 0
            from mailprobe.service.worker import cancel

            done, message = cancel(store, args.test_id, time.time())
            print(message)
            return 0 if done else 1
    except (ConfigError, StoreError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2


def _run(settings: object, once: bool) -> int:
    from mailprobe.service.config import Settings
    from mailprobe.service.scheduler import Busy, Runner, runner_lock

    assert isinstance(settings, Settings)
    try:
        with runner_lock(settings):
            runner = Runner(settings)
            if once:
                try:
                    runner.once()
                finally:
                    runner.close()
            else:
                runner.forever()
    except Busy as exc:
        print(f"mailprobe relaytest run: {exc}", file=sys.stderr)
        return 1
    return 0


def _receive(config: Path) -> int:
    """Exit 0 when handled, 75 on any failure (the MTA keeps the mail and retries)."""
    try:
        from mailprobe.service.config import load_config
        from mailprobe.service.receive import handle

        settings = load_config(config)
        raw = sys.stdin.buffer.read()
        return handle(settings, raw)
    except Exception as exc:  # anything at all: never lose the request
        print(f"mailprobe relaytest receive: internal error, the MTA will retry: {exc}",
              file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return 75
