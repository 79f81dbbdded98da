"""The WebSocket transport: one realtime session, text in over time, audio and
word times out. It translates protocol events into units for the serving core
(`synthesis.py`), which admits and runs each, and the runs' audio back into events.

A Truss's `async def websocket(self, websocket)` hands truss's (starlette)
WebSocket, already accepted, to `RealtimeService.serve`. Three tasks share the
session:

- the reader takes client messages (realtime_protocol.py), keeps the text
  buffer (text.IncrementalText) and queues each speakable unit the moment the
  buffer holds one;
- the producer hands the queued units to the core one after another, each a run
  on its worker thread, while the sender is still sending earlier units' audio
  (pipelined), but never more than `TTS_MAX_AHEAD_S` of audio ahead of what the
  socket has taken (one `Backlog` for the session's runs);
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
ends the session's tasks: the producer's run is cancelled (its worker stops at
its next chunk and hands back its CPU turn and slot), a unit waiting for a slot
leaves the queue, and the queued units are dropped. Each session is counted once
by how it ended (`tts_sessions_total`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .audio import StreamEncoder
from .auth import REFUSAL, ApiKeyCheck
from .baseten_dialect import END_OF_INPUT, baseten_config, default_session
from .connection import cap_send_buffer, drop, request_id
from .contract import AudioFormat, FieldError
from .engine import Engine, resolve
from .metrics import SessionOutcome, Transport
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
from .settings import RealtimeSettings
from .slots import Busy, ClientGone
from .synthesis import (
    POLL_S,
    Audio,
    Backlog,
    ClientTooSlow,
    Finished,
    Run,
    RunFailed,
    RunStalled,
    Synthesis,
    SynthesisCore,
    WordTime,
)
from .text import IncrementalText

logger = logging.getLogger(__name__)

# Close codes (RFC 6455): normal, policy violation (timeouts, auth, rate), message too
# big, internal error, try again later (the replica's session bound).
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_ERROR, CLOSE_AGAIN = 1000, 1008, 1009, 1011, 1013
# Text a reader plans on the event loop; longer goes to a thread, so one client's
# big frame cannot hold up every other socket's messages.
INLINE_TEXT_CHARS = 2048
# How long a closing session waits for a client to take its last frames.
CLOSE_WAIT_S = 2.0
# Close codes a client sends when it ends a session on purpose.
_CLIENT_CLOSED = frozenset({1000, 1001})


@dataclass(frozen=True)
class Caller:
    """Who a session serves: its request id, and the API key it presented (hashed), if any."""

    rid: str
    key_id: str | None


# A Truss's own control messages (e.g. voice.add): the raw message and its caller in, the
# reply out (an event model or a dict); raising ProtocolError answers an `error` naming the field.
ControlHandler = Callable[[dict[str, Any], Caller], Awaitable[Any]]


class Extension:
    """A Truss's own additions to the protocol (xtts-realtime's voice uploads); this
    base adds nothing. Called on the event loop."""

    messages: Mapping[str, ControlHandler] = {}

    def voice_list(self, caller: Caller, engine: Engine) -> VoiceList:
        return VoiceList(voices=engine.voice_names())

    def voice(self, caller: Caller, name: str | None) -> str | None:
        """The engine's name for the voice this caller asks for; FieldError if it may not."""
        return name

    def closed(self, caller: Caller) -> None:
        """The caller's session ended."""


