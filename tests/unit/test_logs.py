"""node.logs.read_tail: a log file's last complete lines, read from its end."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node import logs
from node.logs import read_tail


def lines_after(data: bytes, lines: int, after: int) -> logs.LogTail:
    """The reference: the whole file in memory."""
    start = after if after <= len(data) else 0
    end = data.rfind(b"\n", start) + 1 or start
    whole = data[start:end].split(b"\n")[:-1]
    kept = whole[max(0, len(whole) - lines) :]
    return logs.LogTail(end, [line.decode("utf-8", "replace") for line in kept])


def test_the_last_lines_and_where_they_end(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_bytes(b"one\ntwo\nthree\npart")
    assert read_tail(log, 2) == logs.LogTail(14, ["two", "three"])
    assert read_tail(log, 200) == logs.LogTail(14, ["one", "two", "three"])
    # Following: nothing new until the last line is whole.
    assert read_tail(log, 200, after=14) == logs.LogTail(14, [])
    with log.open("ab") as f:
        f.write(b"ial\nfive\n")
    assert read_tail(log, 200, after=14) == logs.LogTail(27, ["partial", "five"])
    # Rotated (shorter than the offset): from the start again.
    log.write_bytes(b"new\n")
    assert read_tail(log, 200, after=27) == logs.LogTail(4, ["new"])
    log.write_bytes(b"")
    assert read_tail(log, 5) == logs.LogTail(0, [])


def test_a_huge_file_is_read_from_its_end_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "MAX_TAIL_BYTES", 1 << 16)
    log = tmp_path / "node.log"
    log.write_bytes(b"".join(b"%08d\n" % i for i in range(200_000)))  # 1.8 MB
    read = read_tail(log, 3)
    assert read == logs.LogTail(1_800_000, ["00199997", "00199998", "00199999"])
    # More lines than the cap holds: as many as it does, none cut.
    many = read_tail(log, 100_000).lines
    assert 0 < len(many) < 100_000 and many[-1] == "00199999"
    assert all(len(line) == 8 for line in many)


@given(
    st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    st.binary(max_size=5).map(lambda b: b.replace(b"\n", b"")),
    st.integers(1, 12),
    st.data(),
)
def test_reads_agree_with_the_whole_file(
    lines: list[bytes], partial: bytes, wanted: int, data: st.DataObject
) -> None:
    content = b"".join(line + b"\n" for line in lines) + partial
    # Offsets a read may be given: line starts, and past the end (a rotated file).
    bounds = [0, *(i + 1 for i, c in enumerate(content) if c == 10), len(content) + 7]
    after = data.draw(st.sampled_from(bounds))
    with tempfile.TemporaryDirectory() as scratch, pytest.MonkeyPatch.context() as patch:
        patch.setattr(logs, "_BLOCK", 5)  # tiny blocks: every read crosses many
        log = Path(scratch) / "node.log"
        log.write_bytes(content)
        assert read_tail(log, wanted, after) == lines_after(content, wanted, after)
