"""Where an address is, offline: country and network owner from bundled data, or the city and
coordinates from a MaxMind/DB-IP ``.mmdb`` file (``--geoip-db``).

* Bundled: geoip2fast ships MaxMind's GeoLite2 country and ASN data in its wheel (IPv4 and IPv6);
  loaded once per process (about 0.2 s), on the first public address.
* ``--geoip-db FILE.mmdb``: any MaxMind DB (GeoIP2/GeoLite2 City or Country, DB-IP lite City,
  an ASN database), read with maxminddb.

Every answer names its data source, the build date of the data and the attribution the data's
licence requires. Loopback, private and other non-public addresses have no location and say so;
nothing is ever looked up on the network.
"""

from __future__ import annotations

import datetime
import ipaddress
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

MAXMIND_ATTRIBUTION = ("This product includes GeoLite2 data created by MaxMind, available from "
                       "https://www.maxmind.com (licence CC BY-SA 4.0).")
DBIP_ATTRIBUTION = "IP geolocation by DB-IP, https://db-ip.com (licence CC BY 4.0)."
BUNDLED_FILE = "geoip2fast-asn-ipv6.dat.gz"  # country + ASN names, IPv4 and IPv6


class GeoIPError(Exception):
    """The database cannot be opened or read."""


@dataclass
class Location:
    """What the data says about one address (``scope`` != "public": no location at all)."""

    address: str
    scope: str = "public"  # public, loopback, private, link-local, multicast, reserved
    note: str = ""  # plain words for a non-public address or a miss
    country_code: str = ""
    country: str = ""
    city: str = ""
    asn: int | None = None
    as_name: str = ""
    network: str = ""
    latitude: float | None = None
    longitude: float | None = None
    source: str = ""
    built: str = ""  # build date of the data, YYYY-MM-DD
    attribution: str = ""

    @property
    def map_url(self) -> str:
        """An OpenStreetMap link to the coordinates ("" when they are not known)."""
        if self.latitude is None or self.longitude is None:
            return ""
        lat, lon = f"{self.latitude:.4f}", f"{self.longitude:.4f}"
        query = urllib.parse.urlencode({"mlat": lat, "mlon": lon})
        return f"https://www.openstreetmap.org/?{query}#map=10/{lat}/{lon}"

    def line(self) -> str:
        """``192.0.2.1: Paris, France (FR), AS64500 Example Net``, or the note."""
        if self.scope != "public" or not (self.country or self.as_name or self.city):
            return f"{self.address}: {self.note or 'no location in the data'}"
        place = ", ".join(p for p in (self.city, self.country) if p)
        if self.country_code and self.country:
            place += f" ({self.country_code})"
        owner = " ".join(p for p in (f"AS{self.asn}" if self.asn else "", self.as_name) if p)
        return f"{self.address}: " + "; ".join(p for p in (place, owner) if p)


def special_scope(address: str) -> tuple[str, str] | None:
    """(scope, note) for an address that has no location (loopback, private, ...), else None."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback", "a loopback address (this machine): it has no location"
    if ip.is_link_local:
        return "link-local", "a link-local address: it has no location"
    if ip.is_multicast:
        return "multicast", "a multicast address: it has no location"
    if ip.is_private:
        return "private", ("a private or reserved address (not routed on the Internet): "
                           "it has no location")
    if not ip.is_global:
        return "reserved", "not a public Internet address: it has no location"
    return None


class GeoDatabase(Protocol):
    def locate(self, address: str) -> Location: ...


def locate(address: str, database: GeoDatabase | None = None) -> Location:
    """Where ``address`` is: non-public addresses are answered without any data."""
    special = special_scope(address)
    if special is not None:
        scope, note = special
        return Location(address, scope=scope, note=note)
    return (database or bundled()).locate(address)


class BundledGeoIP:
    """geoip2fast's bundled GeoLite2 country + ASN data (no city, no coordinates)."""

    def __init__(self) -> None:
        self._geo: Any = None
        self._lock = threading.Lock()
        self.source = ""
        self.built = ""

    def _load(self) -> Any:
        with self._lock:
            if self._geo is None:
                try:
                    from geoip2fast import GeoIP2Fast
                    from geoip2fast import __version__ as version
                except ImportError as exc:
                    raise GeoIPError(f"geoip2fast is not installed: {exc}") from exc
                try:
                    geo = GeoIP2Fast(verbose=False, geoip2fast_data_file=BUNDLED_FILE)
                    info = geo.get_database_info()
                except Exception as exc:  # the package's own errors are plain Exceptions
                    raise GeoIPError(f"cannot load geoip2fast's data: {exc}") from exc
                self.source, self.built = _describe_bundled(str(info.get("source_info", "")),
                                                            str(version))
                self._geo = geo
            return self._geo

    def locate(self, address: str) -> Location:
        geo = self._load()
        found = geo.lookup(address)
        result = Location(address, source=self.source, built=self.built,
                          attribution=MAXMIND_ATTRIBUTION)
        code = getattr(found, "country_code", "") or ""
        if code and not code.startswith("-"):
            result.country_code = code
            result.country = getattr(found, "country_name", "") or ""
            result.network = getattr(found, "cidr", "") or ""
        result.as_name = getattr(found, "asn_name", "") or ""
        if not (result.country or result.as_name):
            result.note = "not in the bundled data"
        return result


