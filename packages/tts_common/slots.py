"""Admission control shared by every Truss: at most N generations at once per
replica; a request waits a bounded time for a slot, then is refused as busy, and
leaves the queue at once if its client goes away while it waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

# How often a waiting request checks whether its client is still there.
GONE_POLL_S = 0.25


class Busy(Exception):
    """No slot freed up within the queue timeout: answer 503 with Retry-After."""

    def __init__(self, slots: int, timeout_s: float):
        super().__init__(
            f"busy: all {slots} generation slots stayed taken for {timeout_s:g} s; retry shortly"
        )


class ClientGone(Exception):
    """The client disconnected while its request waited for a slot."""


class SlotGate:
    """At most `slots` generations at once; others wait up to `timeout_s`, then Busy.

    Validation happens before a request asks for a slot, so bad input is answered
    at once even while the model is busy.
    """

    def __init__(self, slots: int, timeout_s: float):
        self.slots = slots
        self.timeout_s = timeout_s
        self._semaphore: asyncio.Semaphore | None = None

    async def acquire(self, gone: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Wait for a slot in arrival order. `gone()` is polled while waiting: when
        it says the client left, the request leaves the queue (ClientGone) and
        never runs."""
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
                    raise Busy(self.slots, self.timeout_s)
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

    @contextlib.asynccontextmanager
    async def slot(self, gone: Callable[[], Awaitable[bool]] | None = None) -> AsyncIterator[None]:
        await self.acquire(gone)
        try:
            yield
        finally:
            self.release()
