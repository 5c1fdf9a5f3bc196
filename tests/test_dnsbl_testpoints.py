"""Unit tests: the RFC 5782 test-entry rules, and how the probe asks everything in one round."""

from __future__ import annotations

import pytest

from lab.dnsd import DNSBehaviour, ScriptedDNSServer
from mailprobe.net.deadline import Deadline
from mailprobe.net.dns import Nameserver
from mailprobe.net.dnsfanout import Failure
from mailprobe.probes.dnsbl import lookup, testpoints
from mailprobe.probes.dnsbl.lookup import CLEAN, ERROR, FAILED, LISTED, Target, probe
from mailprobe.probes.dnsbl.zones import DOMAIN, KNOWN, Zone

PLAIN = Zone("bl.example.net")
LISTED_, NEVER = testpoints.LISTED_ENTRY, testpoints.NEVER_LISTED_ENTRY
TIMEOUT = Failure("no answer within 1.0s", "timed out")


@pytest.mark.parametrize(("answers", "all_answers", "not_listed"), [
    ({LISTED_: ["127.0.0.2"], NEVER: None}, None, None),  # a working list
    ({LISTED_: None, NEVER: None}, None, (ERROR, "test entry not listed")),
    ({LISTED_: TIMEOUT, NEVER: None}, None, (FAILED, "test entry timed out")),
    ({LISTED_: ["127.255.255.254"], NEVER: ["127.255.255.254"]}, None,
     (ERROR, "test entry answered 127.255.255.254")),
    ({LISTED_: ["192.0.2.1"], NEVER: None}, None, (ERROR, "test entry answered 192.0.2.1")),
    ({LISTED_: ["not an address"], NEVER: None}, None, (ERROR, "test entry bad answer")),
    ({LISTED_: ["127.0.0.2"], NEVER: ["127.0.0.2"]}, (ERROR, "lists everything"), None),
    ({LISTED_: ["127.0.0.2"], NEVER: TIMEOUT}, None, None),  # nothing says it lists 127.0.0.1
    ({NEVER: None}, None, None),  # the test entry was not asked
])
def test_judge(answers, all_answers, not_listed):
    health = testpoints.judge(PLAIN, answers)
    assert (None if health.all_answers is None else
            (health.all_answers.status, health.all_answers.brief)) == all_answers
    assert (None if health.not_listed is None else
            (health.not_listed.status, health.not_listed.brief)) == not_listed


def test_judge_names_the_entries():
    dbl = KNOWN["dbl.spamhaus.org"]
    health = testpoints.judge(dbl, {LISTED_: None, NEVER: None})
    assert health.not_listed is not None
    assert "test entry dbltest.com" in health.not_listed.reason
    assert health.note == "dbltest.com not listed, INVALID not listed"
    domain = Zone("dbl.example.net", kind=DOMAIN)
    doubt = testpoints.judge(domain, {LISTED_: None}).not_listed
    assert doubt is not None and "test entry TEST" in doubt.reason
    broken = testpoints.judge(domain, {NEVER: ["127.0.1.2"]}).all_answers
    assert broken is not None and "test entry INVALID, which must never be listed" in \
        broken.reason


def test_a_doubt_applies_to_clean_answers_and_a_broken_list_to_all():
    target = Target.address("192.0.2.1")
    untrusted = testpoints.judge(PLAIN, {LISTED_: None, NEVER: None})
    everything = testpoints.judge(PLAIN, {LISTED_: ["127.0.0.2"], NEVER: ["127.0.0.2"]})
    for status, health, after in [(CLEAN, untrusted, ERROR), (LISTED, untrusted, LISTED),
                                  (FAILED, untrusted, FAILED), (CLEAN, everything, ERROR),
                                  (LISTED, everything, ERROR)]:
        result = lookup.ZoneResult(target, PLAIN, status, reason="r", brief="b")
        lookup._doubt(result, health)
        assert result.status == after, (status, health)


# -- one round ---------------------------------------------------------------------------------

RECORDS = """
2.0.0.127.bl.lab.test.   A    127.0.0.2
10.2.0.192.bl.lab.test.  A    127.0.0.4
10.2.0.192.bl.lab.test.  TXT  "exploited host"
"""


def run_probe(targets: list[Target], **options: object) -> tuple[lookup.DnsblReport, list]:
    with ScriptedDNSServer(DNSBehaviour(RECORDS)) as server:
        report = probe(targets, [Zone("bl.lab.test")], Deadline(10),
                       nameservers=[Nameserver.parse(server.nameserver)], query_timeout=3,
                       **options)  # type: ignore[arg-type]
        return report, list(server.queries)


def test_listing_reason_and_test_entries_in_one_round():
    report, queries = run_probe([Target.address("192.0.2.10"), Target.address("192.0.2.99")])
    assert report.rounds == 1
    # the clean address's TXT question is dropped when its empty A answer comes back before it
    # went out (on a loaded machine): it may or may not reach the server
    asked = {(q.qname, q.rdtype) for q in queries}
    needed = {("10.2.0.192.bl.lab.test.", "A"), ("10.2.0.192.bl.lab.test.", "TXT"),
              ("99.2.0.192.bl.lab.test.", "A"),
              ("2.0.0.127.bl.lab.test.", "A"), ("1.0.0.127.bl.lab.test.", "A")}
    assert needed <= asked <= needed | {("99.2.0.192.bl.lab.test.", "TXT")}
    assert len(queries) == len(asked)  # each question at most once
    listed, clean = report.results
    assert (listed.status, listed.txt, clean.status, clean.txt) == (
        LISTED, ["exploited host"], CLEAN, [])
    assert report.test_entries == {"bl.lab.test": "127.0.0.2 answered 127.0.0.2, "
                                                  "127.0.0.1 not listed"}


def test_options_leave_questions_out():
    report, queries = run_probe([Target.address("192.0.2.10")], want_txt=False, sanity=False)
    assert [(q.qname, q.rdtype) for q in queries] == [("10.2.0.192.bl.lab.test.", "A")]
    assert report.results[0].status == LISTED and report.test_entries == {}


def test_a_fleet_asks_txt_for_its_listings_only():
    """Over MAX_CONCURRENCY questions (a fleet with --hosts): no TXT for every clean pair, but a
    second round for the listings' reasons."""
    fleet = [Target.address(f"198.18.0.{n}") for n in range(1, 1 + lookup.MAX_CONCURRENCY // 2)]
    report, queries = run_probe([Target.address("192.0.2.10"), *fleet])
    assert report.rounds == 2
    assert [q.qname for q in queries if q.rdtype == "TXT"] == ["10.2.0.192.bl.lab.test."]
    assert report.results[0].txt == ["exploited host"]
    assert all(r.status == CLEAN for r in report.results[1:])
