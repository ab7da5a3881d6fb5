"""Instrumented locks: who waits for whom, for how long, and where.

This module owns the Python counterpart of Go's mutex-contention profile and go-deadlock:

* :class:`TrioLock` -- a drop-in for :class:`trio.Lock`;
* :class:`ThreadLock` and :class:`ThreadRLock` -- drop-ins for :class:`threading.Lock` and
  :class:`threading.RLock`;
* :class:`LockRegistry` and its process-wide instance :data:`REGISTRY`, which aggregate
  per-lock :class:`LockStatistics` keyed by (name, creation site);
* :class:`LockRecorder`, the per-lock accumulator behind those statistics;
* :func:`measure_overhead`, which prices the instrumentation on this machine.

Definitions. *Wait* runs from asking for a lock to getting it and is only measured on contended
acquisitions: an acquisition that finds the lock free waits zero by definition and stays out of
the wait distribution (total / mean / max / p99 wait are over contended acquisitions). *Hold*
runs from getting a lock to releasing it; for :class:`ThreadRLock` only the outermost
acquire/release pair counts.

Cost model. An uncontended acquisition does a non-blocking acquire, reads the clock once and
remembers its caller's code object and line number -- no traceback, no string formatting, no
counter of sites. Call sites are only formatted, counted and logged on contended acquisitions
and on holds longer than the registry's ``warn_ms``.

Warnings. Each over-threshold event logs exactly one warning on the ``profiles.locks`` logger:
a wait longer than ``warn_ms`` logs one "waited" warning (naming where the waiter waits and where
the holder took the lock) when the waiter gets the lock; a hold longer than ``warn_ms`` logs one
"held" warning (naming where the holder took it and who was waiting at release) when it is
released. A contended 50 ms hold therefore logs two warnings: one for the hold, one per waiter
that waited past the threshold.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
import weakref
from collections import Counter, deque
from dataclasses import dataclass
from types import CodeType, FrameType, TracebackType
from typing import Any, Final, final

import trio

from profiles.quantiles import nearest_rank
from profiles.ratelimit import WarningLimiter, suppressed_note

__all__ = [
    "REGISTRY",
    "LockRecorder",
    "LockRegistry",
    "LockStatistics",
    "ThreadLock",
    "ThreadRLock",
    "TrioLock",
    "measure_overhead",
]

_log: Final = logging.getLogger("profiles.locks")
_perf_ns: Final = time.perf_counter_ns
_get_ident: Final = threading.get_ident
# The code objects of this module carry this exact filename (the import system fixes it up
# when loading from a .pyc); frames with it are skipped when looking for a caller.
_HERE: Final[str] = sys._getframe().f_code.co_filename

# Dead locks waiting to be folded into their group before a registration folds them.
_FOLD_BACKLOG: Final = 256

# A call site kept as (code, line): cheap to take on every acquisition and holds no frame alive.
_Site = tuple[CodeType, int]


def _caller_site(frame: FrameType | None) -> _Site | None:
    """The first frame at or above ``frame`` that is not in this module, as (code, line)."""
    while frame is not None and frame.f_code.co_filename == _HERE:
        frame = frame.f_back
    if frame is None:
        return None
    return (frame.f_code, frame.f_lineno)


def _format_site(site: _Site | None) -> str:
    if site is None:
        return "<unknown>"
    code, line = site
    return f"{code.co_filename}:{line} in {code.co_name}"


def _creation_site(frame: FrameType | None) -> str:
    site = _caller_site(frame)
    if site is None:
        return "<unknown>"
    return f"{site[0].co_filename}:{site[1]}"


def _warn(registry: LockRegistry, kind: str, name: str, created_at: str, what: str) -> None:
    """One warning about lock ``name`` (``kind``: wait or hold), unless one just went."""
    suppressed = registry._warnings.admit((name, created_at, kind))
    if suppressed is not None:
        _log.warning(
            "lock %r (created at %s) %s%s", name, created_at, what, suppressed_note(suppressed)
        )


def _warn_wait(
    registry: LockRegistry, name: str, created_at: str, wait_ns: int, waiter: str, holder: str
) -> None:
    what = f"waited {wait_ns / 1e6:.1f} ms at {waiter}; the holder took it at {holder}"
    _warn(registry, "wait", name, created_at, what)


def _warn_hold(
    registry: LockRegistry,
    name: str,
    created_at: str,
    hold_ns: int,
    holder: str,
    waiters: tuple[str, ...],
) -> None:
    waiting = "; ".join(waiters) if waiters else "nobody"
    what = f"held {hold_ns / 1e6:.1f} ms, taken at {holder}; waiting at release: {waiting}"
    _warn(registry, "hold", name, created_at, what)


@dataclass(frozen=True, slots=True)
class LockStatistics:
    """One lock's (or one group of same-named, same-site locks') statistics at one moment.

    Times are integer nanoseconds except ``mean_wait_ns``. Wait figures cover contended
    acquisitions only; ``p99_wait_ns`` is over the recorder's reservoir of recent waits (the
    last 1024 by default), the other wait figures over all of them. ``top_waiters`` are the call
    sites that waited most often; ``top_holders`` the sites that held the lock when someone had
    to wait, or held it past the threshold with nobody waiting. Both are ``(site, count)`` pairs,
    most frequent first.
    """

    name: str
    created_at: str
    acquisitions: int
    contended: int
    total_wait_ns: int
    mean_wait_ns: float
    max_wait_ns: int
    p99_wait_ns: int
    max_hold_ns: int
    top_waiters: tuple[tuple[str, int], ...]
    top_holders: tuple[tuple[str, int], ...]
    slow_waits: int = 0  # waits longer than the registry's warn_ms (each one warned)


@final
class LockRecorder:
    """Accumulates the statistics of one lock instance.

    It is not thread-safe by itself and needs no lock of its own: an instrumented lock only
    writes to its recorder while it holds the underlying lock, which serialises the writes.
    Readers (:meth:`snapshot`, :meth:`merge` from another recorder) copy containers with
    single C-level calls, so a concurrent reader sees a slightly stale but never a broken view.
    """

    __slots__ = (
        "acquisitions",
        "contended",
        "created_at",
        "holders",
        "max_hold_ns",
        "max_wait_ns",
        "name",
        "slow_waits",
        "top",
        "total_wait_ns",
        "waiters",
        "waits",
    )

    def __init__(self, name: str, created_at: str, *, reservoir: int = 1024, top: int = 3) -> None:
        self.name = name
        self.created_at = created_at
        self.top = top
        self.acquisitions = 0
        self.contended = 0
        self.slow_waits = 0
        self.total_wait_ns = 0
        self.max_wait_ns = 0
        self.max_hold_ns = 0
        # Bounded so a hot lock cannot grow memory without limit; p99 is over recent waits.
        self.waits: deque[int] = deque(maxlen=reservoir)
        self.waiters: Counter[str] = Counter()
        self.holders: Counter[str] = Counter()

    def record_acquisition(self) -> None:
        """Count an uncontended acquisition (the locks inline this on their fast path)."""
        self.acquisitions += 1

    def record_wait(self, wait_ns: int, waiter: str, holder: str) -> None:
        """Count a contended acquisition that waited ``wait_ns`` at ``waiter`` behind ``holder``."""
        self.acquisitions += 1
        self.contended += 1
        self.total_wait_ns += wait_ns
        if wait_ns > self.max_wait_ns:
            self.max_wait_ns = wait_ns
        self.waits.append(wait_ns)
        self.waiters[waiter] += 1
        self.holders[holder] += 1

    def record_hold(self, hold_ns: int) -> None:
        """Note one completed hold of ``hold_ns``."""
        if hold_ns > self.max_hold_ns:
            self.max_hold_ns = hold_ns

    def merge(self, other: LockRecorder) -> None:
        """Add ``other``'s counts into this recorder (``other`` is left untouched)."""
        self.acquisitions += other.acquisitions
        self.contended += other.contended
        self.slow_waits += other.slow_waits
        self.total_wait_ns += other.total_wait_ns
        self.max_wait_ns = max(self.max_wait_ns, other.max_wait_ns)
        self.max_hold_ns = max(self.max_hold_ns, other.max_hold_ns)
        # list()/dict() copy in one C call; Counter.update would iterate in Python and could
        # trip over a concurrent insert from the lock's holder.
        self.waits.extend(list(other.waits))
        self.waiters.update(dict(other.waiters))
        self.holders.update(dict(other.holders))

    def clear(self) -> None:
        """Forget everything recorded so far."""
        self.acquisitions = self.contended = self.slow_waits = 0
        self.total_wait_ns = self.max_wait_ns = self.max_hold_ns = 0
        self.waits.clear()
        self.waiters.clear()
        self.holders.clear()

    def snapshot(self) -> LockStatistics:
        """The statistics recorded so far, as an immutable value."""
        waits = sorted(list(self.waits))
        p99 = nearest_rank(waits, 0.99, 0)
        contended = self.contended
        return LockStatistics(
            name=self.name,
            created_at=self.created_at,
            acquisitions=self.acquisitions,
            contended=contended,
            total_wait_ns=self.total_wait_ns,
            mean_wait_ns=self.total_wait_ns / contended if contended else 0.0,
            max_wait_ns=self.max_wait_ns,
            p99_wait_ns=p99,
            max_hold_ns=self.max_hold_ns,
            top_waiters=tuple(Counter(dict(self.waiters)).most_common(self.top)),
            top_holders=tuple(Counter(dict(self.holders)).most_common(self.top)),
            slow_waits=self.slow_waits,
        )


