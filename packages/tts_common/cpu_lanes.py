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
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
from typing import Iterator


def default_lanes() -> int:
    """`TTS_CPU_LANES` (config.yaml sets it to the Truss's `resources.cpu`), else
    the cores this process may run on."""
    value = os.environ.get("TTS_CPU_LANES")
    return int(value) if value else len(os.sched_getaffinity(0))


class CpuLanes:
    def __init__(self, lanes: int):
        if lanes < 1:
            raise ValueError("lanes must be at least 1")
        self.lanes = lanes
        self._lock = threading.Lock()
        self._busy = 0
        self._waiting: list[tuple[float, int, threading.Event]] = []
        self._order = itertools.count()  # equal deadlines: first come, first served

    @contextlib.contextmanager
    def turn(self, deadline: float, most: int = 1) -> Iterator[int]:
        """Hold lanes for the duration of the block and yield how many: up to
        `most` when they are free and nobody is waiting (one stream alone may
        use every core), else one. `deadline` is a time.monotonic() value,
        earlier is more urgent."""
        with self._lock:
            if self._busy < self.lanes and not self._waiting:
                held = min(most, self.lanes - self._busy)
                self._busy += held
                granted = None
            else:
                held = 1
                granted = threading.Event()
                heapq.heappush(self._waiting, (deadline, next(self._order), granted))
        if granted is not None:
            granted.wait()  # a releasing turn handed its lane straight to us
        try:
            yield held
        finally:
            with self._lock:
                for _ in range(held):
                    if self._waiting:
                        heapq.heappop(self._waiting)[2].set()
                    else:
                        self._busy -= 1
