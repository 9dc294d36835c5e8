"""Healthcare pack: data leaving for destinations outside an allow-list, and transfers after hours.

Patient data may only go to the networks listed in ``allowed_destinations``; any egress
elsewhere is worth a look, more so at night. Flows are bucketed like stage 1 (flow time
floored to the frame's interval), so each row counts the flows of its own interval.
Rows before a host's first flow record get null egress features (nothing observed
yet, which is not the same as nothing leaving); later rows without flows get 0. A
destination that is not an IP address counts as outside.

Settings (``[packs.healthcare]``): ``allowed_destinations`` (CIDR strings),
``after_hours`` ([start_hour, end_hour] in UTC; the range wraps midnight when start >
end, and is empty when they are equal), ``interval_seconds`` (the frame's row spacing;
default: derived from the frame).
"""

from __future__ import annotations

import ipaddress

import polars as pl

from amoskys.errors import ConfigError
from amoskys.pipeline.features import DOMAIN, Feature, safe_ratio, seconds
from amoskys.pipeline.packs._common import check_settings, interval_ns

NAME = "healthcare"
SPEC = {
    "allowed_destinations": (list, ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]),
    "after_hours": (list, [19, 7]),
    "interval_seconds": (float, None),
}
DESTINATIONS_WINDOW_S = 300.0
AFTER_HOURS_WINDOW_S = 3600.0


def _networks(settings: dict) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for cidr in settings["allowed_destinations"]:
        try:
            if not isinstance(cidr, str):  # ip_network(10) would read an int as an address
                raise ValueError(cidr)
            networks.append(ipaddress.ip_network(cidr))
        except ValueError:
            raise ConfigError(f"packs.{NAME}.allowed_destinations: {cidr!r} is not a CIDR such as 10.0.0.0/8") from None
    return networks


def _settings(raw: dict) -> dict:
    settings = check_settings(NAME, raw, SPEC)
    _networks(settings)
    hours = settings["after_hours"]
    if len(hours) != 2 or not all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= 24 for h in hours):
        raise ConfigError(f"packs.{NAME}.after_hours must be [start_hour, end_hour], hours 0-24 UTC (got {hours!r})")
    if settings["interval_seconds"] is not None and settings["interval_seconds"] <= 0:
        raise ConfigError(f"packs.{NAME}.interval_seconds must be positive (got {settings['interval_seconds']})")
    return settings


def _features() -> list[Feature]:
    dest_window, hour = seconds(DESTINATIONS_WINDOW_S), seconds(AFTER_HOURS_WINDOW_S)
    flow_inputs = ("flows.bytes_sent", "flows.dst_ip")
    rows = [
        ("egress_disallowed_bytes_per_s", "bytes/s", "Bytes per second sent to destinations outside "
         "allowed_destinations (flow records of the row's interval).", flow_inputs, None),
        ("egress_disallowed_share", "ratio", "Share of the bytes sent in the row's interval (flow records) that "
         "went outside allowed_destinations (0..1; null without egress).", flow_inputs, None),
        ("egress_disallowed_destinations_300s", "count", "Distinct destinations outside allowed_destinations "
         "sent to over the last 300 s.", flow_inputs, dest_window),
        ("after_hours_tx_bytes_per_s", "bytes/s", "Bytes sent per second when the row's UTC hour is within "
         "after_hours, else 0.", ("net_tx_bytes_per_s",), None),
        ("after_hours_tx_bytes_1h", "bytes", "Bytes sent after hours over the last hour.",
         ("net_tx_bytes_per_s",), hour),
    ]  # fmt: skip
    return [Feature(name, DOMAIN, unit, text, inputs, window, pack=NAME) for name, unit, text, inputs, window in rows]


def _disallowed(destinations: pl.Series, networks: list) -> pl.DataFrame:
    """dst_ip -> outside, one Python check per distinct destination."""
    def outside(dst: str) -> bool:
        try:
            address = ipaddress.ip_address(dst)
        except ValueError:
            return True
        return not any(address in network for network in networks)

    unique = destinations.unique()
    return pl.DataFrame({"dst_ip": unique, "_outside": [outside(d) for d in unique]},
                        schema={"dst_ip": pl.String, "_outside": pl.Boolean})  # fmt: skip


