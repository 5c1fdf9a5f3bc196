"""The audit engine: every probe for one or many mailers, in one process, concurrently.

:func:`mailprobe.audit.runner.audit_mailer` and :func:`~mailprobe.audit.runner.audit_fleet`
return one report model (:mod:`mailprobe.audit.model`); ``render/`` turns it into text, JSON or
HTML. Each section of the report comes from one small adapter in :mod:`mailprobe.audit.sections`
that calls one probe. Nothing here imports nagiosplugin or a web framework.
"""
