"""The demo: every plugin against a deliberately misconfigured mail domain on loopback.

``python -m lab.demo`` (``./dev demo``) starts, without root:

* a real authoritative DNS server (Knot) on 127.0.0.1 serving the lab's mail domain, its
  reverse zone and a DNS blacklist zone, all with deliberate mistakes;
* the lab's scripted SMTP server on 127.0.0.25, a sloppy MTA that relays the classic holes;

then runs each ``plugins/check_*`` as Icinga would (a fresh process), speaking from 127.0.0.2
(the "outside"), prints the command line, the plugin's real output and its exit code, and stops
everything. See docs/lab.md for what each plugin is expected to find.

With ``--serve`` the lab keeps running and ``mailprobe serve`` (the one-click audit page) is
started against it, allowed to test only the lab's mailer; its URL is printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab.knot import KnotServer
from lab.process import LabError, free_port
from lab.smtpd import Behaviour, RelayPolicy, ScriptedSMTPServer

DOMAIN = "lab.mailprobe.test"
DNSBL_ZONE = f"bl.{DOMAIN}"
REVERSE_ZONE = "0.0.127.in-addr.arpa"
DNS_ADDRESS = "127.0.0.1"  # Knot
MAILER_ADDRESS = "127.0.0.25"  # the misconfigured MTA (127.0.0.1 must never be DNSBL-listed)
OUTSIDE_ADDRESS = "127.0.0.2"  # the probes' vantage point: not trusted by the mailer
SITE_NETWORK = "127.0.0.24/30"  # the "site" check_port_exposure scans: .25 and .26
SANCTIONED_ADDRESS = "127.0.0.26"  # the site's sanctioned mailer, down: the sloppy MTA on .25
#                                    is the unsanctioned listener
MAILER_NAME = f"mx.{DOMAIN}"  # what the banner claims
PTR_NAME = f"smtp.{DOMAIN}"  # what reverse DNS says: not the banner's name, not confirmed

ROOT = Path(__file__).resolve().parents[1]
STATES = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}


def zones() -> dict[str, str]:
    """The lab's zone texts (origin -> zone file text without SOA/NS; Knot adds them)."""
    return {
        DOMAIN: f"""\
@        MX    10 mx
@        MX    20 backup
; SPF with deliberate problems: the deprecated ptr mechanism, a void look-up (old-mail does
; not exist) and +all, which lets the whole Internet send as this domain
@        TXT   "v=spf1 mx ptr a:old-mail.{DOMAIN} include:_spf.{DOMAIN} +all"
_spf     TXT   "v=spf1 ip4:{MAILER_ADDRESS} -all"
; DMARC that only watches (p=none)
_dmarc   TXT   "v=DMARC1; p=none; rua=mailto:postmaster@{DOMAIN}"
ns       A     {DNS_ADDRESS}
mx       A     {MAILER_ADDRESS}
; an MX target must not be an alias (RFC 2181 section 10.3)
backup   CNAME mx
; the mailer's PTR name, whose address is another host: reverse DNS not forward-confirmed
smtp     A     127.0.0.26
""",
        REVERSE_ZONE: f"""\
1        PTR   localhost.
2        PTR   outside.example.net.
25       PTR   {PTR_NAME}.
26       PTR   {PTR_NAME}.
""",
        # A DNSBL zone is an ordinary zone: <reversed address>.<zone> A 127.0.0.x plus a TXT.
        DNSBL_ZONE: f"""\
{reversed_octets(MAILER_ADDRESS)}  A    127.0.0.2
{reversed_octets(MAILER_ADDRESS)}  TXT  "{MAILER_ADDRESS} listed: open relay (percent hack) seen by the mailprobe lab"
; RFC 5782 section 5 test entry: 127.0.0.2 is always listed, 127.0.0.1 never
2.0.0.127   A    127.0.0.2
2.0.0.127   TXT  "RFC 5782 test entry"
""",  # noqa: E501
    }


def reversed_octets(address: str) -> str:
    return ".".join(reversed(address.split(".")))


def mailer_behaviour() -> Behaviour:
    """The sloppy MTA: closed to plain outside recipients, open through the classic holes."""
    return Behaviour(
        hostname=MAILER_NAME,
        local_domains=(DOMAIN,),
        relay=RelayPolicy.sloppy(),
        helo_required=False,
        starttls=True,  # with a self-signed certificate made at start-up
        ehlo_extensions=("PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES"),
    )


