"""mailprobe-cron: the decision logic, the state file, and an end-to-end run that mails the
postmaster through a real Postfix into a Maildir the test reads."""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest

from lab.knot import KnotServer
from lab.postfix import PostfixServer
from lab.process import free_port
from mailprobe import cron
from mailprobe.cron import (
    CRITICAL,
    OK,
    UNKNOWN,
    WARNING,
    ConfigError,
    Mailer,
    Outcome,
    Settings,
    StateFile,
    check_argv,
    classify,
    nth_weekday_today,
    parse_config,
)
from tests.fixtures.postfix import LAB_DOMAIN, OUTSIDE

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib" / "cron"


# --- decisions -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("before", "after", "kind"), [
    (None, OK, None), (None, WARNING, "regression"), (None, CRITICAL, "regression"),
    (OK, OK, None), (OK, WARNING, "regression"), (OK, UNKNOWN, "regression"),
    (WARNING, CRITICAL, "regression"), (UNKNOWN, CRITICAL, "regression"),
    (WARNING, UNKNOWN, "regression"),
    (WARNING, OK, "recovery"), (CRITICAL, OK, "recovery"), (UNKNOWN, OK, "recovery"),
    (CRITICAL, WARNING, None), (CRITICAL, UNKNOWN, None), (WARNING, WARNING, None),
    (CRITICAL, CRITICAL, None),
])
def test_classify(before: int | None, after: int, kind: str | None) -> None:
    assert classify(before, after) == kind


def test_check_argv_maps_the_mailer_to_each_plugin() -> None:
    mailer = Mailer("mx1.example.org", "pm@example.org", address="192.0.2.25",
                    mail_domain="example.org", port=2525, source_address="198.51.100.7",
                    nameserver=["127.0.0.1:5353"], outbound_address="203.0.113.9",
                    args={"open_relay": ["-t", "120"]})
    defaults = {"open_relay": ["-v"], "dnsbl": ["--no-txt"]}
    ns = ["--nameserver", "127.0.0.1:5353"]
    assert check_argv(mailer, "open_relay", defaults, ["--depth=data"]) == [
        "-H", "192.0.2.25", "--mail-domain", "example.org", "-p", "2525",
        "--source-address", "198.51.100.7", *ns, "-v", "-t", "120", "--depth=data"]
    assert check_argv(mailer, "dnsbl", defaults) == [
        "-H", "203.0.113.9", "--mail-domain", "example.org", *ns, "--no-txt"]
    assert check_argv(mailer, "banner_rdns", {}) == [
        "-H", "192.0.2.25", "-p", "2525", "--source-address", "198.51.100.7", *ns]
    assert check_argv(mailer, "spf_mx", {}) == [
        "-H", "192.0.2.25", "--mail-domain", "example.org", "-p", "2525",
        "--source-address", "198.51.100.7", *ns]
    bare = Mailer("mx2.example.org", "pm@example.org")
    assert check_argv(bare, "dnsbl", {}) == ["-H", "mx2.example.org"]


def test_check_argv_is_accepted_by_every_plugin_parser() -> None:
    """The options the wrapper builds exist in the plugins (caught here if they drift)."""
    from tests.test_icinga import plugin_parser

    mailer = Mailer("mx1.example.org", "pm@example.org", address="192.0.2.25",
                    mail_domain="example.org", port=2525, source_address="198.51.100.7",
                    nameserver=["127.0.0.1:5353"])
    for check in cron.CHECKS:
        plugin_parser(check).parse_args(check_argv(mailer, check, {}))


