"""check_smtp_smuggling and check_backscatter against every misbehaving SMTP server of the
hostile catalogue (tests/hostile/smtp_cases.py): the documented state, one readable status
line, done within -t + 1 s (tests/hostile/expect.py). Spoken from 127.0.0.2, --mail-domain
lab.test, -t 4; the scripted servers accept any local part of lab.test and take a bare LF as a
line end (so <LF>.<LF> ends DATA there)."""

from __future__ import annotations

import pytest

from mailprobe.net.dns import is_ip_address
from tests.conftest import run_plugin
from tests.hostile.expect import CRITICAL, UNKNOWN, WARNING, Expect, assert_run
from tests.hostile.smtp_cases import SMTP_CASES, SMTPCase
from tests.hostile.test_smtp_hostile import serving

DOWN = r"mail service down: no usable banner: "
WITHIN = DOWN + r"no complete reply from .* while waiting for the banner"
AT_BANNER = r"inconclusive: 127\.0\.0\.1 refuses this vantage point at the banner \("
SMUGGLED = r"ends DATA at \d of 9 non-standard sequences: <LF>\.<LF>, "
# a server that dies mid-series: how many sequences it judged first depends on the machine's
# load (the connections run in parallel); <LF>.<LF>, the first connection's, always is
SMUGGLED_FIRST = r"ends DATA at \d of 9 non-standard sequences: <LF>\.<LF>[ ,]"
ALL_OPEN = r"ends DATA at 5 of 9 non-standard sequences: <LF>\.<LF>, <LF>\.<CR><LF>, "
NOT_JUDGED = r"9 of 9 sequences could not be judged \("
NO_RCPT_TEST = r"inconclusive: the RCPT test could not be completed \("
ACCEPTS = r"accepts mail for unknown users at RCPT \(250 "
OUT_OF_STEP = r"the server's replies got out of step with the commands"
#: The catalogue's servers on an address. The cases that serve a host *name* (dual stack,
#: dropped A/AAAA questions) are about how check_open_relay resolves -H; the other plugins
#: resolve -H through net.dns, whose faults the DNS catalogue covers.
CASES = [case for case in SMTP_CASES if is_ip_address(case.host)]

