"""Audits started by the web page, run in the background; their sections kept as they finish."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailprobe.audit.model import MailerReport, Report, Section
from mailprobe.audit.options import AuditOptions, MailerTarget
from mailprobe.audit.runner import audit_mailer
from mailprobe.probes.geoip import GeoDatabase

KEEP_SECONDS = 3600.0  # finished audits are kept this long (their URL works until then)
MAX_KEPT = 200


@dataclass
class Job:
    id: str
    client: str
    target: MailerTarget
    options: AuditOptions
    report: Report
    sections: dict[str, Section] = field(default_factory=dict)
    mailer: MailerReport | None = None
    done: threading.Event = field(default_factory=threading.Event)
    finished_at: float | None = None

    @property
    def current(self) -> MailerReport:
        """The mailer's report as it stands (sections so far, in report order)."""
        if self.mailer is not None:
            return self.mailer
        from mailprobe.audit.sections import ORDER

        partial = MailerReport(self.target.label, list(self.target.addresses))
        partial.sections = [self.sections[k] for k in ORDER if k in self.sections]
        return partial


class Jobs:
    def __init__(self, geo: GeoDatabase | None = None) -> None:
        self.geo = geo
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(self, job_id: str, client: str, target: MailerTarget, options: AuditOptions,
              report: Report, on_done: Callable[[Job], None]) -> Job:
        """Run the audit in a daemon thread; ``on_done`` is called when it has finished."""
        job = Job(job_id, client, target, options, report)
        with self._lock:
            self._expire()
            self._jobs[job.id] = job

        def section_done(mailer: MailerReport, section: Section) -> None:
            job.sections[section.key] = section

        def run() -> None:
            try:
                job.mailer = audit_mailer(target, options, geo=self.geo,
                                          on_section=section_done)
                job.report.mailers = [job.mailer]
            finally:
                job.finished_at = time.monotonic()
                job.done.set()
                on_done(job)

        threading.Thread(target=run, daemon=True, name=f"web-audit-{job.id}").start()
        return job

    def _expire(self) -> None:
        now = time.monotonic()
        old = [k for k, j in self._jobs.items()
               if j.finished_at is not None and now - j.finished_at > KEEP_SECONDS]
        for key in old:
            del self._jobs[key]
        while len(self._jobs) >= MAX_KEPT:
            finished = [k for k, j in self._jobs.items() if j.finished_at is not None]
            if not finished:
                break
            del self._jobs[finished[0]]
