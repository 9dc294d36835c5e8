"""Agents: collectors of real telemetry, a durable outbox, and the runtime that seals and sends."""
