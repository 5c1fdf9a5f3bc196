"""The shared output path of every plugin (checks/plugin.py): the one sanitiser, the one
status-line limit and the one ranking rule (no network)."""

from __future__ import annotations

import nagiosplugin
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailprobe.checks import plugin
from mailprobe.findings import CRITICAL, OK, UNKNOWN, WARNING


@pytest.mark.parametrize("text, expected", [
    ("plain text", "plain text"),
    ("two\nlines", "two lines"),
    ("cr\rlf\r\nvt\vff\fsep\u2028end", "cr lf  vt ff sep end"),
    ("\x1b[31mred\x1b[0m", "?[31mred?[0m"),
    ("nul\x00byte", "nul?byte"),
    ("bidi \u202eevil", "bidi ?evil"),
    ("surrogate \udcff", "surrogate ?"),
    ("a | b", "a ! b"),
    ("caf\u00e9 gr\u00fc\u00dfe", "caf\u00e9 gr\u00fc\u00dfe"),
])
def test_sanitise(text: str, expected: str) -> None:
    assert plugin.sanitise(text) == expected


def test_sanitise_limits_the_length() -> None:
    assert plugin.sanitise("x" * 2000) == "x" * (plugin.LINE_LIMIT - 3) + "..."
    assert plugin.sanitise("x" * 20, 10) == "x" * 7 + "..."
    assert plugin.sanitise("x" * 2000, None) == "x" * 2000


@given(st.text())
def test_sanitised_text_is_one_printable_line(text: str) -> None:
    line = plugin.sanitise(text)
    assert len(line) <= plugin.LINE_LIMIT
    assert line.splitlines() in ([line], [])
    assert line.isprintable() and "|" not in line
    line.encode("utf-8")  # no lone surrogate: printing it cannot fail


def test_short_summary_is_kept() -> None:
    assert plugin.shorten_summary("a; b; c") == "a; b; c"


def test_long_summary_keeps_the_first_parts_and_counts_the_rest() -> None:
    parts = [f"PTR host{n}.lab.test does not resolve back to 127.0.0.1" for n in range(50)]
    summary = plugin.shorten_summary("; ".join(parts))
    assert len(summary) <= plugin.SUMMARY_LIMIT
    kept = summary.split("; ")
    assert kept[:-1] == parts[:len(kept) - 1]
    assert kept[-1] == f"and {50 - len(kept) + 1} more (see the long output)"


def test_one_huge_part_is_cut() -> None:
    summary = plugin.shorten_summary("y" * 3000 + "; second")
    assert len(summary) <= plugin.SUMMARY_LIMIT
    assert summary.endswith("...; and 1 more (see the long output)")


@given(st.lists(st.text(min_size=0, max_size=300), max_size=40))
def test_shortened_summary_never_exceeds_the_limit(parts: list[str]) -> None:
    assert len(plugin.shorten_summary("; ".join(parts))) <= plugin.SUMMARY_LIMIT


def test_status_line_sanitises_and_limits_only_the_summary() -> None:
    line = plugin.status_line("DNSBL", "WARNING", "listed\nDNSBL OK - forged\x1b" + "z" * 900,
                              "perf=1;;;0")
    summary, perfdata = line.split(" | ")
    assert summary.startswith("DNSBL WARNING - listed DNSBL OK - forged?zz")
    assert len(summary) == len("DNSBL WARNING - ") + plugin.SUMMARY_LIMIT
    assert perfdata == "perf=1;;;0"


class _Findings(nagiosplugin.Resource):
    def __init__(self, *findings: tuple[int, str]) -> None:
        self.findings = findings

    def probe(self) -> list[nagiosplugin.Metric]:
        return [plugin.finding_metric(f"f{i}", state, text)
                for i, (state, text) in enumerate(self.findings)]


def _render(*findings: tuple[int, str], long_output: tuple[str, ...] = ()) -> list[str]:
    check = plugin.Check(_Findings(*findings), plugin.FindingContext(),
                         plugin.ProblemSummary("all well", long_output))
    check()
    output, code = plugin.render("TEST", check)
    return [str(code), *output.splitlines()]


def test_a_proven_problem_outranks_what_could_not_be_determined() -> None:
    lines = _render((UNKNOWN, "the MX look-up failed"), (WARNING, "no DMARC"),
                    (CRITICAL, "SPF +all"), (OK, "fine"))
    assert lines[:2] == ["2", "TEST CRITICAL - SPF +all; the MX look-up failed; no DMARC"]


def test_ranked_keeps_the_order_within_a_state() -> None:
    check = plugin.Check(_Findings((UNKNOWN, "u1"), (CRITICAL, "c1"), (UNKNOWN, "u2"),
                                   (CRITICAL, "c2")), plugin.FindingContext())
    check()
    assert [r.hint for r in plugin.ranked(check.results)] == ["c1", "c2", "u1", "u2"]


def test_render_sanitises_every_long_output_line() -> None:
    lines = _render((WARNING, "reason: spam\nTEST OK - forged\x00"),
                    long_output=("tree:\r\nTEST OK - forged too", "x" * 5000))
    assert lines[1].startswith("TEST WARNING - reason: spam TEST OK - forged?")
    assert lines[2:] == ["tree:  TEST OK - forged too",
                         "x" * (plugin.LINE_LIMIT - 3) + "..."]


def test_fail_sanitises_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        plugin.fail("TEST", UNKNOWN, "internal error: bad\r\nTEST OK - forged",
                    ["detail\x1b[2J", "more\nlines"])
    assert exited.value.code == UNKNOWN
    assert capsys.readouterr().out.splitlines() == [
        "TEST UNKNOWN - internal error: bad  TEST OK - forged", "detail?[2J", "more lines"]
