"""The relay attempts, as data: what each one sends, and how its addresses are built.

An attempt is a stable id, a one-line description, a greeting mode and two raw command
arguments written as templates. The templates are filled in byte for byte (no quoting, no
normalisation), because the point of most attempts is a deliberately non-RFC address form.

Placeholders: ``{user}`` and ``{ext}`` the outside recipient (``--external-user``,
``--external-domain``), ``{dom}`` the server's own mail domain, ``{ip}`` the server's address
literal (``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``), ``{extip}`` an outside address literal,
``{USER}``/``{EXT}`` upper-case forms.

Sources: the union of nmap's smtp-open-relay forms, the classic relay testers (rlytest,
DSBL, the JANET tester's non-RFC 2821/2822 sequences) and seed 001's rule that relaying on
the basis of the originator address is forbidden.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Greeting(Enum):
    """How an attempt's session opens."""

    EHLO = "ehlo"  # EHLO with our --helo name (HELO fallback)
    HELO = "helo"  # plain HELO only (catches HELO-only relays)
    NONE = "none"  # no greeting at all
    SERVER_NAME = "server-name"  # EHLO claiming to be the server itself
    LOCALHOST = "localhost"  # EHLO localhost
    SERVER_IP = "server-ip"  # EHLO [server address literal]


@dataclass(frozen=True)
class RelayAttempt:
    """One relay attempt: a MAIL FROM / RCPT TO pair sent after a greeting."""

    id: str
    description: str
    mail_from: str  # argument after "MAIL FROM:" (template)
    rcpt_to: str  # argument after "RCPT TO:" (template)
    greeting: Greeting = Greeting.EHLO
    rcpt_verb: str = "RCPT TO:"  # the command text before the argument

    def mail_command(self, targets: Targets) -> str:
        return "MAIL FROM:" + targets.fill(self.mail_from)

    def rcpt_command(self, targets: Targets) -> str:
        return self.rcpt_verb + targets.fill(self.rcpt_to)


class AddressError(ValueError):
    """A value given for an address part cannot go safely on the wire."""


_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                     r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?\Z")
_LOCAL = re.compile(r"^[A-Za-z0-9!#$&'*+/=?^_`{}~.-]{1,64}\Z")


def check_domain(value: str, what: str) -> str:
    """A host or domain name safe to put in a command line, else AddressError."""
    if not _DOMAIN.match(value):
        raise AddressError(f"{what} {value!r} is not a domain name")
    return value.rstrip(".")


def check_local_part(value: str, what: str) -> str:
    if not _LOCAL.match(value):
        raise AddressError(f"{what} {value!r} is not a plain local part")
    return value


@dataclass(frozen=True)
class Targets:
    """The concrete names the templates are filled with."""

    ext: str  # outside domain (recipient's)
    user: str  # outside local part
    dom: str  # the server's own mail domain
    ip: str  # the server's address literal, brackets included
    extip: str = "[192.0.2.25]"  # RFC 5737 documentation address: outside, never routed

    def fill(self, template: str) -> str:
        values = {
            "{user}": self.user, "{ext}": self.ext, "{dom}": self.dom, "{ip}": self.ip,
            "{extip}": self.extip, "{USER}": self.user.upper(), "{EXT}": self.ext.upper(),
        }
        return re.sub(r"\{(?:user|ext|dom|ip|extip|USER|EXT)\}", lambda m: values[m.group(0)],
                      template)


# The control attempts: must be accepted (local) / tell catch-alls apart. Not relay tests.
CONTROL = RelayAttempt(
    "control", "outside sender to the server's own postmaster (must be accepted)",
    "<{user}@{ext}>", "<postmaster@{dom}>",
)

_EXT_SENDER = "<{user}@{ext}>"
_EXT_RCPT = "<{user}@{ext}>"


def _sender(id_: str, description: str, mail_from: str) -> RelayAttempt:
    return RelayAttempt(id_, description, mail_from, _EXT_RCPT)


def _rcpt(id_: str, description: str, rcpt_to: str, verb: str = "RCPT TO:") -> RelayAttempt:
    return RelayAttempt(id_, description, _EXT_SENDER, rcpt_to, rcpt_verb=verb)


def _sequence(id_: str, description: str, greeting: Greeting) -> RelayAttempt:
    return RelayAttempt(id_, description, _EXT_SENDER, _EXT_RCPT, greeting=greeting)