def _egress(frame: pl.DataFrame, flows: pl.DataFrame, settings: dict, step: int) -> pl.DataFrame:
    """The three flow features, one row per frame row."""
    keys = frame.select("host", "ts")
    flows = flows.join(_disallowed(flows["dst_ip"], _networks(settings)), on="dst_ip", how="left").with_columns(
        ts=pl.from_epoch(pl.col("ts_ns") // step * step, time_unit="ns").dt.replace_time_zone("UTC"),
        _out_bytes=pl.when("_outside").then("bytes_sent").otherwise(0),
    )
    sums = flows.group_by("host", "ts").agg(_sent=pl.col("bytes_sent").sum(), _out=pl.col("_out_bytes").sum())
    first = flows.group_by("host").agg(_first=pl.col("ts").min())
    distinct = _distinct_outside(keys, flows.filter("_outside").select("host", "dst_ip", "ts").unique())
    out = (
        keys.join(sums, on=["host", "ts"], how="left", maintain_order="left")
        .join(first, on="host", how="left", maintain_order="left")
    ).with_columns(_distinct=distinct)
    # Before a host's first flow record nothing was observed yet: null, not 0.
    observed = (pl.col("ts") >= pl.col("_first")).fill_null(False)
    return out.select(
        pl.when(observed).then(pl.col("_out").fill_null(0) / (step / 1e9)).alias("egress_disallowed_bytes_per_s"),
        pl.when(observed).then(safe_ratio(pl.col("_out"), pl.col("_sent"))).cast(pl.Float64)
        .alias("egress_disallowed_share"),
        pl.when(observed).then(pl.col("_distinct")).cast(pl.Float64).alias("egress_disallowed_destinations_300s"),
    )


def _distinct_outside(keys: pl.DataFrame, seen: pl.DataFrame) -> pl.Series:
    """Per frame row, the distinct destinations of seen (host, dst_ip, ts) within the last window.

    A destination seen at interval b counts in the rows from b until b + window or until it
    is seen again, whichever is first: +1 there, -1 at the end, and the running sum of
    those changes up to a row is the row's count.
    """
    window = pl.duration(seconds=DESTINATIONS_WINDOW_S, time_unit="ns")
    # Sorting by time alone (cheaper than by strings) keeps every group below in time order.
    seen = seen.sort("ts")
    end = pl.min_horizontal(pl.col("ts") + window, pl.col("ts").shift(-1).over("host", "dst_ip"))
    changes = (
        pl.concat([seen.select("host", "ts", _change=pl.lit(1)), seen.select("host", ts=end, _change=pl.lit(-1))])
        .group_by("host", "ts")
        .agg(pl.col("_change").sum())
        .sort("ts")
        .select("host", "ts", _count=pl.col("_change").cum_sum().over("host"))
    )
    rows = keys.with_row_index("_row").sort("ts")
    counted = rows.join_asof(changes, on="ts", by="host", check_sortedness=False).sort("_row")
    return counted["_count"].fill_null(0)


def _after_hours(settings: dict, step: int) -> list[pl.Expr]:
    start, end = settings["after_hours"]
    hour = pl.col("ts").dt.hour()
    inside = (hour >= start) & (hour < end) if start <= end else (hour >= start) | (hour < end)
    rate = pl.when(inside).then(pl.col("net_tx_bytes_per_s")).otherwise(0.0)
    # Each row stands for one interval: its bytes are the rate times the interval.
    volume = (rate * (step / 1e9)).rolling_sum_by("ts", seconds(AFTER_HOURS_WINDOW_S)).over("host")
    return [rate.alias("after_hours_tx_bytes_per_s"), volume.alias("after_hours_tx_bytes_1h")]


class HealthcarePack:
    name = NAME
    enabled_by_default = False
    description = "Egress to destinations outside an allow-list, and transfer volume after hours."

    def settings(self, raw: dict) -> dict:
        return _settings(raw)

    def features(self, settings: dict) -> list[Feature]:
        _settings(settings)
        return _features()

    def compute(self, frame: pl.DataFrame, flows: pl.DataFrame, settings: dict) -> pl.DataFrame:
        settings = _settings(settings)
        step = interval_ns(frame, NAME, settings["interval_seconds"]) if frame.height else 1
        egress = _egress(frame, flows, settings, step)
        return pl.concat([frame, egress], how="horizontal").with_columns(_after_hours(settings, step))


PACK = HealthcarePack()
