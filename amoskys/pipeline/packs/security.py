"""Security pack: indicators of port scans, process churn, exfiltration, mining, leaks and fork storms.

Every window is in time, per host, and looks back only (past and present rows), so a
live detector computes the same values event by event. Baselines ("the host's own
normal") are medians over the hour before the row, excluding the row: a 5-minute
baseline would catch up with a sustained upload or fork storm within half its length
and hide the rest of it, while an incident of up to 10 minutes cannot drag an hour's
median to its own level.
"""

from __future__ import annotations

import polars as pl

from amoskys.pipeline.features import (
    DOMAIN, HOST_SECONDS, HOST_TIME, Feature, FeatureDef, safe_ratio, same_host, seconds, with_host_time,
)  # fmt: skip
from amoskys.pipeline.packs._common import HOST_GAP_S, check_settings, median_before, roll, slope_per_s

NAME = "security"
SHORT_S, LONG_S, BASELINE_S = 60.0, 300.0, 3600.0
# The hour-before medians, computed before the features that divide by them (see compute).
BASELINES = {"net_tx_bytes_per_s": "_tx_baseline", "process_forks_per_s": "_forks_baseline"}
TX_FLOOR_BYTES_PER_S = 1024.0  # baselines below this are raised to it: an idle host's surge stays finite
FORK_FLOOR_PER_S = 1.0  # likewise for forks


def _ratio(numerator: pl.Expr, denominator: pl.Expr, idle: float) -> pl.Expr:
    """numerator / denominator; idle when both are 0 (nothing happened: a value, not a gap), null when only
    the denominator is."""
    return pl.when((numerator == 0) & (denominator == 0)).then(idle).otherwise(safe_ratio(numerator, denominator))


def _exited_per_s() -> pl.Expr:
    """Processes that exited since the previous row, per second: forks minus the growth in process_count."""
    elapsed = pl.col("ts").diff().dt.total_nanoseconds() / 1e9
    growth = pl.when(same_host()).then(pl.col("process_count").diff() / elapsed)  # null at a host's first row
    return (pl.col("process_forks_per_s") - growth).clip(lower_bound=0.0)


def _variability(*columns: str) -> pl.Expr:
    """Coefficient of variation of the columns' sum over LONG_S, capped at 1; flat (or all-zero) traffic is 0."""
    total = pl.sum_horizontal(columns)
    return safe_ratio(roll(total, "std", LONG_S), roll(total, "mean", LONG_S)).fill_null(0.0).clip(0.0, 1.0)


