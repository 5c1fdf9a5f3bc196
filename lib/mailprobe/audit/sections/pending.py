"""Sections whose probes have not landed in this build: they say so plainly and are never
counted as OK.

* backscatter: waits for the backscatter probe (a later issue). Finish :func:`backscatter`.
"""

from __future__ import annotations

from mailprobe.audit.context import MailerContext
from mailprobe.audit.model import Section
from mailprobe.audit.sections import TITLES


def backscatter(ctx: MailerContext) -> Section:
    """Not judged: no backscatter probe in this build."""
    return Section.not_judged("backscatter", TITLES["backscatter"],
                              "not available in this build (the backscatter probe has not "
                              "landed yet): bounces were not checked")
