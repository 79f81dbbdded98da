"""Serving machinery shared by the streaming Trusses.

Each request is validated before any audio is sent, waits a bounded time for one
of the model's synthesis slots, and then streams encoded audio from a worker
thread as the model produces it. The response is a StreamingResponse we build
ourselves, because truss's own generator streaming (a) cannot set the
Content-Type, and (b) swallows an exception raised mid-stream and ends the body
cleanly, so a cut-short stream looks like a complete 200. Here an exception
after the first byte propagates to uvicorn, which drops the connection without
the terminating chunk: the client sees an incomplete body, never a short 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .audio import StreamEncoder
from .contract import RequestError, StreamRequest, content_type, parse_request
from .slots import Busy, SlotGate

logger = logging.getLogger(__name__)

# How often a stream waiting for audio checks whether its client is still there.
DISCONNECT_POLL_S = 0.25


@dataclass
class Synthesis:
    """What a model adapter hands back for one validated request.

    `chunks(cancel)` yields float32 mono chunks at `model_rate`, in text order, and
    must return soon after `cancel` is set (check it between chunks).
    """

    model_rate: int
    chunks: Callable[[threading.Event], Iterator[np.ndarray]]
    # Extra response headers; `chunks` may fill them in before its first chunk.
    headers: dict[str, str] = field(default_factory=dict)


class StreamAborted(RuntimeError):
    """Raised inside the response body so the server drops the connection."""


@dataclass
class _Failure:
    error: BaseException


_END = object()
_DISCONNECTED = object()
_Item = Union[bytes, _Failure, object]


def error_response(
    status: int, body: dict[str, Any], headers: Optional[dict[str, str]] = None
) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, headers=headers)


class AudioStreamer:
    """Admission control plus streaming for one model instance."""

    @classmethod
    def from_environment(cls) -> "AudioStreamer":
        """Limits from config.yaml's environment_variables (TTS_MAX_STREAMS,
        TTS_QUEUE_TIMEOUT_S), so a deployment can change them without a rebuild."""
        return cls(
            max_streams=int(os.environ.get("TTS_MAX_STREAMS", "1")),
            queue_timeout_s=float(os.environ.get("TTS_QUEUE_TIMEOUT_S", "10")),
        )

    def __init__(self, max_streams: int, queue_timeout_s: float):
        self.max_streams = max_streams
        self.queue_timeout_s = queue_timeout_s
        self._gate = SlotGate(max_streams, queue_timeout_s)
        self.active = 0  # streams holding a slot, for tests and logs

    async def respond(
        self,
        request: Request,
        request_model: type[StreamRequest],
        prepare: Callable[[Any], Synthesis],
    ) -> Response:
        try:
            req = parse_request(await request.body(), request_model)
            synthesis = prepare(req)
        except RequestError as exc:
            logger.info("rejected request (%s): %s", exc.status, exc)
            return error_response(exc.status, exc.body())

        try:
            await self._gate.acquire()
        except Busy as busy:
            return busy.response()
        self.active += 1
        return await self._stream(request, req, synthesis)

    async def _stream(
        self,
        request: Request,
        req: StreamRequest,
        synthesis: Synthesis,
    ) -> Response:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        cancel = threading.Event()
        encoder = StreamEncoder(synthesis.model_rate, req.output_rate, req.format)

        def put(item: _Item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def release() -> None:
            self.active -= 1
            self._gate.release()

        def work() -> None:
            chunks = synthesis.chunks(cancel)
            try:
                produced = 0
                with contextlib.closing(chunks):  # frees model state at once on cancel
                    for chunk in chunks:
                        if cancel.is_set():
                            break
                        produced += 1
                        data = encoder.encode(chunk)
                        if data:
                            put(data)
                if cancel.is_set():
                    logger.info("generation cancelled after %d chunks (client gone)", produced)
                else:
                    tail = encoder.finish()
                    if tail:
                        put(tail)
                    put(_END)
            except BaseException as exc:  # reported to the client, never swallowed
                logger.exception("synthesis failed")
                put(_Failure(exc))
            finally:
                loop.call_soon_threadsafe(release)

        threading.Thread(target=work, name="tts-stream", daemon=True).start()

        first = await self._next(queue, request)
        if first is _DISCONNECTED:
            cancel.set()
            return Response(status_code=499)
        if isinstance(first, _Failure):
            return error_response(
                500, {"error": f"synthesis failed: {first.error}", "field": None}
            )

        async def body() -> Any:
            item = first
            try:
                while item is not _END:
                    if isinstance(item, _Failure):
                        raise StreamAborted(f"synthesis failed mid-stream: {item.error}")
                    if item is _DISCONNECTED:
                        return  # the worker sees `cancel` and stops
                    yield item
                    item = await self._next(queue, request)
            finally:
                cancel.set()

        return StreamingResponse(
            body(),
            media_type=content_type(req.format, req.output_rate),
            headers={
                **synthesis.headers,
                "X-Sample-Rate": str(req.output_rate),
                "X-Audio-Format": req.format.value,
                "Cache-Control": "no-store",
            },
        )

    @staticmethod
    async def _next(queue: "asyncio.Queue[_Item]", request: Request) -> _Item:
        while True:
            try:
                return await asyncio.wait_for(queue.get(), timeout=DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return _DISCONNECTED
