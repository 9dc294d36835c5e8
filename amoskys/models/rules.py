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


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    bounds: tuple[tuple[str, float], ...]  # (feature, lowest value that counts); all must hold
    floor: float = 75.0  # the threat score is at least this when the rule fires

    def fires(self, frame: pl.DataFrame) -> np.ndarray:
        """True for each row of frame where every bound holds (False where a feature is missing or null)."""
        return rule_hits(frame, (self,))[self.name]

    def hit(self) -> pl.Expr:
        """The expression of ``fires``, on a frame holding every feature of the rule."""
        return pl.all_horizontal((pl.col(f) >= bound).fill_null(False) for f, bound in self.bounds).alias(self.name)


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


def rule_hits(frame: pl.DataFrame, rules: tuple[Rule, ...] = DEFAULT_RULES) -> dict[str, np.ndarray]:
    """Rule name -> boolean array over the rows of frame (one pass over the frame for all rules)."""
    columns = set(frame.columns)
    present = [rule for rule in rules if all(feature in columns for feature, _ in rule.bounds)]
    hits = frame.select(rule.hit() for rule in present) if present else pl.DataFrame()
    return {rule.name: hits[rule.name].to_numpy() if rule in present else np.zeros(frame.height, dtype=bool)
            for rule in rules}  # fmt: skip