def test_engine_runs_in_process_only_what_it_honours_the_plugins_way() -> None:
    from mailprobe import cronengine

    mailer = Mailer("mx1.example.org", "pm@example.org", address="192.0.2.25",
                    mail_domain="example.org", port=2525, source_address="198.51.100.7",
                    nameserver=["127.0.0.1:5353"], outbound_address="203.0.113.9")
    defaults = {"open_relay": ["-t", "20"], "dnsbl": ["--zone", "bl.spamcop.net"]}
    specs = [(mailer.name, check, check, check_argv(mailer, check, defaults))
             for check in cron.CHECKS]
    specs.append((mailer.name, "open_relay", "open_relay:quarterly",
                  check_argv(mailer, "open_relay", defaults, ["--depth=data"])))
    specs.append((mailer.name, "spf_mx", "spf_mx:strict",
                  check_argv(mailer, "spf_mx", defaults, ["--require-dmarc"])))
    audits, process = cronengine.plan(specs)
    assert process == [4, 5]  # --depth data and --require-dmarc keep the plugin process
    by_target = {(a.target, tuple(sorted(a.checks))): a for a in audits}
    # the outbound address is another target; -t 20 makes open_relay an audit of its own
    assert set(by_target) == {("203.0.113.9", ("dnsbl",)), ("192.0.2.25", ("open_relay",)),
                              ("192.0.2.25", ("banner_rdns", "spf_mx"))}
    relay = by_target[("192.0.2.25", ("open_relay",))].options
    assert (relay.timeout, relay.port, relay.source_address, relay.mail_domain) == (
        20.0, 2525, "198.51.100.7", "example.org")
    assert [str(n) for n in relay.nameservers or []] == ["127.0.0.1:5353"]
    dnsbl = by_target[("203.0.113.9", ("dnsbl",))].options
    assert [z.host for z in dnsbl.zones or []] == ["bl.spamcop.net"]
    assert by_target[("192.0.2.25", ("banner_rdns", "spf_mx"))].options.certificate_days is None


def test_engine_output_reads_like_the_plugin() -> None:
    from mailprobe import cronengine
    from mailprobe.audit.model import Section
    from mailprobe.findings import Finding

    section = Section("relay", "Open relay", CRITICAL, "open relay: 1 of 38 relay attempts "
                      "accepted (plain)", [Finding(CRITICAL, "relayed", "open relay | 1")],
                      evidence={"attempts": [
                          {"id": "control", "outcome": "relayed", "mail_from": "MAIL FROM:<a>",
                           "rcpt_to": "RCPT TO:<postmaster@x>", "reply": "250 ok"},
                          {"id": "plain", "outcome": "relayed", "mail_from": "MAIL FROM:<a>",
                           "rcpt_to": "RCPT TO:<b@example.net>", "reply": "250 ok"}]})
    state, output = cronengine.status_output("open_relay", section)
    lines = output.splitlines()
    assert state == CRITICAL
    assert lines[0] == "OPEN_RELAY CRITICAL - open relay: 1 of 38 relay attempts accepted (plain)"
    assert lines[1] == "[ACCEPTED] control: MAIL FROM:<a> / RCPT TO:<postmaster@x> -> 250 ok"
    assert lines[2] == "[RELAYED] plain: MAIL FROM:<a> / RCPT TO:<b@example.net> -> 250 ok"
    assert lines[3] == "CRITICAL: open relay ! 1"  # no '|': it would start perfdata


def test_engine_setting_is_checked(tmp_path: Path) -> None:
    document = {"state_file": str(tmp_path / "s.json"),
                "mailer": [{"name": "mx", "postmaster": "pm@example.org"}]}
    assert parse_config(document).engine == "in-process"
    assert parse_config({**document, "engine": "process"}).engine == "process"
    with pytest.raises(ConfigError, match="engine"):
        parse_config({**document, "engine": "threads"})


@pytest.mark.parametrize(("spec", "day", "expected"), [
    ("3:thu", datetime.date(2026, 2, 19), True),     # third Thursday of February 2026
    ("3:thu", datetime.date(2026, 2, 12), False),    # second
    ("3:thu", datetime.date(2026, 2, 26), False),    # fourth
    ("3:thu", datetime.date(2026, 2, 18), False),    # a Wednesday in the same week
    ("3", datetime.date(2026, 11, 18), True),        # the third Wednesday of November
    ("3:thursday", datetime.date(2026, 11, 19), True),
])
def test_nth_weekday_today(spec: str, day: datetime.date, expected: bool) -> None:
    assert nth_weekday_today(spec, day) is expected


@pytest.mark.parametrize("spec", ["0", "6:thu", "3:xyz", "third"])
def test_nth_weekday_rejects_nonsense(spec: str) -> None:
    with pytest.raises(ConfigError):
        nth_weekday_today(spec, datetime.date(2026, 2, 19))


# --- configuration -------------------------------------------------------------------------------

def test_example_configuration_loads() -> None:
    settings = cron.load_config(CONTRIB / "mailprobe-cron.toml")
    assert [m.name for m in settings.mailers] == ["mx1.example.org", "mx2.example.org"]
    assert settings.mailers[0].checks == cron.CHECKS
    assert settings.mailers[1].checks == ("open_relay", "banner_rdns")
    assert settings.mailers[1].args == {"banner_rdns": ["--no-starttls-ok"]}
    assert settings.defaults["open_relay"] == ["-t", "120"]
    assert (settings.smtp_host, settings.smtp_port) == ("localhost", 25)


