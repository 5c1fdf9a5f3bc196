"""The relay attempts, as data: what each one sends, and how its addresses are built.

An attempt is a stable id, a one-line description, a greeting mode and two raw command
arguments written as templates. The templates are filled in byte for byte (no quoting, no
normalisation), because the point of most attempts is a deliberately non-RFC address form.

Placeholders: ``{user}`` and ``{ext}`` the outside recipient (``--external-user``,
``--external-domain``), ``{dom}`` the server's own mail domain, ``{ip}`` the server's address
literal (``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``), ``{extip}`` an outside address literal,
``{USER}``/``{EXT}`` upper-case forms.

Some attempts open their session differently (:class:`Greeting`: the names a server may trust
in HELO), some say something before MAIL FROM (:class:`Preamble`: XCLIENT, XFORWARD, AUTH
without a password) and some are told apart only by the message header (``header_from``,
``header_sender``: played at ``--depth deliver`` only, since at RCPT they are the plain case).

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
    LOCALHOST_LOCALDOMAIN = "localhost-localdomain"  # EHLO localhost.localdomain
    PTR_NAME = "ptr-name"  # EHLO the PTR name of the server's address
    MAIL_DOMAIN = "mail-domain"  # EHLO the server's mail domain


class Preamble(Enum):
    """A command sent after the greeting and before MAIL FROM, when the server offers it."""

    XCLIENT = "xclient"  # XCLIENT NAME=localhost ADDR=127.0.0.1 (Postfix)
    XFORWARD = "xforward"  # XFORWARD NAME=localhost ADDR=127.0.0.1 (Postfix)
    AUTH_PLAIN_NULL = "auth-plain-null"  # AUTH PLAIN with an empty user and password
    AUTH_LOGIN_NULL = "auth-login-null"  # AUTH LOGIN with an empty user and password
    AUTH_ANONYMOUS = "auth-anonymous"  # AUTH ANONYMOUS (RFC 4505)
    AUTH_NTLM_NULL = "auth-ntlm-null"  # AUTH NTLM null session (MS02-011)

    @property
    def extension(self) -> str:
        """The EHLO keyword that must be offered for the preamble to be tried."""
        return "AUTH" if self.value.startswith("auth-") else self.name

    @property
    def mechanism(self) -> str:
        """The SASL mechanism (AUTH preambles only)."""
        return self.value.split("-")[1].upper() if self.extension == "AUTH" else ""


@dataclass(frozen=True)
class RelayAttempt:
    """One relay attempt: a MAIL FROM / RCPT TO pair sent after a greeting."""

    id: str
    description: str
    mail_from: str  # argument after "MAIL FROM:" (template)
    rcpt_to: str  # argument after "RCPT TO:" (template)
    greeting: Greeting = Greeting.EHLO
    rcpt_verb: str = "RCPT TO:"  # the command text before the argument
    preamble: Preamble | None = None  # sent after the greeting, on a connection of its own
    header_from: str = ""  # the message's From: address (template; --depth deliver only)
    header_sender: str = ""  # the message's Sender: address (template; --depth deliver only)

    @property
    def deliver_only(self) -> bool:
        """Told apart from the plain case only by the message: played at --depth deliver."""
        return bool(self.header_from or self.header_sender)

    @property
    def to_operator(self) -> bool:
        """Whether the recipient is built from the outside user and domain (at --depth deliver
        the operator's own address): only such an attempt may carry a message."""
        return "{ext}" in self.rcpt_to.lower()

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


def _preamble(id_: str, description: str, preamble: Preamble) -> RelayAttempt:
    return RelayAttempt(id_, description, _EXT_SENDER, _EXT_RCPT, preamble=preamble)


def _header(id_: str, description: str, header_from: str = "",
            header_sender: str = "") -> RelayAttempt:
    return RelayAttempt(id_, description, _EXT_SENDER, _EXT_RCPT, header_from=header_from,
                        header_sender=header_sender)


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
    # -- issue 13: more names a server may trust in HELO (DSBL tried every name it knew) ----
    _sequence("helo-localhost-localdomain", "greeting as localhost.localdomain",
              Greeting.LOCALHOST_LOCALDOMAIN),
    _sequence("helo-ptr-name", "greeting with the PTR name of the server's address",
              Greeting.PTR_NAME),
    _sequence("helo-mail-domain", "greeting with the server's mail domain", Greeting.MAIL_DOMAIN),
    # -- issue 13: trusted-client extensions and AUTH without a password --------------------
    _preamble("xclient-loopback", "XCLIENT NAME=localhost ADDR=127.0.0.1, then relay",
              Preamble.XCLIENT),
    _preamble("xforward-loopback", "XFORWARD NAME=localhost ADDR=127.0.0.1, then relay",
              Preamble.XFORWARD),
    _preamble("auth-plain-null", "AUTH PLAIN with an empty user and password, then relay",
              Preamble.AUTH_PLAIN_NULL),
    _preamble("auth-login-null", "AUTH LOGIN with an empty user and password, then relay",
              Preamble.AUTH_LOGIN_NULL),
    _preamble("auth-anonymous", "AUTH ANONYMOUS, then relay", Preamble.AUTH_ANONYMOUS),
    _preamble("auth-ntlm-null", "AUTH NTLM null session (MS02-011), then relay",
              Preamble.AUTH_NTLM_NULL),
)

