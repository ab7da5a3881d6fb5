"""Entering a Linux network namespace: how a node runs on a simulated host.

``devstack up --hosts K`` makes namespaces of its own (``devstack/netns.py``) and
starts each node in one: the node enters its host's namespace before it makes any
socket, so its API is on the host's loopback (reached from the machine through
the host's forwarder, ``devstack/forward.py``) and libp2p on the host's address.
The forwarder uses :func:`enter` too, after it bound its sockets outside.
"""

from __future__ import annotations

import ctypes
import os

_CLONE_NEWNET = 0x40000000


def enter(netns: str) -> None:
    """Move the calling thread into the named namespace (``ip netns`` names it under
    /var/run/netns); threads it starts later follow it, sockets made before stay
    where they were made. Raises OSError naming the namespace."""
    try:
        fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    except OSError as exc:
        raise OSError(exc.errno, f"no network namespace {netns}: {exc.strerror}") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot enter network namespace {netns}: {os.strerror(errno)}")
    finally:
        os.close(fd)