_Key = tuple[str, str]


@final
class LockRegistry:
    """Collects the statistics of every instrumented lock created against it.

    Guarantees: every lock registered here appears in :meth:`statistics` (grouped with other
    locks of the same name and creation site) for as long as the registry lives, including
    after the lock itself has been garbage-collected -- a dead lock's recorder is folded into
    its group's, so locks created per request do not grow the registry without bound.
    :meth:`statistics` and :meth:`reset` are safe to call from any thread; ``reset`` is not
    atomic with respect to acquisitions running at the same moment. Warnings are rate
    limited: at most one per lock (name and site) and kind (wait or hold) per
    ``warn_interval_s``, the next one saying how many were held back.

    Raises: ``ValueError`` when ``warn_ms`` is set to a negative number or NaN, or for a
    negative ``warn_interval_s``.
    """

    __slots__ = (
        "_dead",
        "_live",
        "_mutex",
        "_reservoir",
        "_retired",
        "_top",
        "_warn_ms",
        "_warn_ns",
        "_warnings",
    )

    def __init__(
        self,
        warn_ms: float = 10.0,
        *,
        warn_interval_s: float = 1.0,
        reservoir: int = 1024,
        top: int = 3,
    ) -> None:
        # A plain lock: instrumenting the registry's own lock would recurse.
        self._mutex = threading.Lock()
        self._live: dict[_Key, set[LockRecorder]] = {}
        self._dead: dict[_Key, LockRecorder] = {}
        # Filled by weakref finalizers, which may run inside the GC at any point -- including
        # while this thread holds _mutex -- so they only append (atomic) and never lock.
        self._retired: deque[LockRecorder] = deque()
        self._reservoir = reservoir
        self._top = top
        self._warn_ms = 0.0
        self._warn_ns = 0
        # Per (lock, creation site, wait or hold): a burst of late waiters logs once.
        self._warnings = WarningLimiter(warn_interval_s)
        self.warn_ms = warn_ms

    @property
    def warn_ms(self) -> float:
        """Waits and holds longer than this many milliseconds log one warning each."""
        return self._warn_ms

    @warn_ms.setter
    def warn_ms(self, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"warn_ms must be >= 0, got {value!r}")
        self._warn_ms = float(value)
        # Compared on the hot path against integer ns, so convert once here.
        self._warn_ns = int(value * 1e6) if math.isfinite(value) else sys.maxsize

    def _register(self, owner: object, name: str, created_at: str) -> LockRecorder:
        recorder = LockRecorder(name, created_at, reservoir=self._reservoir, top=self._top)
        with self._mutex:
            # Fold dead locks now and then, not only when asked for statistics: a node makes
            # locks per stream and may never be asked.
            if len(self._retired) >= _FOLD_BACKLOG:
                self._collect_retired()
            self._live.setdefault((name, created_at), set()).add(recorder)
        finalizer = weakref.finalize(owner, self._retired.append, recorder)
        finalizer.atexit = False
        return recorder

    def _collect_retired(self) -> None:
        # Caller holds _mutex.
        while self._retired:
            recorder = self._retired.popleft()
            key = (recorder.name, recorder.created_at)
            live = self._live.get(key)
            if live is not None:
                live.discard(recorder)
                if not live:
                    del self._live[key]
            dead = self._dead.get(key)
            if dead is None:
                dead = self._dead[key] = LockRecorder(
                    key[0], key[1], reservoir=self._reservoir, top=self._top
                )
            dead.merge(recorder)

    def statistics(self) -> tuple[LockStatistics, ...]:
        """Every lock group's statistics, most total wait first (then by name and site)."""
        snapshots: list[LockStatistics] = []
        with self._mutex:
            self._collect_retired()
            for key in self._live.keys() | self._dead.keys():
                parts = list(self._live.get(key, ()))
                if key in self._dead:
                    parts.append(self._dead[key])
                if len(parts) == 1:
                    snapshots.append(parts[0].snapshot())
                    continue
                group = LockRecorder(key[0], key[1], reservoir=self._reservoir, top=self._top)
                for part in parts:
                    group.merge(part)
                snapshots.append(group.snapshot())
        snapshots.sort(key=lambda s: (-s.total_wait_ns, s.name, s.created_at))
        return tuple(snapshots)

    def reset(self) -> None:
        """Zero every lock's statistics and warning limits; the locks stay registered."""
        self._warnings.clear()
        with self._mutex:
            self._collect_retired()
            self._dead.clear()
            for recorders in self._live.values():
                for recorder in recorders:
                    recorder.clear()


