"""SlotGate's admission by load: a request starts at once while the model keeps
up, waits briefly while it is behind, and is refused quickly if it stays behind."""

import asyncio
import time

import pytest

from tts_common.slots import Busy, ClientGone, LoadCheck, SlotGate


def gate(behind, slots: int = 32, wait_s: float = 0.3) -> SlotGate:
    return SlotGate(slots, timeout_s=8.0, load=LoadCheck(behind, limit_s=0.25, wait_s=wait_s))


def test_keeping_up_admits_beyond_any_fixed_count_of_streams():
    async def run() -> None:
        g = gate(lambda: 0.1, slots=32)
        for _ in range(20):  # no release: 20 streams at once
            await asyncio.wait_for(g.acquire(), 0.5)

    asyncio.run(run())


def test_staying_behind_is_refused_after_the_overload_wait_not_the_queue_timeout():
    async def run() -> float:
        g = gate(lambda: 0.6, wait_s=0.3)
        started = time.monotonic()
        with pytest.raises(Busy, match="overloaded"):
            await g.acquire()
        return time.monotonic() - started

    waited = asyncio.run(run())
    assert 0.3 <= waited < 8.0


def test_a_request_held_back_starts_once_the_model_catches_up():
    behind = [1.0]

    async def run() -> None:
        g = gate(lambda: behind[0], wait_s=5.0)
        asyncio.get_running_loop().call_later(0.2, lambda: behind.__setitem__(0, 0.0))
        await asyncio.wait_for(g.acquire(), 2.0)

    asyncio.run(run())


def test_a_request_held_back_leaves_when_its_client_goes():
    async def gone() -> bool:
        return True

    async def run() -> None:
        with pytest.raises(ClientGone):
            await gate(lambda: 1.0, wait_s=5.0).acquire(gone)

    asyncio.run(run())


def test_the_slot_count_still_caps():
    async def run() -> None:
        g = SlotGate(1, timeout_s=0.2, load=LoadCheck(lambda: 0.0, 0.25, 1.0))
        await g.acquire()
        with pytest.raises(Busy, match="slots"):
            await g.acquire()

    asyncio.run(run())
