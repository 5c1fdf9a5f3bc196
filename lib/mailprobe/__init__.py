"""mailprobe: audit a mail server as a spammer, a blacklist operator and a receiving MTA see it."""

__version__ = "0.1.0"

# Imported first so that it settles dnspython's optional-feature probe (about 10 ms) before
# any module of ours imports dnspython (see mailprobe.dns._settle_dnspython_features).
from mailprobe import dns as _dns  # noqa: F401
