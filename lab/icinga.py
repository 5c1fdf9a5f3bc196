"""A real Icinga 2 (Debian's icinga2-bin) for tests: config validation and a daemon on loopback.

Nothing of the system's /etc/icinga2 or /var/lib/icinga2 is used: every path icinga2 writes to is
a ``-D`` define pointing into one temporary directory, owned by the user icinga2 runs as.
:meth:`Icinga2.validate` runs ``icinga2 daemon -C``; :meth:`Icinga2.start` runs the daemon in the
foreground (a child process) with three features of our own:

* an ``ExternalCommandListener`` (a named pipe) so a test can force a check *now*
  (:meth:`Icinga2.force_check`) instead of waiting for Icinga's randomised first schedule;
* a ``PerfdataWriter`` that writes one line per check result (state, output, perfdata) and
  rotates every second, read back by :meth:`Icinga2.results` / :meth:`Icinga2.wait_for`;
* the ``CheckerComponent`` (no API, no database, no notifications).

By default icinga2 runs as the current user (``-DRunAsUser``): as root here, because Debian's
``nagios`` user cannot read a virtualenv under /root. Pass ``user="nagios"`` to drop to it.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.process import LabError, ManagedProcess, require_binary

#: The path constants icinga2 2.13 takes from ``-D`` (each relative to the work directory).
PATH_DEFINES = {
    "DataDir": "lib",
    "LogDir": "log",
    "CacheDir": "cache",
    "SpoolDir": "spool",
    "InitRunDir": "run",
    "PidPath": "run/icinga2.pid",
    "VarsPath": "cache/icinga2.vars",
    "ObjectsPath": "cache/icinga2.debug",
    "StatePath": "lib/icinga2.state",
    "ModAttrPath": "lib/modified-attributes.conf",
}

#: What the main file needs beyond the configuration under test (the ITL, plugin paths).
PRELUDE = """\
const PluginDir = "/usr/lib/nagios/plugins"
const ManubulonPluginDir = "/usr/lib/nagios/plugins"
const PluginContribDir = "/usr/lib/nagios/plugins"
const NodeName = "mailprobe-lab"
const ZoneName = NodeName
const TicketSalt = ""
include <itl>
include <plugins>
include <plugins-contrib>
"""

FIELD_SEP = "\t"
RESULT_TEMPLATE = FIELD_SEP.join([
    "TIMET::$icinga.timet$", "HOSTNAME::$host.name$", "SERVICEDESC::$service.name$",
    "SERVICESTATE::$service.state$", "SERVICESTATEID::$service.state_id$",
    "SERVICECHECKCOMMAND::$service.check_command$", "SERVICEPERFDATA::$service.perfdata$",
    "SERVICEOUTPUT::$service.output$",   # last: Icinga keeps the long output's line breaks
])

FEATURES = """\
object CheckerComponent "checker" {{ }}
object ExternalCommandListener "command" {{ command_path = "{command_path}" }}
object PerfdataWriter "mailprobe-lab" {{
  service_perfdata_path = "{perfdata_dir}/service-perfdata"
  host_perfdata_path = "{perfdata_dir}/host-perfdata"
  service_temp_path = "{work}/spool/service-perfdata.tmp"
  host_temp_path = "{work}/spool/host-perfdata.tmp"
  service_format_template = "{template}"
  rotation_interval = 1s
}}
"""


@dataclass(frozen=True)
class CheckResult:
    """One service check result as Icinga recorded it."""

    host: str
    service: str
    state: str          # OK / WARNING / CRITICAL / UNKNOWN
    state_id: int
    command: str
    output: str         # the plugin output without perfdata (status line + long output)
    perfdata: str
    timestamp: int

    @property
    def status_line(self) -> str:
        return self.output.splitlines()[0] if self.output else ""

    @classmethod
    def parse(cls, record: str) -> CheckResult | None:
        """One PerfdataWriter record (the output may continue on further lines)."""
        head, _, tail = record.partition("SERVICEOUTPUT::")
        fields = dict(f.split("::", 1) for f in head.split(FIELD_SEP) if "::" in f)
        if "SERVICEDESC" not in fields:
            return None
        return cls(fields["HOSTNAME"], fields["SERVICEDESC"], fields["SERVICESTATE"],
                   int(fields["SERVICESTATEID"]), fields["SERVICECHECKCOMMAND"],
                   tail.rstrip("\n"), fields["SERVICEPERFDATA"], int(fields["TIMET"]))


def parse_records(text: str) -> list[CheckResult]:
    """Split a PerfdataWriter file into records (each starts with ``TIMET::``)."""
    records: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("TIMET::") or not records:
            records.append(line)
        else:
            records[-1] += line
    return [r for r in map(CheckResult.parse, records) if r is not None]


@dataclass
class Validation:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def errors(self) -> list[str]:
        return [line for line in self.output.splitlines() if "critical/" in line]

    def count(self, kind: str) -> int | None:
        """``Instantiated N <kind>`` from the validation log (None when absent)."""
        for line in self.output.splitlines():
            marker = "information/ConfigItem: Instantiated "
            if marker in line:
                number, _, name = line.split(marker, 1)[1].partition(" ")
                if name.rstrip(".") == kind:
                    return int(number)
        return None


class Icinga2:
    """``Icinga2(config_files, defines={...}).validate()`` or ``.start()`` ... ``.stop()``.

    ``config_files`` are included (in order) after :data:`PRELUDE` and ``extra`` (text, e.g.
    host objects) after them; ``defines`` become ``-DNAME=VALUE`` (constants such as
    ``MailprobePluginDir``); ``env`` is added to the daemon's environment (plugins inherit it).
    """

    def __init__(self, config_files: Iterable[Path | str] = (), extra: str = "",
                 defines: Mapping[str, str] | None = None, user: str | None = None,
                 env: Mapping[str, str] | None = None, prelude: str = PRELUDE) -> None:
        self.config_files = [Path(p).resolve() for p in config_files]
        self.extra = extra
        self.defines = dict(defines or {})
        self.user = user or pwd.getpwuid(os.geteuid()).pw_name
        self.env = dict(env or {})
        self.prelude = prelude
        self.process = ManagedProcess("icinga2")
        self.work = self.process.workdir
        self._read_files: set[str] = set()
        self._results: list[CheckResult] = []

    # configuration ------------------------------------------------------------------------
    @property
    def main_config(self) -> Path:
        return self.work / "icinga2.conf"

    @property
    def command_pipe(self) -> Path:
        return self.work / "run" / "cmd" / "icinga2.cmd"

    @property
    def perfdata_dir(self) -> Path:
        return self.work / "perfdata"

    def _prepare(self, features: bool) -> None:
        """What ``prepare-dirs`` does, in the work directory, for ``self.user``."""
        account = pwd.getpwnam(self.user)
        group = grp.getgrgid(account.pw_gid).gr_name
        self._group = group
        for sub in ("lib", "log", "cache", "spool", "run", "run/cmd", "perfdata"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        includes = "".join(f'include "{path}"\n' for path in self.config_files)
        text = self.prelude + includes + self.extra + "\n"
        if features:
            text += FEATURES.format(command_path=self.command_pipe, perfdata_dir=self.perfdata_dir,
                                    work=self.work, template=RESULT_TEMPLATE.replace("\t", "\\t"))
        self.main_config.write_text(text)
        for path in [self.work, *self.work.rglob("*")]:
            os.chown(path, account.pw_uid, account.pw_gid)
        self.work.chmod(0o755)

    def argv(self, *extra: str) -> list[str]:
        binary = require_binary("icinga2", "/usr/sbin/icinga2")
        defines = {name: str(self.work / rel) for name, rel in PATH_DEFINES.items()}
        defines.update(RunAsUser=self.user, RunAsGroup=self._group, **self.defines)
        return [binary, "daemon", "-c", str(self.main_config),
                *(f"-D{name}={value}" for name, value in defines.items()), *extra]

    def validate(self) -> Validation:
        """``icinga2 daemon -C``: the whole log and the exit code (0 valid, 1 invalid)."""
        self._prepare(features=False)
        proc = subprocess.run(self.argv("-C"), capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, env=self._environ())
        return Validation(proc.returncode, proc.stdout + proc.stderr)

    def _environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    # the daemon ---------------------------------------------------------------------------
    def start(self, timeout: float = 30) -> Icinga2:
        """Start the daemon in the foreground and wait until it accepts external commands."""
        self._prepare(features=True)
        self.process.spawn(self.argv(), env=self._environ())
        until = time.monotonic() + timeout
        while not self.command_pipe.exists():
            if self.process.proc is None or self.process.proc.poll() is not None \
                    or time.monotonic() > until:
                output = self.process.output()
                self.stop()
                raise LabError(f"icinga2 did not come up:\n{output[-4000:]}")
            time.sleep(0.05)
        return self

    def output(self) -> str:
        return self.process.output()

    def command(self, line: str) -> None:
        """Send one external command (``NAME;arg;...``; the timestamp is added)."""
        with open(self.command_pipe, "w") as pipe:
            pipe.write(f"[{int(time.time())}] {line}\n")

    def force_check(self, host: str, service: str) -> None:
        self.command(f"SCHEDULE_FORCED_SVC_CHECK;{host};{service};{int(time.time())}")

    def results(self) -> list[CheckResult]:
        """Every service check result written so far (rotated perfdata files, oldest first)."""
        for path in sorted(self.perfdata_dir.glob("service-perfdata.*")):
            if path.name in self._read_files:
                continue
            self._read_files.add(path.name)
            self._results.extend(parse_records(path.read_text(errors="replace")))
        return list(self._results)

    def latest(self) -> dict[tuple[str, str], CheckResult]:
        """(host, service) -> the newest result."""
        return {(r.host, r.service): r for r in self.results()}

    def wait_for(self, wanted: Iterable[tuple[str, str]], timeout: float = 60,
                 since: float = 0) -> dict[tuple[str, str], CheckResult]:
        """Wait until every (host, service) in ``wanted`` has a result newer than ``since``."""
        wanted = set(wanted)
        until = time.monotonic() + timeout
        while True:
            got = {key: r for key, r in self.latest().items()
                   if key in wanted and r.timestamp >= int(since)}
            if set(got) == wanted:
                return got
            if time.monotonic() > until or (self.process.proc is not None
                                            and self.process.proc.poll() is not None):
                missing = sorted(wanted - set(got))
                raise LabError(f"no icinga2 result for {missing} within {timeout:g}s:\n"
                               f"{self.output()[-4000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.stop()

    def cleanup(self) -> None:
        self.process.cleanup()

    def __enter__(self) -> Icinga2:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def icinga2_available() -> bool:
    return bool(shutil.which("icinga2") or os.access("/usr/sbin/icinga2", os.X_OK))
