"""check_spf_mx against a real authoritative DNS server (Knot) on loopback, one zone per case."""

from __future__ import annotations

import socket

import pytest

from lab.knot import KnotServer
from lab.process import free_port

pytestmark = pytest.mark.integration

EXAMPLE = """\
@ MX 10 mx1
@ MX 20 mx2
mx1 A 127.0.0.2
mx2 A 127.0.0.20
mail A 127.0.0.2
@ TXT "v=spf1 ip4:127.0.0.2 mx include:_spf.example.test -all"
_spf TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.test"
"""

# The lab Postfix's banner names mx.relaylab.test (lab.postfix.LAB_DOMAIN).
RELAYLAB = """\
@ MX 10 mx
mx A 127.0.0.1
@ TXT "v=spf1 mx -all"
"""

REVERSE = """\
2 PTR mail.example.test.
"""

CASES = """\
mx A 127.0.0.2
h A 127.0.0.50
two MX 10 mx
two TXT "v=spf1 ip4:127.0.0.2 -all"
two TXT "v=spf1 ip4:127.0.0.4 -all"
many MX 10 mx
many TXT "v=spf1 include:i1.cases.test include:i2.cases.test -all"
i1 TXT "v=spf1 a:h.cases.test a:h.cases.test a:h.cases.test a:h.cases.test -all"
i2 TXT "v=spf1 include:i3.cases.test a:h.cases.test a:h.cases.test -all"
i3 TXT "v=spf1 a:h.cases.test a:h.cases.test ip4:127.0.0.2 -all"
toomany MX 10 mx
toomany TXT "v=spf1 -ip4:127.0.0.3 include:i1.cases.test include:i2.cases.test -all"
nine MX 10 mx
nine TXT "v=spf1 include:i1.cases.test include:i3.cases.test a:h.cases.test -all"
loop MX 10 mx
loop TXT "v=spf1 include:loop2.cases.test -all"
loop2 TXT "v=spf1 include:loop.cases.test -all"
void MX 10 mx
void TXT "v=spf1 a:nx1.cases.test a:nx2.cases.test mx:nx3.cases.test ip4:127.0.0.2 -all"
plusall MX 10 mx
plusall TXT "v=spf1 +all"
neutral MX 10 mx
neutral TXT "v=spf1 ip4:127.0.0.2 ?all"
noall MX 10 mx
noall TXT "v=spf1 ip4:127.0.0.2"
soft MX 10 mx
soft TXT "v=spf1 ip4:127.0.0.2 ~all"
ptr MX 10 mx
ptr TXT "v=spf1 ptr ip4:127.0.0.2 -all"
syntax MX 10 mx
syntax TXT "v=spf1 ip4:127.0.0.2 ip4:300.1.1.1 -all"
nospf MX 10 mx
nullmx MX 0 .
nullmx TXT "v=spf1 -all"
cname MX 10 alias
cname TXT "v=spf1 mx -all"
alias CNAME mx
noaddr MX 10 ghost
noaddr TXT "v=spf1 -all"
iplit MX 10 127.0.0.9.
iplit TXT "v=spf1 -all"
nomx A 127.0.0.2
nomx TXT "v=spf1 a -all"
nothing TXT "v=spf1 -all"
tempinc MX 10 mx
tempinc TXT "v=spf1 ip4:127.0.0.2 include:elsewhere.invalid -all"
redir MX 10 mx
redir TXT "v=spf1 redirect=_spf.cases.test"
_spf TXT "v=spf1 ip4:127.0.0.2 -all"
dmarcbad MX 10 mx
dmarcbad TXT "v=spf1 ip4:127.0.0.2 -all"
_dmarc.dmarcbad TXT "v=DMARC1; p=maybe"
"""


@pytest.fixture(scope="module")
def knot():
    zones = {"example.test": EXAMPLE, "cases.test": CASES, "0.0.127.in-addr.arpa": REVERSE,
             "relaylab.test": RELAYLAB}
    with KnotServer(zones) as server:
        yield server


@pytest.fixture
def spf_mx(knot, plugin):
    def runner(*args: str):
        return plugin("check_spf_mx", "--nameserver", knot.nameserver, "-t", "10", *args)
    return runner


