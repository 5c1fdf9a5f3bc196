"""mailprobe report's pure parts: the ranking rule, the model's states, the renderers, the JSON
schema against its documentation, the offline GeoIP readers, the web page's safety rules."""

from __future__ import annotations

import io
import ipaddress
import re
from pathlib import Path

import pytest

from mailprobe.audit.model import Link, MailerReport, Report, Section
from mailprobe.audit.sections import dnsbl as dnsbl_section
from mailprobe.audit.sections import relay as relay_section
from mailprobe.findings import CRITICAL, OK, SEVERITY, UNKNOWN, WARNING, Finding, worst_level
from mailprobe.net.smtp import Reply
from mailprobe.probes import geoip
from mailprobe.probes.dnsbl.decode import Decoded
from mailprobe.probes.dnsbl.lookup import CLEAN, FAILED, LISTED, DnsblReport, Target, ZoneResult
from mailprobe.probes.dnsbl.zones import KNOWN, Zone
from mailprobe.probes.relay.catalogue import CATALOGUE, CONTROL
from mailprobe.probes.relay.runner import RelayReport
from mailprobe.probes.relay.verdict import AttemptResult, Outcome
from mailprobe.render.htmlpage import render_html
from mailprobe.render.jsondoc import SCHEMA, report_data
from mailprobe.render.text import render_report, use_colour
from mailprobe.web.guard import ClientLimits, Refused, allowed, host_problem, parse_networks

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "mailprobe-report.md"


# -- the one ranking rule -----------------------------------------------------------------------

def test_ranking_rule_critical_outranks_unknown_outranks_warning() -> None:
    assert worst_level([OK, WARNING]) == WARNING
    assert worst_level([WARNING, UNKNOWN]) == UNKNOWN
    assert worst_level([UNKNOWN, CRITICAL, OK]) == CRITICAL
    assert worst_level([]) == UNKNOWN
    assert worst_level([], empty=OK) == OK
    assert sorted(SEVERITY, key=SEVERITY.__getitem__) == [OK, WARNING, UNKNOWN, CRITICAL]


def test_plugin_glue_uses_the_same_ranking() -> None:
    from mailprobe.checks import plugin

    assert plugin.SEVERITY is SEVERITY


# -- the model -------------------------------------------------------------------------------

def _section(key: str, state: int | None, text: str = "x") -> Section:
    if state is None:
        return Section.not_judged(key, key.title(), text)
    return Section(key, key.title(), state, text, [Finding(state, key, text)])  # type: ignore[arg-type]


def test_skipped_sections_never_count_and_never_show_ok() -> None:
    mailer = MailerReport("mx.example.org", sections=[_section("relay", WARNING),
                                                      _section("backscatter", None)])
    assert mailer.state == WARNING
    assert mailer.sections[1].state_name == "SKIPPED"
    only_skipped = MailerReport("mx.example.org", sections=[_section("backscatter", None)])
    assert only_skipped.state == UNKNOWN  # nothing judged is not OK


def test_mailer_error_is_unknown_and_report_is_worst_mailer() -> None:
    broken = MailerReport("nowhere.example", error="cannot resolve nowhere.example")
    fine = MailerReport("a", sections=[_section("relay", OK)])
    relay = MailerReport("b", sections=[_section("relay", CRITICAL, "open relay")])
    report = Report([fine, broken, relay])
    assert broken.state == UNKNOWN
    assert report.state == CRITICAL
    assert [m.target for m in report.worst_first()] == ["b", "nowhere.example", "a"]
    assert relay.problems() == ["Relay: open relay"]


# -- adapters' judgements (pure) ------------------------------------------------------------

def _attempt(attempt, outcome, reply="250 2.1.5 Ok") -> AttemptResult:
    code, _, text = reply.partition(" ")
    return AttemptResult(attempt, outcome, "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.net>",
                         Reply(250), Reply(int(code), (text,)))


