"""TTS for self-hosted streaming Trusses, over HTTP or a WebSocket (by the URL's scheme).

HTTP (`http(s)://`): one POST per utterance, raw PCM back. `synthesize()` streams one
request's body into the emitter as it arrives. `stream()` splits incremental text
(LLM tokens) into sentences and pipelines them: the next sentence's request starts
while the current one is still being received and played, with at most
`max_inflight_requests` sentences requested at once.

WebSocket (`ws(s)://`, the realtime Trusses): text goes to the server as it arrives
and the server chooses the units it speaks; see websocket.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, NoReturn
from urllib.parse import urlsplit

import aiohttp

from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    tokenize,
    tts,
    utils,
)

from .errors import final
from .log import logger, unit_started
from .models import AUDIO_FORMATS, TTSOptions
from .websocket import FLUSH, WEBSOCKET_PATH, SocketPool, Turn

PREDICT_PATH = "/v1/models/model:predict"
NUM_CHANNELS = 1
API_KEY_ENV = "BASETEN_API_KEY"
# An error body longer than this is not a contract error body; keep the message short.
MAX_ERROR_BODY = 64 * 1024


def endpoint_url(api_url: str, schemes: tuple[str, str], default_path: str) -> str:
    """A base URL (`http://localhost:8080`) gets the Truss's `default_path`; a URL that
    already has a path (a Baseten URL) is used as given."""
    parts = urlsplit(api_url)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"api_url must be a {schemes[0]}(s) URL, got {api_url!r}")
    if parts.path in ("", "/"):
        return api_url.rstrip("/") + default_path
    return api_url


def predict_url(api_url: str) -> str:
    """The predict URL of an `http(s)://` api_url (see endpoint_url)."""
    return endpoint_url(api_url, ("http", "https"), PREDICT_PATH)


def websocket_url(api_url: str) -> str:
    """The WebSocket URL of a `ws(s)://` api_url (see endpoint_url)."""
    return endpoint_url(api_url, ("ws", "wss"), WEBSOCKET_PATH)


def _snapshot(opts: TTSOptions) -> TTSOptions:
    # A request keeps the options it started with, whatever update_options does later.
    return dataclasses.replace(opts, extra=dict(opts.extra))


class TTS(tts.TTS[NoReturn]):  # emits no events beyond the base class's
    def __init__(
        self,
        *,
        api_url: str,
        api_key: str | None = None,
        options: TTSOptions | None = None,
        http_session: aiohttp.ClientSession | None = None,
        sentence_tokenizer: tokenize.SentenceTokenizer | None = None,
        max_inflight_requests: int = 2,
        model_name: str = "custom-tts",
        word_timestamps: bool = False,
        allow_insecure: bool = False,
    ) -> None:
        """
        Args:
            api_url: a base URL (`http://localhost:8080`, the predict path is added)
                or a full predict URL, e.g. a Baseten
                `https://model-<id>.api.baseten.co/environments/production/predict`.
                A `ws://` or `wss://` URL speaks the realtime WebSocket protocol
                (a base URL gets `/v1/websocket`; a Baseten
                `wss://model-<id>.api.baseten.co/environments/production/websocket`
                is used as given).
            api_key: sent as `Authorization: Api-Key <key>`: Baseten's API key, or a
                self-hosted server's `tts_api_key` secret; defaults to $BASETEN_API_KEY.
            options: voice, language, voice_description, sample_rate, extra fields.
            http_session: an aiohttp session to use; by default the agent job's shared
                session, or one this TTS owns (closed by `aclose()`) outside a job.
            sentence_tokenizer: splits `stream()` input into sentences (HTTP only:
                over a WebSocket the server chooses its units).
            max_inflight_requests: how many sentences `stream()` requests at once
                (the one playing plus those fetched ahead; HTTP only).
            model_name: what `model` reports in metrics.
            word_timestamps: ask a WebSocket server for word timings and push them
                as timed transcripts (`capabilities.aligned_transcript`).
            allow_insecure: send the API key over plain `http://` or `ws://` to a host
                other than this machine (refused by default: anyone on the path reads it).
        """
        opts = options or TTSOptions()
        websocket = urlsplit(api_url).scheme in ("ws", "wss")
        if word_timestamps and not websocket:
            raise ValueError("word_timestamps needs a ws:// or wss:// api_url (the HTTP contract has none)")
        if opts.audio_format != "pcm" and websocket:
            raise ValueError("audio_format: the WebSocket protocol streams PCM only")
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True, aligned_transcript=word_timestamps),
            sample_rate=opts.sample_rate,
            num_channels=NUM_CHANNELS,
        )
        if max_inflight_requests < 1:
            raise ValueError("max_inflight_requests must be at least 1")
        self._url = websocket_url(api_url) if websocket else predict_url(api_url)
        self._word_timestamps = word_timestamps
        self._api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if "api.baseten.co" in self._url and not self._api_key:
            raise ValueError(f"a Baseten URL needs an API key: pass api_key or set {API_KEY_ENV}")
        if self._api_key and not allow_insecure:
            _check_key_transport(self._url)
        self._opts = _snapshot(opts)
        self._session = http_session
        self._owned_session: aiohttp.ClientSession | None = None
        self._sentence_tokenizer = sentence_tokenizer or tokenize.basic.SentenceTokenizer()
        self._max_inflight = max_inflight_requests
        self._model_name = model_name
        self._streams: set[SynthesizeStream] = set()
        # WebSocket mode: the socket parked between streams.
        self._pool = SocketPool(self._url, self._auth_headers, self._ensure_session) if websocket else None

    @property
    def model(self) -> str:
        return self._model_name

    @property
    def provider(self) -> str:
        # The host only: a URL may carry credentials or query tokens.
        return urlsplit(self._url).hostname or "custom-tts"

    @property
    def url(self) -> str:
        return self._url

    @property
    def options(self) -> TTSOptions:
        return _snapshot(self._opts)

    def update_options(
        self,
        *,
        voice: str | None = None,
        language: str | None = None,
        voice_description: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Change what later requests send. sample_rate is fixed at construction
        because the TTS reports it to the pipeline."""
        opts = _snapshot(self._opts)
        if voice is not None:
            opts.voice = voice
        if language is not None:
            opts.language = language
        if voice_description is not None:
            opts.voice_description = voice_description
        if extra is not None:
            opts.extra = dict(extra)
        opts.validate()
        self._opts = opts

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        try:
            return utils.http_context.http_session()
        except RuntimeError:
            # Outside an agent job (a script, a test): own a session. aiohttp's
            # default connector verifies TLS certificates.
            if self._owned_session is None or self._owned_session.closed:
                logger.debug("no job http context; creating an http session")
                self._owned_session = aiohttp.ClientSession()
            return self._owned_session

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ChunkedStream:
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> SynthesizeStream:
        stream = SynthesizeStream(tts=self, conn_options=conn_options)
        self._streams.add(stream)
        return stream

    async def aclose(self) -> None:
        for stream in list(self._streams):
            await stream.aclose()
        self._streams.clear()
        if self._pool is not None:
            await self._pool.aclose()
        if self._owned_session is not None:
            await self._owned_session.close()
            self._owned_session = None

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Api-Key {self._api_key}"} if self._api_key else {}

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Accept": "audio/pcm", **self._auth_headers()}

    async def _run_websocket(
        self,
        stream: ChunkedStream | SynthesizeStream,
        inputs: AsyncIterator[str | None],
        emitter: tts.AudioEmitter,
    ) -> None:
        assert self._pool is not None

        def on_connected(seconds: float, reused: bool) -> None:
            # Reported in the framework's TTSMetrics (acquire_time, connection_reused).
            stream._acquire_time = seconds
            stream._connection_reused = reused

        turn = Turn(
            opts=stream._opts,
            word_timestamps=self._word_timestamps,
            conn_options=stream._conn_options,
            inputs=inputs,
            emitter=emitter,
            segments=isinstance(stream, SynthesizeStream),
            mark_started=stream._mark_started if isinstance(stream, SynthesizeStream) else lambda: None,
            on_connected=on_connected,
        )
        await turn.run(self._pool)

    async def _fetch(
        self, text: str, opts: TTSOptions, conn_options: APIConnectOptions
    ) -> AsyncGenerator[bytes, None]:
        """One request: yields the PCM body as it arrives, raises APIError subclasses.

        An error after the first byte is never retryable: that audio is already out.
        `conn_options.timeout` bounds connecting and every wait for data (the
        response headers, then each gap in the body), not the whole utterance.
        """
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=conn_options.timeout, sock_read=conn_options.timeout
        )
        received = 0
        complete = False
        try:
            async with self._ensure_session().post(
                self._url, json=opts.request_body(text), headers=self._headers(), timeout=timeout
            ) as resp:
                try:
                    if resp.status != 200:
                        raise await _status_error(resp)
                    _check_audio_response(resp, opts)
                    async for chunk in resp.content.iter_any():
                        received += len(chunk)
                        yield chunk
                    complete = True
                finally:
                    if not complete:
                        # Drop the connection, not just release it: the server stops
                        # generating as soon as it sees the client gone (barge-in).
                        resp.close()
            if received % 2 and opts.audio_format == "pcm":
                raise APIError(
                    f"audio ended inside a 16-bit sample after {received} bytes",
                    retryable=False,
                )
        except APIError:
            raise
        except asyncio.TimeoutError as e:
            where = "waiting for the first audio" if received == 0 else f"after {received} bytes"
            raise APITimeoutError(
                f"no data from the TTS server for {conn_options.timeout:g} s ({where})",
                retryable=received == 0,
            ) from e
        except aiohttp.ClientPayloadError as e:
            # A body cut before any audio played nothing: safe to ask again.
            raise APIConnectionError(
                f"audio stream cut short after {received} bytes: the server failed "
                "mid-stream or the connection dropped",
                retryable=received == 0,
            ) from e
        except aiohttp.ClientError as e:
            if received:
                message = f"audio stream cut short after {received} bytes"
            else:
                message = f"TTS request to {self.provider} failed"
            raise APIConnectionError(message, retryable=received == 0) from e
        except Exception as e:  # e.g. a closed session: still an APIError to the pipeline
            raise APIConnectionError(f"TTS request failed ({type(e).__name__})", retryable=False) from e


