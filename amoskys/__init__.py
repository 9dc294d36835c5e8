"""AMOSKYS: security telemetry and threat detection."""

__version__ = "0.1.0"
