"""Admission control shared by every Truss: at most N generations at once per
replica; a request waits a bounded time for a slot, then is refused as busy, and
leaves the queue at once if its client goes away while it waits.

A model that can say how far its work is behind (piper: `CpuLanes.behind_s`, how
late the most overdue waiting CPU turn will be served) is admitted by load instead: a
request starts at once while the model keeps up, whatever the count of streams;
while the model is more than `limit_s` behind, it waits up to `wait_s` for it to
catch up and is then refused (503, Retry-After) rather than make every stream
stall. The slot count then only caps memory and threads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .settings import ServingSettings

# How often a waiting request checks whether its client is still there.
GONE_POLL_S = 0.25


# How often a request held back by load looks again.
LOAD_POLL_S = 0.05


class Busy(Exception):
    """No slot freed up within the queue timeout, or the model stayed overloaded:
    answer 503 with Retry-After."""


@dataclass(frozen=True)
class LoadCheck:
    """Admission by load: `behind()` is how many seconds the model's work is
    behind its listeners; above `limit_s` new requests wait, up to `wait_s`."""

    behind: Callable[[], float]
    limit_s: float
    wait_s: float


class ClientGone(Exception):
    """The client disconnected while its request waited for a slot."""


class SlotGate:
    """At most `slots` generations at once; others wait up to `timeout_s`, then Busy.

    Validation happens before a request asks for a slot, so bad input is answered
    at once even while the model is busy. With a `load` check, a request first
    waits (briefly) for the model to keep up.
    """

    def __init__(self, slots: int, timeout_s: float, load: LoadCheck | None = None):
        self.slots = slots
        self.timeout_s = timeout_s
        self.load = load
        self._semaphore: asyncio.Semaphore | None = None

    @classmethod
    def serving(cls, settings: ServingSettings, behind: Callable[[], float] | None = None) -> SlotGate:
        """A streaming Truss's gate: `TTS_MAX_STREAMS` slots, and admission by
        load when the model measures how far `behind` it is."""
        load = None
        if behind is not None:
            load = LoadCheck(behind, settings.admit_behind_s, settings.overload_wait_s)
        return cls(settings.max_streams, settings.queue_timeout_s, load)

    async def _wait_for_load(self, gone: Callable[[], Awaitable[bool]] | None) -> None:
        load = self.load
        if load is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + load.wait_s
        next_gone_check = loop.time() + GONE_POLL_S
        while (behind := load.behind()) > load.limit_s:
            if loop.time() >= deadline:
                raise Busy(
                    f"overloaded: the model's work stayed {behind:.2f} s behind its listeners "
                    f"for {load.wait_s:g} s; retry shortly"
                )
            await asyncio.sleep(LOAD_POLL_S)
            if gone is not None and loop.time() >= next_gone_check:
                next_gone_check = loop.time() + GONE_POLL_S
                if await gone():
                    raise ClientGone()

    async def acquire(self, gone: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Wait for a slot in arrival order. `gone()` is polled while waiting: when
        it says the client left, the request leaves the queue (ClientGone) and
        never runs."""
        await self._wait_for_load(gone)
        if self._semaphore is None:  # created on the server's event loop, not in load()
            self._semaphore = asyncio.Semaphore(self.slots)
        semaphore = self._semaphore
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        waiter = asyncio.ensure_future(semaphore.acquire())
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise Busy(
                        f"busy: all {self.slots} generation slots stayed taken for "
                        f"{self.timeout_s:g} s; retry shortly"
                    )
                done, _ = await asyncio.wait({waiter}, timeout=min(GONE_POLL_S, remaining))
                if done:
                    return
                if gone is not None and await gone():
                    raise ClientGone()
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                semaphore.release()  # granted in the same instant we gave up
            else:
                waiter.cancel()  # asyncio hands a slot granted meanwhile to the next waiter
            raise

    def release(self) -> None:
        assert self._semaphore is not None
        self._semaphore.release()
