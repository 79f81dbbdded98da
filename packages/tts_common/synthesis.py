"""The serving core: every transport's synthesis runs through here.

A transport (HTTP: `streaming.py`; WebSocket: `realtime_session.py`) validates
what a client asks, then hands the core a `Synthesis` (a model's audio for some
text, from its engine) and takes audio back:

    lease = await core.admit(transport, rid, gone)  # a slot, or Busy / ClientGone
    run = Run(core, lease, synthesis, ...)         # its worker thread starts
    item = await run.next()                        # Audio ..., then Finished

What the core guarantees, whatever the transport and however a run ends:
- admission: at most `TTS_MAX_STREAMS` runs hold a slot (or, for a model that
  measures its load, runs start while it keeps up: `slots.LoadCheck`); a lease is
  released exactly once: when the worker returns, or at once when the stall
  watchdog abandons it;
- backpressure: the worker asks the model for the next chunk only while less than
  `TTS_MAX_AHEAD_S` of audio waits in the server for its connection (`Backlog`,
  which a transport may share across runs, as a WebSocket session does);
- the stall watchdog: a model that yields nothing for `TTS_STALL_TIMEOUT_S` is
  abandoned (RunStalled), and the replica reports unhealthy until it returns;
- cancellation: `run.cancel()` stops the worker at its next chunk, and a client
  the transport reports gone (`gone()`) cancels it too;
- metrics: each run counted once by outcome (`tts_utterances_total`), its first
  audio, audio seconds and real-time factor, per transport.

Nothing here knows HTTP or WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field

import numpy as np

from .audio import StreamEncoder
from .metrics import ModelMetrics, Transport, UtteranceOutcome
from .settings import ServingSettings
from .slots import Busy, ClientGone, SlotGate

logger = logging.getLogger(__name__)

# How often a run waiting for audio checks its client and its model.
POLL_S = 0.25

Gone = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class WordTime:
    """A word of the text as sent, and when it is spoken, in seconds from the
    start of its synthesis's audio."""

    word: str
    start_s: float
    end_s: float


@dataclass
class Synthesis:
    """What an engine hands back for some text: `chunks(cancel)` yields float32
    mono chunks at `model_rate`, in text order, and returns soon after `cancel`
    is set (checked between chunks); `words()`, called once the chunks are
    exhausted, gives the word times (None: the model has none)."""

    model_rate: int
    chunks: Callable[[threading.Event], Generator[np.ndarray, None, None]]
    words: Callable[[], list[WordTime] | None] = lambda: None
    # Facts about the synthesis a transport may pass on (HTTP: response headers);
    # `chunks` may fill them in before its first chunk.
    info: dict[str, str] = field(default_factory=dict)


class Lease:
    """A held synthesis slot; `release()` gives it back the first time only."""

    def __init__(self, release: Callable[[], None]):
        self._release = release
        self.released = False

    def release(self) -> bool:
        """True when this call released the slot, False when it was already released."""
        if self.released:
            return False
        self.released = True
        self._release()
        return True


# Below this, the backlog holds nothing: what `add` and `take` sum may not return to 0.0
# exactly, and a session idle between turns must not spend its credit on float dust.
_NOTHING_S = 1e-6


class ClientTooSlow(RuntimeError):
    """The client took audio too slowly while its run held a slot: the run is cut."""


class Backlog:
    """Seconds of audio made and not yet taken by the connection. A worker waits
    for room before asking the model for more; the transport `take`s what it sent.

    It also enforces the minimum drain rate: a run whose audio waits for its
    client holds a slot for that client alone, so the client must take audio at
    `min_drain_rate` x real time or more. Time with audio waiting spends a credit
    of at most `drain_grace_s` seconds; each second of audio taken earns 1/rate
    back. A client taking audio in real time never runs short, nor does one
    taking it as fast as a slow model makes it (nothing waits); one taking
    nothing is cut after `drain_grace_s`, one trickling shortly after: dribbling
    a byte before each read timeout no longer holds a slot."""

    def __init__(self, settings: ServingSettings):
        self.limit_s = settings.max_ahead_s
        self._min_rate = settings.min_drain_rate
        self._grace_s = settings.drain_grace_s
        self._credit_s = self._grace_s
        self._seconds = 0.0
        self._settled_at = time.monotonic()
        self._room = threading.Condition()

    @property
    def seconds(self) -> float:
        return self._seconds

    def _settle(self) -> None:
        """Spends the credit for the time audio waited since the last call (lock held)."""
        now = time.monotonic()
        if self._seconds > _NOTHING_S:
            self._credit_s -= now - self._settled_at
        self._settled_at = now

    def add(self, seconds: float) -> None:
        with self._room:
            self._settle()
            self._seconds += seconds

    def take(self, seconds: float) -> None:
        with self._room:
            self._settle()
            self._seconds -= seconds
            if self._min_rate > 0:
                self._credit_s = min(self._grace_s, self._credit_s + seconds / self._min_rate)
            self._room.notify_all()

    def wait_for_room(self, cancel: threading.Event) -> bool:
        """Block while the backlog is full; False once `cancel` is set. Raises
        ClientTooSlow once the client has drained too slowly for too long."""
        with self._room:
            while True:
                self._settle()
                if self._min_rate > 0 and self._credit_s <= 0:
                    raise ClientTooSlow(
                        f"the client took audio at under {self._min_rate:g}x real time "
                        f"for more than {self._grace_s:g} s while holding a slot"
                    )
                if self._seconds < self.limit_s or cancel.is_set():
                    return not cancel.is_set()
                self._room.wait(POLL_S)

    def wake(self) -> None:
        """Wakes workers waiting for room, so a cancelled one sees it at once."""
        with self._room:
            self._room.notify_all()


