"""The alert policy: open on a sustained level, merge, close when quiet, a budget per host."""

from __future__ import annotations

import pytest

from amoskys.detect.policy import CONTEXT_ROWS, NS, AlertPolicy, AlertTracker, Scored
from amoskys.errors import ConfigError


def feed(tracker: AlertTracker, scores: list[float], host: str = "h", step_s: int = 5, start_s: int = 0) -> list:
    changed = []
    for i, score in enumerate(scores):
        t = (start_s + i * step_s) * NS
        changed += tracker.observe(Scored(host, t, score, {"members": {"bdh": score}}, ("cpu_busy_pct",), [score]))
    return changed


def test_a_spike_shorter_than_the_streak_opens_nothing():
    tracker = AlertTracker(AlertPolicy(level="high", consecutive=3))
    feed(tracker, [10, 95, 95, 10, 99, 10])
    assert not tracker.alerts


def test_a_sustained_level_opens_one_alert_that_grows_and_closes_when_quiet():
    tracker = AlertTracker(AlertPolicy(level="high", consecutive=3, quiet_seconds=30))
    feed(tracker, [10, 80, 85, 90, 20, 97, 80, 10, 10, 10, 10, 10, 10, 10])
    [alert] = tracker.alerts
    assert alert.start_ns == 5 * NS  # where the streak began, not where it was confirmed
    assert alert.end_ns == 30 * NS  # the last row at or above the level
    assert alert.peak_score == 97 and alert.peak_ns == 25 * NS and alert.level == "critical"
    assert alert.explanation == {"members": {"bdh": 97}}
    assert alert.status == "closed"  # 30 s after its last hit
    assert alert.rows == 5


def test_a_new_alert_after_the_quiet_period():
    tracker = AlertTracker(AlertPolicy(level="medium", consecutive=2, quiet_seconds=10))
    feed(tracker, [60, 60, 10, 10, 10, 60, 60])
    assert [a.status for a in tracker.alerts] == ["closed", "open"]


def test_hits_within_the_quiet_period_merge_into_the_open_alert():
    tracker = AlertTracker(AlertPolicy(level="medium", consecutive=2, quiet_seconds=60))
    feed(tracker, [60, 60, 10, 10, 60, 60])
    [alert] = tracker.alerts
    assert alert.status == "open" and alert.end_ns == 25 * NS


def test_the_budget_stops_one_host_from_flooding_and_spares_the_others():
    tracker = AlertTracker(AlertPolicy(level="medium", consecutive=1, quiet_seconds=5, budget_per_hour=2))
    feed(tracker, [90, 90, 10, 10] * 5, host="noisy")  # five separate bursts, two rows each
    feed(tracker, [90, 10], host="calm")
    assert [a.host for a in tracker.alerts] == ["noisy", "noisy", "calm"]
    assert tracker.suppressed == 3  # once per would-be alert, not per row
    # an hour after the first, the budget has room again
    feed(tracker, [90], host="noisy", start_s=3600)
    assert len([a for a in tracker.alerts if a.host == "noisy"]) == 3


def test_a_silent_host_has_its_alert_closed_without_a_new_one():
    tracker = AlertTracker(AlertPolicy(level="medium", consecutive=1, quiet_seconds=60))
    feed(tracker, [70, 70])
    assert tracker.close_quiet(10 * NS) == []  # not quiet long enough yet
    [closed] = tracker.close_quiet(5 * NS + 61 * NS)
    assert closed.status == "closed" and closed.end_ns == 5 * NS
    assert tracker.open_alerts() == [] and len(tracker.alerts) == 1


def test_a_row_older_than_the_last_is_ignored():
    tracker = AlertTracker(AlertPolicy(level="medium", consecutive=1))
    feed(tracker, [70], start_s=100)
    assert tracker.observe(Scored("h", 50 * NS, 99, {}, (), [])) == []
    assert tracker.alerts[0].peak_score == 70


def test_the_context_holds_the_raw_rows_around_the_peak():
    tracker = AlertTracker(AlertPolicy(level="high", consecutive=1, quiet_seconds=600))
    feed(tracker, [1, 2, 3, 4, 99, 5, 6, 7, 8, 9])
    context = [row["cpu_busy_pct"] for row in tracker.alerts[0].context]
    assert context == [2, 3, 4, 99, 5, 6, 7]
    assert len(context) == 2 * CONTEXT_ROWS + 1


@pytest.mark.parametrize("bad", [{"level": "severe"}, {"consecutive": 0}, {"quiet_seconds": 0}, {"budget_per_hour": 0}])
def test_a_bad_policy_is_refused_with_a_clear_error(bad):
    with pytest.raises(ConfigError):
        AlertPolicy(**bad)


def test_a_missing_metric_is_none_in_the_alert_context():
    tracker = AlertTracker(AlertPolicy(level="high", consecutive=2))
    for i, score in enumerate([10, 90, 95]):
        tracker.observe(Scored("h", i * NS, score, {}, ("cpu_busy_pct",), [float("nan") if i == 1 else 50.0]))
    [alert] = tracker.alerts
    assert alert.context == [{"ts_ns": 0, "cpu_busy_pct": 50.0}, {"ts_ns": NS, "cpu_busy_pct": None},
                             {"ts_ns": 2 * NS, "cpu_busy_pct": 50.0}]  # fmt: skip