def _describe_bundled(source_info: str, version: str) -> tuple[str, str]:
    """``MAXMIND:GeoLite2-CountryASN-IPv4IPv6-en-20240618`` -> (source, 2024-06-18)."""
    name = source_info.split(":", 1)[-1]
    built = ""
    stamp = name.rsplit("-", 1)[-1]
    if len(stamp) == 8 and stamp.isdigit():
        built = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:]}"
        name = name.rsplit("-", 2)[0]
    return f"{name or 'GeoLite2'} (MaxMind), bundled with geoip2fast {version}", built


class MMDBGeoIP:
    """A MaxMind DB file: GeoIP2/GeoLite2 City or Country, DB-IP lite, or an ASN database."""

    def __init__(self, path: str) -> None:
        try:
            import maxminddb
        except ImportError as exc:
            raise GeoIPError(f"maxminddb is not installed: {exc}") from exc
        try:
            self.reader = maxminddb.open_database(path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoIPError(f"cannot read {path}: {exc}") from exc
        meta = self.reader.metadata()
        description = meta.description.get("en") or next(iter(meta.description.values()), "")
        self.source = f"{meta.database_type}" + (f" ({description})" if description else "") \
            + f" from {path}"
        self.built = datetime.datetime.fromtimestamp(meta.build_epoch, datetime.UTC) \
            .strftime("%Y-%m-%d")
        self.attribution = _mmdb_attribution(f"{meta.database_type} {description}")

    def locate(self, address: str) -> Location:
        try:
            found, prefix = self.reader.get_with_prefix_len(address)
        except (ValueError, RuntimeError) as exc:  # RuntimeError: InvalidDatabaseError
            raise GeoIPError(f"cannot look up {address}: {exc}") from exc
        result = Location(address, source=self.source, built=self.built,
                          attribution=self.attribution)
        if not isinstance(found, dict):
            result.note = "not in the database"
            return result
        record: dict[str, Any] = dict(found)
        result.network = f"{ipaddress.ip_network((address, prefix), strict=False)}"
        country = record.get("country") or record.get("registered_country") or {}
        result.country_code = str(country.get("iso_code", ""))
        result.country = _name(country)
        result.city = _name(record.get("city") or {})
        location = record.get("location") or {}
        lat, lon = location.get("latitude"), location.get("longitude")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            result.latitude, result.longitude = float(lat), float(lon)
        asn = record.get("autonomous_system_number")
        result.asn = asn if isinstance(asn, int) else None
        result.as_name = str(record.get("autonomous_system_organization", ""))
        return result


def _name(part: Any) -> str:
    names = part.get("names") if isinstance(part, dict) else None
    if isinstance(names, dict):
        return str(names.get("en") or next(iter(names.values()), ""))
    return ""


def _mmdb_attribution(what: str) -> str:
    lowered = what.lower()
    if "db-ip" in lowered or "dbip" in lowered:
        return DBIP_ATTRIBUTION
    if "geolite" in lowered:
        return MAXMIND_ATTRIBUTION
    if "geoip2" in lowered:
        return "GeoIP2 data by MaxMind, https://www.maxmind.com (under your MaxMind licence)."
    return "see the licence of this database for the attribution it requires"


_BUNDLED: BundledGeoIP | None = None
_BUNDLED_LOCK = threading.Lock()


def bundled() -> BundledGeoIP:
    """The one bundled database of the process (its data is loaded on first use)."""
    global _BUNDLED
    with _BUNDLED_LOCK:
        if _BUNDLED is None:
            _BUNDLED = BundledGeoIP()
        return _BUNDLED
