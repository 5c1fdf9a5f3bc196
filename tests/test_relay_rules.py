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


def _incomplete(run: AddressRun):
    return incomplete_finding(run.report.results, run.options.command_timeout)


def test_a_series_judged_in_full_needs_no_excuse() -> None:
    assert _incomplete(_run(Outcome.REFUSED, Outcome.SENDER_REFUSED, Outcome.TEMPFAILED,
                            Outcome.RELAYED, Outcome.NOT_APPLICABLE)) is None


def test_unanswered_attempts_make_the_series_unknown() -> None:
    finding = _incomplete(_run(Outcome.REFUSED, Outcome.TIMEOUT, Outcome.TIMEOUT))
    assert finding is not None
    assert finding.level == Level.UNKNOWN
    assert finding.text == ("only 1 of 3 attempts could be played (2 never answered within "
                            "--command-timeout 2s)")


# -- issue 13: new attempts, depth deliver, the delivery verdict ------------------------------

def test_new_attempts_have_stable_ids_and_the_header_ones_only_play_at_depth_deliver() -> None:
    from mailprobe.probes.relay.catalogue import EVERY_ATTEMPT, HEADER_ATTEMPTS, Preamble

    ids = {a.id for a in CATALOGUE}
    assert {"helo-localhost-localdomain", "helo-ptr-name", "helo-mail-domain",
            "xclient-loopback", "xforward-loopback", "auth-plain-null", "auth-login-null",
            "auth-anonymous", "auth-ntlm-null"} <= ids
    assert {a.id for a in HEADER_ATTEMPTS} == {"header-from-own-domain",
                                               "header-sender-own-domain"}
    assert not ids & {a.id for a in HEADER_ATTEMPTS}
    assert len({a.id for a in EVERY_ATTEMPT}) == len(EVERY_ATTEMPT)
    assert {a.preamble for a in CATALOGUE if a.preamble} == set(Preamble)
    assert [a.id for a in select()] == [a.id for a in CATALOGUE]


def test_select_at_depth_deliver_drops_what_cannot_reach_the_operator() -> None:
    from mailprobe.probes.relay.catalogue import NotPlayable

    chosen = {a.id for a in select(deliver=True)}
    assert "ip-literal-recipient" not in chosen     # {user}@[192.0.2.25]: not the operator
    assert {"plain", "header-from-own-domain", "header-sender-own-domain"} <= chosen
    operator = Targets(ext="operator.test", user="probe", dom="relaylab.test", ip="[127.0.0.1]")
    for attempt in select(deliver=True):
        assert "operator.test" in attempt.rcpt_command(operator).lower(), attempt.id
    with pytest.raises(NotPlayable, match="ip-literal-recipient cannot be addressed"):
        select(["ip-literal-recipient"], deliver=True)
    with pytest.raises(NotPlayable, match="header-from-own-domain needs --depth deliver"):
        select(["header-from-own-domain"])
    assert [a.id for a in select(["plain", "header-from-own-domain"], deliver=True)] == [
        "plain", "header-from-own-domain"]


def test_preambles_name_the_extension_and_mechanism_they_need() -> None:
    from mailprobe.probes.relay.catalogue import Preamble

    assert Preamble.XCLIENT.extension == "XCLIENT" and Preamble.XCLIENT.mechanism == ""
    assert Preamble.XFORWARD.extension == "XFORWARD"
    assert [(p.extension, p.mechanism) for p in Preamble if p.extension == "AUTH"] == [
        ("AUTH", "PLAIN"), ("AUTH", "LOGIN"), ("AUTH", "ANONYMOUS"), ("AUTH", "NTLM")]


def test_ntlm_null_session_messages_carry_no_credentials() -> None:
    import base64

    from mailprobe.probes.relay.runner import NTLM_NEGOTIATE, NTLM_NULL_AUTHENTICATE

    negotiate = base64.b64decode(NTLM_NEGOTIATE)
    assert negotiate[:12] == b"NTLMSSP\x00\x01\x00\x00\x00" and len(negotiate) == 32
    authenticate = base64.b64decode(NTLM_NULL_AUTHENTICATE)
    assert authenticate[:12] == b"NTLMSSP\x00\x03\x00\x00\x00" and len(authenticate) == 64
    for field in range(6):  # LM, NT, domain, user, workstation, session key: all empty at 64
        buffer = authenticate[12 + 8 * field: 20 + 8 * field]
        assert buffer[:4] == bytes(4) and int.from_bytes(buffer[4:], "little") == 64


def test_header_values_are_filled_and_checked() -> None:
    from mailprobe.probes.relay.catalogue import header_value

    assert header_value("postmaster@{dom}", TARGETS) == "postmaster@relaylab.test"
    bad = Targets(ext="x", user="u", dom="a>b", ip="[1]")
    with pytest.raises(AddressError):
        header_value("postmaster@{dom}", bad)


