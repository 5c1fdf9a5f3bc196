"""Which addresses can be a mail server (mailprobe.net.addresses)."""

from __future__ import annotations

import pytest

from mailprobe.net.addresses import unusable_reason


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "0.1.2.3", "224.0.0.1", "239.1.1.1",
                                     "ff02::1", "255.255.255.255", "240.0.0.1",
                                     "::ffff:0.0.0.0", "::ffff:224.0.0.5"])
def test_not_a_mail_server(address: str) -> None:
    assert unusable_reason(address)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.25", "::1", "192.0.2.25",
                                     "10.1.2.3", "2001:db8::25", "::ffff:127.0.0.1", "1.2.3.4"])
def test_can_be_a_mail_server(address: str) -> None:
    assert unusable_reason(address) is None


def test_not_an_address_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        unusable_reason("mx.example.org")
