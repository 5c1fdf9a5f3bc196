"""check_port_exposure against every misbehaving SMTP server of the catalogue.

An unsanctioned listener is CRITICAL however it misbehaves (a tarpit, garbage, a reset, a
421): the port is open, and the long output says what it did instead of a greeting. The same
server named as a sanctioned mailer is OK (judging the mailer is the other plugins' job), and
a sanctioned mailer nobody listens for is WARNING. Every run keeps the contract of
tests/hostile/expect.py (one readable status line, the right exit code, within -t + 1 s).
"""

from __future__ import annotations

import pytest

from mailprobe.net.dns import is_ip_address
from tests.conftest import run_plugin
from tests.hostile.expect import CRITICAL, OK, WARNING, Expect, assert_run
from tests.hostile.smtp_cases import SMTP_CASES, SMTPCase
from tests.hostile.test_smtp_hostile import serving

TIMEOUT = 4.0
UNSANCTIONED = Expect(CRITICAL, r"^PORT_EXPOSURE CRITICAL - 1 unsanctioned SMTP listener: \S+ "
                      r"\(.+\)$", timeout=TIMEOUT, detail=r"^UNSANCTIONED \S+ \S")
NOTHING_OPEN = Expect(OK, r"nothing open on 1 host", timeout=TIMEOUT)
SANCTIONED_UP = Expect(OK, r"no unsanctioned SMTP listener on 1 host; 1 sanctioned mailer "
                       r"answers", timeout=TIMEOUT, detail=r"^SANCTIONED \S+ open$")
SANCTIONED_DOWN = Expect(WARNING, r"sanctioned mailer down or filtered: \S+ \(refused on \d+\)",
                         timeout=TIMEOUT)


#: Cases on an address: those serving a host name (dual stack, dropped A/AAAA questions) are
#: about how check_open_relay resolves -H, not about what a listener does.
CASES = [c for c in SMTP_CASES if is_ip_address(c.host)]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_port_exposure(case: SMTPCase) -> None:
    with serving(case) as (host, port):
        listening = case.behaviour is not None
        run = run_plugin("check_port_exposure", "-H", host, "--ports", str(port),
                         "--command-timeout", "1", "-t", f"{TIMEOUT:g}")
        assert_run(run, "PORT_EXPOSURE", UNSANCTIONED if listening else NOTHING_OPEN)
        run = run_plugin("check_port_exposure", "-H", host, "--ports", str(port),
                         "--allow", host, "-t", f"{TIMEOUT:g}")
        assert_run(run, "PORT_EXPOSURE", SANCTIONED_UP if listening else SANCTIONED_DOWN)
