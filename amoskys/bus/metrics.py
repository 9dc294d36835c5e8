"""The bus's live counters in the Prometheus text exposition format, over plain HTTP.

Served on ``http://host:metrics_port/metrics`` by a small threaded ``http.server``
(the format is simple enough not to need a client library). Counters are since the
bus started; ``amoskys bus stats`` reads the persisted totals from the store instead.

>>> from collections import Counter
>>> text = render(Counter({("ok", ""): 2}), Counter({"stored": 1000, "rejected:bad_value": 3}),
...               {0.5: 0.004, 0.9: 0.006, 0.99: 0.01}, 2, 0.01, {})
>>> 'amoskys_bus_events_total{outcome="rejected",reason="bad_value"} 3' in text
True
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ALWAYS_SHOWN = ("stored", "duplicate")  # present from the start, so a rate() has a first sample


def render(envelopes: Counter, events: Counter, quantiles: dict[float, float], latency_count: int,
           latency_sum_s: float, gauges: dict[str, tuple[str, float]]) -> str:  # fmt: skip
    """The exposition text; gauges maps a metric name to (help, value)."""
    lines = [
        "# HELP amoskys_bus_events_total Events by final outcome since the bus started.",
        "# TYPE amoskys_bus_events_total counter",
    ]
    for outcome in ALWAYS_SHOWN:
        lines.append(f'amoskys_bus_events_total{{outcome="{outcome}"}} {events.get(outcome, 0)}')
    for outcome, n in sorted(events.items()):
        if outcome not in ALWAYS_SHOWN:
            kind, _, reason = outcome.partition(":")
            lines.append(f'amoskys_bus_events_total{{outcome="{_escape(kind)}",reason="{_escape(reason)}"}} {n}')
    lines += [
        "# HELP amoskys_bus_envelopes_total Envelopes answered since the bus started, by ack status and reason.",
        "# TYPE amoskys_bus_envelopes_total counter",
    ]
    for (status, reason), n in sorted(envelopes.items()):
        lines.append(f'amoskys_bus_envelopes_total{{status="{_escape(status)}",reason="{_escape(reason)}"}} {n}')
    lines += [
        "# HELP amoskys_bus_publish_latency_seconds Time from receiving an envelope to its ack (recent quantiles).",
        "# TYPE amoskys_bus_publish_latency_seconds summary",
    ]
    for q, seconds in sorted(quantiles.items()):
        value = "NaN" if math.isnan(seconds) else f"{seconds:.6f}"
        lines.append(f'amoskys_bus_publish_latency_seconds{{quantile="{q}"}} {value}')
    lines += [f"amoskys_bus_publish_latency_seconds_sum {latency_sum_s:.6f}",
              f"amoskys_bus_publish_latency_seconds_count {latency_count}"]  # fmt: skip
    for name, (help_text, value) in sorted(gauges.items()):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {_number(value)}"]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(label: str) -> str:
    return label.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


class MetricsServer:
    """``GET /metrics`` -> ``page()``, on its own thread; ``close()`` stops it."""

    def __init__(self, host: str, port: int, page: Callable[[], str]):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = page().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes every few seconds are not news
                pass

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        self.address = f"http://{host}:{self._http.server_address[1]}/metrics"
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), name="bus-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()
