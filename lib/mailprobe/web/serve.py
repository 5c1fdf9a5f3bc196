"""``mailprobe serve``: the one-click audit as a small web page (Starlette on uvicorn).

Listens on 127.0.0.1 unless told otherwise (``--listen ADDR:PORT``) and tests nothing outside
the ``--allow`` networks. The probe options (``--port``, ``--source-address``,
``--nameserver``, ``--zone``, ``--mail-domain``, ``-t``) are the server-side defaults of every
audit; the relay series stops at RCPT.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence

from mailprobe import __version__
from mailprobe.checks.plugin import PluginArgumentParser, UsageError
from mailprobe.report import add_probe_options, open_geoip, options_from

DEFAULT_LISTEN = "127.0.0.1:8025"


def listen_address(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` or ``[ADDR6]:PORT`` -> (address, port)."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--listen {text!r}: give ADDRESS:PORT, e.g. "
                                         f"{DEFAULT_LISTEN}") from None
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen {text!r}: the port must be 1-65535")
    return host, int(port)


def build_parser(prog: str) -> PluginArgumentParser:
    parser = PluginArgumentParser(
        prog=prog, add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1] if __doc__ else "")
    parser.add_argument("-h", "--help", action="help", help="show this help and exit")
    parser.add_argument("-V", "--version", action="version",
                        version=f"{prog} (mailprobe) {__version__}")
    web = parser.add_argument_group("the page")
    web.add_argument("--listen", type=listen_address, default=listen_address(DEFAULT_LISTEN),
                     metavar="ADDR:PORT", help=f"where to listen (default {DEFAULT_LISTEN})")
    web.add_argument("--allow", action="append", default=[], metavar="CIDR",
                     help="a network the page may test (repeatable; required): any other "
                          "target gets a 403 page and is never touched")
    web.add_argument("--rate", type=int, default=10, metavar="N",
                     help="audits per client per minute (default 10); one at a time")
    web.add_argument("--jobs", type=int, default=4, metavar="N",
                     help="audits running at once, all clients together (default 4)")
    add_probe_options(parser)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "mailprobe serve") -> int:
    from mailprobe.web.guard import ClientLimits, parse_networks

    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
        if not args.allow:
            raise UsageError("give --allow CIDR for each network the page may test")
        try:
            networks = parse_networks(args.allow)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        if args.rate < 1 or args.jobs < 1:
            raise UsageError("--rate and --jobs must be at least 1")
        options = options_from(args)
        geo = open_geoip(args.geoip_db)
    except UsageError as exc:
        sys.stdout.write(f"{prog}: bad option: {exc} (see --help)\n")
        return 2
    import uvicorn

    from mailprobe.web.app import WebConfig, create_app

    app = create_app(WebConfig(options, networks, ClientLimits(args.rate, args.jobs), geo))
    host, port = args.listen
    shown = f"[{host}]" if ":" in host else host
    sys.stdout.write(f"{prog}: http://{shown}:{port}/ (tests only "
                     f"{', '.join(str(n) for n in networks)}); Ctrl-C to stop\n")
    sys.stdout.flush()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