async def _status_error(resp: aiohttp.ClientResponse) -> APIStatusError:
    """The contract's JSON error ({"error": ..., "field": ...}) as an APIStatusError."""
    raw = b""
    while len(raw) < MAX_ERROR_BODY and (chunk := await resp.content.read(MAX_ERROR_BODY)):
        raw += chunk
    raw = raw[:MAX_ERROR_BODY]
    text = raw.decode("utf-8", "replace").strip()
    body: Any = text
    message = text or resp.reason or f"HTTP {resp.status}"
    with contextlib.suppress(ValueError):
        parsed = json.loads(text)
        body = parsed
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            message = parsed["error"]
    return APIStatusError(
        message,
        status_code=resp.status,
        request_id=resp.headers.get("X-Request-Id") or resp.headers.get("X-Baseten-Request-Id"),
        body=body,
        # 4xx: the framework forces non-retryable (except 408/429); 5xx retries.
        retryable=resp.status >= 500,
    )


def _check_audio_response(resp: aiohttp.ClientResponse, opts: TTSOptions) -> None:
    """A 200 that is not the audio asked for, at our rate, would be played as noise: refuse it."""
    sample_rate = opts.sample_rate
    expected = AUDIO_FORMATS[opts.audio_format]
    accepted = (expected, "application/octet-stream") if opts.audio_format == "pcm" else (expected,)
    if resp.content_type not in accepted:
        raise APIError(
            f"expected {expected} from the TTS server, got {resp.content_type!r}; "
            "is api_url a streaming TTS predict URL?",
            retryable=False,
        )
    rate = resp.headers.get("X-Sample-Rate")
    if rate is None:
        # Content-Type: audio/pcm;rate=N survives proxies that drop X- headers.
        params = resp.headers.get("Content-Type", "").split(";")[1:]
        rate = next((p.split("=", 1)[1] for p in params if p.strip().startswith("rate=")), None)
    if rate is not None and rate.strip() != str(sample_rate):
        raise APIError(
            f"the TTS server sent {rate.strip()} Hz audio, {sample_rate} Hz was requested",
            retryable=False,
        )


