"""Evidence that the lab MTAs the relay plugin is judged against behave as documented.

Every RCPT below is spoken by Python's smtplib from 127.0.0.2 (outside each instance's
mynetworks), one connection per recipient so Postfix's error throttling plays no part.
"""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from pathlib import Path

import pytest

from lab.postfix import PostfixServer, _pids_of_config
from tests.fixtures.postfix import EXTERNAL_DOMAIN as E
from tests.fixtures.postfix import LAB_DOMAIN as L
from tests.fixtures.postfix import LOCAL_RECIPIENT, OUTSIDE

IP = "127.0.0.1"
PLAIN = f"user@{E}"
#: The classic relay recipient forms (RESEARCH.md "union of the classic test forms").
RELAY_FORMS = [
    PLAIN, f"user%{E}@{L}", f"user%{E}@[{IP}]", f"user%{E}", f'"user@{E}"', f'"user%{E}"',
    f"user@{E}@{L}", f"user@{E}@[{IP}]", f'"user@{E}"@{L}', f'"user@{E}"@[{IP}]',
    f'"user%{E}"@{L}', f"@{L}:user@{E}", f"@[{IP}]:user@{E}", f"{E}!user", f"{E}!user@{L}",
    f"{E}!user@[{IP}]", "user@[192.0.2.1]", f"user@{E}.", PLAIN.upper(), f"user@{E}@",
]
#: The forms the percent_hole instance relays (sender-specified routing through relaylab.test).
ROUTED_VIA_DOMAIN = [f"user%{E}@{L}", f'"user@{E}"@{L}', f'"user%{E}"@{L}', f"{E}!user@{L}",
                     f"user@{E}@{L}"]


def rcpt(server, recipient: str, sender: str = "probe@example.org",
         helo: str = "client.example.org", source: str = OUTSIDE, data: bool = False) -> int:
    """The reply code to ``RCPT TO:<recipient>`` on a fresh connection from ``source``."""
    with smtplib.SMTP(server.host, server.port, source_address=(source, 0), timeout=20) as smtp:
        smtp.ehlo(helo)
        code, reply = smtp.docmd(f"MAIL FROM:<{sender}>")
        assert code == 250, reply
        code, _ = smtp.docmd(f"RCPT TO:<{recipient}>")
        if data and code == 250:
            assert smtp.data(b"Subject: lab relay test\r\n\r\nnothing to see\r\n")[0] == 250
        return code


def codes(server, recipients, **kwargs) -> dict[str, int]:
    return {r: rcpt(server, r, **kwargs) for r in recipients}


def wait_for_log(server, text: str, timeout: float = 10) -> str:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        log = server.maillog()
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in maillog:\n{server.maillog()}")


# --- Postfix -------------------------------------------------------------------------------

def test_open_relays_every_form(postfix_open):
    assert rcpt(postfix_open, LOCAL_RECIPIENT) == 250
    assert codes(postfix_open, RELAY_FORMS) == dict.fromkeys(RELAY_FORMS, 250)


def test_closed_accepts_postmaster_and_refuses_every_relay_form(postfix_closed):
    assert rcpt(postfix_closed, LOCAL_RECIPIENT) == 250
    assert rcpt(postfix_closed, f"nobody@{L}") == 550      # unknown local user
    assert codes(postfix_closed, RELAY_FORMS) == dict.fromkeys(RELAY_FORMS, 554)


def test_closed_relays_for_its_own_network(postfix_closed):
    assert rcpt(postfix_closed, PLAIN, source="127.0.0.1") == 250


def test_closed_throttles_then_drops_a_client_with_many_errors(postfix_closed):
    """Postfix's defaults: after 20 errors in one session, 421 and the connection closes."""
    replies = []
    with smtplib.SMTP(postfix_closed.host, postfix_closed.port, source_address=(OUTSIDE, 0),
                      timeout=30) as smtp:
        smtp.ehlo("client.example.org")
        smtp.docmd("MAIL FROM:<probe@example.org>")
        for _ in range(21):
            replies.append(smtp.docmd(f"RCPT TO:<{PLAIN}>")[0])
            if replies[-1] == 421:
                break
    assert replies == [554] * 20 + [421]


