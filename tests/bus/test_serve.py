"""`amoskys bus serve` as a user runs it, the metrics endpoint, and `amoskys bus stats` with the bus down."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

from amoskys.bus import certs
from amoskys.bus.bus_pb2 import Ack
from amoskys.bus.client import BusClient
from amoskys.cli import main

from .conftest import ServeProcess, free_port, frame_events


def scrape(url: str) -> dict[str, float]:
    """{series: value} of a Prometheus text page."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    series = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            series[name] = float(value)
    return series


def test_metrics_endpoint_serves_the_live_counters(bus, client_a):
    before = scrape(bus.listening.metrics)
    assert before['amoskys_bus_events_total{outcome="stored"}'] == 0
    envelope = client_a.seal(frame_events(40), seq=1)
    client_a.publish(envelope)
    client_a.publish(envelope)
    client_a.publish_events(frame_events(5, names=["cpu_user_pct", "mem_used_kb"]), seq=2)
    series = scrape(bus.listening.metrics)
    assert series['amoskys_bus_events_total{outcome="stored"}'] == 40
    assert series['amoskys_bus_events_total{outcome="duplicate"}'] == 40
    assert series['amoskys_bus_events_total{outcome="rejected",reason="wrong_unit"}'] == 5
    assert series['amoskys_bus_envelopes_total{status="ok",reason=""}'] == 3
    assert series["amoskys_bus_publish_latency_seconds_count"] == 3
    median = series['amoskys_bus_publish_latency_seconds{quantile="0.5"}']
    assert 0 < median <= series["amoskys_bus_publish_latency_seconds_sum"]
    assert series["amoskys_bus_agent_keys"] >= 2 and series["amoskys_bus_pending_batches"] == 0
    try:
        urllib.request.urlopen(bus.listening.metrics.replace("/metrics", "/other"), timeout=5)
        raise AssertionError("only /metrics is served")
    except urllib.error.HTTPError as error:
        assert error.code == 404


def amoskys(capsys, *args) -> tuple[int, str, str]:
    """The amoskys command line, run in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_serve_reloads_keys_on_sighup_stops_cleanly_and_stats_read_the_store(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no amoskys.toml from elsewhere
    folder = tmp_path / "certs"
    certs.init(folder, agents=("a", "b"))
    store = tmp_path / "bus.db"
    metrics_port = free_port()
    bus = ServeProcess(store, folder, cwd=tmp_path, metrics_port=metrics_port)
    try:
        assert f"metrics http://127.0.0.1:{metrics_port}/metrics" in bus.first_line
        with BusClient(bus.address, folder, "a") as a, BusClient(bus.address, folder, "b") as b:
            assert a.publish_events(frame_events(30), seq=1).stored == 30
            assert b.publish_events(frame_events(20, host_prefix="db"), seq=1).stored == 20
            certs.agent_paths(folder, "b")["public_key"].unlink()  # revoke b's key ...
            bus.proc.send_signal(signal.SIGHUP)  # ... and tell the bus
            deadline = time.monotonic() + 10
            ack = b.publish_events(frame_events(5, host_prefix="db"), seq=2)
            while ack.status == Ack.OK and time.monotonic() < deadline:  # until the bus has handled SIGHUP
                time.sleep(0.02)
                ack = b.publish_events(frame_events(5, host_prefix="db"), seq=2)
            assert (ack.status, ack.reason) == (Ack.UNAUTHORIZED, "unknown_key")
            assert a.publish_events(frame_events(30), seq=2).stored == 30
            live = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
            stored_before_stop = live['amoskys_bus_events_total{outcome="stored"}']
    finally:
        bus.proc.send_signal(signal.SIGTERM)
        code, err = bus.finish()
    assert code == 0, err
    assert "Traceback" not in err and "reloaded 1 agent keys" in err
    assert bus.lines and bus.lines[-1].startswith("amoskys bus: stopped")

    # the bus is down: the counters come from the store
    code, out, _ = amoskys(capsys, "bus", "stats", "--store", store, "--json")
    stats = json.loads(out)
    assert stats["events"]["stored"] == stored_before_stop
    assert stats["envelopes"]["unauthorized"] == {"unknown_key": 1}
    assert stats["agents"]["a"] == 2 and stats["agents"]["b"] in (1, 2)  # b's seq 2 may have landed before SIGHUP
    assert stats["stored_envelopes"] == 2 + stats["agents"]["b"]
    code, out, _ = amoskys(capsys, "bus", "stats", "--store", store)
    assert code == 0 and "unauthorized 1 (unknown_key 1)" in out and "stored     " in out
    code, _, err = amoskys(capsys, "bus", "stats", "--store", tmp_path / "none.db")
    assert code == 1 and err.startswith("amoskys: store error:") and err.count("\n") == 1


def test_serve_without_certificates_says_how_to_make_them(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = amoskys(capsys, "bus", "serve", "--store", tmp_path / "s.db", "--certs", tmp_path / "nothing")
    assert code == 1 and "amoskys certs init" in err and err.count("\n") == 1
    assert not (tmp_path / "s.db").exists()  # refused before touching the store