def test_good_domain_and_passing_mailer(spf_mx):
    run = spf_mx("--mail-domain", "example.test", "-H", "127.0.0.2")
    assert run.returncode == 0, run.stdout
    assert run.summary == ("SPF_MX OK - example.test: SPF pass for 127.0.0.2, SPF -all, "
                           "2 DNS lookups, 2 MX hosts, DMARC p=reject")
    assert run.perf_value("spf_lookups") == 2
    assert run.perfdata["spf_lookups"] == "2;8;10;0"
    assert run.perf_value("spf_void_lookups") == 0
    assert run.perf_value("mx_hosts") == 2
    assert run.perfdata["time"].split(";")[0].endswith("s")
    assert "OK: mailer 127.0.0.2 is MX host mx1.example.test" in run.long_output


def test_failing_mailer_is_critical(spf_mx):
    run = spf_mx("--mail-domain", "example.test", "-H", "127.0.0.3")
    assert run.returncode == 2, run.stdout
    assert run.summary == "SPF_MX CRITICAL - SPF fail for 127.0.0.3"
    assert "OK: mailer 127.0.0.3 is not among the MX hosts of example.test" in run.long_output


def test_expect_mx_warns_when_mailer_is_not_an_mx(spf_mx):
    run = spf_mx("--mail-domain", "example.test", "-H", "127.0.0.20", "--expect-mx")
    # 127.0.0.20 is mx2 (passes through the mx mechanism)
    assert run.returncode == 0, run.stdout
    run = spf_mx("--mail-domain", "soft.cases.test", "-H", "127.0.0.2", "--expect-mx")
    assert run.returncode == 0, run.stdout  # mx.cases.test is 127.0.0.2
    run = spf_mx("--mail-domain", "redir.cases.test", "-H", "127.0.0.5", "--expect-mx")
    assert run.returncode == 2, run.stdout
    assert "WARNING: mailer 127.0.0.5 is not among the MX hosts of redir.cases.test" \
        in run.long_output


def test_verbose_shows_the_include_tree(spf_mx):
    run = spf_mx("--mail-domain", "example.test", "-v")
    assert run.returncode == 0, run.stdout
    assert "SPF include tree:" in run.long_output
    assert "  example.test: v=spf1 ip4:127.0.0.2 mx include:_spf.example.test -all" \
        in run.long_output
    assert "    include:_spf.example.test: v=spf1 ip4:192.0.2.0/24 -all" in run.long_output
    assert "MX 10 mx1.example.test: 127.0.0.2" in run.long_output


def test_domain_guessed_from_ptr(spf_mx):
    run = spf_mx("-H", "127.0.0.2")
    assert run.returncode == 0, run.stdout
    assert run.summary.startswith("SPF_MX OK - example.test (guessed from mail.example.test): "
                                  "SPF pass for 127.0.0.2")
    assert run.long_output[0] == ("domain example.test guessed from the PTR name "
                                  "mail.example.test of 127.0.0.2 (Public Suffix List)")


def test_domain_guessed_from_host_name(spf_mx):
    run = spf_mx("-H", "mail.example.test")
    assert run.returncode == 0, run.stdout
    assert run.summary.startswith("SPF_MX OK - example.test (guessed from mail.example.test): "
                                  "SPF pass for 127.0.0.2")
    assert "OK: mailer mail.example.test is MX host mx1.example.test" in run.long_output


def test_domain_guessed_from_banner(spf_mx, postfix_closed):
    # 127.0.0.1 has no PTR in the lab zones: the guess comes from Postfix's banner name
    run = spf_mx("-H", postfix_closed.host, "-p", str(postfix_closed.port))
    assert run.returncode == 0, run.stdout
    assert run.summary.startswith("SPF_MX OK - relaylab.test (guessed from mx.relaylab.test): "
                                  "SPF pass for 127.0.0.1")
    assert run.long_output[0] == ("domain relaylab.test guessed from the banner name "
                                  "mx.relaylab.test of 127.0.0.1 (Public Suffix List)")


def test_domain_cannot_be_guessed(spf_mx):
    port = free_port()  # nothing listens there
    run = spf_mx("-H", "127.0.0.1", "-p", str(port))
    assert run.returncode == 3, run.stdout
    assert run.summary.startswith("SPF_MX UNKNOWN - no --mail-domain given and none could be "
                                  "guessed from -H: no banner from 127.0.0.1 port")


def test_no_domain_and_no_mailer_is_unknown(spf_mx):
    run = spf_mx()
    assert run.returncode == 3
    assert run.summary.startswith("SPF_MX UNKNOWN - bad option: give --mail-domain")


