"""Every batch feature, computed live: each host's new canonical rows, from its bounded history.

The batch pipeline's stages run here on the same compiled kernels, given each host's
kept rows followed by its new ones and told to compute the new rows only
(``emit_from``), so a live row gets the batch's values bit for bit (``tests/detect``
holds them equal):

- stage 2 (``temporal_kernel``) needs the rows of the longest window, and each host's
  EWMs at its last row (kept here);
- stage 3 is row by row (its formulas on arrays: ``cross_arrays``);
- stage 4, the security pack (``_security_kernel``), needs 300 s of its inputs, and the
  medians of two metrics over the hour before the row: kept sorted and updated row by
  row (``medians``), rather than re-sorted from an hour of kept rows;
- stage 5 (``AnomalyStage``, fitted on the training rows): its correlations need 2 × its
  window of its key metrics' robust z (a pair's reference reaches back up to a window
  before the window), kept as computed once per row; its entropies come from running
  pattern counts (``patterns``), kept per host and updated row by row; its correlations
  resume from each host's sums of the current block (``pearson``'s state), so only the
  earlier block's part is summed again.

So the history comes in three depths: the running medians' hour of the two baseline
metrics, stage 5's inputs and their robust z for 2 × 300 s (the inputs for a new stage
5's baselines: ``use_stage5``), the metrics stage 2 and the security pack read for 300 s
(plus a row); and the pattern counts and correlation sums: about 60 KiB per host on the
default 5 s grid. Only the security pack has a stream kernel yet; a configuration
enabling another pack is refused with a clear message.
"""

from __future__ import annotations

import math

import numpy as np

from amoskys.config import Config
from amoskys.detect.canonical import CanonicalRows
from amoskys.detect.history import History
from amoskys.detect.medians import RunningMedians
from amoskys.detect.patterns import RunningPatterns
from amoskys.errors import ConfigError, ModelError
from amoskys.models.rows import FeatureRows
from amoskys.pipeline import packs
from amoskys.pipeline.anomaly import AnomalyStage
from amoskys.pipeline.canonical import canonical_features
from amoskys.pipeline.cross import cross_arrays, cross_defs
from amoskys.pipeline.packs._security_kernel import BASELINE_S, INPUTS as SECURITY_INPUTS, LONG_S, security_arrays
from amoskys.pipeline.temporal import KEY_METRICS as TEMPORAL_METRICS, temporal_defs
from amoskys.pipeline.temporal_kernel import NO_EWM_STATE, temporal_arrays
from amoskys.pipeline.windowed import PEARSON_STATE

BASELINE_METRICS = ("net_tx_bytes_per_s", "process_forks_per_s")  # the security pack's hour-long medians
STREAM_PACKS = ("security",)