CATALOGUE: tuple[RelayAttempt, ...] = (
    # -- the plain case, and relaying on the basis of the originator address (seed 001) ----
    _sender("plain", "outside sender to outside recipient", _EXT_SENDER),
    _sender("sender-null", "null sender <> to outside recipient", "<>"),
    _sender("sender-own-domain", "sender spoofed in the server's own domain",
            "<postmaster@{dom}>"),
    _sender("sender-server-ip", "sender at the server's address literal", "<postmaster@{ip}>"),
    _sender("sender-localhost", "sender @localhost", "<postmaster@localhost>"),
    _sender("sender-loopback-ip", "sender at [127.0.0.1]", "<postmaster@[127.0.0.1]>"),
    _sender("sender-unqualified", "unqualified sender (no domain)", "<postmaster>"),
    _sender("sender-bang-path", "sender as a UUCP bang path in the outside domain",
            "<{ext}!{user}>"),
    # -- recipient forms ----------------------------------------------------------------
    _rcpt("percent-hack-domain", "percent hack via the server's domain",
          "<{user}%{ext}@{dom}>"),
    _rcpt("percent-hack-ip", "percent hack via the server's address literal",
          "<{user}%{ext}@{ip}>"),
    _rcpt("percent-hack-localhost", "percent hack via localhost", "<{user}%{ext}@localhost>"),
    _rcpt("percent-hack-loopback", "percent hack via [127.0.0.1]",
          "<{user}%{ext}@[127.0.0.1]>"),
    _rcpt("percent-hack-bare", "unqualified percent-hack recipient", "<{user}%{ext}>"),
    _rcpt("quoted-local-part", "whole address quoted as a local part", '<"{user}@{ext}">'),
    _rcpt("quoted-local-part-domain", "quoted outside address at the server's domain",
          '<"{user}@{ext}"@{dom}>'),
    _rcpt("quoted-local-part-ip", "quoted outside address at the server's address literal",
          '<"{user}@{ext}"@{ip}>'),
    _rcpt("quoted-percent-domain", "quoted percent hack at the server's domain",
          '<"{user}%{ext}"@{dom}>'),
    _rcpt("quoted-percent-bare", "quoted unqualified percent hack", '<"{user}%{ext}">'),
    _rcpt("double-at-domain", "two @ signs, server's domain last", "<{user}@{ext}@{dom}>"),
    _rcpt("double-at-ip", "two @ signs, server's address literal last", "<{user}@{ext}@{ip}>"),
    _rcpt("trailing-at", "trailing @ after the outside address", "<{user}@{ext}@>"),
    _rcpt("source-route-domain", "RFC 821 source route through the server's domain",
          "<@{dom}:{user}@{ext}>"),
    _rcpt("source-route-ip", "RFC 821 source route through the server's address literal",
          "<@{ip}:{user}@{ext}>"),
    _rcpt("bang-path", "UUCP bang path, unqualified", "<{ext}!{user}>"),
    _rcpt("bang-path-domain", "UUCP bang path at the server's domain", "<{ext}!{user}@{dom}>"),
    _rcpt("bang-path-ip", "UUCP bang path at the server's address literal",
          "<{ext}!{user}@{ip}>"),
    _rcpt("quoted-bang-path-domain", "quoted UUCP bang path at the server's domain",
          '<"{ext}!{user}"@{dom}>'),
    _rcpt("ip-literal-recipient", "recipient at an outside address literal",
          "<{user}@{extip}>"),
    _rcpt("trailing-dot", "outside domain with a trailing dot", "<{user}@{ext}.>"),
    _rcpt("upper-case", "outside recipient in upper case", "<{USER}@{EXT}>"),
    _rcpt("no-angle-brackets", "outside recipient without angle brackets", "{user}@{ext}"),
    _rcpt("space-after-colon", "space between RCPT TO: and the address", " <{user}@{ext}>"),
    _rcpt("lower-case-verb", "lower-case command verb", "<{user}@{ext}>", verb="rcpt to:"),
    # -- session sequences ----------------------------------------------------------------
    _sequence("no-greeting", "no HELO/EHLO at all before MAIL FROM", Greeting.NONE),
    _sequence("helo-only", "plain HELO instead of EHLO", Greeting.HELO),
    _sequence("helo-server-name", "greeting that claims the server's own name",
              Greeting.SERVER_NAME),
    _sequence("helo-localhost", "greeting as localhost", Greeting.LOCALHOST),
    _sequence("helo-server-ip", "greeting with the server's own address literal",
              Greeting.SERVER_IP),
)

BY_ID: dict[str, RelayAttempt] = {attempt.id: attempt for attempt in CATALOGUE}


def select(only: list[str] | None = None, skip: list[str] | None = None) -> list[RelayAttempt]:
    """The attempts to play, in catalogue order; unknown ids raise KeyError naming them."""
    unknown = [i for i in (only or []) + (skip or []) if i not in BY_ID]
    if unknown:
        raise KeyError(", ".join(unknown))
    chosen = [a for a in CATALOGUE if not only or a.id in only]
    return [a for a in chosen if a.id not in (skip or [])]
