"""The healthcare pack on a hand-made frame and flow records (rows in a DataFrame; no traffic is sent)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from amoskys.pipeline import packs
from amoskys.pipeline.source import FLOW_COLUMNS

START = datetime(2026, 3, 2, 18, 58, tzinfo=timezone.utc)  # rows run from 18:58:00 to 19:01:55 UTC
ROWS = 48
NAMES = ["egress_disallowed_bytes_per_s", "egress_disallowed_share", "egress_disallowed_destinations_300s",
         "after_hours_tx_bytes_per_s", "after_hours_tx_bytes_1h"]  # fmt: skip


def _ts(row: int) -> datetime:
    return START + timedelta(seconds=5 * row)


def _ns(row: int, offset_s: float = 0.0) -> int:
    return int((_ts(row).timestamp() + offset_s) * 1e9)


def _frame() -> pl.DataFrame:
    return pl.DataFrame({
        "host": ["ward"] * ROWS + ["lab"] * ROWS,
        "ts": [_ts(i) for i in range(ROWS)] * 2,
        "net_tx_bytes_per_s": [1000.0] * ROWS + [10.0] * ROWS,
    }).with_columns(pl.col("ts").dt.cast_time_unit("ns"))  # fmt: skip


def _flows(rows: list[tuple[str, int, str, int]]) -> pl.DataFrame:
    """(host, ts_ns, dst_ip, bytes_sent) records."""
    schema = dict(zip(FLOW_COLUMNS, (pl.String, pl.Int64, pl.String, pl.Int64, pl.String, pl.Int64, pl.Int64)))
    return pl.DataFrame(
        [(host, ts, dst, 443, "tcp", sent, 100) for host, ts, dst, sent in rows], schema=schema, orient="row"
    )


FLOWS = [
    ("ward", _ns(2, 1.5), "8.8.8.8", 500),  # outside, inside the same interval as:
    ("ward", _ns(2, 3.0), "10.1.2.3", 1500),  # inside the allow-list
    ("ward", _ns(4), "8.8.8.8", 100),
    ("ward", _ns(6), "not-an-address", 50),  # unparseable: outside
    ("ward", _ns(8), "192.168.1.9", 400),
]


@pytest.fixture
def out() -> pl.DataFrame:
    return packs.compute_all(_frame(), _flows(FLOWS), packs.load(("healthcare",), {}))


def _row(out: pl.DataFrame, host: str, row: int) -> dict:
    return out.filter(pl.col("host") == host).row(row, named=True)


def test_egress_outside_the_allow_list(out):
    assert out.columns == _frame().columns + NAMES
    first = _row(out, "ward", 2)
    assert first["egress_disallowed_bytes_per_s"] == 500 / 5  # 8.8.8.8 only; 10.1.2.3 is allowed
    assert first["egress_disallowed_share"] == 0.25
    assert _row(out, "ward", 4)["egress_disallowed_share"] == 1.0
    assert _row(out, "ward", 6)["egress_disallowed_bytes_per_s"] == 50 / 5
    allowed = _row(out, "ward", 8)
    assert (allowed["egress_disallowed_bytes_per_s"], allowed["egress_disallowed_share"]) == (0.0, 0.0)
    quiet = _row(out, "ward", 3)
    assert (quiet["egress_disallowed_bytes_per_s"], quiet["egress_disallowed_share"]) == (0.0, None)


def test_distinct_disallowed_destinations_over_300s(out):
    distinct = out.filter(pl.col("host") == "ward")["egress_disallowed_destinations_300s"].to_list()
    assert distinct[:2] == [None, None]  # before the host's first flow record
    assert distinct[2:6] == [1.0, 1.0, 1.0, 1.0]  # 8.8.8.8 twice is one destination
    assert distinct[6:] == [2.0] * (ROWS - 6)  # all rows are within 300 s of row 6


def test_a_host_without_flow_records_has_null_egress(out):
    lab = out.filter(pl.col("host") == "lab")
    assert lab.select(pl.col(NAMES[:3]).null_count()).row(0) == (ROWS,) * 3


def test_after_hours_volume_only_after_19h(out):
    ward = out.filter(pl.col("host") == "ward")
    evening = ward["ts"].dt.hour() >= 19
    assert ward.filter(~evening)["after_hours_tx_bytes_per_s"].to_list() == [0.0] * 24
    assert ward.filter(evening)["after_hours_tx_bytes_per_s"].to_list() == [1000.0] * 24
    assert ward.filter(~evening)["after_hours_tx_bytes_1h"].to_list() == [0.0] * 24
    assert ward.filter(evening)["after_hours_tx_bytes_1h"].to_list() == [5000.0 * (k + 1) for k in range(24)]


def test_settings_move_the_allow_list_and_the_hours():
    settings = {"allowed_destinations": ["8.8.8.0/24"], "after_hours": [0, 19], "interval_seconds": 5}
    out = packs.compute_all(_frame(), _flows(FLOWS), packs.load(("healthcare",), {"healthcare": settings}))
    assert _row(out, "ward", 2)["egress_disallowed_bytes_per_s"] == 1500 / 5  # now 10.1.2.3 is the outsider
    assert _row(out, "ward", 0)["after_hours_tx_bytes_per_s"] == 1000.0  # 18:58 is before 19:00
    assert _row(out, "ward", 47)["after_hours_tx_bytes_per_s"] == 0.0


def test_empty_flows_and_frame():
    out = packs.compute_all(_frame().clear(), _flows([]), packs.load(("healthcare",), {}))
    assert out.height == 0 and out.columns == _frame().columns + NAMES


def test_a_future_change_never_moves_an_earlier_value(out):
    cut = 30
    frame = _frame().with_columns(
        pl.when(pl.col("ts") >= _ts(cut)).then(7e6).otherwise(pl.col("net_tx_bytes_per_s")).alias("net_tx_bytes_per_s")
    )
    later_flows = FLOWS + [("ward", _ns(cut), "1.1.1.1", 10**9), ("ward", _ns(cut + 1), "8.8.8.8", 10**6),
                           ("lab", _ns(cut + 2), "9.9.9.9", 10)]  # lab's first flow record
    again = packs.compute_all(frame, _flows(later_flows), packs.load(("healthcare",), {}))
    earlier = pl.col("ts") < _ts(cut)
    assert again.filter(earlier).equals(out.filter(earlier))
    assert not again.filter(~earlier).equals(out.filter(~earlier))