class RealtimeService:
    """The WebSocket face of one model instance: auth, sessions, over the serving core."""

    def __init__(
        self,
        core: SynthesisCore,
        engine: Engine,
        config_model: type[SessionConfig],
        settings: RealtimeSettings,
        key: str | None = None,
        extension: Extension | None = None,
    ):
        """`config_model`: the Truss's SessionConfig (with its engine's options)."""
        self.core = core
        self.engine = engine
        self.config_model = config_model
        self.realtime = settings
        self.extension = extension or Extension()
        self._auth = ApiKeyCheck(key)
        self.open_sessions = 0  # on the event loop only

    def check(self, config: SessionConfig, caller: Caller) -> str:
        """The engine's checks of a session.config, as protocol errors naming the
        field; the language it will speak."""
        try:
            if config.word_timestamps and not self.engine.word_times:
                raise FieldError("timestamp_type", 'this model gives no word timestamps; send "none"')
            return resolve(self.engine, config.language, self.extension.voice(caller, config.voice))
        except FieldError as exc:
            raise ProtocolError.of(exc.field, exc.message, config.type) from None

    async def serve(self, websocket: WebSocket) -> None:
        rid = request_id(websocket)
        # truss has accepted the socket before the model sees it: refuse in-band.
        if not self._auth.accepts(websocket.headers, rid):
            self.core.metrics.session(SessionOutcome.unauthorized)
            await _close(
                websocket, CLOSE_POLICY, ErrorEvent(message=REFUSAL, field="authorization", fatal=True)
            )
            return
        limit = self.realtime.max_sessions
        if self.open_sessions >= limit:
            logger.warning("[%s] refused: %d sessions open already", rid, self.open_sessions)
            self.core.metrics.session(SessionOutcome.busy)
            busy = f"busy: this replica has {limit} sessions open; retry shortly"
            await _close(websocket, CLOSE_AGAIN, ErrorEvent(message=busy, fatal=True))
            return
        self.open_sessions += 1
        self.core.metrics.sessions_open.inc()
        caller = Caller(rid, self._auth.key_id(websocket.headers))
        try:
            await _Session(self, websocket, caller).run()
        finally:
            self.open_sessions -= 1
            self.core.metrics.sessions_open.dec()
            self.extension.closed(caller)


async def _close(
    websocket: WebSocket, code: int, event: ErrorEvent | None = None, drop_after: bool = False
) -> None:
    """The error event (if any) and a close frame; a client that reads nothing
    cannot hold this up: after CLOSE_WAIT_S the connection is dropped, and at once
    with `drop_after` (a client that does not read)."""

    async def close() -> None:
        if event is not None:
            await websocket.send_text(event.json_text())
        if websocket.application_state is not WebSocketState.DISCONNECTED:
            await websocket.close(code=code, reason=(event.message[:120] if event else ""))

    try:
        await asyncio.wait_for(close(), CLOSE_WAIT_S)
    except Exception:  # the client reads nothing, or is gone already
        drop(websocket)
        return
    if drop_after:
        drop(websocket)


@dataclass
class _Unit:
    text: str
    config: SessionConfig
    queued_at: float = field(default_factory=time.monotonic)


class _Flush:
    """An input.done's place in the unit queue."""


class _Stop(Exception):
    """Ends the session: its outcome, the close code and the error event to send (if any).
    `drop`: the client does not read, so it will not answer the close handshake either:
    the connection is dropped once the close frame is out (or after CLOSE_WAIT_S)."""

    def __init__(
        self, outcome: SessionOutcome, code: int, event: ErrorEvent | None = None, drop: bool = False
    ):
        super().__init__(event.message if event else "")
        self.outcome = outcome
        self.code = code
        self.event = event
        self.drop = drop


_Out = Audio | AudioStart | AudioDone | SessionDone | ErrorEvent


