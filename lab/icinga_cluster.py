"""Two real Icinga 2 daemons on loopback: a master and an outside satellite (distributed setup).

Each node is an :class:`~lab.icinga.Icinga2` with its own work directory (config, state, API
port), run as the unprivileged user (``nagios``), with

* certificates from ``icinga2 pki`` (one CA, a certificate per node, CN = its NodeName), in the
  node's ``DataDir/certs`` where the ApiListener looks for them;
* the contrib ``distributed/`` files (zones, API) and, on the master, a ``zones.d`` tree
  (``ZonesDir``) whose ``global-templates`` zone the satellite receives by config sync;
* the REST API of the master, read with :meth:`ClusterNode.api` (basic auth, the lab CA).

:func:`make_pki` makes the certificates; :class:`ClusterNode` is one daemon.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.icinga import Icinga2
from lab.process import LabError, require_binary

API_USER = "mailprobe-lab"
API_PASSWORD = "lab-only-password"


@dataclass(frozen=True)
class NodeCertificate:
    """A node's key and certificate, and the CA certificate that signed it."""

    name: str
    key: Path
    cert: Path
    ca: Path


def _run_as(user: str, argv: list[str], cwd: Path) -> None:
    account = pwd.getpwnam(user)
    prefix = [] if os.geteuid() == account.pw_uid else ["runuser", "-u", user, "--"]
    proc = subprocess.run([*prefix, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv[:3])} failed: {proc.stdout}{proc.stderr}")


def make_pki(directory: Path, names: Iterable[str], user: str) -> dict[str, NodeCertificate]:
    """A CA (``icinga2 pki new-ca``) and a signed certificate per node name, in ``directory``
    (owned by ``user``, who runs icinga2 and must read the keys)."""
    binary = require_binary("icinga2", "/usr/sbin/icinga2")
    account = pwd.getpwnam(user)
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, account.pw_uid, account.pw_gid)
    ca_data = directory / "ca-data"
    _run_as(user, [binary, "pki", "new-ca", f"-DDataDir={ca_data}"], directory)
    ca_cert = ca_data / "ca" / "ca.crt"
    certificates = {}
    for name in names:
        key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        _run_as(user, [binary, "pki", "new-cert", "--cn", name, "--key", str(key),
                       "--csr", str(csr)], directory)
        _run_as(user, [binary, "pki", "sign-csr", f"-DDataDir={ca_data}", "--csr", str(csr),
                       "--cert", str(cert)], directory)
        certificates[name] = NodeCertificate(name, key, cert, ca_cert)
    return certificates


def node_prelude(node_name: str, zone_name: str, constants: Mapping[str, str | int]) -> str:
    """What a node's icinga2.conf and constants.conf hold before the files under test."""
    consts = "".join(f"const {k} = {json.dumps(v)}\n" for k, v in constants.items())
    return (f'const NodeName = "{node_name}"\nconst ZoneName = "{zone_name}"\n'
            'const TicketSalt = ""\nconst PluginDir = "/usr/lib/nagios/plugins"\n'
            'const ManubulonPluginDir = PluginDir\nconst PluginContribDir = PluginDir\n'
            f"{consts}include <itl>\ninclude <plugins>\ninclude <plugins-contrib>\n")


class ClusterNode(Icinga2):
    """One node of a distributed setup: an :class:`Icinga2` with a NodeName, a zone, an API
    port, its certificate, and (on a config master) a zones.d tree."""

    def __init__(self, node_name: str, zone_name: str, api_port: int,
                 certificate: NodeCertificate, config_files: Iterable[Path | str],
                 constants: Mapping[str, str | int], *, user: str,
                 zones_d: Mapping[str, Iterable[Path | str]] | None = None,
                 zones_d_extra: Mapping[str, str] | None = None,
                 api_user: bool = False, defines: Mapping[str, str] | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        prelude = node_prelude(node_name, zone_name, constants)
        users = (f'object ApiUser "{API_USER}" {{ password = "{API_PASSWORD}"\n'
                 '  permissions = [ "*" ] }\n') if api_user else ""
        super().__init__(config_files, extra=users, defines=defines, user=user,
                         env=env, prelude=prelude)
        self.node_name = node_name
        self.api_port = api_port
        self.certificate = certificate
        self.zones_d = {zone: [Path(p) for p in files] for zone, files in (zones_d or {}).items()}
        self.zones_d_extra = dict(zones_d_extra or {})
        self.defines["ZonesDir"] = str(self.work / "zones.d")
        # the contrib api.conf defines the ApiListener: bind it to loopback and our port
        self.defines["ApiBindHost"] = "127.0.0.1"
        self.defines["ApiBindPort"] = str(api_port)

    def _prepare(self, features: bool) -> None:
        """The zones.d tree and the certificates, then the usual preparation (ownership)."""
        for zone in set(self.zones_d) | set(self.zones_d_extra):
            target = self.work / "zones.d" / zone
            target.mkdir(parents=True, exist_ok=True)
            for path in self.zones_d.get(zone, []):
                shutil.copy(path, target / path.name)
            if zone in self.zones_d_extra:
                (target / "lab.conf").write_text(self.zones_d_extra[zone])
        certs = self.work / "lib" / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.certificate.key, certs / f"{self.node_name}.key")
        shutil.copy(self.certificate.cert, certs / f"{self.node_name}.crt")
        shutil.copy(self.certificate.ca, certs / "ca.crt")
        (self.work / "lib" / "api").mkdir(exist_ok=True)
        super()._prepare(features)

    # the REST API --------------------------------------------------------------------------
    def api(self, method: str, path: str, body: object | None = None) -> dict:
        """One REST API call on this node (as the lab API user); the decoded JSON answer."""
        context = ssl.create_default_context(cafile=str(self.certificate.ca))
        context.check_hostname = False  # the certificate names the node, we dial 127.0.0.1
        token = base64.b64encode(f"{API_USER}:{API_PASSWORD}".encode()).decode()
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.api_port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Basic {token}", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as answer:
                result: dict = json.load(answer)
                return result
        except urllib.error.HTTPError as exc:
            raise LabError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from exc

    def wait_for_api(self, timeout: float = 30) -> None:
        until = time.monotonic() + timeout
        while True:
            try:
                self.api("GET", "/v1/status/ApiListener")
                return
            except (OSError, LabError):
                if time.monotonic() > until:
                    raise LabError(f"{self.node_name}: no API within {timeout:g}s:\n"
                                   f"{self.output()[-3000:]}") from None
                time.sleep(0.2)
