"""contrib/icinga/distributed: a master and an outside satellite, two real icinga2 daemons.

The master schedules the relay check of a lab Postfix open relay and of a closed one; the
satellite, which received the mailprobe CheckCommands from the master's global-templates zone
by config sync, executes them (command_endpoint) with the installed plugins, speaking from
127.0.0.2; the master's state, read over its REST API, is CRITICAL and OK with the perfdata.
Both daemons run as the nagios user with certificates made by ``icinga2 pki``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lab.icinga import icinga2_available
from lab.icinga_cluster import ClusterNode, make_pki
from lab.knot import KnotServer
from lab.process import LabError, free_port
from tests.conftest import ROOT
from tests.fixtures.installed import RUN_AS, InstalledTree
from tests.fixtures.postfix import OUTSIDE
from tests.test_icinga import LAB_ZONES

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not icinga2_available(), reason="icinga2 is not installed")]

CONTRIB = ROOT / "contrib" / "icinga"
DISTRIBUTED = CONTRIB / "distributed"
GLOBAL_TEMPLATES = [CONTRIB / name for name in
                    ("commands.conf", "timeperiods.conf", "services.conf")]
MASTER = "master.mailprobe.test"
SATELLITE = "outside.mailprobe.test"


def constants(satellite_port: int) -> dict[str, str | int]:
    """What a user writes in constants.conf of both nodes (see distributed/zones.conf)."""
    return {"MasterEndpoint": MASTER, "OutsideEndpoint": SATELLITE,
            "OutsideHost": "127.0.0.1", "OutsidePort": satellite_port}


def lab_mailer(name: str, port: int, nameserver: str) -> str:
    """A mailer on the master, its SMTP checks executed outside (dummy host check: no ping)."""
    return f"""
