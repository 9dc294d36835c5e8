"""Heuristic rules on the security pack's features: the "H" of the BDH ensemble and of the Score Junction.

A rule fires on a row when every one of its features reaches its bound; a firing rule
raises the row's threat score to at least the rule's floor (high, by default), and is
named in the explanation. The bounds sit far above what a healthy host shows: the
simulator's benign rows stay below them except in the minute after an incident, while
its windows still hold the incident. A rule whose features are absent (the security
pack turned off) never fires.

>>> [rule.name for rule in DEFAULT_RULES]
['port_scan', 'exfiltration', 'fork_storm', 'crypto_mining', 'memory_leak']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from amoskys.models.rows import FeatureRows, Rows


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    bounds: tuple[tuple[str, float], ...]  # (feature, lowest value that counts); all must hold
    floor: float = 75.0  # the threat score is at least this when the rule fires

    def fires(self, rows: Rows) -> np.ndarray:
        """True for each row where every bound holds (False where a feature is missing, null or NaN)."""
        return rule_hits(rows, (self,))[self.name]


DEFAULT_RULES = (
    Rule("port_scan", "Many failed TCP connection attempts, most opens failing.",
         (("scan_fail_rate_60s", 20.0), ("scan_fail_share_60s", 0.5))),
    Rule("exfiltration", "Sending far above the host's hourly baseline, almost no traffic in.",
         (("exfil_tx_surge", 10.0), ("exfil_tx_share_60s", 0.9))),
    Rule("fork_storm", "Forks far above the host's hourly baseline.", (("fork_surge", 50.0),)),
    Rule("crypto_mining", "Sustained user CPU with flat disk and network.", (("mining_indicator_300s", 0.85),)),
    Rule("memory_leak", "Used memory rising steadily, several times total memory per hour.",
         (("mem_leak_slope_300s", 3.0),)),
)  # fmt: skip


def rule_hits(rows: Rows, rules: tuple[Rule, ...] = DEFAULT_RULES) -> dict[str, np.ndarray]:
    """Rule name -> boolean array over rows (a frame or the live path's ``FeatureRows``), each feature read once.

    Compared in NumPy, where a null (read as NaN) or a NaN reaches no bound (Polars orders NaN above every
    number); for a live micro-batch's few hundred rows, that also costs less than planning a Polars query.
    """
    values: dict[str, np.ndarray | None] = {}
    in_frame = None if isinstance(rows, FeatureRows) else set(rows.columns)

    def column(feature: str) -> np.ndarray | None:
        if feature not in values:
            if in_frame is None:
                values[feature] = rows.column(feature)
            else:
                values[feature] = rows[feature].cast(pl.Float64).to_numpy() if feature in in_frame else None
        return values[feature]  # (a frame's null as NaN)

    hits = {}
    for rule in rules:
        hit = np.full(rows.height, all(column(feature) is not None for feature, _ in rule.bounds))
        for feature, bound in rule.bounds:
            if hit.any():
                hit &= column(feature) >= bound
        hits[rule.name] = hit
    return hits
