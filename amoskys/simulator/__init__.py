"""Labeled telemetry simulator: a fleet of hosts with realistic baselines and injected incidents.

Every metric of the canonical catalogue is produced for every host and interval; rows
inside an incident window carry label 1 and the incident's kind. Output is fully
determined by the arguments (seed included).
"""

from amoskys.simulator.generate import DEFAULT_START_NS, Simulation, simulate
from amoskys.simulator.incidents import INCIDENT_KINDS, Incident

__all__ = ["DEFAULT_START_NS", "INCIDENT_KINDS", "Incident", "Simulation", "simulate"]
