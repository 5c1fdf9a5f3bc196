"""mailprobe-cron: run the audits for a list of mailers from cron and mail the postmaster when a
state gets worse (a regression) or comes back to OK (a recovery), never otherwise.

For sites without Icinga. The mailers and the mail settings live in a TOML file (see
contrib/cron/mailprobe-cron.toml); the last state of every (mailer, check) is kept in a JSON state
file (written atomically, one run at a time under a lock). By default the checks run in this
process through the audit engine (:mod:`mailprobe.cronengine`), each check whose options the
engine honours the plugin's way; the others (and every check with ``engine = "process"``) run as
the plugin does under Icinga: a fresh ``python`` process, its exit code is the state.

Severity order (worse to the right): OK < WARNING < UNKNOWN < CRITICAL, as Icinga sorts them.
A first run with no previous state counts as coming from OK: a mailer that is already an open
relay is reported at once. WARNING -> OK and CRITICAL -> OK are recoveries; CRITICAL -> WARNING
is an improvement and is only recorded.

Usage::

    python -m mailprobe.cron -c /etc/mailprobe/cron.toml [--checks dnsbl,spf_mx] [--dry-run]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import email.utils
import fcntl
import json
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import TYPE_CHECKING

from mailprobe import __version__
from mailprobe.tomlfile import read_toml

if TYPE_CHECKING:
    from mailprobe.cronengine import EngineJob

CHECKS = ("open_relay", "dnsbl", "banner_rdns", "spf_mx")
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
SEVERITY = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STATE_VERSION = 1

#: Headers up to RFC 5322's 998 characters are not folded (a subject stays on one line).
MAIL_POLICY = default_policy.clone(max_line_length=998)

#: Runs one plugin in a fresh interpreter: ``python -c RUNNER CHECK [plugin options]``.
RUNNER = ("import sys, importlib; name = sys.argv.pop(1); "
          "importlib.import_module('mailprobe.checks.' + name).main()")


class ConfigError(Exception):
    """The configuration file is missing, unreadable or wrong."""


# --- configuration -------------------------------------------------------------------------------

@dataclass
class Mailer:
    """One mail server to audit and whom to tell."""

    name: str
    postmaster: str
    address: str = ""                 # -H (default: name)
    mail_domain: str = ""
    port: int | None = None
    source_address: str = ""
    nameserver: list[str] = field(default_factory=list)
    outbound_address: str = ""        # the address DNSBLs see (NAT), default: address
    checks: tuple[str, ...] = CHECKS
    args: dict[str, list[str]] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.address or self.name


@dataclass
class Settings:
    mailers: list[Mailer]
    state_file: Path
    mail_from: str
    smtp_host: str = "localhost"
    smtp_port: int = 25
    sendmail: str = ""                # path of a sendmail binary: use it instead of SMTP
    python: str = sys.executable
    check_timeout: float = 600.0      # kill a plugin that outlives this (it has its own -t)
    jobs: int = 4
    defaults: dict[str, list[str]] = field(default_factory=dict)
    engine: str = "in-process"        # or "process": every check in a plugin process
    engine_jobs: int = 32             # mailers audited at once in-process


def _str_list(value: object, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return [str(v) for v in value]
    raise ConfigError(f"{what}: expected a string or a list of strings")


def _args_table(table: object, what: str) -> dict[str, list[str]]:
    if not isinstance(table, dict):
        raise ConfigError(f"{what}: expected a table of check = [arguments]")
    unknown = set(table) - set(CHECKS)
    if unknown:
        raise ConfigError(f"{what}: unknown check(s) {', '.join(sorted(unknown))}")
    return {check: _str_list(value, f"{what}.{check}") for check, value in table.items()}


def _checks(value: object, what: str) -> tuple[str, ...]:
    checks = tuple(_str_list(value, what))
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ConfigError(f"{what}: unknown check(s) {', '.join(unknown)} "
                          f"(known: {', '.join(CHECKS)})")
    return checks


def parse_config(data: dict[str, object], default_from: str | None = None) -> Settings:
    """Settings from the parsed TOML document."""
    known_top = {"state_file", "from", "smtp_host", "smtp_port", "sendmail", "python",
                 "check_timeout", "jobs", "checks", "defaults", "mailer", "engine",
                 "engine_jobs"}
    unknown = set(data) - known_top
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    default_checks = _checks(data.get("checks", list(CHECKS)), "checks")
    raw_mailers = data.get("mailer", [])
    if not isinstance(raw_mailers, list) or not raw_mailers:
        raise ConfigError("no [[mailer]] in the configuration")
    mailers = []
    known_mailer = {"name", "postmaster", "address", "mail_domain", "port", "source_address",
                    "nameserver", "outbound_address", "checks", "args"}
    for number, raw in enumerate(raw_mailers, 1):
        what = f"mailer #{number}"
        if not isinstance(raw, dict) or "name" not in raw or "postmaster" not in raw:
            raise ConfigError(f"{what}: needs at least name and postmaster")
        unknown = set(raw) - known_mailer
        if unknown:
            raise ConfigError(f"{what}: unknown setting(s): {', '.join(sorted(unknown))}")
        mailers.append(Mailer(
            name=str(raw["name"]), postmaster=str(raw["postmaster"]),
            address=str(raw.get("address", "")), mail_domain=str(raw.get("mail_domain", "")),
            port=int(raw["port"]) if "port" in raw else None,
            source_address=str(raw.get("source_address", "")),
            nameserver=_str_list(raw.get("nameserver", []), f"{what}.nameserver"),
            outbound_address=str(raw.get("outbound_address", "")),
            checks=_checks(raw["checks"], f"{what}.checks") if "checks" in raw
            else default_checks,
            args=_args_table(raw.get("args", {}), f"{what}.args"),
        ))
    names = [m.name for m in mailers]
    if len(set(names)) != len(names):
        raise ConfigError("two mailers with the same name")
    if "state_file" not in data:
        raise ConfigError("state_file is not set")
    engine = str(data.get("engine", "in-process"))
    if engine not in ("in-process", "process"):
        raise ConfigError(f"engine {engine!r}: give \"in-process\" or \"process\"")
    return Settings(
        mailers=mailers,
        state_file=Path(str(data["state_file"])),
        mail_from=str(data.get("from") or default_from or f"mailprobe@{socket.gethostname()}"),
        smtp_host=str(data.get("smtp_host", "localhost")),
        smtp_port=int(data.get("smtp_port", 25)),  # type: ignore[call-overload]
        sendmail=str(data.get("sendmail", "")),
        python=str(data.get("python", sys.executable)),
        check_timeout=float(data.get("check_timeout", 600)),  # type: ignore[arg-type]
        jobs=max(1, int(data.get("jobs", 4))),  # type: ignore[call-overload]
        defaults=_args_table(data.get("defaults", {}), "defaults"),
        engine=engine,
        engine_jobs=max(1, int(data.get("engine_jobs", 32))),  # type: ignore[call-overload]
    )


def load_config(path: Path) -> Settings:
    return parse_config(read_toml(path, ConfigError))


# --- running the checks ---------------------------------------------------------------------------

def check_argv(mailer: Mailer, check: str, defaults: dict[str, list[str]],
               extra: Sequence[str] = ()) -> list[str]:
    """The plugin options for one mailer: its identity first, then the configured arguments."""
    argv: list[str] = []
    if check == "dnsbl":
        argv += ["-H", mailer.outbound_address or mailer.target]
        if mailer.mail_domain:
            argv += ["--mail-domain", mailer.mail_domain]
    elif check == "spf_mx":
        argv += ["-H", mailer.target]
        if mailer.mail_domain:
            argv += ["--mail-domain", mailer.mail_domain]
    else:
        argv += ["-H", mailer.target]
        if check == "open_relay" and mailer.mail_domain:
            argv += ["--mail-domain", mailer.mail_domain]
    if check != "dnsbl":
        if mailer.port is not None:
            argv += ["-p", str(mailer.port)]
        if mailer.source_address:
            argv += ["--source-address", mailer.source_address]
    for server in mailer.nameserver:
        argv += ["--nameserver", server]
    return argv + defaults.get(check, []) + mailer.args.get(check, []) + list(extra)


@dataclass
class Outcome:
    """What one plugin run said."""

    mailer: str
    check: str                     # state key: the check name, or CHECK:TAG
    state: int
    output: str
    checked: str                   # ISO time

    @property
    def status_line(self) -> str:
        return self.output.splitlines()[0] if self.output else ""


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def run_check(settings: Settings, mailer: Mailer, check: str, key: str,
              extra: Sequence[str] = ()) -> Outcome:
    argv = [settings.python, "-c", RUNNER, check,
            *check_argv(mailer, check, settings.defaults, extra)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=settings.check_timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Outcome(mailer.name, key, UNKNOWN,
                       f"{check.upper()} UNKNOWN - no result within {settings.check_timeout:g}s",
                       now_iso())
    except OSError as exc:
        return Outcome(mailer.name, key, UNKNOWN,
                       f"{check.upper()} UNKNOWN - cannot run the check: {exc}", now_iso())
    state = proc.returncode if proc.returncode in STATE_NAMES else UNKNOWN
    output = proc.stdout.strip() or (f"{check.upper()} UNKNOWN - exit {proc.returncode}, "
                                     f"no output: {proc.stderr.strip()[-300:]}")
    return Outcome(mailer.name, key, state, output, now_iso())


def run_checks(settings: Settings, jobs: Sequence[tuple[Mailer, str]], tag: str,
               extra: dict[str, list[str]]) -> list[Outcome]:
    """Every (mailer, check): in-process where the engine honours its options, else as a plugin
    process; the outcomes in the order of ``jobs``."""
    keys = [f"{check}:{tag}" if tag else check for _, check in jobs]
    process = list(range(len(jobs)))
    audits: list[EngineJob] = []
    if settings.engine == "in-process":
        from mailprobe import cronengine

        specs = [(mailer.name, check, key, check_argv(mailer, check, settings.defaults,
                                                       extra.get(check, [])))
                 for (mailer, check), key in zip(jobs, keys, strict=True)]
        audits, process = cronengine.plan(specs)
    outcomes: dict[tuple[str, str], Outcome] = {}
    with ThreadPoolExecutor(max_workers=settings.jobs) as pool:
        futures = [pool.submit(run_check, settings, jobs[i][0], jobs[i][1], keys[i],
                               extra.get(jobs[i][1], [])) for i in process]
        if audits:
            from mailprobe import cronengine

            for mailer, key, state, output in cronengine.run(audits, settings.engine_jobs):
                outcomes[(mailer, key)] = Outcome(mailer, key, state, output, now_iso())
        for future in futures:
            outcome = future.result()
            outcomes[(outcome.mailer, outcome.check)] = outcome
    return [outcomes[(mailer.name, key)] for (mailer, _), key in zip(jobs, keys, strict=True)]


# --- states and changes ---------------------------------------------------------------------------

def classify(before: int | None, after: int) -> str | None:
    """``"regression"``, ``"recovery"`` or None (nothing to report)."""
    previous = OK if before is None else before
    if SEVERITY[after] > SEVERITY[previous]:
        return "regression"
    if after == OK and previous != OK:
        return "recovery"
    return None


@dataclass
class Change:
    kind: str                      # regression / recovery
    before: int | None
    outcome: Outcome


class StateFile:
    """``{"version": 1, "results": {mailer: {check: {state, output, checked, since}}}}``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: dict[str, dict[str, dict[str, object]]] = {}

    def load(self) -> StateFile:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return self
        except (OSError, ValueError) as exc:
            raise ConfigError(f"state file {self.path} is unreadable: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ConfigError(f"state file {self.path} is not a mailprobe-cron state file")
        self.results = data.get("results", {})
        return self

    def state(self, mailer: str, check: str) -> int | None:
        entry = self.results.get(mailer, {}).get(check)
        if not entry:
            return None
        value = entry.get("state")
        return value if isinstance(value, int) and value in STATE_NAMES else None

    def record(self, outcome: Outcome) -> None:
        entries = self.results.setdefault(outcome.mailer, {})
        before = entries.get(outcome.check, {})
        since = before.get("since") if before.get("state") == outcome.state else outcome.checked
        entries[outcome.check] = {"state": outcome.state, "state_name": STATE_NAMES[outcome.state],
                                  "since": since, "checked": outcome.checked,
                                  "output": outcome.output}

    def save(self) -> None:
        """Write atomically: a temp file in the same directory, fsync, rename."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": STATE_VERSION, "results": self.results}, indent=1,
                          sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One run at a time per state file (a second cron run waits for the first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- the report ----------------------------------------------------------------------------------

def check_label(key: str) -> str:
    check, _, tag = key.partition(":")
    return f"{check} ({tag})" if tag else check


def _name(state: int | None) -> str:
    return "not checked before" if state is None else STATE_NAMES[state]


def readable(output: str) -> list[str]:
    """The plugin output for people: the status line without its perfdata, then the rest."""
    lines = output.splitlines() or [""]
    return [lines[0].split(" | ", 1)[0].rstrip(), *lines[1:]]


def subject(changes: Sequence[Change]) -> str:
    if len(changes) == 1:
        change = changes[0]
        outcome = change.outcome
        word = "RECOVERY" if change.kind == "recovery" else "PROBLEM"
        return (f"[mailprobe] {word} {outcome.mailer}: {check_label(outcome.check)} "
                f"{STATE_NAMES[outcome.state]} (was {_name(change.before)})")
    regressions = sum(c.kind == "regression" for c in changes)
    recoveries = len(changes) - regressions
    parts = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in
             ((regressions, "regression"), (recoveries, "recovery")) if n]
    parts = [p.replace("recoverys", "recoveries") for p in parts]
    mailers = ", ".join(dict.fromkeys(c.outcome.mailer for c in changes))
    return f"[mailprobe] {' and '.join(parts)}: {mailers}"


def report_body(changes: Sequence[Change], state: StateFile, mailers: Sequence[str],
                reporter: str) -> str:
    lines = [f"mailprobe checked your mail server{'s' if len(mailers) > 1 else ''} from "
             f"{reporter} and found {'a change' if len(changes) == 1 else 'changes'}:", ""]
    for change in changes:
        outcome = change.outcome
        title = "REGRESSION" if change.kind == "regression" else "RECOVERY"
        lines.append(f"{title}: {outcome.mailer} {check_label(outcome.check)} "
                     f"{_name(change.before)} -> {STATE_NAMES[outcome.state]}")
        lines.extend("    " + line for line in readable(outcome.output))
        lines.append("")
    lines.append("Current state of every check:")
    for mailer in mailers:
        for key, entry in sorted(state.results.get(mailer, {}).items()):
            lines.append(f"    {mailer:<28} {check_label(key):<24} {entry['state_name']:<9}"
                         f" since {entry['since']}")
    lines += ["", "-- ", "mailprobe-cron: you get this mail when a check gets worse or comes "
              "back to OK, never otherwise."]
    return "\n".join(lines) + "\n"


def build_message(settings: Settings, postmaster: str, changes: Sequence[Change],
                  state: StateFile) -> EmailMessage:
    mailers = list(dict.fromkeys(c.outcome.mailer for c in changes))
    message = EmailMessage(policy=MAIL_POLICY)
    message["From"] = settings.mail_from
    message["To"] = postmaster
    message["Subject"] = subject(changes)
    message["Date"] = email.utils.formatdate(localtime=True)
    message["Message-ID"] = email.utils.make_msgid("mailprobe")
    message["Auto-Submitted"] = "auto-generated"          # RFC 3834: no auto-replies to this
    message["X-Mailprobe-Changes"] = str(len(changes))
    body = report_body(changes, state, mailers, socket.gethostname())
    plain = body.isascii() and max(map(len, body.splitlines())) < 990
    message.set_content(body, cte="7bit" if plain else "quoted-printable")
    return message


def send(settings: Settings, message: EmailMessage) -> None:
    """Hand the message to the relay (SMTP) or to sendmail; raises OSError/SMTPException."""
    recipient = str(message["To"])
    if settings.sendmail:
        proc = subprocess.run([settings.sendmail, "-oi", "-f", settings.mail_from, "--",
                               recipient], input=message.as_bytes(), capture_output=True,
                              timeout=120)
        if proc.returncode != 0:
            raise OSError(f"{settings.sendmail} exited {proc.returncode}: "
                          f"{proc.stderr.decode(errors='replace').strip()}")
        return
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=60) as smtp:
        smtp.send_message(message, from_addr=settings.mail_from, to_addrs=[recipient])


# --- one run -------------------------------------------------------------------------------------

def nth_weekday_today(spec: str, today: datetime.date) -> bool:
    """``"3"``: today is the 3rd of its weekday in the month; ``"3:thu"``: ... and a Thursday."""
    ordinal, _, day = spec.partition(":")
    if not ordinal.isdigit() or not 1 <= int(ordinal) <= 5 or (day and day[:3] not in WEEKDAYS):
        raise ConfigError(f"--only-nth-weekday {spec!r}: give N or N:DAY, e.g. 3:thu")
    if day and WEEKDAYS.index(day[:3]) != today.weekday():
        return False
    return (today.day - 1) // 7 + 1 == int(ordinal)


@dataclass
class RunResult:
    outcomes: list[Outcome]
    changes: list[Change]
    messages: list[EmailMessage]
    failures: list[str]


def run(settings: Settings, checks: Sequence[str] | None = None,
        mailer_names: Sequence[str] | None = None, tag: str = "",
        extra: dict[str, list[str]] | None = None, dry_run: bool = False) -> RunResult:
    """Run the checks, compare with the state file, send (or, dry, only build) the reports."""
    mailers = [m for m in settings.mailers if not mailer_names or m.name in mailer_names]
    jobs = [(m, c) for m in mailers for c in m.checks if not checks or c in checks]
    extra = extra or {}
    with locked(settings.state_file):
        state = StateFile(settings.state_file).load()
        outcomes = run_checks(settings, jobs, tag, extra)
        changes: list[Change] = []
        for outcome in outcomes:
            before = state.state(outcome.mailer, outcome.check)
            kind = classify(before, outcome.state)
            if kind:
                changes.append(Change(kind, before, outcome))
        previous = json.loads(json.dumps(state.results))
        for outcome in outcomes:
            state.record(outcome)
        postmasters = {m.name: m.postmaster for m in mailers}
        by_postmaster: dict[str, list[Change]] = {}
        for change in changes:
            by_postmaster.setdefault(postmasters[change.outcome.mailer], []).append(change)
        messages, failures = [], []
        for postmaster, group in by_postmaster.items():
            message = build_message(settings, postmaster, group, state)
            messages.append(message)
            if dry_run:
                continue
            try:
                send(settings, message)
            except (OSError, smtplib.SMTPException, subprocess.SubprocessError) as exc:
                failures.append(f"report to {postmaster} not sent: {exc}")
                # keep the old states so the next run reports these changes again
                for change in group:
                    old = previous.get(change.outcome.mailer, {}).get(change.outcome.check)
                    entries = state.results[change.outcome.mailer]
                    if old is None:
                        entries.pop(change.outcome.check, None)
                    else:
                        entries[change.outcome.check] = old
        if not dry_run:
            state.save()
    return RunResult(outcomes, changes, messages, failures)


# --- command line --------------------------------------------------------------------------------

def _check_list(text: str) -> list[str]:
    checks = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown or not checks:
        raise argparse.ArgumentTypeError(f"unknown check(s) {', '.join(unknown) or text!r} "
                                         f"(known: {', '.join(CHECKS)})")
    return checks


def _check_arg(text: str) -> tuple[str, str]:
    check, sep, value = text.partition("=")
    if not sep or check not in CHECKS:
        raise argparse.ArgumentTypeError(f"{text!r}: give CHECK=ARGUMENT, e.g. "
                                         "open_relay=--depth=data")
    return check, value


def build_parser(prog: str = "mailprobe-cron") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run mailprobe's checks for the mailers in a configuration file and mail "
                    "each postmaster when a check gets worse or recovers. Quiet unless -v; "
                    "exit 1 when a report could not be sent, 2 for a configuration error.")
    parser.add_argument("-V", "--version", action="version",
                        version=f"{prog} (mailprobe) {__version__}")
    parser.add_argument("-c", "--config", type=Path, default=Path("/etc/mailprobe/cron.toml"),
                        help="configuration file (default /etc/mailprobe/cron.toml)")
    parser.add_argument("--checks", type=_check_list, metavar="CHECK,...",
                        help=f"run only these checks ({', '.join(CHECKS)})")
    parser.add_argument("--mailer", action="append", metavar="NAME",
                        help="run only for this mailer (repeatable)")
    parser.add_argument("--arg", action="append", type=_check_arg, default=[],
                        metavar="CHECK=ARGUMENT",
                        help="one more plugin argument for this run, e.g. open_relay=--depth=data")
    parser.add_argument("--tag", default="",
                        help="keep this run's states apart (e.g. quarterly for a full relay "
                             "series beside the daily one)")
    parser.add_argument("--only-nth-weekday", metavar="N[:DAY]",
                        help="do nothing unless today is the N-th such weekday of the month "
                             "(cron cannot say 'third Thursday')")
    parser.add_argument("--state-file", type=Path, help="override the configured state file")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the report mails instead of sending them; the state file is "
                             "not changed")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print every check's status line")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "mailprobe-cron") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        if args.only_nth_weekday and not nth_weekday_today(args.only_nth_weekday,
                                                           datetime.date.today()):
            return 0
        settings = load_config(args.config)
        if args.state_file:
            settings.state_file = args.state_file
        if args.mailer:
            unknown = set(args.mailer) - {m.name for m in settings.mailers}
            if unknown:
                raise ConfigError(f"no mailer named {', '.join(sorted(unknown))} in {args.config}")
        extra: dict[str, list[str]] = {}
        for check, value in args.arg:
            extra.setdefault(check, []).append(value)
        result = run(settings, args.checks, args.mailer, args.tag, extra, args.dry_run)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if args.verbose:
        for outcome in result.outcomes:
            print(f"{outcome.mailer} {check_label(outcome.check)}: {outcome.status_line}")
    if args.dry_run:
        for message in result.messages:
            print(message.as_string())
    for failure in result.failures:
        print(f"{prog}: {failure}", file=sys.stderr)
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
