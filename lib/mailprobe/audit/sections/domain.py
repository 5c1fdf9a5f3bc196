"""Section "domain": the mail domain's MX (probes.mx), SPF lint and SPF evaluated for the
mailer's addresses (probes.spf), and DMARC (probes.dmarc)."""

from __future__ import annotations

import threading

from mailprobe.audit.context import MailerContext
from mailprobe.audit.model import Section, section_state
from mailprobe.audit.sections import TITLES
from mailprobe.findings import CRITICAL, OK, UNKNOWN, WARNING, Finding
from mailprobe.net.dns import DNSFailure, Lookup, is_ip_address
from mailprobe.probes.dmarc import DMARCReport, check_dmarc
from mailprobe.probes.mx import MXReport, probe_mx
from mailprobe.probes.spf.evaluate import Evaluation, evaluate
from mailprobe.probes.spf.lint import LOOKUP_LIMIT, VOID_LIMIT, SPFReport, lint

KEY = "domain"
# check_spf_mx's judgement of check_host() for the mailer
EVAL_LEVELS = {"pass": OK, "softfail": WARNING, "neutral": WARNING, "none": WARNING,
               "fail": CRITICAL, "permerror": CRITICAL, "temperror": UNKNOWN}
LOOKUP_WARNING = 8  # check_spf_mx -w default
# pyspf reads its DNS layer from a module global that an evaluation swaps: one at a time
_SPF_LOCK = threading.Lock()


def run(ctx: MailerContext) -> Section:
    title = TITLES[KEY]
    domain = ctx.mail_domain()
    if domain.name is None:
        finding = Finding(UNKNOWN, "mail-domain", f"the mail domain {domain.source}")
        return Section(KEY, title, UNKNOWN, finding.text, [finding])
    lookup = ctx.lookup()
    findings: list[Finding] = [Finding(OK, "mail-domain", f"mail domain {domain.name} "
                                       f"({domain.source})")]
    spf: SPFReport | None = None
    mx: MXReport | None = None
    dmarc: DMARCReport | None = None
    evaluations: list[Evaluation] = []
    try:
        spf = lint(domain.name, lookup)
        findings += spf.findings + _limits(spf)
        helo = ctx.label if not is_ip_address(ctx.label) else domain.name
        for address in ctx.addresses:
            with _SPF_LOCK:
                evaluations.append(evaluate(address, domain.name, lookup, helo=helo))
        findings += [_evaluation(ev) for ev in evaluations]
        mx = probe_mx(domain.name, lookup, mailer=ctx.label, mailer_addresses=ctx.addresses)
        findings += mx.findings
        dmarc = check_dmarc(domain.name, lookup)
        findings += dmarc.findings
    except DNSFailure as exc:
        findings.append(Finding(UNKNOWN, "dns-failure", str(exc)))
    state = section_state(findings)
    summary = _summary(domain.name, state, findings, spf, mx, dmarc, evaluations)
    return Section(KEY, title, state, summary, findings,
                   evidence=evidence(domain.name, domain.source, spf, mx, dmarc, evaluations,
                                     lookup))


def _limits(spf: SPFReport) -> list[Finding]:
    found = []
    if spf.lookups > LOOKUP_LIMIT:
        found.append(Finding(CRITICAL, "spf-lookups", f"SPF needs {spf.lookups} DNS look-ups "
                             f"(limit {LOOKUP_LIMIT}, RFC 7208 4.6.4): permerror"))
    elif spf.lookups > LOOKUP_WARNING:
        found.append(Finding(WARNING, "spf-lookups", f"SPF needs {spf.lookups} DNS look-ups "
                             f"(close to the limit of {LOOKUP_LIMIT})"))
    if spf.void_lookups > VOID_LIMIT:
        found.append(Finding(CRITICAL, "spf-void-lookups", f"SPF has {spf.void_lookups} void "
                             f"look-ups (limit {VOID_LIMIT}, RFC 7208 4.6.4)"))
    return found


def _evaluation(ev: Evaluation) -> Finding:
    detail = ev.explanation if ev.result in ("permerror", "temperror") else ""
    return Finding(EVAL_LEVELS.get(ev.result, UNKNOWN), f"spf-eval-{ev.result}",
                   f"SPF {ev.result} for {ev.address}", detail, ev.address)


def _summary(domain: str, state: int, findings: list[Finding], spf: SPFReport | None,
             mx: MXReport | None, dmarc: DMARCReport | None,
             evaluations: list[Evaluation]) -> str:
    if state != OK:
        worst = [f.text for f in findings if f.level == state]
        return f"{domain}: " + "; ".join(worst[:3])
    parts = [f"SPF {ev.result} for {ev.address}" for ev in evaluations]
    if mx is not None:
        parts.append("null MX" if mx.null_mx else f"{len(mx.hosts)} MX host"
                     + ("" if len(mx.hosts) == 1 else "s"))
    if dmarc is not None:
        parts.append(f"DMARC p={dmarc.policy}" if dmarc.policy else "no DMARC")
    return f"{domain}: " + ", ".join(parts)


def evidence(domain: str, source: str, spf: SPFReport | None, mx: MXReport | None,
             dmarc: DMARCReport | None, evaluations: list[Evaluation],
             lookup: Lookup) -> dict[str, object]:
    return {
        "domain": domain,
        "source": source,
        "spf": {"records": list(spf.records), "lookups": spf.lookups,
                "void_lookups": spf.void_lookups, "all": spf.all_qualifier,
                "tree": spf.tree.lines() if spf.tree else []} if spf else None,
        "spf_evaluations": [{"address": ev.address, "sender": ev.sender, "result": ev.result,
                             "explanation": ev.explanation} for ev in evaluations],
        "mx": {"hosts": [{"preference": h.preference, "name": h.name,
                          "addresses": list(h.addresses), "cname": h.cname}
                         for h in mx.hosts],
               "null_mx": mx.null_mx, "implicit": list(mx.implicit_addresses),
               "mailer_is_mx": mx.mailer_is_mx} if mx else None,
        "dmarc": {"found_at": dmarc.found_at, "record": dmarc.record,
                  "policy": dmarc.policy} if dmarc else None,
        "dns_transcript": list(lookup.log),
    }
