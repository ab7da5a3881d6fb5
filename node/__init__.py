"""The py-bacalhau node process: job model, transport, roles, executors, store, API."""
