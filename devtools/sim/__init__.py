"""Simulators: the one place that makes test data (frames, fleets, rule scenarios, storage rows)
and reads back what the service exposes (Prometheus text). Tests, benchmarks, the demo and the
load generator all use these; the service never does.
"""