#: Waits and holds longer than this log a warning (the seed's mutex tracer used 10 ms).
DEFAULT_WARN_MS: Final = 10.0

REGISTRY: Final = LockRegistry(DEFAULT_WARN_MS)


@final
class _InstrumentedLock:
    """What every instrumented lock shares: its identity, its recorder, and the
    bookkeeping around the real lock it wraps. Subclasses own the acquiring."""

    __slots__ = (
        "__weakref__",
        "_holder",
        "_lock",
        "_name",
        "_recorder",
        "_registry",
        "_start",
        "_waiting",
        "created_at",
    )

    def __init__(
        self, name: str, registry: LockRegistry | None, frame: FrameType | None, lock: Any
    ) -> None:
        self._name = name
        self.created_at = _creation_site(frame)
        self._registry = REGISTRY if registry is None else registry
        self._recorder = self._registry._register(self, name, self.created_at)
        self._lock = lock
        self._holder: _Site | None = None
        # None while unlocked: lets a thread lock tell a stray release from a real one.
        self._start: int | None = None
        # Sites of the waiters parked on the lock right now, so a long hold can name them
        # (list append/remove are atomic, so threads may share it).
        self._waiting: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        state = "locked" if self._lock.locked() else "unlocked"
        return f"<{type(self).__name__} {self._name!r} created at {self.created_at}, {state}>"

    def locked(self) -> bool:
        """Whether the lock is held."""
        return self._lock.locked()

    def _took(self, frame: FrameType) -> None:
        """Record an acquisition that did not wait: no stack, one clock read. ``frame``
        may be inside this module (``async with`` goes through ``__aenter__``)."""
        self._holder = _caller_site(frame)
        self._recorder.acquisitions += 1
        self._start = _perf_ns()

    def _begin_wait(self, frame: FrameType | None) -> tuple[int, _Site | None, str, str]:
        """Before parking: (start, waiter's site, waiter, holder), the waiter registered."""
        start = _perf_ns()
        site = _caller_site(frame)
        waiter = _format_site(site)
        # Read without synchronisation on threads: at worst it names a holder that just left.
        holder = _format_site(self._holder)
        self._waiting.append(waiter)
        return start, site, waiter, holder

    def _waited(self, start: int, site: _Site | None, waiter: str, holder: str) -> None:
        """After a contended acquisition: record the wait, warn if it was long."""
        wait = _perf_ns() - start
        self._recorder.record_wait(wait, waiter, holder)
        self._holder = site
        if wait > self._registry._warn_ns:
            self._recorder.slow_waits += 1
            _warn_wait(self._registry, self._name, self.created_at, wait, waiter, holder)
        # Started after logging so the instrumentation's own cost is not blamed on the caller.
        self._start = _perf_ns()

    def _held(self, hold: int, holder: _Site | None) -> tuple[str, tuple[str, ...]] | None:
        """Record a hold; for one past the threshold, what to warn with (holder, waiters).
        The caller logs it once the real lock is released."""
        recorder = self._recorder
        if hold > recorder.max_hold_ns:
            recorder.max_hold_ns = hold
        if hold <= self._registry._warn_ns:
            return None
        waiting = tuple(self._waiting)
        holder_site = _format_site(holder)
        if not waiting:
            recorder.holders[holder_site] += 1
        return holder_site, waiting


