"""mailprobe relaytest: DKIM verification of requests with dkimpy, the keys served by a real
Knot on loopback and fetched through mailprobe's resolver (never the system's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lab.knot import KnotServer
from mailprobe.service.authn import authenticate, txt_lookup
from tests.fixtures.relaytest import SELECTOR, DkimKey, request_mail

KEY = DkimKey.generate()
OTHER_KEY = DkimKey.generate()


@pytest.fixture(scope="module")
def knot() -> Iterator[KnotServer]:
    zones = {
        "uni.test": f"{SELECTOR}._domainkey TXT {KEY.txt_record()}\n"
                    f"{SELECTOR}._domainkey.mail TXT {KEY.txt_record()}\n",
        "other.test": f"{SELECTOR}._domainkey TXT {OTHER_KEY.txt_record()}\n",
    }
    with KnotServer(zones) as server:
        yield server


def check(raw: bytes, knot: KnotServer, requester: str = "alice@uni.test",
          authserv_id: str = ""):  # type: ignore[no-untyped-def]
    return authenticate(raw, requester, authserv_id, txt_lookup(knot.nameserver, timeout=5))


def test_aligned_signature_verifies(knot: KnotServer) -> None:
    result = check(KEY.sign(request_mail("test 192.0.2.25\n"), "uni.test"), knot)
    assert result.ok and result.how == "DKIM signature of uni.test verified by the service"


def test_signature_of_a_subdomain_is_aligned(knot: KnotServer) -> None:
    result = check(KEY.sign(request_mail("test 192.0.2.25\n"), "mail.uni.test"), knot)
    assert result.ok and "mail.uni.test" in result.how


def test_valid_signature_of_another_domain_is_not_enough(knot: KnotServer) -> None:
    result = check(OTHER_KEY.sign(request_mail("test 192.0.2.25\n"), "other.test"), knot)
    assert not result.ok and not result.temporary
    assert result.reason == ("not authenticated: the valid signature of other.test is not "
                             "aligned with uni.test")


def test_tampered_body_does_not_verify(knot: KnotServer) -> None:
    raw = KEY.sign(request_mail("test 192.0.2.25\n"), "uni.test").replace(b"192.0.2.25",
                                                                          b"192.0.2.26")
    result = check(raw, knot)
    assert not result.ok and "the signature of uni.test does not verify (body hash mismatch)" \
        in result.reason


def test_signature_with_the_wrong_key_does_not_verify(knot: KnotServer) -> None:
    raw = OTHER_KEY.sign(request_mail("test 192.0.2.25\n"), "uni.test")
    result = check(raw, knot)
    assert not result.ok and not result.temporary
    assert "the signature of uni.test does not verify" in result.reason


def test_missing_key_is_a_refusal_not_a_temporary_failure(knot: KnotServer) -> None:
    raw = KEY.sign(request_mail("test 192.0.2.25\n"), "uni.test", selector="nosuch")
    result = check(raw, knot)
    assert not result.ok and not result.temporary


def test_unsigned_request_is_refused(knot: KnotServer) -> None:
    result = check(request_mail("test 192.0.2.25\n"), knot)
    assert not result.ok and "can be forged" in result.reason


def test_trusted_header_decides_without_dns(knot: KnotServer) -> None:
    headers = "Authentication-Results: mx.rt.test; dkim=fail header.d=uni.test\r\n"
    signed = KEY.sign(request_mail("test 192.0.2.25\n", headers=headers), "uni.test")
    result = check(signed, knot, authserv_id="mx.rt.test")
    assert not result.ok and "Authentication-Results of mx.rt.test" in result.reason
    assert check(signed, knot).ok           # without a trusted id the service checks itself


def test_dns_failure_is_temporary(silent_nameserver: str) -> None:
    raw = KEY.sign(request_mail("test 192.0.2.25\n"), "uni.test")
    result = authenticate(raw, "alice@uni.test", "", txt_lookup(silent_nameserver, timeout=1))
    assert not result.ok and result.temporary
    assert result.reason.startswith("DKIM key look-up failed: lab._domainkey.uni.test TXT")