def test_example_crontab_commands_parse() -> None:
    lines = [line for line in (CONTRIB / "crontab").read_text().splitlines()
             if "mailprobe-cron " in line and not line.lstrip().startswith("#")]
    assert len(lines) == 4
    for line in lines:
        argv = shlex.split(line.split("mailprobe-cron", 1)[1].replace("$CONF", "x.toml"))
        args = cron.build_parser().parse_args(argv)
        if args.only_nth_weekday:
            assert line.split()[3] == "2,5,8,11" and line.split()[4] == "thu"
            assert nth_weekday_today(args.only_nth_weekday, datetime.date(2026, 5, 21))


@pytest.mark.parametrize(("document", "message"), [
    ({"state_file": "s"}, "no [[mailer]]"),
    ({"state_file": "s", "mailer": [{"name": "a"}]}, "needs at least name and postmaster"),
    ({"state_file": "s", "mailer": [{"name": "a", "postmaster": "p", "checks": ["relay"]}]},
     "unknown check(s) relay"),
    ({"state_file": "s", "mailer": [{"name": "a", "postmaster": "p", "prot": 25}]},
     "unknown setting(s): prot"),
    ({"mailer": [{"name": "a", "postmaster": "p"}]}, "state_file is not set"),
    ({"state_file": "s", "mailer": [{"name": "a", "postmaster": "p"},
                                    {"name": "a", "postmaster": "q"}]}, "same name"),
])
def test_bad_configurations_are_refused(document: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        parse_config(document)


def test_bad_configuration_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('state_file = "s"\n')
    assert cron.main(["-c", str(config)]) == 2
    assert "no [[mailer]]" in capsys.readouterr().err


# --- state file ----------------------------------------------------------------------------------

def test_state_file_round_trip_keeps_since(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    state = StateFile(path).load()
    assert state.state("mx", "dnsbl") is None
    state.record(Outcome("mx", "dnsbl", WARNING, "DNSBL WARNING - x", "2026-01-01T00:00:00"))
    state.save()
    state = StateFile(path).load()
    state.record(Outcome("mx", "dnsbl", WARNING, "DNSBL WARNING - y", "2026-01-02T00:00:00"))
    state.save()
    data = json.loads(path.read_text())
    entry = data["results"]["mx"]["dnsbl"]
    assert entry["since"] == "2026-01-01T00:00:00" and entry["checked"] == "2026-01-02T00:00:00"
    assert entry["state_name"] == "WARNING" and entry["output"] == "DNSBL WARNING - y"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]   # no temp file left


def test_state_file_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"something": "else"}')
    with pytest.raises(ConfigError):
        StateFile(path).load()


# --- one run with scripted outcomes --------------------------------------------------------------

def _settings(tmp_path: Path, port: int) -> Settings:
    # engine "process": every check goes through run_check, which these tests script
    return Settings(mailers=[Mailer("mx1", "pm1@example.org"), Mailer("mx2", "pm2@example.org")],
                    state_file=tmp_path / "state.json", mail_from="mailprobe@monitor.test",
                    smtp_host="127.0.0.1", smtp_port=port, engine="process")


def _script(monkeypatch: pytest.MonkeyPatch, states: dict[tuple[str, str], int]) -> None:
    def fake(settings: Settings, mailer: Mailer, check: str, key: str,
             extra: object = ()) -> Outcome:
        state = states.get((mailer.name, check), OK)
        return Outcome(mailer.name, key, state,
                       f"{check.upper()} {cron.STATE_NAMES[state]} - scripted | x=1\nlong line",
                       cron.now_iso())
    monkeypatch.setattr(cron, "run_check", fake)


def test_dry_run_builds_one_mail_per_postmaster_and_keeps_the_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, free_port())
    _script(monkeypatch, {("mx1", "dnsbl"): WARNING, ("mx1", "open_relay"): CRITICAL,
                          ("mx2", "spf_mx"): CRITICAL})
    result = cron.run(settings, dry_run=True)
    assert len(result.changes) == 3 and not result.failures
    assert [m["To"] for m in result.messages] == ["pm1@example.org", "pm2@example.org"]
    first, second = result.messages
    assert first["Subject"] == "[mailprobe] 2 regressions: mx1"
    assert second["Subject"] == "[mailprobe] PROBLEM mx2: spf_mx CRITICAL (was not checked before)"
    assert first["Auto-Submitted"] == "auto-generated"
    body = first.get_content()
    assert "REGRESSION: mx1 open_relay not checked before -> CRITICAL" in body
    assert "    OPEN_RELAY CRITICAL - scripted\n    long line\n" in body   # no perfdata
    assert "Current state of every check:" in body and "x=1" not in body
    assert not settings.state_file.exists()


