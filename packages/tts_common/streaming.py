"""The HTTP transport: one POST in, one stream of encoded audio out.

It serves a surface: our own contract (`contract_speech`) or another one over
the same path (OpenAI's speech API: `openai_speech.py`), which brings its own
request type, refusals (`replies.Replies`) and body framing (SSE). It only
translates: a request is checked (API key, body size, schema, the
engine's own checks) and answered 4xx before any audio; then the serving core
(`synthesis.py`) admits it and runs it, and this module turns the run's audio
into the body of a StreamingResponse, and the run's failures into HTTP. The
response is a StreamingResponse we build ourselves, because truss's own
generator streaming (a) cannot set the Content-Type, and (b) swallows an
exception raised mid-stream and ends the body cleanly, so a cut-short stream
looks like a complete 200. Here a stream that ends early for any reason but
the client's own leaving (the model failed or stalled mid-stream, the client
took no audio for `read_timeout_s`, or took it under the core's minimum drain
rate) is dropped (`connection.drop`): no terminating chunk, so the client sees
an incomplete body, never a short 200; the log has one line saying why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Send

from . import replies
from .audio import StreamEncoder
from .auth import ApiKeyCheck
from .connection import REQUEST_ID_HEADER, cap_send_buffer, drop, request_id
from .contract import (
    AudioFormat,
    FieldError,
    RequestError,
    StreamRequest,
    bytes_per_second,
    check_body_size,
    content_type,
    field_error,
    parse_request,
)
from .metrics import Outcome, Transport, outcome_of
from .slots import ClientGone
from .synthesis import (
    Audio,
    Backlog,
    ClientTooSlow,
    Finished,
    Run,
    RunFailed,
    RunStalled,
    Synthesis,
    SynthesisCore,
)

logger = logging.getLogger(__name__)

RequestT = TypeVar("RequestT", bound=StreamRequest)


class Framing(Protocol):
    """How a surface wraps the encoded audio in its response body (OpenAI's SSE, say)."""

    media_type: str

    def chunk(self, data: bytes) -> bytes: ...

    def end(self, finished: Finished) -> bytes: ...


@dataclass(frozen=True)
class Speech:
    """What a surface makes of a valid request: the synthesis, and how its audio
    goes out (format and rate; `framing` None: the audio bytes as they are)."""

    synthesis: Synthesis
    format: AudioFormat
    rate: int
    framing: Framing | None = None


Prepare = Callable[[bytes], Speech]


def contract_speech(request_model: type[RequestT], prepare: Callable[[RequestT], Synthesis]) -> Prepare:
    """Our own contract's request (`request_model`) to Speech; `prepare(req)` turns
    the parsed request into its Synthesis, raising FieldError for what the schema
    cannot check (an unknown voice, say)."""

    def speech(body: bytes) -> Speech:
        req = parse_request(body, request_model)
        try:
            synthesis = prepare(req)
        except FieldError as exc:
            raise field_error(exc.field, exc.message) from None
        return Speech(synthesis, req.format, req.output_rate)

    return speech


class StreamAborted(RuntimeError):
    """Raised inside the response body so the server drops the connection."""


class _AudioResponse(StreamingResponse):
    """A StreamingResponse that cuts a client who takes nothing for
    `read_timeout_s`, and always runs `on_close` when the body ends, however it
    ends (the body generator may otherwise wait for garbage collection), with
    the exception that ended it, if any."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        request: Request,
        rid: str,
        read_timeout_s: float,
        on_close: Callable[[BaseException | None], None],
        **kwargs: Any,
    ):
        super().__init__(content, **kwargs)
        self._request = request
        self._rid = rid
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
        except StreamAborted as exc:
            self._on_close(exc)
            if not _drop(self._request, self._rid, str(exc)):
                raise  # uvicorn drops the connection instead, with a traceback
            return
        except BaseException as exc:
            self._on_close(exc)
            raise
        self._on_close(None)


def _drop(request: Request, rid: str, why: str) -> bool:
    dropped = drop(request)
    logger.warning("[%s] %s: stream cut%s", rid, why, "" if dropped else " (by raising)")
    return dropped


class AudioStreamer:
    """The HTTP face of one model instance's serving core, for one surface (our
    contract by default; `answers` and `transport` for another, as OpenAI's)."""

    def __init__(
        self,
        core: SynthesisCore,
        key: str | None = None,
        answers: replies.Replies = replies.CONTRACT,
        transport: Transport = Transport.http,
    ):
        self.core = core
        self.settings = core.settings
        self._auth = ApiKeyCheck(key)
        self._replies = answers
        self._transport = transport

    async def respond(self, request: Request, prepare: Prepare) -> Response:
        """`prepare(body)` turns the raw body into its Speech, raising RequestError
        (the surface's own checks, each naming the field)."""
        arrived = time.monotonic()
        rid = request_id(request)
        if not self._auth.accepts(request.headers, rid):
            return self._answered(self._replies.unauthorized(rid))
        try:
            body = await request.body()
            check_body_size(body, self.settings.max_body_bytes)
            # Off the event loop: a reference clip's decoding takes real time.
            speech = await asyncio.to_thread(prepare, body)
        except RequestError as exc:
            return self._answered(self._replies.request_error(exc, rid))
        except Exception:
            logger.exception("[%s] preparing the request failed", rid)
            return self._answered(self._replies.internal_error("preparing the request failed", rid))
        lease = await replies.admit(self.core, request, rid, self._replies, self._transport)
        if isinstance(lease, Response):
            return self._answered(lease)
        backlog = Backlog(self.settings)
        synthesis = speech.synthesis
        run = Run(
            self.core,
            lease,
            synthesis,
            StreamEncoder(synthesis.model_rate, speech.rate, speech.format),
            backlog,
            self._transport,
            started_at=arrived,
            rid=rid,
            gone=request.is_disconnected,
            on_cut=lambda: drop(request),  # the core has logged why
        )
        if not cap_send_buffer(
            request, bytes_per_second(speech.format, speech.rate), self.settings.max_ahead_s
        ):
            logger.debug("[%s] could not cap the socket's send buffer", rid)
        try:
            first = await run.next()
        except ClientGone:
            return self._answered(replies.client_gone(rid))
        except RunStalled:
            return self._answered(
                self._replies.internal_error("synthesis stalled before its first audio", rid)
            )
        except RunFailed:
            return self._answered(
                self._replies.internal_error("synthesis failed before its first audio", rid)
            )
        return self._stream(request, run, backlog, first, speech, rid)

    def _answered(self, response: Response) -> Response:
        """Counts an answer given before any audio."""
        self.core.metrics.request(outcome_of(response.status_code), response.status_code)
        return response

    def _stream(
        self,
        request: Request,
        run: Run,
        backlog: Backlog,
        first: Audio | Finished,
        speech: Speech,
        rid: str,
    ) -> Response:
        ended: list[Outcome] = []  # how the body ended, when it says so itself
        framing = speech.framing

        async def body() -> AsyncIterator[bytes]:
            item = first
            try:
                while isinstance(item, Audio):
                    yield item.data if framing is None else framing.chunk(item.data)
                    backlog.take(item.seconds)  # the connection took it
                    item = await run.next()
                if framing is not None:
                    yield framing.end(item)
            except (RunFailed, RunStalled) as exc:
                ended.append(Outcome.cut)
                raise StreamAborted(f"{exc} mid-stream") from None
            except ClientTooSlow:  # the run has dropped the connection (on_cut)
                ended.append(Outcome.cut)
                return
            except ClientGone:
                ended.append(Outcome.client_gone)
                return
            ended.append(Outcome.ok)

        def close(error: BaseException | None) -> None:
            run.cancel()
            self.core.metrics.request(_ending(ended, error), 200)

        return _AudioResponse(
            body(),
            request,
            rid,
            read_timeout_s=self.settings.read_timeout_s,
            on_close=close,
            media_type=content_type(speech.format, speech.rate) if framing is None else framing.media_type,
            headers={
                **{_header(key): value for key, value in speech.synthesis.info.items()},
                "X-Sample-Rate": str(speech.rate),
                "X-Audio-Format": speech.format.value,
                "Cache-Control": "no-store",
                REQUEST_ID_HEADER: rid,
            },
        )


def _header(key: str) -> str:
    """A synthesis fact's response header: voice_cache -> X-Voice-Cache."""
    return "X-" + "-".join(part.capitalize() for part in key.split("_"))


def _ending(ended: list[Outcome], error: BaseException | None) -> Outcome:
    """A started stream's outcome: what its body said, unless sending failed after."""
    if ended and (error is None or ended[0] is not Outcome.ok):
        return ended[0]
    if isinstance(error, StreamAborted):
        return Outcome.cut  # the client took no audio for read_timeout_s
    return Outcome.client_gone  # the connection closed under us