class _Session:
    def __init__(self, service: RealtimeService, websocket: WebSocket, caller: Caller):
        self.service = service
        self.core = service.core
        self.engine = service.engine
        self.ws = websocket
        self.caller = caller
        self.rid = caller.rid
        self.config: SessionConfig | None = None
        self.text = IncrementalText(self.engine.max_unit_chars(self.engine.language(None)))
        self.units: asyncio.Queue[_Unit | _Flush] = asyncio.Queue()
        self.out: asyncio.Queue[_Out] = asyncio.Queue()
        self.queued_chars = 0  # text in queued units, not yet handed to the model
        self.closing = False  # the whole session stops: a unit waiting for a slot leaves
        self.backlog = Backlog(self.core.settings)  # shared by the session's runs
        self.playback_end = 0.0  # when the listener runs out of audio sent so far
        self.working = False  # the producer is on a unit
        self.sending = False
        self.opened = self.last_heard = time.monotonic()
        self.allowance = float(service.realtime.message_burst)  # messages it may send now
        self.counted_at = self.opened
        # Baseten's default TTS dialect (`baseten_dialect.py`): plain words in, PCM out,
        # the socket closed after the audio of its `__END__`.
        self.baseten = False
        self.ending = False
        self._send_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        logger.info("[%s] realtime session opened", self.rid)
        # As over HTTP: what a client has not read stays near the backlog, not the
        # kernel's autotuned megabytes; sized at 24 kHz PCM, the default rate, since
        # a session's rate may change between turns.
        if not cap_send_buffer(self.ws, 48000, self.core.settings.max_ahead_s):
            logger.debug("[%s] could not cap the socket's send buffer", self.rid)
        tasks = {
            asyncio.create_task(self._read(), name=f"ws-read-{self.rid[:8]}"),
            asyncio.create_task(self._send_loop(), name=f"ws-send-{self.rid[:8]}"),
            asyncio.create_task(self._produce(), name=f"ws-produce-{self.rid[:8]}"),
        }
        stop = _Stop(SessionOutcome.ok, CLOSE_NORMAL)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if isinstance(error, _Stop):
                    stop = error
                elif error is not None:
                    logger.error("[%s] realtime session failed", self.rid, exc_info=error)
                    stop = _Stop(
                        SessionOutcome.error, CLOSE_ERROR, self._internal_error("the session failed")
                    )
        finally:
            self.closing = True
            for task in tasks:
                task.cancel()  # the producer's run is cancelled as its task ends
            await asyncio.gather(*tasks, return_exceptions=True)
            await _close(self.ws, stop.code, stop.event, drop_after=stop.drop)
            self.core.metrics.session(stop.outcome)
            logger.info("[%s] realtime session closed (%s, %s)", self.rid, stop.code, stop.outcome.value)

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

    def _deadline(self) -> float:
        """When the session times out: `TTS_WS_CONFIG_TIMEOUT_S` after it opened while
        it has no valid session.config, whatever else it sends; once configured,
        `TTS_WS_IDLE_TIMEOUT_S` after the last message heard or work done."""
        settings = self.service.realtime
        if self.config is None:
            return self.opened + settings.config_timeout_s
        if self.busy():
            self.last_heard = time.monotonic()
        return self.last_heard + settings.idle_timeout_s

    def _timed_out(self) -> _Stop:
        settings = self.service.realtime
        if self.config is None:
            what, limit, code = "no session.config", settings.config_timeout_s, CLOSE_POLICY
        else:
            what, limit, code = "no message", settings.idle_timeout_s, CLOSE_NORMAL
        event = ErrorEvent(message=f"{what} for {limit:g} s: closing", fatal=True)
        return _Stop(SessionOutcome.timeout, code, event)

    async def _read(self) -> None:
        while True:
            remaining = self._deadline() - time.monotonic()
            if remaining <= 0:
                raise self._timed_out()
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=min(remaining, POLL_S * 4))
            except TimeoutError:
                continue
            if message["type"] == "websocket.disconnect":
                code = message.get("code", CLOSE_NORMAL)
                logger.info("[%s] client closed the socket (%s)", self.rid, code)
                clean = code in _CLIENT_CLOSED
                raise _Stop(SessionOutcome.ok if clean else SessionOutcome.client_gone, CLOSE_NORMAL)
            self._count_message()
            try:
                await self._handle(message)
            except ProtocolError as exc:
                logger.info("[%s] refused: %s", self.rid, exc)
                if self.baseten:  # its clients read no events: the close says why
                    event = ErrorEvent.of(exc).model_copy(update={"fatal": True})
                    raise _Stop(SessionOutcome.rejected, CLOSE_POLICY, event) from None
                await self._send_event(ErrorEvent.of(exc))

    def _count_message(self) -> None:
        """A token bucket: `message_burst` messages at once, refilled at
        `max_messages_per_s`; a socket that sends faster is closed."""
        settings, now = self.service.realtime, time.monotonic()
        refill = (now - self.counted_at) * settings.max_messages_per_s
        self.allowance = min(float(settings.message_burst), self.allowance + refill) - 1
        self.counted_at = self.last_heard = now
        if self.allowance < 0:
            rate = f"more than {settings.max_messages_per_s:g} messages a second: closing"
            event = ErrorEvent(message=rate, field="message", fatal=True)
            raise _Stop(SessionOutcome.rejected, CLOSE_POLICY, event)

    async def _handle(self, message: Mapping[str, Any]) -> None:
        raw = message.get("text")
        if raw is None:
            raise ProtocolError.of("message", "binary frames are not part of the protocol; send JSON text")
        limit = self.service.realtime.max_message_bytes
        size = len(raw.encode("utf-8", "surrogatepass"))
        if size > limit:  # not a mistake a client makes twice: the socket is closed
            too_big = f"is {size} bytes; at most {limit}: closing"
            raise _Stop(
                SessionOutcome.rejected,
                CLOSE_TOO_BIG,
                ErrorEvent(message=too_big, field="message", fatal=True),
            )
        if self.baseten:
            await self._baseten_words(raw)
            return
        if self.config is None and (default := baseten_config(raw)) is not None:
            self.baseten = True  # even if the config is refused: the close must say why
            self._configure(default_session(default, self.service.config_model))
            return
        kind, data = message_type(raw)
        extension = self.service.extension
        parsed = parse_message(kind, data, self.service.config_model, tuple(extension.messages))
        if isinstance(parsed, dict):
            reply = await extension.messages[kind](parsed, self.caller)
            await self._send_event(reply)
        elif isinstance(parsed, SessionConfig):
            self._configure(parsed)
        elif isinstance(parsed, InputText):
            await self._take_text(parsed.text)
        elif isinstance(parsed, InputDone):
            self._flush()
        elif isinstance(parsed, VoiceListRequest):
            await self._send_event(extension.voice_list(self.caller, self.engine))
        elif isinstance(parsed, SessionClose):
            logger.info("[%s] session.close", self.rid)
            raise _Stop(SessionOutcome.ok, CLOSE_NORMAL)

    def _configure(self, config: SessionConfig) -> None:
        language = self.service.check(config, self.caller)
        self.config = config
        self.text.max_chars = self.engine.max_unit_chars(language)

    async def _baseten_words(self, raw: str) -> None:
        """Baseten's dialect after its config: words as they come, `__END__` to finish."""
        if raw == END_OF_INPUT:
            self._flush()
            self.ending = True
            return
        text = InputText.model_validate({"type": "input.text", "text": raw}).text
        await self._take_text(text)

    async def _take_text(self, text: str) -> None:
        if self.config is None:
            raise ProtocolError.of("session.config", "send a session.config before input.text", "input.text")
        limit = self.service.realtime.max_buffered_chars
        held = self.queued_chars + len(self.text) + len(text)
        if held > limit:
            raise ProtocolError.of(
                "text", f"{held} characters would wait to be spoken; at most {limit}", "input.text"
            )
        self._check_room("input.text")
        eager = self.in_hand_s() < self.service.realtime.eager_below_s
        if len(self.text) + len(text) <= INLINE_TEXT_CHARS:
            units = self._plan(text, eager)
        else:  # the reader waits for it, so the session's text stays in order
            units = await asyncio.to_thread(self._plan, text, eager)
        for unit in units:
            self._queue(unit)

    def _plan(self, text: str, eager: bool) -> list[str]:
        self.text.push(text)
        return list(self.text.units(eager=eager))

    def _flush(self) -> None:
        """input.done: what the buffer holds is queued, then the flush's place."""
        self._check_room("input.done")
        for unit in self.text.flush():
            self._queue(unit)
        self.units.put_nowait(_Flush())

    def _check_room(self, kind: str) -> None:
        limit = self.service.realtime.max_pending_units
        if self.units.qsize() >= limit:
            raise ProtocolError.of(
                "message", f"{self.units.qsize()} units wait to be spoken; at most {limit}: wait", kind
            )

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

    def _prepare(self, unit: _Unit, voice: str | None) -> Synthesis | None:
        """The unit's synthesis; None when the engine would say nothing (punctuation alone)."""
        config, engine = unit.config, self.engine
        if not engine.speakable(unit.text):
            return None
        return engine.synthesis(
            [unit.text], engine.language(config.language), voice, config, self.in_hand_s()
        )

    async def _speak(self, unit: _Unit, index: int) -> bool:
        """Synthesize one unit into the outbox; returns once all its audio is made
        (not sent), so the next unit is made while this one plays. False when the
        unit had nothing to say (it takes no sentence index)."""
        config = unit.config
        try:
            voice = self.service.extension.voice(self.caller, config.voice)  # it may be gone since
            # Off the event loop: the engine's text work (espeak) takes real time.
            synthesis = await asyncio.to_thread(self._prepare, unit, voice)
        except FieldError as exc:  # the voice is gone, or the engine refuses the text (XTTS: a long number)
            self.out.put_nowait(ErrorEvent(message=exc.message, field=exc.field, sentence_index=index))
            return True
        except Exception:
            logger.exception("[%s] preparing unit %d failed", self.rid, index)
            self.out.put_nowait(
                self._internal_error(f"preparing sentence {index} failed", index, fatal=False)
            )
            return True
        if synthesis is None:
            return False
        try:
            lease = await self.core.admit(Transport.websocket, self.rid, gone=self._gone)
        except Busy as exc:
            self.out.put_nowait(ErrorEvent(message=str(exc), sentence_index=index))
            return True
        except ClientGone:
            return True
        run = Run(
            self.core,
            lease,
            synthesis,
            StreamEncoder(synthesis.model_rate, config.sample_rate, AudioFormat.pcm),
            self.backlog,
            Transport.websocket,
            started_at=unit.queued_at,
            rid=self.rid,
            words=config.word_timestamps,
        )
        start = AudioStart(sentence_index=index, sample_rate=config.sample_rate, text=unit.text)
        started = False
        try:
            while True:
                item = await run.next()
                if not started:
                    self.out.put_nowait(start)
                    started = True
                if isinstance(item, Finished):
                    self.out.put_nowait(_done(index, item))
                    return True
                self.out.put_nowait(item)
        except RunFailed:
            self.out.put_nowait(
                self._internal_error(f"synthesis of sentence {index} failed", index, fatal=False)
            )
        except RunStalled:
            self.out.put_nowait(self._internal_error(f"synthesis of sentence {index} stalled", index))
        except ClientTooSlow as exc:  # its sends are stuck behind what it did not read: end it now
            event = ErrorEvent(message=f"{exc}: closing", fatal=True)
            raise _Stop(SessionOutcome.cut, CLOSE_POLICY, event, drop=True) from None
        finally:
            run.cancel()  # barge-in, or the session ending, stops the worker at its next chunk
        return True

    async def _gone(self) -> bool:
        return self.closing

    # -- sender ------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            item = await self.out.get()
            self.sending = True
            try:
                if isinstance(item, Audio):
                    await self._send(item.data)
                    self.backlog.take(item.seconds)
                    self.playback_end = max(self.playback_end, time.monotonic()) + item.seconds
                elif self.baseten and not isinstance(item, ErrorEvent):
                    # Its clients read audio only; the last audio of `__END__` closes it.
                    if isinstance(item, SessionDone) and self.ending and self.units.empty():
                        raise _Stop(SessionOutcome.ok, CLOSE_NORMAL)
                else:
                    await self._send_event(item)
                    if isinstance(item, ErrorEvent) and item.fatal:
                        raise _Stop(SessionOutcome.error, CLOSE_ERROR)
            finally:
                self.sending = False

    async def _send_event(self, event: Any) -> None:
        """A server event: one of realtime_protocol's, or a control handler's plain dict."""
        await self._send(json.dumps(event) if isinstance(event, dict) else event.json_text())

    async def _send(self, payload: str | bytes) -> None:
        """One frame; a client that takes nothing for TTS_READ_TIMEOUT_S is cut."""
        timeout = self.core.settings.read_timeout_s
        async with self._send_lock:
            try:
                if isinstance(payload, bytes):
                    await asyncio.wait_for(self.ws.send_bytes(payload), timeout)
                else:
                    await asyncio.wait_for(self.ws.send_text(payload), timeout)
            except TimeoutError:
                logger.warning("[%s] client took nothing for %g s: cut", self.rid, timeout)
                raise _Stop(SessionOutcome.timeout, CLOSE_POLICY, drop=True) from None
            except WebSocketDisconnect:
                logger.info("[%s] client gone while sending", self.rid)
                raise _Stop(SessionOutcome.client_gone, CLOSE_NORMAL) from None


def _done(index: int, finished: Finished) -> AudioDone:
    words = finished.words
    return AudioDone(
        sentence_index=index,
        audio_seconds=finished.audio_s,
        timestamp_info=TimestampInfo(word_alignment=_alignment(words)) if words else None,
    )


def _alignment(words: list[WordTime]) -> WordAlignment:
    return WordAlignment(
        words=[w.word for w in words],
        word_start_times_seconds=[w.start_s for w in words],
        word_end_times_seconds=[w.end_s for w in words],
    )