@dataclass(frozen=True)
class Audio:
    """Encoded audio ready to send, and the seconds it holds (to `take` once sent)."""

    data: bytes
    seconds: float


@dataclass(frozen=True)
class Finished:
    """The run made all its audio."""

    audio_s: float
    words: list[WordTime] | None


class RunFailed(RuntimeError):
    """The model raised; the log has the traceback."""


class RunStalled(RuntimeError):
    """The model yielded nothing for the stall timeout: the run was abandoned."""


_FAILED, _CUT = object(), object()
_Item = Audio | Finished | object


class Run:
    """One synthesis on its own worker thread, started at once under `lease`;
    the event loop reads its audio. `started_at` (monotonic) is the moment first
    audio is measured from; `gone()` says whether the client left; `words`: ask
    the synthesis for word times once its audio is made; `on_cut()` is called on
    the event loop when the run cuts a client that drains too slowly (ClientTooSlow),
    for the transport to drop a connection whose sends are blocked."""

    def __init__(
        self,
        core: SynthesisCore,
        lease: Lease,
        synthesis: Synthesis,
        encoder: StreamEncoder,
        backlog: Backlog,
        transport: Transport,
        *,
        started_at: float,
        rid: str,
        gone: Gone | None = None,
        words: bool = False,
        on_cut: Callable[[], object] | None = None,
    ):
        self._core = core
        self._lease = lease
        self._synthesis = synthesis
        self._encoder = encoder
        self._backlog = backlog
        self._transport = transport
        self._started_at = started_at
        self._rid = rid
        self._gone = gone
        self._want_words = words
        self._on_cut = on_cut
        self._cut_reason = ""
        self._cancel = threading.Event()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._in_model_since: float | None = None  # set while the model computes a chunk
        self._model_s = 0.0
        self._audio_s = 0.0
        self._first_seen = False
        self._stalled = False
        self._outcome = UtteranceOutcome.ok
        threading.Thread(target=self._work, name=f"tts-run-{rid[:8]}", daemon=True).start()

    def cancel(self) -> None:
        """Stop the worker at its next chunk (a no-op once it has finished)."""
        self._cancel.set()
        self._backlog.wake()

    async def next(self) -> Audio | Finished:
        """The next piece of audio, or Finished. Raises RunFailed, RunStalled,
        ClientTooSlow, or ClientGone once `gone()` says the client left (the run
        is then cancelled)."""
        while True:
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout=POLL_S)
            except TimeoutError:
                await self._watch()
                continue
            if item is _FAILED:
                raise RunFailed(f"[{self._rid}] synthesis failed")
            if item is _CUT:
                raise ClientTooSlow(self._cut_reason)
            assert isinstance(item, Audio | Finished)
            if isinstance(item, Audio) and not self._first_seen:
                self._first_seen = True
                self._core.metrics.first_audio(self._transport, time.monotonic() - self._started_at)
            return item

    async def _watch(self) -> None:
        if self._gone is not None and await self._gone():
            self.cancel()
            raise ClientGone()
        since = self._in_model_since
        if since is not None and time.monotonic() - since > self._core.settings.stall_timeout_s:
            self._abandon()
            raise RunStalled(f"[{self._rid}] synthesis stalled")

    def _abandon(self) -> None:
        """Cut loose a model that yields nothing: free the slot now, and report the
        replica unhealthy until the worker returns."""
        self._stalled = True
        self._core.stalled_workers += 1
        self.cancel()
        self._lease.release()
        self._core.metrics.utterance(self._transport, UtteranceOutcome.stalled)
        logger.error(
            "[%s] synthesis yielded nothing for %g s: abandoned, replica unhealthy until it returns",
            self._rid,
            self._core.settings.stall_timeout_s,
        )

    def _put(self, item: _Item) -> None:
        self._on_loop(self._queue.put_nowait, item)

    def _on_loop(self, call: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed under us: the server is stopping
            self._loop.call_soon_threadsafe(call, *args)

    def _work(self) -> None:
        try:
            made = self._produce()
            if self._cancel.is_set():
                self._outcome = UtteranceOutcome.cancelled
                logger.info(
                    "[%s] generation cancelled after %d chunks (%.2f s of audio)",
                    self._rid,
                    made,
                    self._audio_s,
                )
                return
            tail = self._encoder.finish()
            if tail:
                self._put(Audio(tail, 0.0))
            words = self._synthesis.words() if self._want_words else None
            self._put(Finished(round(self._audio_s, 6), words))
        except ClientTooSlow as exc:  # expected: one line, no traceback
            logger.warning("[%s] %s: cut, slot freed", self._rid, exc)
            self._outcome = UtteranceOutcome.cut
            self._cut_reason = str(exc)
            self._cancel.set()
            self._put(_CUT)
            if self._on_cut is not None:
                self._on_loop(self._on_cut)
        except BaseException:  # reported to the reader, never swallowed
            logger.exception("[%s] synthesis failed", self._rid)
            self._outcome = UtteranceOutcome.error
            self._put(_FAILED)
        finally:
            self._in_model_since = None
            self._on_loop(self._returned)

    def _produce(self) -> int:
        """Chunks from the model into the queue, under backpressure, until the
        model is done or the run is cancelled; returns how many were made."""
        rate = self._synthesis.model_rate
        chunks = self._synthesis.chunks(self._cancel)
        made = 0
        unsent_s = 0.0  # audio a compressed encoder holds until its frame fills
        with contextlib.closing(chunks):  # frees model state at once on cancel
            while not self._cancel.is_set():
                self._in_model_since = since = time.monotonic()
                chunk = next(chunks, None)
                self._in_model_since = None
                self._model_s += time.monotonic() - since
                if chunk is None or self._cancel.is_set():
                    break
                made += 1
                seconds = len(chunk) / rate
                self._audio_s += seconds
                self._core.metrics.audio(self._transport, seconds)
                data = self._encoder.encode(chunk)
                unsent_s += seconds
                if data:
                    self._backlog.add(unsent_s)
                    self._put(Audio(data, unsent_s))
                    unsent_s = 0.0
                if not self._backlog.wait_for_room(self._cancel):
                    break
        return made

    def _returned(self) -> None:  # on the event loop
        metrics = self._core.metrics
        if self._stalled:
            self._core.stalled_workers -= 1
            logger.warning("[%s] abandoned synthesis returned", self._rid)
        else:
            self._lease.release()
            metrics.utterance(self._transport, self._outcome)
        if self._audio_s > 0:
            metrics.real_time_factor(self._transport, self._model_s / self._audio_s)


class SynthesisCore:
    """Admission, runs and their accounting, for one model instance."""

    def __init__(self, settings: ServingSettings, metrics: ModelMetrics, gate: SlotGate):
        self.settings = settings
        self.metrics = metrics
        self.gate = gate
        self.stalled_workers = 0  # abandoned runs still in the model (event loop only)

    def healthy(self) -> bool:
        """False while a run the watchdog abandoned has not returned: the readiness
        route then fails, so the platform stops traffic and restarts."""
        return self.stalled_workers == 0

    async def admit(self, transport: Transport, rid: str, gone: Gone | None = None) -> Lease:
        """Wait for a slot. Raises Busy (no slot in time, or overloaded) or
        ClientGone (`gone()` said the client left while it waited)."""
        metrics, started = self.metrics, time.monotonic()
        metrics.waiting.inc()
        try:
            await self.gate.acquire(gone=gone)
        except Busy as exc:
            logger.info("[%s] %s", rid, exc)
            metrics.utterance(transport, UtteranceOutcome.busy)
            raise
        except ClientGone:
            logger.info("[%s] client left while waiting for a slot; never started", rid)
            metrics.utterance(transport, UtteranceOutcome.cancelled)
            raise
        finally:
            metrics.waiting.dec()
        metrics.queue_wait.observe(time.monotonic() - started)
        metrics.in_flight.inc()

        def release() -> None:
            self.gate.release()
            metrics.in_flight.dec()

        return Lease(release)


def serving_core(
    settings: ServingSettings, model_name: str, behind: Callable[[], float] | None = None
) -> SynthesisCore:
    """A streaming Truss's core: `TTS_MAX_STREAMS` slots, and admission by load
    when the model measures how far `behind` its listeners it is."""
    return SynthesisCore(settings, ModelMetrics(model_name), SlotGate.serving(settings, behind))