@dataclass(frozen=True)
class PluginRun:
    name: str
    title: str
    argv: list[str]


def plugin_runs(smtp_port: int, nameserver: str, verbose: int = 0) -> list[PluginRun]:
    """The plugins and their arguments against this lab."""
    more = ["-v"] * verbose
    return [
        PluginRun("check_open_relay", "Does the mailer relay for outsiders?",
                  ["-H", MAILER_ADDRESS, "-p", str(smtp_port), "--source-address",
                   OUTSIDE_ADDRESS, "--mail-domain", DOMAIN, "-t", "20", *more]),
        PluginRun("check_dnsbl", "Is the mailer's address on a blacklist?",
                  ["-H", MAILER_ADDRESS, "--zone", DNSBL_ZONE, "--nameserver", nameserver,
                   "-t", "10", *more]),
        PluginRun("check_banner_rdns", "Do banner, reverse DNS and forward DNS agree?",
                  ["-H", MAILER_ADDRESS, "-p", str(smtp_port), "--nameserver", nameserver,
                   "--source-address", OUTSIDE_ADDRESS, "-t", "10", *more]),
        PluginRun("check_spf_mx", "Are the domain's MX and SPF records sound?",
                  ["--mail-domain", DOMAIN, "-H", MAILER_ADDRESS, "--nameserver", nameserver,
                   "-t", "10", *more]),
        PluginRun("check_backscatter", "Does it accept mail for unknown users (backscatter)?",
                  ["-H", MAILER_ADDRESS, "-p", str(smtp_port), "--source-address",
                   OUTSIDE_ADDRESS, "--mail-domain", DOMAIN, "-t", "10", *more]),
        PluginRun("check_smtp_smuggling", "Does it end a message at a bare LF (SMTP smuggling)?",
                  ["-H", MAILER_ADDRESS, "-p", str(smtp_port), "--source-address",
                   OUTSIDE_ADDRESS, "--mail-domain", DOMAIN, "--wait", "0.5", "-t", "15",
                   *more]),
        PluginRun("check_port_exposure", "Who answers SMTP on the site's network?",
                  ["-N", SITE_NETWORK, "--ports", str(smtp_port), "--allow", SANCTIONED_ADDRESS,
                   "-t", "10", *more]),
    ]


def plugin_path(name: str) -> str | None:
    """plugins/<name> in a checkout, else the installed script on PATH."""
    local = ROOT / "plugins" / name
    if local.is_file():
        return str(local)
    return shutil.which(name)


def module_missing(name: str) -> str | None:
    """Why plugin ``name`` cannot run yet (its checks module does not exist), or None."""
    module = "mailprobe.checks." + name.removeprefix("check_")
    try:
        if importlib.util.find_spec(module) is None:
            return f"{module} does not exist yet"
    except ImportError as exc:
        return f"{module} cannot be imported: {exc}"
    return None


def run_plugin(run: PluginRun, out) -> bool:
    """Run one plugin and print what it did; True when it behaved like a plugin."""
    out.write(f"\n=== {run.name}: {run.title}\n")
    path = plugin_path(run.name)
    if path is None:
        out.write(f"    not available: no plugins/{run.name} and none on PATH\n")
        return False
    missing = module_missing(run.name)
    if missing:
        out.write(f"    not available: {missing}\n")
        return False
    argv = [sys.executable, path, *run.argv]
    out.write("$ " + shlex.join([f"plugins/{run.name}", *run.argv]) + "\n")
    out.flush()
    env = dict(os.environ)

    started = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        out.write("    the plugin did not finish within 60 s (killed)\n")
        return False
    seconds = time.monotonic() - started
    out.write(proc.stdout if proc.stdout.endswith("\n") or not proc.stdout
              else proc.stdout + "\n")
    state = STATES.get(proc.returncode)
    if state is None or not proc.stdout.strip():
        tail = proc.stderr.strip().splitlines()[-1:] or ["(nothing on stderr)"]
        out.write(f"--> exit {proc.returncode}: not a plugin result ({tail[0]})\n")
        return False
    out.write(f"--> exit {proc.returncode} ({state}) in {seconds:.1f} s\n")
    return True


