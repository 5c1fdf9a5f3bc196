"""contrib/icinga: the CheckCommands match the plugins, a real icinga2 accepts the config, and
runs the four checks through it against the loopback lab (Postfix + Knot), recording the states
the plugins report."""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import pwd
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.icinga import CheckResult, Icinga2, icinga2_available, parse_records
from lab.knot import KnotServer
from lab.process import LabError
from tests.fixtures.installed import RUN_AS, InstalledTree
from tests.fixtures.postfix import OUTSIDE

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib" / "icinga"
CONFIG_FILES = [CONTRIB / name for name in
                ("commands.conf", "timeperiods.conf", "services.conf", "notifications.conf")]
PLUGINS = {"open_relay": "open_relay", "dnsbl": "dnsbl", "banner_rdns": "banner_rdns",
           "spf_mx": "spf_mx", "port_exposure": "port_exposure", "backscatter": "backscatter",
           "smtp_smuggling": "smtp_smuggling"}   # CheckCommand name -> mailprobe.checks module
#: Options a CheckCommand leaves out on purpose (they print something and exit).
NOT_ARGUMENTS = {"-h", "--help", "-V", "--version", "--list-tests"}

needs_icinga = pytest.mark.skipif(not icinga2_available(), reason="icinga2 is not installed")


# --- the CheckCommands against the plugins' own argparse parsers ------------------------------

def command_blocks(text: str) -> dict[str, str]:
    """CheckCommand name -> its body (commands.conf keeps one object per top-level block)."""
    blocks = {}
    for match in re.finditer(r'^object CheckCommand "([^"]+)" \{\n(.*?)^\}', text, re.M | re.S):
        blocks[match.group(1)] = match.group(2)
    return blocks


def arguments(body: str) -> dict[str, str]:
    """Argument key -> its attribute block text."""
    return {m.group(1): m.group(2)
            for m in re.finditer(r'^\t\t"(-[^"]+)" = \{\n(.*?)^\t\t\}', body, re.M | re.S)}


def plugin_parser(module_name: str) -> argparse.ArgumentParser:
    """The plugin's parser, whatever its builder function is called (build_parser, ...)."""
    module = importlib.import_module(f"mailprobe.checks.{module_name}")
    for name, func in inspect.getmembers(module, inspect.isfunction):
        if func.__module__ == module.__name__ and name.endswith("parser") \
                and not inspect.signature(func).parameters:
            parser = func()
            if isinstance(parser, argparse.ArgumentParser):
                return parser
    raise AssertionError(f"no parser builder in mailprobe.checks.{module_name}")


def test_every_plugin_has_a_check_command() -> None:
    blocks = command_blocks((CONTRIB / "commands.conf").read_text())
    assert set(blocks) == set(PLUGINS)
    for name, body in blocks.items():
        assert f'command = [ MailprobePluginDir + "/check_{name}" ]' in body


@pytest.mark.parametrize("command", sorted(PLUGINS))
def test_check_command_arguments_match_the_plugin(command: str) -> None:
    """Every argument is a real option and every option (but -h/-V/--list-tests) is there, with
    set_if for flags, repeat_key for repeatable options, and a var of the plugin's prefix."""
    body = command_blocks((CONTRIB / "commands.conf").read_text())[command]
    args = arguments(body)
    parser = plugin_parser(PLUGINS[command])
    by_option = {opt: action for action in parser._actions for opt in action.option_strings}
    covered = set()
    for key, attrs in args.items():
        assert key in by_option, f"{command}: {key} is not an option of check_{command}"
        action = by_option[key]
        assert id(action) not in covered, f"{command}: two arguments for {action.option_strings}"
        covered.add(id(action))
        var = re.search(r'(?:value|set_if) = "\$([a-z0-9_]+)\$"', attrs)
        assert var and var.group(1).startswith(command + "_"), f"{command} {key}: {attrs}"
        assert "description = " in attrs
        if action.nargs == 0:   # store_true / count: a flag
            assert "set_if = " in attrs and "value = " not in attrs, f"{command} {key}"
        else:
            assert "value = " in attrs and "set_if" not in attrs, f"{command} {key}"
        repeatable = isinstance(action, argparse._AppendAction)
        assert ("repeat_key = true" in attrs) == repeatable, f"{command} {key} repeat_key"
    missing = [action.option_strings for action in parser._actions
               if id(action) not in covered and not set(action.option_strings) & NOT_ARGUMENTS]
    assert not missing, f"{command}: options without an argument: {missing}"


