"""Shared plugin glue on nagiosplugin: options, the time budget, output and exit codes.

Every plugin's ``main()`` hands :func:`run` a parser and a function that builds a
:class:`nagiosplugin.Check`. :func:`run` guarantees the Monitoring Plugins contract:

* one status line ``NAME STATE - summary | perfdata``, then long output;
* exit 0/1/2/3; bad options are UNKNOWN (exit 3) with one line, not argparse's exit 2;
* the whole check lives inside ``-t``: probes get a :class:`Deadline` a little shorter than
  ``-t`` so they can report what they found, and a SIGALRM backstop ends anything left;
* no traceback on stdout: an unexpected error is one UNKNOWN line (the traceback goes to
  stderr with ``-vvv``);
* every line printed passes :func:`sanitise` (printable, one line, bounded): nothing from the
  network can forge a status line or reach the terminal as a control character, and the
  status line has one length limit for every plugin (:func:`shorten_summary`).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

import nagiosplugin

from mailprobe import __version__
from mailprobe.findings import CRITICAL, LEVEL_NAMES, OK, SEVERITY, UNKNOWN, WARNING, Finding
from mailprobe.net.addresses import unusable_reason
from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.dns import DNSFailure, Nameserver, is_ip_address

STATE_NAMES = LEVEL_NAMES
# SEVERITY, the one ranking rule, lives in mailprobe.findings (reports use it too).
# Seconds kept back from -t for turning findings into output before the backstop fires.
REPORT_MARGIN = 0.4


class UsageError(Exception):
    """A bad option: reported as UNKNOWN with one line."""


class PluginArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad options as an exception instead of exit 2 + usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def nagios_range(text: str) -> nagiosplugin.Range:
    """argparse type for ``-w``/``-c``: Nagios ranges (``10``, ``10:``, ``~:10``, ``@1:5``)."""
    try:
        return nagiosplugin.Range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid range {text!r}: {exc}") from exc


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"invalid seconds {text!r}: give a number from 0 to 3600")
    return value


def port_number(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: give a number from 1 to 65535")
    return int(text)


def nameserver(text: str) -> Nameserver:
    try:
        return Nameserver.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def make_parser(name: str, description: str, *, default_timeout: float,
                default_port: int | None = 25) -> PluginArgumentParser:
    """A parser with the options every plugin shares (DESIGN.md, plugin conventions)."""
    parser = PluginArgumentParser(
        prog=name, description=description, add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = parser.add_argument_group("common options")
    common.add_argument("-h", "--help", action="help", help="show this help and exit")
    common.add_argument("-V", "--version", action="version",
                        version=f"{name} (mailprobe) {__version__}")
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="more detail; -vvv adds the SMTP/DNS transcript")
    common.add_argument("-t", "--timeout", type=positive_seconds, default=default_timeout,
                        metavar="SECONDS",
                        help=f"time budget for the whole check (default {default_timeout:g})")
    common.add_argument("--nameserver", type=nameserver, action="append", metavar="HOST[:PORT]",
                        help="resolver to ask for every DNS look-up (default: the system's)")
    if default_port is not None:
        common.add_argument("-p", "--port", type=port_number, default=default_port,
                            help=f"SMTP port (default {default_port})")
        common.add_argument("--source-address", metavar="ADDRESS",
                            help="local address to speak from (the probe's vantage point)")
        family = common.add_mutually_exclusive_group()
        family.add_argument("-4", dest="ipv4", action="store_true", help="use IPv4 only")
        family.add_argument("-6", dest="ipv6", action="store_true", help="use IPv6 only")
    return parser


# The options several plugins share, defined once so that every tool spells them alike
# (DESIGN.md). Older spellings stay as aliases so existing service definitions keep working.

def add_hostname(group: argparse._ArgumentGroup, help: str, *, required: bool = False) -> None:
    """``-H/--hostname``: the mail server (a name or an address)."""
    group.add_argument("-H", "--hostname", metavar="HOST", required=required, help=help)


def add_mail_domain(group: argparse._ArgumentGroup, help: str, *,
                    repeatable: bool = False) -> None:
    """``--mail-domain`` (aliases ``--domain``, ``-D``): the mail domain of the server."""
    group.add_argument("--mail-domain", "--domain", "-D", dest="mail_domain", metavar="DOMAIN",
                       action="append" if repeatable else "store", help=help)


def add_helo(group: argparse._ArgumentGroup, help: str) -> None:
    """``--helo`` (alias ``--ehlo``): the name the probe greets with."""
    group.add_argument("--helo", "--ehlo", dest="helo", metavar="NAME", help=help)


def add_command_timeout(group: argparse._ArgumentGroup, *, default: float = 20.0,
                        more: str = "") -> None:
    """``--command-timeout``: the wait for each SMTP reply, inside ``-t``."""
    group.add_argument("--command-timeout", type=positive_seconds, default=default,
                       metavar="SECONDS",
                       help=f"wait per SMTP command (default {default:g}){more}")


def add_local_recipient(group: argparse._ArgumentGroup) -> None:
    """``--local-recipient``: the control, a local address the server must accept."""
    group.add_argument("--local-recipient", metavar="ADDRESS",
                       help="control recipient that must be accepted (default "
                            "postmaster@DOMAIN)")


def add_outside_address(group: argparse._ArgumentGroup, role: str) -> None:
    """``--external-domain``/``--external-user``: the outside address the probe uses as
    ``role`` (recipient of the relay attempts, sender of the RCPT test)."""
    group.add_argument("--external-domain", default="example.net", metavar="DOMAIN",
                       help=f"outside {role} domain (default example.net, RFC 2606)")
    group.add_argument("--external-user", default="relaytest", metavar="LOCALPART",
                       help=f"outside {role} local part (default relaytest)")


def add_list_tests(group: argparse._ArgumentGroup, catalogue: Callable[[], str],
                   help: str) -> None:
    """``--list-tests``: print ``catalogue()`` (the plugin's tests as data) and exit 0."""

    class ListTests(argparse.Action):
        def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
            super().__init__(option_strings, dest, nargs=0, help=help)

        def __call__(self, *args: object, **kwargs: object) -> None:
            sys.stdout.write(catalogue())
            sys.exit(0)

    group.add_argument("--list-tests", action=ListTests)


def id_list(text: str | None) -> list[str] | None:
    """The ids of ``--tests``/``--skip`` (comma-separated); None when the option is absent."""
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


_HOST_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")


def host_name_problem(text: str) -> str | None:
    """Why ``text`` is neither an IP address nor a host name (None when it is one)."""
    try:
        ipaddress.ip_address(text)
        return None
    except ValueError:
        pass
    try:
        ascii_name = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError:
        return "not a valid international host name"
    labels = ascii_name[:-1].split(".") if ascii_name.endswith(".") else ascii_name.split(".")
    if not ascii_name or len(ascii_name) > 254 or not all(_HOST_LABEL.match(x) for x in labels):
        return "not an IP address or a host name"
    if labels[-1].isdigit():
        return "not a valid IP address (and a host name cannot end in a number)"
    return None


def check_common_values(args: argparse.Namespace) -> None:
    """Values of the common options argparse cannot judge alone: -H, --source-address."""
    host = getattr(args, "hostname", None)
    if host:
        problem = host_name_problem(host)
        if problem:
            raise UsageError(f"-H {printable(host)!r}: {problem}")
        if is_ip_address(host) and unusable_reason(host):
            raise UsageError(f"-H {host}: cannot be a mail server ({unusable_reason(host)})")
    source = getattr(args, "source_address", None)
    if source:
        try:
            ipaddress.ip_address(source)
        except ValueError:
            raise UsageError(f"--source-address {printable(source)!r}: "
                             "give an IP address of this host") from None


def printable(text: str) -> str:
    """``text`` without control characters (for echoing a bad option)."""
    return sanitise(text, 100)


# Every string printed goes through sanitise(): text from the network (banners, EHLO names,
# DNSBL reasons, certificate names, SPF records) must not forge a second status line or put
# terminal controls on the screen. One limit for every plugin's status line (the summary before
# the perfdata) and one for each long-output line.
SUMMARY_LIMIT = 500
LINE_LIMIT = 1000
_LINE_BREAKS = dict.fromkeys(map(ord, "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"), " ")


def sanitise(text: str, limit: int | None = LINE_LIMIT) -> str:
    """One printable line of at most ``limit`` characters: line breaks become spaces, other
    control and format characters (ESC, NUL, bidi overrides, lone surrogates) ``?``, and ``|``
    (the perfdata separator) ``!``."""
    line = text.translate(_LINE_BREAKS).replace("|", "!")
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    return line if limit is None or len(line) <= limit else line[:limit - 3] + "..."


def shorten_summary(summary: str, limit: int = SUMMARY_LIMIT) -> str:
    """A summary of at most ``limit`` characters: the leading ``; ``-separated parts that fit
    (summaries name the worst problems first), then how many more the long output holds."""
    if len(summary) <= limit:
        return summary
    parts = summary.split("; ")
    for count in range(len(parts) - 1, 0, -1):
        tail = f"; and {len(parts) - count} more (see the long output)"
        text = "; ".join(parts[:count])
        if len(text) + len(tail) <= limit:
            return text + tail
    tail = f"; and {len(parts) - 1} more (see the long output)" if len(parts) > 1 else ""
    return parts[0][:limit - len(tail) - 3] + "..." + tail


def status_line(name: str, state: str, summary: str, perfdata: str = "") -> str:
    """``NAME STATE - summary | perfdata`` with the summary sanitised and shortened."""
    text = shorten_summary(sanitise(summary.strip(), None))
    line = f"{name} {state}" + (f" - {text}" if text else "")
    return line + (f" | {perfdata}" if perfdata else "")


def long_output_lines(lines: Sequence[str]) -> list[str]:
    """The long output, each line sanitised on its own (a line break inside one becomes a
    space: it can never start a line of its own)."""
    return [sanitise(line) for line in lines]


def render(name: str, check: nagiosplugin.Check) -> tuple[str, int]:
    """The plugin's stdout and exit code for an evaluated check."""
    perfdata = " ".join(p for p in check.perfdata if p)
    status = status_line(name, str(check.state).upper(), check.summary_str, perfdata)
    long_output = check.verbose_str
    if isinstance(long_output, str):
        long_output = [long_output] if long_output else []
    lines = [status, *long_output_lines(long_output)]
    return "\n".join(lines) + "\n", check.exitcode


def fail(name: str, state: int, message: str, details: Sequence[str] = ()) -> NoReturn:
    """Print one status line (and optional long output) and exit with ``state``."""
    out = [status_line(name, STATE_NAMES[state], message), *long_output_lines(details)]
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    sys.exit(state)


class _Backstop(BaseException):
    """Raised by SIGALRM when the check overruns ``-t`` despite the deadline."""


def run(
    name: str,
    parser: PluginArgumentParser,
    build: Callable[[argparse.Namespace, Deadline], nagiosplugin.Check],
    argv: Sequence[str] | None = None,
) -> NoReturn:
    """Parse options, build and run the check within ``-t``, print, exit."""
    try:
        args = parser.parse_args(argv)
        check_common_values(args)
    except UsageError as exc:
        fail(name, UNKNOWN, f"bad option: {exc} (see --help)")
    verbose = min(args.verbose, 3)
    args.verbose = verbose
    budget = args.timeout
    deadline = Deadline(max(budget - REPORT_MARGIN, budget * 0.8), announced=budget)

    def on_alarm(signum: int, frame: object) -> None:
        raise _Backstop()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, budget + 0.3)
    try:
        check = build(args, deadline)
        check()
        output, code = render(name, check)
    except _Backstop:
        fail(name, UNKNOWN, f"check did not finish within -t {budget:g}s")
    except BudgetExhausted as exc:
        fail(name, UNKNOWN, str(exc))
    except DNSFailure as exc:
        fail(name, UNKNOWN, str(exc))
    except UsageError as exc:
        fail(name, UNKNOWN, f"bad option: {exc}")
    except Exception as exc:  # the contract: never a traceback on stdout
        if verbose >= 3:
            traceback.print_exc(file=sys.stderr)
        fail(name, UNKNOWN, f"internal error: {type(exc).__name__}: {exc} (-vvv for details)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    sys.stdout.write(output)
    sys.stdout.flush()
    sys.exit(code)


_STATES: dict[int, nagiosplugin.state.ServiceState] = {
    OK: nagiosplugin.Ok, WARNING: nagiosplugin.Warn,
    CRITICAL: nagiosplugin.Critical, UNKNOWN: nagiosplugin.Unknown}


def severity(state: nagiosplugin.state.ServiceState | int) -> int:
    """Rank of a state under the one ranking rule (see SEVERITY)."""
    return SEVERITY[int(state)]


def worst(results: nagiosplugin.Results) -> nagiosplugin.state.ServiceState:
    """The state of a set of results: the most severe (UNKNOWN when there are none)."""
    states = [result.state for result in results]
    return max(states, key=severity) if states else nagiosplugin.Unknown


def ranked(results: nagiosplugin.Results) -> list[nagiosplugin.Result]:
    """The results, most severe first under the one ranking rule (nagiosplugin iterates them
    by exit code, UNKNOWN before CRITICAL); equal states keep their order."""
    return sorted(results, key=lambda r: -severity(r.state))


def problem_texts(results: nagiosplugin.Results) -> list[str]:
    """The texts of the non-OK results, most severe first, each once: a status line built from
    them names a proven problem and what could not be determined alike."""
    bad = [r for r in ranked(results) if r.state != nagiosplugin.Ok and (r.hint or str(r))]
    return list(dict.fromkeys(str(r.hint or r) for r in bad))


class Check(nagiosplugin.Check):
    """nagiosplugin's Check with the one ranking rule: its state and exit code are the most
    *severe* result's, so a proven CRITICAL is never reported as UNKNOWN."""

    @property
    def state(self) -> nagiosplugin.state.ServiceState:
        return worst(self.results)

    @property
    def exitcode(self) -> int:
        return int(self.state)


class FindingContext(nagiosplugin.Context):
    """Evaluates a Metric whose value is a :class:`~mailprobe.findings.Finding` (no perfdata)."""

    def __init__(self, name: str = "finding") -> None:
        super().__init__(name)

    def evaluate(self, metric: nagiosplugin.Metric, resource: object) -> nagiosplugin.Result:
        finding: Finding = metric.value
        return nagiosplugin.Result(_STATES[finding.level], finding.text, metric)


def finding_metric(name: str, state: int, text: str) -> nagiosplugin.Metric:
    return nagiosplugin.Metric(name, Finding(state, name, text), context="finding")


class ProblemSummary(nagiosplugin.Summary):
    """OK: a prepared sentence. Otherwise: the hints of the non-OK results, worst first."""

    def __init__(self, ok_text: str, long_output: Sequence[str] = ()) -> None:
        self.ok_text = ok_text
        self.long_output = list(long_output)

    def ok(self, results: nagiosplugin.Results) -> str:
        return self.ok_text

    def problem(self, results: nagiosplugin.Results) -> str:
        return "; ".join(problem_texts(results)) or str(ranked(results)[0])

    def verbose(self, results: nagiosplugin.Results) -> list[str]:
        return self.long_output


class ThresholdContext(nagiosplugin.ScalarContext):
    """A ScalarContext (ranges, perfdata) whose non-OK results say ``describe(metric)``."""

    def __init__(self, name: str, warning: nagiosplugin.Range | str | None = None,
                 critical: nagiosplugin.Range | str | None = None,
                 describe: Callable[[nagiosplugin.Metric], str] | None = None) -> None:
        super().__init__(name, warning, critical)
        self.problem_text = describe

    def evaluate(self, metric: nagiosplugin.Metric, resource: object) -> nagiosplugin.Result:
        result = super().evaluate(metric, resource)
        if result.state == nagiosplugin.Ok or self.problem_text is None:
            return result
        return nagiosplugin.Result(result.state, self.problem_text(metric), metric)
