"""The non-standard end-of-data sequences, as data (like the relay catalogue).

RFC 5321 4.1.1.4 ends message text with <CRLF>.<CRLF> only. A server that also ends it at a
sequence with a bare <LF> or <CR> can be fed a second, smuggled message by a sender whose
outbound server passes that sequence through (SEC Consult, December 2023). The list is SEC
Consult's reduced inbound list, the forms of the Postfix and Exim advisories and those of
hannob/smtpsmug.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The id of the pipelining test (not an end-of-data sequence; selected like one).
PIPELINING = "pipelining"


@dataclass(frozen=True)
class EndSequence:
    """One non-standard end of data: a stable id, its bytes, who is known to take it."""

    id: str
    ending: bytes  # sent right after the last line of the message text
    known: str = ""  # the published lists that name it

    @property
    def label(self) -> str:
        """The bytes for humans: ``<LF>.<CR><LF>``."""
        names = {0x0D: "<CR>", 0x0A: "<LF>", 0x00: "<NUL>"}
        return "".join(names.get(byte, chr(byte)) for byte in self.ending)


SEQUENCES: tuple[EndSequence, ...] = (
    EndSequence("lf-dot-lf", b"\n.\n", "SEC Consult, Exim advisory, smtpsmug"),
    EndSequence("lf-dot-crlf", b"\n.\r\n", "SEC Consult, Postfix and Exim advisories, smtpsmug"),
    EndSequence("crlf-dot-lf", b"\r\n.\n", "Exim advisory, smtpsmug"),
    EndSequence("cr-dot-crlf", b"\r.\r\n", "SEC Consult, smtpsmug"),
    EndSequence("cr-dot-lf", b"\r.\n", "SEC Consult, smtpsmug"),
    EndSequence("lf-dot-cr", b"\n.\r", "SEC Consult, smtpsmug"),
    EndSequence("cr-dot-cr", b"\r.\r", "SEC Consult, smtpsmug"),
    EndSequence("crlf-dot-cr", b"\r\n.\r", "smtpsmug"),
    EndSequence("crlf-nul-dot-crlf", b"\r\n\x00.\r\n", "SEC Consult, smtpsmug"),
)

BY_ID = {sequence.id: sequence for sequence in SEQUENCES}
IDS = (*BY_ID, PIPELINING)


def select(tests: list[str] | None = None,
           skip: list[str] | None = None) -> tuple[list[EndSequence], bool]:
    """The sequences to play and whether to run the pipelining test, for ``--tests`` and
    ``--skip`` (ids of :data:`IDS`). Raises KeyError naming an unknown id."""
    for test_id in (tests or []) + (skip or []):
        if test_id not in IDS:
            raise KeyError(test_id)
    chosen = [i for i in IDS if (not tests or i in tests) and i not in (skip or [])]
    return [BY_ID[i] for i in chosen if i != PIPELINING], PIPELINING in chosen
