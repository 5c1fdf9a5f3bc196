"""The ``mailprobe`` command: the jobs that are not Nagios plugins, as subcommands.

``mailprobe cron`` runs the checks for a list of mailers and mails postmasters on regressions
(also installed as ``mailprobe-cron``); ``mailprobe report`` audits mailers at once (text, JSON,
HTML); ``mailprobe serve`` is the same audit as a web page. Each subcommand's module has its
own ``main(argv, prog)``; this module only dispatches, so ``mailprobe --help`` stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mailprobe import __version__

#: subcommand -> (module with main(argv, prog), one line of help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "cron": ("mailprobe.cron",
             "run the checks for the mailers in a config file; mail postmasters on changes"),
    "report": ("mailprobe.report",
               "audit mailers at once: relay, DNSBL, identity, MX/SPF/DMARC, GeoIP (text, "
               "JSON, HTML)"),
    "serve": ("mailprobe.web.serve",
              "the one-click audit as a web page (form, report filling in as probes finish)"),
    "relaytest": ("mailprobe.service.cli",
                  "the relay-test request service: receive requests by mail, test, report"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailprobe",
        description="Audit mail servers as a spammer, a blacklist operator and a receiving MTA "
                    "see them. The Nagios/Icinga plugins are separate commands (check_open_relay, "
                    "check_dnsbl, check_banner_rdns, check_spf_mx, check_port_exposure, "
                    "check_backscatter, check_smtp_smuggling).",
        epilog="Run 'mailprobe COMMAND --help' for a command's options.")
    parser.add_argument("-V", "--version", action="version", version=f"mailprobe {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, text) in SUBCOMMANDS.items():
        commands.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints help, version or the error, and exits
        parser.print_help()
        return 2
    module_name, _ = SUBCOMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    result: int = module.main(argv[1:], prog=f"mailprobe {argv[0]}")
    return result


if __name__ == "__main__":
    sys.exit(main())