def test_a_report_that_cannot_be_sent_is_sent_next_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens on the relay port: exit-worthy failure, and the change is not forgotten."""
    settings = _settings(tmp_path, free_port())
    _script(monkeypatch, {("mx1", "dnsbl"): WARNING})
    result = cron.run(settings, checks=["dnsbl"])
    assert len(result.failures) == 1 and "pm1@example.org" in result.failures[0]
    state = StateFile(settings.state_file).load()
    assert state.state("mx1", "dnsbl") is None        # not advanced: reported again next run
    assert state.state("mx2", "dnsbl") == OK          # the other mailer's result is kept
    again = cron.run(settings, checks=["dnsbl"], dry_run=True)
    assert [c.outcome.mailer for c in again.changes] == ["mx1"]


def test_tagged_runs_keep_their_own_state(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, free_port())
    _script(monkeypatch, {})
    cron.run(settings, checks=["open_relay"], tag="quarterly")
    state = json.loads(settings.state_file.read_text())
    assert set(state["results"]["mx1"]) == {"open_relay:quarterly"}


def test_sendmail_is_used_when_configured(tmp_path: Path) -> None:
    sink = tmp_path / "sink"
    fake = tmp_path / "sendmail"
    fake.write_text(f'#!/bin/sh\necho "$@" > {sink}.argv\ncat > {sink}\n')
    fake.chmod(0o755)
    settings = _settings(tmp_path, 0)
    settings.sendmail = str(fake)
    message = cron.EmailMessage()
    message["To"] = "pm@example.org"
    message["Subject"] = "s"
    message.set_content("hello")
    cron.send(settings, message)
    assert sink.with_suffix(".argv").read_text().split() == [
        "-oi", "-f", "mailprobe@monitor.test", "--", "pm@example.org"]
    assert "hello" in sink.read_text()


# --- end to end: real plugin, real Postfix relays, real Postfix mailbox ---------------------------

MONITOR_DOMAIN = "monitor.test"
POSTMASTER = f"postmaster@{MONITOR_DOMAIN}"


class MailboxPostfix(PostfixServer):
    """A lab Postfix that delivers ``MONITOR_DOMAIN`` into Maildirs (Postfix's virtual agent)."""

    def __init__(self, mailbox: Path) -> None:
        super().__init__("mailbox", {
            "virtual_mailbox_domains": MONITOR_DOMAIN,
            "virtual_mailbox_base": str(mailbox),
            "virtual_mailbox_maps": "texthash:${config_directory}/vmailbox",
            "virtual_transport": "virtual",
            "virtual_uid_maps": "static:65534",
            "virtual_gid_maps": "static:65534",
            "virtual_minimum_uid": "100",
        }, maps={"vmailbox": f"{POSTMASTER} postmaster/\n"})

    def _write_config(self) -> None:
        super()._write_config()
        master = self.config_dir / "master.cf"
        with open(master, "a") as handle:
            handle.write("virtual   unix  -       n       n       -       -       virtual\n")
        past = time.time() - 60
        os.utime(master, (past, past))

    def queue_empty(self) -> bool:
        proc = subprocess.run(["postqueue", "-c", str(self.config_dir), "-j"],
                              capture_output=True, text=True, timeout=10)
        return proc.returncode == 0 and not proc.stdout.strip()


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[MailboxPostfix, Path]]:
    if os.geteuid() != 0:
        pytest.skip("Postfix needs root to start")
    box = Path(tempfile.mkdtemp(prefix="mailprobe-maildir-"))
    os.chown(box, 65534, 65534)
    server = MailboxPostfix(box)
    try:
        yield server.start(), box / "postmaster"
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(box)], check=False)


@pytest.fixture(scope="module")
def lab_dns() -> Iterator[KnotServer]:
    with KnotServer({LAB_DOMAIN: "@ MX 10 mx\nmx A 127.0.0.1\n"}) as server:
        yield server


def delivered(maildir: Path, count: int, server: MailboxPostfix, timeout: float = 15) -> list[
        Message]:
    """The mails in the Maildir once ``count`` arrived and Postfix's queue is empty."""
    def arrived() -> list[Path]:
        # in order of arrival: Maildir names sort by second only, and in-process runs are fast
        files = list((maildir / "new").glob("*")) if (maildir / "new").exists() else []
        return sorted(files, key=lambda f: (f.stat().st_mtime_ns, f.name))

    until = time.monotonic() + timeout
    while time.monotonic() < until:
        files = arrived()
        if len(files) >= count and server.queue_empty():
            return [message_from_bytes(f.read_bytes()) for f in files]
        time.sleep(0.1)
    files = arrived()
    raise AssertionError(f"{len(files)} mails, expected {count}:\n{server.maillog()[-3000:]}")