def describe(knot: KnotServer, smtp: ScriptedSMTPServer, out) -> None:
    out.write(
        "mailprobe demo lab (loopback only, nothing leaves this machine)\n"
        f"  DNS   Knot on {knot.nameserver}: {DOMAIN}, {REVERSE_ZONE}, {DNSBL_ZONE}\n"
        f"  SMTP  a sloppy MTA '{MAILER_NAME}' on {smtp.host} port {smtp.port}; the probes speak "
        f"from {OUTSIDE_ADDRESS} (outside)\n"
        "  holes relays percent hack, bang paths, quoted local parts and any local sender;\n"
        "        STARTTLS with a self-signed certificate;\n"
        f"        PTR {smtp.host} -> {PTR_NAME} (not the banner's name, not forward-confirmed);\n"
        f"        listed on {DNSBL_ZONE}; SPF with ptr, a void look-up and +all; "
        "an MX that is a CNAME\n"
    )


def page_argv(smtp_port: int, nameserver: str, listen: str) -> list[str]:
    """``mailprobe serve`` against this lab: only the lab's mailer may be tested."""
    return [sys.executable, "-m", "mailprobe", "serve", "--listen", listen,
            "--allow", f"{MAILER_ADDRESS}/32", "-p", str(smtp_port), "--nameserver", nameserver,
            "--source-address", OUTSIDE_ADDRESS, "--zone", DNSBL_ZONE, "--mail-domain", DOMAIN,
            "-t", "20"]


def start_page(smtp_port: int, nameserver: str, out) -> subprocess.Popen[str] | None:
    """Start the web page; print its URL (None when it did not come up)."""
    listen = f"127.0.0.1:{free_port('127.0.0.1')}"
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(ROOT / "lib"))
    page = subprocess.Popen(page_argv(smtp_port, nameserver, listen), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env=env)
    assert page.stdout is not None
    first = page.stdout.readline().strip()
    if not first.startswith("mailprobe serve: http://"):
        out.write(f"demo: the audit page did not start: {first}\n")
        page.wait(5)
        return None
    out.write(f"\ndemo: the one-click audit page: http://{listen}/ (type {MAILER_ADDRESS} or "
              f"{MAILER_NAME}); it tests only {MAILER_ADDRESS}\n")
    return page


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lab.demo",
        description="Run every mailprobe plugin against a misconfigured mail lab on loopback.")
    parser.add_argument("--plugins", metavar="NAME,...",
                        help="run only these plugins (e.g. check_dnsbl,check_spf_mx)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="pass -v to the plugins (repeatable)")
    parser.add_argument("--serve", action="store_true",
                        help="after the plugins, keep the lab running and serve the one-click "
                             "audit page (mailprobe serve) against it until Ctrl-C")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = sys.stdout
    wanted = set(args.plugins.split(",")) if args.plugins else None
    started = time.monotonic()
    try:
        knot = KnotServer(zones(), host=DNS_ADDRESS).start()
    except LabError as exc:
        out.write(f"demo: cannot start the lab's DNS server: {exc}\n")
        return 1
    smtp = ScriptedSMTPServer(mailer_behaviour(), host=MAILER_ADDRESS,
                              port=free_port(MAILER_ADDRESS))
    ran: list[str] = []
    unavailable: list[str] = []
    page: subprocess.Popen[str] | None = None
    try:
        smtp.start()
        describe(knot, smtp, out)
        for run in plugin_runs(smtp.port, knot.nameserver, args.verbose):
            if wanted is None or run.name in wanted:
                (ran if run_plugin(run, out) else unavailable).append(run.name)
        if args.serve:
            # stopped by Ctrl-C or a plain kill alike: both clean up the lab and the page
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            page = start_page(smtp.port, knot.nameserver, out)
            out.write(f"\ndemo: lab kept running (SMTP {smtp.host}:{smtp.port}, DNS "
                      f"{knot.nameserver}); Ctrl-C to stop\n")
            out.flush()
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        out.write("demo: interrupted\n")
    except OSError as exc:
        out.write(f"demo: cannot start the lab's SMTP server: {exc}\n")
        return 1
    finally:
        if page is not None:
            page.terminate()
            page.wait(10)
        smtp.stop()
        knot.stop()
    out.write(f"\ndemo: {len(ran)} plugin(s) ran"
              + (f"; not available or failed: {', '.join(unavailable)}" if unavailable else "")
              + f"; lab stopped; {time.monotonic() - started:.1f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
