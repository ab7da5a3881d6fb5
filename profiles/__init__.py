"""Profiling toolkit: instrumented locks, event-loop stall detector, profiler sessions."""