def test_relay_judge_open_closed_and_deferring() -> None:
    control = _attempt(CONTROL, Outcome.RELAYED)
    open_relay = RelayReport(control=control, results=[
        _attempt(CATALOGUE[0], Outcome.RELAYED), _attempt(CATALOGUE[1], Outcome.REFUSED)])
    levels = {f.code: f.level for f in relay_section.judge(open_relay)}
    assert levels == {"relayed": CRITICAL, "control": OK}
    closed = RelayReport(control=control, results=[_attempt(CATALOGUE[0], Outcome.REFUSED)])
    findings = relay_section.judge(closed)
    assert [f.code for f in findings] == ["closed", "control"]
    assert all(f.level == OK for f in findings)
    deferred = RelayReport(control=control, results=[_attempt(CATALOGUE[0], Outcome.TEMPFAILED)])
    assert {f.code: f.level for f in relay_section.judge(deferred)}["tempfailed"] == WARNING
    refused_control = RelayReport(control=_attempt(CONTROL, Outcome.REFUSED, "550 no"),
                                  results=[_attempt(CATALOGUE[0], Outcome.REFUSED)])
    assert {f.code: f.level for f in relay_section.judge(refused_control)}["control"] == UNKNOWN


def _dnsbl(results: list[ZoneResult], zones: list[Zone]) -> DnsblReport:
    return DnsblReport("192.0.2.25", [Target.address("192.0.2.25")], zones, results)


def test_dnsbl_judge_weights_and_failures() -> None:
    target = Target.address("192.0.2.25")
    spamcop, zen = KNOWN["bl.spamcop.net"], KNOWN["zen.spamhaus.org"]
    listed = ZoneResult(target, spamcop, LISTED, [Decoded("127.0.0.2", True, "spam source")],
                        txt=["see the page"])
    findings = dnsbl_section.judge(_dnsbl([listed, ZoneResult(target, zen, CLEAN)],
                                          [spamcop, zen]))
    assert findings[0].level == WARNING  # weight 1
    assert "spam source" in findings[1].detail and "see the page" in findings[1].detail
    heavy = ZoneResult(target, zen, LISTED, [Decoded("127.0.0.2", True, "SBL")])
    assert dnsbl_section.judge(_dnsbl([heavy], [zen]))[0].level == CRITICAL  # weight 2
    failed = ZoneResult(target, spamcop, FAILED, reason="timed out")
    levels = [f.level for f in dnsbl_section.judge(_dnsbl([failed], [spamcop]))]
    assert levels == [UNKNOWN, UNKNOWN]  # not clean: could not be checked


# -- renderers ---------------------------------------------------------------------------------

def _sample() -> Report:
    relay = Section("relay", "Open relay", CRITICAL, "open relay: 1 of 38 relay attempts "
                    "accepted", [Finding(CRITICAL, "relayed", "open relay: 1 of 38 relay "
                                         "attempts accepted"),
                                 Finding(OK, "control", "control accepted")],
                    evidence={"attempts": [], "transcript": ["-> EHLO x", "<- 250 ok"]})
    dnsbl = Section("dnsbl", "DNS blacklists", WARNING, "listed on 1 of 1 lists",
                    [Finding(WARNING, "listed", "192.0.2.25 is listed on bl.spamcop.net",
                             "127.0.0.2: spam <source>", "192.0.2.25")],
                    [Link("lookup", "https://www.spamcop.net/bl.shtml?192.0.2.25")])
    mailer = MailerReport("mx.example.org", ["192.0.2.25"], "192.0.2.25", "example.org",
                          "given with --mail-domain",
                          [relay, dnsbl, Section.not_judged("backscatter", "Bounces", "n/a")])
    return Report([mailer], version="0.0", options={"port": 25})


def test_text_colours_only_when_asked_or_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    report = _sample()
    plain = render_report(report, colour=False)
    coloured = render_report(report, colour=True)
    assert "\033[" not in plain and "\033[1;38;5;196m" in coloured  # red for CRITICAL
    assert "\033[1;38;5;208m" in coloured and "\033[38;5;245m" in coloured  # orange, grey
    assert "[CRITICAL] Open relay" in plain and "Overall: CRITICAL (exit 2)" in plain

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Terminal()) and not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Terminal())
    assert use_colour(Terminal(), forced=True)


