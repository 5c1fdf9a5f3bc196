"""The report as JSON: a stable, documented schema (docs/mailprobe-report.md, "JSON schema").

``schema`` names the version; fields are only ever added within a version. ``evidence`` is the
raw material a section was judged on, per section key (documented, but richer over time).
"""

from __future__ import annotations

import json
from typing import Any

from mailprobe.audit.model import MailerReport, Report, Section
from mailprobe.findings import LEVEL_NAMES, Finding

SCHEMA = "mailprobe-report/1"


def report_data(report: Report, *, complete: bool = True) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "generated": report.generated,
        "version": report.version,
        "complete": complete,
        "state": LEVEL_NAMES[report.state],
        "exit_code": int(report.state),
        "options": report.options,
        "mailers": [mailer_data(m) for m in report.mailers],
    }


def mailer_data(mailer: MailerReport) -> dict[str, Any]:
    return {
        "target": mailer.target,
        "addresses": list(mailer.addresses),
        "address": mailer.address,
        "mail_domain": mailer.mail_domain,
        "mail_domain_source": mailer.mail_domain_source,
        "state": LEVEL_NAMES[mailer.state],
        "error": mailer.error,
        "started": mailer.started,
        "seconds": mailer.seconds,
        "sections": [section_data(s) for s in mailer.sections],
    }


def section_data(section: Section) -> dict[str, Any]:
    return {
        "key": section.key,
        "title": section.title,
        "state": section.state_name,
        "summary": section.summary,
        "skipped": section.skipped,
        "seconds": section.seconds,
        "findings": [finding_data(f) for f in section.findings],
        "links": [{"label": link.label, "url": link.url} for link in section.links],
        "evidence": section.evidence,
    }


def finding_data(finding: Finding) -> dict[str, Any]:
    return {"level": LEVEL_NAMES[finding.level], "code": finding.code, "text": finding.text,
            "detail": finding.detail, "subject": finding.subject}


def render_json(report: Report, *, complete: bool = True) -> str:
    return json.dumps(report_data(report, complete=complete), indent=2, sort_keys=False,
                      default=str) + "\n"
