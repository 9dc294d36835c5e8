"""The Score Junction: feature rows in, calibrated threat levels, detections and alerts out.

Each model's score is calibrated to a common scale (its surprise among normal training
rows), the surprises are fused by the ensemble's rule (a weighted median, calibrated
once more to 0-100), and the security-pack rules lift a row to at least their floor:
all of that is the live ensemble's (``models.live``). The junction adds what the live
path needs around it:

- every scored row becomes a compact detection (score, level, members' scores, rule
  hits); rows at or above the alert policy's level also carry their top features,
  with value and typical range (explaining costs more than scoring, so only there);
- the alert policy (``policy``) turns sustained levels into alerts, with the raw
  canonical metrics of the rows around the peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amoskys.detect.policy import AlertPolicy, AlertTracker, OpenAlert, Scored
from amoskys.errors import ModelError
from amoskys.models.bdh import BdhEnsemble
from amoskys.models.rows import FeatureRows
from amoskys.store.alerts import Detection

CONTEXT_METRICS = ("cpu_busy_pct", "mem_used_bytes", "load_avg_1m", "process_count", "net_tx_bytes_per_s",
                   "net_rx_bytes_per_s", "tcp_attempt_fails_per_s", "disk_busy_pct")  # fmt: skip


@dataclass
class Verdicts:
    """What one batch of rows came to."""

    detections: list[Detection]
    alerts: list[OpenAlert]  # opened, changed or closed by these rows


class Junction:
    def __init__(self, model: BdhEnsemble, model_set: str, policy: AlertPolicy, top_k: int = 5):
        self.model = model
        self.model_set = model_set  # the registry entry id, stored with every detection
        self.policy = policy
        self.top_k = top_k
        self.tracker = AlertTracker(policy)

    def check_features(self, available: list[str]) -> None:
        """Refuse a model whose features the stream does not compute, with the first few named."""
        _check_features(self.model, self.model_set, available)

    def swap(self, model: BdhEnsemble, model_set: str, available: list[str]) -> None:
        """Score with model from the next rows on (checked as ``check_features``); open alerts go on."""
        _check_features(model, model_set, available)
        self.model, self.model_set = model, model_set

    def judge(self, rows: FeatureRows) -> Verdicts:
        """Score rows (in time order per host), store-ready detections and alert changes."""
        if rows.height == 0:
            return Verdicts([], [])
        assessed = self.model.assess(rows, self.top_k, explain_from=self.policy.floor)
        members = list(assessed.members)
        names, context = _context(rows)
        detections, changed = [], {}
        for i, (host, ts_ns, threat, level, scores, metrics) in enumerate(zip(
            rows.hosts, rows.ts_ns.tolist(), assessed.threat, assessed.level, zip(*assessed.members.values()), context,
        )):  # fmt: skip
            explanation = {"members": dict(zip(members, scores)), "rules": assessed.rules.get(i, [])}
            if features := assessed.features.get(i):
                explanation["features"] = features
            detections.append(Detection(host, ts_ns, self.model_set, threat, level, explanation))
            for alert in self.tracker.observe(Scored(host, ts_ns, threat, explanation, names, metrics)):
                changed[id(alert)] = alert
        return Verdicts(detections, list(changed.values()))

    def close_quiet(self, now_ns: int) -> list[OpenAlert]:
        """Alerts of hosts quiet (or silent) for the policy's quiet period by now_ns, now closed."""
        return self.tracker.close_quiet(now_ns)


def _context(rows: FeatureRows) -> tuple[tuple[str, ...], list[list[float]]]:
    """The context metrics the rows have, and per row their raw values (NaN where missing)."""
    names = tuple(name for name in CONTEXT_METRICS if name in rows.index)
    values = np.stack([rows.column(name) for name in names], axis=1) if names else np.empty((rows.height, 0))
    return names, values.tolist()


def _check_features(model: BdhEnsemble, model_set: str, available: list[str]) -> None:
    computed = set(available)
    if missing := [f for f in model.features_ if f not in computed]:
        raise ModelError(f"model {model_set} needs {len(missing)} feature(s) the live stream does not compute "
                         f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): retrain it on the current "
                         "pipeline (`amoskys retrain`)")  # fmt: skip