async def _once(text: str) -> AsyncIterator[str | None]:
    yield text
    yield FLUSH


def _initialize(output_emitter: tts.AudioEmitter, opts: TTSOptions, stream: bool) -> None:
    output_emitter.initialize(
        request_id=utils.shortuuid(),
        sample_rate=opts.sample_rate,
        num_channels=NUM_CHANNELS,
        mime_type=AUDIO_FORMATS[opts.audio_format],
        stream=stream,
    )


def _check_key_transport(url: str) -> None:
    """A key goes over TLS, or to this machine, unless the caller says otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme in ("http", "ws") and not _loopback(host):
        raise ValueError(
            f"refusing to send the API key in the clear to {host} ({parts.scheme}://): "
            f"use {parts.scheme}s://, or pass allow_insecure=True on a network you trust"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ChunkedStream(tts.ChunkedStream):
    """One utterance, one request; PCM goes to the emitter as it arrives."""

    def __init__(self, *, tts: TTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = _snapshot(tts._opts)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        _initialize(output_emitter, self._opts, stream=False)
        if self._tts._pool is not None:
            await self._tts._run_websocket(self, _once(self._input_text), output_emitter)
            return
        pushed = 0
        try:
            chunks = self._tts._fetch(self._input_text, self._opts, self._conn_options)
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    output_emitter.push(chunk)
                    pushed += len(chunk)
        except APIError as e:
            # The framework retries a ChunkedStream even after partial audio; the
            # listener would hear the start twice. Once audio is out, it is final.
            if pushed:
                raise final(e) from e
            raise
        # No flush() here: end_input() ends the segment with the real last samples as
        # the final frame, where a flush first would add a 10 ms silent marker.


_Chunk = bytes | APIError | None  # None: the sentence's audio is complete


class _Sentence:
    """One sentence's request, started ahead of playback; its body is queued."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.chunks: asyncio.Queue[_Chunk] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None


