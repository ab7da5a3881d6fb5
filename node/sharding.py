"""Owns a job's inputs as the container sees them: where each input tree mounts under
``/inputs``, which entries a sharding glob selects and how they are cut into shards,
and writing all or some of the inputs to a host directory that is mounted at ``/inputs``.

An input is a content-addressed UnixFS tree (a CID) mounted at a container path. Paths
here are container paths (``/inputs/books/a.txt``); entry names come from the tree as
bytes and become path text with ``os.fsdecode``, as :mod:`node.content.reader` writes
them. Blocks are fetched and verified through the :mod:`node.content` reader. The
rules of mount paths and the glob language are :mod:`node.models`' (a spec is checked
against them without loading the node): this module applies them to the trees.

Decisions a caller can rely on:

- A mount path is ``/inputs`` or below it, written without ``.``, ``..`` or empty
  components; one trailing slash is dropped. Mounts never nest.
- A mount at ``/inputs`` itself must be a directory; a mount's root is never a symlink.
- Symlinks inside a tree are not entries: they cannot be listed, matched or selected.
  Writing a directory writes its whole subtree as published, symlinks included.
- Directories above a mount that no tree holds (``/inputs/a`` for a mount at
  ``/inputs/a/b``) are not entries; writing creates them as needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.content import Cid, Get, parse_cid, read_tree
from node.content.blocks import fetch
from node.content.nodes import DirectoryNode, FileNode, Node, SymlinkNode, read_node
from node.models import (
    INPUTS_ROOT,
    InputError,
    ancestors,
    check_mount_path,
    check_mounts,
    glob_match,
)

_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class InputEntry:
    """One file or directory of an input tree, at its container path."""

    path: str
    is_dir: bool
    size: int


def list_entries(mounts: Sequence[tuple[str, Cid]], get: Get) -> list[InputEntry]:
    """Every file and directory of every input tree at its container path, sorted by path.

    A mount whose root is a file is that file at the mount path; a directory mount is
    an entry at the mount path with its subtree below. Symlinks are left out. Only
    directory blocks and each file's root block are read: a file bigger than one block
    is never read past its root, but a one-block file is its own root and is fetched.

    Raises :class:`InputError` for invalid or nested mount paths, a symlink root or a
    file mounted at ``/inputs``; :class:`ContentError` for a malformed block; whatever
    ``get`` raises for a missing one.
    """
    entries: list[InputEntry] = []
    for mount, root in _checked(mounts):
        path, node = mount, _root_node(mount, root, get)
        # CIDs, not nodes, wait here: a one-block file's node is its whole content.
        pending: list[tuple[str, Cid]] = []
        while True:
            if isinstance(node, FileNode):
                entries.append(InputEntry(path, False, node.size))
            elif isinstance(node, DirectoryNode):
                entries.append(InputEntry(path, True, 0))
                pending.extend((f"{path}/{os.fsdecode(name)}", c) for name, c in node.entries)
            if not pending:
                break
            path, cid = pending.pop()
            node = _load(cid, get)
    entries.sort(key=_path)
    return entries


def plan_shards(
    entries: Sequence[InputEntry], pattern: str, batch_size: int
) -> list[tuple[str, ...]]:
    """The shards: paths of ``entries`` that match ``pattern`` (see :func:`glob_match`),
    minus those with a matching ancestor (a matched directory takes its subtree, so
    nothing is in two shards), sorted, cut into batches of ``batch_size`` (the last may
    be shorter).

    Raises :class:`InputError` if ``batch_size`` < 1, the pattern is invalid, or nothing
    matches; then the message names the pattern and up to 5 paths that exist.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, not {batch_size}")
    matched = {entry.path for entry in entries if glob_match(pattern, entry.path)}
    if not matched:
        examples = sorted(entry.path for entry in entries)[:_EXAMPLES]
        there = ", ".join(examples) if examples else "nothing: the inputs are empty"
        raise InputError(f"glob pattern {pattern!r} matches no input; the inputs hold {there}")
    chosen = sorted(path for path in matched if not any(a in matched for a in ancestors(path)))
    return [tuple(chosen[i : i + batch_size]) for i in range(0, len(chosen), batch_size)]


