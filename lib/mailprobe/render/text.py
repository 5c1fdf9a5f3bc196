"""The report as terminal text: one block per mailer, one line per section and finding,
colours on a terminal (ANSI), none when the output is not a TTY or NO_COLOR is set."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TextIO

from mailprobe.audit.model import SKIPPED, MailerReport, Report, Section
from mailprobe.findings import LEVEL_NAMES

# 256-colour ANSI: red, orange, blue (seed 003), purple for UNKNOWN, grey for not judged
COLOURS = {"CRITICAL": "\033[1;38;5;196m", "WARNING": "\033[1;38;5;208m",
           "OK": "\033[1;38;5;33m", "UNKNOWN": "\033[1;38;5;135m", SKIPPED: "\033[38;5;245m"}
RESET = "\033[0m"
BOLD = "\033[1m"
WIDTH = 8  # the widest state name


def use_colour(stream: TextIO, forced: bool | None = None) -> bool:
    """Colour when ``forced`` says so, else only on a TTY and without NO_COLOR
    (https://no-color.org: any non-empty value)."""
    if forced is not None:
        return forced
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Painter:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def state(self, name: str, text: str | None = None) -> str:
        text = text if text is not None else name
        if not self.colour:
            return text
        return f"{COLOURS.get(name, '')}{text}{RESET}"

    def bold(self, text: str) -> str:
        return f"{BOLD}{text}{RESET}" if self.colour else text


def render_report(report: Report, *, colour: bool = False, verbose: int = 0) -> str:
    """Every mailer, then (for several) the summary table worst first, then the overall state."""
    paint = Painter(colour)
    blocks = [render_mailer(m, paint, verbose) for m in report.mailers]
    if len(report.mailers) > 1:
        blocks.append(summary_table(report, paint))
    state = LEVEL_NAMES[report.state]
    blocks.append(f"Overall: {paint.state(state)} (exit {int(report.state)})")
    return "\n\n".join(blocks) + "\n"


def render_mailer(mailer: MailerReport, paint: Painter, verbose: int = 0) -> str:
    state = LEVEL_NAMES[mailer.state]
    where = ", ".join(mailer.addresses)
    head = f"{paint.bold('mailprobe report:')} {mailer.target}"
    if where and where != mailer.target:
        head += f" ({where})"
    lines = [f"{head}  {paint.state(state)}"]
    if mailer.mail_domain_source:
        name = mailer.mail_domain or "(none)"
        lines.append(f"  mail domain {name}: {mailer.mail_domain_source}")
    if mailer.error:
        lines.append(f"  {paint.state('UNKNOWN', 'UNKNOWN')} {mailer.error}")
    for section in mailer.sections:
        lines.extend(render_section(section, paint, verbose))
    lines.append(f"  ({mailer.seconds:.1f}s)")
    return "\n".join(lines)


def render_section(section: Section, paint: Painter, verbose: int = 0) -> list[str]:
    name = section.state_name
    label = paint.state(name, f"[{name:<{WIDTH}}]")
    lines = [f"{label} {paint.bold(section.title)}: {section.summary}"]
    if section.state is None:
        return lines
    for finding in section.findings:
        level = LEVEL_NAMES[finding.level]
        if finding.text == section.summary or (finding.level == 0 and verbose == 0
                                                and finding.text in section.summary):
            continue
        lines.append(f"    {paint.state(level, f'{level:<{WIDTH}}')} {finding.text}")
        if finding.detail and (verbose or finding.level):
            lines.extend(f"             {part}" for part in _wrap(finding.detail))
    for link in section.links:
        lines.append(f"    {'link':<{WIDTH}} {link.label}: {link.url}")
    for source in section.evidence.get("sources", []) if section.key == "geoip" else []:
        # the data's licence asks for its attribution wherever its answers are shown
        lines.append(f"    {'data':<{WIDTH}} {source['source']}, built "
                     f"{source['built'] or '(date unknown)'}. {source['attribution']}")
    if verbose:
        lines.extend("    " + line for line in evidence_lines(section, verbose))
    return lines


def evidence_lines(section: Section, verbose: int) -> list[str]:
    """-v: what the probe saw (attempts, records, sources); -vv: the SMTP/DNS transcripts."""
    evidence = section.evidence
    out: list[str] = []
    if section.key == "relay":
        for attempt in evidence.get("attempts", []):
            outcome = attempt["outcome"].upper()
            if attempt["id"] == "control":
                outcome = "ACCEPTED" if outcome == "RELAYED" else f"CONTROL {outcome}"
            out.append(f"[{outcome}] {attempt['id']}: {attempt['mail_from']}"
                       f" / {attempt['rcpt_to']} -> {attempt['reply']}")
    if section.key == "domain":
        spf = evidence.get("spf") or {}
        out.extend(f"SPF {line}" for line in spf.get("tree", []))
        for host in (evidence.get("mx") or {}).get("hosts", []):
            out.append(f"MX {host['preference']} {host['name']}: "
                       + (", ".join(host["addresses"]) or "no address"))
        dmarc = evidence.get("dmarc") or {}
        if dmarc.get("record"):
            out.append(f"DMARC {dmarc['found_at']}: {dmarc['record']}")
    if verbose >= 2:
        for name in ("transcript", "dns_transcript"):
            lines = evidence.get(name) or []
            if lines:
                out.append(f"{name.replace('_', ' ')}:")
                out.extend(f"  {line}" for line in lines)
    return out


def _wrap(text: str, width: int = 90) -> Iterable[str]:
    words, line = text.split(), ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            yield line
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        yield line


def summary_table(report: Report, paint: Painter) -> str:
    """One line per mailer, worst first: state, target, the worst problems."""
    rows = report.worst_first()
    width = max([len(m.target) for m in rows] + [6])
    lines = [paint.bold(f"{'STATE':<{WIDTH}}  {'MAILER':<{width}}  PROBLEMS")]
    for mailer in rows:
        state = LEVEL_NAMES[mailer.state]
        problems = "; ".join(mailer.problems()[:2]) or "none"
        lines.append(f"{paint.state(state, f'{state:<{WIDTH}}')}  {mailer.target:<{width}}  "
                     f"{problems[:120]}")
    counts = {name: sum(1 for m in rows if LEVEL_NAMES[m.state] == name)
              for name in ("CRITICAL", "UNKNOWN", "WARNING", "OK")}
    lines.append(f"{len(rows)} mailers: " + ", ".join(f"{n} {name}" for name, n in counts.items()
                                                     if n))
    return "\n".join(lines)