def write_config(path: Path, state: Path, relay_port: int, mailer_port: int,
                 nameserver: str) -> None:
    path.write_text(f"""
state_file = "{state}"
from = "mailprobe@{MONITOR_DOMAIN}"
smtp_host = "127.0.0.1"
smtp_port = {relay_port}
checks = ["open_relay"]

[defaults]
open_relay = ["-t", "20"]

[[mailer]]
name = "mx.{LAB_DOMAIN}"
address = "127.0.0.1"
port = {mailer_port}
mail_domain = "{LAB_DOMAIN}"
source_address = "{OUTSIDE}"
nameserver = ["{nameserver}"]
postmaster = "{POSTMASTER}"
""")
    tomllib.loads(path.read_text())


def run_cron(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailprobe.cron", "-c", str(config), "-v",
                           *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "lib")))


@pytest.mark.integration
def test_cron_mails_the_postmaster_once_per_change(
        tmp_path: Path, mailbox: tuple[MailboxPostfix, Path], lab_dns: KnotServer,
        postfix_open: PostfixServer, postfix_closed: PostfixServer) -> None:
    """The mailer is closed, becomes an open relay, stays open, is closed again: the postmaster
    gets exactly two mails (the regression, the recovery), through a real Postfix."""
    server, maildir = mailbox
    already = len(list((maildir / "new").glob("*"))) if (maildir / "new").exists() else 0
    config, state = tmp_path / "cron.toml", tmp_path / "state" / "cron.json"

    def phase(mailer: PostfixServer) -> subprocess.CompletedProcess[str]:
        write_config(config, state, server.port, mailer.port, lab_dns.nameserver)
        proc = run_cron(config)
        assert proc.returncode == 0, proc.stderr
        return proc

    # 1. closed: OK, first run, nothing to report
    proc = phase(postfix_closed)
    assert f"mx.{LAB_DOMAIN} open_relay: OPEN_RELAY OK" in proc.stdout
    assert json.loads(state.read_text())["results"][f"mx.{LAB_DOMAIN}"]["open_relay"][
        "state_name"] == "OK"
    # 2. the mailer becomes an open relay: one PROBLEM mail
    proc = phase(postfix_open)
    assert "OPEN_RELAY CRITICAL" in proc.stdout
    mails = delivered(maildir, already + 1, server)[already:]
    assert len(mails) == 1
    problem = mails[0]
    assert problem["To"] == POSTMASTER
    assert problem["Subject"] == (f"[mailprobe] PROBLEM mx.{LAB_DOMAIN}: open_relay CRITICAL "
                                  "(was OK)")
    body = problem.get_payload(decode=True).decode()
    assert "REGRESSION: mx.relaylab.test open_relay OK -> CRITICAL" in body
    assert "OPEN_RELAY CRITICAL - " in body and "relay attempts accepted" in body
    assert "[RELAYED] plain:" in body and "relayed=" not in body    # long output, no perfdata
    assert problem["Auto-Submitted"] == "auto-generated"
    # 3. still open: nothing new
    proc = phase(postfix_open)
    assert "OPEN_RELAY CRITICAL" in proc.stdout
    # 4. closed again: one RECOVERY mail, and the run before it sent none
    proc = phase(postfix_closed)
    mails = delivered(maildir, already + 2, server)[already:]
    assert len(mails) == 2
    recovery = mails[1]
    assert recovery["Subject"] == (f"[mailprobe] RECOVERY mx.{LAB_DOMAIN}: open_relay OK "
                                   "(was CRITICAL)")
    assert "RECOVERY: mx.relaylab.test open_relay CRITICAL -> OK" in \
        recovery.get_payload(decode=True).decode()
    # 5. a dry run of a change prints the mail and neither sends it nor moves the state
    write_config(config, state, server.port, postfix_open.port, lab_dns.nameserver)
    before = state.read_text()
    proc = run_cron(config, "--dry-run")
    assert proc.returncode == 0 and "Subject: [mailprobe] PROBLEM" in proc.stdout
    assert state.read_text() == before
    time.sleep(0.5)
    assert len(delivered(maildir, already + 2, server)) == already + 2