def test_sender_trust_relays_only_for_a_local_sender(postfix_sender_trust):
    server = postfix_sender_trust
    assert rcpt(server, LOCAL_RECIPIENT) == 250
    assert codes(server, RELAY_FORMS) == dict.fromkeys(RELAY_FORMS, 554)
    assert rcpt(server, PLAIN, sender="") == 554
    assert rcpt(server, PLAIN, sender=f"someone@{L}.example.org") == 554
    # the access map's "relaylab.test OK" also matches subdomains (parent_domain_matches_...)
    for sender in (f"postmaster@{L}", f"anything@{L}", f"anything@mx.{L}"):
        assert codes(server, RELAY_FORMS, sender=sender) == dict.fromkeys(RELAY_FORMS, 250)


def test_helo_trust_relays_only_after_a_trusted_helo(postfix_helo_trust):
    server = postfix_helo_trust
    assert rcpt(server, LOCAL_RECIPIENT) == 250
    assert codes(server, RELAY_FORMS) == dict.fromkeys(RELAY_FORMS, 554)
    for helo in (f"mx.{L}", L, "localhost"):
        assert codes(server, RELAY_FORMS, helo=helo) == dict.fromkeys(RELAY_FORMS, 250)
    assert rcpt(server, PLAIN, helo=f"[{IP}]") == 554


def test_helo_trust_really_relays(postfix_helo_trust):
    """The accepted mail is routed to example.net (delivered to discard: nothing leaves)."""
    rcpt(postfix_helo_trust, f"helo%{E}@{L}", helo="localhost", data=True)
    wait_for_log(postfix_helo_trust, f"to=<helo@{E}>, orig_to=<helo%{E}@{L}>")


def test_percent_hole_relays_only_routed_forms(postfix_percent_hole):
    server = postfix_percent_hole
    assert rcpt(server, LOCAL_RECIPIENT) == 250
    got = codes(server, RELAY_FORMS)
    assert {form for form, code in got.items() if code == 250} == set(ROUTED_VIA_DOMAIN)
    assert {code for form, code in got.items() if form not in ROUTED_VIA_DOMAIN} == {554}


def test_percent_hole_forwards_the_routed_address_unchanged(postfix_percent_hole):
    rcpt(postfix_percent_hole, f"pct%{E}@{L}", data=True)
    log = wait_for_log(postfix_percent_hole, f"to=<pct%{E}@{L}>")
    assert "status=sent (relaylab.test)" in log      # queued for relaylab.test's next hop


def test_reject_all_refuses_even_postmaster(postfix_reject_all):
    assert rcpt(postfix_reject_all, LOCAL_RECIPIENT) == 554
    assert rcpt(postfix_reject_all, PLAIN) == 554
    assert rcpt(postfix_reject_all, PLAIN, source="127.0.0.1") == 554


def test_defer_answers_4xx_to_relay_attempts(postfix_defer):
    assert rcpt(postfix_defer, LOCAL_RECIPIENT) == 250
    assert codes(postfix_defer, RELAY_FORMS) == dict.fromkeys(RELAY_FORMS, 454)


def test_ipv6_instance_is_closed_on_loopback_v6(postfix_ipv6):
    assert postfix_ipv6.host == "::1"
    assert rcpt(postfix_ipv6, LOCAL_RECIPIENT, source="::1") == 250
    assert rcpt(postfix_ipv6, PLAIN, source="::1") == 554
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", postfix_ipv6.port), 2):
        pass


