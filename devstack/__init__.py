"""Cluster launcher and the ``devstack`` CLI: up/down, jobs, benchmarks."""