def _defs() -> list[FeatureDef]:
    fails, rsts = pl.col("tcp_attempt_fails_per_s"), pl.col("tcp_out_rsts_per_s")
    forks, tx, rx = pl.col("process_forks_per_s"), pl.col("net_tx_bytes_per_s"), pl.col("net_rx_bytes_per_s")
    exited = _exited_per_s()
    mem_share = safe_ratio(pl.col("mem_used_bytes"), pl.col("mem_total_bytes"))
    short, long, base = seconds(SHORT_S), seconds(LONG_S), seconds(BASELINE_S)
    disk, net = ("disk_read_bytes_per_s", "disk_write_bytes_per_s"), ("net_rx_bytes_per_s", "net_tx_bytes_per_s")
    flatness = 1.0 - (_variability(*disk) + _variability(*net)) / 2.0
    rows = [
        ("scan_fail_rate_60s", "1/s", "Failed TCP connection attempts per second, mean over 60 s: a connect() scan "
         "makes hundreds, a healthy host almost none.", ("tcp_attempt_fails_per_s",), short,
         roll(fails, "mean", SHORT_S)),
        ("scan_rst_rate_60s", "1/s", "TCP RST segments sent per second, mean over 60 s: scanners abort the "
         "connections that did open.", ("tcp_out_rsts_per_s",), short, roll(rsts, "mean", SHORT_S)),
        ("scan_fail_share_60s", "ratio", "Failed TCP attempts per active open over 60 s (can exceed 1 when "
         "earlier opens fail late); a scan keeps it near 1.", ("tcp_attempt_fails_per_s", "tcp_active_opens_per_s"),
         short, _ratio(roll(fails, "sum", SHORT_S), roll(pl.col("tcp_active_opens_per_s"), "sum", SHORT_S), 0.0)),
        ("scan_fail_burstiness_60s", "ratio", "Peak over mean of the failed-attempt rate over 60 s: high for "
         "short probing bursts, 1 for a steady rate or none.", ("tcp_attempt_fails_per_s",), short,
         _ratio(roll(fails, "max", SHORT_S), roll(fails, "mean", SHORT_S), 1.0)),
        ("scan_rst_burstiness_60s", "ratio", "Peak over mean of the RST rate over 60 s.", ("tcp_out_rsts_per_s",),
         short, _ratio(roll(rsts, "max", SHORT_S), roll(rsts, "mean", SHORT_S), 1.0)),
        ("proc_new_per_min_60s", "1/min", "Processes and threads created per minute, over 60 s.",
         ("process_forks_per_s",), short, roll(forks, "mean", SHORT_S) * 60.0),
        ("proc_exited_per_min_60s", "1/min", "Processes that exited per minute over 60 s, estimated as forks minus "
         "the growth in process_count.", ("process_forks_per_s", "process_count"), short,
         roll(exited, "mean", SHORT_S) * 60.0),
        ("proc_short_lived_share_300s", "ratio", "Share of the processes created over 300 s that also exited "
         "(0..1): spawn-and-die churn.", ("process_forks_per_s", "process_count"), long,
         safe_ratio(roll(exited, "mean", LONG_S), roll(forks, "mean", LONG_S)).clip(0.0, 1.0)),
        ("exfil_tx_surge", "ratio", "Bytes sent per second (mean over 60 s) over the host's median of the hour "
         "before (baseline at least 1 KiB/s).", ("net_tx_bytes_per_s",), base,
         safe_ratio(roll(tx, "mean", SHORT_S),
                    pl.col(BASELINES["net_tx_bytes_per_s"]).clip(lower_bound=TX_FLOOR_BYTES_PER_S))),
        ("exfil_tx_share_60s", "ratio", "Sent bytes as a share of sent plus received over 60 s (0..1): a bulk "
         "upload pushes it to 1.", ("net_tx_bytes_per_s", "net_rx_bytes_per_s"), short,
         safe_ratio(roll(tx, "sum", SHORT_S), roll(tx + rx, "sum", SHORT_S))),
        ("mining_indicator_300s", "ratio", "Sustained user-mode CPU with flat disk and network (0..1): mean "
         "cpu_user share over 300 s times 1 - the mean of the disk and network byte rates' coefficients of "
         "variation (each capped at 1). User mode, so a fork storm's kernel time does not count.",
         ("cpu_user_pct", *disk, *net), long,
         (roll(pl.col("cpu_user_pct"), "mean", LONG_S) / 100.0).clip(0.0, 1.0) * flatness),
        ("mem_leak_slope_300s", "1/h", "Least-squares slope of used memory over 300 s, as a share of total "
         "memory per hour.", ("mem_used_bytes", "mem_total_bytes"), long, slope_per_s(mem_share, LONG_S) * 3600.0),
        ("fork_surge", "ratio", "Forks per second (mean over 60 s) over the host's median of the hour before "
         "(baseline at least 1/s).", ("process_forks_per_s",), base,
         safe_ratio(roll(forks, "mean", SHORT_S),
                    pl.col(BASELINES["process_forks_per_s"]).clip(lower_bound=FORK_FLOOR_PER_S))),
        ("procs_running_per_core", "ratio", "Runnable processes per logical core: above a few, tasks queue for "
         "CPU.", ("procs_running_count", "cpu_count"), None,
         safe_ratio(pl.col("procs_running_count"), pl.col("cpu_count"))),
    ]  # fmt: skip
    return [FeatureDef(Feature(name, DOMAIN, unit, text, inputs, window, pack=NAME), expr)
            for name, unit, text, inputs, window, expr in rows]  # fmt: skip


class SecurityPack:
    name = NAME
    enabled_by_default = True
    description = "Port scans, process churn, exfiltration, crypto-mining, memory leaks and fork storms."

    def settings(self, raw: dict) -> dict:
        return check_settings(NAME, raw, {})

    def features(self, settings: dict) -> list[Feature]:
        self.settings(settings)
        return [d.feature for d in _defs()]

    def compute(self, frame: pl.DataFrame, flows: pl.DataFrame, settings: dict) -> pl.DataFrame:
        self.settings(settings)
        keyed = with_host_time(frame, HOST_GAP_S)
        keyed = keyed.with_columns(median_before(keyed, c, BASELINE_S).alias(name) for c, name in BASELINES.items())
        out = keyed.with_columns(d.expr.alias(d.feature.name) for d in _defs())
        return out.drop(HOST_TIME, HOST_SECONDS, *BASELINES.values())


PACK = SecurityPack()
