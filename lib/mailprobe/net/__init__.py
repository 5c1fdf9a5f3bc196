"""Transport: SMTP sessions, DNS look-ups and fan-out, the time budget, TLS certificates.

Nothing here knows about relays, blacklists or Nagios; probes build on it.
"""