object Host "{name}" {{
  check_command = "dummy"
  address = "127.0.0.1"
  vars.mailer = true
  vars.mail_domain = "relaylab.test"
  vars.mail_port = {port}
  vars.mail_source_address = "{OUTSIDE}"
  vars.mailprobe_outside_endpoint = OutsideEndpoint
  vars.mail_nameserver = "{nameserver}"   // the lab's Knot: no check asks outside loopback
}}
"""


def test_both_configurations_validate(installed: InstalledTree) -> None:
    """``icinga2 daemon -C`` on the contrib files of each node, example mailer included."""
    certificates = make_pki(installed.workdir("pki-validate"), [MASTER, SATELLITE], RUN_AS)
    master = ClusterNode(
        MASTER, "master", 5665, certificates[MASTER],
        [DISTRIBUTED / "zones.conf", DISTRIBUTED / "master" / "api.conf"], constants(5665),
        user=RUN_AS, zones_d={
            "global-templates": [*GLOBAL_TEMPLATES, CONTRIB / "notifications.conf"],
            "master": [DISTRIBUTED / "master" / "zones.d" / "master" / "mailers.conf"]})
    satellite = ClusterNode(
        SATELLITE, "outside", 5665, certificates[SATELLITE],
        [DISTRIBUTED / "zones.conf", DISTRIBUTED / "outside" / "api.conf"], constants(5665),
        user=RUN_AS)
    for node, icinga in ((MASTER, master), (SATELLITE, satellite)):
        try:
            result = icinga.validate()
        finally:
            icinga.cleanup()
        assert result.ok, f"{node}:\n{result.output[-3000:]}"
        assert not result.errors


@dataclass
class Cluster:
    master: ClusterNode
    satellite: ClusterNode


@pytest.fixture(scope="module")
def cluster(installed: InstalledTree, postfix_open, postfix_closed,
            tmp_path_factory) -> Iterator[Cluster]:
    pki_dir = installed.workdir("pki")
    certificates = make_pki(pki_dir, [MASTER, SATELLITE], RUN_AS)
    master_port, satellite_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    consts = constants(satellite_port)
    dns = KnotServer(LAB_ZONES).start()  # the lab's zones (PTR of 127.0.0.1 for the HELO
    nameserver = dns.nameserver          # attempts): no DNS question leaves loopback
    satellite = ClusterNode(
        SATELLITE, "outside", satellite_port, certificates[SATELLITE],
        [DISTRIBUTED / "zones.conf", DISTRIBUTED / "outside" / "api.conf"], consts,
        user=RUN_AS, defines={"MailprobePluginDir": str(installed.plugin_dir)},
        env={"PATH": "/usr/bin:/bin"})
    master = ClusterNode(
        MASTER, "master", master_port, certificates[MASTER],
        [DISTRIBUTED / "zones.conf", DISTRIBUTED / "master" / "api.conf"], consts,
        user=RUN_AS, api_user=True,
        zones_d={"global-templates": GLOBAL_TEMPLATES},
        zones_d_extra={"master": lab_mailer("mx-open", postfix_open.port, nameserver)
                       + lab_mailer("mx-closed", postfix_closed.port, nameserver)},
        defines={"MailprobePluginDir": str(installed.plugin_dir)},
        env={"PATH": "/usr/bin:/bin"})
    try:
        satellite.start()
        master.start()
        master.wait_for_api()
        yield Cluster(master, satellite)
    finally:
        master.cleanup()
        satellite.cleanup()
        dns.stop()


def service(cluster: Cluster, host: str, name: str) -> dict:
    answer = cluster.master.api("GET", f"/v1/objects/services/{host}!{name}")
    attrs: dict = answer["results"][0]["attrs"]
    return attrs


def wait_for_result(cluster: Cluster, host: str, name: str, since: float,
                    timeout: float = 90) -> dict:
    """Force the check until a result newer than ``since`` is on the master; its attrs."""
    until = time.monotonic() + timeout
    next_force = 0.0
    while True:
        attrs = service(cluster, host, name)
        result = attrs.get("last_check_result") or {}
        # until the satellite has activated the synced global-templates zone (it restarts after
        # the sync), it answers "Check command 'open_relay' does not exist": not a result yet
        if result.get("execution_end", 0) > since and \
                "does not exist" not in result.get("output", ""):
            return attrs
        if time.monotonic() > next_force:
            # the satellite may still be restarting with the synced config: ask again
            cluster.master.api("POST", "/v1/actions/reschedule-check",
                               {"type": "Service", "filter": f'host.name=="{host}" && '
                                f'service.name=="{name}"', "force": True})
            next_force = time.monotonic() + 5
        if time.monotonic() > until:
            raise LabError(f"no result for {host}!{name} within {timeout:g}s: {result}\n"
                           f"master:\n{cluster.master.output()[-2500:]}\n"
                           f"satellite:\n{cluster.satellite.output()[-2500:]}")
        time.sleep(0.5)


def test_the_satellite_runs_the_relay_check_and_the_master_gets_the_state(
        cluster: Cluster) -> None:
    since = time.time()
    closed = wait_for_result(cluster, "mx-closed", "mail-open-relay", since)
    opened = wait_for_result(cluster, "mx-open", "mail-open-relay", since)
    for attrs in (closed, opened):
        result = attrs["last_check_result"]
        assert result["check_source"] == SATELLITE, result  # executed outside
        assert attrs["command_endpoint"] == SATELLITE
    assert (opened["state"], opened["last_check_result"]["output"].split(" - ")[0]) == \
        (2, "OPEN_RELAY CRITICAL"), opened["last_check_result"]["output"]
    assert (closed["state"], closed["last_check_result"]["output"].split(" - ")[0]) == \
        (0, "OPEN_RELAY OK"), closed["last_check_result"]["output"]
    perfdata = {str(p).split("=")[0].strip("'"): p
                for p in opened["last_check_result"]["performance_data"]}
    assert "relayed" in perfdata and "attempts" in perfdata
    assert str(perfdata["relayed"]).split("=")[1].split(";")[0] != "0"
    closed_perf = {str(p).split("=")[0].strip("'"): str(p).split("=")[1].split(";")[0]
                   for p in closed["last_check_result"]["performance_data"]}
    assert closed_perf["relayed"] == "0"


def test_the_satellite_received_the_commands_by_config_sync(cluster: Cluster) -> None:
    synced = cluster.satellite.work / "lib" / "api" / "zones" / "global-templates" / "_etc"
    assert (synced / "commands.conf").read_text() == (CONTRIB / "commands.conf").read_text()
    assert not (cluster.satellite.work / "lib" / "api" / "zones" / "master").exists()
