"""The Starlette application: the form, the report page filling in section by section, JSON.

Routes:

* ``GET /``: the form (a host box, "also scan NETBIOS ports").
* ``POST /check`` (``host``, optional ``portscan``): vets the target (400/403/429/503 pages),
  starts the audit and answers the report page, whose few lines of script poll
  ``/report/ID/sections`` and swap each section in as it finishes. With ``Accept:
  application/json`` or ``?format=json`` it waits and answers the whole report as JSON.
* ``GET /report/ID``: the same page (or JSON, partial while it runs: ``"complete": false``).
* ``GET /report/ID/sections``: the finished sections as HTML fragments (for the page).
"""

from __future__ import annotations

import dataclasses
import secrets

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from mailprobe import __version__
from mailprobe.audit.model import Report
from mailprobe.audit.options import AuditOptions, MailerTarget
from mailprobe.audit.sections import ORDER, TITLES
from mailprobe.probes.geoip import GeoDatabase
from mailprobe.render.htmlpage import environment, level_name, render_section
from mailprobe.render.jsondoc import report_data
from mailprobe.web.guard import ClientLimits, Network, Refused, vet
from mailprobe.web.jobs import Job, Jobs

GRACE = 2.0  # seconds past -t a JSON request waits for its audit


@dataclasses.dataclass
class WebConfig:
    options: AuditOptions
    networks: list[Network]
    limits: ClientLimits
    geo: GeoDatabase | None = None


def create_app(config: WebConfig) -> Starlette:
    jobs = Jobs(config.geo)
    env = environment("mailprobe.web")

    def page(name: str, code: int = 200, **values: object) -> HTMLResponse:
        html = env.get_template(name).render(version=__version__, config=config, **values)
        return HTMLResponse(html, status_code=code)

    def error(request: Request, status: int, message: str) -> Response:
        if wants_json(request):
            return JSONResponse({"error": message, "status": status}, status_code=status)
        return page("error.html", status, status=status, message=message)

    async def form(request: Request) -> Response:
        return page("form.html", networks=config.networks)

    async def check(request: Request) -> Response:
        data = await request.form()
        host = str(data.get("host", "")).strip()
        portscan = str(data.get("portscan", "")) in ("on", "1", "yes", "true")
        client = request.client.host if request.client else "unknown"
        options = dataclasses.replace(config.options, portscan=portscan)
        job_id = secrets.token_urlsafe(12)
        try:
            config.limits.admit(client, job_id)  # before anything is resolved or sent
        except Refused as exc:
            return error(request, exc.status, exc.message)
        try:
            addresses = await anyio.to_thread.run_sync(vet, host, options, config.networks)
        except Refused as exc:
            config.limits.finished(client)
            return error(request, exc.status, exc.message)
        target = MailerTarget(host.rstrip(".") or host, tuple(addresses))
        report = Report(version=__version__, options=options.describe())
        job = jobs.start(job_id, client, target, options, report,
                         on_done=lambda done: config.limits.finished(done.client))
        return await respond(request, job)

    async def show(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        if job is None:
            return error(request, 404, "no such report (reports are kept for an hour)")
        return await respond(request, job)

    async def respond(request: Request, job: Job) -> Response:
        if wants_json(request):
            if request.method == "POST":
                await anyio.to_thread.run_sync(job.done.wait,
                                               job.options.timeout + GRACE)
            return JSONResponse(job_data(job))
        return page("check.html", job=job, mailer=job.current, order=ORDER, titles=TITLES,
                    poll=f"/report/{job.id}/sections")

    async def fragments(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        if job is None:
            return JSONResponse({"error": "no such report"}, status_code=404)
        complete = job.done.is_set()
        mailer = job.current
        body = {
            "complete": complete,
            "state": level_name(mailer.state) if complete else "RUNNING",
            "sections": {key: render_section(section, "m0-")
                         for key, section in list(job.sections.items())},
            "head": env.get_template("mailer_head.html").render(
                mailer=mailer, complete=complete, level_name=level_name),
        }
        return JSONResponse(body)

    return Starlette(routes=[
        Route("/", form, methods=["GET"]),
        Route("/check", check, methods=["POST"]),
        Route("/report/{job}", show, methods=["GET"]),
        Route("/report/{job}/sections", fragments, methods=["GET"]),
    ])


def wants_json(request: Request) -> bool:
    if request.query_params.get("format") == "json":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def job_data(job: Job) -> dict[str, object]:
    report = dataclasses.replace(job.report, mailers=[job.current])
    data = report_data(report, complete=job.done.is_set())
    data["id"] = job.id
    if not job.done.is_set():
        data["state"] = "RUNNING"
    return data
