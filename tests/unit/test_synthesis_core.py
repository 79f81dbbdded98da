"""The serving core without a server: admission, a run's worker, backpressure,
the stall watchdog, cancellation and the metrics, under every way a run ends."""

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Generator

import numpy as np
import pytest
from prometheus_client import REGISTRY

from tts_common.audio import StreamEncoder
from tts_common.contract import AudioFormat
from tts_common.metrics import Transport
from tts_common.settings import ServingSettings
from tts_common.slots import Busy, ClientGone
from tts_common.synthesis import (
    Audio,
    Backlog,
    ClientTooSlow,
    Finished,
    Lease,
    Run,
    RunFailed,
    RunStalled,
    Synthesis,
    SynthesisCore,
    WordTime,
    serving_core,
)

RATE = 16000
CHUNK = np.full(RATE // 10, 0.1, dtype=np.float32)  # 100 ms
SETTINGS = ServingSettings(max_streams=1, queue_timeout_s=0.3, max_ahead_s=0.35, stall_timeout_s=0.6)


class Model:
    """A synthetic model: `chunks` chunks of 100 ms, with faults on request;
    records how far it got and whether it saw the cancel."""

    def __init__(
        self, chunks: int = 3, fail_at: int | None = None, hang_s: float = 0.0, every_s: float = 0.0
    ):
        self.count, self.fail_at, self.hang_s, self.every_s = chunks, fail_at, hang_s, every_s
        self.made = 0
        self.closed = threading.Event()

    def chunks(self, cancel: threading.Event) -> Generator[np.ndarray, None, None]:
        try:
            for index in range(self.count):
                if cancel.is_set():
                    return
                if index == self.fail_at:
                    raise RuntimeError("injected")
                if index == 1 and self.hang_s:
                    time.sleep(self.hang_s)  # ignores cancel: a wedged model
                time.sleep(self.every_s)
                self.made += 1
                yield CHUNK
        finally:
            self.closed.set()

    def synthesis(self, words: list[WordTime] | None = None) -> Synthesis:
        return Synthesis(RATE, self.chunks, lambda: words)


def core(settings: ServingSettings = SETTINGS) -> SynthesisCore:
    return serving_core(settings, f"core-{uuid.uuid4().hex[:8]}")


def count(core: SynthesisCore, outcome: str, transport: str = "http") -> float:
    labels = {"model": core.metrics.model, "transport": transport, "outcome": outcome}
    return REGISTRY.get_sample_value("tts_utterances_total", labels) or 0.0


def in_flight(core: SynthesisCore) -> float:
    return REGISTRY.get_sample_value("tts_streams_in_flight", {"model": core.metrics.model}) or 0.0


async def start(
    service: SynthesisCore,
    model: Model,
    gone: Callable[[], asyncio.Future[bool]] | None = None,
    backlog: Backlog | None = None,
    words: bool = False,
    on_cut: Callable[[], None] | None = None,
):
    lease = await service.admit(Transport.http, "test", gone)
    encoder = StreamEncoder(RATE, RATE, AudioFormat.pcm)
    backlog = backlog or Backlog(service.settings)
    run = Run(
        service, lease, model.synthesis([WordTime("hi", 0.0, 0.1)]), encoder, backlog, Transport.http,
        started_at=time.monotonic(), rid="test", gone=gone, words=words, on_cut=on_cut,
    )  # fmt: skip
    return lease, run, backlog


async def drain(run, backlog: Backlog, rate: float | None = None, cut: list | None = None) -> list:
    """Reads the run's audio to its end, taking each piece at once, or at `rate` x
    real time until the run is `cut`."""
    items = []
    while True:
        item = await run.next()
        items.append(item)
        if isinstance(item, Finished):
            return items
        if rate is not None and not cut:
            await asyncio.sleep(item.seconds / rate)
        backlog.take(item.seconds)


async def settled(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


def test_a_complete_run_gives_all_its_audio_then_releases_its_slot_once():
    async def main():
        service, model = core(), Model(chunks=3)
        lease, run, backlog = await start(service, model, words=True)
        assert in_flight(service) == 1
        items = await drain(run, backlog)
        audio = [item for item in items if isinstance(item, Audio)]
        expected = StreamEncoder(RATE, RATE, AudioFormat.pcm)
        assert b"".join(a.data for a in audio) == b"".join(expected.encode(CHUNK) for _ in range(3))
        assert items[-1] == Finished(0.3, [WordTime("hi", 0.0, 0.1)])
        await settled(lambda: lease.released)
        assert not lease.release()  # a second release is a no-op
        assert (in_flight(service), count(service, "ok")) == (0, 1)
        labels = {"model": service.metrics.model, "transport": "http"}
        assert REGISTRY.get_sample_value("tts_time_to_first_audio_seconds_count", labels) == 1
        assert REGISTRY.get_sample_value("tts_audio_seconds_total", labels) == pytest.approx(0.3)
        # the slot is free again: a second run is admitted at once
        lease, second, backlog = await start(service, Model(chunks=1))
        await drain(second, backlog)
        await settled(lambda: lease.released)

    asyncio.run(main())


def test_a_model_that_raises_fails_the_run_and_releases_the_slot():
    async def main():
        service = core()
        lease, run, backlog = await start(service, Model(chunks=5, fail_at=1))
        assert isinstance(await run.next(), Audio)
        with pytest.raises(RunFailed):
            await run.next()
        await settled(lambda: lease.released)
        assert (in_flight(service), count(service, "error"), count(service, "ok")) == (0, 1, 0)

    asyncio.run(main())


def test_cancel_stops_the_worker_within_one_chunk():
    async def main():
        service, model = core(), Model(chunks=1000, every_s=0.02)
        lease, run, backlog = await start(
            service, model, backlog=Backlog(SETTINGS.model_copy(update={"max_ahead_s": 1000.0}))
        )
        await run.next()
        run.cancel()
        made = model.made
        await settled(model.closed.is_set)
        assert model.made <= made + 1
        await settled(lambda: lease.released)
        assert (in_flight(service), count(service, "cancelled")) == (0, 1)

    asyncio.run(main())


def test_a_client_gone_cancels_the_run():
    async def main():
        service, model = core(), Model(chunks=1000)
        left = False

        async def gone() -> bool:
            return left

        lease, run, backlog = await start(service, model, gone=gone)
        await run.next()  # then nobody reads: the backlog fills and the worker waits
        left = True
        with pytest.raises(ClientGone):
            while True:
                await run.next()
        await settled(model.closed.is_set)
        await settled(lambda: lease.released)
        assert count(service, "cancelled") == 1

    asyncio.run(main())


def test_the_watchdog_abandons_a_wedged_model_and_frees_its_slot_at_once():
    async def main():
        service, model = core(), Model(chunks=3, hang_s=1.5)
        lease, run, backlog = await start(service, model)
        assert isinstance(await run.next(), Audio)
        backlog.take(0.1)
        with pytest.raises(RunStalled):
            await run.next()
        assert lease.released and in_flight(service) == 0
        assert not service.healthy()  # until the wedged worker returns
        await settled(model.closed.is_set)
        await settled(service.healthy)
        assert (count(service, "stalled"), count(service, "cancelled"), count(service, "ok")) == (1, 0, 0)

    asyncio.run(main())


def test_backpressure_bounds_the_audio_waiting_for_the_client():
    async def main():
        service, model = core(), Model(chunks=1000)
        lease, run, backlog = await start(service, model)
        await asyncio.sleep(0.5)  # nobody reads
        # the worker stops once the backlog reaches its limit: one chunk past it at most
        assert backlog.seconds <= SETTINGS.max_ahead_s + len(CHUNK) / RATE
        made = model.made
        await asyncio.sleep(0.3)
        assert model.made == made
        run.cancel()
        await settled(lambda: lease.released)

    asyncio.run(main())


def test_admission_refuses_when_every_slot_stays_taken_and_counts_it():
    async def main():
        service = core()
        lease, run, backlog = await start(service, Model(chunks=1000))
        with pytest.raises(Busy):
            await service.admit(Transport.websocket, "second")
        assert count(service, "busy", "websocket") == 1

        async def gone() -> bool:
            return True

        with pytest.raises(ClientGone):
            await service.admit(Transport.websocket, "third", gone)
        assert count(service, "cancelled", "websocket") == 1
        run.cancel()
        await settled(lambda: lease.released)
        (await service.admit(Transport.websocket, "fourth")).release()  # the slot came back

    asyncio.run(main())


def test_a_lease_releases_exactly_once():
    released = []
    lease = Lease(lambda: released.append(1))
    assert lease.release() and not lease.release() and released == [1]


DRAIN = SETTINGS.model_copy(update={"min_drain_rate": 0.5, "drain_grace_s": 0.5})


@pytest.mark.parametrize("rate", [0.0, 0.05])
def test_a_client_draining_under_the_minimum_rate_is_cut_and_its_slot_freed(rate):
    async def main():
        service, model = core(DRAIN), Model(chunks=1000)
        cut: list[float] = []  # when the run called on_cut
        lease, run, backlog = await start(service, model, on_cut=lambda: cut.append(time.monotonic()))
        started = time.monotonic()
        with pytest.raises(ClientTooSlow):
            if rate:
                await drain(run, backlog, rate, cut)
            else:
                while True:
                    await run.next()  # taken from the run, never by the connection
        await settled(lambda: lease.released)
        assert len(cut) == 1 and model.closed.is_set()
        waited = cut[0] - started
        assert (in_flight(service), count(service, "cut"), count(service, "cancelled")) == (0, 1, 0)
        # the grace is waiting time, spent once the backlog (0.35 s) is full
        assert DRAIN.drain_grace_s <= waited < 5.0, waited
        (await service.admit(Transport.http, "next")).release()  # the slot came back

    asyncio.run(main())


def test_a_client_draining_in_real_time_is_never_cut():
    async def main():
        service, model = core(DRAIN), Model(chunks=15)  # 1.5 s: three times the grace
        lease, run, backlog = await start(service, model)
        items = await drain(run, backlog, 1.0)
        assert isinstance(items[-1], Finished) and items[-1].audio_s == pytest.approx(1.5)
        await settled(lambda: lease.released)
        assert count(service, "ok") == 1 and count(service, "cut") == 0

    asyncio.run(main())


def test_float_dust_left_in_a_backlog_spends_no_credit():
    """add and take of the same chunks may not sum back to 0.0: an idle session
    between turns must not be cut at its next turn's first chunk."""
    backlog = Backlog(DRAIN)
    for seconds in (0.1, 0.2):
        backlog.add(seconds)
    for seconds in (0.1, 0.2):
        backlog.take(seconds)
    assert backlog.seconds != 0.0  # the dust this guards against
    time.sleep(DRAIN.drain_grace_s + 0.1)  # idle past the grace
    assert backlog.wait_for_room(threading.Event())
