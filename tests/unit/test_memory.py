"""Tests for profiles.memory: the allocation site is named, one session at a time,
bad durations refused, tracing left as it was found; and devstack's saving and printing
of memory profiles.

What is asserted does not hang on how fast the machine is: a profile must see at least
one step of the hoarder (one step every 50 ms, in a session of a second), and the
second session is refused while the first waits on a stopped
:class:`trio.testing.MockClock`."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
import trio
import trio.testing

from devstack.profile import SavedMemoryProfile, format_memory_profiles, save_memory_profile
from profiles.cpu import MAX_SECONDS
from profiles.memory import (
    MemoryProfile,
    MemoryProfileBusy,
    format_bytes,
    profile_memory,
    short_path,
)

REPO = Path(__file__).resolve().parents[2]
KIB = 1024
CHUNK = 1000  # KiB objects a step: ~20 MB over the 20 steps of a 1-second session


def hoard_kibibytes_on_purpose(kept: list[bytes]) -> None:
    kept += [bytes(KIB) for _ in range(CHUNK)]  # the allocation site: the first body line


ALLOCATION_LINE = hoard_kibibytes_on_purpose.__code__.co_firstlineno + 1
# Shortened against sys.path, where pytest puts this folder: "test_memory.py:N".
ALLOCATION_SITE = f"{short_path(__file__)}:{ALLOCATION_LINE}"


async def _hoarder(kept: list[bytes]) -> None:
    while True:  # until cancelled, once the session is over
        hoard_kibibytes_on_purpose(kept)
        await trio.sleep(0.05)


def _profile_while_hoarding(seconds: float) -> tuple[MemoryProfile, list[bytes]]:
    # The hoard is returned so it outlives the end snapshot.
    kept: list[bytes] = []

    async def main() -> MemoryProfile:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_hoarder, kept)
            profile = await profile_memory(seconds)
            nursery.cancel_scope.cancel()
        return profile

    return trio.run(main), kept


@pytest.fixture(autouse=True)
def _not_tracing() -> None:
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc is already on (PYTHONTRACEMALLOC?)")


@pytest.mark.timeout(60)
def test_the_allocation_site_is_first_by_growth_and_by_size() -> None:
    profile, kept = _profile_while_hoarding(1)

    assert len(kept) >= CHUNK
    grown, largest = profile.top_by_growth[0], profile.top_by_size[0]
    assert grown.site == ALLOCATION_SITE, profile.text
    assert grown.function == "hoard_kibibytes_on_purpose"
    assert grown.size_diff_bytes >= CHUNK * KIB  # at least one step within the session
    assert grown.count_diff >= CHUNK
    assert largest.site == ALLOCATION_SITE, profile.text
    assert largest.size_bytes >= grown.size_diff_bytes
    assert profile.peak_bytes >= profile.current_bytes >= largest.size_bytes
    assert profile.seconds == 1
    diffs = [site.size_diff_bytes for site in profile.top_by_growth]
    assert diffs == sorted(diffs, reverse=True) and min(diffs) > 0
    sizes = [site.size_bytes for site in profile.top_by_size]
    assert sizes == sorted(sizes, reverse=True)
    assert len(profile.top_by_size) <= 15
    assert f"{ALLOCATION_SITE} in hoard_kibibytes_on_purpose" in profile.text
    # The sessions' own snapshots and imports are not the process's memory.
    sites = [s.site for s in (*profile.top_by_growth, *profile.top_by_size)]
    assert not [s for s in sites if "tracemalloc.py" in s or s.startswith("<frozen")], sites


@pytest.mark.timeout(60)
def test_tracing_is_stopped_afterwards_if_it_was_off() -> None:
    _profile_while_hoarding(1)
    assert not tracemalloc.is_tracing()


@pytest.mark.timeout(60)
def test_tracing_already_on_is_left_on() -> None:
    tracemalloc.start()
    try:
        profile, _kept = _profile_while_hoarding(1)
        assert tracemalloc.is_tracing()
        assert profile.top_by_growth[0].site == ALLOCATION_SITE, profile.text
    finally:
        tracemalloc.stop()


@pytest.mark.timeout(60)
def test_cancelling_stops_tracing() -> None:
    async def main() -> None:
        with trio.move_on_after(0.3) as scope:
            await profile_memory(30)
        assert scope.cancelled_caught

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert not tracemalloc.is_tracing()


@pytest.mark.timeout(60)
def test_second_session_is_refused_not_queued() -> None:
    clock = trio.testing.MockClock()  # stopped: the first session cannot end on its own

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(profile_memory, 1)
            await trio.testing.wait_all_tasks_blocked()  # it has begun, and waits
            with pytest.raises(MemoryProfileBusy):
                await profile_memory(1)
            clock.autojump_threshold = 0  # now let time run: the first session ends
        # Once the first has ended, the next is admitted.
        await profile_memory(0.1)

    trio.run(main, clock=clock)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("seconds", [0, -1, MAX_SECONDS + 1])
def test_bad_seconds_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        trio.run(profile_memory, seconds)
    assert not tracemalloc.is_tracing()


@pytest.mark.timeout(30)
def test_paths_are_shortened_and_bytes_readable() -> None:
    assert short_path(trio.__file__) == "trio/__init__.py"
    assert ALLOCATION_SITE.endswith(f"test_memory.py:{ALLOCATION_LINE}")
    assert short_path(str(REPO / "node" / "api.py")) == "node/api.py"
    assert short_path("<string>") == "<string>"
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 1024 * 1024, sign=True) == "+3.0 MiB"
    assert format_bytes(-2048) == "-2.0 KiB"


def _answer(node: str, grown_mib: int) -> dict[str, object]:
    site = {"site": "node/x.py:3", "function": "f"}
    return {
        "node": node,
        "seconds": 2,
        "current_bytes": 5 << 20,
        "peak_bytes": 6 << 20,
        "overhead_bytes": 1 << 20,
        "top_by_size": [{**site, "size_bytes": 4 << 20, "count": 10}],
        "top_by_growth": [
            {**site, "size_diff_bytes": grown_mib << 20, "count_diff": 7, "size_bytes": 4 << 20}
        ],
        "text": f"report of {node}\n",
    }


@pytest.mark.timeout(30)
def test_devstack_saves_and_prints_memory_profiles(tmp_path: Path) -> None:
    saved = [
        save_memory_profile(f"node-{i}", _answer(f"peer{i}", i + 1), tmp_path / f"node-{i}-T")
        for i in range(2)
    ]

    assert isinstance(saved[0], SavedMemoryProfile)
    assert [p.name for p in saved[0].paths] == ["node-0-T.memory.txt", "node-0-T.memory.json"]
    assert saved[0].paths[0].read_text() == "report of peer0\n"
    assert json.loads(saved[1].paths[1].read_text()) == _answer("peer1", 2)
    out = format_memory_profiles(saved, 2)
    assert "node-0: memory over 2s, 5.0 MiB traced at the end, 6.0 MiB peak" in out
    assert "+1.0 MiB" in out and "+2.0 MiB" in out
    summed = out[out.index("summed over 2 nodes:") :]
    assert "+3.0 MiB" in summed and "+14 blocks" in summed and "node/x.py:3 in f" in summed
    assert "8.0 MiB" in summed  # largest, summed
    assert "summed over" not in format_memory_profiles(saved[:1], 2)
