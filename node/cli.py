"""``bacalhau-node``: run one node process."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
from pathlib import Path

import trio

from node import logs, namespace
from node.argtypes import add_forgery_args, add_instrument_args, forgery_refused, positive
from node.badactor import Forgery
from node.bidder import BIDDERS, DEFAULT_BIDDER, DEFAULT_STEP_S
from node.node import Node, NodeConfig
from node.requester import BID_WINDOW_S, DEFAULT_DISPATCH, DISPATCHES, MAX_BID_ROUNDS

log = logging.getLogger(__name__)


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1-65535)")
    return value


_positive = positive(int)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bacalhau-node", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a node until SIGTERM or Ctrl+C")
    run.add_argument("--data-dir", type=Path, required=True, help="key, store and results")
    run.add_argument(
        "--swarm-port", type=_port, default=None, help="libp2p TCP port (or give --listen)"
    )
    run.add_argument("--api-port", type=_port, required=True, help="HTTP API port")
    run.add_argument(
        "--direct-port",
        type=_port,
        default=0,
        help="libp2p TCP port for job messages (default: any free port)",
    )
    run.add_argument(
        "--peer", action="append", default=[], metavar="MULTIADDR", help="peer to join (repeat)"
    )
    run.add_argument(
        "--host", default="127.0.0.1", help="the API's address (loopback only; default 127.0.0.1)"
    )
    run.add_argument(
        "--listen",
        type=_tcp_multiaddr,
        default=None,
        metavar="MULTIADDR",
        help="libp2p's listen address, /ip4/ADDR/tcp/PORT (e.g. /ip4/0.0.0.0/tcp/4001 on a"
        " machine that peers on other machines dial; default: --host and --swarm-port)",
    )
    run.add_argument(
        "--announce-addr",
        type=_ip4_multiaddr,
        default=None,
        metavar="MULTIADDR",
        help="the address peers are told to dial, /ip4/ADDR[/tcp/PORT] (needed with"
        " --listen /ip4/0.0.0.0/...: the machine's routable address)",
    )
    run.add_argument(
        "--netns",
        default=None,
        metavar="NAME",
        help="run in this network namespace (devstack --hosts), the API on its loopback",
    )
    run.add_argument("--bidder", choices=sorted(BIDDERS), default=DEFAULT_BIDDER)
    run.add_argument(
        "--dispatch",
        choices=DISPATCHES,
        default=DEFAULT_DISPATCH,
        help="offer jobs to ranked nodes, gossip as the fallback (offer), or gossip alone",
    )
    run.add_argument(
        "--offer-first",
        action="append",
        default=[],
        metavar="PEER_ID",
        help="a test hook: offer every shard's first runs to this node before any other"
        " (repeatable; tests force bad actors into jobs)",
    )
    run.add_argument(
        "--bid-step", type=float, default=DEFAULT_STEP_S, help="seconds between bidding bands"
    )
    run.add_argument(
        "--bid-window", type=float, default=BID_WINDOW_S, help="first bid window, seconds"
    )
    run.add_argument(
        "--bid-rounds", type=_positive, default=MAX_BID_ROUNDS, help="bid windows before error"
    )
    run.add_argument(
        "--slots", type=_positive, default=None, help="shards at once (default: cores)"
    )
    run.add_argument("--cpu", type=float, default=None, help="cores offered (default: all)")
    run.add_argument("--memory", type=_positive, default=None, help="bytes offered (default: all)")
    add_instrument_args(run)
    run.add_argument(
        "--bad-actor", action="store_true", help="forge results (shows the verifier at work)"
    )
    add_forgery_args(run)
    run.add_argument("--log-file", type=Path, default=None, help="default: stderr")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def _tcp_multiaddr(text: str) -> tuple[str, int]:
    """``/ip4/ADDR/tcp/PORT`` as (ADDR, PORT)."""
    parts = text.strip().split("/")
    if len(parts) != 5 or parts[0] or parts[1] != "ip4" or parts[3] != "tcp":
        raise argparse.ArgumentTypeError(f"{text!r} is not /ip4/ADDR/tcp/PORT")
    return _ip4(parts[2], text), _port(parts[4])


def _ip4_multiaddr(text: str) -> str:
    """``/ip4/ADDR`` or ``/ip4/ADDR/tcp/PORT``: ADDR."""
    parts = text.strip().split("/")
    if len(parts) not in (3, 5) or parts[0] or parts[1] != "ip4":
        raise argparse.ArgumentTypeError(f"{text!r} is not /ip4/ADDR or /ip4/ADDR/tcp/PORT")
    if len(parts) == 5:
        _tcp_multiaddr(text)
    return _ip4(parts[2], text)


def _ip4(address: str, text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(address))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {address!r} is not an IPv4 address") from None


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    """The node's configuration; raises SystemExit (usage) for a missing port."""
    listen_host, swarm_port = args.listen if args.listen else (None, args.swarm_port)
    if swarm_port is None:
        raise SystemExit("bacalhau-node run: give --swarm-port or --listen /ip4/ADDR/tcp/PORT")
    refused = forgery_refused(int(args.bad_actor), args.collude, args.bad_actor_rate)
    if refused is not None:
        raise SystemExit(f"bacalhau-node run: {refused}")
    return NodeConfig(
        data_dir=args.data_dir,
        swarm_port=swarm_port,
        api_port=args.api_port,
        direct_port=args.direct_port,
        peers=tuple(args.peer),
        host=args.host,
        listen_host=listen_host,
        announce_host=args.announce_addr,
        netns=args.netns,
        bidder=args.bidder,
        dispatch=args.dispatch,
        offer_first=tuple(args.offer_first),
        bid_step=args.bid_step,
        bid_window=args.bid_window,
        bid_rounds=args.bid_rounds,
        slots=args.slots,
        cpu=args.cpu,
        memory=args.memory,
        lock_warn_ms=args.lock_warn_ms,
        stall_ms=args.stall_ms,
        forgery=Forgery(args.collude, args.bad_actor_rate) if args.bad_actor else None,
        log_file=args.log_file,
    )


async def serve_until_signalled(config: NodeConfig) -> None:
    """Run a node until SIGTERM or SIGINT, then shut it down in order."""
    node = Node(config)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.run)
            async for signum in signals:
                log.info("signal %s: shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def enter_host(config: NodeConfig) -> None:
    """For a node on a devstack host (``config.netns``): move into the host's
    namespace before any socket is made, so the API is on the host's loopback and
    libp2p on the host's address. Raises OSError if it cannot."""
    if config.netns is not None:
        namespace.enter(config.netns)


def run_node(config: NodeConfig, log_level: str = "info") -> int:
    """Configure logging (to ``config.log_file``), enter the node's host if it has one,
    and serve; the exit status of a node process."""
    logs.configure(config.log_file, log_level)
    try:
        enter_host(config)
        trio.run(serve_until_signalled, config)
    except Exception:
        log.exception("node failed")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"refusing to bind {args.host}: only loopback is allowed here", file=sys.stderr)
        return 2
    return run_node(config_from_args(args), args.log_level)


if __name__ == "__main__":
    sys.exit(main())
