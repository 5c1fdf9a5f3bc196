"""``mailprobe relaytest status``: requests and tests with their state, next try and history
(text for people, ``--json`` for scripts)."""

from __future__ import annotations

import json

from mailprobe.service.render import when
from mailprobe.service.store import Row, Store


def _test_dict(store: Store, test: Row) -> dict[str, object]:
    test_id = int(str(test.id))
    return {
        "id": test_id, "address": test.address, "site": test.site, "requester": test.requester,
        "request": test.request_id, "booking": test.booking_key, "state": test.state,
        "tries": test.tries, "next_try_at": test.next_try_at, "verdict": test.verdict,
        "verdict_line": test.verdict_line, "end_reason": test.end_reason,
        "created_at": test.created_at, "finished_at": test.finished_at,
        "history": [{"number": t.number, "started_at": t.started_at,
                     "finished_at": t.finished_at, "kind": t.kind, "summary": t.summary}
                    for t in store.tries(test_id)],
        "mails": [{"kind": m.kind, "recipient": m.recipient, "state": m.state,
                   "error": m.last_error} for m in store.mails(test_id=test_id)],
    }


def snapshot(store: Store) -> dict[str, object]:
    requests = []
    for request in store.requests():
        request_id = int(str(request.id))
        requests.append({
            "id": request_id, "requester": request.requester, "received_at": request.received_at,
            "message_id": request.message_id, "outcome": request.outcome,
            "authentication": request.authentication,
            "details": json.loads(str(request.problems)),
            "answer": [{"recipient": m.recipient, "state": m.state, "error": m.last_error}
                       for m in store.mails(request_id=request_id)],
            "tests": [int(str(t.id)) for t in store.tests(request_id)]})
    return {"requests": requests, "tests": [_test_dict(store, t) for t in store.tests()]}


def as_text(data: dict[str, object]) -> str:
    lines = []
    requests = data["requests"]
    tests = data["tests"]
    assert isinstance(requests, list) and isinstance(tests, list)
    for request in requests:
        answer = ", ".join(f"{a['state']}" for a in request["answer"]) or "none"
        lines.append(f"request #{request['id']}  {when(request['received_at'])}  "
                     f"{request['requester'] or '?'}  {request['outcome']}  answer {answer}")
        for address, ok, _site, reason in request["details"]["decisions"]:
            if not ok:
                lines.append(f"    refused {address}: {reason}")
        for problem in request["details"]["problems"]:
            lines.append(f"    problem: {problem}")
    if requests:
        lines.append("")
    for test in tests:
        origin = (f"request #{test['request']}" if test["request"]
                  else f"booking {test['booking']}")
        head = (f"test #{test['id']}  {test['address']}  {test['site']}  {test['state']}  "
                f"tries {test['tries']}  ({origin}, for {test['requester']})")
        lines.append(head)
        if test["state"] in ("queued", "running"):
            lines.append(f"    next try {when(test['next_try_at'])}")
        if test["verdict_line"]:
            lines.append(f"    verdict: {test['verdict_line']}")
        for entry in test["history"]:
            lines.append(f"    try {entry['number']} {when(entry['started_at'])} "
                         f"[{entry['kind']}] {entry['summary']}")
        for mail in test["mails"]:
            error = f" ({mail['error']})" if mail["error"] else ""
            lines.append(f"    {mail['kind']} to {mail['recipient']}: {mail['state']}{error}")
    return "\n".join(lines) + ("\n" if lines else "no requests and no tests\n")