# Relaying on the header originator (seed 001: MUST NOT relay on the basis of From: or
# Sender:): at RCPT these are the plain case, so they are played at --depth deliver only.
HEADER_ATTEMPTS: tuple[RelayAttempt, ...] = (
    _header("header-from-own-domain", "From: header in the server's own domain",
            header_from="postmaster@{dom}"),
    _header("header-sender-own-domain", "Sender: header in the server's own domain",
            header_sender="postmaster@{dom}"),
)

#: Every attempt: the default series (CATALOGUE), then the --depth deliver ones.
EVERY_ATTEMPT: tuple[RelayAttempt, ...] = CATALOGUE + HEADER_ATTEMPTS
BY_ID: dict[str, RelayAttempt] = {attempt.id: attempt for attempt in EVERY_ATTEMPT}


class NotPlayable(ValueError):
    """An attempt named in --tests cannot be played at the chosen depth."""


def select(only: list[str] | None = None, skip: list[str] | None = None,
           deliver: bool = False) -> list[RelayAttempt]:
    """The attempts to play, in catalogue order; unknown ids raise KeyError naming them.

    Without ``deliver`` the header attempts are left out (at RCPT they are the plain case);
    with it, the attempts whose recipient cannot be the operator's address are (a message
    goes to nobody else). Naming such an attempt in ``only`` raises NotPlayable.
    """
    unknown = [i for i in (only or []) + (skip or []) if i not in BY_ID]
    if unknown:
        raise KeyError(", ".join(unknown))
    unplayable = [a.id for a in EVERY_ATTEMPT if not playable(a, deliver)]
    named = [i for i in (only or []) if i in unplayable]
    if named:
        why = ("needs --depth deliver" if not deliver
               else "cannot be addressed to --deliver-to")
        raise NotPlayable(f"{', '.join(named)} {why}")
    chosen = [a for a in EVERY_ATTEMPT if (not only or a.id in only) and playable(a, deliver)]
    return [a for a in chosen if a.id not in (skip or [])]


def playable(attempt: RelayAttempt, deliver: bool) -> bool:
    """Whether ``attempt`` is played at this depth (see :func:`select`)."""
    return attempt.to_operator if deliver else not attempt.deliver_only


def header_value(template: str, targets: Targets) -> str:
    """A header address filled in; AddressError if it could break the header."""
    value = targets.fill(template)
    if any(not ch.isprintable() or ch in "<>" for ch in value):
        raise AddressError(f"header address {value!r} cannot go into a message header")
    return value