def test_perfdata_writer_records_are_parsed() -> None:
    text = ("TIMET::1\tHOSTNAME::h\tSERVICEDESC::s\tSERVICESTATE::WARNING\tSERVICESTATEID::1\t"
            "SERVICECHECKCOMMAND::dnsbl\tSERVICEPERFDATA::x=1\tSERVICEOUTPUT::DNSBL WARNING - a\n"
            "long ::1 line\n"
            "TIMET::2\tHOSTNAME::h\tSERVICEDESC::t\tSERVICESTATE::OK\tSERVICESTATEID::0\t"
            "SERVICECHECKCOMMAND::spf_mx\tSERVICEPERFDATA::\tSERVICEOUTPUT::SPF_MX OK - b\n")
    first, second = parse_records(text)
    assert first == CheckResult("h", "s", "WARNING", 1, "dnsbl", "DNSBL WARNING - a\nlong ::1 line",
                                "x=1", 1)
    assert first.status_line == "DNSBL WARNING - a"
    assert (second.service, second.state, second.output) == ("t", "OK", "SPF_MX OK - b")


def test_quarterly_time_period_names_the_third_thursdays() -> None:
    text = (CONTRIB / "timeperiods.conf").read_text()
    ranges = re.findall(r'^\t\t"([a-z0-9 ]+)" = "([0-9:-]+)"', text, re.M)
    assert ranges == [(f"thursday 3 {month}", "00:00-24:00")
                      for month in ("february", "may", "august", "november")]


# --- a real icinga2: validation -----------------------------------------------------------------

DUAL_STACK_HOST = """
object Host "mx1.example.org" {
  check_command = "dummy"
  address = "192.0.2.25"
  address6 = "2001:db8::25"
  vars.mailer = true
  vars.mail_domain = "example.org"
  vars.postmaster = "postmaster@example.org"
}
object Host "www.example.org" {
  check_command = "dummy"
  address = "192.0.2.80"
}
"""


@needs_icinga
def test_icinga2_validates_the_contrib_config() -> None:
    icinga = Icinga2(CONFIG_FILES, extra=DUAL_STACK_HOST)
    try:
        result = icinga.validate()
    finally:
        icinga.cleanup()
    assert result.ok, "\n".join(result.errors) or result.output
    # 7 services over IPv4 (banner, dnsbl, spf/mx, relay daily + quarterly, backscatter,
    # smuggling) + 3 over IPv6, each with a postmaster notification; nothing for the host
    # without vars.mailer.
    assert result.count("Services") == 10
    assert result.count("Notifications") == 10
    assert result.count("TimePeriod") == 1
    assert result.count("NotificationCommand") == 1


@needs_icinga
def test_icinga2_rejects_a_broken_config() -> None:
    """The validation above can fail: a service of an unknown command is refused."""
    broken = DUAL_STACK_HOST + """
apply Service "broken" { check_command = "no_such_command"; assign where host.vars.mailer }
"""
    icinga = Icinga2(CONFIG_FILES, extra=broken)
    try:
        result = icinga.validate()
    finally:
        icinga.cleanup()
    assert not result.ok
    assert any("no_such_command" in line for line in result.output.splitlines())


# --- a real icinga2 daemon: the command lines it builds, the time period it honours -------------

FAKE_PLUGIN = """#!/bin/sh
password=${MAILPROBE_MAILBOX_PASSWORD:+ MAILPROBE_MAILBOX_PASSWORD=$MAILPROBE_MAILBOX_PASSWORD}
echo "FAKE OK - $*$password"
"""

