"""Unit tests for the relay catalogue, its address builder, the verdict rules, what counts as
judged, and the addresses of -H."""

from __future__ import annotations

import errno
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailprobe.checks.open_relay import incomplete_finding
from mailprobe.findings import Level
from mailprobe.net.deadline import Deadline
from mailprobe.net.smtp import ConnectError, Reply
from mailprobe.probes.relay.catalogue import (
    CATALOGUE,
    CONTROL,
    AddressError,
    Greeting,
    Targets,
    check_domain,
    check_local_part,
    select,
)
from mailprobe.probes.relay.resolve import _unique, resolve
from mailprobe.probes.relay.runner import RelayOptions, is_local_failure
from mailprobe.probes.relay.survey import AddressRun
from mailprobe.probes.relay.verdict import (
    NOT_JUDGED,
    NOT_RELAYED,
    AttemptResult,
    Outcome,
    Tally,
    classify,
    classify_data,
)

TARGETS = Targets(ext="example.net", user="relaytest", dom="relaylab.test", ip="[127.0.0.1]")


def test_catalogue_is_large_unique_and_covers_the_issue_forms() -> None:
    ids = [a.id for a in CATALOGUE]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)
    rcpts = {a.rcpt_command(TARGETS) for a in CATALOGUE}
    for form in [
        "RCPT TO:<relaytest%example.net@relaylab.test>",
        "RCPT TO:<relaytest%example.net@[127.0.0.1]>",
        'RCPT TO:<"relaytest@example.net">',
        'RCPT TO:<"relaytest@example.net"@relaylab.test>',
        'RCPT TO:<"relaytest%example.net"@relaylab.test>',
        "RCPT TO:<relaytest@example.net@relaylab.test>",
        "RCPT TO:<relaytest@example.net@[127.0.0.1]>",
        "RCPT TO:<@relaylab.test:relaytest@example.net>",
        "RCPT TO:<@[127.0.0.1]:relaytest@example.net>",
        "RCPT TO:<example.net!relaytest>",
        "RCPT TO:<example.net!relaytest@relaylab.test>",
        "RCPT TO:<example.net!relaytest@[127.0.0.1]>",
        "RCPT TO:<relaytest@[192.0.2.25]>",
        "RCPT TO:<relaytest@example.net.>",
        "RCPT TO:<RELAYTEST@EXAMPLE.NET>",
        "RCPT TO:relaytest@example.net",
    ]:
        assert form in rcpts, form
    senders = {a.mail_command(TARGETS) for a in CATALOGUE}
    for form in ["MAIL FROM:<>", "MAIL FROM:<relaytest@example.net>",
                 "MAIL FROM:<postmaster@relaylab.test>", "MAIL FROM:<postmaster@[127.0.0.1]>",
                 "MAIL FROM:<postmaster@localhost>", "MAIL FROM:<postmaster>"]:
        assert form in senders, form
    greetings = {a.greeting for a in CATALOGUE}
    assert {Greeting.NONE, Greeting.SERVER_NAME, Greeting.LOCALHOST, Greeting.HELO} <= greetings


def test_control_goes_to_the_local_postmaster() -> None:
    assert CONTROL.rcpt_command(TARGETS) == "RCPT TO:<postmaster@relaylab.test>"


def test_ipv6_literal_is_rfc5321_form() -> None:
    targets = Targets(ext="example.net", user="u", dom="d.test", ip="[IPv6:::1]")
    attempt = select(["percent-hack-ip"])[0]
    assert attempt.rcpt_command(targets) == "RCPT TO:<u%example.net@[IPv6:::1]>"


def test_select_keeps_catalogue_order_and_names_unknown_ids() -> None:
    assert [a.id for a in select(["bang-path", "plain"])] == ["plain", "bang-path"]
    assert "plain" not in [a.id for a in select(skip=["plain"])]
    with pytest.raises(KeyError, match="nope"):
        select(["plain", "nope"])


@pytest.mark.parametrize("bad", ["exa mple.net", "a\r\nRCPT TO:<x@y>", "", "-x.net", "a..b"])
def test_domains_that_could_inject_commands_are_refused(bad: str) -> None:
    with pytest.raises(AddressError):
        check_domain(bad, "--external-domain")


def test_local_parts() -> None:
    assert check_local_part("relay.test+1", "user") == "relay.test+1"
    with pytest.raises(AddressError):
        check_local_part("a b", "user")


@given(st.text(max_size=80))
def test_address_checks_raise_only_their_own_error(text: str) -> None:
    for check in (check_domain, check_local_part):
        try:
            value = check(text, "x")
        except AddressError:
            continue
        assert "\r" not in value and "\n" not in value and " " not in value and ">" not in value


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_template_filling_is_byte_for_byte(user_part: str) -> None:
    template = "<" + user_part.replace("{", "").replace("}", "") + "%{ext}@{dom}>"
    filled = TARGETS.fill(template)
    assert filled.endswith("%example.net@relaylab.test>")


OK250 = Reply(250, ("2.1.0 Ok",))


