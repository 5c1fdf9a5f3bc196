"""check_dnsbl against a real rbldnsd on loopback (fixture: tests/fixtures/rbldnsd.py)."""

from __future__ import annotations

import pytest

from tests.conftest import run_plugin

pytestmark = pytest.mark.integration

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3


@pytest.fixture
def dnsbl(rbldnsd_lab):
    """check_dnsbl with --nameserver pointing at the lab rbldnsd."""

    def call(*args: str):
        return run_plugin("check_dnsbl", "--nameserver", rbldnsd_lab.nameserver, *args)

    return call


def zones(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--zone", name)]


def test_clean_address_is_ok(dnsbl):
    run = dnsbl("-H", "192.0.2.99", *zones("bl.lab.test", "bl2.lab.test", "clean.lab.test"))
    assert run.returncode == OK, run.stdout
    assert run.summary == "DNSBL OK - 192.0.2.99 not listed on 3 lists"
    assert run.perf_value("listed") == 0
    assert run.perf_value("checked") == 3
    assert run.perf_value("failed") == 0
    assert run.perfdata["weight"] == "0;0;1;0"
    assert run.perfdata["time"].endswith(";;;0") and run.perfdata["time"].split(";")[0][-1] == "s"
    assert run.long_output == []


def test_one_listing_is_warning_with_txt_and_code(dnsbl):
    run = dnsbl("-H", "192.0.2.10", *zones("bl.lab.test", "clean.lab.test"))
    assert run.returncode == WARNING, run.stdout
    assert run.summary == "DNSBL WARNING - 192.0.2.10 listed on 1 of 2 lists (bl.lab.test)"
    assert run.perfdata["weight"] == "1;0;1;0"
    assert run.perf_value("listed") == 1
    assert run.perf_value("checked") == 2
    [line] = run.long_output
    assert line.startswith("192.0.2.10 LISTED on bl.lab.test (weight 1): return code 127.0.0.4")
    assert "reason: Exploited host 192.0.2.10, see http://bl.lab.test/lookup" in line


def test_two_listings_are_critical(dnsbl):
    run = dnsbl("-H", "192.0.2.10", *zones("bl.lab.test", "bl2.lab.test", "clean.lab.test"))
    assert run.returncode == CRITICAL, run.stdout
    assert run.summary == ("DNSBL CRITICAL - 192.0.2.10 listed on 2 of 3 lists "
                           "(bl.lab.test, bl2.lab.test)")
    assert run.perf_value("listed") == 2
    assert run.perfdata["weight"] == "2;0;1;0"
    assert len(run.long_output) == 2


def test_listing_without_txt_record(dnsbl):
    run = dnsbl("-H", "192.0.2.12", *zones("bl.lab.test"))
    assert run.returncode == WARNING
    assert run.long_output == ["192.0.2.12 LISTED on bl.lab.test (weight 1): return code "
                               "127.0.0.3: listed"]


def test_weight_and_thresholds(dnsbl):
    heavy = dnsbl("-H", "192.0.2.10", "--zone", "bl.lab.test:2.5", "--zone", "clean.lab.test")
    assert heavy.returncode == CRITICAL
    assert heavy.perfdata["weight"] == "2.5;0;1;0"
    relaxed = dnsbl("-H", "127.0.0.2", *zones("bl.lab.test", "bl2.lab.test"), "-w", "2", "-c", "5")
    assert relaxed.returncode == OK
    assert relaxed.summary.startswith("DNSBL OK - 127.0.0.2 listed on 2 of 2 lists")
    assert relaxed.perfdata["weight"] == "2;2;5;0"


def test_spamhaus_public_resolver_answer_is_not_a_listing(dnsbl):
    run = dnsbl("-H", "192.0.2.99", *zones("err.lab.test", "clean.lab.test"))
    assert run.returncode == UNKNOWN, run.stdout
    assert run.summary == ("DNSBL UNKNOWN - 192.0.2.99 not listed on 1 of 2 lists; "
                           "1 list could not be checked (err.lab.test)")
    assert run.perf_value("listed") == 0
    assert run.perf_value("failed") == 1
    assert run.perf_value("checked") == 1
    [line] = run.long_output
    assert "answer 127.255.255.254: the list refuses queries sent through a public" in line


def test_error_state_option(dnsbl):
    run = dnsbl("-H", "192.0.2.99", *zones("err.lab.test", "clean.lab.test"),
                "--error-state", "warning")
    assert run.returncode == WARNING
    assert run.summary.startswith("DNSBL WARNING - 192.0.2.99 not listed on 1 of 2 lists")


def test_answer_outside_loopback_is_an_error(dnsbl):
    run = dnsbl("-H", "192.0.2.99", *zones("outside.lab.test", "clean.lab.test"))
    assert run.returncode == UNKNOWN
    assert run.perf_value("listed") == 0
    assert "answer 192.0.2.1: the answer 192.0.2.1 is outside 127.0.0.0/8" in run.stdout


def test_list_that_lists_everything_is_caught(dnsbl):
    run = dnsbl("-H", "192.0.2.99", *zones("all.lab.test", "clean.lab.test"))
    assert run.returncode == UNKNOWN, run.stdout
    assert run.perf_value("listed") == 0
    assert "RFC 5782 test entry 127.0.0.1" in run.stdout
    unchecked = dnsbl("-H", "192.0.2.99", *zones("all.lab.test"), "--no-sanity-check")
    assert unchecked.returncode == WARNING


def test_refused_zone_is_could_not_check(dnsbl):
    run = dnsbl("-H", "192.0.2.99", *zones("unserved.example.net", "clean.lab.test"))
    assert run.returncode == UNKNOWN
    assert run.summary.endswith("1 list could not be checked (unserved.example.net)")
    assert "the resolver REFUSED the query" in run.stdout


def test_every_zone_failed_is_unknown(dnsbl):
    run = dnsbl("-H", "127.0.0.2", *zones("unserved.example.net", "err.lab.test"))
    assert run.returncode == UNKNOWN
    assert run.summary == ("DNSBL UNKNOWN - could not check any list (err.lab.test answered "
                           "127.255.255.254, unserved.example.net REFUSED)")
    assert run.perf_value("checked") == 0
    assert run.perf_value("failed") == 2


def test_never_answering_zone_finishes_within_timeout(dnsbl):
    run = dnsbl("-t", "3", "--query-timeout", "10", "-H", "192.0.2.10",
                *zones("dead.lab.test", "bl.lab.test", "clean.lab.test"))
    assert run.seconds < 3 + 1, run.seconds
    assert run.returncode == UNKNOWN, run.stdout  # UNKNOWN outranks a WARNING listing
    assert run.summary == ("DNSBL UNKNOWN - 192.0.2.10 listed on 1 of 3 lists (bl.lab.test); "
                           "1 list could not be checked (dead.lab.test)")
    assert run.perf_value("failed") == 1
    assert run.perf_value("listed") == 1
    assert run.perf_value("checked") == 2
    assert "dead.lab.test (no usable answer)" in run.stdout


def test_query_timeout_caps_each_list(dnsbl):
    run = dnsbl("--query-timeout", "1", "-H", "192.0.2.99", *zones("dead.lab.test",
                                                                    "clean.lab.test"))
    assert run.returncode == UNKNOWN
    assert run.perf_value("time") < 2.5
    assert "no answer within 1.0s" in run.stdout


def test_critical_outranks_could_not_check(dnsbl):
    run = dnsbl("-t", "3", "--query-timeout", "1", "-H", "127.0.0.2",
                *zones("dead.lab.test", "bl.lab.test", "bl2.lab.test"))
    assert run.returncode == CRITICAL
    assert run.perf_value("failed") == 1


def test_silent_nameserver(rbldnsd_lab, silent_nameserver):
    run = run_plugin("check_dnsbl", "--nameserver", silent_nameserver, "-t", "2",
                     "-H", "192.0.2.99", *zones("bl.lab.test", "clean.lab.test"))
    assert run.seconds < 2 + 1
    assert run.returncode == UNKNOWN
    assert run.summary == ("DNSBL UNKNOWN - could not check any list (bl.lab.test timed out, "
                           "clean.lab.test timed out)")
    assert run.perf_value("failed") == 2


def test_host_name_checks_every_address(dnsbl):
    run = dnsbl("-H", "mail.hosts.test", *zones("bl.lab.test", "clean.lab.test"))
    assert run.returncode == WARNING, run.stdout
    assert run.summary.startswith("DNSBL WARNING - mail.hosts.test (")
    assert "192.0.2.10 listed on 1 of 2 lists (bl.lab.test); 192.0.2.20 not listed on 2 lists" \
        in run.summary
    assert run.perf_value("checked") == 4


def test_host_name_without_address_is_unknown(dnsbl):
    run = dnsbl("-H", "nothing.hosts.test", *zones("bl.lab.test"))
    assert run.returncode == UNKNOWN
    assert run.summary == ("DNSBL UNKNOWN - nothing.hosts.test has no A or AAAA address: "
                           "nothing to check")


def test_ipv6_nibble_listing(dnsbl):
    run = dnsbl("-H", "2001:db8::10", *zones("bl.lab.test", "clean.lab.test"))
    assert run.returncode == WARNING, run.stdout
    assert run.summary == "DNSBL WARNING - 2001:db8::10 listed on 1 of 2 lists (bl.lab.test)"
    assert "reason: IPv6 2001:db8::10 listed on bl.lab.test" in run.stdout


def test_ipv4_mapped_address_is_checked_as_ipv4(dnsbl):
    run = dnsbl("-H", "::ffff:192.0.2.10", *zones("bl.lab.test"))
    assert run.summary == "DNSBL WARNING - 192.0.2.10 listed on 1 of 1 list (bl.lab.test)"


def test_domain_list(dnsbl):
    listed = dnsbl("--mail-domain", "mx.bad.example", "--zone", "dbl.lab.test:domain")
    assert listed.returncode == WARNING, listed.stdout
    assert listed.summary == ("DNSBL WARNING - mx.bad.example listed on 1 of 1 domain list "
                              "(dbl.lab.test)")
    assert "reason: Domain bad.example sends spam" in listed.stdout
    clean = dnsbl("--mail-domain", "good.example", "--zone", "dbl.lab.test:domain")
    assert clean.returncode == OK
    assert clean.summary == "DNSBL OK - good.example not listed on 1 domain list"


def test_address_and_domain_together(dnsbl):
    run = dnsbl("-H", "127.0.0.2", "--mail-domain", "spam.example",
                *zones("bl.lab.test", "dbl.lab.test:domain"))
    assert run.returncode == CRITICAL
    assert run.summary == ("DNSBL CRITICAL - 127.0.0.2 listed on 1 of 1 list (bl.lab.test); "
                           "spam.example listed on 1 of 1 domain list (dbl.lab.test)")


def test_curated_codes_end_to_end(dnsbl):
    """Curated zone names served by the local rbldnsd: meanings and removal URLs show."""
    xbl = dnsbl("-H", "192.0.2.4", "--zone", "zen.spamhaus.org")
    assert xbl.returncode == CRITICAL  # ZEN has weight 2
    assert "return code 127.0.0.4: XBL: exploited host" in xbl.stdout
    assert "removal/lookup: https://check.spamhaus.org/results/?query=192.0.2.4" in xbl.stdout
    pbl = dnsbl("-H", "192.0.2.11", "--zone", "zen.spamhaus.org:1")
    assert pbl.returncode == WARNING
    assert "PBL (Spamhaus-maintained)" in pbl.stdout
    surbl = dnsbl("--mail-domain", "malware.example", "--zone", "multi.surbl.org",
                  "--zone", "dbl.spamhaus.org")
    assert "return code 127.0.0.24: PH: phishing, MW: malware" in surbl.stdout
    phish = dnsbl("--mail-domain", "phish.example", "--zone", "dbl.spamhaus.org")
    assert "return code 127.0.1.4: phishing domain" in phish.stdout


def test_default_set_is_used_and_unserved_lists_fail(dnsbl):
    """The default lists, all asked of our rbldnsd: only zen.spamhaus.org is served there."""
    run = dnsbl("-H", "127.0.0.2", "-t", "10")
    assert run.returncode == CRITICAL, run.stdout
    assert run.summary == ("DNSBL CRITICAL - 127.0.0.2 listed on 1 of 11 lists "
                           "(zen.spamhaus.org); 10 lists could not be checked (all.s5h.net, "
                           "b.barracudacentral.org, bl.0spam.org and 7 more)")
    assert len([line for line in run.long_output if "could not be checked" in line]) == 10
    assert run.perf_value("checked") == 1
    assert run.perf_value("failed") == 10


def test_add_zone_and_exclude(dnsbl, tmp_path):
    run = dnsbl("-H", "127.0.0.2", "--add-zone", "bl.lab.test", "--exclude", "zen.spamhaus.org",
                "-w", "100", "-c", "100", "--failed-state", "ok")
    assert run.returncode == OK, run.stdout
    assert run.summary.startswith("DNSBL OK - 127.0.0.2 listed on 1 of 11 lists (bl.lab.test); "
                                  "10 lists could not be checked")


def test_list_file(dnsbl, tmp_path):
    path = tmp_path / "zones.txt"
    path.write_text("# lab lists\nbl.lab.test 3\nclean.lab.test\n\ndbl.lab.test domain 0.5\n")
    run = dnsbl("-H", "192.0.2.10", "--mail-domain", "spam.example", "--list", str(path))
    assert run.returncode == CRITICAL
    assert run.perfdata["weight"] == "3.5;0;1;0"
    assert run.perf_value("checked") == 3


@pytest.mark.parametrize(("args", "message"), [
    ((), "give -H HOST, --hosts FILE and/or --mail-domain DOMAIN"),
    (("-H", "127.0.0.2", "--zone", "dnsbl.sorbs.net"), "dnsbl.sorbs.net must not be used: "
                                                       "SORBS closed in June 2024"),
    (("--domain", "x.example", "--zone", "bl.lab.test"), "--mail-domain given but no domain list"),
    (("-H", "127.0.0.2", "--zone", "bl.lab.test:heavy"), "bad zone option 'heavy'"),
    (("-H", "127.0.0.2", "--list", "/nonexistent/zones"), "cannot read --list"),
    (("-H", "127.0.0.2", "--error-state", "maybe"), "invalid state 'maybe'"),
    (("-4", "-H", "2001:db8::1"), "-4 given but -H 2001:db8::1 is IPv6"),
])
def test_bad_options_are_unknown(dnsbl, args, message):
    run = dnsbl(*args)
    assert run.returncode == UNKNOWN
    assert run.status_line.startswith("DNSBL UNKNOWN - bad option: ")
    assert message in run.status_line


def test_help_lists_options():
    run = run_plugin("check_dnsbl", "--help")
    for option in ("--zone", "--list", "--add-zone", "--exclude", "--query-timeout",
                   "--error-state", "--nameserver"):
        assert option in run.stdout


def test_verbose_levels(dnsbl):
    quiet = dnsbl("-H", "192.0.2.10", *zones("bl.lab.test", "clean.lab.test"))
    verbose = dnsbl("-v", "-H", "192.0.2.10", *zones("bl.lab.test", "clean.lab.test"))
    assert not any("not listed on clean.lab.test" in line for line in quiet.long_output)
    assert any(line.startswith("192.0.2.10 not listed on clean.lab.test (")
               for line in verbose.long_output)
    transcript = dnsbl("-vvv", "-H", "192.0.2.10", *zones("bl.lab.test", "clean.lab.test"))
    assert "  10.2.0.192.bl.lab.test A -> 127.0.0.4 (" in transcript.stdout
    assert "  10.2.0.192.bl.lab.test TXT -> Exploited host 192.0.2.10" in transcript.stdout
    assert "  1.0.0.127.bl.lab.test A -> NXDOMAIN/NODATA (" in transcript.stdout
    assert "  2.0.0.127.bl.lab.test A -> 127.0.0.2 (" in transcript.stdout
    assert "  2.0.0.127.clean.lab.test A -> 127.0.0.2 (" in transcript.stdout
    assert "  10.2.0.192.clean.lab.test A -> NXDOMAIN/NODATA (" in transcript.stdout


def test_ipv6_address_skips_lists_without_ipv6(dnsbl):
    run = dnsbl("-v", "-H", "2001:db8::10", "--zone", "bl.spamcop.net", "--zone", "bl.lab.test")
    assert run.returncode == WARNING
    assert run.perf_value("checked") == 1
    assert "2001:db8::10 not asked on bl.spamcop.net: the list does not list IPv6" in run.stdout
    none = dnsbl("-H", "2001:db8::10", "--zone", "bl.spamcop.net")
    assert none.returncode == UNKNOWN
    assert none.summary == ("DNSBL UNKNOWN - none of the selected lists lists IPv6 addresses: "
                            "nothing was checked")


def test_name_resolution_through_silent_resolver_is_unknown(silent_nameserver):
    run = run_plugin("check_dnsbl", "--nameserver", silent_nameserver, "-t", "2",
                     "-H", "mail.hosts.test", "--zone", "bl.lab.test")
    assert run.seconds < 2 + 1
    assert run.returncode == UNKNOWN
    assert run.status_line.startswith("DNSBL UNKNOWN - ")
    assert "mail.hosts.test" in run.status_line


def test_hosts_file_audits_many_mailers_in_one_run(dnsbl, tmp_path):
    hosts = tmp_path / "mailers"
    clean = [f"198.18.0.{n}" for n in range(1, 41)]
    hosts.write_text("# outbound mailers\n192.0.2.10\n" + "\n".join(clean) + "\n2001:db8::10\n")
    run = dnsbl("--hosts", str(hosts), *zones("bl.lab.test", "clean.lab.test"), "-c", "5")
    assert run.returncode == WARNING, run.stdout
    assert run.summary.startswith("DNSBL WARNING - 192.0.2.10 listed on 1 of 2 lists "
                                  "(bl.lab.test); 2001:db8::10 listed on 1 of 2 lists "
                                  "(bl.lab.test); 198.18.0.1 not listed on 2 lists;")
    assert run.summary.endswith("; 37 more addresses not listed")
    assert run.perf_value("listed") == 2
    assert run.perf_value("checked") == 2 * 42
    assert run.perf_value("failed") == 0


@pytest.mark.parametrize(("content", "message"), [
    ("192.0.2.10\nmail.example.org\n", "line 2: 'mail.example.org' is not an IP address"),
    ("# nothing\n", "names no address"),
])
def test_bad_hosts_file_is_unknown(dnsbl, tmp_path, content, message):
    hosts = tmp_path / "mailers"
    hosts.write_text(content)
    run = dnsbl("--hosts", str(hosts), *zones("bl.lab.test"))
    assert run.returncode == UNKNOWN, run.stdout
    assert run.status_line.startswith("DNSBL UNKNOWN - bad option: --hosts ")
    assert message in run.status_line


def test_unreadable_hosts_file_is_unknown(dnsbl, tmp_path):
    run = dnsbl("--hosts", str(tmp_path / "missing"), *zones("bl.lab.test"))
    assert run.returncode == UNKNOWN
    assert "cannot read --hosts" in run.status_line


def test_each_answer_is_timed(rbldnsd_lab):
    """-v prints each clean list's answer time: the probe records it per (target, list)."""
    from mailprobe.net.deadline import Deadline
    from mailprobe.net.dns import Nameserver
    from mailprobe.probes.dnsbl.lookup import Target, probe
    from mailprobe.probes.dnsbl.zones import Zone

    report = probe([Target.address("192.0.2.99")], [Zone("clean.lab.test"), Zone("bl.lab.test")],
                   Deadline(5), nameservers=[Nameserver.parse(rbldnsd_lab.nameserver)])
    assert [r.status for r in report.results] == ["clean", "clean"]
    assert all(0 < r.seconds < 5 for r in report.results)


# -- issue 12: no false verdicts ---------------------------------------------------------------

def test_list_without_its_test_entry_is_never_clean(dnsbl):
    """A real rbldnsd serving a zone that lists nothing, not even RFC 5782's 127.0.0.2: what a
    dead list, or a resolver answering NXDOMAIN for everything, looks like."""
    run = dnsbl("-H", "192.0.2.99", *zones("notest.lab.test", "clean.lab.test"))
    assert run.returncode == UNKNOWN, run.stdout
    assert run.summary == ("DNSBL UNKNOWN - 192.0.2.99 not listed on 1 of 2 lists; "
                           "1 list could not be checked (notest.lab.test)")
    [line] = run.long_output
    assert line.startswith("192.0.2.99 could not be checked on notest.lab.test (error answer): "
                           "the list does not list its RFC 5782 test entry 127.0.0.2")
    alone = dnsbl("-H", "192.0.2.99", *zones("notest.lab.test"))
    assert alone.summary == ("DNSBL UNKNOWN - could not check any list (notest.lab.test test "
                             "entry not listed)")


def test_zone_option_no_test_entry(dnsbl):
    run = dnsbl("-v", "-H", "192.0.2.99", "--zone", "notest.lab.test:no-test-entry")
    assert run.returncode == OK, run.stdout
    assert "notest.lab.test RFC 5782 test entries: 127.0.0.1 not listed" in run.long_output
    unchecked = dnsbl("-H", "192.0.2.99", *zones("notest.lab.test"), "--no-sanity-check")
    assert unchecked.returncode == OK


def test_domain_lists_test_points(dnsbl):
    """Each domain list is asked the test point it documents (Spamhaus dbltest.com, SURBL
    test.surbl.org), or RFC 5782's TEST."""
    run = dnsbl("-v", "--mail-domain", "good.example", "--zone", "dbl.spamhaus.org",
                "--zone", "multi.surbl.org", "--zone", "dbl.lab.test:domain")
    assert run.returncode == OK, run.stdout
    assert "dbl.spamhaus.org RFC 5782 test entries: dbltest.com answered 127.0.1.2, INVALID " \
           "not listed" in run.long_output
    assert "multi.surbl.org RFC 5782 test entries: test.surbl.org answered 127.0.0.254, " \
           "INVALID not listed" in run.long_output
    assert "dbl.lab.test RFC 5782 test entries: TEST answered 127.0.1.2, INVALID not listed" \
        in run.long_output
    dead = dnsbl("--mail-domain", "good.example", "--zone", "notest.lab.test:domain")
    assert dead.returncode == UNKNOWN
    assert "test entry not listed" in dead.summary


def test_listing_reason_and_test_entries_in_one_round(dnsbl):
    run = dnsbl("-v", "-H", "192.0.2.10", *zones("bl.lab.test", "clean.lab.test"))
    assert run.returncode == WARNING, run.stdout
    assert "reason: Exploited host 192.0.2.10" in run.stdout
    assert run.long_output[-1].startswith("2 questions to 2 lists for 1 target: 8 DNS queries "
                                          "in one round, ")


def test_fleet_asks_the_reasons_of_its_listings_after(dnsbl, tmp_path):
    hosts = tmp_path / "mailers"
    hosts.write_text("192.0.2.10\n" + "\n".join(f"198.18.1.{n}" for n in range(1, 120)) + "\n")
    run = dnsbl("-v", "--hosts", str(hosts), *zones("bl.lab.test"))
    assert run.returncode == WARNING, run.stdout
    assert "reason: Exploited host 192.0.2.10" in run.stdout
    assert run.long_output[-1].startswith("120 questions to 1 list for 120 targets: 123 DNS "
                                          "queries in 2 rounds, ")


@pytest.mark.parametrize(("host", "summary"), [
    ("sinkhole.hosts.test", "DNSBL UNKNOWN - sinkhole.hosts.test A answered 0.0.0.0, which "
                            "cannot be a mail server (the unspecified address: connecting to "
                            "it reaches this host, not the target): a bad DNS answer; it has no "
                            "AAAA address; nothing was checked"),
    ("group.hosts.test", "DNSBL UNKNOWN - group.hosts.test A answered 224.0.0.1, which cannot "
                         "be a mail server (a multicast address): a bad DNS answer; it has no "
                         "AAAA address; nothing was checked"),
    ("half.hosts.test", "DNSBL UNKNOWN - half.hosts.test (192.0.2.20): 192.0.2.20 not listed "
                        "on 1 list; half.hosts.test A answered 0.0.0.0: bad DNS answer, not "
                        "checked"),
])
def test_host_name_answering_unusable_addresses(dnsbl, host, summary):
    run = dnsbl("-H", host, *zones("clean.lab.test"))
    assert run.returncode == UNKNOWN, run.stdout
    assert run.summary == summary


def test_unusable_address_in_hosts_file_is_a_bad_option(dnsbl, tmp_path):
    hosts = tmp_path / "mailers"
    hosts.write_text("192.0.2.10\n0.0.0.0\n")
    run = dnsbl("--hosts", str(hosts), *zones("bl.lab.test"))
    assert run.returncode == UNKNOWN
    assert run.status_line.startswith("DNSBL UNKNOWN - bad option: --hosts ")
    assert "line 2: 0.0.0.0 cannot be a mail server (the unspecified address" in run.status_line
