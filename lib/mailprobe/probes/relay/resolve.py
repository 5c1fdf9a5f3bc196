"""The addresses of ``-H``: every A and AAAA record, each family looked up on its own.

A family that cannot be looked up (SERVFAIL, a dropped question) does not hide the other: the
addresses found are probed and the family that failed is reported as not tested. Both
questions go out at once, each on its own thread under the check's deadline; once one family
has given addresses, the other gets at most :data:`GRACE` more seconds (one resolver try), so
a dropped AAAA question costs seconds, not the whole ``-t`` budget.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass, field

from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.net.dns import (
    DNSFailure,
    Lookup,
    Nameserver,
    UnusableAddress,
    is_ip_address,
    make_resolver,
    resolve_target,
)
from mailprobe.probes.relay.catalogue import AddressError, check_domain

GRACE = 5.0  # seconds the slower family may take after the other one gave addresses
FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}
RECORD_TYPES = {4: "A", 6: "AAAA"}


@dataclass
class Resolution:
    """The addresses to probe (IPv4 first, each family in numeric order), and why a family
    could not be looked up."""

    addresses: list[str]
    failures: dict[int, str] = field(default_factory=dict)  # 4 or 6 -> reason


def family_of(address: str) -> int:
    return 6 if ":" in address else 4


def resolve(host: str, nameservers: list[Nameserver] | None, family: int,
            deadline: Deadline) -> Resolution:
    """The addresses of ``host`` in ``family`` (4, 6, or 0 for both).

    An IP address is itself. With one family, a failed look-up raises (DNSFailure or
    BudgetExhausted) as before. With both, a failed family is in ``failures`` as long as the
    other gave addresses; when neither did, the first failure is raised. An unusable answer
    (0.0.0.0 and the like) always raises UnusableAddress: the DNS is wrong, not the mailer.
    """
    if is_ip_address(host):
        return Resolution([str(ipaddress.ip_address(host))])
    if family:
        return Resolution(_unique(resolve_target(host, _lookup(nameservers, deadline), family)))
    answers, grace = _ask_both(host, nameservers, deadline)
    addresses: list[str] = []
    failures: dict[int, str] = {}
    errors: list[Exception] = []
    for fam in (4, 6):
        answer = answers.get(fam)
        if isinstance(answer, list):
            addresses.extend(answer)
        elif isinstance(answer, UnusableAddress):
            raise answer
        elif isinstance(answer, DNSFailure | BudgetExhausted):
            errors.append(answer)
            failures[fam] = str(answer)
        elif isinstance(answer, Exception):
            raise answer  # not a DNS problem: a bug, reported as an internal error
        else:
            failures[fam] = (f"DNS look-up {host} {RECORD_TYPES[fam]} not answered within "
                             f"{grace:.1f}s of the {RECORD_TYPES[10 - fam]} answer")
    if not addresses and errors:
        raise errors[0]
    if not addresses and failures:
        raise BudgetExhausted(f"looking up {host}", deadline.budget)
    return Resolution(_unique(addresses), failures)


def _lookup(nameservers: list[Nameserver] | None, deadline: Deadline) -> Lookup:
    resolver = make_resolver(nameservers, timeout=min(5.0, deadline.remaining()))
    return Lookup(resolver, deadline)


def _ask_both(host: str, nameservers: list[Nameserver] | None,
              deadline: Deadline) -> tuple[dict[int, list[str] | Exception], float]:
    """A and AAAA at once; returns (the answers, the grace given to the slower family) when
    both answered, or the grace after the first addresses ran out, or the deadline passed.
    The threads are daemons: one still waiting is dropped."""
    answers: dict[int, list[str] | Exception] = {}
    done = threading.Condition()

    def ask(fam: int) -> None:
        answer: list[str] | Exception
        try:
            answer = resolve_target(host, _lookup(nameservers, deadline), fam)
        except Exception as exc:  # handed to the caller, which knows what each one means
            answer = exc
        with done:
            answers[fam] = answer
            done.notify_all()

    for fam in (4, 6):
        threading.Thread(target=ask, args=(fam,), name=f"resolve-{host}-{fam}",
                         daemon=True).start()
    grace = 0.0
    with done:
        give_up = deadline.expires + 0.1  # the look-ups end by the deadline themselves
        while len(answers) < 2:
            if not grace and any(isinstance(a, list) and a for a in answers.values()):
                grace = min(GRACE, deadline.remaining() / 4)
                give_up = min(give_up, time.monotonic() + grace)
            left = give_up - time.monotonic()
            if left <= 0:
                break
            done.wait(left)
        return dict(answers), grace


def _unique(addresses: list[str]) -> list[str]:
    """Each address once (an IPv4-mapped IPv6 address is its IPv4 address), IPv4 first, in
    numeric order: DNS answers come in any order, runs should not."""
    unique: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for text in addresses:
        ip = ipaddress.ip_address(text)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        unique.add(ip)
    return [str(ip) for ip in sorted(unique, key=lambda ip: (ip.version, int(ip)))]


@dataclass
class PTRName:
    """The PTR name of an address for the ``helo-ptr-name`` attempt: the name, or why there is
    none (``missing``: nothing to try) or the look-up failed (``failure``: not judged)."""

    name: str = ""
    missing: str = ""
    failure: str = ""


def ptr_name(address: str, nameservers: list[Nameserver] | None,
             deadline: Deadline) -> PTRName:
    """The first PTR name of ``address`` (in name order)."""
    try:
        names = sorted(_lookup(nameservers, deadline).ptr(address))
    except (DNSFailure, BudgetExhausted) as exc:
        return PTRName(failure=f"PTR look-up of {address} failed: {exc}")
    if not names:
        return PTRName(missing=f"{address} has no PTR name")
    try:
        return PTRName(name=check_domain(names[0], "PTR name"))
    except AddressError:
        return PTRName(missing=f"the PTR name of {address} is not a host name")
