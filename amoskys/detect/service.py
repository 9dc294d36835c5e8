"""``amoskys detect``: the bus's stream in, threat levels, detections and alerts into the store.

One thread reads the bus's Subscribe stream (stored batches in commit order) into a
queue; the detection loop takes whatever is queued, at most every ``micro_batch_ms``,
and runs it through stage 1 (``canonical``), the stream features (``features``) and
the Score Junction (``junction``), then writes the detections and alert changes to the
store in one transaction (one disk sync per micro-batch). Rows older than the
detector's start are warm-up: they fill each host's windows but are not scored (they
were, or could have been, by an earlier run). A host silent for ``stale_seconds`` is marked stale: its open alert is
closed by the quiet period, and silence itself never raises one. With a retrain schedule
(``schedule``), a model set it promotes is swapped in between two micro-batches.
"""

from __future__ import annotations

import gc
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from amoskys.bus.client import BusClient
from amoskys.detect.canonical import COUNT_NAMES, StreamCanonical
from amoskys.detect.decode import snapshots_of
from amoskys.detect.features import StreamFeatures
from amoskys.detect.junction import Junction
from amoskys.detect.policy import OpenAlert
from amoskys.detect.schedule import RetrainSchedule
from amoskys.errors import ModelError, TransportError
from amoskys.store.alerts import Alert, Detection, write_scored
from amoskys.store.store import Store
from amoskys.telemetry.telemetry_pb2 import EventBatch
from amoskys.timeutil import now_ns

NS = 1_000_000_000


@dataclass
class DetectorCounts:
    batches: int = 0
    snapshots: int = 0  # processed (scored or warm-up)
    warmup_rows: int = 0
    scored_rows: int = 0
    alerts_opened: int = 0
    swaps: int = 0  # model sets swapped in by the retrain schedule
    canonical: dict = field(default_factory=dict)  # stage 1's counts (merged, out_of_order, ...)

    def line(self) -> str:
        late = self.canonical.get("out_of_order", 0)
        return (f"{self.snapshots:,} snapshots, {self.scored_rows:,} rows scored ({self.warmup_rows:,} warm-up), "
                f"{self.alerts_opened} alerts" + (f", {late} out of order skipped" if late else "")
                + (f", {self.swaps} model swaps" if self.swaps else ""))  # fmt: skip


