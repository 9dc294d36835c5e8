"""``amoskys alerts list|show|label`` on a real store file."""

from __future__ import annotations

import json

import pytest

from amoskys.cli import main
from amoskys.detect.policy import NS, AlertPolicy, AlertTracker, Scored
from amoskys.store.alerts import Alert, read_feedback, save_alert
from amoskys.store.store import Store

EXPLANATION = {
    "members": {"iforest": 81.5, "pca": 77.0},
    "rules": ["port_scan"],
    "features": [{"feature": "scan_fail_rate_60s", "contribution": 3.2, "value": 412.0, "typical": [0.0, 0.4],
                  "median": 0.0}],
}  # fmt: skip


@pytest.fixture
def store_with_alert(tmp_path):
    path = tmp_path / "amoskys.db"
    tracker = AlertTracker(AlertPolicy(level="high", consecutive=2))
    for i, score in enumerate([10, 80, 92, 40]):
        tracker.observe(Scored("web-1", (1_800_000_000 + 5 * i) * NS, score, EXPLANATION,
                               ("cpu_busy_pct", "tcp_attempt_fails_per_s"), [float(score), 400.0]))  # fmt: skip
    [alert] = tracker.alerts
    with Store.open(path) as store:
        alert_id = save_alert(store, Alert(alert.host, alert.start_ns, alert.end_ns, alert.peak_score, alert.level,
                                           alert.status, alert.details()))  # fmt: skip
    return path, alert_id


def test_list_shows_every_alert(store_with_alert, capsys):
    path, alert_id = store_with_alert
    assert main(["alerts", "list", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert "web-1" in out and "critical" in out and str(alert_id) in out
    assert main(["alerts", "list", "--store", str(path), "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["id"] == alert_id and listed["peak_score"] == 92.0 and listed["verdict"] is None


def test_show_explains_the_alert(store_with_alert, capsys):
    path, alert_id = store_with_alert
    assert main(["alerts", "show", str(alert_id), "--store", str(path)]) == 0
    out = capsys.readouterr().out
    for expected in ("iforest 82", "port_scan", "scan_fail_rate_60s", "412", "0 .. 0.4", "cpu_busy_pct"):
        assert expected in out, expected
    assert main(["alerts", "show", str(alert_id), "--store", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [row["cpu_busy_pct"] for row in shown["details"]["context"]] == [10.0, 80.0, 92.0, 40.0]


def test_label_stores_the_verdict(store_with_alert, capsys):
    path, alert_id = store_with_alert
    assert main(["alerts", "label", str(alert_id), "--verdict", "false", "--analyst", "ana", "--store", str(path)]) == 0
    with Store.open(path, create=False) as store:
        [feedback] = read_feedback(store, alert_id)
    assert feedback.verdict is False and feedback.analyst == "ana"
    capsys.readouterr()
    main(["alerts", "list", "--store", str(path), "--json"])
    assert json.loads(capsys.readouterr().out)[0]["verdict"] is False


def test_an_unknown_alert_is_one_clear_line(store_with_alert, capsys):
    path, _ = store_with_alert
    assert main(["alerts", "label", "999", "--verdict", "true", "--store", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no alert 999" in err
