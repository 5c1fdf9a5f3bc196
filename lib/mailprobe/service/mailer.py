"""Mail out: messages built once (with their Message-ID) and queued in the outbox, then
sent one recipient per SMTP transaction through the smarthost, so a recipient that refuses
a report is logged and does not stop the others.

Never to anyone but the requester, postmaster at the tested host and the site's postmaster:
:mod:`.worker` and :mod:`.receive` choose the recipients, this module only sends.
"""

from __future__ import annotations

import email.utils
import hashlib
import smtplib
import ssl
import sys
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy

from mailprobe.service import faults
from mailprobe.service.config import Settings
from mailprobe.service.store import FAILED, PENDING, REFUSED, SENT, Store, this_owner

MAIL_POLICY = default_policy.clone(max_line_length=998)
LEASE = 300.0                  # a claimed mail is taken over after this (or when its owner dies)
RETRY = 300.0                  # wait before trying a mail again after a temporary failure
GIVE_UP = 5 * 86400.0          # stop trying a mail after this


@dataclass(frozen=True)
class Outgoing:
    key: str
    recipient: str
    subject: str
    text: str
    in_reply_to: str = ""
    auto: str = "auto-replied"     # RFC 3834: auto-replied (answers), auto-generated (bookings)


def message_id(key: str, domain: str) -> str:
    """A stable Message-ID per outbox key: a resend after a crash carries the same one."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return f"<relaytest.{digest}@{domain}>"


def build(settings: Settings, outgoing: Outgoing) -> bytes:
    message = EmailMessage(policy=MAIL_POLICY)
    message["From"] = settings.address
    message["To"] = outgoing.recipient
    message["Subject"] = outgoing.subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = message_id(outgoing.key, settings.service_domain)
    message["Auto-Submitted"] = outgoing.auto
    if outgoing.in_reply_to:
        message["In-Reply-To"] = outgoing.in_reply_to
        message["References"] = outgoing.in_reply_to
    message["X-Mailprobe-Relaytest"] = outgoing.key
    text = outgoing.text
    plain = text.isascii() and max(map(len, text.splitlines() or [""])) < 990
    message.set_content(text, cte="7bit" if plain else "quoted-printable")
    if settings.html:
        from mailprobe.service.render import as_html

        message.add_alternative(as_html(text), subtype="html")
    return message.as_bytes()


def queue(store: Store, settings: Settings, outgoing: Outgoing, kind: str, now: float,
          request_id: int | None = None, test_id: int | None = None) -> bool:
    """Queue inside the caller's transaction; False when this key was queued before."""
    return store.queue_mail(outgoing.key, kind, outgoing.recipient, build(settings, outgoing),
                            now, request_id, test_id)


class Refused(Exception):
    """The smarthost refused the recipient or the message for good (5xx)."""


def send_one(settings: Settings, recipient: str, message: bytes) -> None:
    """One SMTP transaction; Refused for 5xx, OSError/SMTPException for temporary trouble."""
    host, port = settings.smarthost_address()
    with smtplib.SMTP(host, port, timeout=60) as smtp:
        smtp.ehlo()
        if settings.smarthost_tls != "never" and smtp.has_extn("starttls"):
            context = ssl.create_default_context()
            if settings.smarthost_tls == "opportunistic":
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            smtp.starttls(context=context)
            smtp.ehlo()
        try:
            smtp.sendmail(settings.address, [recipient], message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients[recipient]
            if code >= 500:
                raise Refused(f"{code} {_text(text)}") from exc
            raise
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            if exc.smtp_code >= 500:
                raise Refused(f"{exc.smtp_code} {_text(exc.smtp_error)}") from exc
            raise


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def deliver_due(store: Store, settings: Settings, request_id: int | None = None,
                log: bool = True) -> tuple[int, int]:
    """Send what is due in the outbox (only ``request_id``'s mails when given).

    Returns (sent, not sent now). A refused recipient is logged and marked; a temporary
    failure keeps the mail for a later run.
    """
    sent = failed = 0
    owner = this_owner()
    for row in store.due_mails(time.time(), request_id):
        if not store.claim_mail(row, owner, time.time() + LEASE):
            continue
        recipient = str(row.recipient)
        raw = row.message
        message = raw if isinstance(raw, bytes) else bytes(str(raw), "utf-8")
        try:
            send_one(settings, recipient, message)
        except Refused as exc:
            store.finish_mail(int(str(row.id)), REFUSED, time.time(), str(exc))
            _log(log, f"{row.kind} mail {row.key} to {recipient} refused: {exc}")
            failed += 1
            continue
        except (OSError, smtplib.SMTPException) as exc:
            now = time.time()
            created = row.created_at if isinstance(row.created_at, float) else now
            state = FAILED if now - created > GIVE_UP else PENDING
            store.finish_mail(int(str(row.id)), state, now, str(exc) or type(exc).__name__,
                              next_try_at=now + RETRY)
            _log(log, f"{row.kind} mail {row.key} to {recipient} not sent ({exc}); "
                 + ("given up" if state == FAILED else "will retry"))
            failed += 1
            continue
        faults.point("mail:after-send")
        store.finish_mail(int(str(row.id)), SENT, time.time())
        _log(log, f"{row.kind} mail {row.key} sent to {recipient}")
        sent += 1
    return sent, failed


def _log(enabled: bool, text: str) -> None:
    if enabled:
        print(f"mailprobe relaytest: {text}", file=sys.stderr, flush=True)
