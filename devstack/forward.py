"""The API forwarder of a simulated host: the machine's loopback to the host's own.

A node on a simulated host (README, Several hosts) serves its API on its host's
loopback, as a node on a real machine serves it on that machine's: nothing but
libp2p listens on the bridge. The CLI, the TUI and the benches run in the machine's
namespace and reach the API through the forwarder of the node's host. There is one
forwarder process per host. It listens on the machine's loopback, one port per node
of the host, and passes each connection to the same port on the host's loopback.

It binds its listening sockets before it enters the host's namespace
(:mod:`node.namespace`): a socket stays in the namespace it was made in, and every
connection it makes later is made inside. A connection whose node does not listen
(not yet, or not any more) is closed at once, as a refused one would be.

Run as ``python -m devstack.forward --netns NAME --port P [--port P ...]``; the
launcher starts one per host (:func:`start`) and ``devstack down`` ends it.
"""

from __future__ import annotations

import argparse
import functools
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from node import namespace

_CHUNK = 65536


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
    """Copy ``source`` to ``sink`` until its end, then half-close ``sink``. A broken
    side ends both directions (``done``): nothing more can pass."""
    try:
        while data := await source.receive_some(_CHUNK):
            await sink.send_all(data)
        await sink.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        # A reset, or a half-close the other side no longer takes: one connection's
        # end, never the forwarder's.
        done.cancel()


async def forward(client: trio.SocketStream, port: int) -> None:
    """Pass ``client``'s connection to ``port`` on this namespace's loopback, both
    ways, until both sides have ended."""
    async with client:
        try:
            inner = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            return
        async with inner, trio.open_nursery() as nursery:
            nursery.start_soon(_pipe, client, inner, nursery.cancel_scope)
            nursery.start_soon(_pipe, inner, client, nursery.cancel_scope)


async def serve(routes: Sequence[tuple[socket.socket, int]]) -> None:
    """Until cancelled, forward every connection of each listening socket to its
    port on this namespace's loopback (the same port as the socket's, but for tests)."""
    async with trio.open_nursery() as nursery:
        for sock, port in routes:
            listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
            handler = functools.partial(forward, port=port)
            nursery.start_soon(trio.serve_listeners, handler, [listener])


def bind(ports: Sequence[int]) -> list[socket.socket]:
    """A listening socket on the machine's loopback for each port, in order; OSError
    if one is taken (the others are closed)."""
    bound: list[socket.socket] = []
    try:
        for port in ports:
            bound.append(socket.create_server(("127.0.0.1", port), backlog=128))
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


def start(netns: str, ports: Sequence[int], log_file: Path) -> subprocess.Popen[bytes]:
    """Start the forwarder of the host ``netns`` for the APIs on ``ports``, in a
    session of its own (a Ctrl+C of the launcher does not reach it), its errors to
    ``log_file``."""
    argv = [sys.executable, "-m", "devstack.forward", "--netns", netns]
    for port in ports:
        argv += ["--port", str(port)]
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.forward",
        description="forward the machine's loopback ports to a simulated host's loopback",
    )
    parser.add_argument("--netns", required=True, help="the host's network namespace")
    parser.add_argument(
        "--port", type=int, action="append", required=True, help="a node's API port (repeat)"
    )
    args = parser.parse_args(argv)
    try:
        listeners = bind(args.port)
        namespace.enter(args.netns)
    except OSError as exc:
        print(f"devstack.forward: {exc}", file=sys.stderr)
        return 1
    try:
        trio.run(serve, list(zip(listeners, args.port, strict=True)))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
