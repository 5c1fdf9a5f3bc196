"""Hostile servers and bad input: every plugin ends in time, with the right state and a reason.

``smtp_cases`` and ``dns_cases`` are the catalogues (one row per misbehaviour, with the
documented state of every plugin it applies to); the ``test_*`` modules play them.
"""
