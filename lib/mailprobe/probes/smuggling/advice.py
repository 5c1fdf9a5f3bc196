"""Which MTA the server says it is, and what closes SMTP smuggling on it (data)."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: MTA -> (CVE, what to change). Sources: the Postfix smtp-smuggling page and postconf(5),
#: the Exim 4.97.1 announcement, sendmail 8.18.1's release notes (docs/check_smtp_smuggling.md).
ADVICE: dict[str, tuple[str, str]] = {
    "Postfix": ("CVE-2023-51764",
                "Postfix: set smtpd_forbid_bare_newline = yes (3.5.23, 3.6.13, 3.7.9, 3.8.4 "
                "and later; the default from 3.9) and check smtpd_forbid_bare_newline_exclusions "
                "(default $mynetworks); smtpd_forbid_unauth_pipelining = yes also refuses the "
                "smuggling clients"),
    "Exim": ("CVE-2023-51766",
             "Exim: upgrade to 4.97.1 or later (or a distribution package with the "
             "CVE-2023-51766 fix); until then do not advertise CHUNKING and PIPELINING to "
             "outside clients (chunking_advertise_hosts, pipelining_advertise_hosts)"),
    "Sendmail": ("CVE-2023-51765",
                 "Sendmail: upgrade to 8.18.1 or later, which refuses a bare CR or LF in the "
                 "SMTP dialogue by default, and do not re-allow it with srv_features"),
}

_NAMES = {name.lower(): name for name in ADVICE}
_WORD = re.compile(r"\b(postfix|exim|sendmail)\b", re.IGNORECASE)


def identify_mta(texts: Iterable[str]) -> str | None:
    """The MTA a banner or EHLO reply names (Postfix, Exim, Sendmail), or None."""
    for text in texts:
        match = _WORD.search(text)
        if match:
            return _NAMES[match.group(1).lower()]
    return None


def advice_for(mta: str | None) -> list[str]:
    """What to change on this MTA; for an unknown one, the advice for each."""
    if mta in ADVICE:
        return [ADVICE[mta][1]]
    return [text for _, text in ADVICE.values()]


def cves_for(mta: str | None) -> str:
    if mta in ADVICE:
        return ADVICE[mta][0]
    return "CVE-2023-51764/51765/51766"
