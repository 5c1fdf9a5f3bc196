"""Sections whose probes have not landed in this build: they say so plainly and are never
counted as OK.

* backscatter: waits for the backscatter probe (a later issue). Finish :func:`backscatter`.
* exposure (``--portscan``): waits for ``probes/exposure`` (issue 15, branch i15-exposure).
  Finish :func:`exposure`.
"""

from __future__ import annotations

from mailprobe.audit.context import MailerContext
from mailprobe.audit.model import Section
from mailprobe.audit.sections import TITLES
from mailprobe.findings import UNKNOWN, Finding


def backscatter(ctx: MailerContext) -> Section:
    """Not judged: no backscatter probe in this build."""
    return Section.not_judged("backscatter", TITLES["backscatter"],
                              "not available in this build (the backscatter probe has not "
                              "landed yet): bounces were not checked")


def exposure(ctx: MailerContext) -> Section:
    """With --portscan: UNKNOWN (asked for, and not determined); without: not judged."""
    title = TITLES["exposure"]
    if not ctx.options.portscan:
        return Section.not_judged("exposure", title, "not asked for (--portscan)")
    text = ("not available in this build (the port-exposure probe has not landed yet): "
            "NETBIOS (139, 445) and submission ports were not scanned")
    return Section("exposure", title, UNKNOWN, text, [Finding(UNKNOWN, "not-available", text)])
