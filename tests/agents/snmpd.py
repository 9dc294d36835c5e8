"""A real net-snmp ``snmpd`` on 127.0.0.1 for the SNMP collector's tests, and the
``snmpget``/``snmpwalk`` command-line tools to check its answers against.

Everything the daemon reads or writes lives in one temporary folder: its config (``-C
-c``, so no system config is read), its log, its pid file and its persistent state
(``SNMP_PERSISTENT_DIR``, where ``createUser`` stores the v3 user's localized keys), so
it runs the same as root or not, and leaves nothing behind. ``MIBS``/``MIBDIRS`` point
at an empty folder: nothing here needs MIB files, and without them net-snmp would log
hundreds of lines about the ones Debian does not ship.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SNMPD = shutil.which("snmpd") or "/usr/sbin/snmpd"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0

CONF = """\
agentAddress udp:127.0.0.1:{port}
sysName {sys_name}
rocommunity {community} 127.0.0.1
createUser {user} SHA "{auth_key}" AES "{priv_key}"
rouser {user} priv
createUser {user}-auth SHA "{auth_key}"
rouser {user}-auth auth
# one log line per request otherwise
dontLogTCPWrappersConnects yes
"""


def installed() -> str | None:
    """None if snmpd and the snmp tools are here, else what is missing."""
    missing = [tool for tool, path in (("snmpd", SNMPD), ("snmpget", shutil.which("snmpget"))) if not path or
               not os.access(path, os.X_OK)]  # fmt: skip
    return None if not missing else f"{' and '.join(missing)} not installed (apt-get install -y snmpd snmp)"


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tool_env(home: Path) -> dict[str, str]:
    """Environment for snmpd and the tools: state, config and MIB search all in home."""
    empty = str(home / "none")
    return {**os.environ, "SNMP_PERSISTENT_DIR": str(home / "state"), "SNMPCONFPATH": empty, "MIBS": "",
            "MIBDIRS": empty}  # fmt: skip


@dataclass(frozen=True)
class Snmpd:
    port: int
    community: str
    user: str
    auth_key: str
    priv_key: str
    sys_name: str
    home: Path
    process: subprocess.Popen

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def auth_only_user(self) -> str:
        """A v3 user with the same auth key and no privacy key."""
        return f"{self.user}-auth"

    @property
    def env(self) -> dict[str, str]:
        return tool_env(self.home)

    def get(self, *oids: str, timeout_s: float = 1.0) -> dict[str, str]:
        """``snmpget -v2c``: OID (without the leading dot) -> value as printed, quotes removed."""
        return self._run("snmpget", *oids, timeout_s=timeout_s)

    def walk(self, oid: str) -> dict[str, str]:
        """``snmpwalk -v2c`` of a subtree, as ``get``."""
        return self._run("snmpwalk", oid)

    def _run(self, tool: str, *oids: str, timeout_s: float = 1.0) -> dict[str, str]:
        # -On numeric OIDs, -Oq "OID value", -Ot TimeTicks as a plain number, -Oe enums as numbers
        command = [tool, "-v2c", "-c", self.community, "-On", "-Oq", "-Ot", "-Oe", "-t", str(timeout_s), "-r", "1",
                   self.target, *oids]  # fmt: skip
        out = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=10, check=True).stdout
        values = {}
        for line in out.splitlines():
            oid, _, value = line.partition(" ")
            values[oid.lstrip(".")] = value.strip().strip('"')
        return values

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The daemon stopped (SIGSTOP) inside the block: it does not answer, as if unreachable."""
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)


@contextmanager
def running_snmpd(home: Path) -> Iterator[Snmpd]:
    """Start snmpd with a random community and v3 user in home; stop it on exit."""
    home.mkdir(parents=True, exist_ok=True)
    for folder in ("state", "none"):
        (home / folder).mkdir(exist_ok=True)
    for _ in range(3):  # the free port may be taken between choosing it and binding it
        daemon = _start(home)
        if _wait_until_answering(daemon):
            break
        _stop(daemon.process)
    else:
        log = (home / "snmpd.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"snmpd did not answer within {START_TIMEOUT_S}s; its log ends with:\n{log}")
    try:
        yield daemon
    finally:
        _stop(daemon.process)


def _start(home: Path) -> Snmpd:
    settings = dict(port=free_udp_port(), community=f"c{secrets.token_hex(8)}", user="amoskys",
                    auth_key=f"a{secrets.token_hex(8)}", priv_key=f"p{secrets.token_hex(8)}",
                    sys_name=f"snmpd-test-{secrets.token_hex(3)}")  # fmt: skip
    conf = home / "snmpd.conf"
    conf.write_text(CONF.format(**settings))
    # -f foreground (a child we can stop), -C -c only our config, -Lf log to a file, -p pid file,
    # -I -smux no SMUX listener (TCP port 199: root only, and shared by every snmpd on the machine)
    command = [SNMPD, "-f", "-C", "-c", str(conf), "-Lf", str(home / "snmpd.log"), "-p", str(home / "snmpd.pid"),
               "-I", "-smux"]  # fmt: skip
    process = subprocess.Popen(command, env=tool_env(home), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    return Snmpd(**settings, home=home, process=process)


def _wait_until_answering(daemon: Snmpd) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and daemon.process.poll() is None:
        try:
            if daemon.get("1.3.6.1.2.1.1.5.0", timeout_s=0.1):
                return True
        except subprocess.SubprocessError:
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)  # in case a test left it paused
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
