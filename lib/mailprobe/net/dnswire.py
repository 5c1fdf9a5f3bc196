"""The DNS wire format, as much of it as the DNSBL fan-out needs: build a query, read an answer.

check_dnsbl asks A, AAAA and TXT questions and reads A, AAAA, TXT and CNAME records. Doing that
here instead of with dnspython's message layer spares every check_dnsbl run the import of
dnspython (with its optional-feature probe: about 40 ms of CPU, a third of a run). Reading is
strict (RFC 1035 section 4): a length running past the end, a compression pointer that does not
point backwards, a label type other than plain, or a record cut short raises :class:`WireError`;
nothing malformed is ever read as "no records". Only the header, the question and the answer
section are read; what follows the answer section is not needed and is not read.

Names are tuples of lower-cased labels (DNS names compare case-insensitively, RFC 4343).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

Name = tuple[bytes, ...]

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "DNAME": 39, "OPT": 41, "RRSIG": 46}
TYPE_NAMES = {number: name for name, number in TYPES.items()}
A, CNAME, TXT, AAAA, DNAME, RRSIG = (TYPES[t] for t in ("A", "CNAME", "TXT", "AAAA", "DNAME",
                                                        "RRSIG"))
CLASS_IN = 1
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}
NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5
OPCODE_QUERY = 0

_QR, _TC, _RD = 0x8000, 0x0200, 0x0100
_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
MAX_NAME = 255  # octets of a name on the wire (RFC 1035 section 2.3.4)


class WireError(ValueError):
    """Bytes that are not a well-formed DNS message, or a name that cannot be put on the wire."""


def type_name(rdtype: int) -> str:
    return TYPE_NAMES.get(rdtype, f"TYPE{rdtype}")


def rcode_name(rcode: int) -> str:
    return RCODES.get(rcode, f"RCODE{rcode}")


def name_text(name: Name) -> str:
    """A name for people: its labels joined by dots, odd bytes escaped, no final dot."""
    return ".".join(label.decode("ascii", "backslashreplace") for label in name)


def to_name(text: str) -> Name:
    """The name of ``text`` (a final dot is optional; non-ASCII is IDNA-encoded).

    Raises :class:`WireError` for an empty label, a label over 63 octets, a name over 255
    octets, or characters that have no place in a host or list name (controls, spaces, ``\\``).
    """
    text = text.strip().rstrip(".")
    if not text:
        raise WireError("the name is empty")
    try:
        raw = text.encode("ascii") if text.isascii() else text.encode("idna")
    except UnicodeError as exc:
        raise WireError(f"{text!r} is not a valid international name ({exc})") from exc
    labels = raw.split(b".")
    for label in labels:
        if not label:
            raise WireError(f"{text!r} has an empty label")
        if len(label) > 63:
            raise WireError(f"{text!r} has a label longer than 63 octets")
        if any(byte <= 0x20 or byte >= 0x7F or byte == 0x5C for byte in label):
            raise WireError(f"{text!r} holds a character that has no place in a DNS name")
    if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME:
        raise WireError(f"{text[:60]!r}... is longer than 255 octets")
    return tuple(label.lower() for label in labels)


def make_query(query_id: int, qname: Name, rdtype: int) -> bytes:
    """A standard query (RD set, no EDNS) for ``qname``/``rdtype`` in class IN."""
    wire = bytearray(_HEADER.pack(query_id, _RD, 1, 0, 0, 0))
    for label in qname:
        wire.append(len(label))
        wire += label
    wire += b"\x00" + struct.pack("!HH", rdtype, CLASS_IN)
    return bytes(wire)


@dataclass(frozen=True)
class Record:
    """One resource record of the answer section, its data decoded for the types we read."""

    name: Name
    rdtype: int
    rdclass: int
    ttl: int
    data: bytes  # the raw RDATA
    target: Name | None = None  # CNAME and DNAME: the name pointed to

    def text(self) -> str:
        """A, AAAA: the address; TXT: the strings joined (UTF-8, errors replaced); CNAME and
        DNAME: the target; anything else: the RDATA in hex."""
        if self.rdtype == A:
            return str(ipaddress.IPv4Address(self.data))
        if self.rdtype == AAAA:
            return str(ipaddress.IPv6Address(self.data))
        if self.rdtype == TXT:
            return b"".join(_txt_strings(self.data)).decode("utf-8", "replace")
        if self.target is not None:
            return name_text(self.target)
        return self.data.hex()


@dataclass(frozen=True)
class Message:
    """A parsed DNS message: header fields, the question and the answer section."""

    id: int
    flags: int
    question: tuple[tuple[Name, int, int], ...]  # (name, type, class)
    answer: tuple[Record, ...]

    @property
    def is_response(self) -> bool:
        """The QR bit: set in answers, clear in queries (a reflected query has it clear)."""
        return bool(self.flags & _QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def truncated(self) -> bool:
        return bool(self.flags & _TC)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


def parse(data: bytes) -> Message:
    """Read a DNS message; raises only :class:`WireError`."""
    if len(data) < _HEADER.size:
        raise WireError(f"{len(data)} bytes are too short for a DNS header")
    query_id, flags, qdcount, ancount, _nscount, _arcount = _HEADER.unpack_from(data)
    offset = _HEADER.size
    question = []
    for _ in range(qdcount):
        name, offset = _read_name(data, offset)
        if offset + 4 > len(data):
            raise WireError("the question is cut short")
        rdtype, rdclass = struct.unpack_from("!HH", data, offset)
        offset += 4
        question.append((name, rdtype, rdclass))
    answer = []
    for _ in range(ancount):
        record, offset = _read_record(data, offset)
        answer.append(record)
    return Message(query_id, flags, tuple(question), tuple(answer))


def _read_record(data: bytes, offset: int) -> tuple[Record, int]:
    name, offset = _read_name(data, offset)
    if offset + _RR_FIXED.size > len(data):
        raise WireError("a record is cut short")
    rdtype, rdclass, ttl, rdlength = _RR_FIXED.unpack_from(data, offset)
    start = offset + _RR_FIXED.size
    end = start + rdlength
    if end > len(data):
        raise WireError("a record's data runs past the end of the message")
    rdata = data[start:end]
    target = None
    if rdtype == A and rdlength != 4:
        raise WireError(f"an A record of {rdlength} octets (an IPv4 address has 4)")
    if rdtype == AAAA and rdlength != 16:
        raise WireError(f"an AAAA record of {rdlength} octets (an IPv6 address has 16)")
    if rdtype == TXT:
        _txt_strings(rdata)  # checks that the strings fill the record exactly
    if rdtype in (CNAME, DNAME):
        target, after = _read_name(data, start)
        if after != end:
            raise WireError(f"a {type_name(rdtype)} record whose name does not fill its data")
    return Record(name, rdtype, rdclass, ttl, rdata, target), end


def _txt_strings(rdata: bytes) -> list[bytes]:
    strings, offset = [], 0
    while offset < len(rdata):
        size = rdata[offset]
        if offset + 1 + size > len(rdata):
            raise WireError("a TXT string runs past the end of its record")
        strings.append(rdata[offset + 1:offset + 1 + size])
        offset += 1 + size
    return strings


def _read_name(data: bytes, offset: int) -> tuple[Name, int]:
    """The name at ``offset`` and the offset after it (after the first pointer, if any).

    Every compression pointer must point before the previous one (before the name itself for
    the first), as dnspython requires, so pointers cannot loop.
    """
    labels: list[bytes] = []
    length = 1
    after: int | None = None
    position = limit = offset
    while True:
        if position >= len(data):
            raise WireError("a name runs past the end of the message")
        size = data[position]
        kind = size & 0xC0
        if kind == 0xC0:
            if position + 2 > len(data):
                raise WireError("a compression pointer is cut short")
            pointer = ((size & 0x3F) << 8) | data[position + 1]
            if pointer >= limit:
                raise WireError("a compression pointer does not point backwards")
            if after is None:
                after = position + 2
            position = limit = pointer
            continue
        if kind:
            raise WireError(f"unknown label type 0x{kind:02x}")
        if size == 0:
            return tuple(labels), (after if after is not None else position + 1)
        length += size + 1
        if length > MAX_NAME:
            raise WireError("a name longer than 255 octets")
        if position + 1 + size > len(data):
            raise WireError("a label runs past the end of the message")
        labels.append(data[position + 1:position + 1 + size].lower())
        position += 1 + size
