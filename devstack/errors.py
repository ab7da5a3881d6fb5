"""The errors the ``devstack`` CLI reports in one line, with exit status 1.

Every part of the devstack that fails for a reason the user can act on raises a
:class:`DevstackError` whose text says why and what to do: the launcher
(:class:`ClusterError`), the state file (``devstack.state.StateError``), a job that
no node knows (``devstack.jobs.JobNotFound``) and the node API client
(``devstack.client.NodeApiError``). Anything else is a bug and shows its traceback.
"""

from __future__ import annotations


class DevstackError(RuntimeError):
    """Something the user can act on; the text says what."""


class ClusterError(DevstackError):
    """The cluster cannot be brought up or down, or a verb cannot run on it."""


class UsageError(DevstackError):
    """The command line is wrong in a way its parser cannot see (exit status 2)."""
