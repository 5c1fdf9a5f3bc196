"""The report as one self-contained HTML page (inline CSS, no scripts, no external assets):
readable offline and mailable. The web page reuses the same section template."""

from __future__ import annotations

import functools

import jinja2

from mailprobe.audit.model import Report, Section
from mailprobe.findings import LEVEL_NAMES


def level_name(level: int | None) -> str:
    return "SKIPPED" if level is None else LEVEL_NAMES[level]


@functools.lru_cache(maxsize=4)
def environment(*packages: str) -> jinja2.Environment:
    """Templates of ``packages`` (first wins), then render's own; HTML autoescaped."""
    loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader(p, "templates")
                                        for p in (*packages, "mailprobe.render")]
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True)
    env.globals["level_name"] = level_name
    return env


def render_html(report: Report) -> str:
    title = ", ".join(m.target for m in report.mailers[:3]) + (
        f" and {len(report.mailers) - 3} more" if len(report.mailers) > 3 else "")
    return environment().get_template("report.html").render(
        report=report, state=level_name(report.state), title=title)


def render_section(section: Section, prefix: str = "m0-") -> str:
    """One section's HTML (the web page swaps it in as the section finishes)."""
    return environment().get_template("section.html").render(section=section, prefix=prefix)