class Detector:
    """The live path for one store: ``process`` is one micro-batch; ``run`` follows the bus."""

    def __init__(self, store: Store, canonical: StreamCanonical, features: StreamFeatures, junction: Junction,
                 stale_s: float = 30.0, started_ns: int | None = None):  # fmt: skip
        self.store = store
        self.canonical = canonical
        self.features = features
        self.junction = junction
        self.stale_s = stale_s
        self.started_ns = now_ns() if started_ns is None else started_ns
        self.counts = DetectorCounts()
        self.slots: dict[str, int] = {}
        self.host_names: list[str] = []  # by slot
        self.last_seen: dict[str, float] = {}  # host -> monotonic time of its last snapshot
        self._alert_ids: dict[int, int] = {}  # id(OpenAlert) -> its row in the store
        self.on_stored: Callable[[list[Detection]], None] | None = None  # told of each batch of detections stored
        self.retraining: RetrainSchedule | None = None  # polled between micro-batches by ``run``

    def process(self, batches: list[EventBatch]) -> int:
        """Score the snapshots of batches; returns how many rows were scored."""
        self.counts.batches += len(batches)
        scored = 0
        for group in snapshots_of(batches):
            slots = np.array([self._slot(host) for host in group.hosts], dtype=np.int64)
            rows = self.canonical.push(slots, group.ts_ns, self.canonical.raw_matrix(group.names, group.values))
            featured = self.features.push(rows, self.host_names)
            live = np.flatnonzero(featured.ts_ns >= self.started_ns)
            self.counts.warmup_rows += featured.height - len(live)
            featured = featured if len(live) == featured.height else featured[live]
            verdicts = self.junction.judge(featured)
            self._write(verdicts.detections, verdicts.alerts)
            scored += featured.height
            self.counts.snapshots += len(group.hosts)  # processed: what a caller waiting for the detector sees
        self.counts.scored_rows += scored
        self.counts.canonical = dict(zip(COUNT_NAMES, self.canonical.counts.tolist()))
        self._write([], self.junction.close_quiet(now_ns()))
        return scored

    def swap(self, live) -> None:
        """Score with live (a ``cli.LiveModel``) from the next micro-batch on: its stage 5 and model, both
        checked against the stream before either is used. Each host's windows and open alerts go on."""
        self.features.check_stage5(live.anomaly)
        self.junction.swap(live.model, live.entry_id, self.features.names)  # checks the model first
        self.features.use_stage5(live.anomaly)
        self.counts.swaps += 1

    def stale_hosts(self) -> list[str]:
        cutoff = time.monotonic() - self.stale_s
        return sorted(host for host, seen in self.last_seen.items() if seen < cutoff)

    def run(self, client: BusClient, stop: threading.Event, micro_batch_s: float, after_position: int = 0,
            on_progress=None) -> None:  # fmt: skip
        """Follow the bus from after_position until stop is set (or the bus goes away: TransportError)."""
        # Everything loaded so far (modules, models: ~250k objects) lives as long as the detector: out of the
        # collector's sight, a full collection no longer walks it, which cost micro-batches tens of ms.
        gc.freeze()
        inbox: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_read, args=(client, after_position, inbox), name="detect-reader", daemon=True)
        reader.start()
        try:
            with one_blas_thread():
                self._follow(inbox, stop, micro_batch_s, on_progress)
        finally:
            client.close()  # ends the Subscribe stream, and with it the reader
            if self.retraining is not None:
                self.retraining.close()

    def _follow(self, inbox: queue.Queue, stop: threading.Event, micro_batch_s: float, on_progress) -> None:
        while not stop.is_set():
            batches = _drain(inbox, micro_batch_s)
            if any(isinstance(b, Exception) for b in batches):
                raise next(b for b in batches if isinstance(b, Exception))
            if batches:
                self.process(batches)
            else:
                self._write([], self.junction.close_quiet(now_ns()))
            if self.retraining is not None:
                self._retrain_round()
            if on_progress is not None:
                on_progress(self)

    def _retrain_round(self) -> None:
        """Poll the schedule; swap in the set a finished round promoted (a set that does not fit: said, skipped)."""
        finished = self.retraining.poll()
        if finished is None or finished.promoted is None:
            return
        try:
            self.swap(finished.promoted)
        except ModelError as error:
            print(f"amoskys detect: keeping model {self.junction.model_set}: {error}", file=sys.stderr, flush=True)
            return
        print(f"amoskys detect: now scoring with model {self.junction.model_set}", flush=True)

    def _slot(self, host: str) -> int:
        self.last_seen[host] = time.monotonic()
        if (slot := self.slots.get(host)) is None:
            slot = self.slots[host] = len(self.slots)  # a new host: start tracking it
            self.host_names.append(host)
        return slot

    def _write(self, detections: list[Detection], alerts: list[OpenAlert]) -> None:
        """Store a micro-batch's detections and alert changes, in one transaction (one disk sync)."""
        if not detections and not alerts:
            return
        stored = [Alert(a.host, a.start_ns, a.end_ns, a.peak_score, a.level, a.status, a.details(),
                        id=self._alert_ids.get(id(a))) for a in alerts]  # fmt: skip
        for alert, alert_id in zip(alerts, write_scored(self.store, detections, stored)):
            if id(alert) not in self._alert_ids:
                self.counts.alerts_opened += 1
            self._alert_ids[id(alert)] = alert_id
            if alert.status == "closed":
                self._alert_ids.pop(id(alert))
        if detections and self.on_stored is not None:
            self.on_stored(detections)


def one_blas_thread():
    """A context in which BLAS (PCA's products) runs on one thread: on a micro-batch's small matrices a second
    thread gains no time and spins a core that the kernels, the bus and the agents need (``bench/live.py``:
    4.0k events per CPU-second with it spinning, 8.0k without)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _read(client: BusClient, after_position: int, inbox: queue.Queue) -> None:
    try:
        for stored in client.subscribe(after_position):
            inbox.put(stored.batch)
    except TransportError as error:
        inbox.put(error)
    except ValueError:
        pass  # the channel was closed under the stream: we are stopping


def _drain(inbox: queue.Queue, wait_s: float) -> list:
    """What is queued now, or what arrives within wait_s when nothing is."""
    try:
        items = [inbox.get(timeout=wait_s)]
    except queue.Empty:
        return []
    while True:
        try:
            items.append(inbox.get_nowait())
        except queue.Empty:
            return items


def warmup_position(store_path: Path, lookback_s: float) -> int:
    """The store position to follow the bus from: just before the first envelope received within lookback_s,
    so each host's windows are full again when scoring starts (0 when the store has none that recent)."""
    with Store.open(store_path, create=False) as store:
        since = now_ns() - int(lookback_s * NS)
        row = store.reader().execute("SELECT min(id) FROM envelopes WHERE received_ns >= ?", (since,)).fetchone()
        newest = store.reader().execute("SELECT max(id) FROM envelopes").fetchone()
    return int(row[0]) - 1 if row[0] is not None else int(newest[0] or 0)
