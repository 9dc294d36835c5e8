"""The alert policy: which scored rows become alerts an analyst should look at.

Per host, scored rows arrive in time order. An alert opens when a host's threat score
stays at or above the policy's level for ``consecutive`` scores in a row (one noisy
row is not an incident); further rows at or above the level extend it (their peak is
kept if higher); it closes once the host has been below the level for more than
``quiet_seconds``. A host may open at most ``budget_per_hour`` alerts in any hour:
beyond that, what would have opened an alert is counted as suppressed, so one noisy
host cannot flood the analyst. A host that goes silent (no rows for ``quiet_seconds``)
has its open alert closed at its last row, never a new one opened.

Every alert keeps what the analyst needs: start/end, peak score and level, the peak
row's explanation (contributing models, rule hits, top features with values and
typical ranges), and the raw metric values of the rows around the peak.

>>> policy = AlertPolicy(level="medium", consecutive=2, quiet_seconds=10)
>>> tracker = AlertTracker(policy)
>>> [len(tracker.observe(Scored("h", t * 10**9, s, {}, (), []))) for t, s in enumerate([80, 20, 60, 70, 10])]
[0, 0, 0, 1, 1]
>>> tracker.alerts[0].peak_score, tracker.alerts[0].status
(70.0, 'open')
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from amoskys.errors import ConfigError
from amoskys.models.calibration import BANDS, level

NS = 1_000_000_000
LEVEL_FLOOR = {name: floor for floor, name in BANDS}
RECENT_ALERTS = 1000  # alerts the tracker lists (``alerts``)
CONTEXT_ROWS = 3  # raw rows kept before the peak, and after it


@dataclass(frozen=True)
class AlertPolicy:
    level: str = "high"  # open at or above this band (low, medium, high, critical)
    consecutive: int = 3  # for this many scores in a row
    quiet_seconds: float = 60.0  # close after this long below the level
    budget_per_hour: int = 6  # new alerts per host per hour; more are suppressed and counted

    def __post_init__(self):
        if self.level not in LEVEL_FLOOR:
            raise ConfigError(f"alert level must be one of {', '.join(LEVEL_FLOOR)}, not {self.level!r}")
        if self.consecutive < 1 or self.quiet_seconds <= 0 or self.budget_per_hour < 1:
            raise ConfigError("alert policy: consecutive and budget_per_hour must be >= 1, quiet_seconds > 0")

    @property
    def floor(self) -> float:
        return LEVEL_FLOOR[self.level]


class Scored(NamedTuple):
    """One scored row of a host: its threat score, explanation and raw metric values (a tuple, and the values
    a list, not a dict: one is made per scored row, and only an alert's context rows need names)."""

    host: str
    ts_ns: int
    score: float  # 0-100
    explanation: dict  # models, rule hits, top features
    metric_names: tuple[str, ...]  # raw canonical metrics kept with the row (one tuple shared by every row)
    metric_values: list[float]  # their values in the row, NaN where missing


@dataclass
class OpenAlert:
    host: str
    start_ns: int
    end_ns: int
    peak_score: float
    peak_ns: int
    explanation: dict
    context: list[dict]  # the rows around the peak: {"ts_ns": ..., metric: value, ...}
    rows: int = 1
    status: str = "open"
    id: int | None = None  # set by whoever stores it

    @property
    def level(self) -> str:
        return level(self.peak_score)

    def details(self) -> dict:
        return {"peak_ns": self.peak_ns, "rows": self.rows, **self.explanation, "context": self.context}


@dataclass
class _HostState:
    streak: int = 0
    streak_start_ns: int = 0
    suppressed: bool = False  # the current streak exceeded the budget: counted once, not per row
    last_ns: int | None = None
    last_hit_ns: int | None = None
    alert: OpenAlert | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=CONTEXT_ROWS))  # the Scored rows before this one
    after_peak: int = 0  # rows still to add to the alert's context after its peak
    opened: deque = field(default_factory=deque)  # start times of this host's alerts in the last hour