def test_the_test_message_goes_to_the_operator_and_says_what_it_is() -> None:
    from mailprobe.probes.relay.catalogue import BY_ID
    from mailprobe.probes.relay.deliver import relay_message

    operator = Targets(ext="operator.test", user="probe", dom="relaylab.test", ip="[127.0.0.1]")
    plain = relay_message(BY_ID["plain"], operator, "probe@operator.test", "mx.relaylab.test")
    lines = plain.lines()
    assert lines[0] == "From: mailprobe test <probe@operator.test>"
    assert lines[1] == "To: <probe@operator.test>"
    assert plain.token.startswith("mailprobe-relay-plain-") and plain.token in lines[2]
    assert "X-Mailprobe-Test: relay plain" in lines
    assert any("relays mail from outside to outside" in line for line in lines)
    other = relay_message(BY_ID["plain"], operator, "probe@operator.test", "mx.relaylab.test")
    assert other.token != plain.token
    header = relay_message(BY_ID["header-sender-own-domain"], operator, "probe@operator.test",
                           "mx")
    assert header.lines()[:2] == ["From: mailprobe test <probe@operator.test>",
                                  "Sender: <postmaster@relaylab.test>"]
    spoofed = relay_message(BY_ID["header-from-own-domain"], operator, "probe@operator.test",
                            "mx")
    assert spoofed.lines()[0] == "From: <postmaster@relaylab.test>"
    assert spoofed.data().endswith(b"\r\n.\r\n")


def test_the_end_of_message_reply_and_the_mailbox_decide_at_depth_deliver() -> None:
    from mailprobe.probes.relay.deliver import Delivery
    from mailprobe.probes.relay.proof import Watch, settle
    from mailprobe.probes.relay.verdict import classify_message

    assert classify_message(Reply(250, ["Ok: queued"]))[0] is Outcome.RELAYED
    assert classify_message(Reply(550, ["header From: not ours"]))[0] is Outcome.REFUSED_AT_DATA
    assert classify_message(Reply(451, ["later"]))[0] is Outcome.TEMPFAILED
    arrived = AttemptResult(CATALOGUE[0], Outcome.RELAYED, delivery=Delivery("t1", 1.0, 0.4))
    settle(arrived, Watch(watched=3.0))
    assert arrived.outcome is Outcome.RELAYED
    assert arrived.detail == "delivered: token seen in the mailbox after 0.4 s"
    lost = AttemptResult(CATALOGUE[0], Outcome.RELAYED, delivery=Delivery("t2", 1.0))
    settle(lost, Watch(watched=12.3))
    assert lost.outcome is Outcome.ACCEPTED_NOT_DELIVERED
    assert lost.detail == ("accepts outside recipients but did not deliver within 12 s: "
                           "honeypot, catch-all, or a queue")
    unwatched = AttemptResult(CATALOGUE[0], Outcome.RELAYED, delivery=Delivery("t3", 1.0))
    settle(unwatched, Watch(error="login failed"))
    assert unwatched.outcome is Outcome.ERROR       # never claimed either way
    tally = Tally.of([arrived, lost, unwatched,
                      AttemptResult(CATALOGUE[1], Outcome.NOT_APPLICABLE)])
    assert (tally.delivered, tally.undelivered, tally.relayed, tally.inapplicable) == (1, 1, 1, 1)
    assert tally.judged == 3
    assert Outcome.NOT_APPLICABLE in NOT_RELAYED
    assert Outcome.ACCEPTED_NOT_DELIVERED not in NOT_RELAYED | NOT_JUDGED
    assert Outcome.ACCEPTED_NOT_DELIVERED.label == "ACCEPTED-NOT-DELIVERED"


def test_the_mailbox_watch_settles_every_message_taken(tmp_path) -> None:
    import time

    from mailprobe.net.mailbox import open_mailbox, parse_mailbox_url
    from mailprobe.probes.relay.deliver import Delivery
    from mailprobe.probes.relay.proof import watch

    for sub in ("new", "cur", "tmp"):
        (tmp_path / sub).mkdir()
    mailbox = open_mailbox(parse_mailbox_url(f"maildir:{tmp_path}"), Deadline(10))
    sent = time.monotonic()
    (tmp_path / "new" / "1.probe").write_bytes(b"Subject: x mailprobe-relay-plain-0011\n\nhi\n")
    results = [AttemptResult(CATALOGUE[0], Outcome.RELAYED,
                             delivery=Delivery("mailprobe-relay-plain-0011", sent)),
               AttemptResult(CATALOGUE[1], Outcome.RELAYED,
                             delivery=Delivery("mailprobe-relay-sender-null-0022", sent)),
               AttemptResult(CATALOGUE[2], Outcome.REFUSED)]
    report = watch(results, mailbox, Deadline(10), wait=0.5)
    assert (report.messages, report.arrived, report.removed) == (2, 1, 1)
    assert [r.outcome for r in results] == [Outcome.RELAYED, Outcome.ACCEPTED_NOT_DELIVERED,
                                            Outcome.REFUSED]
    assert results[0].delivery is not None and results[0].delivery.removed
    assert list((tmp_path / "new").iterdir()) == []