def test_geoip_data_source_and_attribution_are_always_shown() -> None:
    location = geoip.Location("81.2.69.160", country_code="GB", country="United Kingdom",
                              city="London", latitude=51.5, longitude=-0.09)
    section = Section("geoip", "Location (GeoIP)", OK, location.line(),
                      [Finding(OK, "geoip-public", location.line())],
                      [Link("Map it: 81.2.69.160", location.map_url)],
                      {"sources": [{"source": "GeoLite2-City (test)", "built": "2026-11-01",
                                    "attribution": geoip.MAXMIND_ATTRIBUTION}]})
    report = Report([MailerReport("mx", ["81.2.69.160"], sections=[section])])
    text = render_report(report)
    assert "81.2.69.160: London, United Kingdom (GB)" in text
    assert "GeoLite2-City (test), built 2026-11-01. This product includes GeoLite2 data " \
           "created by MaxMind" in text
    assert "Map it: 81.2.69.160: https://www.openstreetmap.org/?mlat=51.5000&mlon=-0.0900" in text
    html = render_html(report)
    assert "This product includes GeoLite2 data created by MaxMind" in html
    assert 'href="https://www.openstreetmap.org/?mlat=51.5000&amp;mlon=-0.0900' in html


def test_html_is_self_contained_and_escaped() -> None:
    html = render_html(_sample())
    assert 'class="section level-critical"' in html and 'class="section level-warning"' in html
    assert 'class="section level-skipped"' in html
    assert "spam &lt;source&gt;" in html and "spam <source>" not in html
    for external in ("<script", "<link", "@import", "url(", "src="):
        assert external not in html
    assert 'href="https://www.spamcop.net/bl.shtml?192.0.2.25"' in html