class AlertTracker:
    """Applies an ``AlertPolicy`` to scored rows; ``observe`` returns the alerts a row opened, changed or closed."""

    def __init__(self, policy: AlertPolicy):
        self.policy = policy
        # the latest alerts opened, oldest first: bounded, a detector runs for months (the store keeps them all)
        self.alerts: deque[OpenAlert] = deque(maxlen=RECENT_ALERTS)
        self.suppressed = 0
        self._hosts: dict[str, _HostState] = {}

    def observe(self, row: Scored) -> list[OpenAlert]:
        if (state := self._hosts.get(row.host)) is None:  # (not setdefault: building a state per row was costly)
            state = self._hosts[row.host] = _HostState()
        if state.last_ns is not None and row.ts_ns <= state.last_ns:
            return []  # a clock jump backwards or a repeat: the caller counts it
        changed = self._close_if_quiet(state, row.ts_ns) if state.alert is not None else []
        state.last_ns = row.ts_ns
        if row.score >= self.policy.floor:
            state.streak += 1
            if state.streak == 1:
                state.streak_start_ns = row.ts_ns
            state.last_hit_ns = row.ts_ns
            if state.alert is not None:
                self._extend(state, row)
                changed.append(state.alert)
            elif state.streak >= self.policy.consecutive and not state.suppressed:
                if opened := self._open(state, row):
                    changed.append(opened)
        else:
            state.streak, state.suppressed = 0, False
            if state.alert is not None and state.after_peak:
                self._add_after_peak(state, row)
                changed.append(state.alert)
        state.recent.append(row)
        return _unique(changed) if len(changed) > 1 else changed

    def close_quiet(self, now_ns: int) -> list[OpenAlert]:
        """Close the alerts of hosts that have been quiet (or silent) for the quiet period by now_ns."""
        return [alert for state in self._hosts.values() for alert in self._close_if_quiet(state, now_ns)]

    def open_alerts(self) -> list[OpenAlert]:
        return [s.alert for s in self._hosts.values() if s.alert is not None]

    def _open(self, state: _HostState, row: Scored) -> OpenAlert | None:
        hour_ago = row.ts_ns - 3600 * NS
        while state.opened and state.opened[0] <= hour_ago:
            state.opened.popleft()
        if len(state.opened) >= self.policy.budget_per_hour:
            self.suppressed += 1
            state.suppressed = True
            return None
        state.opened.append(row.ts_ns)
        # The alert starts where the streak did: the rows that built it up belong to it.
        state.alert = OpenAlert(row.host, state.streak_start_ns, row.ts_ns, float(row.score), row.ts_ns, row.explanation,
                                _context(*state.recent, row), rows=self.policy.consecutive)  # fmt: skip
        state.after_peak = CONTEXT_ROWS
        self.alerts.append(state.alert)
        return state.alert

    def _extend(self, state: _HostState, row: Scored) -> None:
        alert = state.alert
        alert.end_ns, alert.rows = row.ts_ns, alert.rows + 1
        if row.score > alert.peak_score:
            alert.peak_score, alert.peak_ns, alert.explanation = float(row.score), row.ts_ns, row.explanation
            alert.context = _context(*state.recent, row)
            state.after_peak = CONTEXT_ROWS
        elif state.after_peak:
            self._add_after_peak(state, row)

    @staticmethod
    def _add_after_peak(state: _HostState, row: Scored) -> None:
        state.alert.context.extend(_context(row))
        state.after_peak -= 1

    def _close_if_quiet(self, state: _HostState, now_ns: int) -> list[OpenAlert]:
        alert = state.alert
        if alert is None or now_ns - state.last_hit_ns <= self.policy.quiet_seconds * NS:
            return []
        alert.status = "closed"
        state.alert, state.after_peak = None, 0
        return [alert]


def _context(*rows: Scored) -> list[dict]:
    """An alert's context rows: each row's time and raw metric values (None where missing: NaN)."""
    return [{"ts_ns": row.ts_ns, **{k: None if v != v else v for k, v in zip(row.metric_names, row.metric_values)}}
            for row in rows]  # fmt: skip


def _unique(alerts: list[OpenAlert]) -> list[OpenAlert]:
    return list({id(a): a for a in alerts}.values())


def policy_of(detect) -> AlertPolicy:
    """The alert policy of a ``config.DetectConfig``."""
    return AlertPolicy(detect.alert_level, detect.alert_consecutive, detect.alert_quiet_seconds,
                       detect.alert_budget_per_hour)  # fmt: skip
