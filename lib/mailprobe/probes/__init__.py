"""Probes: each takes a target and options and returns findings or a report (dataclasses).

One package or module per probe family. No probe imports nagiosplugin or knows who called it.
"""