class TrioLock(_InstrumentedLock):
    """A :class:`trio.Lock` that records its waits and holds in a :class:`LockRegistry`.

    Guarantees: the same semantics as :class:`trio.Lock` -- ``acquire`` is a checkpoint whether
    or not it blocks, ownership is per task and fair (FIFO) -- because it delegates to a real
    ``trio.Lock``; only trio tasks of one run may use it. Uncontended acquisitions capture no
    stack (see the module docstring for what they cost).

    Raises: what ``trio.Lock`` raises -- ``trio.WouldBlock`` from :meth:`acquire_nowait` when
    the lock is held, ``RuntimeError`` from :meth:`release` by a task that does not hold it,
    ``trio.BrokenResourceError`` when the owner exits without releasing, and ``Cancelled``.
    A cancelled wait is not recorded.

    With ``fast_acquire`` (as ``anyio.Lock(fast_acquire=True)``), taking a free lock is not a
    checkpoint: the task neither yields nor sees a pending cancellation there. Code whose
    critical sections nest locks then keeps the CPU while it holds the outer one, instead of
    yielding with it held and making every other user of it park and be woken again.
    """

    __slots__ = ("_fast",)

    def __init__(
        self, name: str, *, registry: LockRegistry | None = None, fast_acquire: bool = False
    ) -> None:
        super().__init__(name, registry, sys._getframe(1), trio.Lock())
        self._fast = fast_acquire

    def statistics(self) -> trio.LockStatistics:
        """The underlying ``trio.Lock``'s statistics (owner, waiting tasks)."""
        return self._lock.statistics()

    @trio.lowlevel.enable_ki_protection
    def acquire_nowait(self) -> None:
        """Take the lock without blocking; raises ``trio.WouldBlock`` if it is held."""
        self._lock.acquire_nowait()
        self._took(sys._getframe(1))

    @trio.lowlevel.enable_ki_protection
    async def acquire(self) -> None:
        """Take the lock, waiting for it if necessary (a checkpoint unless ``fast_acquire``
        and the lock is free)."""
        lock = self._lock
        if self._fast and not lock.locked():
            lock.acquire_nowait()
            self._took(sys._getframe(1))
            return
        # Same shape as trio.Lock.acquire, so cancellation and scheduling behave identically.
        await trio.lowlevel.checkpoint_if_cancelled()
        if not lock.locked():
            lock.acquire_nowait()
            self._took(sys._getframe(1))
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        start, site, waiter, holder = self._begin_wait(sys._getframe(1))
        try:
            # Cannot get the lock without parking: nothing ran since locked() said it is held.
            await lock.acquire()
        finally:
            self._waiting.remove(waiter)
        self._waited(start, site, waiter, holder)

    @trio.lowlevel.enable_ki_protection
    def release(self) -> None:
        """Release the lock; raises ``RuntimeError`` if the calling task does not hold it."""
        # Release first: it checks ownership, and no other task can run before we yield, so
        # writing the recorder afterwards is still serialised.
        self._lock.release()
        assert self._start is not None
        hold = _perf_ns() - self._start
        holder = self._holder
        # On a hand-off the next owner has not run yet; "unknown" beats naming the old holder.
        self._holder = None
        warning = self._held(hold, holder)
        if warning is not None:
            _warn_hold(self._registry, self._name, self.created_at, hold, *warning)

    @trio.lowlevel.enable_ki_protection
    async def __aenter__(self) -> None:
        await self.acquire()

    @trio.lowlevel.enable_ki_protection
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class _ThreadLockBase(_InstrumentedLock):
    """Shared machinery of the thread locks: waiting with a timeout, and the release."""

    __slots__ = ()

    def __init__(self, name: str, registry: LockRegistry | None, frame: FrameType | None) -> None:
        super().__init__(name, registry, frame, threading.Lock())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _take(self, blocking: bool, timeout: float, frame: FrameType) -> bool:
        """Take the real lock as ``threading.Lock.acquire`` would, recording it."""
        if not blocking and timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        if self._lock.acquire(False):
            self._took(frame)
            return True
        if not blocking:
            return False
        start, site, waiter, holder = self._begin_wait(frame)
        try:
            got = self._lock.acquire(True, timeout)
        finally:
            self._waiting.remove(waiter)
        if got:
            self._waited(start, site, waiter, holder)
        return got

    def _release_outermost(self) -> None:
        start = self._start
        if start is None:
            # Not held: let the real lock raise its own RuntimeError.
            self._lock.release()
            return
        hold = _perf_ns() - start
        self._start = None
        holder = self._holder
        self._holder = None
        # Recorder writes happen before the real release, while we still own the lock.
        warning = self._held(hold, holder)
        self._lock.release()
        # Logged after releasing so a slow log handler does not lengthen the hold.
        if warning is not None:
            _warn_hold(self._registry, self._name, self.created_at, hold, *warning)


