"""What to do about each kind of finding (seed 001: the relaying policy; fixes for Postfix,
Exim and Sendmail). Data only: :mod:`.report` picks the entries the results call for."""

from __future__ import annotations

from dataclasses import dataclass

POLICY = """\
The relaying policy a mailer should follow (JANET, "Repairing open mail relays"):
  * internal IP address to internal mail address: permitted (a local policy matter);
  * internal IP address to external: permitted; relaying MUST NOT be allowed on the basis of
    the originator address (MAIL FROM, From:, Sender: or any other header): it is forged at will;
  * external to internal mail address: permitted (the domains the mailer is responsible for);
  * external to external: FORBIDDEN.
The tester speaks from an external address, so every relay attempt asks for the forbidden case."""


@dataclass(frozen=True)
class Advice:
    key: str
    title: str
    postfix: str
    exim: str
    sendmail: str


PLAIN = Advice(
    "plain", "The mailer relays for outside clients",
    "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
    "reject_unauth_destination; keep mynetworks to your own networks (never 0.0.0.0/0), and "
    "relay_domains to the domains you really relay for.",
    "in acl_smtp_rcpt, 'accept hosts = +relay_from_hosts' with relay_from_hosts listing only "
    "your networks, 'accept authenticated = *', then 'require domains = +local_domains : "
    "+relay_to_domains' (the Debian default ACL does this).",
    "no FEATURE(`promiscuous_relay'); access database 'Connect:' RELAY entries only for your "
    "own networks; no RELAY entries for outside domains.")
SENDER = Advice(
    "sender", "The mailer relays because of the sender address (forged at will)",
    "remove check_sender_access ... OK entries (and any other rule that permits on the sender "
    "address) before reject_unauth_destination in smtpd_relay_restrictions and "
    "smtpd_recipient_restrictions.",
    "do not accept relaying with 'senders =' or 'sender_domains =' conditions in "
    "acl_smtp_rcpt; relay only for hosts or authenticated clients.",
    "remove FEATURE(`relay_mail_from') and 'From:' RELAY entries from the access database.")
ROUTING = Advice(
    "routing", "The mailer relays sender-routed addresses (%, !, quoted local parts, "
    "source routes)",
    "allow_untrusted_routing = no (the default); for a backup MX set relay_recipient_maps so "
    "only real users are accepted; keep swap_bangpath and allow_percent_hack at their defaults "
    "only if the next hop treats those forms as local.",
    "keep the default 'deny local_parts = ^.*[@%!/|]' (domains = +local_domains) and "
    "'deny local_parts = ^[./|] : ^.*[@%!] : ^.*/\\.\\./' lines in acl_smtp_rcpt; leave "
    "percent_hack_domains unset.",
    "remove FEATURE(`loose_relay_check'); use FEATURE(`nouucp', `reject') against bang paths.")
HELO = Advice(
    "helo", "The mailer relays because of the HELO/EHLO name (forged at will)",
    "remove check_helo_access ... OK entries that come before reject_unauth_destination "
    "(SMTPD_ACCESS_README, 'dangerous use').",
    "do not accept relaying on conditions about $sender_helo_name.",
    "do not trust the HELO name; relay only by connection address (access 'Connect:').")
DEFERRED = Advice(
    "deferred", "Relay attempts answered with a temporary (4xx) code",
    "use reject_unauth_destination instead of defer_unauth_destination (Postfix's own default "
    "in smtpd_relay_restrictions answers 454 4.7.1); 4xx makes the client keep the mail and "
    "try again.",
    "refuse relaying with 'deny' (5xx), not 'defer'.",
    "answer relay attempts with 550 5.7.1 (the default 'Relaying denied').")

GROUPS: dict[str, Advice] = {a.key: a for a in (PLAIN, SENDER, ROUTING, HELO, DEFERRED)}


def group_of(attempt_id: str) -> str:
    """Which advice an attempt's relaying calls for."""
    if attempt_id.startswith("sender-"):
        return SENDER.key
    if attempt_id.startswith("helo-") or attempt_id == "no-greeting":
        return HELO.key if attempt_id.startswith("helo-") else PLAIN.key
    if attempt_id.startswith(("percent-hack", "quoted-", "double-at", "source-route",
                              "bang-path", "trailing-at")):
        return ROUTING.key
    return PLAIN.key


BLACKLISTS = """\
Getting off blacklists (JANET, "Repairing open mail relays"): once the mailer is mended, check
the lists and ask each one that names it for removal, following the list's own procedure.
Some lists test the mailer themselves and list it again if it fails: mend it first."""
