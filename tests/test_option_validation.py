"""Bad options: every plugin says UNKNOWN in one line and exits 3 (never argparse's exit 2 with a
usage dump), before touching the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_plugin

# Names, a dead nameserver (nothing listens: any look-up would fail fast, never hang), and
# the minimal valid arguments of each plugin.
DEAD_NS = "127.0.0.1:9"
PLUGINS = {
    "check_open_relay": ("OPEN_RELAY", ["-H", "127.0.0.1", "--mail-domain", "lab.test"]),
    "check_dnsbl": ("DNSBL", ["-H", "192.0.2.10", "--zone", "bl.lab.test"]),
    "check_banner_rdns": ("BANNER_RDNS", ["-H", "127.0.0.1"]),
    "check_spf_mx": ("SPF_MX", ["--mail-domain", "lab.test"]),
    "check_backscatter": ("BACKSCATTER", ["-H", "127.0.0.1", "--mail-domain", "lab.test"]),
    "check_smtp_smuggling": ("SMTP_SMUGGLING", ["-H", "127.0.0.1", "--mail-domain", "lab.test"]),
    "check_port_exposure": ("PORT_EXPOSURE", ["-H", "127.0.0.1"]),
}
WITH_PORT = ["check_open_relay", "check_banner_rdns", "check_spf_mx", "check_backscatter",
             "check_smtp_smuggling"]

COMMON_BAD: list[tuple[str, list[str], str]] = [
    ("bad-warning-range", ["-w", "abc"], r"-w|warning|range"),
    ("bad-warning-range-reversed", ["-w", "10:1"], r"-w|warning|range"),
    ("bad-critical-range", ["-c", "x:y"], r"-c|critical|range"),
    ("timeout-zero", ["-t", "0"], r"-t|timeout|seconds"),
    ("timeout-not-a-number", ["-t", "soon"], r"-t|timeout|seconds"),
    ("timeout-nan", ["-t", "nan"], r"-t|timeout|seconds"),
    ("nameserver-not-an-address", ["--nameserver", "dns.example"], r"nameserver"),
    ("nameserver-bad-port", ["--nameserver", "127.0.0.1:99999"], r"nameserver|port"),
    ("unknown-option", ["--frobnicate"], r"frobnicate|unrecognized"),
    ("hostname-with-space", ["-H", "mx example.test"], r"-H|host|name|address"),
    ("hostname-with-newline", ["-H", "mx.example.test\nX-Injected: 1"], r"-H|host|name|address"),
]
PORT_BAD: list[tuple[str, list[str], str]] = [
    ("port-out-of-range", ["-p", "70000"], r"port"),
    ("port-zero", ["-p", "0"], r"port"),
    ("port-negative", ["-p", "-1"], r"port|-p"),
    ("source-address-malformed", ["--source-address", "999.1.2.3"], r"source|address"),
]
SPECIFIC: list[tuple[str, str, list[str], str]] = [
    ("check_open_relay", "unknown-test-id", ["--tests", "plain,no-such-test"],
     r"unknown test id"),
    ("check_open_relay", "unknown-skip-id", ["--skip", "no-such-test"], r"unknown test id"),
    ("check_open_relay", "tests-leave-nothing", ["--tests", "plain", "--skip", "plain"],
     r"no attempt"),
    ("check_open_relay", "bad-external-domain", ["--external-domain", "exa mple"], r"domain"),
    ("check_open_relay", "bad-external-user", ["--external-user", "a b@c"], r"local part"),
    ("check_open_relay", "bad-local-recipient", ["--local-recipient", "nobody"],
     r"local-recipient"),
    ("check_open_relay", "bad-mail-domain", ["--mail-domain", "-lab.test"], r"mail-domain"),
    ("check_open_relay", "mail-domain-with-newline", ["--mail-domain", "lab.test\n"],
     r"mail-domain"),
    ("check_open_relay", "external-user-with-newline", ["--external-user", "u\n"],
     r"external-user"),
    ("check_open_relay", "bad-starttls-choice", ["--starttls", "sometimes"], r"starttls"),
    ("check_open_relay", "bad-command-timeout", ["--command-timeout", "-5"], r"command-timeout"),
    ("check_dnsbl", "bad-zone", ["--zone", "not a zone/x"], r"zone"),
    ("check_dnsbl", "bad-zone-weight", ["--zone", "bl.lab.test:heavy"], r"zone|weight"),
    ("check_dnsbl", "bad-error-state", ["--error-state", "purple"], r"error-state|state"),
    ("check_dnsbl", "bad-query-timeout", ["--query-timeout", "0"], r"query-timeout|seconds"),
    ("check_dnsbl", "dead-list", ["--zone", "dnsbl.sorbs.net"], r"sorbs"),
    ("check_dnsbl", "malformed-address", ["-H", "192.0.2.300"], r"192\.0\.2\.300"),
    ("check_banner_rdns", "bad-cert-days", ["--starttls-cert-days", "5,10"], r"days"),
    ("check_banner_rdns", "bad-expect-name", ["--expect-name", "bad name!"], r"expect-name|name"),
    ("check_spf_mx", "domain-is-an-address", ["--mail-domain", "192.0.2.1"], r"domain"),
    ("check_spf_mx", "domain-malformed", ["--mail-domain", "lab..test"], r"domain"),
]


def cases() -> list[object]:
    params = []
    for plugin in PLUGINS:
        for id_, args, reason in COMMON_BAD:
            params.append(pytest.param(plugin, args, reason, id=f"{plugin}-{id_}"))
        if plugin in WITH_PORT:
            for id_, args, reason in PORT_BAD:
                params.append(pytest.param(plugin, args, reason, id=f"{plugin}-{id_}"))
    for plugin, id_, args, reason in SPECIFIC:
        params.append(pytest.param(plugin, args, reason, id=f"{plugin}-{id_}"))
    return params


def assert_unknown_one_line(plugin: str, run, reason: str) -> None:
    import re

    name = PLUGINS[plugin][0]
    shown = f"\n--- stdout ---\n{run.stdout}--- stderr ---\n{run.stderr}"
    assert run.returncode == 3, f"exit {run.returncode}{shown}"
    lines = run.stdout.splitlines()
    assert len(lines) == 1, f"not one line{shown}"
    assert lines[0].startswith(f"{name} UNKNOWN - "), shown
    assert re.search(reason, lines[0], re.IGNORECASE), f"/{reason}/ not in the line{shown}"
    assert "usage:" not in run.stdout.lower() and "usage:" not in run.stderr.lower(), shown
    assert "Traceback" not in run.stderr, shown
    assert run.seconds < 5, f"took {run.seconds:.1f}s"


@pytest.mark.parametrize(("plugin", "args", "reason"), cases())
def test_bad_option_is_unknown_in_one_line(plugin: str, args: list[str], reason: str) -> None:
    base = PLUGINS[plugin][1]
    # the bad value comes last, so it overrides a valid one in ``base``
    run = run_plugin(plugin, *base, "--nameserver", DEAD_NS, "-t", "3", *args)
    assert_unknown_one_line(plugin, run, reason)


@pytest.mark.parametrize("plugin", ["check_open_relay", "check_dnsbl", "check_banner_rdns"])
def test_missing_hostname(plugin: str) -> None:
    run = run_plugin(plugin, "--nameserver", DEAD_NS, "-t", "3")
    assert_unknown_one_line(plugin, run, r"-H|hostname|required|give")


def test_spf_mx_without_domain_or_host() -> None:
    run = run_plugin("check_spf_mx", "--nameserver", DEAD_NS, "-t", "3")
    assert_unknown_one_line("check_spf_mx", run, r"-D|domain")


@pytest.mark.parametrize("kind", ["missing", "directory", "not-utf8", "empty", "bad-line"])
def test_unreadable_list_file(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "zones.txt"
    if kind == "directory":
        path.mkdir()
    elif kind == "not-utf8":
        path.write_bytes(b"bl.lab.test\n\xff\xfe\x00zone\n")
    elif kind == "empty":
        path.write_text("# nothing but a comment\n")
    elif kind == "bad-line":
        path.write_text("bl.lab.test\nnot/a zone\n")
    run = run_plugin("check_dnsbl", "-H", "192.0.2.10", "--list", str(path),
                     "--nameserver", DEAD_NS, "-t", "3")
    assert_unknown_one_line("check_dnsbl", run, r"--list")


@pytest.mark.parametrize("host", ["mx.lab.test", "mx.lab.test.", "localhost", "127.0.0.1", "::1",
                                  "2001:db8::25", "bücher.example", "_smtp.lab.test",
                                  "a-b.c-d.test"])
def test_valid_hosts_pass(host: str) -> None:
    from mailprobe.checks.plugin import host_name_problem

    assert host_name_problem(host) is None


@pytest.mark.parametrize("host", ["mx example.test", "mx..test", "-mx.test", "mx.test\n",
                                  "192.0.2.300", "1.2.3", "user@mx.test", "[127.0.0.1]",
                                  "a" * 64 + ".test", "mx.test/25", ""])
def test_invalid_hosts_fail(host: str) -> None:
    from mailprobe.checks.plugin import host_name_problem

    assert host_name_problem(host) is not None