ARGV_HOSTS = """
object Host "mx-full" {
  check_command = "dummy"
  address = "127.0.0.1"
  address6 = "::1"
  vars.mailer = true
  vars.mail_domain = "example.org"
  vars.postmaster = "postmaster@example.org"
  vars.mail_port = 2525
  vars.mail_source_address = "127.0.0.2"
  vars.mail_nameserver = "127.0.0.1:5353"
  vars.mail_outbound_address = "192.0.2.10"
  vars.dnsbl_zones = [ "bl.example.net", "dbl.example.net:2:domain" ]
  vars.banner_rdns_no_starttls_ok = true
}
object Host "mx-bare" {
  check_command = "dummy"
  address = "127.0.0.3"
  vars.mailer = true
}
object Host "site-net" {
  check_command = "dummy"
  vars.port_exposure_networks = [ "127.77.0.0/28", "::1/128" ]
  vars.port_exposure_allow = [ "127.77.0.4", "mx.example.org" ]
  vars.port_exposure_netbios = true
  vars.mail_nameserver = "127.0.0.1:5353"
}
object Host "mx-proof" {
  check_command = "dummy"
  address = "127.0.0.4"
  vars.mailer = true
  vars.mail_domain = "example.org"
  vars.mail_smuggling_test = false
  vars.backscatter_bounce_to = "ops@example.net"
  vars.backscatter_mailbox = "imaps://ops@imap.example.net/INBOX"
  vars.backscatter_mailbox_password = "s3cret"
}
"""


def period_ranges(day: datetime.date, ordinal: int) -> str:
    return f'"{day.strftime("%A").lower()} {ordinal} {day.strftime("%B").lower()}" = "00:00-24:00"'


def period_services(today: datetime.date) -> str:
    """Two services with check periods in the contrib form "WEEKDAY N MONTH": one naming today,
    one naming the same weekday with another ordinal."""
    ordinal = (today.day - 1) // 7 + 1
    other = ordinal % 4 + 1
    return f"""
object TimePeriod "test-today" {{ ranges = {{ {period_ranges(today, ordinal)} }} }}
object TimePeriod "test-not-today" {{ ranges = {{ {period_ranges(today, other)} }} }}
object Service "in-period" {{
  host_name = "mx-bare"; check_command = "spf_mx"; check_period = "test-today"
}}
object Service "out-of-period" {{
  host_name = "mx-bare"; check_command = "spf_mx"; check_period = "test-not-today"
}}
"""


@pytest.fixture(scope="module")
def fake_icinga(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Icinga2]:
    if not icinga2_available():
        pytest.skip("icinga2 is not installed")
    plugin_dir = tmp_path_factory.mktemp("fake-plugins")
    for name in PLUGINS:
        path = plugin_dir / f"check_{name}"
        path.write_text(FAKE_PLUGIN)
        path.chmod(0o755)
    plugin_dir.chmod(0o755)
    icinga = Icinga2(CONFIG_FILES, extra=ARGV_HOSTS + period_services(datetime.date.today()),
                     defines={"MailprobePluginDir": str(plugin_dir)})
    try:
        yield icinga.start()
    finally:
        icinga.cleanup()


EXPECTED_ARGV = {
    ("mx-full", "mail-open-relay"):
        "--mail-domain example.org --nameserver 127.0.0.1:5353 --source-address 127.0.0.2 "
        "-H 127.0.0.1 -p 2525 -t 60 -v",
    ("mx-full", "mail-open-relay-quarterly"):
        "--command-timeout 60 --depth data --mail-domain example.org --nameserver 127.0.0.1:5353 "
        "--source-address 127.0.0.2 -H 127.0.0.1 -p 2525 -t 300 -v",
    ("mx-full", "mail-open-relay-ipv6"):
        "--mail-domain example.org --nameserver 127.0.0.1:5353 --source-address 127.0.0.2 "
        "-6 -H ::1 -p 2525 -t 60 -v",
    ("mx-full", "mail-dnsbl"):
        "--mail-domain example.org --nameserver 127.0.0.1:5353 --zone bl.example.net "
        "--zone dbl.example.net:2:domain -H 192.0.2.10 -t 30",
    ("mx-full", "mail-dnsbl-ipv6"):   # the domain is asked once, over IPv4
        "--nameserver 127.0.0.1:5353 --zone bl.example.net --zone dbl.example.net:2:domain "
        "-6 -H ::1 -t 30",
    ("mx-full", "mail-banner-rdns"):
        "--nameserver 127.0.0.1:5353 --no-starttls-ok --source-address 127.0.0.2 "
        "-H 127.0.0.1 -p 2525 -t 30",
    ("mx-full", "mail-spf-mx"):
        "--mail-domain example.org --nameserver 127.0.0.1:5353 --source-address 127.0.0.2 "
        "-H 127.0.0.1 -p 2525 -t 30",
    ("mx-full", "mail-backscatter"):
        "--mail-domain example.org --nameserver 127.0.0.1:5353 --source-address 127.0.0.2 "
        "-H 127.0.0.1 -p 2525 -t 90 -v",
    ("mx-full", "mail-smtp-smuggling"):
        "--mail-domain example.org --nameserver 127.0.0.1:5353 --source-address 127.0.0.2 "
        "-H 127.0.0.1 -p 2525 -t 30 -v",
    # the bounce proof, opted into by the host; its password only in the environment
    ("mx-proof", "mail-backscatter"):
        "--bounce-to ops@example.net --mail-domain example.org --mailbox "
        "imaps://ops@imap.example.net/INBOX -H 127.0.0.4 -t 90 -v "
        "MAILPROBE_MAILBOX_PASSWORD=s3cret",
    # no custom vars: only the address and the timeout
    ("mx-bare", "mail-open-relay"): "-H 127.0.0.3 -t 60 -v",
    ("mx-bare", "mail-dnsbl"): "-H 127.0.0.3 -t 30",
    ("mx-bare", "mail-banner-rdns"): "-H 127.0.0.3 -t 30",
    # a network, not a mailer: the exposure scan only
    ("site-net", "site-port-exposure"):
        "--allow 127.77.0.4 --allow mx.example.org --nameserver 127.0.0.1:5353 --netbios "
        "-N 127.77.0.0/28 -N ::1/128 -t 60",
}