@final
class ThreadLock(_ThreadLockBase):
    """A :class:`threading.Lock` that records its waits and holds in a :class:`LockRegistry`.

    Guarantees: the semantics of ``threading.Lock`` (it wraps one): not reentrant, any thread
    may release it, ``acquire`` returns whether it got the lock. Uncontended acquisitions
    capture no stack. A timed-out or failed non-blocking acquire is not recorded.

    Raises: ``RuntimeError`` from :meth:`release` when the lock is not held; ``ValueError``
    from :meth:`acquire` for a timeout with ``blocking=False`` or a negative timeout other
    than -1.
    """

    __slots__ = ()

    def __init__(self, name: str, *, registry: LockRegistry | None = None) -> None:
        super().__init__(name, registry, sys._getframe(1))

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; with ``blocking`` wait up to ``timeout`` seconds (-1: forever)."""
        return self._take(blocking, timeout, sys._getframe(1))

    def release(self) -> None:
        """Release the lock; raises ``RuntimeError`` if it is not held."""
        self._release_outermost()

    def __enter__(self) -> bool:
        return self._take(True, -1, sys._getframe(1))


@final
class ThreadRLock(_ThreadLockBase):
    """A :class:`threading.RLock` that records its waits and holds in a :class:`LockRegistry`.

    Guarantees: reentrant like ``threading.RLock`` -- the owning thread may acquire it again
    and must release it as many times; only the outermost acquire/release pair is measured as
    a wait and a hold, and nested acquisitions are not counted. Uncontended acquisitions
    capture no stack. It does not implement the private hooks ``threading.Condition`` uses, so
    do not pass it to a ``Condition``.

    Raises: ``RuntimeError`` from :meth:`release` by a thread that does not own the lock;
    ``ValueError`` from :meth:`acquire` for a timeout with ``blocking=False`` or a negative
    timeout other than -1.
    """

    __slots__ = ("_count", "_owner")

    def __init__(self, name: str, *, registry: LockRegistry | None = None) -> None:
        super().__init__(name, registry, sys._getframe(1))
        # Ownership is tracked here (over a plain Lock) as in threading's pure-Python RLock:
        # only the owner ever writes its own ident, so comparing with ours needs no lock.
        self._owner: int | None = None
        self._count = 0

    def _enter(self, blocking: bool, timeout: float, frame: FrameType) -> bool:
        me = _get_ident()
        if self._owner == me:
            self._count += 1
            return True
        if not self._take(blocking, timeout, frame):
            return False
        self._owner = me
        self._count = 1
        return True

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock (again, if this thread owns it); see :meth:`ThreadLock.acquire`."""
        return self._enter(blocking, timeout, sys._getframe(1))

    def release(self) -> None:
        """Release one level; the outermost release frees the lock and ends the hold."""
        if self._owner != _get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        if self._count > 1:
            self._count -= 1
            return
        self._owner = None
        self._count = 0
        self._release_outermost()

    def __enter__(self) -> bool:
        return self._enter(True, -1, sys._getframe(1))


