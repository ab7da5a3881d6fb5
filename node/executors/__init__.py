"""Executors: how a node runs one shard of a job (``docker``, ``noop``)."""
