"""Earliest-deadline-first turns on a fixed number of CPU lanes.

Concurrent streams on a few cores: if every stream's worker runs whenever it
likes, the OS shares the cores evenly, and a stream that has just started (its
listener hears nothing yet) waits as long as one with seconds of audio already
buffered. Instead each unit of model work (one ONNX run, a few tens of ms) takes
a turn on one of `lanes` lanes (one per core), and waiting turns are granted in
order of deadline: the moment that stream's listener would run out of audio.
A new stream's deadline is "now", so its first chunk goes ahead of work for
streams that are ahead of their playback. A turn asked while lanes are idle may
take several, so a lone stream runs its model on every core.

`behind_s()` is how late the most overdue waiting turn will be served, past
the moment its stream needed it: zero while the lanes keep up, growing once a
listener (or a new stream's first audio) waits for CPU. Admission reads it
(`tts_common/slots.py`): the measure of overload is work that is late, not a
count of streams.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import time
from collections.abc import Iterator

from .settings import CpuSettings

# Weight of the latest turn in the smoothed time a turn is held.
HELD_SMOOTHING = 0.2


def default_lanes(settings: CpuSettings) -> int:
    """`TTS_CPU_LANES` (config.yaml sets it to the Truss's `resources.cpu`), else
    the cores this process may run on."""
    lanes = settings.lanes
    return lanes if lanes is not None else len(os.sched_getaffinity(0))


class CpuLanes:
    """`lanes` turns at once, plus `spare` more for urgent turns: those whose
    deadline is less than `urgent_s` away. A stream about to start (or about to
    run dry) then need not wait for a run in progress on every lane; it shares
    the cores with them for the length of one run instead."""

    def __init__(self, lanes: int, spare: int = 0, urgent_s: float = 0.0):
        if lanes < 1 or spare < 0:
            raise ValueError("lanes must be at least 1 and spare at least 0")
        self.lanes = lanes
        self.spare = spare
        self.urgent_s = urgent_s
        self._lock = threading.Lock()
        self._busy = 0
        # (deadline, order, granted, asked at)
        self._waiting: list[tuple[float, int, threading.Event, float]] = []
        self._order = itertools.count()  # equal deadlines: first come, first served
        self._held_s = 0.05  # how long a turn is held, smoothed over recent turns

    @contextlib.contextmanager
    def turn(self, deadline: float, most: int = 1) -> Iterator[Turn]:
        """Hold lanes for the duration of the block: up to `most` when they are
        free and nobody is waiting (one stream alone may use every core), else
        one. `deadline` is a time.monotonic() value, earlier is more urgent."""
        with self._lock:
            if self._busy < self.lanes and not self._waiting:
                held = Turn(self, min(most, self.lanes - self._busy))
                self._busy += held.lanes
                granted = None
            else:
                held = Turn(self, 1)
                granted = threading.Event()
                heapq.heappush(self._waiting, (deadline, next(self._order), granted, time.monotonic()))
                self._grant()
        if granted is not None:
            granted.wait()
        started = time.monotonic()
        try:
            yield held
        finally:
            with self._lock:
                self._busy -= held.lanes
                self._held_s += HELD_SMOOTHING * (time.monotonic() - started - self._held_s)
                self._grant()

    def behind_s(self) -> float:
        """Seconds the most overdue waiting turn will have waited beyond its
        deadline by the time a lane is likely to reach it: turns are served
        earliest deadline first, `lanes` at a time, each for about as long as
        recent turns were held. A turn is overdue from its deadline or from when
        it asked, whichever is later (a stream that fell behind once is not late
        forever). Projecting the queue, not only the time already waited, lets a
        burst of new streams count as late before each has waited."""
        with self._lock:
            now, late = time.monotonic(), 0.0
            for place, (deadline, _, _, asked) in enumerate(sorted(self._waiting)):
                reached = now + (place // self.lanes) * self._held_s
                late = max(late, reached - max(deadline, asked))
            return late

    def _shrink(self, turn: Turn) -> None:
        with self._lock:
            if turn.lanes > 1 and self._waiting:
                self._busy -= turn.lanes - 1
                turn.lanes = 1
                self._grant()

    def _grant(self) -> None:
        """Admit waiting turns, earliest deadline first, while there is room
        (called with the lock held)."""
        now = time.monotonic()
        while self._waiting:
            deadline = self._waiting[0][0]
            room = self.lanes + (self.spare if deadline - now < self.urgent_s else 0)
            if self._busy >= room:
                return
            self._busy += 1
            heapq.heappop(self._waiting)[2].set()


class Turn:
    """Lanes held by one `CpuLanes.turn` block; `lanes` is how many threads the
    holder's next run may use."""

    def __init__(self, owner: CpuLanes, lanes: int):
        self._owner = owner
        self.lanes = lanes

    def share(self) -> None:
        """Keep one lane and hand the others to waiting turns, if any: a holder
        that took every lane while alone makes room once others arrive."""
        self._owner._shrink(self)
