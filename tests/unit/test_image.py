"""The base image's root filesystem tar, built without Docker."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from devstack.image import BaseImageError, build_rootfs_tar, find_busybox, list_applets


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_rootfs_layout() -> None:
    data = build_rootfs_tar(b"\x7fELF fake busybox", ["sh", "echo", "[", "[[", "ls"])
    members = _members(data)
    binary = members["bin/busybox"]
    assert binary.isfile() and binary.size == len(b"\x7fELF fake busybox")
    assert stat.S_IMODE(binary.mode) == 0o755
    for applet in ("sh", "echo", "[", "[[", "ls"):
        link = members[f"bin/{applet}"]
        assert link.issym() and link.linkname == "busybox"
    tmp = members["tmp"]
    assert tmp.isdir() and stat.S_IMODE(tmp.mode) == 0o1777
    assert members["inputs"].isdir() and members["outputs"].isdir()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        extracted = tar.extractfile("bin/busybox")
        assert extracted is not None and extracted.read() == b"\x7fELF fake busybox"


def test_rootfs_skips_self_duplicates_and_unsafe_names() -> None:
    members = _members(build_rootfs_tar(b"x", ["busybox", "sh", "sh", "../etc", "a/b", ""]))
    assert members["bin/busybox"].isfile()
    names = sorted(n for n in members if n.startswith("bin/"))
    assert names == ["bin/busybox", "bin/sh"]


def test_host_busybox_applets() -> None:
    try:
        busybox = find_busybox()
    except BaseImageError:
        pytest.skip("busybox is not installed on this machine")
    applets = list_applets(busybox)
    assert {"sh", "echo", "ls", "cat"} <= set(applets)
    members = _members(build_rootfs_tar(busybox.read_bytes(), applets))
    assert all(members[f"bin/{a}"].issym() for a in applets if a != "busybox")


def test_missing_busybox_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("devstack.image._FALLBACK_BUSYBOX", str(tmp_path / "busybox"))
    with pytest.raises(BaseImageError, match="apt-get install busybox-static"):
        find_busybox()
