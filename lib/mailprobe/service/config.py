"""The service's TOML configuration: ``[service]``, ``[limits]``, ``[[site]]``, ``[[booking]]``."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from mailprobe.service.schedule import Schedule, ScheduleError
from mailprobe.tomlfile import read_toml


class ConfigError(Exception):
    """The configuration file is missing, unreadable or wrong."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(value: object, what: str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"12h"``, ``"2d"``; ConfigError otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a duration such as \"30m\", \"12h\" or \"2d\"")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(f"{what}: {value!r} is not a duration (e.g. \"30m\", \"12h\")")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{what}: must be more than 0")
    return seconds


@dataclass
class Site:
    """One organisation: the networks it may have tested, who may ask, whom to copy."""

    name: str
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    requesters: list[str]
    postmaster: str
    mail_domain: str = ""             # the mailers' own domain (control recipient postmaster@)

    def contains(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip.version == net.version and ip in net for net in self.networks)


@dataclass
class Booking:
    """A regular test the service starts itself (``[[booking]]``)."""

    name: str
    site: str
    addresses: list[str]
    schedule: Schedule
    requester: str                    # named in the report as who asked (default: the site's
                                      # postmaster)


@dataclass
class Limits:
    """Rate limits: per requester (requests) and per tested address (tests), in ``window``."""

    requests_per_requester: int = 10
    tests_per_address: int = 4
    window: float = 86400.0
    addresses_per_request: int = 32


@dataclass
class Settings:
    address: str
    smarthost: str
    state_dir: Path
    port: int = 25
    source_address: str = ""
    source_address6: str = ""         # the IPv6 vantage point (source_address may be IPv4)
    authserv_id: str = ""
    nameserver: str = ""
    dnsbl_nameserver: str = ""
    dnsbl_zones: list[str] = field(default_factory=list)   # empty: the curated default set
    helo: str = ""
    external_domain: str = "example.net"
    external_user: str = "relaytest"
    depth: str = "data"
    smarthost_tls: str = "opportunistic"
    html: bool = False
    max_parallel: int = 4
    poll_interval: float = 30.0
    try_timeout: float = 900.0
    command_timeout: float = 120.0
    retry_initial: float = 300.0
    retry_max: float = 3600.0
    unreachable_window: float = 2 * 86400.0
    tempfail_window: float = 12 * 3600.0
    requeue_interval: float = 1800.0
    progress_after: float = 4 * 3600.0
    limits: Limits = field(default_factory=Limits)
    sites: list[Site] = field(default_factory=list)
    bookings: list[Booking] = field(default_factory=list)

    @property
    def service_domain(self) -> str:
        return self.address.rpartition("@")[2]

    @property
    def database(self) -> Path:
        return self.state_dir / "relaytest.sqlite"

    def smarthost_address(self) -> tuple[str, int]:
        host, port = split_host_port(self.smarthost, 25)
        return host, port

    def source_for(self, address: str) -> str:
        """The vantage point for a mailer of ``address``'s family ('' = the system's choice)."""
        version = ipaddress.ip_address(address).version
        for source in (self.source_address, self.source_address6):
            if source and ipaddress.ip_address(source).version == version:
                return source
        return ""

    def site_named(self, name: str) -> Site | None:
        return next((s for s in self.sites if s.name == name), None)


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port); ConfigError when malformed."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host or (port_text and not port_text.isdigit()):
        raise ConfigError(f"{text!r} is not HOST[:PORT]")
    return host, int(port_text) if port_text else default_port


_SERVICE_KEYS = {
    "address", "smarthost", "state_dir", "port", "source_address", "source_address6",
    "authserv_id", "nameserver",
    "dnsbl_nameserver", "dnsbl_zones", "helo", "external_domain", "external_user", "depth",
    "smarthost_tls", "html", "max_parallel", "poll_interval", "try_timeout", "command_timeout",
    "retry_initial", "retry_max", "unreachable_window", "tempfail_window", "requeue_interval",
    "progress_after",
}
_DURATIONS = {"poll_interval", "try_timeout", "command_timeout", "retry_initial", "retry_max",
              "unreachable_window", "tempfail_window", "requeue_interval", "progress_after"}
_MAILBOX = re.compile(r"^[^@\s<>\"]+@[A-Za-z0-9.-]+\Z")


def _mailbox(value: object, what: str) -> str:
    text = str(value).strip()
    if not _MAILBOX.match(text):
        raise ConfigError(f"{what}: {value!r} is not a mail address")
    return text


def _strings(value: object, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{what}: expected a list of strings")


def _unknown(table: dict[str, object], known: set[str], what: str) -> None:
    extra = set(table) - known
    if extra:
        raise ConfigError(f"{what}: unknown setting(s): {', '.join(sorted(extra))}")


def _site(raw: object, number: int) -> Site:
    what = f"site #{number}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{what}: expected a table")
    _unknown(raw, {"name", "networks", "requesters", "postmaster", "mail_domain"}, what)
    for key in ("name", "networks", "requesters", "postmaster"):
        if key not in raw:
            raise ConfigError(f"{what}: {key} is not set")
    networks = []
    for text in _strings(raw["networks"], f"{what}.networks"):
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise ConfigError(f"{what}.networks: {exc}") from exc
    if not networks:
        raise ConfigError(f"{what}: networks is empty")
    requesters = [r.strip().lower() for r in _strings(raw["requesters"], f"{what}.requesters")]
    for pattern in requesters:
        if "@" not in pattern:
            raise ConfigError(f"{what}.requesters: {pattern!r} is not an address or *@domain")
    return Site(str(raw["name"]), networks, requesters,
                _mailbox(raw["postmaster"], f"{what}.postmaster"),
                str(raw.get("mail_domain", "")).strip().lower())