@needs_icinga
def test_icinga2_builds_the_documented_command_lines(fake_icinga: Icinga2) -> None:
    since = time.time() - 1
    for host, service in EXPECTED_ARGV:
        fake_icinga.force_check(host, service)
    results = fake_icinga.wait_for(EXPECTED_ARGV, timeout=30, since=since)
    argv = {key: result.output.removeprefix("FAKE OK - ").strip()
            for key, result in results.items()}
    assert argv == EXPECTED_ARGV


@needs_icinga
def test_icinga2_honours_weekday_ordinal_month_periods(fake_icinga: Icinga2) -> None:
    """The contrib period's form "thursday 3 february" means "the 3rd such weekday of the
    month": a non-forced check runs in a period naming today, is skipped in one naming another
    ordinal of today's weekday."""
    if datetime.datetime.now().time() > datetime.time(23, 59):
        pytest.skip("too close to midnight")
    since = time.time() - 1
    fake_icinga.command(f"SCHEDULE_SVC_CHECK;mx-bare;out-of-period;{int(time.time())}")
    fake_icinga.command(f"SCHEDULE_SVC_CHECK;mx-bare;in-period;{int(time.time())}")
    fake_icinga.wait_for([("mx-bare", "in-period")], timeout=30, since=since)
    time.sleep(1.5)  # the skipped check was due at the same second; give it a rotation
    latest = fake_icinga.latest()
    assert ("mx-bare", "out-of-period") not in latest or \
        latest[("mx-bare", "out-of-period")].timestamp < since


# --- a real icinga2 running the real plugins against the loopback lab ---------------------------

LAB_ZONES = {
    "relaylab.test": ('@ MX 10 mx\nmx A 127.0.0.1\n@ TXT "v=spf1 ip4:127.0.0.1 -all"\n'
                      '_dmarc TXT "v=DMARC1; p=reject"\n'),
    "openlab.test": '@ MX 10 mx.relaylab.test.\n@ TXT "v=spf1 +all"\n',
    "0.0.127.in-addr.arpa": "1 PTR mx.relaylab.test.\n",
    # an RFC 5782 list: its test entry 127.0.0.2 and one "outbound address" listed
    "bl.test": ('2.0.0.127 A 127.0.0.2\n2.0.0.127 TXT "test entry"\n'
                '10.2.0.192 A 127.0.0.2\n10.2.0.192 TXT "listed, see http://bl.test/"\n'),
    # a domain list with its RFC 5782 test entry (the lab's domains are not listed)
    "dbl.test": 'test A 127.0.1.2\n',
}

MAILER_SERVICES = ("mail-open-relay", "mail-open-relay-quarterly", "mail-dnsbl",
                   "mail-banner-rdns", "mail-spf-mx")