def _documented_fields() -> set[str]:
    text = DOC.read_text()
    table = text.split("## JSON schema", 1)[1].split("The evidence, by section", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", table, re.MULTILINE))


def _paths(value: object, prefix: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            path = f"{prefix}.{key}" if prefix else key
            found.add(path)
            if not path.endswith(".evidence"):
                found |= _paths(inner, path)
    elif isinstance(value, list):
        for item in value:
            found |= _paths(item, f"{prefix}[]")
    return found


def test_json_schema_matches_its_documentation() -> None:
    data = report_data(_sample())
    data["id"] = "web-only"
    assert data["schema"] == SCHEMA == "mailprobe-report/1"
    assert data["exit_code"] == 2 and data["state"] == "CRITICAL"
    produced = _paths(data)
    produced |= {"options.source_address", "options.nameservers", "options.zones",
                 "options.mail_domain", "options.timeout", "options.portscan",
                 "options.geoip_db", "options.relay_depth"}  # AuditOptions.describe(), below
    from mailprobe.audit.options import AuditOptions

    assert {f"options.{k}" for k in AuditOptions().describe()} <= _documented_fields()
    assert produced == _documented_fields()
    sections = data["mailers"][0]["sections"]
    assert [s["state"] for s in sections] == ["CRITICAL", "WARNING", "SKIPPED"]


# -- GeoIP -------------------------------------------------------------------------------------

def test_non_public_addresses_have_no_location_and_say_so() -> None:
    for address, scope in (("127.0.0.25", "loopback"), ("10.1.2.3", "private"),
                           ("192.0.2.7", "private"), ("fe80::1", "link-local"),
                           ("::1", "loopback")):
        location = geoip.locate(address)
        assert location.scope == scope
        assert "no location" in location.line()
        assert location.map_url == ""


def test_bundled_data_names_source_build_date_and_attribution() -> None:
    pytest.importorskip("geoip2fast")
    location = geoip.locate("8.8.8.8")  # a look-up in the bundled file: nothing is contacted
    assert location.country_code == "US"
    assert "GeoLite2" in location.source and "geoip2fast" in location.source
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", location.built)
    assert "MaxMind" in location.attribution
    assert location.map_url == ""  # no coordinates in the bundled data


def test_mmdb_city_database_gives_city_coordinates_and_map(tmp_path: Path) -> None:
    writer_module = pytest.importorskip("mmdb_writer")
    netaddr = pytest.importorskip("netaddr")
    writer = writer_module.MMDBWriter(ip_version=6, ipv4_compatible=True,
                                      database_type="DBIP-City-Lite", languages=["en"],
                                      description={"en": "DB-IP lite city (test)"})
    writer.insert_network(netaddr.IPSet(["81.2.69.0/24"]), {
        "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
        "city": {"names": {"en": "London"}},
        "location": {"latitude": 51.5142, "longitude": -0.0931}})
    path = tmp_path / "city.mmdb"
    writer.to_db_file(str(path))
    database = geoip.MMDBGeoIP(str(path))
    location = geoip.locate("81.2.69.160", database)
    assert (location.city, location.country_code, location.network) == ("London", "GB",
                                                                         "81.2.69.0/24")
    assert location.map_url.startswith("https://www.openstreetmap.org/?mlat=51.5142&mlon=-0.0931")
    assert location.attribution == geoip.DBIP_ATTRIBUTION
    assert "DBIP-City-Lite" in location.source and re.fullmatch(r"\d{4}-\d{2}-\d{2}",
                                                                location.built)
    assert geoip.locate("81.2.70.1", database).note == "not in the database"


def test_unreadable_mmdb_is_a_geoip_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(geoip.GeoIPError):
        geoip.MMDBGeoIP(str(bad))


# -- the web page's safety rules ---------------------------------------------------------------

def test_allow_networks_and_ipv4_mapped_addresses() -> None:
    networks = parse_networks(["127.0.0.0/24", "2001:db8::/32"])
    assert allowed("127.0.0.25", networks) and allowed("::ffff:127.0.0.25", networks)
    assert allowed("2001:db8::25", networks)
    assert not allowed("127.0.1.1", networks) and not allowed("192.0.2.1", networks)
    with pytest.raises(ValueError):
        parse_networks(["127.0.0.0/33"])


def test_vet_refuses_addresses_outside_allow_before_any_traffic() -> None:
    from mailprobe.audit.options import AuditOptions
    from mailprobe.web.guard import vet

    networks = [ipaddress.ip_network("127.0.0.0/24")]
    with pytest.raises(Refused) as refused:
        vet("192.0.2.1", AuditOptions(), networks)  # an address: no DNS, no connection
    assert refused.value.status == 403 and "nothing was sent" in refused.value.message
    assert vet("127.0.0.25", AuditOptions(), networks) == ["127.0.0.25"]


@pytest.mark.parametrize("host", ["", "127.0.0.25; rm -rf /", "../../etc/passwd", "a b",
                                  "0.0.0.0", "x" * 300, "mx.example.org\n"])
def test_bad_input_is_refused_as_such(host: str) -> None:
    assert host_problem(host)


def test_one_audit_per_client_and_rate_limit() -> None:
    limits = ClientLimits(rate=2, jobs=5)
    limits.admit("198.51.100.1", "a")
    with pytest.raises(Refused) as busy:
        limits.admit("198.51.100.1", "b")
    assert busy.value.status == 429
    limits.admit("198.51.100.2", "c")  # another client is not held up
    limits.finished("198.51.100.1")
    limits.admit("198.51.100.1", "d")
    limits.finished("198.51.100.1")
    with pytest.raises(Refused) as rate:
        limits.admit("198.51.100.1", "e")  # third in a minute
    assert rate.value.status == 429 and "a minute" in rate.value.message


def test_global_job_limit() -> None:
    limits = ClientLimits(rate=10, jobs=1)
    limits.admit("198.51.100.1", "a")
    with pytest.raises(Refused) as busy:
        limits.admit("198.51.100.2", "b")
    assert busy.value.status == 503


def test_serve_listens_on_loopback_by_default() -> None:
    from mailprobe.web.serve import DEFAULT_LISTEN, build_parser, listen_address

    args = build_parser("mailprobe serve").parse_args(["--allow", "127.0.0.0/8"])
    assert args.listen == ("127.0.0.1", 8025) == listen_address(DEFAULT_LISTEN)
    assert listen_address("[::1]:8080") == ("::1", 8080)
