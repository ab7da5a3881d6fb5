"""``devstack add`` and ``fetch``: content in a node's store, by CID."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from devstack import state as st
from devstack.client import NodeClient
from devstack.verbs import local_files_reported, running_cluster


def add_tree(client: NodeClient, path: str) -> str:
    """Add the file or directory at ``path`` to the node's content store; its CID."""
    from node.content.tarball import path_entries, tar_stream

    name = os.path.basename(os.path.abspath(path)) or "root"
    os.lstat(path)  # a clear error for a path that is not there
    return client.add_content(tar_stream(path_entries(path, name)))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path")
    p.add_argument("--node", default="0", help="node to add to (default 0)")


def add(args: argparse.Namespace) -> int:
    node = st.find_node(running_cluster(args.state_dir), args.node)
    with local_files_reported(), NodeClient(node.api) as client:  # a path unreadable
        cid = add_tree(client, args.path)
    print(cid)
    return 0


def fetch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cid")
    p.add_argument("-o", "--output", type=Path, required=True, help="must not exist")
    p.add_argument("--node", default="0", help="node to ask (default 0)")
    p.add_argument(
        "--from",
        dest="provider",
        default=None,
        help="node the asked node fetches it from over bitswap (index, node-N or peer id)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds the fetch may take")


def fetch(args: argparse.Namespace) -> int:
    cluster = running_cluster(args.state_dir)
    node = st.find_node(cluster, args.node)
    providers = [st.find_node(cluster, args.provider).peer_id] if args.provider else []
    with local_files_reported():  # DIR exists, or an archive unsafe to unpack
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with NodeClient(node.api) as client:
            client.fetch_content(args.cid, args.output, providers=providers, timeout=args.timeout)
    print(args.output)
    return 0