class _EndSegment:
    pass


class SynthesizeStream(tts.SynthesizeStream):
    """Incremental text in, sentence-by-sentence pipelined requests out.

    A flush() ends the segment: what is buffered is synthesized and the segment's
    last frame is marked final.
    """

    def __init__(self, *, tts: TTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._tts: TTS = tts
        self._opts = _snapshot(tts._opts)

    async def aclose(self) -> None:
        await super().aclose()
        self._tts._streams.discard(self)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        _initialize(output_emitter, self._opts, stream=True)
        if self._tts._pool is not None:
            await self._tts._run_websocket(self, self._input_pieces(), output_emitter)
            return
        # One sentence stream per segment: a segment's sentences are exactly what its
        # stream yields before it closes, so segment ends stay in text order.
        segments: asyncio.Queue[tokenize.SentenceStream | None] = asyncio.Queue()
        plan: asyncio.Queue[_Sentence | _EndSegment | None] = asyncio.Queue()
        # Held from a sentence's request start until its audio is fully pushed: bounds
        # both concurrent requests and audio buffered ahead of playback.
        slots = asyncio.Semaphore(self._tts._max_inflight)
        sentences: list[_Sentence] = []

        async def read_input() -> None:
            current = self._tts._sentence_tokenizer.stream()
            segments.put_nowait(current)
            async for data in self._input_ch:
                if isinstance(data, self._FlushSentinel):
                    current.end_input()
                    current = self._tts._sentence_tokenizer.stream()
                    segments.put_nowait(current)
                else:
                    current.push_text(data)
            current.end_input()
            segments.put_nowait(None)

        async def start_requests() -> None:
            while (segment := await segments.get()) is not None:
                async for ev in segment:
                    if not (text := ev.token.strip()):
                        continue
                    await slots.acquire()
                    sentence = _Sentence(text)
                    sentence.task = asyncio.create_task(self._fetch_sentence(sentence))
                    sentences.append(sentence)
                    self._mark_started()
                    plan.put_nowait(sentence)
                plan.put_nowait(_EndSegment())
            plan.put_nowait(None)

        async def emit() -> None:
            segment_open = False
            segment_bytes = 0
            while (item := await plan.get()) is not None:
                if isinstance(item, _EndSegment):
                    if segment_open:
                        output_emitter.end_segment()
                        segment_open = False
                        segment_bytes = 0
                    continue
                if not segment_open:
                    output_emitter.start_segment(segment_id=utils.shortuuid())
                    segment_open = True
                try:
                    heard = False
                    while (chunk := await item.chunks.get()) is not None:
                        if isinstance(chunk, APIError):
                            # Earlier sentences may already be playing: no replay.
                            raise final(chunk)
                        if not heard:
                            unit_started(len(item.text.split()), segment_bytes / (2 * self._opts.sample_rate))
                            heard = True
                        output_emitter.push(chunk)
                        segment_bytes += len(chunk)
                    # No flush() per sentence: the emitter releases its held-back tail
                    # by itself when playout would otherwise run dry, and a flush right
                    # before end_segment() would append a 10 ms silent marker.
                finally:
                    slots.release()

        tasks = [
            asyncio.create_task(read_input(), name="custom_tts.read_input"),
            asyncio.create_task(start_requests(), name="custom_tts.start_requests"),
            asyncio.create_task(emit(), name="custom_tts.emit"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            # Barge-in or failure: cancelling a request task closes its connection.
            pending = [s.task for s in sentences if s.task is not None]
            await utils.aio.cancel_and_wait(*tasks, *pending)

    async def _input_pieces(self) -> AsyncIterator[str | None]:
        async for data in self._input_ch:
            yield FLUSH if isinstance(data, self._FlushSentinel) else data

    async def _fetch_sentence(self, sentence: _Sentence) -> None:
        """Request one sentence, retrying per conn_options until its first byte."""
        conn = self._conn_options
        for attempt in range(conn.max_retry + 1):
            try:
                chunks = self._tts._fetch(sentence.text, self._opts, conn)
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        sentence.chunks.put_nowait(chunk)
                sentence.chunks.put_nowait(None)
                return
            except APIError as e:
                if not e.retryable or attempt == conn.max_retry:
                    sentence.chunks.put_nowait(e)
                    return
                interval = conn._interval_for_retry(attempt)
                logger.warning(
                    "sentence request failed: %s; retrying in %ss",
                    e,
                    interval,
                    extra={"attempt": attempt + 1},
                )
                await asyncio.sleep(interval)
