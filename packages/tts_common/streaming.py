"""Serving machinery shared by the streaming Trusses.

Each request is validated before any audio is sent, waits a bounded time for one
of the model's synthesis slots, and then streams encoded audio from a worker
thread as the model produces it. The response is a StreamingResponse we build
ourselves, because truss's own generator streaming (a) cannot set the
Content-Type, and (b) swallows an exception raised mid-stream and ends the body
cleanly, so a cut-short stream looks like a complete 200. Here an exception
after the first byte propagates to uvicorn, which drops the connection without
the terminating chunk: the client sees an incomplete body, never a short 200.

Resources stay bounded whatever the client does:
- backpressure: the worker asks the model for the next chunk only while less
  than `max_ahead_s` of audio waits in the server for the connection to take it;
- a client that takes nothing for `read_timeout_s` is cut and its slot freed;
- a model that yields nothing for `stall_timeout_s` is abandoned (stream cut,
  slot freed) and the replica reports unhealthy until that work returns;
- a request whose client leaves while it waits for a slot never runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Send

from . import replies
from .audio import StreamEncoder
from .auth import ApiKeyCheck, api_key
from .contract import AudioFormat, RequestError, StreamRequest, check_body_size, content_type, parse_request
from .metrics import ModelMetrics, Outcome, outcome_of
from .settings import ServingSettings
from .slots import SlotGate

logger = logging.getLogger(__name__)

# How often a stream waiting for audio checks its client and its model.
POLL_S = 0.25


@dataclass
class Synthesis:
    """What a model adapter hands back for one validated request.

    `chunks(cancel)` yields float32 mono chunks at `model_rate`, in text order, and
    must return soon after `cancel` is set (check it between chunks).
    """

    model_rate: int
    chunks: Callable[[threading.Event], Generator[np.ndarray, None, None]]
    # Extra response headers; `chunks` may fill them in before its first chunk.
    headers: dict[str, str] = field(default_factory=dict)


class StreamAborted(RuntimeError):
    """Raised inside the response body so the server drops the connection."""


@dataclass
class _Audio:
    data: bytes
    seconds: float


_END = object()
_DISCONNECTED = object()
_STALLED = object()
_FAILED = object()  # the worker raised; the log has the traceback
_Item = _Audio | object


class Backlog:
    """Seconds of audio queued in the server that the connection has not taken
    yet. The worker waits for room before asking the model for more."""

    def __init__(self, limit_s: float, cancel: threading.Event):
        self._limit_s = limit_s
        self._cancel = cancel
        self._seconds = 0.0
        self._room = threading.Condition()

    @property
    def seconds(self) -> float:
        return self._seconds

    def add(self, seconds: float) -> None:
        with self._room:
            self._seconds += seconds

    def take(self, seconds: float) -> None:
        with self._room:
            self._seconds -= seconds
            self._room.notify_all()

    def wait_for_room(self) -> bool:
        """Block while the backlog is full; False once the stream is cancelled."""
        with self._room:
            while self._seconds >= self._limit_s and not self._cancel.is_set():
                self._room.wait(POLL_S)
        return not self._cancel.is_set()


class _Worker:
    """One stream's synthesis thread and what the event loop watches of it."""

    def __init__(self) -> None:
        self.in_model_since: float | None = None  # set while the model computes a chunk
        self.stalled = False
        self.model_s = 0.0  # time spent inside the model, for the real-time factor
        self.audio_s = 0.0


