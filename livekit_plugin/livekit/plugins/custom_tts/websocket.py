"""WebSocket mode: the realtime Trusses' protocol, the one LiveKit's own Baseten plugin
speaks in its `qwen3-tts` mode.

    session.config -> input.text* -> input.done (a flush) -> ... -> session.close

For each unit of speech it chooses, the server answers `audio.start` {sample_rate,
sentence_index}, binary PCM s16le, `audio.done` {sentence_index, timestamp_info}; each
`input.done` is answered by `session.done` once everything before it is spoken, and the
socket stays open for the next turn. `error` {message} reports a refused config or a
failed synthesis.

One socket per stream, taken from and given back to a `SocketPool` that parks it
between turns (a reply is one stream), so a turn pays no connect and no config round
trip; an empty `input.done` keeps the parked socket off the server's idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    tts,
    utils,
)
from livekit.agents.types import TimedString

from .errors import final
from .log import logger, unit_started
from .models import TTSOptions

WEBSOCKET_PATH = "/v1/websocket"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A pushed string longer than this (a whole reply handed over at once) goes out in
# several input.text messages: the servers bound one message's text (5000 chars).
MAX_TEXT_PER_MESSAGE = 2000
# The realtime Trusses close a socket idle for 30 s (10 s before its first
# session.config): the keepalive runs well inside that, and a parked socket not
# proven alive for PARKED_TTL_S is replaced rather than trusted with a turn.
KEEPALIVE_INTERVAL_S = 10.0
KEEPALIVE_TIMEOUT_S = 5.0
PARKED_TTL_S = 25.0
# Closing is what stops the server on barge-in; do not wait long for its close reply.
CLOSE_TIMEOUT_S = 1.0


@dataclass
class Connection:
    ws: aiohttp.ClientWebSocketResponse[bool]
    config: dict[str, Any] | None = None  # the session.config the server holds for it
    idle_since: float = field(default_factory=time.monotonic)


async def _close(ws: aiohttp.ClientWebSocketResponse[bool], *, polite: bool) -> None:
    with contextlib.suppress(Exception):
        if polite and not ws.closed:
            await ws.send_str(json.dumps({"type": "session.close"}))
    with contextlib.suppress(Exception):
        await ws.close()


class SocketPool:
    """At most one parked socket per TTS: the next stream reuses it."""

    def __init__(
        self,
        url: str,
        headers: Callable[[], dict[str, str]],
        session: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self._url = url
        self._headers = headers
        self._session = session
        self._parked: Connection | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def host(self) -> str:
        return urlsplit(self._url).hostname or "?"

    async def acquire(self) -> tuple[Connection, bool]:
        """The parked socket if it is still fresh, else a new one; and whether reused."""
        conn, self._parked = self._parked, None
        if conn is not None:
            if not conn.ws.closed and time.monotonic() - conn.idle_since < PARKED_TTL_S:
                return conn, True
            await _close(conn.ws, polite=False)
        ws = await self._session().ws_connect(
            self._url,
            headers=self._headers(),
            max_msg_size=MAX_MESSAGE_BYTES,
            timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_S),
        )
        return Connection(ws), False

    async def release(self, conn: Connection, *, reusable: bool) -> None:
        """Park a socket whose turn ended cleanly; close any other. A socket left
        mid-generation (barge-in, an error) is closed without ceremony: that is what
        stops the server."""
        if not reusable or self._closed or conn.ws.closed:
            await _close(conn.ws, polite=reusable)
            return
        conn.idle_since = time.monotonic()
        previous, self._parked = self._parked, conn
        if previous is not None:
            await _close(previous.ws, polite=True)
        if self._keepalive is None or self._keepalive.done():
            self._keepalive = asyncio.create_task(self._keep_alive(), name="custom_tts.keepalive")

    async def aclose(self) -> None:
        self._closed = True
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        conn, self._parked = self._parked, None
        if conn is not None:
            await _close(conn.ws, polite=True)

    async def _keep_alive(self) -> None:
        """Ping the parked socket with an empty flush until nothing is parked.

        The socket is taken out for the round trip, so a stream starting meanwhile
        dials its own instead of reading our answer; whichever comes back second is
        closed. No await between the emptiness check and returning, so `release`
        never parks a socket this loop has already decided not to look at.
        """
        while not self._closed:
            await asyncio.sleep(KEEPALIVE_INTERVAL_S)
            conn, self._parked = self._parked, None
            if conn is None:
                return
            try:
                alive = await _empty_flush(conn.ws)
            except asyncio.CancelledError:
                await _close(conn.ws, polite=False)
                raise
            if not alive or self._parked is not None or self._closed:
                await _close(conn.ws, polite=alive)
                continue
            conn.idle_since = time.monotonic()
            self._parked = conn


async def _empty_flush(ws: aiohttp.ClientWebSocketResponse[bool]) -> bool:
    """An `input.done` with nothing buffered: the server answers `session.done`."""
    try:
        await ws.send_str(json.dumps({"type": "input.done"}))
        deadline = time.monotonic() + KEEPALIVE_TIMEOUT_S
        while (remaining := deadline - time.monotonic()) > 0:
            msg = await ws.receive(timeout=remaining)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return False
            event = json.loads(msg.data)
            if event.get("type") == "session.done":
                return True
            if event.get("type") == "error":
                logger.warning("keepalive refused: %s", event.get("message"))
                return False
    except Exception as e:  # a dead socket is simply replaced
        logger.debug("keepalive failed (%s); dropping the parked socket", type(e).__name__)
    return False


FLUSH = None  # in a turn's input: an `input.done`


@dataclass
class Turn:
    """One stream's (or one `synthesize()`'s) use of a pooled socket.

    `inputs`: text pieces, and FLUSH for `input.done`. Text goes out as it arrives;
    the server decides the speakable units. With `segments` (a SynthesizeStream) each
    answered flush ends an emitter segment. `conn_options.timeout` bounds connecting
    and each wait for data while a flush is unanswered. An error once audio is out is
    never retryable: it was heard. `on_connected(seconds, reused)` reports how the
    socket was had (the framework's metrics).
    """

    opts: TTSOptions
    word_timestamps: bool
    conn_options: APIConnectOptions
    inputs: AsyncIterable[str | None]
    emitter: tts.AudioEmitter
    segments: bool
    mark_started: Callable[[], None]
    on_connected: Callable[[float, bool], None]
    # The sender counts flushes sent; the receiver counts those answered.
    flushes_sent: int = 0
    flushes_done: int = 0
    sender_finished: bool = False
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    pushed_bytes: int = 0

    async def run(self, pool: SocketPool) -> None:
        try:
            conn = await self._connect(pool)
            reusable = False
            try:
                await self._exchange(conn.ws, conn)
                reusable = True
            finally:
                await pool.release(conn, reusable=reusable)
        except APIError as e:
            if self.pushed_bytes:
                raise final(e) from e
            raise
        except (aiohttp.ClientError, ConnectionError) as e:  # a send on a socket that went away
            raise APIConnectionError("the TTS WebSocket failed", retryable=self.pushed_bytes == 0) from e
        except Exception as e:  # e.g. a closed session: still an APIError to the pipeline
            raise APIConnectionError(f"TTS WebSocket failed ({type(e).__name__})", retryable=False) from e

    async def _connect(self, pool: SocketPool) -> Connection:
        timeout = self.conn_options.timeout
        started = time.perf_counter()
        try:
            conn, reused = await asyncio.wait_for(pool.acquire(), timeout=timeout)
        except asyncio.TimeoutError as e:
            raise APITimeoutError(f"no WebSocket connection within {timeout:g} s") from e
        except aiohttp.WSServerHandshakeError as e:
            raise APIStatusError(
                e.message or f"WebSocket handshake refused ({e.status})",
                status_code=e.status,
                retryable=e.status >= 500,
            ) from e
        except (aiohttp.ClientError, OSError) as e:
            raise APIConnectionError(f"TTS WebSocket connection to {pool.host} failed") from e
        self.on_connected(time.perf_counter() - started, reused)
        return conn

    @property
    def _awaiting_answer(self) -> bool:
        return self.flushes_done < self.flushes_sent

    def _check_settled(self) -> None:
        if self.sender_finished and not self._awaiting_answer:
            self.settled.set()

    async def _exchange(self, ws: aiohttp.ClientWebSocketResponse[bool], conn: Connection) -> None:
        config = self.opts.session_config(word_timestamps=self.word_timestamps)
        if conn.config != config:
            # The config is sticky on a socket: sent again only when it changed.
            conn.config = None
            await ws.send_str(json.dumps({"type": "session.config", **config}))
            conn.config = config
        send_task = asyncio.create_task(self._send(ws), name="custom_tts.ws_send")
        receive_task = asyncio.create_task(self._receive(ws), name="custom_tts.ws_receive")
        try:
            done, _ = await asyncio.wait({send_task, receive_task}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the receiver only ends by raising; the sender once settled
        finally:
            for task in (send_task, receive_task):
                task.cancel()
            await asyncio.gather(send_task, receive_task, return_exceptions=True)

    async def _send(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        buffered = False
        async for piece in self.inputs:
            if piece is FLUSH:
                if buffered:
                    await ws.send_str(json.dumps({"type": "input.done"}))
                    self.flushes_sent += 1
                    buffered = False
                continue
            self.mark_started()
            for start in range(0, len(piece), MAX_TEXT_PER_MESSAGE):
                text = piece[start : start + MAX_TEXT_PER_MESSAGE]
                await ws.send_str(json.dumps({"type": "input.text", "text": text}))
            buffered = True
        if buffered:
            await ws.send_str(json.dumps({"type": "input.done"}))
            self.flushes_sent += 1
        self.sender_finished = True
        self._check_settled()
        await self.settled.wait()

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        emitter, rate = self.emitter, self.opts.sample_rate
        segment_open = False
        segment_bytes = 0  # the current segment's audio so far: where a unit starts
        unit_start = 0.0
        unit_words: int | None = None
        unit_heard = True  # whether the current unit's first audio has gone out
        while True:
            try:
                msg = await ws.receive(timeout=self.conn_options.timeout)
            except asyncio.TimeoutError as e:
                if not self._awaiting_answer:
                    continue  # nothing is owed yet: the text is still coming
                raise APITimeoutError(
                    f"no data from the TTS server for {self.conn_options.timeout:g} s",
                    retryable=self.pushed_bytes == 0,
                ) from e
            if msg.type is aiohttp.WSMsgType.BINARY:
                if self.segments and not segment_open:
                    emitter.start_segment(segment_id=utils.shortuuid())
                    segment_open = True
                if not unit_heard:
                    unit_started(unit_words, unit_start)
                    unit_heard = True
                emitter.push(msg.data)
                segment_bytes += len(msg.data)
                self.pushed_bytes += len(msg.data)
                continue
            if msg.type is not aiohttp.WSMsgType.TEXT:
                where = (
                    f"after {self.pushed_bytes} bytes of audio" if self.pushed_bytes else "before any audio"
                )
                raise APIConnectionError(f"the TTS server closed the WebSocket {where}")
            event = json.loads(msg.data)
            kind = event.get("type")
            if kind == "audio.start":
                sent_rate = event.get("sample_rate")
                if sent_rate is not None and int(sent_rate) != rate:
                    raise APIError(
                        f"the TTS server sent {sent_rate} Hz audio, {rate} Hz was requested",
                        retryable=False,
                    )
                if self.segments and not segment_open:
                    emitter.start_segment(segment_id=utils.shortuuid())
                    segment_open = True
                unit_start = segment_bytes / (2 * rate)
                text = event.get("text")  # not in LiveKit's protocol; ours sends it
                unit_words = len(text.split()) if isinstance(text, str) else None
                unit_heard = False
            elif kind == "audio.done":
                if self.word_timestamps:
                    words = _timed_words(event.get("timestamp_info"), unit_start)
                    if words:
                        emitter.push_timed_transcript(words)
            elif kind == "session.done":
                self.flushes_done += 1
                if self.segments and segment_open:
                    emitter.end_segment()
                    segment_open = False
                    segment_bytes = 0
                self._check_settled()
            elif kind == "error":
                message = str(event.get("message") or "the TTS server reported an error")
                # The server refused the config or failed the synthesis on purpose:
                # the same request would fail again. A refused key reads as over HTTP.
                status = 401 if event.get("field") == "authorization" else -1
                raise APIStatusError(message, status_code=status, body=event, retryable=False)
            else:
                logger.debug("ignoring TTS server event %r", kind)


def _timed_words(timestamp_info: Any, offset: float) -> list[TimedString]:
    """One unit's word times (relative to that unit's audio), rebased onto the segment."""
    if not isinstance(timestamp_info, dict):
        return []
    alignment = timestamp_info.get("word_alignment") or {}
    words = alignment.get("words") or []
    starts = alignment.get("word_start_times_seconds") or []
    ends = alignment.get("word_end_times_seconds") or []
    if not len(words) == len(starts) == len(ends):
        logger.warning("ragged word alignment from the TTS server; timestamps dropped")
        return []
    return [
        TimedString(text=f"{word} ", start_time=offset + float(start), end_time=offset + float(end))
        for word, start, end in zip(words, starts, ends, strict=True)
    ]
