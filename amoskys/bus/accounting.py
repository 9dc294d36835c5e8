"""Counting every envelope and every event the bus sees, live and persisted.

Envelopes are counted by ack status and reason (``ok``/``''``, ``invalid``/``replayed``,
``retry``/``overloaded`` ...); events by their one final outcome: ``stored``,
``duplicate``, ``rejected:<reason>`` (the store's schema checks) or ``dropped:<reason>``
(the bus refused the whole envelope after parsing it, e.g. replayed or stale). An
envelope refused before its payload could be trusted (bad signature, unknown key,
oversized, malformed) has no event count: it is counted as an envelope only. Events
of an envelope answered RETRY are not counted: the agent keeps and resends them, and
their outcome is counted then.

The live counters (since the bus started) feed the Prometheus endpoint. The store
counts stored/duplicate/rejected events itself, in the transaction that writes them;
this module persists the rest (dropped events, envelopes by status) in writer jobs
that ride along with the store's group commits: at most one such job waits at a time,
and it takes whatever counts piled up when it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future

from amoskys.bus import ledger
from amoskys.errors import StoreError
from amoskys.store import Store

log = logging.getLogger(__name__)

LATENCY_WINDOW = 8192  # publish latencies kept for the quantiles: the most recent ones


class LatencySummary:
    """Publish-to-ack latencies: count and sum since start, quantiles over the last LATENCY_WINDOW."""

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.count = 0
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        self._recent.append(seconds)
        self.count += 1
        self.sum_s += seconds

    def quantiles(self, qs: tuple[float, ...]) -> dict[float, float]:
        recent = sorted(self._recent)
        if not recent:
            return {q: float("nan") for q in qs}
        return {q: recent[min(len(recent) - 1, int(q * len(recent)))] for q in qs}


class Accounting:
    def __init__(self, store: Store):
        self._store = store
        self._lock = threading.RLock()  # re-entered when a flush job fails before this thread lets go
        self.started = time.time()
        self.envelopes: Counter = Counter()  # (status, reason) -> envelopes since start
        self.events: Counter = Counter()  # outcome -> events since start
        self.latency = LatencySummary()
        self._unsaved_envelopes: Counter = Counter()
        self._unsaved_events: Counter = Counter()
        self._flush: Future | None = None  # the writer job that will persist the unsaved counts

    def count(self, status: str, reason: str, events: Counter | None = None, *, dropped: bool = False,
              latency_s: float | None = None) -> Future | None:  # fmt: skip
        """Count one answered envelope (and its events); the future resolves once the counts are durable.

        dropped: the events' outcomes are the bus's to persist (the store never saw them).
        """
        with self._lock:
            self.envelopes[(status, reason)] += 1
            self._unsaved_envelopes[(status, reason)] += 1
            if events:
                self.events.update(events)
                if dropped:
                    self._unsaved_events.update(events)
            if latency_s is not None:
                self.latency.observe(latency_s)
            return self._schedule_flush()

    def flush(self, timeout_s: float = 10.0) -> None:
        """Persist the counts not yet persisted, and wait for it."""
        with self._lock:
            future = self._schedule_flush() if (self._unsaved_envelopes or self._unsaved_events) else self._flush
        if future is not None:
            try:
                future.result(timeout_s)
            except Exception as exc:  # noqa: BLE001 - counts are worth a log line, not a crash
                log.error("could not persist the bus counters: %s", exc)

    def snapshot(self) -> tuple[Counter, Counter, dict[float, float], int, float]:
        """A consistent copy: envelopes, events, latency quantiles, latency count and sum."""
        with self._lock:
            quantiles = self.latency.quantiles((0.5, 0.9, 0.99))
            return Counter(self.envelopes), Counter(self.events), quantiles, self.latency.count, self.latency.sum_s

    def _schedule_flush(self) -> Future | None:
        """(Called holding the lock.) The writer job that will persist the counts piled up when it runs."""
        if self._flush is not None:
            return self._flush
        # What the job took out of the unsaved counts, kept until its transaction commits: the writer
        # may undo the transaction (another job failed) and run the job again, which writes them again.
        taken_envelopes, taken_events = Counter(), Counter()

        def write_unsaved(conn) -> None:
            with self._lock:
                taken_envelopes.update(self._unsaved_envelopes)
                taken_events.update(self._unsaved_events)
                self._unsaved_envelopes, self._unsaved_events, self._flush = Counter(), Counter(), None
            ledger.add_counts(conn, taken_envelopes, taken_events)

        def put_back_unless_durable(future: Future) -> None:
            if future.cancelled() or future.exception() is not None:
                with self._lock:  # for the next job
                    self._unsaved_envelopes.update(taken_envelopes)
                    self._unsaved_events.update(taken_events)

        try:
            self._flush = self._store.submit_job(write_unsaved)
        except StoreError:  # the store is closed: nothing more can be persisted
            return None
        self._flush.add_done_callback(put_back_unless_durable)
        return self._flush
