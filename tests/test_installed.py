"""The installed wheel works: every command, as the nagios user, against the real lab.

What a user gets from ``./dev install`` (or ``pip install .``) is tested here, not the source
tree: the wheel must carry every package it needs (issue 11 began with a missing
``mailprobe.relay``), the entry points must start without the checkout, and the plugins must run
as the unprivileged user Icinga uses.
"""

from __future__ import annotations

import ast
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import demo
from lab.knot import KnotServer
from lab.process import free_port
from lab.smtpd import ScriptedSMTPServer
from mailprobe import __version__
from tests.conftest import ROOT
from tests.fixtures.installed import COMMANDS, InstalledTree, run_as_nagios
from tests.fixtures.postfix import OUTSIDE

pytestmark = pytest.mark.integration

STATUS = re.compile(r"^[A-Z_]+ (OK|WARNING|CRITICAL|UNKNOWN) - ")


def source_modules() -> list[str]:
    """Every module of the mailprobe package in this checkout."""
    lib = ROOT / "lib"
    return sorted(".".join(p.relative_to(lib).with_suffix("").parts).removesuffix(".__init__")
                  for p in (lib / "mailprobe").rglob("*.py"))


def test_the_venv_is_debians_python_outside_root(installed: InstalledTree) -> None:
    config = (installed.prefix / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in config
    assert not str(installed.prefix).startswith("/root")


def test_the_wheel_holds_every_module_and_no_lab(installed: InstalledTree) -> None:
    site = next((installed.prefix / "lib").glob("python3*/site-packages"))
    installed_modules = sorted(
        ".".join(p.relative_to(site).with_suffix("").parts).removesuffix(".__init__")
        for p in (site / "mailprobe").rglob("*.py"))
    assert installed_modules == source_modules()
    assert not (site / "lab").exists()
    assert (site / "mailprobe" / "py.typed").exists()


def test_every_module_imports_as_nagios(installed: InstalledTree) -> None:
    """No module depends on the checkout (sys.path edits, the lab, files beside the source)."""
    modules = [m for m in source_modules() if not m.endswith("__main__")]
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\nprint('ok')"
    run = run_as_nagios([str(installed.prefix / "bin" / "python"), "-c", code, *modules])
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr


def test_no_installed_module_edits_sys_path() -> None:
    for path in (ROOT / "lib" / "mailprobe").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path":
                owner = node.value
                assert not (isinstance(owner, ast.Name) and owner.id == "sys"), path


@pytest.mark.parametrize("command", COMMANDS)
def test_version_and_help(installed: InstalledTree, command: str) -> None:
    version = installed.run(command, "--version")
    assert version.returncode == 0, version.stderr
    assert __version__ in version.stdout
    helped = installed.run(command, "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: ")
    assert helped.stderr == ""


def test_python_dash_m_mailprobe(installed: InstalledTree) -> None:
    run = run_as_nagios([str(installed.prefix / "bin" / "python"), "-m", "mailprobe",
                         "--version"])
    assert (run.returncode, run.stdout.strip()) == (0, f"mailprobe {__version__}")


def test_bad_option_is_one_unknown_line(installed: InstalledTree) -> None:
    run = installed.run("check_open_relay", "--no-such-option")
    assert run.returncode == 3
    assert run.stdout.startswith("OPEN_RELAY UNKNOWN - bad option:")
    assert len(run.stdout.splitlines()) == 1


def test_relay_check_of_a_closed_postfix_is_ok(installed: InstalledTree, postfix_closed) -> None:
    run = installed.run("check_open_relay", "-H", postfix_closed.host,
                        "-p", str(postfix_closed.port), "--source-address", OUTSIDE,
                        "--mail-domain", "relaylab.test", "-t", "60")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.status_line.startswith("OPEN_RELAY OK - ")
    assert run.perf_value("relayed") == 0


def test_relay_check_of_an_open_postfix_is_critical(installed: InstalledTree,
                                                     postfix_open) -> None:
    run = installed.run("check_open_relay", "-H", postfix_open.host,
                        "-p", str(postfix_open.port), "--source-address", OUTSIDE,
                        "--mail-domain", "relaylab.test", "-t", "60")
    assert run.returncode == 2, run.stdout + run.stderr
    # every attempt that applies relays (XCLIENT, XFORWARD, AUTH: not offered by this Postfix)
    not_applicable = run.stdout.count("\n[NOT APPLICABLE] ")
    assert run.perf_value("relayed") == run.perf_value("attempts") - not_applicable > 30


@pytest.fixture(scope="module")
def demo_lab() -> Iterator[dict[str, list[str]]]:
    """The demo lab (Knot with its zones, the scripted sloppy mailer): plugin -> its argv."""
    knot = KnotServer(demo.zones(), host=demo.DNS_ADDRESS).start()
    smtp = ScriptedSMTPServer(demo.mailer_behaviour(), host=demo.MAILER_ADDRESS,
                              port=free_port(demo.MAILER_ADDRESS)).start()
    try:
        yield {run.name: run.argv for run in demo.plugin_runs(smtp.port, knot.nameserver)}
    finally:
        smtp.stop()
        knot.stop()


@pytest.mark.parametrize(("plugin", "code", "needle"), [
    ("check_open_relay", 2, "percent-hack-domain"),
    ("check_dnsbl", 1, "bl.lab.mailprobe.test"),
    ("check_banner_rdns", 2, "does not resolve back"),
    ("check_spf_mx", 2, "+all"),
])
def test_each_plugin_against_the_demo_lab(installed: InstalledTree, demo_lab, plugin: str,
                                          code: int, needle: str) -> None:
    run = installed.run(plugin, *demo_lab[plugin])
    assert run.returncode == code, run.stdout + run.stderr
    assert STATUS.match(run.status_line), run.status_line
    assert needle in run.summary
    assert run.perfdata


def test_mailprobe_cron_runs_the_installed_checks(installed: InstalledTree,
                                                  postfix_closed) -> None:
    """``mailprobe cron`` (the same for ``mailprobe-cron``) as nagios, state in its own dir."""
    work = installed.workdir("cron")
    config = work / "cron.toml"
    config.write_text(f"""
state_file = "{work}/state.json"
from = "mailprobe@monitor.test"
smtp_host = "127.0.0.1"
smtp_port = 9
checks = ["open_relay"]
[defaults]
open_relay = ["--source-address", "{OUTSIDE}", "-t", "60"]
[[mailer]]
name = "closed.relaylab.test"
address = "{postfix_closed.host}"
port = {postfix_closed.port}
mail_domain = "relaylab.test"
postmaster = "postmaster@relaylab.test"
""")
    config.chmod(0o644)
    for command in (["mailprobe", "cron"], ["mailprobe-cron"]):
        run = run_as_nagios([str(installed.path(command[0])), *command[1:], "-c", str(config),
                             "--dry-run", "-v"], timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "closed.relaylab.test open_relay: OPEN_RELAY OK - " in run.stdout, run.stdout


def test_the_wheel_file_itself(tmp_path: Path) -> None:
    """``pip wheel`` from the checkout: the archive lists every package (no lab, no tests)."""
    import shutil
    import subprocess
    import sys

    shutil.rmtree(ROOT / "build", ignore_errors=True)  # stale modules would ship again
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "--wheel-dir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("mailprobe-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packaged = sorted(n.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
                      for n in names if n.endswith(".py"))
    assert packaged == source_modules()
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for command in COMMANDS:
        assert f"{command} = " in text