class StreamFeatures:
    def __init__(self, config: Config, anomaly: AnomalyStage, optional: tuple[str, ...] = ()):
        settings = config.pipeline
        if unsupported := [p for p in settings.packs if p not in STREAM_PACKS]:
            raise ConfigError(f"pack {unsupported[0]} has no live implementation yet: remove it from "
                              "pipeline.packs to detect live (the batch pipeline still computes it)")  # fmt: skip
        self.settings, self.anomaly, self.optional = settings, anomaly, optional
        self.canonical_names = [f.name for f in canonical_features(optional)]
        self._position = {name: i for i, name in enumerate(self.canonical_names)}
        self.temporal = temporal_defs(settings)
        self.cross = cross_defs(settings)
        self.security = "security" in settings.packs
        loaded = packs.load(settings.packs, config.packs)
        self.names = (*self.canonical_names, *(d.feature.name for d in self.temporal), *(d.feature.name for d in self.cross),
                      *(f.name for f in packs.declared(loaded)), *(f.name for f in anomaly.features()))  # fmt: skip
        self.index = {name: i for i, name in enumerate(self.names)}  # shared by every FeatureRows pushed
        step = settings.interval_seconds
        windows = max((*settings.windows_seconds, LONG_S if self.security else 0.0), default=0.0)
        # rows of history each depth keeps: its span on the grid, both ends, and one row before (exits, rates)
        recent = {*TEMPORAL_METRICS, *(SECURITY_INPUTS if self.security else ())}  # what the 300 s windows read
        self.recent = History([n for n in self.canonical_names if n in recent], _rows(windows, step) + 1)
        # stage 5's windows read its inputs' robust z (``robust_z``'s rows), kept rather than computed again at
        # every push; then the inputs, kept for a new stage 5's baselines (``use_stage5``), never assembled
        self._z_width = len(anomaly.inputs()) + 1
        self.stage5 = History([*(f"{m}:z" for m in anomaly.inputs()), "network:z", *anomaly.inputs()],
                              _rows(2 * anomaly.window_s, step))  # fmt: skip
        self._key = [anomaly.inputs().index(m) for m in anomaly.key_metrics]  # stage 5's inputs: the entropies'
        self.patterns = RunningPatterns(len(self._key), anomaly.entropy_scales, anomaly.window_ns(),
                                        _rows(anomaly.window_s, step) + 1)  # fmt: skip
        self.baselines = None
        if self.security:
            self.baselines = RunningMedians(len(BASELINE_METRICS), round(BASELINE_S * 1e9), _rows(BASELINE_S, step) + 1)
        self.lookback_s = max(windows, 2 * anomaly.window_s, BASELINE_S if self.security else 0.0) + step
        self._ewm = np.zeros((0, len(TEMPORAL_METRICS), len(settings.ewm_half_lives_seconds)))
        self._ewm_ns = np.empty(0, dtype=np.int64)
        # each host's stage-5 baseline (median, scale per input), looked up when the host is first seen
        self._stage5_baseline = np.full((0, 2, len(anomaly.inputs())), np.nan)
        self._pearson = np.zeros((0, anomaly.correlations(), PEARSON_STATE))  # each host's correlation sums

    def check_stage5(self, anomaly: AnomalyStage) -> None:
        """Refuse a stage 5 whose inputs, window or features are not the current one's (the kept rows and the
        declared names would not fit it)."""
        def shape(stage: AnomalyStage):
            return stage.inputs(), stage.window_s, [f.name for f in stage.features()]

        if shape(anomaly) != shape(self.anomaly):
            raise ModelError("the new model set's stage 5 has other inputs, window or features than the running "
                             "detector's: restart the detector to use it")  # fmt: skip

    def use_stage5(self, anomaly: AnomalyStage) -> None:
        """Compute stage 5 with anomaly (fitted on a new model set's training rows) from the next push on."""
        self.check_stage5(anomaly)
        self.anomaly = anomaly
        self._stage5_baseline[:] = np.nan  # each host's baseline, looked up again in the new stage (with its z)
        self._pearson[:] = 0.0  # sums of the old baselines' z: summed again from the kept rows

    def bytes_per_host(self) -> int:
        histories = (self.recent, self.stage5, self.baselines, self.patterns)
        per_host = (self._ewm, self._ewm_ns, self._stage5_baseline, self._pearson)  # a row per host, 8-byte values
        kept = sum(h.bytes_per_host() for h in histories if h is not None)
        return kept + sum(8 * int(np.prod(a.shape[1:])) for a in per_host)

    def push(self, rows: CanonicalRows, host_names: list[str]) -> FeatureRows:
        """Every feature of the new canonical rows, grouped by host, in time order per host."""
        order = np.argsort(rows.slots, kind="stable")
        slots, ts, values = rows.slots[order], rows.ts_ns[order], rows.values[order]
        hosts, first = np.unique(slots, return_index=True)
        new_starts = np.append(first, len(slots)).astype(np.int64)
        self._reserve(int(slots.max(initial=-1)) + 1)
        out = np.empty((len(self.names), len(slots)))
        if len(slots):
            recent = self._columns(values, self.recent.columns)
            window = self.recent.assemble(hosts, new_starts, ts, recent)  # what stage 2 and the pack read
            parts = [values.T, self._temporal(hosts, *window), cross_arrays(lambda n: values[:, self._position[n]]),
                     *([self._security(hosts, new_starts, ts, values, *window)] if self.security else []),
                     self._stage5(hosts, host_names, new_starts, ts, values)]  # fmt: skip
            self.recent.append(hosts, new_starts, ts, recent)
            np.concatenate(parts, out=out)  # (features, rows), in the order of names
        return FeatureRows(self.names, self.index, out, [host_names[h] for h in slots.tolist()], ts)

    def _reserve(self, hosts: int) -> None:
        for history in (self.recent, self.stage5, self.baselines, self.patterns):
            if history is not None:
                history.reserve(hosts)
        if hosts > len(self._ewm_ns):
            grow = hosts - len(self._ewm_ns)
            self._ewm = np.concatenate([self._ewm, np.zeros((grow, *self._ewm.shape[1:]))])
            self._ewm_ns = np.concatenate([self._ewm_ns, np.full(grow, NO_EWM_STATE, dtype=np.int64)])
            unseen = np.full((grow, *self._stage5_baseline.shape[1:]), np.nan)
            self._stage5_baseline = np.concatenate([self._stage5_baseline, unseen])
            self._pearson = np.concatenate([self._pearson, np.zeros((grow, *self._pearson.shape[1:]))])

    def _columns(self, values: np.ndarray, names) -> np.ndarray:
        return values[:, [self._position[n] for n in names]]

    def _recent_columns(self, recent: np.ndarray, names) -> list[np.ndarray]:
        return [recent[self.recent.columns.index(n)] for n in names]

    def _temporal(self, hosts, all_ts, recent, starts, emit) -> np.ndarray:
        metrics = self._recent_columns(recent, TEMPORAL_METRICS)
        settings = self.settings
        per_metric = temporal_arrays(all_ts, metrics, starts, settings.windows_seconds, settings.ewm_half_lives_seconds,
                                     emit, self._ewm[hosts], self._ewm_ns[hosts])  # fmt: skip
        newest = np.cumsum(starts[1:] - emit) - 1  # each host's newest row, as an output column: its EWMs go on
        if ewm_rows := len(self.settings.ewm_half_lives_seconds):
            self._ewm[hosts] = np.stack([metric[-ewm_rows:, newest].T for metric in per_metric], axis=1)
        self._ewm_ns[hosts] = all_ts[starts[1:] - 1]
        return np.concatenate(per_metric)  # (the temporal definitions, rows): metric by metric, as declared

    def _security(self, hosts, new_starts, ts, values, all_ts, recent, starts, emit) -> np.ndarray:
        medians = self.baselines.push(hosts, new_starts, ts, self._columns(values, BASELINE_METRICS))
        return security_arrays(all_ts, tuple(self._recent_columns(recent, SECURITY_INPUTS)), starts, emit, medians.T)

    def _stage5(self, hosts, host_names: list[str], new_starts, ts, values) -> np.ndarray:
        inputs = self._columns(values, self.stage5.columns[self._z_width :])
        entropy = self.patterns.push(hosts, new_starts, ts, inputs[:, self._key])
        self._look_up_baselines(hosts, host_names)
        baseline = self._stage5_baseline[hosts]
        z = self.anomaly.robust_z(inputs.T, new_starts, baseline[:, 0], baseline[:, 1])
        kept = np.concatenate([z.T, inputs], axis=1)  # (rows, the history's columns)
        all_ts, kept_z, starts, emit = self.stage5.assemble(hosts, new_starts, ts, kept, self._z_width)
        self.stage5.append(hosts, new_starts, ts, kept)
        pearson_state = self._pearson[hosts]
        columns = self.anomaly.columns_of(all_ts, kept_z, starts, emit, entropy, pearson_state)
        self._pearson[hosts] = pearson_state
        return np.stack(columns)

    def _look_up_baselines(self, hosts, host_names: list[str]) -> None:
        """The stage-5 baselines of the hosts first seen (or first since ``use_stage5``), and their kept rows' robust
        z with them."""
        if not len(unseen := hosts[np.isnan(self._stage5_baseline[hosts, 0, 0])]):
            return
        median, scale = self.anomaly.baselines_of([host_names[h] for h in unseen.tolist()])
        self._stage5_baseline[unseen] = np.stack([median, scale], axis=1)
        # every slot of each ring (unfilled ones are NaN), a segment per host: z goes back slot for slot
        kept = self.stage5.values[unseen, self._z_width :]  # (hosts, inputs, rows)
        segments = np.arange(len(unseen) + 1, dtype=np.int64) * kept.shape[2]
        z = self.anomaly.robust_z(np.concatenate(kept, axis=1), segments, median, scale)
        self.stage5.values[unseen, : self._z_width] = z.reshape(len(z), len(unseen), -1).transpose(1, 0, 2)


def _rows(span_s: float, step_s: float) -> int:
    """Rows of a grid of step_s within a span of span_s, both ends included."""
    return math.floor(span_s / step_s + 1e-9) + 1

