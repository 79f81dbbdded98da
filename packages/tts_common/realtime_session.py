"""One realtime (WebSocket) session: text in over time, audio and word times out.

A Truss's `async def websocket(self, websocket)` hands truss's (starlette)
WebSocket, already accepted, to `RealtimeService.serve`. Three tasks share the
session:

- the reader takes client messages (realtime_protocol.py), keeps the text
  buffer (text.IncrementalText) and queues each speakable unit the moment the
  buffer holds one;
- the producer synthesizes the queued units one after another, each on a worker
  thread, while the sender is still sending earlier units' audio (pipelined), but
  never more than `TTS_MAX_AHEAD_S` of audio ahead of what the socket has taken
  (the same backpressure as the HTTP path);
- the sender sends, in order: `audio.start`, binary PCM, `audio.done` per unit,
  and `session.done` once everything an `input.done` flushed is sent.

Capacity: a unit holds one of the replica's synthesis slots (`slots.SlotGate`,
`TTS_MAX_STREAMS`, shared with nothing else in the process) from its admission to
its last chunk. Per unit, not per session: a session spends most of its life
waiting for text or parked between turns (LiveKit's plugin keeps one warm socket
per agent, with keepalives), and a slot held per session would let idle agents
shut out speaking ones. Later units of a turn are made while earlier ones play,
so their wait for a slot is hidden by the audio in hand.

Barge-in: `session.close`, a closed socket, a cut (read timeout) or a timeout
sets the session's cancel event: the worker stops at its next chunk, hands back
its CPU turn and slot, and the queued units are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from . import replies
from .audio import StreamEncoder
from .auth import REFUSAL, ApiKeyCheck, api_key
from .contract import AudioFormat
from .metrics import ModelMetrics
from .realtime_protocol import (
    AudioDone,
    AudioStart,
    ErrorEvent,
    InputDone,
    InputText,
    ProtocolError,
    SessionClose,
    SessionConfig,
    SessionDone,
    TimestampInfo,
    VoiceList,
    VoiceListRequest,
    WordAlignment,
    message_type,
    parse_message,
)
from .settings import RealtimeSettings, ServingSettings
from .slots import Busy, ClientGone, SlotGate
from .streaming import POLL_S, Backlog, cap_send_buffer
from .text import IncrementalText

logger = logging.getLogger(__name__)

# Close codes (RFC 6455): normal, policy violation (timeouts, auth), internal error.
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_ERROR = 1000, 1008, 1011


@dataclass
class Utterance:
    """A model's synthesis of one unit: `chunks(cancel)` yields float32 mono audio
    at `model_rate` and returns soon after `cancel` is set; `words()`, called once
    the chunks are exhausted, gives the unit's word times (None: the model has none)."""

    model_rate: int
    chunks: Callable[[threading.Event], Generator[np.ndarray, None, None]]
    words: Callable[[], WordAlignment | None] = lambda: None


class RealtimeModel(Protocol):
    """What a Truss's adapter gives the session: its config schema, checks and synthesis."""

    @property
    def config_model(self) -> type[SessionConfig]:
        """The Truss's SessionConfig subclass (its own fields and bounds)."""

    @property
    def max_unit_chars(self) -> int:
        """A unit longer than this is split at its own punctuation (the HTTP path's limit)."""

    def check(self, config: Any) -> None:
        """Raise ProtocolError naming the field (an unknown voice, say)."""

    def voices(self) -> VoiceList: ...

    def utterance(self, text: str, config: Any, in_hand_s: float) -> Utterance | None:
        """The unit's synthesis (None: nothing to say). `in_hand_s`: audio the
        listener has before it needs this unit's first chunk."""


# A Truss's own control messages (e.g. voice.add): the raw message in, the reply out (an
# event model or a dict); raising ProtocolError answers an `error` naming the field.
ControlHandler = Callable[[dict[str, Any]], Awaitable[Any]]


class RealtimeService:
    """The realtime endpoint of one model instance: auth, slots, sessions."""

    def __init__(
        self,
        model: RealtimeModel,
        serving: ServingSettings,
        realtime: RealtimeSettings,
        model_name: str,
        key: str | None = None,
        control: Mapping[str, ControlHandler] | None = None,
        behind: Callable[[], float] | None = None,
    ):
        """`behind`: for a model that measures its load (piper's CPU lanes), units
        are admitted by that load (`slots.LoadCheck`), as over HTTP."""
        self.model = model
        self.serving = serving
        self.realtime = realtime
        self.metrics = ModelMetrics(model_name)
        self.control = dict(control or {})
        self.gate = SlotGate.serving(serving, behind)
        self._auth = ApiKeyCheck(key)
        self.stalled_workers = 0

    @classmethod
    def for_truss(
        cls,
        truss_kwargs: Mapping[str, Any],
        model: RealtimeModel,
        control: Mapping[str, ControlHandler] | None = None,
        behind: Callable[[], float] | None = None,
    ) -> RealtimeService:
        return cls(
            model,
            ServingSettings.from_env(),
            RealtimeSettings.from_env(),
            truss_kwargs["config"]["model_name"],
            api_key(truss_kwargs.get("secrets")),
            control,
            behind,
        )

    def healthy(self) -> bool:
        """False while a synthesis the stall watchdog abandoned has not returned."""
        return self.stalled_workers == 0

    async def serve(self, websocket: WebSocket) -> None:
        rid = replies.request_id(websocket)
        # truss has accepted the socket before the model sees it: refuse in-band.
        if not self._auth.accepts(websocket, rid):
            await _close(
                websocket, CLOSE_POLICY, ErrorEvent(message=REFUSAL, field="authorization", fatal=True)
            )
            return
        await _Session(self, websocket, rid).run()