def write_inputs(
    mounts: Sequence[tuple[str, Cid]],
    get: Get,
    dest: Path,
    selected: Sequence[str] | None = None,
) -> None:
    """Writes the inputs so that container path ``/inputs/X`` is ``dest/X``; ``dest`` is
    what gets mounted at ``/inputs``, created here (with its parents) unless it is an
    existing empty directory.

    Without ``selected`` every mount is written in full. With it (container paths, as
    :func:`plan_shards` gives), only those entries are written, a directory with its
    whole subtree, plus the directories above them; a path inside another selected
    path is written once. Every file is byte-identical to its tree and verified block by
    block. Symlinks inside written directories are recreated verbatim.

    Raises :class:`InputError` for invalid or nested mount paths, a symlink root, a file
    mounted at ``/inputs``, or a selected path that is invalid, not inside any mount, or
    not a file or directory of its tree; ``FileExistsError`` if ``dest`` is not an empty
    directory; :class:`ContentError` for malformed content; whatever ``get`` raises for
    a missing block. Errors found before writing (bad mounts, bad selected paths) leave
    ``dest`` untouched; a later one may leave it partly written.
    """
    checked = _checked(mounts)
    targets = _targets(checked, get, selected)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"{dest}: inputs need an empty directory")
    for path, cid in targets:
        _write(path, cid, get, dest)


def _path(entry: InputEntry) -> str:
    return entry.path


def _checked(mounts: Sequence[tuple[str, Cid]]) -> list[tuple[str, Cid]]:
    check_mounts([path for path, _ in mounts])
    return [(check_mount_path(path), parse_cid(cid)) for path, cid in mounts]


def _load(cid: Cid, get: Get) -> Node:
    return read_node(cid, fetch(get, cid))


def _root_node(mount: str, root: Cid, get: Get) -> Node:
    node = _load(root, get)
    if isinstance(node, SymlinkNode):
        raise InputError(f"input {root} at {mount}: the root is a symlink; mount its target")
    if isinstance(node, FileNode) and mount == INPUTS_ROOT:
        raise InputError(
            f"input {root} is a file: it cannot be {INPUTS_ROOT} itself; mount it below"
        )
    return node


def _targets(
    mounts: list[tuple[str, Cid]], get: Get, selected: Sequence[str] | None
) -> list[tuple[str, Cid]]:
    """Each subtree to write as (container path, CID), all resolved before any write."""
    # Directory nodes by container path, so shared parents are read once. File nodes
    # are not kept: a one-block file's node is its content.
    dirs: dict[str, tuple[Cid, DirectoryNode]] = {}
    for mount, cid in mounts:
        node = _root_node(mount, cid, get)
        if isinstance(node, DirectoryNode):
            dirs[mount] = (cid, node)
    if selected is None:
        return list(mounts)
    roots = dict(mounts)
    paths = set()
    for raw in selected:
        try:
            paths.add(check_mount_path(raw))
        except InputError as exc:
            raise InputError(f"selected path: {exc}") from None
    targets = []
    for path in sorted(paths):
        if any(a in paths for a in ancestors(path)):
            continue
        mount = next((m for m in (path, *ancestors(path)) if m in roots), None)
        if mount is None:
            raise InputError(f"selected path {path!r} is not inside any input mount")
        targets.append((path, _resolve(path, mount, roots[mount], dirs, get)))
    return targets


def _resolve(
    path: str, mount: str, root: Cid, dirs: dict[str, tuple[Cid, DirectoryNode]], get: Get
) -> Cid:
    """The CID at ``path`` inside the tree mounted at ``mount``; checks it is no symlink."""
    if path == mount:
        return root  # _root_node has vetted it
    at = mount
    names = path[len(mount) + 1 :].split("/")
    for depth, name in enumerate(names):
        if at not in dirs:
            raise InputError(f"selected path {path!r}: {at} is a file, not a directory")
        parent = dirs[at][1]
        at = f"{at}/{name}"
        wanted = os.fsencode(name)
        cid = next((c for n, c in parent.entries if n == wanted), None)
        if cid is None:
            raise InputError(f"selected path {path!r}: no entry {at} in the input at {mount}")
        if at in dirs:
            continue
        node = _load(cid, get)
        if isinstance(node, DirectoryNode):
            dirs[at] = (cid, node)
        elif isinstance(node, SymlinkNode):
            raise InputError(f"selected path {path!r}: {at} is a symlink, not a file or directory")
        elif depth < len(names) - 1:
            raise InputError(f"selected path {path!r}: {at} is a file, not a directory")
    return cid


def _write(path: str, cid: Cid, get: Get, dest: Path) -> None:
    relative = path[len(INPUTS_ROOT) + 1 :]
    if relative:
        target = dest.joinpath(*relative.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        read_tree(cid, get, target)
        return
    # /inputs itself is dest, which exists: write the directory's entries into it
    # (_root_node has checked that a mount at /inputs is a directory).
    node = _load(cid, get)
    if not isinstance(node, DirectoryNode):
        raise InputError(f"input {cid} at {INPUTS_ROOT} is not a directory")
    for name, child in node.entries:
        read_tree(child, get, dest / os.fsdecode(name))
