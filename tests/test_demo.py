"""The demo: starts the lab, runs every plugin, reports the lab's holes, and cleans up."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys

import pytest

from lab import demo
from tests.conftest import ROOT

STATUS = r"(OK|WARNING|CRITICAL|UNKNOWN)"
# plugin -> (status line prefix, states the lab must produce, text the summary must contain)
EXPECTED = {
    "check_open_relay": ("OPEN_RELAY", {"CRITICAL"}, "percent-hack-domain"),
    "check_dnsbl": ("DNSBL", {"WARNING", "CRITICAL"}, "bl.lab.mailprobe.test"),
    "check_banner_rdns": ("BANNER_RDNS", {"WARNING", "CRITICAL"}, "smtp.lab.mailprobe.test"),
    "check_spf_mx": ("SPF_MX", {"WARNING", "CRITICAL"}, "+all"),
    "check_backscatter": ("BACKSCATTER", {"WARNING"}, "accepts mail for unknown users"),
    "check_smtp_smuggling": ("SMTP_SMUGGLING", {"CRITICAL"}, "<LF>.<LF>"),
    "check_port_exposure": ("PORT_EXPOSURE", {"CRITICAL"}, "127.0.0.25"),
}


@pytest.fixture(scope="module")
def demo_run() -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
    return subprocess.run([sys.executable, "-m", "lab.demo"], capture_output=True,
                          text=True, timeout=180, env=env, stdin=subprocess.DEVNULL, cwd=ROOT)


def sections(stdout: str) -> dict[str, list[str]]:
    """plugin name -> the lines the demo printed for it."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        match = re.match(r"=== (check_\w+):", line)
        if match:
            current = found.setdefault(match.group(1), [])
        elif line.startswith("demo: "):
            current = None
        elif current is not None:
            current.append(line)
    return found


def test_demo_exits_0(demo_run):
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    assert "Traceback" not in demo_run.stdout + demo_run.stderr
    assert f"demo: {len(EXPECTED)} plugin(s) ran; lab stopped" in demo_run.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_plugin_reports_the_labs_hole(demo_run, name):
    prefix, states, text = EXPECTED[name]
    lines = sections(demo_run.stdout)[name]
    assert lines[0].startswith(f"$ plugins/{name} "), lines
    status = lines[1]
    match = re.match(rf"{prefix} {STATUS} - ", status)
    assert match, status
    assert match.group(1) in states, status
    assert text in status, status
    exit_line = next(line for line in lines if line.startswith("--> exit "))
    code = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}[match.group(1)]
    assert exit_line.startswith(f"--> exit {code} ({match.group(1)})"), exit_line


def test_open_relay_names_exactly_the_sloppy_forms(demo_run):
    lines = sections(demo_run.stdout)["check_open_relay"]
    relayed = {m.group(1) for line in lines if (m := re.match(r"\[RELAYED\] ([\w-]+):", line))}
    assert {"percent-hack-domain", "bang-path", "quoted-local-part-domain",
            "sender-own-domain"} <= relayed
    assert "plain" not in relayed and "double-at-domain" not in relayed
    assert any(line.startswith("[REFUSED] plain:") for line in lines)


def test_demo_leaves_nothing_listening(demo_run):
    knot_port = re.search(r"Knot on 127\.0\.0\.1:(\d+)", demo_run.stdout)
    smtp_port = re.search(rf"on {re.escape(demo.MAILER_ADDRESS)} port (\d+)", demo_run.stdout)
    assert knot_port and smtp_port, demo_run.stdout
    for host, port in [(demo.DNS_ADDRESS, knot_port.group(1)),
                       (demo.MAILER_ADDRESS, smtp_port.group(1))]:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=2).close()


def test_missing_plugin_does_not_stop_the_demo():
    out = io.StringIO()
    run = demo.PluginRun("check_nothing_here", "A plugin nobody wrote", ["-H", "127.0.0.1"])
    assert demo.run_plugin(run, out) is False
    assert "not available" in out.getvalue()


def test_missing_checks_module_is_reported(tmp_path, monkeypatch):
    fake = tmp_path / "plugins" / "check_future"
    fake.parent.mkdir()
    fake.write_text("raise SystemExit('should not run')\n")
    monkeypatch.setattr(demo, "ROOT", tmp_path)
    out = io.StringIO()
    assert demo.run_plugin(demo.PluginRun("check_future", "later", []), out) is False
    assert "mailprobe.checks.future does not exist yet" in out.getvalue()


def test_crashing_plugin_is_reported(tmp_path, monkeypatch):
    fake = tmp_path / "plugins" / "check_open_relay"  # a module that exists, a script that dies
    fake.parent.mkdir()
    fake.write_text("import sys\nprint('boom', file=sys.stderr)\nsys.exit(7)\n")
    monkeypatch.setattr(demo, "ROOT", tmp_path)
    out = io.StringIO()
    assert demo.run_plugin(demo.PluginRun("check_open_relay", "crash", []), out) is False
    assert "--> exit 7: not a plugin result (boom)" in out.getvalue()


def test_dnsbl_zone_never_lists_the_rfc5782_negative_entry():
    zone = demo.zones()[demo.DNSBL_ZONE]
    assert not re.search(r"^1\.0\.0\.127\s", zone, re.M)
    assert re.search(r"^2\.0\.0\.127\s+A\s+127\.0\.0\.2", zone, re.M)