def test_two_spf_records(spf_mx):
    run = spf_mx("--mail-domain", "two.cases.test", "-H", "127.0.0.2")
    assert run.returncode == 2, run.stdout
    assert run.summary.startswith("SPF_MX CRITICAL - SPF permerror for 127.0.0.2")
    assert "2 SPF records at two.cases.test" in run.summary


def test_eleven_lookups_through_nested_includes(spf_mx):
    run = spf_mx("--mail-domain", "many.cases.test", "-H", "127.0.0.3")
    assert run.returncode == 2, run.stdout
    assert run.perf_value("spf_lookups") == 11
    assert "11 DNS lookups (limit 10)" in run.summary
    assert "SPF permerror for 127.0.0.3" in run.summary


def test_failing_mailer_and_too_many_lookups(spf_mx):
    run = spf_mx("--mail-domain", "toomany.cases.test", "-H", "127.0.0.3")
    assert run.returncode == 2, run.stdout
    assert run.summary == "SPF_MX CRITICAL - SPF fail for 127.0.0.3; 11 DNS lookups (limit 10)"


def test_nine_lookups_warn_and_thresholds_are_overridable(spf_mx):
    run = spf_mx("--mail-domain", "nine.cases.test")
    assert run.returncode == 1, run.stdout
    assert run.summary == "SPF_MX WARNING - 9 DNS lookups (warning above 8)"
    assert run.perfdata["spf_lookups"] == "9;8;10;0"
    run = spf_mx("--mail-domain", "nine.cases.test", "-w", "9", "-c", "10")
    assert run.returncode == 0, run.stdout
    run = spf_mx("--mail-domain", "nine.cases.test", "-w", "5", "-c", "8")
    assert run.returncode == 2
    assert run.summary == "SPF_MX CRITICAL - 9 DNS lookups (limit 8)"


def test_include_loop(spf_mx):
    run = spf_mx("--mail-domain", "loop.cases.test")
    assert run.returncode == 2, run.stdout
    assert ("SPF permerror: include loop loop.cases.test -> loop2.cases.test -> "
            "loop.cases.test") in run.summary


def test_void_lookups(spf_mx):
    run = spf_mx("--mail-domain", "void.cases.test", "-H", "127.0.0.2")
    assert run.returncode == 2, run.stdout
    assert run.perf_value("spf_void_lookups") == 3
    assert run.perfdata["spf_void_lookups"] == "3;;2;0"
    assert "3 void lookups (limit 2)" in run.summary
    # the receiver's verdict agrees: pyspf stops at the third void look-up
    assert "SPF permerror for 127.0.0.2" in run.summary


def test_plus_all(spf_mx):
    run = spf_mx("--mail-domain", "plusall.cases.test", "-H", "127.0.0.9")
    assert run.returncode == 2, run.stdout
    assert run.summary == "SPF_MX CRITICAL - SPF +all authorises every host on the Internet"
    assert "OK: SPF pass for 127.0.0.9" in run.long_output


@pytest.mark.parametrize("domain, text", [
    ("neutral.cases.test", "SPF ?all (neutral) protects nothing"),
    ("noall.cases.test", "SPF has no 'all' and no redirect: unlisted hosts get neutral"),
])
def test_weak_all_warns(spf_mx, domain, text):
    run = spf_mx("--mail-domain", domain)
    assert run.returncode == 1, run.stdout
    assert run.summary == f"SPF_MX WARNING - {text}"


@pytest.mark.parametrize("domain, result", [
    ("soft.cases.test", "softfail"), ("neutral.cases.test", "neutral"),
    ("noall.cases.test", "neutral"), ("nospf.cases.test", "none"),
])
def test_evaluation_results_that_warn(spf_mx, domain, result):
    run = spf_mx("--mail-domain", domain, "-H", "127.0.0.3")
    assert run.returncode == 1, run.stdout
    assert f"SPF {result} for 127.0.0.3" in run.summary


def test_redirect_is_followed(spf_mx):
    run = spf_mx("--mail-domain", "redir.cases.test", "-H", "127.0.0.2")
    assert run.returncode == 0, run.stdout
    assert "SPF -all" in run.summary
    assert run.perf_value("spf_lookups") == 1


def test_ptr_is_deprecated(spf_mx):
    run = spf_mx("--mail-domain", "ptr.cases.test")
    assert run.returncode == 1, run.stdout
    assert "ptr is deprecated" in run.summary