@pytest.mark.parametrize(("mail", "rcpt", "expected"), [
    (OK250, Reply(250), Outcome.RELAYED),
    (OK250, Reply(251), Outcome.RELAYED),
    (OK250, Reply(554, ("5.7.1 Relay access denied",)), Outcome.REFUSED),
    (OK250, Reply(550), Outcome.REFUSED),
    (OK250, Reply(454, ("4.7.1 Relay access denied",)), Outcome.TEMPFAILED),
    (OK250, Reply(450), Outcome.TEMPFAILED),
    (Reply(553), None, Outcome.SENDER_REFUSED),
    (Reply(451), None, Outcome.TEMPFAILED),
    (OK250, Reply(354), Outcome.ERROR),
    (OK250, None, Outcome.ERROR),
    (None, None, Outcome.ERROR),
])
def test_classify(mail: Reply | None, rcpt: Reply | None, expected: Outcome) -> None:
    assert classify(mail, rcpt)[0] is expected


def test_temporary_refusal_says_why_it_is_not_a_pass() -> None:
    assert "not a proper relay refusal" in classify(OK250, Reply(454))[1]


def test_data_depth() -> None:
    assert classify_data(Reply(354))[0] is Outcome.RELAYED
    assert classify_data(Reply(554))[0] is Outcome.REFUSED_AT_DATA
    assert classify_data(Reply(451))[0] is Outcome.REFUSED_AT_DATA


@pytest.mark.parametrize("code", [250, 221, 334])
def test_a_positive_reply_other_than_354_at_data_is_not_judged(code: int) -> None:
    """Only 354 answers DATA: anything else positive is no proof of a relay."""
    assert classify_data(Reply(code))[0] is Outcome.ERROR


def test_unanswered_and_unplayed_attempts_are_never_counted_as_refused() -> None:
    assert not NOT_RELAYED & NOT_JUDGED
    assert {Outcome.TIMEOUT, Outcome.ERROR, Outcome.NOT_RUN} == NOT_JUDGED


def test_tally_counts_each_outcome_once() -> None:
    attempt = CATALOGUE[0]
    results = [AttemptResult(attempt, outcome) for outcome in
               [Outcome.RELAYED, Outcome.REFUSED, Outcome.SENDER_REFUSED, Outcome.TEMPFAILED,
                Outcome.TIMEOUT, Outcome.ERROR, Outcome.NOT_RUN, Outcome.REFUSED_AT_DATA]]
    tally = Tally.of(results)
    assert (tally.attempts, tally.relayed, tally.tempfailed, tally.refused, tally.timeouts,
            tally.errors, tally.not_run) == (8, 1, 1, 3, 1, 1, 1)
    assert tally.judged == 5  # a timeout, an error and an attempt not run were not judged


# -- what cannot be judged, and where the probe cannot go (issue 12) ----------------------------
def _connect_error(cause: OSError) -> ConnectError:
    try:
        raise ConnectError("cannot connect", "connecting") from cause
    except ConnectError as exc:
        return exc


@pytest.mark.parametrize(("cause", "local"), [
    (OSError(errno.ENETUNREACH, "Network is unreachable"), True),
    (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), True),
    (socket.gaierror(-9, "Address family for hostname not supported"), True),
    (OSError(errno.ECONNREFUSED, "Connection refused"), False),
    (OSError(errno.EHOSTUNREACH, "No route to host"), False),  # may come from the far side
    (TimeoutError("timed out"), False),
])
def test_only_local_connect_failures_say_nothing_about_the_server(cause: OSError,
                                                                  local: bool) -> None:
    assert is_local_failure(_connect_error(cause)) is local


def test_addresses_are_probed_once_each_ipv4_first_in_numeric_order() -> None:
    assert _unique(["::1", "127.0.0.10", "127.0.0.9", "::ffff:127.0.0.9", "2001:db8::2",
                    "2001:db8::10"]) == ["127.0.0.9", "127.0.0.10", "::1", "2001:db8::2",
                                         "2001:db8::10"]


def test_an_address_needs_no_dns() -> None:
    """-H 2001:DB8::1 is itself (normalised); no resolver is asked (none is given)."""
    resolution = resolve("2001:DB8::1", None, 0, Deadline(1))
    assert (resolution.addresses, resolution.failures) == (["2001:db8::1"], {})


def _run(*outcomes: Outcome) -> AddressRun:
    options = RelayOptions(address="127.0.0.1", port=25, targets=TARGETS, helo_name="probe.test",
                           command_timeout=2)
    run = AddressRun("127.0.0.1", options)
    run.report.control = AttemptResult(CONTROL, Outcome.RELAYED)
    run.report.results = [AttemptResult(CATALOGUE[n], outcome) for n, outcome in
                          enumerate(outcomes)]
    return run


def test_a_series_judged_in_full_needs_no_excuse() -> None:
    assert incomplete_finding(_run(Outcome.REFUSED, Outcome.SENDER_REFUSED,
                                   Outcome.TEMPFAILED, Outcome.RELAYED)) is None


def test_unanswered_attempts_make_the_series_unknown() -> None:
    finding = incomplete_finding(_run(Outcome.REFUSED, Outcome.TIMEOUT, Outcome.TIMEOUT))
    assert finding is not None
    assert finding.level == Level.UNKNOWN
    assert finding.text == ("only 1 of 3 attempts could be played (2 never answered within "
                            "--command-timeout 2s)")
