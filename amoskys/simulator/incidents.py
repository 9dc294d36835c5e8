"""Incident kinds and the schedule that places them on hosts.

About one incident per host-hour over the fleet, each lasting 3-10 minutes (never more
than a quarter of the run), with at least five minutes of benign time (less on very
short runs) before, between and after them. When there are four or more hosts, some
stay fully benign so there is a clean baseline to compare against. Kinds are dealt
round-robin from a seeded shuffle, so any run with six or more incidents has every kind.

>>> import numpy as np
>>> plan = schedule(["sim-host-00"], samples=720, interval_s=5.0, start_ns=0, rng=np.random.default_rng(3))
>>> [(i.kind in INCIDENT_KINDS, i.end_ns - i.start_ns <= 600 * 10**9) for i in plan]
[(True, True)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INCIDENT_KINDS = ("crypto_miner", "memory_leak", "port_scan", "data_exfiltration", "fork_storm", "disk_thrash")

QUIET_S = 300.0  # benign time kept before, between and after incidents
SHORTEST_S = 180.0
LONGEST_S = 600.0
MAX_RUN_SHARE = 0.25  # no incident lasts longer than this share of the run
BENIGN_HOST_SHARE = 0.15  # of fleets of four hosts or more, kept free of incidents
_MIN_FLEET_WITH_BENIGN = 4


@dataclass(frozen=True)
class Incident:
    host: str
    kind: str  # one of INCIDENT_KINDS
    start_ns: int  # first labeled sample time (inclusive)
    end_ns: int  # end (exclusive)


def interval_ns(interval_s: float) -> int:
    return round(interval_s * 1e9)


def schedule(
    hosts: list[str], samples: int, interval_s: float, start_ns: int, rng: np.random.Generator
) -> list[Incident]:
    """Incidents for a run of `samples` samples per host, sorted by host and start."""
    step_ns = interval_ns(interval_s)
    quiet = max(1, min(round(QUIET_S / interval_s), samples // 8))
    longest = min(max(1, round(LONGEST_S / interval_s)), int(samples * MAX_RUN_SHARE))
    if longest < 1:
        return []
    shortest = min(max(1, round(SHORTEST_S / interval_s)), longest)

    order = [int(i) for i in rng.permutation(len(hosts))]
    benign = max(1, round(BENIGN_HOST_SHARE * len(hosts))) if len(hosts) >= _MIN_FLEET_WITH_BENIGN else 0
    targets = order[benign:]
    kinds = [INCIDENT_KINDS[int(i)] for i in rng.permutation(len(INCIDENT_KINDS))]
    count = max(1, round(len(hosts) * samples * interval_s / 3600.0))
    lengths = rng.integers(shortest, longest + 1, size=count)

    planned: dict[int, list[tuple[str, int]]] = {host: [] for host in targets}
    for number, length in enumerate(lengths):
        kind = kinds[number % len(kinds)]
        # Deal to the next host in turn; a host whose run is full passes to the next one.
        for turn in range(len(targets)):
            host = targets[(number + turn) % len(targets)]
            booked = planned[host]
            if sum(taken for _, taken in booked) + int(length) + (len(booked) + 2) * quiet <= samples:
                booked.append((kind, int(length)))
                break

    incidents = []
    for host, booked in planned.items():
        for kind, first, stop in _place(booked, samples, quiet, rng):
            incidents.append(Incident(hosts[host], kind, start_ns + first * step_ns, start_ns + stop * step_ns))
    return sorted(incidents, key=lambda incident: (incident.host, incident.start_ns))


def _place(
    booked: list[tuple[str, int]], samples: int, quiet: int, rng: np.random.Generator
) -> list[tuple[str, int, int]]:
    """(kind, first sample, stop sample) for each booked incident, in random order and at random gaps."""
    if not booked:
        return []
    booked = [booked[int(i)] for i in rng.permutation(len(booked))]
    slack = samples - sum(length for _, length in booked) - (len(booked) + 1) * quiet
    cuts = np.sort(rng.integers(0, slack + 1, size=len(booked)))
    extra_gaps = np.diff(cuts, prepend=0)
    placed = []
    position = 0
    for (kind, length), extra in zip(booked, extra_gaps):
        position += quiet + int(extra)
        placed.append((kind, position, position + length))
        position += length
    return placed
