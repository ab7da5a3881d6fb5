"""The API forwarder (``devstack/forward.py``) within one namespace: what a client
sends reaches the target and comes back whole, both ways, half-closes included;
a target that does not listen closes the client's connection; a port taken
refuses the whole bind. (Across namespaces: ``tests/integration/test_hosts.py``.)"""

from __future__ import annotations

import contextlib
import functools
import socket

import pytest
import trio

from devstack import forward
from devstack.cluster import free_ports

pytestmark = pytest.mark.timeout(60)


async def _echo(stream: trio.SocketStream) -> None:
    """Sends back what it gets; half-closes when its client did."""
    async with stream:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
        await stream.send_eof()


async def _receive_all(stream: trio.SocketStream) -> bytes:
    got = bytearray()
    while data := await stream.receive_some(65536):
        got += data
    return bytes(got)


def test_a_connection_passes_both_ways_to_its_end() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB: more than any buffer on the way

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            serve_echo = functools.partial(trio.serve_tcp, _echo, 0, host="127.0.0.1")
            target = (await nursery.start(serve_echo))[0]
            target_port = target.socket.getsockname()[1]
            [listener] = forward.bind(free_ports(1))
            front = listener.getsockname()[1]
            nursery.start_soon(forward.serve, [(listener, target_port)])
            for _ in range(3):  # each connection on its own
                client = await trio.open_tcp_stream("127.0.0.1", front)
                async with client, trio.open_nursery() as inner:

                    async def send() -> None:
                        await client.send_all(payload)  # noqa: B023 - awaited in this pass
                        await client.send_eof()  # noqa: B023

                    inner.start_soon(send)
                    assert await _receive_all(client) == payload
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_target_that_does_not_listen_closes_the_connection() -> None:
    async def main() -> None:
        nobody = free_ports(1)[0]
        [listener] = forward.bind(free_ports(1))
        front = listener.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward.serve, [(listener, nobody)])
            client = await trio.open_tcp_stream("127.0.0.1", front)
            async with client:
                # Closed, or closed with a reset: the same to an HTTP client.
                with trio.fail_after(10), contextlib.suppress(trio.BrokenResourceError):
                    assert await client.receive_some(1024) == b""
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_port_taken_refuses_the_bind_and_closes_the_others() -> None:
    free, taken = free_ports(2)
    holder = socket.create_server(("127.0.0.1", taken))
    try:
        with pytest.raises(OSError):
            forward.bind([free, taken])
        # The first was closed again: it can be bound now.
        socket.create_server(("127.0.0.1", free)).close()
    finally:
        holder.close()
