"""Admission control shared by every Truss: at most N generations at once per
replica; a request waits a bounded time for a slot, then gets 503."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Optional

from starlette.responses import JSONResponse


class Busy(Exception):
    """No slot freed up within the queue timeout: answer 503 with Retry-After."""

    def __init__(self, slots: int, timeout_s: float):
        super().__init__(f"busy: all {slots} generation slots stayed taken for {timeout_s:g} s; retry shortly")

    def response(self) -> JSONResponse:
        return JSONResponse(
            status_code=503, content={"error": str(self), "field": None}, headers={"Retry-After": "1"}
        )


class SlotGate:
    """At most `slots` generations at once; others wait up to `timeout_s`, then Busy.

    Validation happens before a request asks for a slot, so bad input is answered
    at once even while the model is busy.
    """

    def __init__(self, slots: int, timeout_s: float):
        self.slots = slots
        self.timeout_s = timeout_s
        self._semaphore: Optional[asyncio.Semaphore] = None

    async def acquire(self) -> None:
        if self._semaphore is None:  # created on the server's event loop, not in load()
            self._semaphore = asyncio.Semaphore(self.slots)
        try:
            await asyncio.wait_for(self._semaphore.acquire(), timeout=self.timeout_s)
        except asyncio.TimeoutError:
            raise Busy(self.slots, self.timeout_s) from None

    def release(self) -> None:
        assert self._semaphore is not None
        self._semaphore.release()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()