def _booking(raw: object, number: int, sites: list[Site]) -> Booking:
    what = f"booking #{number}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{what}: expected a table")
    _unknown(raw, {"name", "site", "addresses", "schedule", "requester"}, what)
    for key in ("site", "addresses", "schedule"):
        if key not in raw:
            raise ConfigError(f"{what}: {key} is not set")
    site = next((s for s in sites if s.name == raw["site"]), None)
    if site is None:
        raise ConfigError(f"{what}: no [[site]] named {raw['site']!r}")
    addresses = _strings(raw["addresses"], f"{what}.addresses")
    for address in addresses:
        try:
            inside = site.contains(address)
        except ValueError as exc:
            raise ConfigError(f"{what}.addresses: {address!r} is not an IP address") from exc
        if not inside:
            raise ConfigError(f"{what}.addresses: {address} is outside the networks of "
                              f"{site.name}")
    try:
        schedule = Schedule.parse(str(raw["schedule"]))
    except ScheduleError as exc:
        raise ConfigError(f"{what}.schedule: {exc}") from exc
    return Booking(str(raw.get("name", f"booking-{number}")), site.name, addresses, schedule,
                   _mailbox(raw.get("requester", site.postmaster), f"{what}.requester"))


def parse_config(data: dict[str, object]) -> Settings:
    _unknown(data, {"service", "limits", "site", "booking"}, "configuration")
    service = data.get("service")
    if not isinstance(service, dict):
        raise ConfigError("no [service] table")
    _unknown(service, _SERVICE_KEYS, "[service]")
    for key in ("address", "smarthost", "state_dir"):
        if key not in service:
            raise ConfigError(f"[service] {key} is not set")
    values: dict[str, object] = {}
    for key, value in service.items():
        what = f"[service] {key}"
        if key in _DURATIONS:
            values[key] = duration(value, what)
        elif key in ("port", "max_parallel"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1 \
                    or (key == "port" and value > 65535):
                raise ConfigError(f"{what}: expected a positive whole number")
            values[key] = value
        elif key == "html":
            if not isinstance(value, bool):
                raise ConfigError(f"{what}: expected true or false")
            values[key] = value
        elif key == "dnsbl_zones":
            values[key] = _strings(value, what)
        elif key == "state_dir":
            values[key] = Path(str(value))
        else:
            values[key] = str(value).strip()
    values["address"] = _mailbox(values["address"], "[service] address")
    split_host_port(str(values["smarthost"]), 25)
    if values.get("depth", "data") not in ("rcpt", "data"):
        raise ConfigError("[service] depth: rcpt or data (delivery proof is not available yet)")
    if values.get("smarthost_tls", "opportunistic") not in ("opportunistic", "verify", "never"):
        raise ConfigError("[service] smarthost_tls: opportunistic, verify or never")
    for key in ("nameserver", "dnsbl_nameserver"):
        if values.get(key):
            from mailprobe.net.dns import Nameserver

            try:
                Nameserver.parse(str(values[key]))
            except ValueError as exc:
                raise ConfigError(f"[service] {key}: {exc}") from exc
    for key in ("source_address", "source_address6"):
        if values.get(key):
            try:
                ip = ipaddress.ip_address(str(values[key]))
            except ValueError as exc:
                raise ConfigError(f"[service] {key}: not an IP address") from exc
            if key == "source_address6" and ip.version != 6:
                raise ConfigError("[service] source_address6: not an IPv6 address")
    settings = Settings(**values)  # type: ignore[arg-type]
    limits = data.get("limits", {})
    if not isinstance(limits, dict):
        raise ConfigError("[limits]: expected a table")
    _unknown(limits, {"requests_per_requester", "tests_per_address", "window",
                      "addresses_per_request"}, "[limits]")
    settings.limits = Limits(
        requests_per_requester=_count(limits, "requests_per_requester", 10),
        tests_per_address=_count(limits, "tests_per_address", 4),
        window=duration(limits.get("window", "1d"), "[limits] window"),
        addresses_per_request=_count(limits, "addresses_per_request", 32),
    )
    raw_sites = data.get("site", [])
    if not isinstance(raw_sites, list) or not raw_sites:
        raise ConfigError("no [[site]]: nothing could ever be tested")
    settings.sites = [_site(raw, n) for n, raw in enumerate(raw_sites, 1)]
    names = [s.name for s in settings.sites]
    if len(set(names)) != len(names):
        raise ConfigError("two [[site]] tables with the same name")
    raw_bookings = data.get("booking", [])
    if not isinstance(raw_bookings, list):
        raise ConfigError("[[booking]]: expected an array of tables")
    settings.bookings = [_booking(raw, n, settings.sites) for n, raw in enumerate(raw_bookings, 1)]
    if len({b.name for b in settings.bookings}) != len(settings.bookings):
        raise ConfigError("two [[booking]] tables with the same name")
    return settings


def _count(table: dict[str, object], key: str, default: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"[limits] {key}: expected a positive whole number")
    return value


def load_config(path: Path) -> Settings:
    return parse_config(read_toml(path, ConfigError))
