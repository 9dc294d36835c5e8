"""Parsing and printing of the times users type: ISO 8601, epoch seconds, or "2h" ago.

>>> parse_time("2026-01-01T00:00:00Z")
1767225600000000000
>>> parse_time("1767225600")
1767225600000000000
>>> parse_time("90s", now_ns=1767225600000000000)
1767225510000000000
>>> format_ns(1767225600000000000)
'2026-01-01T00:00:00Z'
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from amoskys.errors import InputError

NS = 1_000_000_000
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def now_ns() -> int:
    return time.time_ns()


def parse_time(text: str, now_ns: int | None = None) -> int:
    """UTC nanoseconds for an ISO 8601 time (naive means UTC), epoch seconds, or a
    duration ago such as ``15m``, ``2h``, ``7d``."""
    text = text.strip()
    ago = _AGO.fullmatch(text)
    if ago:
        seconds = float(ago.group(1)) * _UNIT_SECONDS[ago.group(2)]
        return (time.time_ns() if now_ns is None else now_ns) - int(seconds * NS)
    try:
        return int(round(float(text) * NS))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"cannot read time {text!r}: use ISO 8601 (2026-01-01T12:00:00Z), epoch seconds, or an age like 15m, 2h, 7d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


def format_ns(ts_ns: int) -> str:
    """ISO 8601 UTC, to the second (or to the millisecond when it has a fraction)."""
    moment = datetime.fromtimestamp(ts_ns // NS, tz=timezone.utc)
    millis = (ts_ns % NS) // 1_000_000
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"
