"""Accounting: counts reach the store even when the writer undoes and reruns their transaction."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from amoskys.bus import ledger
from amoskys.bus.accounting import Accounting
from amoskys.store import Store


def test_counts_survive_a_failing_job_in_their_transaction(tmp_path):
    with Store.open(tmp_path / "bus.db") as store:
        accounting = Accounting(store)
        release = threading.Event()
        held = store.submit_job(lambda conn: release.wait(10))  # the next jobs queue into one transaction
        accounting.count("invalid", "replayed", Counter({"dropped:replayed": 5}), dropped=True)

        def fails(conn):
            raise RuntimeError("a job that fails")

        failing = store.submit_job(fails)
        accounting.count("ok", "")
        release.set()
        assert held.result(10)
        with pytest.raises(RuntimeError):
            failing.result(10)
        accounting.flush()
        persisted = ledger.persisted_counts(store)
    assert persisted["envelopes"] == {"invalid": {"replayed": 1}, "ok": {"": 1}}
    assert persisted["events"] == {"dropped:replayed": 5}