async def _close(websocket: WebSocket, code: int, event: ErrorEvent | None = None) -> None:
    with contextlib.suppress(Exception):  # the client may be gone already
        if event is not None:
            await websocket.send_text(event.json_text())
        if websocket.application_state is not WebSocketState.DISCONNECTED:
            await websocket.close(code=code, reason=(event.message[:120] if event else ""))


@dataclass
class _Unit:
    text: str
    config: SessionConfig
    queued_at: float = field(default_factory=time.monotonic)


class _Flush:
    """An input.done's place in the unit queue."""


@dataclass
class _Audio:
    data: bytes
    seconds: float


class _Stop(Exception):
    """Ends the session: the error event to send (if any) and the close code."""

    def __init__(self, code: int, event: ErrorEvent | None = None):
        super().__init__(event.message if event else "")
        self.code = code
        self.event = event


_Out = _Audio | AudioStart | AudioDone | SessionDone | ErrorEvent


class _Session:
    def __init__(self, service: RealtimeService, websocket: WebSocket, rid: str):
        self.service = service
        self.model = service.model
        self.ws = websocket
        self.rid = rid
        self.config: SessionConfig | None = None
        self.text = IncrementalText(self.model.max_unit_chars)
        self.units: asyncio.Queue[_Unit | _Flush] = asyncio.Queue()
        self.out: asyncio.Queue[_Out] = asyncio.Queue()
        self.queued_chars = 0  # text in queued units, not yet handed to the model
        self.cancel = threading.Event()  # the whole session stops
        self.backlog = Backlog(service.serving.max_ahead_s, self.cancel)
        self.playback_end = 0.0  # when the listener runs out of audio sent so far
        self.working = False  # the producer is on a unit
        self.sending = False
        self.last_heard = time.monotonic()
        self._send_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        logger.info("[%s] realtime session opened", self.rid)
        # As over HTTP: what a client has not read stays near the backlog, not the
        # kernel's autotuned megabytes; sized at 24 kHz PCM, the default rate, since
        # a session's rate may change between turns.
        if not cap_send_buffer(self.ws, 48000, self.service.serving.max_ahead_s):
            logger.debug("[%s] could not cap the socket's send buffer", self.rid)
        tasks = {
            asyncio.create_task(self._read(), name=f"ws-read-{self.rid[:8]}"),
            asyncio.create_task(self._send_loop(), name=f"ws-send-{self.rid[:8]}"),
            asyncio.create_task(self._produce(), name=f"ws-produce-{self.rid[:8]}"),
        }
        stop = _Stop(CLOSE_NORMAL)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if isinstance(error, _Stop):
                    stop = error
                elif error is not None:
                    logger.error("[%s] realtime session failed", self.rid, exc_info=error)
                    stop = _Stop(CLOSE_ERROR, self._internal_error("the session failed"))
        finally:
            self.cancel.set()  # barge-in: the worker stops at its next chunk
            self.backlog.take(0.0)  # wake a worker waiting for room
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await _close(self.ws, stop.code, stop.event)
            logger.info("[%s] realtime session closed (%s)", self.rid, stop.code)

    def _internal_error(self, what: str, index: int | None = None, fatal: bool = True) -> ErrorEvent:
        return ErrorEvent(
            message=f"{what}; the server log has details under request id {self.rid}",
            sentence_index=index,
            fatal=fatal,
        )

    def busy(self) -> bool:
        """Work in flight: the idle timeout does not run."""
        return self.working or self.sending or not self.units.empty() or not self.out.empty()

    def in_hand_s(self) -> float:
        """Audio the listener has not heard yet: sent and playing, or made and unsent."""
        return max(0.0, self.playback_end - time.monotonic()) + self.backlog.seconds

    # -- reader ------------------------------------------------------------------

    async def _read(self) -> None:
        settings = self.service.realtime
        while True:
            limit = settings.idle_timeout_s if self.config else settings.config_timeout_s
            if self.busy():
                self.last_heard = time.monotonic()
            remaining = self.last_heard + limit - time.monotonic()
            try:
                message = await asyncio.wait_for(
                    self.ws.receive(), timeout=max(0.0, min(remaining, POLL_S * 4))
                )
            except TimeoutError:
                if self.busy() or time.monotonic() < self.last_heard + limit:
                    continue
                what = "no message" if self.config else "no session.config"
                raise _Stop(
                    CLOSE_POLICY if self.config is None else CLOSE_NORMAL,
                    ErrorEvent(message=f"{what} for {limit:g} s: closing", fatal=True),
                ) from None
            if message["type"] == "websocket.disconnect":
                logger.info("[%s] client closed the socket", self.rid)
                return
            self.last_heard = time.monotonic()
            try:
                await self._handle(message)
            except ProtocolError as exc:
                logger.info("[%s] refused: %s", self.rid, exc)
                await self._send_event(ErrorEvent.of(exc))

    async def _handle(self, message: Mapping[str, Any]) -> None:
        raw = message.get("text")
        if raw is None:
            raise ProtocolError.of("message", "binary frames are not part of the protocol; send JSON text")
        limit = self.service.realtime.max_message_bytes
        size = len(raw.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ProtocolError.of("message", f"is {size} bytes; at most {limit}")
        kind, data = message_type(raw)
        parsed = parse_message(kind, data, self.model.config_model, tuple(self.service.control))
        if isinstance(parsed, dict):
            reply = await self.service.control[kind](parsed)
            await self._send_event(reply)
        elif isinstance(parsed, SessionConfig):
            self.model.check(parsed)
            self.config = parsed
        elif isinstance(parsed, InputText):
            self._take_text(parsed.text)
        elif isinstance(parsed, InputDone):
            for unit in self.text.flush():
                self._queue(unit)
            self.units.put_nowait(_Flush())
        elif isinstance(parsed, VoiceListRequest):
            await self._send_event(self.model.voices())
        elif isinstance(parsed, SessionClose):
            logger.info("[%s] session.close", self.rid)
            raise _Stop(CLOSE_NORMAL)

    def _take_text(self, text: str) -> None:
        if self.config is None:
            raise ProtocolError.of("session.config", "send a session.config before input.text", "input.text")
        limit = self.service.realtime.max_buffered_chars
        held = self.queued_chars + len(self.text) + len(text)
        if held > limit:
            raise ProtocolError.of(
                "text", f"{held} characters would wait to be spoken; at most {limit}", "input.text"
            )
        self.text.push(text)
        for unit in self.text.units(eager=self.in_hand_s() < self.service.realtime.eager_below_s):
            self._queue(unit)

    def _queue(self, text: str) -> None:
        assert self.config is not None
        self.queued_chars += len(text)
        self.units.put_nowait(_Unit(text, self.config))

    # -- producer ----------------------------------------------------------------

    async def _produce(self) -> None:
        index = 0  # sentence_index within the current flush
        while True:
            item = await self.units.get()
            self.working = True
            try:
                if isinstance(item, _Flush):
                    self.out.put_nowait(SessionDone(sentences=index))
                    index = 0
                    continue
                self.queued_chars -= len(item.text)
                if await self._speak(item, index):
                    index += 1
            finally:
                self.working = False

    async def _speak(self, unit: _Unit, index: int) -> bool:
        """Synthesize one unit into the outbox; True if it was given an index."""
        try:
            utterance = await asyncio.to_thread(
                self.model.utterance, unit.text, unit.config, self.in_hand_s()
            )
        except Exception:
            logger.exception("[%s] preparing unit %d failed", self.rid, index)
            self.out.put_nowait(
                self._internal_error(f"preparing sentence {index} failed", index, fatal=False)
            )
            return True
        if utterance is None:
            return False  # nothing speakable (punctuation alone, say)
        if not await self._admit(index):
            return True
        await self._synthesize(unit, utterance, index)
        return True

    async def _admit(self, index: int) -> bool:
        metrics, started = self.service.metrics, time.monotonic()
        metrics.waiting.inc()
        try:
            await self.service.gate.acquire(gone=self._gone)
        except Busy as exc:
            logger.info("[%s] unit %d: %s", self.rid, index, exc)
            self.out.put_nowait(ErrorEvent(message=str(exc), sentence_index=index))
            return False
        except ClientGone:
            return False
        finally:
            metrics.waiting.dec()
        metrics.queue_wait.observe(time.monotonic() - started)
        metrics.in_flight.inc()
        return True

    async def _gone(self) -> bool:
        return self.cancel.is_set()

    async def _synthesize(self, unit: _Unit, utterance: Utterance, index: int) -> None:
        """Runs the unit's worker thread; returns once it has made all its audio
        (not once that audio is sent), so the next unit starts while this one plays."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        cancel = threading.Event()
        in_model_since: list[float | None] = [None]
        metrics = self.service.metrics
        config = unit.config
        encoder = StreamEncoder(utterance.model_rate, config.sample_rate, AudioFormat.pcm)

        def put(item: _Out) -> None:
            loop.call_soon_threadsafe(self.out.put_nowait, item)

        def work() -> None:
            chunks = utterance.chunks(cancel)
            model_s = audio_s = 0.0
            try:
                with contextlib.closing(chunks):
                    while not (cancel.is_set() or self.cancel.is_set()):
                        in_model_since[0] = since = time.monotonic()
                        chunk = next(chunks, None)
                        in_model_since[0] = None
                        model_s += time.monotonic() - since
                        if chunk is None or cancel.is_set() or self.cancel.is_set():
                            break
                        if audio_s == 0.0:
                            metrics.time_to_first_audio.observe(time.monotonic() - unit.queued_at)
                            put(
                                AudioStart(
                                    sentence_index=index, sample_rate=config.sample_rate, text=unit.text
                                )
                            )
                        seconds = len(chunk) / utterance.model_rate
                        audio_s += seconds
                        metrics.audio_seconds.inc(seconds)
                        data = encoder.encode(chunk)
                        if data:
                            self.backlog.add(seconds)
                            put(_Audio(data, seconds))
                        if not self.backlog.wait_for_room():
                            break
                if cancel.is_set() or self.cancel.is_set():
                    logger.info("[%s] unit %d cancelled", self.rid, index)
                    return
                if audio_s == 0.0:
                    put(AudioStart(sentence_index=index, sample_rate=config.sample_rate, text=unit.text))
                tail = encoder.finish()
                if tail:
                    put(_Audio(tail, 0.0))
                words = utterance.words() if config.word_timestamps else None
                put(
                    AudioDone(
                        sentence_index=index,
                        audio_seconds=round(audio_s, 6),
                        timestamp_info=TimestampInfo(word_alignment=words) if words else None,
                    )
                )
                if audio_s > 0:
                    metrics.real_time_factor.observe(model_s / audio_s)
            except BaseException:  # reported to the client, never swallowed
                logger.exception("[%s] synthesis of unit %d failed", self.rid, index)
                put(self._internal_error(f"synthesis of sentence {index} failed", index, fatal=False))
            finally:
                in_model_since[0] = None
                loop.call_soon_threadsafe(done)

        stalled = False

        def done() -> None:  # on the event loop
            if stalled:
                self.service.stalled_workers -= 1
                logger.warning("[%s] abandoned synthesis returned", self.rid)
            else:
                self._release()
            if not finished.done():
                finished.set_result(None)

        threading.Thread(target=work, name=f"tts-ws-{self.rid[:8]}-{index}", daemon=True).start()
        stall_s = self.service.serving.stall_timeout_s
        while not finished.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(finished), timeout=POLL_S)
            since = in_model_since[0]
            if since is not None and time.monotonic() - since > stall_s and not finished.done():
                stalled = True
                self.service.stalled_workers += 1
                cancel.set()
                self._release()
                logger.error("[%s] unit %d yielded nothing for %g s: abandoned", self.rid, index, stall_s)
                self.out.put_nowait(self._internal_error(f"synthesis of sentence {index} stalled", index))
                return

    def _release(self) -> None:
        self.service.gate.release()
        self.service.metrics.in_flight.dec()

    # -- sender ------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            item = await self.out.get()
            self.sending = True
            try:
                if isinstance(item, _Audio):
                    await self._send(item.data)
                    self.backlog.take(item.seconds)
                    self.playback_end = max(self.playback_end, time.monotonic()) + item.seconds
                else:
                    await self._send_event(item)
                    if isinstance(item, ErrorEvent) and item.fatal:
                        raise _Stop(CLOSE_ERROR)
            finally:
                self.sending = False

    async def _send_event(self, event: Any) -> None:
        """A server event: one of realtime_protocol's, or a control handler's plain dict."""
        await self._send(json.dumps(event) if isinstance(event, dict) else event.json_text())

    async def _send(self, payload: str | bytes) -> None:
        """One frame; a client that takes nothing for TTS_READ_TIMEOUT_S is cut."""
        timeout = self.service.serving.read_timeout_s
        async with self._send_lock:
            try:
                if isinstance(payload, bytes):
                    await asyncio.wait_for(self.ws.send_bytes(payload), timeout)
                else:
                    await asyncio.wait_for(self.ws.send_text(payload), timeout)
            except TimeoutError:
                logger.info("[%s] client took nothing for %g s: cut", self.rid, timeout)
                raise _Stop(CLOSE_POLICY) from None
            except WebSocketDisconnect:
                logger.info("[%s] client gone while sending", self.rid)
                raise _Stop(CLOSE_NORMAL) from None
