"""Indicators and reports (issue 14): pure computations over per-call aggregates
and the qualified half (messages, appointments, deliveries, escalations)."""
