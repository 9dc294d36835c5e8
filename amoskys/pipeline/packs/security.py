"""Security pack: indicators of port scans, process churn, exfiltration, mining, leaks and fork storms.

Every window is in time, per host, and looks back only (past and present rows), so a
live detector computes the same values event by event. Baselines ("the host's own
normal") are medians over the hour before the row, excluding the row: a 5-minute
baseline would catch up with a sustained upload or fork storm within half its length
and hide the rest of it, while an incident of up to 10 minutes cannot drag an hour's
median to its own level.

A compiled per-host kernel (``_security_kernel``, which says how) computes the values, in
batch here and on a host's buffered recent rows in a live detector. A missing input value
(stage 1 leaves none) makes null every value whose window holds it; the baselines leave
it out.
"""

from __future__ import annotations

import polars as pl

from amoskys.pipeline.features import DOMAIN, Feature, seconds
from amoskys.pipeline.jit import segments
from amoskys.pipeline.packs._common import check_settings
from amoskys.pipeline.packs._security_kernel import BASELINE_S, INPUTS, LONG_S, OUTPUTS, SHORT_S, security_arrays

NAME = "security"


def _features() -> list[Feature]:
    """The declarations, in the order of the pack's columns."""
    fails, forks = ("tcp_attempt_fails_per_s",), ("process_forks_per_s",)
    short, long, base = seconds(SHORT_S), seconds(LONG_S), seconds(BASELINE_S)
    disk, net = ("disk_read_bytes_per_s", "disk_write_bytes_per_s"), ("net_rx_bytes_per_s", "net_tx_bytes_per_s")
    rows = [
        ("scan_fail_rate_60s", "1/s", "Failed TCP connection attempts per second, mean over 60 s: a connect() scan "
         "makes hundreds, a healthy host almost none.", fails, short),
        ("scan_rst_rate_60s", "1/s", "TCP RST segments sent per second, mean over 60 s: scanners abort the "
         "connections that did open.", ("tcp_out_rsts_per_s",), short),
        ("scan_fail_share_60s", "ratio", "Failed TCP attempts per active open over 60 s (can exceed 1 when "
         "earlier opens fail late); a scan keeps it near 1.", ("tcp_attempt_fails_per_s", "tcp_active_opens_per_s"),
         short),
        ("scan_fail_burstiness_60s", "ratio", "Peak over mean of the failed-attempt rate over 60 s: high for "
         "short probing bursts, 1 for a steady rate or none.", fails, short),
        ("scan_rst_burstiness_60s", "ratio", "Peak over mean of the RST rate over 60 s.", ("tcp_out_rsts_per_s",),
         short),
        ("proc_new_per_min_60s", "1/min", "Processes and threads created per minute, over 60 s.", forks, short),
        ("proc_exited_per_min_60s", "1/min", "Processes that exited per minute over 60 s, estimated as forks minus "
         "the growth in process_count.", ("process_forks_per_s", "process_count"), short),
        ("proc_short_lived_share_300s", "ratio", "Share of the processes created over 300 s that also exited "
         "(0..1): spawn-and-die churn.", ("process_forks_per_s", "process_count"), long),
        ("exfil_tx_surge", "ratio", "Bytes sent per second (mean over 60 s) over the host's median of the hour "
         "before (baseline at least 1 KiB/s).", ("net_tx_bytes_per_s",), base),
        ("exfil_tx_share_60s", "ratio", "Sent bytes as a share of sent plus received over 60 s (0..1): a bulk "
         "upload pushes it to 1.", ("net_tx_bytes_per_s", "net_rx_bytes_per_s"), short),
        ("mining_indicator_300s", "ratio", "Sustained user-mode CPU with flat disk and network (0..1): mean "
         "cpu_user share over 300 s times 1 - the mean of the disk and network byte rates' coefficients of "
         "variation (each capped at 1). User mode, so a fork storm's kernel time does not count.",
         ("cpu_user_pct", *disk, *net), long),
        ("mem_leak_slope_300s", "1/h", "Least-squares slope of used memory over 300 s, as a share of total "
         "memory per hour.", ("mem_used_bytes", "mem_total_bytes"), long),
        ("fork_surge", "ratio", "Forks per second (mean over 60 s) over the host's median of the hour before "
         "(baseline at least 1/s).", forks, base),
        ("procs_running_per_core", "ratio", "Runnable processes per logical core: above a few, tasks queue for "
         "CPU.", ("procs_running_count", "cpu_count"), None),
    ]  # fmt: skip
    return [Feature(name, DOMAIN, unit, text, inputs, window, pack=NAME) for name, unit, text, inputs, window in rows]


class SecurityPack:
    name = NAME
    enabled_by_default = True
    description = "Port scans, process churn, exfiltration, crypto-mining, memory leaks and fork storms."

    def settings(self, raw: dict) -> dict:
        return check_settings(NAME, raw, {})

    def features(self, settings: dict) -> list[Feature]:
        self.settings(settings)
        return _features()

    def compute(self, frame: pl.DataFrame, flows: pl.DataFrame, settings: dict) -> pl.DataFrame:
        self.settings(settings)
        columns = tuple(frame.get_column(name).cast(pl.Float64).to_numpy() for name in INPUTS)
        values = security_arrays(frame["ts"].dt.epoch("ns").to_numpy(), columns, segments(frame["host"]))
        # NaN is the kernel's null
        return frame.hstack([pl.Series(f.name, values[OUTPUTS.index(f.name)], nan_to_null=True) for f in _features()])


PACK = SecurityPack()