#: case id -> (check_smtp_smuggling, check_backscatter)
EXPECTED: dict[str, tuple[Expect, Expect]] = {
    "refused": (Expect(CRITICAL, DOWN + r"cannot connect .*refused"),
                Expect(CRITICAL, DOWN + r"cannot connect .*refused")),
    "close-at-once": (Expect(CRITICAL, DOWN + r".*closed the connection"),
                      Expect(CRITICAL, DOWN + r".*closed the connection")),
    "no-banner": (Expect(CRITICAL, WITHIN), Expect(CRITICAL, WITHIN)),
    # the banner costs 1 s per connection: part of the series may run out of time; the first
    # connection's <LF>.<LF> is judged in any case
    "banner-1s": (Expect(CRITICAL, SMUGGLED),
                  Expect(WARNING, ACCEPTS)),
    "banner-10s": (Expect(CRITICAL, WITHIN), Expect(CRITICAL, WITHIN)),
    "banner-beyond-t": (Expect(CRITICAL, WITHIN), Expect(CRITICAL, WITHIN)),
    "banner-drip": (Expect(CRITICAL, WITHIN), Expect(CRITICAL, WITHIN)),
    "banner-421": (Expect(UNKNOWN, AT_BANNER + r"421 4\.3\.2"),
                   Expect(UNKNOWN, AT_BANNER + r"421 4\.3\.2")),
    "banner-554": (Expect(UNKNOWN, AT_BANNER + r"554 5\.7\.1"),
                   Expect(UNKNOWN, AT_BANNER + r"554 5\.7\.1")),
    "garbage-banner": (Expect(CRITICAL, DOWN + r"not an SMTP reply"),
                       Expect(CRITICAL, DOWN + r"not an SMTP reply")),
    "reset-after-banner": (Expect(UNKNOWN, NOT_JUDGED + r"could not open a mail transaction: "
                                                        r".*reset the connection"),
                           Expect(UNKNOWN, NO_RCPT_TEST + r".*reset the connection")),
    "reset-after-ehlo": (Expect(UNKNOWN, NOT_JUDGED + r".*reset the connection"),
                         Expect(UNKNOWN, NO_RCPT_TEST + r".*reset the connection")),
    "reset-mid-attempt": (Expect(UNKNOWN, NOT_JUDGED + r".*reset the connection"),
                          Expect(UNKNOWN, NO_RCPT_TEST + r".*reset the connection")),
    "bare-lf": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    "no-line-end": (Expect(CRITICAL, WITHIN), Expect(CRITICAL, WITHIN)),
    "megabyte-line": (Expect(UNKNOWN, NOT_JUDGED + r".*longer than"),
                      Expect(UNKNOWN, NO_RCPT_TEST + r".*longer than")),
    "endless-multiline": (Expect(UNKNOWN, NOT_JUDGED + r".*more than \d+ lines"),
                          Expect(UNKNOWN, NO_RCPT_TEST + r".*more than \d+ lines")),
    "code-change": (Expect(UNKNOWN, NOT_JUDGED + r".*reply code changed"),
                    Expect(UNKNOWN, NO_RCPT_TEST + r".*reply code changed")),
    "yes-to-everything": (Expect(UNKNOWN, NOT_JUDGED + r"DATA answered 250 OK, not 354"),
                          Expect(WARNING, r"accepts mail for unknown users at RCPT \(250 OK\)")),
    "354-to-rcpt": (Expect(UNKNOWN, NOT_JUDGED + r"RCPT TO answered 354 go ahead, not 2xx"),
                    Expect(UNKNOWN, NO_RCPT_TEST + OUT_OF_STEP + r" \(354 go ahead cannot "
                                                         r"answer RCPT TO\)")),
    "binary-replies": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    "ehlo-rejected": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    "starttls-broken": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    "tls-required": (Expect(UNKNOWN, NOT_JUDGED + r"EHLO and HELO refused: 530 5\.7\.0"),
                     Expect(UNKNOWN, NO_RCPT_TEST + r"EHLO and HELO refused: 530 5\.7\.0")),
    "greylist-all": (Expect(UNKNOWN, NOT_JUDGED + r"RCPT TO answered 450 4\.2\.0"),
                     Expect(UNKNOWN, r"control recipient was not accepted \(450 4\.2\.0.*"
                                     r"defers unknown users")),
    "greylist-then-accept": (Expect(UNKNOWN, NOT_JUDGED + r"RCPT TO answered 451 4\.7\.1"),
                             Expect(UNKNOWN, r"control recipient was not accepted \(451")),
    "refuse-at-data": (Expect(UNKNOWN, NOT_JUDGED + r"DATA answered 554 5\.7\.1"),
                       Expect(WARNING, ACCEPTS)),
    "pipelining-out-of-order": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    "pipelining-drops": (Expect(UNKNOWN, NOT_JUDGED + r"could not open a mail transaction: no "
                                                      r"complete reply"),
                         Expect(UNKNOWN, NO_RCPT_TEST + r"no complete reply")),
    # dies after 12 commands in all: the first connection's <LF>.<LF> is judged (a wait long
    # enough for a loaded machine), the parallel connections share what is left
    "dies-mid-series-closed": (Expect(CRITICAL, SMUGGLED_FIRST + r".*sequences could not be judged",
                                      ("--wait", "3"), timeout=8),
                               Expect(WARNING, ACCEPTS)),
    "dies-mid-series-open": (Expect(CRITICAL, SMUGGLED_FIRST + r".*sequences could not be judged",
                                    ("--wait", "3"), timeout=8),
                             Expect(WARNING, ACCEPTS)),
    "control-refused-but-relays": (Expect(UNKNOWN, NOT_JUDGED + r"RCPT TO answered 550 5\.1\.1"),
                                   Expect(UNKNOWN, r"control recipient was not accepted \(550 "
                                                   r"5\.1\.1 .*; " + ACCEPTS)),
    # 421 after 4 commands: NOOP after a message is refused, so those sequences stay open
    "closes-after-4": (Expect(CRITICAL, ALL_OPEN + r".*4 of 9 sequences could not be judged",
                              timeout=8),
                       Expect(WARNING, ACCEPTS)),
    "tarpit": (Expect(UNKNOWN, NOT_JUDGED + r"could not open a mail transaction: no complete "
                                            r"reply"),
               Expect(UNKNOWN, NO_RCPT_TEST + r"no complete reply")),
    "ipv6-only": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    # issue 12's relay cases: a series dropped or silenced at DATA, replies out of step, STARTTLS
    # failures. Smuggling never judges a desynchronised session (DATA answered 250: UNKNOWN);
    # check_backscatter checks its replies are in step (each fits its command, none left over,
    # QUIT answered 221) and judges nothing otherwise
    "data-drop": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    "data-silent": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    "close-after-rcpt": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    "extra-reply-to-mail": (Expect(UNKNOWN, NOT_JUDGED + r"DATA answered 250"),
                            Expect(UNKNOWN, NO_RCPT_TEST + OUT_OF_STEP)),
    "extra-reply-to-mail-open": (Expect(UNKNOWN, NOT_JUDGED + r"DATA answered 250"),
                                 Expect(UNKNOWN, NO_RCPT_TEST + OUT_OF_STEP)),
    "extra-reply-late": (Expect(UNKNOWN, NOT_JUDGED + r"DATA answered 250"),
                         Expect(UNKNOWN, NO_RCPT_TEST + OUT_OF_STEP)),
    "greeting-after-starttls": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    "greeting-after-handshake": (Expect(CRITICAL, ALL_OPEN, timeout=8),
                                 Expect(WARNING, ACCEPTS)),
    "double-banner": (Expect(UNKNOWN, NOT_JUDGED + r"DATA answered 250"),
                      Expect(UNKNOWN, NO_RCPT_TEST + OUT_OF_STEP)),
    "every-reply-twice": (Expect(UNKNOWN, NOT_JUDGED + r"DATA answered 250"),
                          Expect(UNKNOWN, NO_RCPT_TEST + OUT_OF_STEP)),
    "every-reply-twice-open": (Expect(UNKNOWN, NOT_JUDGED + r"DATA answered 250"),
                               Expect(UNKNOWN, NO_RCPT_TEST + OUT_OF_STEP)),
    "silent-rset": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    "tarpit-outside-rcpt": (Expect(CRITICAL, ALL_OPEN, timeout=8),
                            Expect(UNKNOWN, NO_RCPT_TEST + r"no complete reply")),
    "starttls-silent": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
    "starttls-no-reply": (Expect(CRITICAL, ALL_OPEN, timeout=8), Expect(WARNING, ACCEPTS)),
}


def test_every_case_has_an_expectation() -> None:
    assert set(EXPECTED) == {case.id for case in CASES}


def _cases() -> list[object]:
    return [pytest.param(case, id=case.id) for case in CASES]


@pytest.mark.parametrize("case", _cases())
def test_smtp_smuggling(case: SMTPCase) -> None:
    expect = EXPECTED[case.id][0]
    with serving(case) as (host, port):
        source = () if ":" in host else ("--source-address", "127.0.0.2")
        run = run_plugin("check_smtp_smuggling", "-H", host, "-p", str(port), *source,
                         "--mail-domain", "lab.test", "--wait", "0.5",
                         "-t", f"{expect.timeout:g}", *expect.args)
    assert_run(run, "SMTP_SMUGGLING", expect)


@pytest.mark.parametrize("case", _cases())
def test_backscatter(case: SMTPCase) -> None:
    expect = EXPECTED[case.id][1]
    with serving(case) as (host, port):
        source = () if ":" in host else ("--source-address", "127.0.0.2")
        run = run_plugin("check_backscatter", "-H", host, "-p", str(port), *source,
                         "--mail-domain", "lab.test", "-t", f"{expect.timeout:g}", *expect.args)
    assert_run(run, "BACKSCATTER", expect)

