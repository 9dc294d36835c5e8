"""Detections, alerts and analyst feedback in the store."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from amoskys.errors import InputError
from amoskys.store import Store
from amoskys.store.alerts import (
    Alert,
    Detection,
    add_feedback,
    first_alerted_hit,
    read_alerts,
    read_detections,
    read_feedback,
    save_alert,
    write_detections,
    write_scored,
)

from .conftest import SEC, T0, count

DETECTIONS = [
    Detection("web-1", T0, "fast", 12.0, "benign", {}),
    Detection("web-1", T0 + SEC, "fast", 81.5, "high", {"models": ["iforest", "pca"], "top": [["cpu_user_pct", 97.0]]}),
    Detection("web-1", T0 + SEC, "full", 79.25, "high", {"models": ["lstm_ae"]}),
    Detection("db-1", T0, "fast", 0.0, "benign", {}),
]


def test_detections_round_trip(store):
    assert write_detections(store, DETECTIONS) == 4

    assert read_detections(store, "web-1") == DETECTIONS[:3]
    assert read_detections(store, "db-1") == [DETECTIONS[3]]
    assert read_detections(store, "web-1", since_ns=T0 + 1) == DETECTIONS[1:3]
    assert read_detections(store, "nobody") == []
    assert read_detections(store, "web-1")[1].details == {"models": ["iforest", "pca"], "top": [["cpu_user_pct", 97.0]]}


def test_repeated_detection_is_ignored_and_the_first_kept(store, store_path):
    assert write_detections(store, DETECTIONS[:2]) == 2
    rescored = DETECTIONS[1]._replace(score=99.0, level="critical")
    assert write_detections(store, [rescored, DETECTIONS[2]]) == 1
    assert read_detections(store, "web-1") == DETECTIONS[:3]
    assert count(store_path, "detections") == 3


def test_a_micro_batch_is_written_in_one_transaction(store):
    opened = Alert("web-1", T0, T0 + SEC, 81.5, "high")
    first, second = write_scored(store, DETECTIONS[:2], [opened, Alert("db-1", T0, T0, 60.0, "medium")])
    assert write_scored(store, DETECTIONS[2:], [replace(opened, status="closed", id=first)]) == [first]
    assert read_detections(store, "web-1") == DETECTIONS[:3] and read_detections(store, "db-1") == [DETECTIONS[3]]
    assert [(a.id, a.status) for a in read_alerts(store)] == [(first, "closed"), (second, "open")]
    with pytest.raises(InputError):  # an update of an alert not stored fails the batch: its detections too
        write_scored(store, [DETECTIONS[0]._replace(ts_ns=T0 + 9 * SEC)], [replace(opened, id=second + 1)])
    assert len(read_detections(store, "web-1")) == 3


def test_alert_insert_then_update_open_to_closed(store):
    opened = Alert("web-1", T0, T0 + 60 * SEC, 81.5, "high", details={"rules": ["ssh_brute_force"]})
    alert_id = save_alert(store, opened)
    other_id = save_alert(store, Alert("db-1", T0 + SEC, T0 + 2 * SEC, 55.0, "medium"))

    assert isinstance(alert_id, int) and other_id != alert_id
    assert read_alerts(store) == [replace(opened, id=alert_id), Alert("db-1", T0 + SEC, T0 + 2 * SEC, 55.0, "medium", id=other_id)]
    assert read_alerts(store, "closed") == []

    closed = replace(opened, id=alert_id, end_ns=T0 + 300 * SEC, peak_score=93.0, level="critical", status="closed",
                     details={"rules": ["ssh_brute_force"], "closed_by": "ana"})  # fmt: skip
    assert save_alert(store, closed) == alert_id

    assert read_alerts(store, "closed") == [closed]
    assert [a.id for a in read_alerts(store, "open")] == [other_id]
    assert len(read_alerts(store)) == 2


def test_updating_a_missing_alert_raises_and_changes_nothing(store):
    alert_id = save_alert(store, Alert("web-1", T0, T0 + SEC, 40.0, "low"))
    with pytest.raises(InputError, match=str(alert_id + 1)):
        save_alert(store, Alert("web-1", T0, T0 + SEC, 90.0, "critical", status="closed", id=alert_id + 1))
    assert read_alerts(store) == [Alert("web-1", T0, T0 + SEC, 40.0, "low", id=alert_id)]


def test_alert_with_a_score_outside_0_100_is_refused(store):
    with pytest.raises(InputError, match="0..100"):
        save_alert(store, Alert("web-1", T0, T0 + SEC, 140.0, "critical"))
    assert read_alerts(store) == []


def test_detection_with_a_score_outside_0_100_is_refused_not_dropped(store):
    with pytest.raises(InputError, match="outside 0..100"):
        write_detections(store, [Detection("web-1", T0, "bdh", 140.0, "critical", {})])
    assert read_detections(store, "web-1") == []


def test_feedback_stored_and_read_back(store):
    first = save_alert(store, Alert("web-1", T0, T0 + SEC, 81.5, "high"))
    second = save_alert(store, Alert("web-2", T0, T0 + SEC, 60.0, "medium"))
    before = time.time_ns()
    confirmed = add_feedback(store, first, True, "ana", "confirmed: miner binary found")
    dismissed = add_feedback(store, second, False, "bo")
    again = add_feedback(store, first, False, "bo", "backup job, not an attack")

    assert confirmed.alert_id == first and confirmed.verdict is True and confirmed.created_ns >= before
    assert read_feedback(store, first) == [confirmed, again]
    assert read_feedback(store, second) == [dismissed]
    assert read_feedback(store) == [confirmed, dismissed, again]
    assert [f.verdict for f in read_feedback(store)] == [True, False, False]
    assert read_feedback(store, 12345) == []


def test_feedback_on_a_missing_alert_raises_and_stores_nothing(store, store_path):
    alert_id = save_alert(store, Alert("web-1", T0, T0 + SEC, 81.5, "high"))
    with pytest.raises(InputError, match=str(alert_id + 7)):
        add_feedback(store, alert_id + 7, True, "ana")
    assert read_feedback(store) == []
    assert count(store_path, "feedback") == 0
    # the writer is still fine afterwards
    add_feedback(store, alert_id, True, "ana")
    assert [f.alert_id for f in read_feedback(store)] == [alert_id]


def test_detections_alerts_and_feedback_survive_reopen(store_path):
    with Store.open(store_path) as store:
        write_detections(store, DETECTIONS)
        alert_id = save_alert(store, Alert("web-1", T0, T0 + SEC, 81.5, "high"))
        feedback = add_feedback(store, alert_id, True, "ana", "yes")
    with Store.open(store_path) as store:
        assert read_detections(store, "web-1") == DETECTIONS[:3]
        assert [a.id for a in read_alerts(store, "open")] == [alert_id]
        assert read_feedback(store) == [feedback]


def test_first_alerted_hit_needs_the_rule_the_score_and_an_alert_of_the_host(store):
    scan = {"rules": ["port_scan"]}
    write_detections(store, [
        Detection("web-1", T0, "live", 95.0, "critical", scan),  # no alert covers it
        Detection("web-1", T0 + SEC, "live", 95.0, "critical", {"rules": [], "features": [{"feature": "port_scan"}]}),
        Detection("web-1", T0 + 2 * SEC, "live", 60.0, "medium", scan),  # below the score
        Detection("db-1", T0 + 2 * SEC, "live", 95.0, "critical", scan),  # another host's alert does not count
        Detection("web-1", T0 + 3 * SEC, "live", 95.0, "critical", scan),
    ])  # fmt: skip
    alert_id = save_alert(store, Alert("web-1", T0 + SEC, T0 + 4 * SEC, 95.0, "critical"))
    save_alert(store, Alert("db-1", T0 + 3 * SEC, T0 + 4 * SEC, 95.0, "critical"))
    ts_ns, alert = first_alerted_hit(store, "port_scan", 75.0, T0)
    assert (ts_ns, alert.id) == (T0 + 3 * SEC, alert_id)
    assert first_alerted_hit(store, "port_scan", 75.0, T0, until_ns=T0 + 2 * SEC) is None
