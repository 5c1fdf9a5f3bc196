"""``mailprobe cron``'s in-process engine: the checks of many mailers in one interpreter.

Each (mailer, check) gets exactly the argv the plugin would get (``cron.check_argv``), parsed by
the plugin's own parser. When every option set is one the audit engine honours the same way
(the target, ``-p``, ``--source-address``, ``--nameserver``, ``-t``, ``--mail-domain``, ``-4``/
``-6``, ``--zone`` for dnsbl, ``--helo``/``--external-domain``/``--external-user`` for
open_relay), the check runs as a section of :func:`mailprobe.audit.runner.audit_mailer`;
anything else (``--depth data``, thresholds, ``--tests``, ...) keeps the plugin process, so a
configuration never means something else in-process. Checks of one mailer with the same options
share one audit (one resolution, the sections concurrently); mailers run ``engine_jobs`` at once.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mailprobe.audit.model import Section
from mailprobe.audit.options import AuditOptions, MailerTarget
from mailprobe.audit.runner import audit_mailer
from mailprobe.findings import LEVEL_NAMES

#: cron check -> the report section that answers the same question
SECTIONS = {"open_relay": "relay", "dnsbl": "dnsbl", "banner_rdns": "identity",
            "spf_mx": "domain"}
#: options the engine honours as the plugin does, per check (besides the common ones)
COMMON = {"hostname", "port", "source_address", "nameserver", "timeout", "verbose", "ipv4",
          "ipv6"}
HONOURED = {
    "open_relay": COMMON | {"mail_domain", "helo", "external_domain", "external_user"},
    "dnsbl": COMMON | {"mail_domain", "zone"},
    "banner_rdns": COMMON,
    "spf_mx": COMMON | {"mail_domain"},
}


@dataclass
class EngineJob:
    """One audit: a mailer's target with the options its checks share, and those checks."""

    target: str
    options: AuditOptions
    checks: dict[str, str] = field(default_factory=dict)  # check -> state key
    mailer: str = ""

    @property
    def domain_fixed(self) -> bool:
        """Whether a check that uses the mail domain is in this audit (it fixes the domain)."""
        return any(check in USES_DOMAIN for check in self.checks)


USES_DOMAIN = {"open_relay", "dnsbl", "spf_mx"}  # banner_rdns has no --mail-domain


def _parser(check: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"mailprobe.checks.{check}")
    parser: argparse.ArgumentParser = module.build_parser()
    return parser


def engine_options(check: str, argv: Sequence[str]) -> AuditOptions | None:
    """The audit options equivalent to the plugin's ``argv``, or None when the plugin must run
    (an option the engine does not honour the same way, or options it cannot parse)."""
    parser = _parser(check)
    try:
        args = parser.parse_args(list(argv))
        defaults = parser.parse_args(["-H", args.hostname] if args.hostname else [])
    except Exception:  # PluginArgumentParser raises UsageError; the plugin will say why
        return None
    changed = {name for name, value in vars(args).items()
               if getattr(defaults, name, object()) != value}
    if not args.hostname or changed - HONOURED[check]:
        return None
    mail_domain = getattr(args, "mail_domain", None)
    if isinstance(mail_domain, list):  # check_dnsbl's is repeatable
        if len(mail_domain) > 1:
            return None  # several domains: the plugin checks them all
        mail_domain = mail_domain[0]
    options = AuditOptions(
        port=getattr(args, "port", 25) or 25,
        source_address=getattr(args, "source_address", None),
        nameservers=args.nameserver, timeout=args.timeout,
        mail_domain=mail_domain.strip().rstrip(".").lower() if mail_domain else None,
        family=4 if getattr(args, "ipv4", False) else 6 if getattr(args, "ipv6", False) else 0,
        certificate_days=None)  # check_banner_rdns judges no certificate by default
    if check == "open_relay":
        options.helo = args.helo
        options.external_domain = args.external_domain
        options.external_user = args.external_user
    if check == "dnsbl":
        options.zones = args.zone
    return options


def _key(target: str, options: AuditOptions) -> tuple[object, ...]:
    return (target, repr(sorted(options.describe().items())), options.helo, options.family,
            options.external_domain, options.external_user, options.certificate_days)


def plan(jobs: Sequence[tuple[str, str, str, list[str]]]
         ) -> tuple[list[EngineJob], list[int]]:
    """``jobs`` are (mailer, check, state key, plugin argv). Returns the audits to run in-process
    and the indexes of the jobs that keep the plugin process."""
    groups: dict[tuple[object, ...], list[EngineJob]] = {}
    audits: list[EngineJob] = []
    process: list[int] = []
    for index, (mailer, check, key, argv) in enumerate(jobs):
        options = engine_options(check, argv)
        if options is None:
            process.append(index)
            continue
        target = argv[argv.index("-H") + 1]
        domain = options.mail_domain
        options.mail_domain = None  # the mail domain only separates checks that use it
        group = groups.setdefault((mailer, *_key(target, options)), [])
        job = next((j for j in group if check not in j.checks and (
            check not in USES_DOMAIN or not j.domain_fixed or j.options.mail_domain == domain)),
            None)
        if job is None:
            job = EngineJob(target, options, mailer=mailer)
            group.append(job)
            audits.append(job)
        if check in USES_DOMAIN:
            job.options.mail_domain = domain
        job.checks[check] = key
    return audits, process


def status_output(check: str, section: Section) -> tuple[int, str]:
    """The state and the plugin-like output of a check answered by ``section``: a status line
    ``NAME STATE - summary`` (no perfdata) and the findings (every attempt for the relay)."""
    state = section.state if section.state is not None else 3
    name = check.upper()
    lines = [f"{name} {LEVEL_NAMES[state]} - {section.summary}"]
    if section.key == "relay":
        for attempt in section.evidence.get("attempts", []):
            label = attempt["outcome"].upper()
            if attempt["id"] == "control":
                label = "ACCEPTED" if label == "RELAYED" else f"CONTROL {label}"
            line = f"[{label}] {attempt['id']}: {attempt['mail_from']} / {attempt['rcpt_to']}"
            if attempt["reply"]:
                line += f" -> {attempt['reply']}"
            lines.append(line)
    for finding in section.findings:
        detail = f" ({finding.detail})" if finding.detail else ""
        lines.append(f"{LEVEL_NAMES[finding.level]}: {finding.text}{detail}")
    return state, "\n".join(line.replace("|", "!") for line in lines)


Result = tuple[str, str, int, str]  # (mailer, state key, state, output)


def run(audits: Sequence[EngineJob], jobs: int) -> list[Result]:
    """Run the audits, ``jobs`` mailers at a time; one result per check."""

    def one(job: EngineJob) -> list[Result]:
        report = audit_mailer(MailerTarget(job.target), job.options,
                              only={SECTIONS[c] for c in job.checks})
        results = []
        for check, key in job.checks.items():
            section = report.section(SECTIONS[check])
            if section is None:  # the mailer could not be audited at all
                results.append((job.mailer, key, 3,
                                f"{check.upper()} UNKNOWN - {report.error or 'not audited'}"))
                continue
            state, output = status_output(check, section)
            results.append((job.mailer, key, state, output))
        return results

    if not audits:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(audits)))) as pool:
        return [result for batch in pool.map(one, audits) for result in batch]
