"""Owns a job's inputs as the container sees them: where each input tree mounts under
``/inputs``, which entries a sharding glob selects and how they are cut into shards,
and writing all or some of the inputs to a host directory that is mounted at ``/inputs``.

An input is a content-addressed UnixFS tree (a CID) mounted at a container path. Paths
here are container paths (``/inputs/books/a.txt``); entry names come from the tree as
bytes and become path text with ``os.fsdecode``, as :mod:`node.content.reader` writes
them. Blocks are fetched and verified through the :mod:`node.content` reader.

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

import functools
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from node.content import Cid, ContentError, Get, parse_cid, read_tree
from node.content.blocks import fetch
from node.content.nodes import DirectoryNode, FileNode, Node, SymlinkNode, read_node

INPUTS_ROOT = "/inputs"

_EXAMPLES = 5


class InputError(ValueError):
    """An input or sharding rule is invalid or matches nothing; the text says which."""


@dataclass(frozen=True, slots=True)
class InputEntry:
    """One file or directory of an input tree, at its container path."""

    path: str
    is_dir: bool
    size: int


def check_mount_path(path: str) -> str:
    """``path`` as a normalised container mount path: ``/inputs`` or a path under it.

    One trailing slash is dropped (``/inputs/`` -> ``/inputs``); nothing else is
    rewritten. Raises :class:`InputError` naming the path if it is not absolute, lies
    outside ``/inputs``, has an empty (``//``), ``.`` or ``..`` component, or holds NUL.
    """
    if "\0" in path:
        raise InputError(f"mount path {path!r}: contains NUL")
    if not path.startswith("/"):
        raise InputError(f"mount path {path!r}: must be absolute (under {INPUTS_ROOT})")
    normal = path[:-1] if len(path) > 1 and path.endswith("/") else path
    components = normal.split("/")[1:]
    for component in components:
        if component in ("", ".", ".."):
            raise InputError(f"mount path {path!r}: empty, '.' or '..' component")
    if components[0] != INPUTS_ROOT[1:]:
        raise InputError(f"mount path {path!r}: must be {INPUTS_ROOT} or under it")
    return normal


def check_mounts(paths: list[str]) -> None:
    """Returns if every path passes :func:`check_mount_path` and no two mounts are
    equal or nested (``/inputs`` and ``/inputs/a`` conflict).

    Raises :class:`InputError` naming the bad path, or both paths of a conflict.
    """
    seen: dict[str, str] = {}
    for path in paths:
        normal = check_mount_path(path)
        if normal in seen:
            raise InputError(f"mount paths {seen[normal]!r} and {path!r} are the same")
        seen[normal] = path
    for normal, path in seen.items():
        for ancestor in _ancestors(normal):
            if ancestor in seen:
                raise InputError(
                    f"mount path {path!r} is inside mount path {seen[ancestor]!r};"
                    " mounts cannot nest"
                )


def glob_match(pattern: str, path: str) -> bool:
    """Whether container path ``path`` matches ``pattern``.

    Components are matched one by one: ``*`` matches any run of characters but ``/``,
    ``?`` one character but ``/``, ``[abc]``, ``[a-z]`` and ``[!abc]`` one character of
    (not of) a class (``]`` first in a class is literal). ``**`` as a whole component
    matches zero or more components (``/inputs/**/*.txt`` matches ``/inputs/a.txt``
    and ``/inputs/x/y/a.txt``); inside a component it is two ``*``. Dot files are not
    special and there is no escape character: ``[*]`` matches a literal ``*``. A
    pattern not starting with ``/`` is relative to ``/inputs``; one trailing ``/`` is
    ignored.

    Raises :class:`InputError` naming the pattern if it is empty, holds NUL, has an
    empty, ``.`` or ``..`` component, or an unclosed ``[``.
    """
    return _matches(_compile(pattern), path)


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
    compiled = _compile(pattern)
    matched = {entry.path for entry in entries if _matches(compiled, entry.path)}
    if not matched:
        examples = sorted(entry.path for entry in entries)[:_EXAMPLES]
        there = ", ".join(examples) if examples else "nothing: the inputs are empty"
        raise InputError(f"glob pattern {pattern!r} matches no input; the inputs hold {there}")
    chosen = sorted(path for path in matched if not any(a in matched for a in _ancestors(path)))
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


def parse_input_arg(text: str) -> tuple[str, str]:
    """``CID`` -> ``(CID, '/inputs')``; ``CID:/inputs/prev`` -> ``(CID, '/inputs/prev')``.

    The CID is returned in canonical text form, the path normalised by
    :func:`check_mount_path`. Raises :class:`InputError` naming what is wrong.
    """
    cid_text, colon, path = text.partition(":")
    if not cid_text:
        raise InputError(f"input {text!r}: no CID (write CID or CID:{INPUTS_ROOT}/PATH)")
    try:
        cid = parse_cid(cid_text)
    except ContentError as exc:
        raise InputError(f"input {text!r}: {exc}") from None
    if not colon:
        return cid.text, INPUTS_ROOT
    try:
        return cid.text, check_mount_path(path)
    except InputError as exc:
        raise InputError(f"input {text!r}: {exc}") from None


# A compiled pattern: per component, a regex for one path component or None for "**".
_Compiled = tuple[re.Pattern[str] | None, ...]


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> _Compiled:
    if not pattern:
        raise InputError("glob pattern is empty")
    if "\0" in pattern:
        raise InputError(f"glob pattern {pattern!r}: contains NUL")
    full = pattern if pattern.startswith("/") else f"{INPUTS_ROOT}/{pattern}"
    if len(full) > 1 and full.endswith("/"):
        full = full[:-1]
    compiled: list[re.Pattern[str] | None] = []
    for component in full.split("/")[1:]:
        if component in ("", ".", ".."):
            raise InputError(f"glob pattern {pattern!r}: empty, '.' or '..' component")
        if component != "**":
            compiled.append(re.compile(_translate(component, pattern), re.DOTALL))
        elif not compiled or compiled[-1] is not None:
            # "**/**" means "**"; collapsing keeps matching linear in the path's depth.
            compiled.append(None)
    return tuple(compiled)


def _matches(compiled: _Compiled, path: str) -> bool:
    if not path.startswith("/"):
        return False
    components = path.split("/")[1:]
    # Matching component by component, tracking every path position the pattern so far
    # can end at: no backtracking, so a hostile pattern cannot take exponential time.
    states = {0}
    for regex in compiled:
        if regex is None:
            states = set(range(min(states), len(components) + 1))
        else:
            states = {
                i + 1 for i in states if i < len(components) and regex.fullmatch(components[i])
            }
        if not states:
            return False
    return len(components) in states


def _translate(component: str, pattern: str) -> str:
    """The regex of one pattern component, matched against one path component."""
    chunks: list[list[str]] = [[]]
    i, n = 0, len(component)
    while i < n:
        char = component[i]
        i += 1
        if char == "*":
            chunks.append([])
        elif char == "?":
            chunks[-1].append(".")
        elif char == "[":
            end = i + 1 if component.startswith("!", i) else i
            # A ']' right after '[' or '[!' is a member, not the end.
            end = component.find("]", end + 1)
            if end < 0:
                raise InputError(f"glob pattern {pattern!r}: '[' without a closing ']'")
            chunks[-1].append(_char_class(component[i:end]))
            i = end + 1
        else:
            chunks[-1].append(re.escape(char))
    parts = ["".join(chunk) for chunk in chunks]
    if len(parts) == 1:
        return parts[0]
    # Between stars every chunk has a fixed length, so its earliest occurrence is always
    # the right one to take: an atomic group commits to it and the regex never backtracks
    # across stars (fnmatch does the same).
    middle = "".join(f"(?>.*?{part})" for part in parts[1:-1])
    return f"{parts[0]}{middle}.*{parts[-1]}"


def _char_class(body: str) -> str:
    negated = body.startswith("!")
    if negated:
        body = body[1:]
    items = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            # A reversed range is empty, as in fnmatch; the regex engine would reject it.
            if low <= high:
                items.append(f"{re.escape(low)}-{re.escape(high)}")
            i += 3
        else:
            items.append(re.escape(body[i]))
            i += 1
    members = "".join(items)
    if negated:
        return f"[^{members}]" if members else "."
    return f"[{members}]" if members else "(?!)"


def _ancestors(path: str) -> Iterator[str]:
    """Proper ancestors of a normalised absolute path, nearest first."""
    while True:
        path = path.rpartition("/")[0]
        if not path:
            return
        yield path


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
        if any(a in paths for a in _ancestors(path)):
            continue
        mount = next((m for m in (path, *_ancestors(path)) if m in roots), None)
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