class _AudioResponse(StreamingResponse):
    """A StreamingResponse that cuts a client who takes nothing for
    `read_timeout_s`, and always runs `on_close` when the body ends, however it
    ends (the body generator may otherwise wait for garbage collection), with
    the exception that ended it, if any."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        read_timeout_s: float,
        on_close: Callable[[BaseException | None], None],
        **kwargs: Any,
    ):
        super().__init__(content, **kwargs)
        self._read_timeout_s = read_timeout_s
        self._on_close = on_close

    async def stream_response(self, send: Send) -> None:
        async def send_or_cut(message: Message) -> None:
            try:
                await asyncio.wait_for(send(message), self._read_timeout_s)
            except TimeoutError:
                raise StreamAborted(f"client took no audio for {self._read_timeout_s:g} s") from None

        try:
            await super().stream_response(send_or_cut)
        except BaseException as exc:
            self._on_close(exc)
            raise
        self._on_close(None)


class AudioStreamer:
    """Admission control plus streaming for one model instance."""

    def __init__(
        self,
        settings: ServingSettings,
        model_name: str,
        key: str | None = None,
        behind: Callable[[], float] | None = None,
    ):
        """`behind`: for a model that measures its load (seconds its work is
        behind its listeners), admission by that load (`slots.LoadCheck`)."""
        self.settings = settings
        self.metrics = ModelMetrics(model_name)
        self._auth = ApiKeyCheck(key)
        self._gate = SlotGate.serving(settings, behind)
        self._stalled_workers = 0  # abandoned syntheses still running (event loop only)

    @classmethod
    def for_truss(
        cls, truss_kwargs: Mapping[str, Any], behind: Callable[[], float] | None = None
    ) -> AudioStreamer:
        """The streamer a Truss's Model builds from what truss hands its __init__:
        settings from the environment, `model_name` for the metrics' label, and
        the optional API key from its secrets."""
        return cls(
            ServingSettings.from_env(),
            truss_kwargs["config"]["model_name"],
            api_key(truss_kwargs.get("secrets")),
            behind,
        )

    def healthy(self) -> bool:
        """False while a synthesis the watchdog abandoned has not returned: the
        readiness route then fails, so the platform stops traffic and restarts."""
        return self._stalled_workers == 0

    async def respond(
        self,
        request: Request,
        request_model: type[StreamRequest],
        prepare: Callable[[Any], Synthesis],
    ) -> Response:
        arrived = time.monotonic()
        rid = replies.request_id(request)
        refusal = self._auth.refusal(request, rid)
        if refusal is not None:
            return self._answered(refusal)
        try:
            body = await request.body()
            check_body_size(body, self.settings.max_body_bytes)
            # Off the event loop: a reference clip's decoding takes real time.
            req, synthesis = await asyncio.to_thread(_validate, body, request_model, prepare)
        except RequestError as exc:
            return self._answered(replies.request_error(exc, rid))
        except Exception:
            logger.exception("[%s] preparing the request failed", rid)
            return self._answered(replies.internal_error("preparing the request failed", rid))

        refusal = await replies.admit(self._gate, request, rid, self.metrics)
        if refusal is not None:
            return self._answered(refusal)
        return await self._stream(request, req, synthesis, rid, arrived)

    def _answered(self, response: Response) -> Response:
        """Counts an answer given before any audio."""
        self.metrics.request(outcome_of(response.status_code), response.status_code)
        return response

    async def _stream(
        self, request: Request, req: StreamRequest, synthesis: Synthesis, rid: str, arrived: float
    ) -> Response:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        cancel = threading.Event()
        backlog = Backlog(self.settings.max_ahead_s, cancel)
        worker = _Worker()
        encoder = StreamEncoder(synthesis.model_rate, req.output_rate, req.format)
        released = False

        def put(item: _Item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def release() -> None:  # on the event loop
            nonlocal released
            if not released:
                released = True
                self._gate.release()
                self.metrics.in_flight.dec()

        def worker_done() -> None:  # on the event loop
            if worker.stalled:
                self._stalled_workers -= 1
                logger.warning("[%s] abandoned synthesis returned", rid)
            if worker.audio_s > 0:
                self.metrics.real_time_factor.observe(worker.model_s / worker.audio_s)
            release()

        def work() -> None:
            chunks = synthesis.chunks(cancel)
            try:
                produced = 0
                with contextlib.closing(chunks):  # frees model state at once on cancel
                    while True:
                        worker.in_model_since = since = time.monotonic()
                        chunk = next(chunks, None)
                        worker.in_model_since = None
                        worker.model_s += time.monotonic() - since
                        if chunk is None or cancel.is_set():
                            break
                        produced += 1
                        seconds = len(chunk) / synthesis.model_rate
                        worker.audio_s += seconds
                        self.metrics.audio_seconds.inc(seconds)
                        data = encoder.encode(chunk)
                        if data:
                            backlog.add(seconds)
                            put(_Audio(data, seconds))
                        if not backlog.wait_for_room():
                            break
                if cancel.is_set():
                    logger.info("[%s] generation cancelled after %d chunks", rid, produced)
                else:
                    tail = encoder.finish()
                    if tail:
                        put(_Audio(tail, 0.0))
                    put(_END)
            except BaseException:  # reported to the client, never swallowed
                logger.exception("[%s] synthesis failed", rid)
                put(_FAILED)
            finally:
                worker.in_model_since = None
                loop.call_soon_threadsafe(worker_done)

        bytes_per_s = req.output_rate * (1 if req.format is AudioFormat.mulaw else 2)
        if not cap_send_buffer(request, bytes_per_s, self.settings.max_ahead_s):
            logger.debug("[%s] could not cap the socket's send buffer", rid)
        threading.Thread(target=work, name=f"tts-stream-{rid[:8]}", daemon=True).start()

        def abandon() -> None:
            """The model yielded nothing for stall_timeout_s: cut the stream, free
            the slot, and report unhealthy until the worker returns."""
            worker.stalled = True
            self._stalled_workers += 1
            cancel.set()
            release()
            logger.error(
                "[%s] synthesis yielded nothing for %g s: stream cut, replica unhealthy until it returns",
                rid,
                self.settings.stall_timeout_s,
            )

        first = await self._next(queue, request, worker)
        if first is _DISCONNECTED:
            cancel.set()
            return self._answered(replies.client_gone(rid))
        if first is _STALLED:
            abandon()
            return self._answered(replies.internal_error("synthesis stalled before its first audio", rid))
        if first is _FAILED:
            return self._answered(replies.internal_error("synthesis failed before its first audio", rid))
        self.metrics.time_to_first_audio.observe(time.monotonic() - arrived)
        ended: list[Outcome] = []  # how the body ended, when it says so itself

        async def body() -> AsyncIterator[bytes]:
            item = first
            while item is not _END:
                if item is _FAILED:
                    ended.append(Outcome.cut)
                    raise StreamAborted(f"[{rid}] synthesis failed mid-stream")
                if item is _STALLED:
                    ended.append(Outcome.cut)
                    abandon()
                    raise StreamAborted(f"[{rid}] synthesis stalled mid-stream")
                if item is _DISCONNECTED:
                    ended.append(Outcome.client_gone)
                    return  # the worker sees `cancel` and stops
                assert isinstance(item, _Audio)
                yield item.data
                backlog.take(item.seconds)  # the connection took it
                item = await self._next(queue, request, worker)
            ended.append(Outcome.ok)

        def close(error: BaseException | None) -> None:
            cancel.set()
            backlog.take(0.0)  # wake a worker waiting for room
            self.metrics.request(_ending(ended, error), 200)

        return _AudioResponse(
            body(),
            read_timeout_s=self.settings.read_timeout_s,
            on_close=close,
            media_type=content_type(req.format, req.output_rate),
            headers={
                **synthesis.headers,
                "X-Sample-Rate": str(req.output_rate),
                "X-Audio-Format": req.format.value,
                "Cache-Control": "no-store",
                replies.REQUEST_ID_HEADER: rid,
            },
        )

    async def _next(self, queue: asyncio.Queue[_Item], request: Request, worker: _Worker) -> _Item:
        while True:
            try:
                return await asyncio.wait_for(queue.get(), timeout=POLL_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return _DISCONNECTED
                since = worker.in_model_since
                if since is not None and time.monotonic() - since > self.settings.stall_timeout_s:
                    return _STALLED


def _ending(ended: list[Outcome], error: BaseException | None) -> Outcome:
    """A started stream's outcome: what its body said, unless sending failed after."""
    if ended and (error is None or ended[0] is not Outcome.ok):
        return ended[0]
    if isinstance(error, StreamAborted):
        return Outcome.cut  # the client took no audio for read_timeout_s
    return Outcome.client_gone  # the connection closed under us


def cap_send_buffer(request: HTTPConnection, bytes_per_s: int, backlog_s: float) -> bool:
    """Shrink the connection's kernel send buffer to a quarter of a backlog of
    `backlog_s` seconds at `bytes_per_s` (Linux doubles the value asked for: the
    kernel then holds about half a backlog more, so a client is at most about 1.5
    backlogs behind), instead of the kernel's autotuned buffer (up to 4 MB on
    Linux: 85 s of 24 kHz PCM). Best effort: it needs the socket, which ASGI does
    not expose; uvicorn's `receive` (a request's or a WebSocket's) is bound to its
    connection, which holds the transport. Returns whether it applied."""
    nbytes = max(16384, int(bytes_per_s * backlog_s / 4))
    connection = getattr(getattr(request, "_receive", None), "__self__", None)
    transport = getattr(connection, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, nbytes)
    except OSError:
        return False
    return True


def _validate(
    body: bytes, request_model: type[StreamRequest], prepare: Callable[[Any], Synthesis]
) -> tuple[StreamRequest, Synthesis]:
    req = parse_request(body, request_model)
    return req, prepare(req)
