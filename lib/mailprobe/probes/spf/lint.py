"""SPF records (RFC 7208): a strict term parser and a lint that walks includes and redirects.

:func:`parse_record` turns ``v=spf1 ...`` text into :class:`Record` or raises
:class:`SPFSyntaxError` (and nothing else, whatever the input). :func:`lint` fetches a domain's
record through :class:`mailprobe.net.dns.Lookup`, follows ``include:`` and ``redirect=`` targets
and counts what check_host() would count for an address that matches nothing (the worst case):
DNS-querying terms (RFC 7208 4.6.4, limit 10) and void look-ups (limit 2).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from mailprobe.findings import CRITICAL, OK, UNKNOWN, WARNING, Finding
from mailprobe.net.dns import DNSFailure, Lookup

LOOKUP_LIMIT = 10  # RFC 7208 4.6.4: DNS-querying terms per check_host()
VOID_LIMIT = 2  # RFC 7208 4.6.4: look-ups answering NXDOMAIN or no data
MX_NAMES_LIMIT = 10  # RFC 7208 4.6.4: names one "mx" term may look up
FOLLOW_LIMIT = 40  # the lint stops following includes after this many DNS-querying terms

MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}

_SPF_VERSION = re.compile(r"^v=spf1(?: |\Z)", re.IGNORECASE)
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9_.\-]*)=(.*)\Z", re.DOTALL)
_MECH_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(.*)\Z", re.DOTALL)
_MACRO = re.compile(r"%\{([A-Za-z])(\d*)([rR]?)([.\-+,/_=]*)\}")
_TOPLABEL = re.compile(
    r"^(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])\Z")
_CIDR = r"(?:0|[1-9][0-9]{0,2})"
_DUAL_CIDR = re.compile(rf"^(.*?)(?:/({_CIDR}))?(?://({_CIDR}))?\Z", re.DOTALL)
_QNUM = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IP4 = re.compile(rf"^{_QNUM}(?:\.{_QNUM}){{3}}\Z")
MACRO_LETTERS = frozenset("slodiphv")  # c, r, t are for explanation text only (RFC 7208 7.3)


class SPFSyntaxError(ValueError):
    """The record is not valid SPF (check_host() would return permerror)."""


def is_spf_record(text: str) -> bool:
    """Whether a TXT string is an SPF version 1 record (RFC 7208 4.5)."""
    return bool(_SPF_VERSION.match(text))


@dataclass(frozen=True)
class Term:
    """One directive (``-ip4:192.0.2.0/24``) or modifier (``redirect=_spf.example.org``)."""

    text: str
    name: str  # lower-case mechanism or modifier name
    is_modifier: bool = False
    qualifier: str = "+"  # mechanisms only
    domain: str | None = None  # domain-spec (or modifier value)
    network: str | None = None  # ip4/ip6 address
    cidr4: int | None = None
    cidr6: int | None = None

    @property
    def queries_dns(self) -> bool:
        """Counts against the limit of 10 (include, a, mx, ptr, exists, redirect)."""
        return (self.name in DNS_MECHANISMS and not self.is_modifier) or (
            self.is_modifier and self.name == "redirect")

    @property
    def has_macros(self) -> bool:
        return self.domain is not None and "%" in self.domain


@dataclass(frozen=True)
class Record:
    """A parsed ``v=spf1`` record."""

    text: str
    terms: tuple[Term, ...]

    @property
    def mechanisms(self) -> list[Term]:
        return [t for t in self.terms if not t.is_modifier]

    def modifier(self, name: str) -> Term | None:
        return next((t for t in self.terms if t.is_modifier and t.name == name), None)

    @property
    def all_term(self) -> Term | None:
        return next((t for t in self.terms if not t.is_modifier and t.name == "all"), None)

    @property
    def redirect(self) -> Term | None:
        """The redirect, unless an ``all`` makes it ineffective (RFC 7208 6.1)."""
        return None if self.all_term else self.modifier("redirect")


def _check_macro_string(text: str, where: str) -> list[str]:
    """Validate an RFC 7208 macro-string; return its tokens (macros and single characters)."""
    tokens: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            pair = text[i:i + 2]
            if pair in ("%%", "%_", "%-"):
                tokens.append(pair)
                i += 2
                continue
            match = _MACRO.match(text, i)
            if not match:
                raise SPFSyntaxError(f"bad macro in {where}")
            letter, digits = match.group(1).lower(), match.group(2)
            if letter not in MACRO_LETTERS:
                raise SPFSyntaxError(f"macro letter {match.group(1)!r} not allowed in {where}")
            if digits and (len(digits) > 3 or int(digits) == 0):
                raise SPFSyntaxError(f"bad macro transformer {digits!r} in {where}")
            tokens.append(match.group(0))
            i = match.end()
            continue
        if not "\x21" <= char <= "\x7e":
            raise SPFSyntaxError(f"invalid character {char!r} in {where}")
        tokens.append(char)
        i += 1
    return tokens


def _check_domain_spec(text: str, where: str) -> str:
    """Validate a domain-spec: a macro-string ending in a macro or ``.toplabel[.]``."""
    if not text:
        raise SPFSyntaxError(f"empty domain in {where}")
    tokens = _check_macro_string(text, where)
    if tokens[-1].startswith("%"):
        return text
    tail = ""
    for token in reversed(tokens):
        if token.startswith("%"):
            break
        tail = token + tail
    if tail.endswith("."):
        tail = tail[:-1]
    _head, dot, top = tail.rpartition(".")
    if not dot or not _TOPLABEL.match(top):
        raise SPFSyntaxError(f"{where}: {text!r} does not end in a valid top label")
    return text


def _cidr(value: str | None, maximum: int, where: str) -> int | None:
    if value is None:
        return None
    number = int(value)
    if number > maximum:
        raise SPFSyntaxError(f"prefix length /{value} too long in {where}")
    return number


def _parse_network(name: str, rest: str, term: str) -> tuple[str, int | None]:
    if not rest.startswith(":"):
        raise SPFSyntaxError(f"{term}: {name} needs an address")
    address, slash, length = rest[1:].partition("/")
    if slash and not re.fullmatch(_CIDR, length):
        raise SPFSyntaxError(f"bad prefix length in {term}")
    if name == "ip4":
        if not _IP4.match(address):
            raise SPFSyntaxError(f"bad IPv4 address in {term}")
        return address, _cidr(length if slash else None, 32, term)
    if not address or "%" in address or not re.fullmatch(r"[0-9A-Fa-f:.]+", address):
        raise SPFSyntaxError(f"bad IPv6 address in {term}")
    try:
        ipaddress.IPv6Address(address)
    except ValueError as exc:
        raise SPFSyntaxError(f"bad IPv6 address in {term}") from exc
    return address, _cidr(length if slash else None, 128, term)


def parse_term(text: str) -> Term:
    """Parse one term; :class:`SPFSyntaxError` if it is not valid RFC 7208 syntax."""
    modifier = _MODIFIER.match(text)
    if modifier:
        name, value = modifier.group(1).lower(), modifier.group(2)
        if name in ("redirect", "exp"):
            _check_domain_spec(value, text)
        else:
            _check_macro_string(value, text)
        return Term(text, name, is_modifier=True, qualifier="", domain=value)
    qualifier = "+"
    body = text
    if body[:1] in QUALIFIERS:
        qualifier, body = body[0], body[1:]
    mechanism = _MECH_NAME.match(body)
    if not mechanism or mechanism.group(1).lower() not in MECHANISMS:
        raise SPFSyntaxError(f"unknown mechanism {text!r}")
    name, rest = mechanism.group(1).lower(), mechanism.group(2)
    if name == "all":
        if rest:
            raise SPFSyntaxError(f"'all' takes no argument: {text!r}")
        return Term(text, name, qualifier=qualifier)
    if name in ("include", "exists"):
        if not rest.startswith(":"):
            raise SPFSyntaxError(f"{text!r}: {name} needs a domain")
        return Term(text, name, qualifier=qualifier, domain=_check_domain_spec(rest[1:], text))
    if name == "ptr":
        if rest and not rest.startswith(":"):
            raise SPFSyntaxError(f"bad ptr term {text!r}")
        domain = _check_domain_spec(rest[1:], text) if rest else None
        return Term(text, name, qualifier=qualifier, domain=domain)
    if name in ("ip4", "ip6"):
        network, length = _parse_network(name, rest, text)
        if name == "ip4":
            return Term(text, name, qualifier=qualifier, network=network, cidr4=length)
        return Term(text, name, qualifier=qualifier, network=network, cidr6=length)
    # a / mx: [":" domain-spec] [dual-cidr-length]
    cidrs = _DUAL_CIDR.match(rest)
    assert cidrs is not None  # the pattern matches any string
    spec, c4, c6 = cidrs.group(1), cidrs.group(2), cidrs.group(3)
    if spec and not spec.startswith(":"):
        raise SPFSyntaxError(f"bad {name} term {text!r}")
    domain = _check_domain_spec(spec[1:], text) if spec else None
    return Term(text, name, qualifier=qualifier, domain=domain,
                cidr4=_cidr(c4, 32, text), cidr6=_cidr(c6, 128, text))


def parse_record(text: str) -> Record:
    """Parse a whole ``v=spf1`` record; :class:`SPFSyntaxError` for anything invalid."""
    if not isinstance(text, str):
        raise SPFSyntaxError("an SPF record is text")
    if not is_spf_record(text):
        raise SPFSyntaxError("not an SPF record (must start with 'v=spf1')")
    terms = []
    seen: set[str] = set()
    for word in text[6:].split(" "):
        if not word:
            continue
        term = parse_term(word)
        if term.is_modifier and term.name in ("redirect", "exp"):
            if term.name in seen:
                raise SPFSyntaxError(f"more than one {term.name}= modifier")
            seen.add(term.name)
        terms.append(term)
    return Record(text, tuple(terms))


# -- the lint: walk the include/redirect tree ---------------------------------------------


@dataclass
class Node:
    """One record in the include/redirect tree (``record`` None when it could not be had)."""

    domain: str
    via: str  # "top", "include" or "redirect"
    record: Record | None = None
    problem: str = ""
    children: list[Node] = field(default_factory=list)

    def lines(self, depth: int = 0) -> list[str]:
        """The flattened tree, one indented line per record."""
        label = self.domain if self.via == "top" else f"{self.via}:{self.domain}"
        text = self.record.text if self.record else f"({self.problem or 'not followed'})"
        out = [f"{'  ' * depth}{label}: {text}"]
        for child in self.children:
            out.extend(child.lines(depth + 1))
        return out


@dataclass
class SPFReport:
    """What the lint found for one domain."""

    domain: str
    records: list[str] = field(default_factory=list)  # every v=spf1 TXT string at the domain
    tree: Node | None = None
    lookups: int = 0
    void_lookups: int = 0
    all_qualifier: str | None = None  # effective "all" after redirects; None if none
    findings: list[Finding] = field(default_factory=list)

    @property
    def record(self) -> Record | None:
        return self.tree.record if self.tree else None

    @property
    def usable(self) -> bool:
        """Whether there is one syntactically valid record to evaluate."""
        return self.record is not None

    @property
    def complete(self) -> bool:
        """Whether every record of the tree could be read: when a DNS failure left part of it
        unread, the look-up counts are lower bounds."""
        return not any(f.code == "spf-temperror" for f in self.findings)


class _Walker:
    def __init__(self, report: SPFReport, lookup: Lookup) -> None:
        self.report = report
        self.lookup = lookup

    def add(self, level: int, code: str, text: str) -> None:
        self.report.findings.append(Finding(level, code, text))

    def fetch(self, node: Node, where: str) -> list[str] | None:
        """The v=spf1 strings of ``node.domain``, or None after recording a temperror."""
        try:
            return [t for t in self.lookup.txt(node.domain) if is_spf_record(t)]
        except DNSFailure as exc:
            node.problem = f"temperror: {exc.reason}"
            self.add(UNKNOWN, "spf-temperror",
                     f"SPF temperror: {where}:{node.domain}: DNS look-up failed ({exc.reason})")
            return None

    def load(self, node: Node, where: str) -> None:
        """Fetch and parse the record of an include/redirect target, then walk it."""
        found = self.fetch(node, where)
        if found is None:
            return
        if not found:
            node.problem = "no SPF record"
            self.report.void_lookups += 1
            self.add(CRITICAL, "spf-target-missing",
                     f"SPF permerror: {where} {node.domain} has no SPF record")
            return
        if len(found) > 1:
            node.problem = f"{len(found)} SPF records"
            self.add(CRITICAL, "spf-multiple",
                     f"SPF permerror: {where} {node.domain} has {len(found)} SPF records")
            return
        try:
            node.record = parse_record(found[0])
        except SPFSyntaxError as exc:
            node.problem = f"syntax error: {exc}"
            self.add(CRITICAL, "spf-syntax",
                     f"SPF permerror: syntax error in {where} {node.domain}: {exc}")

    def walk(self, node: Node, path: tuple[str, ...]) -> None:
        record = node.record
        if record is None:
            return
        for term in record.terms:
            if term.is_modifier:
                continue
            if term.name == "ptr":
                self.add(WARNING, "spf-ptr",
                         f"SPF {node.domain} uses '{term.text}': ptr is deprecated "
                         "(RFC 7208 5.5), slow, and ignored by many receivers")
            if not term.queries_dns:
                continue
            self.report.lookups += 1
            if term.name == "include":
                self.follow(node, term, "include", path)
            elif term.name in ("a", "mx", "exists") and not term.has_macros:
                self.probe_void(node, term)
        redirect = record.redirect
        if record.all_term and record.modifier("redirect"):
            self.add(OK, "spf-redirect-ignored",
                     f"SPF {node.domain}: redirect= is ignored because the record has 'all'")
        if redirect is not None:
            self.report.lookups += 1
            self.follow(node, redirect, "redirect", path)

    def follow(self, parent: Node, term: Term, via: str, path: tuple[str, ...]) -> None:
        target = (term.domain or "").rstrip(".").lower()
        child = Node(target, via)
        parent.children.append(child)
        if term.has_macros:
            child.problem = "macro, depends on the sender: not followed"
            return
        if target in path:
            child.problem = "loop"
            chain = " -> ".join((*path, target))
            self.add(CRITICAL, "spf-loop", f"SPF permerror: {via} loop {chain}")
            return
        if self.report.lookups > FOLLOW_LIMIT:
            child.problem = f"not followed (more than {FOLLOW_LIMIT} look-ups)"
            return
        self.load(child, via)
        if child.record is None:
            return
        if via == "include" and term.qualifier == "+" and child.record.all_term \
                and child.record.all_term.qualifier == "+":
            self.add(CRITICAL, "spf-plus-all",
                     f"SPF include:{target} ends in +all: it authorises every host")
        self.walk(child, (*path, target))

    def probe_void(self, node: Node, term: Term) -> None:
        """Ask what check_host() would ask for a/mx/exists; count void answers."""
        target = (term.domain or node.domain).rstrip(".")
        try:
            if term.name == "mx":
                hosts = self.lookup.mx(target)
                if len(hosts) > MX_NAMES_LIMIT:
                    self.add(CRITICAL, "spf-mx-too-many",
                             f"SPF permerror: '{term.text}' in {node.domain} names {len(hosts)} "
                             f"MX hosts (limit {MX_NAMES_LIMIT})")
                empty = not hosts
            elif term.name == "exists":
                empty = not self.lookup.addresses(target, 4)
            else:
                empty = not self.lookup.addresses(target)
        except DNSFailure as exc:
            self.add(UNKNOWN, "spf-temperror",
                     f"SPF temperror: '{term.text}' in {node.domain}: DNS look-up failed "
                     f"({exc.reason})")
            return
        if empty:
            self.report.void_lookups += 1
            self.add(OK, "spf-void",
                     f"SPF '{term.text}' in {node.domain}: {target} has no "
                     f"{'MX' if term.name == 'mx' else 'address'} (void look-up)")


def lint(domain: str, lookup: Lookup) -> SPFReport:
    """Fetch, parse and walk ``domain``'s SPF record.

    A DNS failure on the domain's own TXT look-up propagates (:class:`DNSFailure`): the caller
    cannot say anything about SPF then. Failures further down become temperror findings.
    """
    domain = domain.rstrip(".").lower()
    report = SPFReport(domain)
    report.records = [t for t in lookup.txt(domain) if is_spf_record(t)]
    walker = _Walker(report, lookup)
    if not report.records:
        walker.add(WARNING, "spf-none", f"no SPF record at {domain}")
        return report
    if len(report.records) > 1:
        walker.add(CRITICAL, "spf-multiple",
                   f"SPF permerror: {len(report.records)} SPF records at {domain}")
        return report
    report.tree = Node(domain, "top")
    try:
        report.tree.record = parse_record(report.records[0])
    except SPFSyntaxError as exc:
        report.tree.problem = f"syntax error: {exc}"
        walker.add(CRITICAL, "spf-syntax", f"SPF permerror: syntax error at {domain}: {exc}")
        return report
    walker.walk(report.tree, (domain,))
    report.all_qualifier = _effective_all(report.tree)
    _judge_all(report, walker)
    return report


def _effective_all(node: Node) -> str | None:
    """The qualifier of the ``all`` that ends evaluation, following redirects."""
    while node.record is not None:
        if node.record.all_term:
            return node.record.all_term.qualifier
        redirects = [c for c in node.children if c.via == "redirect"]
        if not redirects:
            return None
        node = redirects[0]
    return None


def _judge_all(report: SPFReport, walker: _Walker) -> None:
    record = report.record
    assert record is not None
    qualifier = report.all_qualifier
    if qualifier == "+":
        walker.add(CRITICAL, "spf-plus-all", "SPF +all authorises every host on the Internet")
    elif qualifier == "?":
        walker.add(WARNING, "spf-neutral-all", "SPF ?all (neutral) protects nothing")
    elif qualifier == "~":
        walker.add(OK, "spf-softfail-all", "SPF ends in ~all (softfail)")
    elif qualifier == "-":
        walker.add(OK, "spf-fail-all", "SPF ends in -all (fail)")
    elif record.redirect is None:
        walker.add(WARNING, "spf-no-all",
                   "SPF has no 'all' and no redirect: unlisted hosts get neutral")
    # a redirect whose target could not be read is already reported as a problem
