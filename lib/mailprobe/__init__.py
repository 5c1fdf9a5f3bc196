"""mailprobe: audit a mail server as a spammer, a blacklist operator and a receiving MTA see it."""

__version__ = "0.1.0"
