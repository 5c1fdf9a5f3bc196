"""The relay-test request service (``mailprobe relaytest``): JANET's tester as software.

A postmaster mails a request; :mod:`.receive` parses (:mod:`.request`), authenticates
(:mod:`.authn`) and authorises (:mod:`.authz`) it, stores it in the durable queue (:mod:`.store`)
and answers at once; :mod:`.scheduler` runs the queued tests (:mod:`.worker`, which reaches the
relay probe only through :mod:`.relayseries`), decides retries (:mod:`.decide`), builds the
report model (:mod:`.report`) and renders it (:mod:`.render`) for :mod:`.mailer`.
See docs/mailprobe-relaytest.md.
"""
