"""``mailprobe serve``: the one-click audit as a web page, on top of audit/ and render/.

:mod:`mailprobe.web.guard` decides what may be tested (``--allow``, one audit per client, the
rate limit), :mod:`mailprobe.web.jobs` runs audits in the background and keeps their sections
as they finish, :mod:`mailprobe.web.app` is the Starlette application, and
:mod:`mailprobe.web.serve` the command that runs it on uvicorn.
"""
