"""Job inputs (node.sharding): mount paths, the glob matcher, shard planning, and
listing and writing real UnixFS trees built with node.content.add_path.

The glob matcher is checked against independent references (fnmatch on each
component, and a recursive matcher for ``**``); shard plans are property-tested for
their structure; writes are compared byte for byte with the trees they came from.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.content import Cid, ContentError, add_bytes, add_path, parse_cid
from node.content.blocks import Get
from node.models import (
    INPUTS_ROOT,
    InputError,
    check_mount_path,
    check_mounts,
    glob_match,
    parse_input_arg,
)
from node.sharding import InputEntry, list_entries, plan_shards, write_inputs

BIG = 600 * 1024  # three 256 KiB chunks: a file whose root is not its content


# --- helpers ---------------------------------------------------------------------------


def make_tree(root: Path, files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for rel in dirs:
        (root / rel).mkdir(parents=True, exist_ok=True)
    return root


def snapshot(root: Path) -> dict[str, bytes | str | None]:
    """Every entry under root: file bytes, symlink target as str, None for a directory."""
    out: dict[str, bytes | str | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = os.readlink(path)
            elif path.is_dir():
                out[rel] = None
            else:
                out[rel] = path.read_bytes()
    return out


def files_of(snap: dict[str, bytes | str | None]) -> dict[str, bytes]:
    return {k: v for k, v in snap.items() if isinstance(v, bytes)}


class Recorder:
    """A get over a dict of blocks that remembers which CIDs were asked for."""

    def __init__(self, blocks: dict[Cid, bytes]) -> None:
        self.blocks = blocks
        self.asked: list[Cid] = []

    def __call__(self, cid: Cid) -> bytes:
        self.asked.append(cid)
        return self.blocks[cid]


@pytest.fixture
def books(tmp_path: Path) -> tuple[Path, Cid, dict[Cid, bytes]]:
    """A tree with nested and empty directories, unicode names, a big file and a symlink."""
    source = make_tree(
        tmp_path / "books",
        {
            "a.txt": b"alpha\n",
            "b.txt": b"",
            "données/été.txt": "été\n".encode(),
            "données/日本語.md": b"# nihongo\n",
            "deep/x/y/z.txt": b"zed",
            "deep/x/w.bin": bytes(range(256)) * 3,
            "big.bin": os.urandom(BIG),
        },
        dirs=("empty",),
    )
    (source / "link").symlink_to("a.txt")
    text, blocks = add_path(source)
    return source, parse_cid(text), blocks


# --- check_mount_path / check_mounts -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/inputs", "/inputs"),
        ("/inputs/", "/inputs"),
        ("/inputs/prev", "/inputs/prev"),
        ("/inputs/a/b/", "/inputs/a/b"),
        ("/inputs/données/日本", "/inputs/données/日本"),
        ("/inputs/a b/.hidden/...", "/inputs/a b/.hidden/..."),
    ],
)
def test_check_mount_path_accepts_and_normalises(path: str, normal: str) -> None:
    assert check_mount_path(path) == normal


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "absolute"),
        ("inputs/a", "absolute"),
        ("/", "empty"),
        ("/input", "under it"),
        ("/inputsx", "under it"),
        ("/outputs/a", "under it"),
        ("//inputs", "empty"),
        ("/inputs//a", "empty"),
        ("/inputs//", "empty"),
        ("/inputs/./a", "'.'"),
        ("/inputs/..", "'..'"),
        ("/inputs/a/../../etc", "'..'"),
        ("/inputs/a\0b", "NUL"),
    ],
)
def test_check_mount_path_rejects(path: str, why: str) -> None:
    with pytest.raises(InputError, match=why) as info:
        check_mount_path(path)
    assert repr(path) in str(info.value)


def test_check_mounts_accepts_siblings_and_prefix_lookalikes() -> None:
    check_mounts([])
    check_mounts(["/inputs"])
    check_mounts(["/inputs/a", "/inputs/ab", "/inputs/a-b", "/inputs/b/c", "/inputs/b/d"])


@pytest.mark.parametrize(
    ("paths", "first", "second"),
    [
        (["/inputs/a", "/inputs/a"], "/inputs/a", "/inputs/a"),
        (["/inputs/a", "/inputs/a/"], "/inputs/a", "/inputs/a/"),
        (["/inputs", "/inputs/a"], "/inputs/a", "/inputs"),
        (["/inputs/x/y/z", "/inputs/q", "/inputs/x"], "/inputs/x/y/z", "/inputs/x"),
    ],
)
def test_check_mounts_rejects_equal_and_nested_naming_both(
    paths: list[str], first: str, second: str
) -> None:
    with pytest.raises(InputError) as info:
        check_mounts(paths)
    assert repr(first) in str(info.value) and repr(second) in str(info.value)


def test_check_mounts_rejects_an_invalid_path() -> None:
    with pytest.raises(InputError, match="/tmp"):
        check_mounts(["/inputs/a", "/tmp"])


# --- glob_match --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/inputs/**/*.txt", "/inputs/a.txt", True),
        ("/inputs/**/*.txt", "/inputs/x/y/a.txt", True),
        ("/inputs/**/*.txt", "/inputs/x/y/a.txt.gz", False),
        ("*.txt", "/inputs/a.txt", True),
        ("*.txt", "/inputs/x/a.txt", False),
        ("*", "/inputs/x", True),
        ("*", "/inputs", False),
        ("/inputs/*", "/inputs/a/b", False),
        ("/inputs/*/b", "/inputs/a/b", True),
        ("?.txt", "/inputs/a.txt", True),
        ("?.txt", "/inputs/ab.txt", False),
        ("[ab].txt", "/inputs/b.txt", True),
        ("[ab].txt", "/inputs/c.txt", False),
        ("[!ab].txt", "/inputs/c.txt", True),
        ("[!ab].txt", "/inputs/a.txt", False),
        ("[a-c]x", "/inputs/bx", True),
        ("[]]x", "/inputs/]x", True),
        ("[!]]x", "/inputs/]x", False),
        ("[*]", "/inputs/*", True),
        ("[*]", "/inputs/a", False),
        ("a**b", "/inputs/axyzb", True),
        ("a**b", "/inputs/a/b", False),
        ("**", "/inputs", True),
        ("**", "/inputs/a/b/c", True),
        ("/inputs/**", "/inputs", True),
        ("/**", "/anything/at/all", True),
        ("a/**/b", "/inputs/a/b", True),
        ("a/**/b", "/inputs/a/x/y/b", True),
        ("a/**/b", "/inputs/a/x/y/c", False),
        ("**/**/x", "/inputs/x", True),
        ("a/", "/inputs/a", True),
        ("/inputs/a", "/inputs/a", True),
        ("*", "/inputs/.hidden", True),
        ("*.txt", "/inputs/new\nline.txt", True),
        ("/inputs/données/*.txt", "/inputs/données/été.txt", True),
        ("/inputs/*", "inputs/a", False),
    ],
)
def test_glob_match_examples(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(pattern, path) is expected


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("", "empty"),
        ("[abc", "closing"),
        ("a/[b/c]", "closing"),
        ("[]", "closing"),
        ("[!]", "closing"),
        ("/inputs//a", "empty"),
        ("//", "empty"),
        ("/", "empty"),
        ("a/../b", "'..'"),
        ("./a", "'.'"),
        ("a\0", "NUL"),
    ],
)
def test_glob_match_rejects_invalid_patterns(pattern: str, why: str) -> None:
    with pytest.raises(InputError, match=why):
        glob_match(pattern, "/inputs/a")


# A backtracking matcher would take exponential time on these: it would not end before
# the test's timeout (a guard, not a measure: no duration is asserted).
@pytest.mark.timeout(60)
def test_glob_match_ends_on_hostile_patterns() -> None:
    assert not glob_match("*a*a*a*a*a*a*a*a*a*a*b", "/inputs/" + "a" * 5000)
    deep = "/inputs/" + "/".join(["a"] * 200) + "/c"
    assert not glob_match("/" + "/".join(["**", "a"] * 30) + "/b", deep)
    assert glob_match("/" + "/".join(["**", "a"] * 30) + "/c", deep)


# Components built from a few characters so that matches are frequent.
_CHARS = "ab.-"
_literal = st.sampled_from(list(_CHARS))
_class = st.builds(
    lambda neg, members: "[" + ("!" if neg else "") + members + "]",
    st.booleans(),
    st.one_of(
        st.text(alphabet="ab.", min_size=1, max_size=3),
        st.sampled_from(["a-b", "a-z", ".-a", "b-a"]),
    ),
)
_pattern_component = (
    st.lists(st.one_of(_literal, st.just("*"), st.just("?"), _class), min_size=1, max_size=5)
    .map("".join)
    .filter(lambda c: c not in (".", "..", "**"))
)
_path_component = st.text(alphabet=_CHARS, min_size=1, max_size=5)


@settings(max_examples=500)
@given(st.lists(_pattern_component, max_size=3), st.lists(_path_component, max_size=3))
def test_glob_match_agrees_with_fnmatch_per_component(
    pattern: list[str], components: list[str]
) -> None:
    path = "/".join([INPUTS_ROOT, *components])
    expected = len(pattern) == len(components) and all(
        fnmatch.fnmatchcase(name, part) for name, part in zip(components, pattern, strict=True)
    )
    assert glob_match("/".join([INPUTS_ROOT, *pattern]), path) is expected
    if pattern:
        assert glob_match("/".join(pattern), path) is expected  # relative to /inputs


def _reference(pattern: list[str], components: list[str]) -> bool:
    """Recursive reference: '**' takes zero or more components, others match via fnmatch."""
    if not pattern:
        return not components
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_reference(rest, components[i:]) for i in range(len(components) + 1))
    return (
        bool(components)
        and fnmatch.fnmatchcase(components[0], head)
        and _reference(rest, components[1:])
    )


@settings(max_examples=500)
@given(
    st.lists(st.one_of(_pattern_component, st.just("**")), min_size=1, max_size=5),
    st.lists(_path_component, max_size=5),
)
def test_glob_match_with_double_star_agrees_with_a_recursive_reference(
    pattern: list[str], components: list[str]
) -> None:
    path = "/".join([INPUTS_ROOT, *components])
    expected = _reference(["inputs", *pattern], ["inputs", *components])
    assert glob_match("/".join([INPUTS_ROOT, *pattern]), path) is expected


# --- plan_shards -------------------------------------------------------------------------


def entries_for(files: list[str], dirs: tuple[str, ...] = ()) -> list[InputEntry]:
    """Entries of a tree under /inputs holding `files`, with every parent as a directory."""
    all_dirs = {INPUTS_ROOT, *(f"{INPUTS_ROOT}/{d}" for d in dirs)}
    paths = [f"{INPUTS_ROOT}/{f}" for f in files]
    for path in paths:
        while (path := path.rpartition("/")[0]) != "":
            if path.startswith(INPUTS_ROOT):
                all_dirs.add(path)
    entries = [InputEntry(p, False, 1) for p in paths] + [InputEntry(d, True, 0) for d in all_dirs]
    return sorted(entries, key=lambda e: e.path)


def test_plan_shards_batches_sorted_matches() -> None:
    entries = entries_for([f"f{i}.txt" for i in range(7)] + ["skip.bin", "sub/g.txt"])
    assert plan_shards(entries, "*.txt", 3) == [
        ("/inputs/f0.txt", "/inputs/f1.txt", "/inputs/f2.txt"),
        ("/inputs/f3.txt", "/inputs/f4.txt", "/inputs/f5.txt"),
        ("/inputs/f6.txt",),
    ]
    assert plan_shards(entries, "**/*.txt", 100) == [
        tuple(f"/inputs/{n}" for n in [*(f"f{i}.txt" for i in range(7)), "sub/g.txt"])
    ]


def test_plan_shards_a_matched_directory_takes_its_subtree() -> None:
    entries = entries_for(["a/1.txt", "a/b/2.txt", "c/3.txt", "d.txt"])
    assert plan_shards(entries, "**", 1) == [("/inputs",)]
    assert plan_shards(entries, "*", 2) == [("/inputs/a", "/inputs/c"), ("/inputs/d.txt",)]
    assert plan_shards(entries, "a/**", 5) == [("/inputs/a",)]
    assert plan_shards(entries, "a/**/*", 5) == [("/inputs/a/1.txt", "/inputs/a/b")]


def test_plan_shards_rejects_a_bad_batch_size() -> None:
    with pytest.raises(InputError, match="at least 1"):
        plan_shards(entries_for(["a"]), "*", 0)


def test_plan_shards_no_match_names_the_pattern_and_examples() -> None:
    entries = entries_for([f"f{i}.csv" for i in range(9)])
    with pytest.raises(InputError) as info:
        plan_shards(entries, "*.txt", 1)
    message = str(info.value)
    assert "'*.txt'" in message
    shown = [e.path for e in entries if e.path in message]
    assert shown == [e.path for e in entries][:5]


def test_plan_shards_no_inputs_at_all() -> None:
    with pytest.raises(InputError, match="empty"):
        plan_shards([], "*", 1)


def test_plan_shards_rejects_an_invalid_pattern() -> None:
    with pytest.raises(InputError, match="closing"):
        plan_shards(entries_for(["a"]), "[a", 1)


_tree_files = st.lists(
    st.lists(st.sampled_from(["a", "b", "cd"]), max_size=3).flatmap(
        lambda dirs: st.sampled_from(["x.txt", "y.txt", "z.bin"]).map(
            lambda name: "/".join([*dirs, name])
        )
    ),
    min_size=1,
    max_size=25,
    unique=True,
)
_patterns = st.sampled_from(
    ["*", "**", "**/*.txt", "*/*", "a/**", "**/a", "?", "[ab]/*", "**/[!x]*.txt", "*/*/*", "cd"]
)


@settings(max_examples=300)
@given(_tree_files, _patterns, st.integers(min_value=1, max_value=5))
def test_plan_shards_properties(files: list[str], pattern: str, batch_size: int) -> None:
    entries = entries_for(files)
    matched = {e.path for e in entries if glob_match(pattern, e.path)}
    if not matched:
        with pytest.raises(InputError):
            plan_shards(entries, pattern, batch_size)
        return
    shards = plan_shards(entries, pattern, batch_size)
    flat = [path for shard in shards for path in shard]
    # Sorted, no repeats, every batch full but the last.
    assert flat == sorted(set(flat))
    assert all(len(shard) == batch_size for shard in shards[:-1])
    assert 1 <= len(shards[-1]) <= batch_size
    # Every chosen path matched; none is inside another chosen one.
    assert set(flat) <= matched
    chosen = set(flat)
    for path in flat:
        assert not any(path.startswith(other + "/") for other in chosen)
    # Every match is covered by exactly one chosen path: itself or an ancestor.
    for path in matched:
        covering = [c for c in chosen if path == c or path.startswith(c + "/")]
        assert len(covering) == 1


# --- list_entries ------------------------------------------------------------------------


def test_list_entries_of_a_real_tree(books: tuple[Path, Cid, dict[Cid, bytes]]) -> None:
    source, root, blocks = books
    get = Recorder(blocks)
    entries = list_entries([("/inputs/books", root)], get)
    expected = [InputEntry("/inputs/books", True, 0)]
    for path in sorted(source.rglob("*")):
        if path.is_symlink():
            continue
        rel = f"/inputs/books/{path.relative_to(source).as_posix()}"
        size = 0 if path.is_dir() else path.stat().st_size
        expected.append(InputEntry(rel, path.is_dir(), size))
    assert entries == sorted(expected, key=lambda e: e.path)
    assert not any(e.path.endswith("/link") for e in entries)
    assert InputEntry("/inputs/books/big.bin", False, BIG) in entries
    # The big file's root node was read, never its content blocks.
    big_text, big_blocks = add_bytes((source / "big.bin").read_bytes())
    content = set(big_blocks) - {parse_cid(big_text)}
    assert len(content) == 3  # three raw chunks under one root
    assert parse_cid(big_text) in get.asked
    assert not content & set(get.asked)


def test_list_entries_of_several_mounts_including_a_file(
    books: tuple[Path, Cid, dict[Cid, bytes]],
) -> None:
    _, root, blocks = books
    text, file_blocks = add_bytes(b"single file")
    blocks = {**blocks, **file_blocks}
    entries = list_entries(
        [("/inputs/z/books/", root), ("/inputs/a.dat", parse_cid(text))], blocks.__getitem__
    )
    assert entries[0] == InputEntry("/inputs/a.dat", False, 11)
    assert entries[1] == InputEntry("/inputs/z/books", True, 0)
    assert all(e.path.startswith("/inputs/z/books/") for e in entries[2:])
    assert [e.path for e in entries] == sorted(e.path for e in entries)


def test_list_entries_of_a_mount_at_the_root(books: tuple[Path, Cid, dict[Cid, bytes]]) -> None:
    _, root, blocks = books
    entries = list_entries([(INPUTS_ROOT, root)], blocks.__getitem__)
    assert entries[0] == InputEntry(INPUTS_ROOT, True, 0)
    assert InputEntry("/inputs/données/été.txt", False, len("été\n".encode())) in entries


def test_list_entries_rejects_bad_mounts(tmp_path: Path) -> None:
    text, blocks = add_bytes(b"x")
    cid = parse_cid(text)
    with pytest.raises(InputError, match="file"):
        list_entries([(INPUTS_ROOT, cid)], blocks.__getitem__)
    with pytest.raises(InputError, match="nest"):
        list_entries([("/inputs/a", cid), ("/inputs/a/b", cid)], blocks.__getitem__)
    with pytest.raises(InputError, match="under"):
        list_entries([("/etc", cid)], blocks.__getitem__)
    (tmp_path / "link").symlink_to("target")
    link_text, link_blocks = add_path(tmp_path / "link")
    with pytest.raises(InputError, match="symlink"):
        list_entries([("/inputs/l", parse_cid(link_text))], link_blocks.__getitem__)


def test_list_entries_lets_missing_and_corrupt_blocks_raise(
    books: tuple[Path, Cid, dict[Cid, bytes]],
) -> None:
    _, root, blocks = books
    missing = dict(blocks)
    child = next(cid for cid in blocks if cid != root)
    del missing[child]
    with pytest.raises(KeyError):
        list_entries([("/inputs/b", root)], missing.__getitem__)
    corrupt = {**blocks, root: blocks[root] + b"\0"}
    with pytest.raises(ContentError):
        list_entries([("/inputs/b", root)], corrupt.__getitem__)


# --- write_inputs ------------------------------------------------------------------------


def test_write_inputs_in_full_is_byte_identical(
    books: tuple[Path, Cid, dict[Cid, bytes]], tmp_path: Path
) -> None:
    source, root, blocks = books
    text, file_blocks = add_bytes(b"file mount")
    get: Get = {**blocks, **file_blocks}.__getitem__
    dest = tmp_path / "dest"
    write_inputs([("/inputs/lib/books", root), ("/inputs/note", parse_cid(text))], get, dest)
    written = snapshot(dest)
    assert written.pop("note") == b"file mount"
    assert written.pop("lib") is None
    assert written == {f"lib/books/{k}": v for k, v in snapshot(source).items()} | {
        "lib/books": None
    }
    assert written["lib/books/link"] == "a.txt"  # symlinks inside trees are kept


def test_write_inputs_at_the_root_into_an_existing_empty_dir(
    books: tuple[Path, Cid, dict[Cid, bytes]], tmp_path: Path
) -> None:
    source, root, blocks = books
    dest = tmp_path / "dest"
    dest.mkdir()
    write_inputs([("/inputs/", root)], blocks.__getitem__, dest)
    assert snapshot(dest) == snapshot(source)


def test_write_inputs_selected_writes_only_those(
    books: tuple[Path, Cid, dict[Cid, bytes]], tmp_path: Path
) -> None:
    source, root, blocks = books
    get = Recorder(blocks)
    dest = tmp_path / "dest"
    selected = ["/inputs/b/données/été.txt", "/inputs/b/deep/x", "/inputs/b/deep/x/y/z.txt"]
    write_inputs([("/inputs/b", root)], get, dest, selected)
    assert snapshot(dest) == {
        "b": None,
        "b/données": None,
        "b/données/été.txt": "été\n".encode(),
        "b/deep": None,
        "b/deep/x": None,
        "b/deep/x/y": None,
        "b/deep/x/y/z.txt": b"zed",
        "b/deep/x/w.bin": (source / "deep/x/w.bin").read_bytes(),
    }
    # Nothing of the big file was fetched.
    _, big_blocks = add_bytes((source / "big.bin").read_bytes())
    assert not set(big_blocks) & set(get.asked)


def test_write_inputs_selected_file_mount_and_root_mount(
    books: tuple[Path, Cid, dict[Cid, bytes]], tmp_path: Path
) -> None:
    source, root, blocks = books
    text, file_blocks = add_bytes(b"file mount")
    get: Get = {**blocks, **file_blocks}.__getitem__
    mounts = [("/inputs/b", root), ("/inputs/f", parse_cid(text))]
    write_inputs(mounts, get, tmp_path / "one", ["/inputs/f"])
    assert snapshot(tmp_path / "one") == {"f": b"file mount"}
    write_inputs([(INPUTS_ROOT, root)], get, tmp_path / "all", [INPUTS_ROOT])
    assert snapshot(tmp_path / "all") == snapshot(source)


def test_every_shard_written_covers_the_matches_exactly_once(
    books: tuple[Path, Cid, dict[Cid, bytes]], tmp_path: Path
) -> None:
    source, root, blocks = books
    mounts = [("/inputs/b", root)]
    shards = plan_shards(list_entries(mounts, blocks.__getitem__), "**/*.txt", 2)
    seen: dict[str, bytes] = {}
    for i, shard in enumerate(shards):
        dest = tmp_path / f"shard{i}"
        write_inputs(mounts, blocks.__getitem__, dest, shard)
        files = files_of(snapshot(dest))
        assert {f"/inputs/{k}" for k in files} == set(shard)
        assert not set(files) & set(seen)
        seen |= files
    expected = {
        f"b/{p.relative_to(source).as_posix()}": p.read_bytes()
        for p in source.rglob("*.txt")
        if not p.is_symlink()
    }
    assert seen == expected


@pytest.mark.parametrize(
    ("selected", "why"),
    [
        (["/inputs/other/a.txt"], "not inside any input mount"),
        (["/inputs"], "not inside any input mount"),
        (["/inputs/b/nope.txt"], "no entry /inputs/b/nope.txt"),
        (["/inputs/b/a.txt/x"], "/inputs/b/a.txt is a file"),
        (["/inputs/b/link"], "symlink"),
        (["/inputs/b/../../etc"], "'..'"),
        (["relative"], "absolute"),
        (["/inputs/b/a.txt", "/inputs/b/deep/missing"], "no entry"),
    ],
)
def test_write_inputs_rejects_bad_selections_before_writing(
    books: tuple[Path, Cid, dict[Cid, bytes]], tmp_path: Path, selected: list[str], why: str
) -> None:
    _, root, blocks = books
    dest = tmp_path / "dest"
    with pytest.raises(InputError, match=why):
        write_inputs([("/inputs/b", root)], blocks.__getitem__, dest, selected)
    assert not dest.exists()


def test_write_inputs_refuses_a_non_empty_destination(
    books: tuple[Path, Cid, dict[Cid, bytes]], tmp_path: Path
) -> None:
    _, root, blocks = books
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "stale").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_inputs([("/inputs/b", root)], blocks.__getitem__, dest)
    assert snapshot(dest) == {"stale": b"old"}


def test_write_inputs_refuses_a_file_at_the_root(tmp_path: Path) -> None:
    text, blocks = add_bytes(b"x")
    with pytest.raises(InputError, match="file"):
        write_inputs([(INPUTS_ROOT, parse_cid(text))], blocks.__getitem__, tmp_path / "d")


@pytest.fixture(scope="module")
def small_tree(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, bytes | str | None], Cid, dict[Cid, bytes], list[InputEntry]]:
    source = make_tree(
        tmp_path_factory.mktemp("small") / "t",
        {"a": b"1", "b/c": b"22", "b/d/e": b"333", "b/d/f": b"4444", "g/h": b"55555"},
        dirs=("g/empty",),
    )
    text, blocks = add_path(source)
    root = parse_cid(text)
    return snapshot(source), root, blocks, list_entries([("/inputs/t", root)], blocks.__getitem__)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_write_inputs_writes_exactly_the_selected_subtrees(
    small_tree: tuple[dict[str, bytes | str | None], Cid, dict[Cid, bytes], list[InputEntry]],
    data: st.DataObject,
) -> None:
    tree, root, blocks, entries = small_tree
    selected = data.draw(st.lists(st.sampled_from([e.path for e in entries]), unique=True))
    rel = [p.removeprefix("/inputs/") for p in selected]

    def wanted(key: str) -> bool:
        full = f"t/{key}"
        below = any(full == r or full.startswith(r + "/") for r in rel)
        above = any(r.startswith(full + "/") for r in rel)
        return below or (above and tree[key] is None)

    expected = {f"t/{k}": v for k, v in tree.items() if wanted(k)}
    if rel:
        expected["t"] = None
    with tempfile.TemporaryDirectory() as tmp:
        write_inputs([("/inputs/t", root)], blocks.__getitem__, Path(tmp) / "d", selected)
        assert snapshot(Path(tmp) / "d") == expected


# --- parse_input_arg ---------------------------------------------------------------------


def test_parse_input_arg() -> None:
    text, _ = add_bytes(b"x")
    assert parse_input_arg(text) == (text, INPUTS_ROOT)
    assert parse_input_arg(f"{text}:/inputs/prev/") == (text, "/inputs/prev")
    v0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    assert parse_input_arg(f"{v0}:/inputs/old") == (v0, "/inputs/old")


@pytest.mark.parametrize(
    ("arg", "why"),
    [
        ("", "no CID"),
        (":/inputs/a", "no CID"),
        ("nonsense", "CID"),
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk", "CID"),
        ("BAFKREIHDWDCEFGH4DQKJV67UZCMW7OJEE6XEDZDETOJUZJEVTENXQUVYKU", "CID"),
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku:", "absolute"),
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku:prev", "absolute"),
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku:/tmp", "under it"),
        ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku:/inputs/../x", "'..'"),
    ],
)
def test_parse_input_arg_rejects(arg: str, why: str) -> None:
    with pytest.raises(InputError, match=why) as info:
        parse_input_arg(arg)
    assert repr(arg) in str(info.value)