def test_factory_applies_settings(postfix_factory):
    server = postfix_factory("banner", {"smtpd_banner": "$myhostname ESMTP lab", "myhostname":
                                        "other.relaylab.test"})
    with smtplib.SMTP(timeout=10) as smtp:
        code, banner = smtp.connect(server.host, server.port)
        assert (code, banner) == (220, b"other.relaylab.test ESMTP lab")
    opened = postfix_factory("open2", preset="open", settings={"smtpd_banner": "$myhostname x"})
    assert rcpt(opened, PLAIN) == 250


def test_instances_start_in_parallel_and_leave_nothing_behind():
    servers = [PostfixServer(f"par{i}") for i in range(3)]
    errors: list[BaseException] = []

    def start(server):
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert len({s.port for s in servers}) == 3
        for server in servers:
            assert rcpt(server, LOCAL_RECIPIENT) == 250
        config_dirs = [s.config_dir for s in servers]
        assert all(_pids_of_config(d) for d in config_dirs)
    finally:
        for server in servers:
            server.stop()
    assert not any(_pids_of_config(d) for d in config_dirs)
    for server in servers:
        with pytest.raises(OSError), socket.create_connection((server.host, server.port), 2):
            pass
        assert "daemon started" in server.maillog()   # kept after stop for post-mortems


# --- Exim ----------------------------------------------------------------------------------

#: What Exim 4.96 does with each form: 250 if its ACL accepts; 501 for forms it will not parse
#: (no domain, domain literal while allow_domain_literals is false, double @, trailing dot/@).
EXIM_PARSED = [PLAIN, f"user%{E}@{L}", f'"user@{E}"@{L}', f'"user%{E}"@{L}', f"@{L}:user@{E}",
               f"{E}!user@{L}", PLAIN.upper()]
EXIM_SYNTAX_ERRORS = [form for form in RELAY_FORMS if form not in EXIM_PARSED]


def test_exim_open_relays_every_form_it_parses(exim_open):
    assert rcpt(exim_open, LOCAL_RECIPIENT) == 250
    assert codes(exim_open, EXIM_PARSED) == dict.fromkeys(EXIM_PARSED, 250)
    assert codes(exim_open, EXIM_SYNTAX_ERRORS) == dict.fromkeys(EXIM_SYNTAX_ERRORS, 501)


def test_exim_open_really_relays(exim_open):
    rcpt(exim_open, f"exim@{E}", data=True)
    log = wait_for_log(exim_open, f"=> :blackhole: <exim@{E}> R=remote")
    assert "Completed" in log


def test_exim_closed_refuses_relaying(exim_closed):
    assert rcpt(exim_closed, LOCAL_RECIPIENT) == 250
    assert codes(exim_closed, EXIM_PARSED) == dict.fromkeys(EXIM_PARSED, 550)
    assert codes(exim_closed, EXIM_SYNTAX_ERRORS) == dict.fromkeys(EXIM_SYNTAX_ERRORS, 501)


def test_exim_stop_leaves_nothing_behind():
    from lab.exim import EximServer, find_exim
    from lab.process import LabError

    try:
        find_exim()
    except LabError as exc:
        pytest.skip(str(exc))
    server = EximServer("stoptest").start()
    pid = server.process.proc.pid
    assert rcpt(server, LOCAL_RECIPIENT) == 250
    server.stop()
    with pytest.raises(OSError), socket.create_connection((server.host, server.port), 2):
        pass
    assert "daemon started" in server.mainlog()
    assert not Path(f"/proc/{pid}").exists()


def test_postfix_on_another_loopback_address_and_both_families(postfix_factory):
    server = postfix_factory("dual", host="127.0.0.5", ipv6=True)
    assert rcpt(server, LOCAL_RECIPIENT) == 250
    assert rcpt(server, PLAIN) == 554
    assert rcpt(server, PLAIN, source="127.0.0.1") == 250    # mynetworks is about the client
    with smtplib.SMTP("::1", server.port, source_address=("::1", 0), timeout=10) as smtp:
        assert smtp.ehlo("client.example.org")[0] == 250
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), 2):
        pass
