"""``mailprobe relaytest receive``: one request mail on stdin, as an MTA alias pipe delivers it.

Exit 0 when the request was handled (authorised or not, or ignored as an automatic mail);
75 (EX_TEMPFAIL) on any internal or storage error, and when a DKIM key cannot be fetched now,
so that the MTA keeps the mail and delivers it again. A second delivery of a mail already
stored (same Message-ID) is not stored twice: its answer is sent if it was not yet.
"""

from __future__ import annotations

import json
import sys
import time

from mailprobe.service import authz, faults, mailer, render
from mailprobe.service.authn import Authentication, authenticate, txt_lookup
from mailprobe.service.config import Settings
from mailprobe.service.request import ParsedRequest, parse_request
from mailprobe.service.store import Store

EX_OK, EX_TEMPFAIL = 0, 75


def _log(text: str) -> None:
    print(f"mailprobe relaytest receive: {text}", file=sys.stderr, flush=True)


def _outcome(request: ParsedRequest, decisions: list[authz.Decision]) -> str:
    if not request.usable:
        return "unparsable"
    accepted = sum(d.authorised for d in decisions)
    if accepted == len(decisions):
        return "authorised"
    return "partly authorised" if accepted else "refused"


def handle(settings: Settings, raw: bytes) -> int:
    """Store and answer one request; the exit code for the MTA."""
    request = parse_request(raw, settings.limits.addresses_per_request)
    if request.automatic:
        _log(f"not answered: {request.automatic} (from {request.requester or '?'})")
        return EX_OK
    if request.requester == settings.address.lower():
        _log("not answered: a mail from the service's own address (a loop)")
        return EX_OK
    with Store(settings.database) as store:
        stored = store.request_by_key(request.key)
        if stored is not None:
            _log(f"request {request.key} was stored before as #{stored.id}: not stored again")
            mailer.deliver_due(store, settings, request_id=int(str(stored.id)))
            return EX_OK
        auth = Authentication(False, "", "the request could not be read")
        if request.usable:
            auth = authenticate(raw, request.requester, settings.authserv_id,
                                txt_lookup(settings.nameserver))
            if auth.temporary:
                _log(f"cannot authenticate now, the MTA will retry: {auth.reason}")
                return EX_TEMPFAIL
        now = time.time()
        with store.transaction():
            counts = store.count_tests(request.addresses, now - settings.limits.window)
            earlier = store.count_requests(request.requester, now - settings.limits.window)
            decisions = (authz.decide(settings, request.requester, request.addresses, auth,
                                      earlier, counts) if request.usable else [])
            faults.point("receive:before-commit")
            request_id = store.add_request(
                request.key, request.requester, request.requester_display, request.subject,
                request.message_id, now, auth.how if auth.ok else "",
                _outcome(request, decisions),
                json.dumps({"problems": request.problems,
                            "decisions": [[d.address, d.authorised, d.site, d.reason]
                                          for d in decisions]}))
            test_ids: dict[str, int] = {}
            for decision in decisions:
                if decision.authorised:
                    test_id = store.add_test(decision.address, decision.site, request.requester,
                                             now, request_id=request_id)
                    if test_id is not None:
                        test_ids[decision.address] = test_id
            if request.requester:
                mailer.queue(store, settings, mailer.Outgoing(
                    f"answer:request:{request_id}", request.requester,
                    render.answer_subject(request, decisions),
                    render.answer_text(request, decisions, auth.how if auth.ok else "",
                                       request_id, test_ids, settings.address, now),
                    request.message_id), "answer", now, request_id=request_id)
        faults.point("receive:after-commit")
        _log(f"request #{request_id} from {request.requester or '?'}: "
             f"{_outcome(request, decisions)}; tests {sorted(test_ids.values()) or 'none'}")
        mailer.deliver_due(store, settings, request_id=request_id)
    return EX_OK
