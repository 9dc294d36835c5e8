"""Replay protection: which envelopes are new, which are resends, which are replays.

Per agent the bus keeps its highest sequence number and, for the last ``window``
numbers below it, the idempotency key of each envelope it took. An envelope is

* ``NEW`` when its number is inside the window and not seen yet (and its timestamp is
  within ``max_skew`` of the bus clock, else ``STALE``);
* ``RESEND`` when it is one already taken (same number, same idempotency key), or its
  number is below the window but its idempotency key is in the store: an agent that
  lost an ack sends the same envelope again, and must get OK with the events counted
  duplicate (the store absorbs it by idempotency key, so nothing is stored twice);
* ``REPLAYED`` otherwise: a number seen with another key, or below the window and
  never stored.

The window of an agent is loaded from the store's envelopes the first time the agent
shows up after a start, so a restart (or kill -9) of the bus forgets nothing.

A resend skips the timestamp check on purpose: an agent draining its outbox after an
outage resends old envelopes, and answering "duplicate" for what is stored is safe.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import Callable

Loader = Callable[[str, int], list[tuple[int, bytes]]]  # (agent, window) -> its last (seq, key) pairs


class Verdict(enum.Enum):
    NEW = "new"
    RESEND = "resend"
    REPLAYED = "replayed"
    STALE = "stale"


@dataclass
class _AgentWindow:
    high: int = -1  # highest sequence number taken; -1: none yet
    seen: dict[int, bytes] = field(default_factory=dict)  # seq -> idempotency key, at least the last `window`


class ReplayGuard:
    """Thread-safe; ``load`` reads an agent's recent envelopes, ``is_stored`` looks an idempotency key up."""

    def __init__(self, window: int, max_skew_ns: int, load: Loader, is_stored: Callable[[bytes], bool]):
        self.window = max(1, window)
        self.max_skew_ns = max_skew_ns
        self._load = load
        self._is_stored = is_stored
        self._lock = threading.Lock()
        self._agents: dict[str, _AgentWindow] = {}

    def admit(self, agent: str, seq: int, key: bytes, ts_ns: int, now_ns: int) -> Verdict:
        """Classify an envelope whose signature verified; a NEW one is taken (see ``release``)."""
        with self._lock:
            state = self._agents.get(agent) or self._load_agent(agent)
            recorded = state.seen.get(seq)
            if recorded is None and seq > state.high - self.window:
                if abs(now_ns - ts_ns) > self.max_skew_ns:
                    return Verdict.STALE
                self._take(state, seq, key)
                return Verdict.NEW
            if recorded == key:
                return Verdict.RESEND
        # Below the window, or a number seen with another key: only what the store holds is a resend.
        return Verdict.RESEND if self._is_stored(key) else Verdict.REPLAYED

    def release(self, agent: str, seq: int, key: bytes) -> None:
        """Forget a NEW envelope the store did not take (it failed or the bus is closing): a resend may come."""
        with self._lock:
            state = self._agents.get(agent)
            if state is not None and state.seen.get(seq) == key:
                del state.seen[seq]

    def highest(self, agent: str) -> int:
        with self._lock:
            state = self._agents.get(agent)
            return -1 if state is None else state.high

    def _load_agent(self, agent: str) -> _AgentWindow:
        rows = self._load(agent, self.window)
        state = _AgentWindow(high=max((seq for seq, _ in rows), default=-1), seen=dict(rows))
        self._agents[agent] = state
        return state

    def _take(self, state: _AgentWindow, seq: int, key: bytes) -> None:
        state.seen[seq] = key
        if seq > state.high:
            state.high = seq
            if len(state.seen) > 2 * self.window:  # prune now and then, not on every envelope
                floor = state.high - self.window
                state.seen = {s: k for s, k in state.seen.items() if s > floor}