def lab_host(name: str, port: int, domain: str, nameserver: str, outbound: str,
             extra: str = "") -> str:
    return f"""
object Host "{name}" {{
  check_command = "dummy"
  address = "127.0.0.1"
  vars.mailer = true
  vars.mail_domain = "{domain}"
  vars.postmaster = "postmaster@{domain}"
  vars.mail_port = {port}
  vars.mail_source_address = "{OUTSIDE}"
  vars.mail_nameserver = "{nameserver}"
  vars.mail_outbound_address = "{outbound}"
  vars.dnsbl_zones = [ "bl.test", "dbl.test:domain" ]
  {extra}
}}
"""


@pytest.fixture(scope="module")
def lab_dns() -> Iterator[KnotServer]:
    server = KnotServer(LAB_ZONES)
    try:
        yield server.start()
    except LabError as exc:
        pytest.skip(f"knotd: {exc}")
    finally:
        server.stop()


@needs_icinga
@pytest.mark.integration
def test_icinga2_runs_the_four_checks_against_the_lab(postfix_open, postfix_closed,
                                                       lab_dns: KnotServer,
                                                       installed: InstalledTree) -> None:
    """The contrib config, unchanged, with MailprobePluginDir = the plugin directory of a real
    install (``./dev install``): icinga2 runs as the unprivileged nagios user, each service's
    installed plugin as that user, and records the state it reported."""
    hosts = (lab_host("mx-open", postfix_open.port, "openlab.test", lab_dns.nameserver,
                      "192.0.2.10")
             + lab_host("mx-closed", postfix_closed.port, "relaylab.test", lab_dns.nameserver,
                        "192.0.2.20", extra="vars.banner_rdns_no_starttls_ok = true"))
    icinga = Icinga2(CONFIG_FILES, extra=hosts, user=RUN_AS,
                     defines={"MailprobePluginDir": str(installed.plugin_dir)},
                     env={"PATH": "/usr/bin:/bin"})
    wanted = [(host, service) for host in ("mx-open", "mx-closed") for service in MAILER_SERVICES]
    try:
        icinga.start()
        assert icinga.process.proc is not None
        assert process_user(icinga.process.proc.pid) == RUN_AS
        since = time.time() - 1
        for host, service in wanted:
            icinga.force_check(host, service)
        results = icinga.wait_for(wanted, timeout=45, since=since)
    finally:
        icinga.cleanup()
    states = {key: (r.state, r.status_line.split(" - ")[0]) for key, r in results.items()}
    assert states == {
        ("mx-open", "mail-open-relay"): ("CRITICAL", "OPEN_RELAY CRITICAL"),
        ("mx-open", "mail-open-relay-quarterly"): ("CRITICAL", "OPEN_RELAY CRITICAL"),
        ("mx-open", "mail-dnsbl"): ("WARNING", "DNSBL WARNING"),
        ("mx-open", "mail-banner-rdns"): ("WARNING", "BANNER_RDNS WARNING"),
        ("mx-open", "mail-spf-mx"): ("CRITICAL", "SPF_MX CRITICAL"),
        ("mx-closed", "mail-open-relay"): ("OK", "OPEN_RELAY OK"),
        ("mx-closed", "mail-open-relay-quarterly"): ("OK", "OPEN_RELAY OK"),
        ("mx-closed", "mail-dnsbl"): ("OK", "DNSBL OK"),
        ("mx-closed", "mail-banner-rdns"): ("OK", "BANNER_RDNS OK"),
        ("mx-closed", "mail-spf-mx"): ("OK", "SPF_MX OK"),
    }, {key: r.status_line for key, r in results.items()}
    open_relay = results[("mx-open", "mail-open-relay")]
    assert "relayed=" in open_relay.perfdata
    assert len(open_relay.output.splitlines()) > 1       # -v: one long-output line per attempt
    assert "192.0.2.10 listed" in results[("mx-open", "mail-dnsbl")].status_line
    assert "+all" in results[("mx-open", "mail-spf-mx")].status_line


def process_user(pid: int) -> str:
    """The user a process runs as (its real uid), read from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return pwd.getpwuid(int(line.split()[1])).pw_name
    raise AssertionError(f"no Uid line for process {pid}")