def measure_overhead(n: int = 100_000) -> dict[str, float]:
    """Nanoseconds per uncontended acquire+release, plain lock vs instrumented.

    Keys: ``"threading.Lock"``, ``"ThreadLock"``, ``"trio.Lock"``, ``"TrioLock"`` and
    ``"TrioLock fast_acquire"`` (no checkpoint when free, so no scheduler trip). Every lock
    runs the same loop (``with``/``async with`` around ``pass``): one warm-up chunk, then ``n``
    iterations split into five chunks, alternating plain and instrumented so background load
    hits both alike; the result is the fastest chunk's ns per iteration (as ``timeit`` advises,
    the minimum is the least noisy estimate). The trio pair runs inside one ``trio.run``. The
    instrumented locks use a private registry with no warning threshold, so the measurement
    neither pollutes :data:`REGISTRY` nor logs. Figures include the loop itself, and a trio
    acquire includes its checkpoint (a trip through the scheduler).

    Raises: ``ValueError`` if ``n`` is not positive.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    chunks = 5
    per_chunk = max(1, n // chunks)
    registry = LockRegistry(warn_ms=math.inf)

    def time_thread_lock(lock: threading.Lock | ThreadLock) -> float:
        start = _perf_ns()
        for _ in range(per_chunk):
            with lock:
                pass
        return (_perf_ns() - start) / per_chunk

    async def time_trio_lock(lock: trio.Lock | TrioLock) -> float:
        start = _perf_ns()
        for _ in range(per_chunk):
            async with lock:
                pass
        return (_perf_ns() - start) / per_chunk

    plain_thread, instrumented_thread = threading.Lock(), ThreadLock("overhead", registry=registry)
    thread_times: dict[str, list[float]] = {"threading.Lock": [], "ThreadLock": []}
    time_thread_lock(plain_thread)
    time_thread_lock(instrumented_thread)
    for _ in range(chunks):
        thread_times["threading.Lock"].append(time_thread_lock(plain_thread))
        thread_times["ThreadLock"].append(time_thread_lock(instrumented_thread))

    trio_locks: dict[str, trio.Lock | TrioLock] = {
        "trio.Lock": trio.Lock(),
        "TrioLock": TrioLock("overhead", registry=registry),
        "TrioLock fast_acquire": TrioLock("overhead", registry=registry, fast_acquire=True),
    }
    trio_times: dict[str, list[float]] = {key: [] for key in trio_locks}

    async def trio_main() -> None:
        for lock in trio_locks.values():
            await time_trio_lock(lock)
        for _ in range(chunks):
            for key, lock in trio_locks.items():
                trio_times[key].append(await time_trio_lock(lock))

    trio.run(trio_main)
    return {key: min(times) for key, times in (thread_times | trio_times).items()}