def test_syntax_error(spf_mx):
    run = spf_mx("--mail-domain", "syntax.cases.test", "-H", "127.0.0.2")
    assert run.returncode == 2, run.stdout
    assert "SPF permerror: syntax error at syntax.cases.test: bad IPv4 address in " \
        "ip4:300.1.1.1" in run.summary


def test_null_mx(spf_mx):
    run = spf_mx("--mail-domain", "nullmx.cases.test")
    assert run.returncode == 2, run.stdout
    assert run.summary == "SPF_MX CRITICAL - nullmx.cases.test accepts no mail (null MX, RFC 7505)"
    assert run.perf_value("mx_hosts") == 0
    run = spf_mx("--mail-domain", "nullmx.cases.test", "--allow-null-mx")
    assert run.returncode == 0, run.stdout
    assert "null MX (accepts no mail)" in run.summary


def test_mx_to_cname_warns(spf_mx):
    run = spf_mx("--mail-domain", "cname.cases.test", "-H", "127.0.0.2")
    assert run.returncode == 1, run.stdout
    assert run.summary == ("SPF_MX WARNING - MX host alias.cases.test is a CNAME to "
                           "mx.cases.test (RFC 2181 10.3: must not be)")
    assert "OK: SPF pass for 127.0.0.2" in run.long_output


def test_mx_host_without_address(spf_mx):
    run = spf_mx("--mail-domain", "noaddr.cases.test")
    assert run.returncode == 2, run.stdout
    assert run.summary == "SPF_MX CRITICAL - MX host ghost.cases.test has no address (A/AAAA)"


def test_mx_ip_literal(spf_mx):
    run = spf_mx("--mail-domain", "iplit.cases.test")
    assert run.returncode == 2, run.stdout
    assert "MX host 127.0.0.9 is an IP address" in run.summary


def test_implicit_mx_and_no_mx_at_all(spf_mx):
    run = spf_mx("--mail-domain", "nomx.cases.test", "-H", "127.0.0.2", "--expect-mx")
    assert run.returncode == 1, run.stdout
    assert "has no MX record: mail falls back to its own address 127.0.0.2" in run.summary
    assert "OK: mailer 127.0.0.2 is MX host nomx.cases.test" in run.long_output
    run = spf_mx("--mail-domain", "nothing.cases.test")
    assert run.returncode == 2, run.stdout
    assert "nothing.cases.test has no MX and no address" in run.summary


def test_dmarc(spf_mx):
    run = spf_mx("--mail-domain", "soft.cases.test")
    assert run.returncode == 0, run.stdout
    assert "no DMARC" in run.summary
    run = spf_mx("--mail-domain", "soft.cases.test", "--require-dmarc")
    assert run.returncode == 1
    assert run.summary == "SPF_MX WARNING - no DMARC record for soft.cases.test"
    run = spf_mx("--mail-domain", "dmarcbad.cases.test", "--require-dmarc")
    assert run.returncode == 1
    assert "invalid DMARC record at _dmarc.dmarcbad.cases.test" in run.summary


def test_dns_failure_on_an_include_is_temperror(spf_mx):
    run = spf_mx("--mail-domain", "tempinc.cases.test", "-H", "127.0.0.3")
    assert run.returncode == 3, run.stdout
    assert "SPF temperror for 127.0.0.3" in run.summary
    assert "SPF temperror: include:elsewhere.invalid: DNS look-up failed" in run.summary


def test_dns_failure_on_the_domain_is_unknown(spf_mx):
    """Each look-up that fails is named: the MX look-up is still asked after the TXT failed."""
    run = spf_mx("--mail-domain", "not-served.invalid")
    assert run.returncode == 3, run.stdout
    assert run.summary == ("SPF_MX UNKNOWN - DNS look-up not-served.invalid TXT failed: "
                           "the resolver answered REFUSED; DNS look-up not-served.invalid MX "
                           "failed: the resolver answered REFUSED")
    assert "spf_lookups" not in run.perfdata  # no count for a record never read


def test_silent_nameserver_stays_within_timeout(plugin):
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", port))
        run = plugin("check_spf_mx", "--nameserver", f"127.0.0.1:{port}", "-t", "2",
                     "--mail-domain", "example.test")
    assert run.returncode == 3, run.stdout
    assert "example.test TXT" in run.summary
    assert run.seconds < 3.0 + 1.0  # -t plus 1 s (interpreter start-up included)
