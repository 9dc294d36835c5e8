"""The agents' Ed25519 public keys the bus trusts, reloaded without a restart.

Keys come from ``DIR/agents/*.ed25519.pub``. They are read again on SIGHUP
(``reload()``), and when an agent the bus does not know shows up, if the agents folder
changed since the last read (its mtime moved: ``amoskys certs add-agent`` creates
files there). Checking the mtime first keeps a stream of unknown agents from turning
into a stream of folder reads.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from amoskys.bus.certs import registered_keys
from amoskys.errors import ConfigError

log = logging.getLogger(__name__)


class KeyRing:
    def __init__(self, certs_dir: Path):
        self.certs_dir = Path(certs_dir)
        self._lock = threading.Lock()
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._folder_mtime_ns: int | None = None

    def reload(self) -> int:
        """Read every key again; a bad key file keeps the previous keys (and is logged). Returns how many keys."""
        with self._lock:
            return self._reload_locked()

    def get(self, agent: str) -> Ed25519PublicKey | None:
        """agent's key, reading the folder again first if agent is unknown and the folder changed."""
        key = self._keys.get(agent)
        if key is not None:
            return key
        with self._lock:
            if self._folder_mtime() != self._folder_mtime_ns:
                self._reload_locked()
            return self._keys.get(agent)

    def __len__(self) -> int:
        return len(self._keys)

    def _reload_locked(self) -> int:
        self._folder_mtime_ns = self._folder_mtime()  # also on failure: one log line per change, not per request
        try:
            self._keys = registered_keys(self.certs_dir)
        except ConfigError as exc:
            log.error("keeping the %d agent keys loaded before: %s", len(self._keys), exc)
        return len(self._keys)

    def _folder_mtime(self) -> int | None:
        try:
            return (self.certs_dir / "agents").stat().st_mtime_ns
        except OSError:
            return None
