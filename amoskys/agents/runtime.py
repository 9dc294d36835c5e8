"""The agent runtime: collect every interval, seal into the outbox, drain the outbox to the bus.

Two threads. The caller's thread collects on a fixed schedule and seals each batch
(at most ``batch_max_events`` events) into the durable outbox; it never talks to the
bus, so collection goes on at its pace while the bus is away. A drain thread sends the
outbox oldest first, one envelope at a time, and acts on each ack:

- ``OK``: stored (or a duplicate of something stored): deleted from the outbox.
- ``RETRY``: the bus is busy: the same envelope again after ``retry_after_ms`` plus up
  to 25% jitter.
- ``INVALID`` with reason ``stale``: the envelope was sealed too long ago (a long
  outage). Its events are still good, so the whole backlog is re-sealed in order with
  fresh timestamps and new sequence numbers (a stale envelope was never stored, so no
  event is stored twice), then sent. If a *fresh* envelope is called stale, the clocks
  of agent and bus disagree: that is logged and the envelope kept, with backoff.
- ``UNAUTHORIZED`` with reason ``unknown_key`` or ``identity_mismatch``: the bus does not
  know this agent (yet), or its certificate names another agent. That is set-up, and
  once fixed the same signed envelope is accepted, so it is kept, with backoff, and
  logged once.
- any other ``INVALID`` or ``UNAUTHORIZED`` (``bad_signature``, ``replayed``,
  ``oversized``, ...): it will never be accepted: counted under ``rejected:<reason>``
  in the outbox's counters, logged once per reason, deleted.
- ``TransportError`` (bus unreachable): kept; exponential backoff with jitter
  (``backoff_initial_s`` doubling up to ``backoff_max_s``). The log says when the bus
  goes away and comes back, with what is buffered.

A collector that raises is logged (once per kind of error) and tried again the next
interval; a failure while sending is logged and retried with backoff: neither loop ends
on its own. ``stop()`` (or SIGINT in the CLI) ends both; what is queued stays in the
outbox for the next start.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections import Counter
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from amoskys.agents.outbox import Outbox, Queued
from amoskys.bus import bus_pb2
from amoskys.bus.signing import seal
from amoskys.errors import TransportError
from amoskys.telemetry.telemetry_pb2 import Envelope, Event, EventBatch

log = logging.getLogger("amoskys.agents")

STALE_REASON = "stale"
SETUP_REASONS = frozenset({"unknown_key", "identity_mismatch"})  # fixable on the bus's side: keep the envelope
CLOCK_SKEW_GUARD_S = 60.0  # an envelope sealed this recently cannot honestly be stale: the clocks disagree
DRAIN_BATCH = 32  # envelopes read from the outbox at a time


class Collector(Protocol):
    name: str

    def collect(self) -> list[Event]: ...

    def close(self) -> None: ...


class Sender(Protocol):
    def publish(self, envelope: Envelope) -> bus_pb2.Ack: ...


class Backoff:
    """Exponential backoff with jitter: each delay doubles up to ``maximum``, then is drawn
    from [half of it, all of it], so agents that lost the bus together do not return together."""

    def __init__(self, initial: float, maximum: float, rng: random.Random):
        self.initial, self.maximum, self.rng = initial, maximum, rng
        self.failures = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * 2**self.failures)
        self.failures = min(self.failures + 1, 32)
        return delay * self.rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


class AgentRuntime:
    """One agent: ``collector`` read every ``interval_s``, batches sealed with ``signing_key`` as
    ``agent_id`` into ``outbox``, sent through ``sender`` (``BusClient`` in production)."""

    def __init__(self, collector: Collector, sender: Sender, signing_key: Ed25519PrivateKey, agent_id: str,
                 outbox: Outbox, interval_s: float, batch_max_events: int, *, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 30.0, status_every_s: float = 60.0,
                 clock_skew_guard_s: float = CLOCK_SKEW_GUARD_S, seed: int | None = None):  # fmt: skip
        self.collector = collector
        self.sender = sender
        self.signing_key = signing_key
        self.agent_id = agent_id
        self.outbox = outbox
        self.interval_s = interval_s
        self.batch_max_events = max(1, batch_max_events)
        self.backoff = Backoff(backoff_initial_s, backoff_max_s, random.Random(seed))
        self.status_every_s = status_every_s
        self.clock_skew_guard_s = clock_skew_guard_s
        self.stats: Counter = Counter()  # this run's counts; the outbox keeps the persisted ones
        self.stop_event = threading.Event()
        self._wake = threading.Event()  # set when something was queued, or on stop
        self._rng = random.Random(seed)
        self._down_since: float | None = None
        self._last_status = 0.0
        self._logged_reasons: set[str] = set()

    # -- lifetime --------------------------------------------------------------------

    def run(self) -> None:
        """Collect and send until ``stop()``; blocks the calling thread."""
        drainer = threading.Thread(target=self._drain_loop, name=f"{self.agent_id}-drain", daemon=True)
        drainer.start()
        log.info("agent %s (%s) started: every %gs, %d envelopes already queued",
                 self.agent_id, self.collector.name, self.interval_s, len(self.outbox))  # fmt: skip
        try:
            self._collect_loop()
        finally:
            self.stop()
            drainer.join()
            self.collector.close()
            log.info("agent %s stopped: %d envelopes queued for the next start", self.agent_id, len(self.outbox))

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()

    # -- collecting ------------------------------------------------------------------

    def _collect_loop(self) -> None:
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            self.collect_once()
            next_at += self.interval_s
            now = time.monotonic()
            if next_at < now:  # collection overran: skip the missed ticks rather than burst
                next_at = now + self.interval_s - (now - next_at) % self.interval_s
            self.stop_event.wait(next_at - now)

    def collect_once(self) -> int:
        """One collection sealed into the outbox; returns the number of envelopes sealed."""
        try:
            events = self.collector.collect()
        except Exception as exc:  # a failed read must not end the agent; the next interval tries again
            self.stats["collect_errors"] += 1
            kind = type(exc).__name__
            self._log_once(f"collect:{kind}", logging.WARNING, "%s collector failed (%s: %s); it is tried again every "
                           "interval", self.collector.name, kind, exc, exc_info=not isinstance(exc, OSError))  # fmt: skip
            return 0
        sealed = 0
        for start in range(0, len(events), self.batch_max_events):
            chunk = events[start : start + self.batch_max_events]
            try:
                self.outbox.append(lambda seq: seal(chunk, self.agent_id, seq, self.signing_key), events=len(chunk))
            except sqlite3.Error as exc:  # disk full, say: these events are lost, the agent goes on
                self.stats["lost_outbox_error"] += len(chunk)
                self._log_once(f"outbox:{type(exc).__name__}", logging.ERROR, "cannot queue %d events in %s: %s",
                               len(chunk), self.outbox.path, exc)  # fmt: skip
                continue
            sealed += 1
        self.stats["sealed_envelopes"] += sealed
        self.stats["sealed_events"] += len(events)
        if sealed:
            self._wake.set()
        return sealed

    # -- draining --------------------------------------------------------------------

    def _drain_loop(self) -> None:
        while not self.stop_event.is_set():
            self._wake.clear()  # before peeking, so an append after the peek still wakes us
            queued = self.outbox.peek(DRAIN_BATCH)
            if not queued:
                self._wake.wait(1.0)
                continue
            try:
                for item in queued:
                    if self.stop_event.is_set() or not self._send(item):
                        break  # waited or re-sealed: read the outbox again
            except Exception as exc:  # a bug or a broken outbox must not silently end the sending
                self._log_once(f"drain:{type(exc).__name__}", logging.ERROR, "sending failed (%s: %s); retrying with "
                               "backoff", type(exc).__name__, exc, exc_info=True)  # fmt: skip
                self.stop_event.wait(self.backoff.next())

    def _send(self, item: Queued) -> bool:
        """Publish one envelope and act on the answer; False when the rest of the peeked batch must wait."""
        try:
            ack = self.sender.publish(item.envelope)
        except TransportError as exc:
            self._bus_unreachable(exc)
            self.stop_event.wait(self.backoff.next())
            return False
        self._bus_reachable()
        status = ack.status
        if status == bus_pb2.Ack.OK:
            self.outbox.delete(item.id)
            self.stats["sent_envelopes"] += 1
            self.stats["sent_events"] += item.events
            return True
        if status == bus_pb2.Ack.RETRY:
            self.stats["retries"] += 1
            self.stop_event.wait(max(ack.retry_after_ms, 1) / 1000 * self._rng.uniform(1.0, 1.25))
            return False
        if status == bus_pb2.Ack.INVALID and ack.reason.startswith(STALE_REASON):
            return self._stale(item)
        if status == bus_pb2.Ack.UNAUTHORIZED and ack.reason in SETUP_REASONS:
            self.stats[f"refused:{ack.reason}"] += 1
            self._log_once(f"setup:{ack.reason}", logging.ERROR, "bus refuses this agent (%s): check that its key and "
                           "certificate are registered with the bus; keeping the backlog and retrying", ack.reason)  # fmt: skip
            self.stop_event.wait(self.backoff.next())
            return False
        if status in (bus_pb2.Ack.INVALID, bus_pb2.Ack.UNAUTHORIZED):
            reason = ack.reason or "unspecified"
            self._log_once(f"rejected:{reason}", logging.ERROR, "bus refused envelope seq %d (%s, %s): its %d events "
                           "are dropped; further envelopes refused for this reason are only counted",
                           item.envelope.seq, bus_pb2.Ack.Status.Name(status), reason, item.events)  # fmt: skip
            self.outbox.count(f"rejected:{reason}", item.events)
            self.outbox.delete(item.id)
            self.stats[f"rejected:{reason}"] += item.events
            return True
        # An ack without a status is a bus bug; keep the envelope and ask again later.
        self._log_once("ack:unspecified", logging.ERROR, "bus answered seq %d without a status; retrying with backoff",
                       item.envelope.seq)  # fmt: skip
        self.stop_event.wait(self.backoff.next())
        return False

    def _stale(self, item: Queued) -> bool:
        age_s = (time.time_ns() - item.envelope.ts_ns) / 1e9
        if abs(age_s) < self.clock_skew_guard_s:
            self._log_once("stale:clock", logging.ERROR, "bus calls an envelope sealed %.1fs ago stale: the clocks of "
                           "this host and the bus disagree; keeping the backlog and retrying", age_s)  # fmt: skip
            self.stop_event.wait(self.backoff.next())
            return False
        resealed = self.outbox.reseal_all(self._reseal)
        self.stats["resealed_envelopes"] += resealed
        log.warning("bus calls envelopes sealed %.0fs ago stale: re-sealed the %d queued envelopes with fresh "
                    "timestamps and new sequence numbers", age_s, resealed)  # fmt: skip
        return False

    def _reseal(self, old: Envelope, seq: int) -> Envelope:
        """The same events in a new envelope: our own payload, so parsing it is safe."""
        return seal(EventBatch.FromString(old.payload).events, self.agent_id, seq, self.signing_key)

    # -- status ----------------------------------------------------------------------

    def _bus_unreachable(self, exc: TransportError) -> None:
        self.stats["transport_failures"] += 1
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = self._last_status = now
            log.warning("bus unreachable (%s); buffering on disk: %s", exc, self._buffered())
        elif now - self._last_status >= self.status_every_s:
            self._last_status = now
            log.warning("bus still unreachable after %.0fs; buffered: %s", now - self._down_since, self._buffered())

    def _bus_reachable(self) -> None:
        self.backoff.reset()
        if self._down_since is not None:
            log.info("bus back after %.1fs; draining %s", time.monotonic() - self._down_since, self._buffered())
            self._down_since = None

    def _buffered(self) -> str:
        dropped = self.outbox.counters().get("dropped_outbox_full", 0)
        text = f"{len(self.outbox)} envelopes, {self.outbox.size_bytes} bytes in {self.outbox.path}"
        return text + (f", {dropped} events dropped so far because the outbox was full" if dropped else "")

    def _log_once(self, key: str, level: int, message: str, *args, exc_info: bool = False) -> None:
        if key not in self._logged_reasons:
            self._logged_reasons.add(key)
            log.log(level, message, *args, exc_info=exc_info)
