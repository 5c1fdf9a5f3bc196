"""A request mail as data: who asks, which addresses, and what could not be read.

Accepted form (seed 000): ``Subject: relay test`` (any case, ``Re:``/``Fwd:`` tolerated) and
body lines ``test <address> [<address> ...]`` (IPv4 dotted quad or IPv6, several lines
allowed). Quoted lines (``>``), everything after a signature separator (``-- ``), other text
lines and MIME structure are handled: the first text/plain part that is not an attachment is
read, else the first text/html part, reduced to text.
"""

from __future__ import annotations

import email.utils
import hashlib
import html.parser
import ipaddress
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default as default_policy

SYNTAX = """\
Subject: relay test

test <mailer-address> [<mailer-address> ...]
test <another-mailer-address>

where <mailer-address> is an IPv4 address in dotted-quad form (192.0.2.25) or an IPv6
address (2001:db8::25). Several addresses may share a line or have a line each."""

_SUBJECT = re.compile(r"^\s*(?:(?:re|aw|fwd?|sv)\s*:\s*)*relay\s+test\s*$", re.IGNORECASE)
_TEST_LINE = re.compile(r"^\s*test\s*:?\s+(?P<rest>.*)$", re.IGNORECASE)
_TEST_WORD = re.compile(r"^\s*test\s*$", re.IGNORECASE)
_SIGNATURE = re.compile(r"^--\s?$")


@dataclass
class Token:
    """One word after ``test``: an address, or why it is not one."""

    text: str
    address: str = ""       # the normalised IP address when it is one
    problem: str = ""


@dataclass
class ParsedRequest:
    requester: str                       # the From: address, lower case ('' when unusable)
    requester_display: str               # as written in From:
    subject: str
    message_id: str
    key: str                             # unique per request mail (dedups MTA retries)
    subject_ok: bool
    addresses: list[str] = field(default_factory=list)   # distinct, in order
    problems: list[str] = field(default_factory=list)    # what could not be read
    automatic: str = ""                  # why this mail must not be answered (RFC 3834)
    date: str = ""

    @property
    def usable(self) -> bool:
        return self.subject_ok and bool(self.addresses) and bool(self.requester)


def message_key(raw: bytes, message: Message) -> str:
    """A key that is the same for every delivery of one mail: its Message-ID, else a digest."""
    message_id = str(message.get("Message-ID", "")).strip()
    if message_id:
        return "mid:" + message_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()


class _HTMLText(html.parser.HTMLParser):
    """HTML to text: block elements become line breaks, blockquotes are dropped."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "pre", "table", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("blockquote", "style", "script", "head"):
            self.skip += 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("blockquote", "style", "script", "head") and self.skip:
            self.skip -= 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(text: str) -> str:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts).replace("\xa0", " ")


def _part_text(part: Message) -> str:
    """A text part's content as str, whatever its declared charset says."""
    if isinstance(part, EmailMessage):
        try:
            return str(part.get_content())
        except (LookupError, UnicodeError):
            pass
    payload = part.get_payload(decode=True)
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def body_text(message: Message) -> str:
    """The text a person wrote: the first inline text/plain part, else text/html as text."""
    plain: str | None = None
    rich: str | None = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind not in ("text/plain", "text/html"):
            continue
        content = _part_text(part)
        if kind == "text/plain" and plain is None:
            plain = content
        elif kind == "text/html" and rich is None:
            rich = content
    if plain is not None:
        return plain
    return html_to_text(rich) if rich is not None else ""


def read_token(word: str) -> Token:
    """One word after ``test``: an address (normalised), or the reason it is not one."""
    text = word.strip().strip(",;")
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if bare.lower().startswith("ipv6:"):
        bare = bare[5:]
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        if "/" in bare:
            why = "a network range: give each mailer's own address"
        elif re.fullmatch(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}", bare):
            why = "a host name: give the mailer's IP address"
        elif re.fullmatch(r"[0-9.]+", bare):
            why = "not an IPv4 address in dotted-quad form (like 192.0.2.25)"
        else:
            why = "not an IP address"
        return Token(text, problem=why)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return Token(text, address=str(ip))


def test_lines(text: str) -> tuple[list[list[str]], list[str]]:
    """The words of every ``test`` line (quotes and signature left out), and problems."""
    lines: list[list[str]] = []
    problems: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip()
        if _SIGNATURE.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        if _TEST_WORD.match(line):
            problems.append("a line 'test' without an address")
            continue
        match = _TEST_LINE.match(line)
        if match:
            lines.append([w for w in re.split(r"[\s,;]+", match["rest"]) if w])
    return lines, problems


def automatic_reason(message: Message) -> str:
    """Why the mail must not be answered: a bounce, an auto-reply, a list (RFC 3834)."""
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    return_path = str(message.get("Return-Path", "")).strip()
    if return_path in ("<>", "") and "Return-Path" in message:
        return "null envelope sender (a delivery status notification)"
    if message.get_content_type() == "multipart/report":
        return "a delivery or disposition report"
    precedence = str(message.get("Precedence", "")).strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return f"Precedence: {precedence}"
    if message.get("List-Id") is not None:
        return "sent through a mailing list"
    return ""


def parse_request(raw: bytes, max_addresses: int = 32) -> ParsedRequest:
    """Read one RFC 5322 message (as an MTA pipe delivers it)."""
    message = message_from_bytes(raw, policy=default_policy)
    from_values = message.get_all("From") or []
    display, requester = "", ""
    if len(from_values) == 1:
        pairs = email.utils.getaddresses([str(from_values[0])])
        if len(pairs) == 1 and "@" in pairs[0][1]:
            display, requester = str(from_values[0]), pairs[0][1].strip().lower()
    subject = " ".join(str(message.get("Subject", "")).split())
    request = ParsedRequest(
        requester=requester, requester_display=display, subject=subject,
        message_id=str(message.get("Message-ID", "")).strip(),
        key=message_key(raw, message), subject_ok=bool(_SUBJECT.match(subject)),
        automatic=automatic_reason(message), date=str(message.get("Date", "")).strip(),
    )
    if not requester:
        request.problems.append("the From: header does not hold exactly one mail address")
    if not request.subject_ok:
        request.problems.append(f"the subject is {subject!r}, not 'relay test'")
        return request
    lines, problems = test_lines(body_text(message))
    request.problems.extend(problems)
    if not lines and not problems:
        request.problems.append("no line of the form 'test <mailer-address>' in the message")
    for words in lines:
        for word in words:
            token = read_token(word)
            if token.problem:
                request.problems.append(f"{token.text!r} is {token.problem}")
            elif token.address not in request.addresses:
                if len(request.addresses) >= max_addresses:
                    request.problems.append(f"{token.text} left out: at most {max_addresses} "
                                            "addresses per request")
                else:
                    request.addresses.append(token.address)
    return request
