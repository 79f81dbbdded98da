"""Fixtures: the real piper-streaming Truss (a subprocess, once per session) and a
fault-injecting aiohttp server in the test's own event loop.

The fault server also relays to piper (`/proxy`) and records every byte it relays,
so a test can compare what the plugin emitted with what went over the wire.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # local_truss.process: standard library only, no truss here

from local_truss.process import ServedTruss, free_port  # noqa: E402

logger = logging.getLogger("custom_tts.tests")


def serve_piper(
    log_dir: Path, extra_env: dict[str, str] | None = None, truss: str = "piper-streaming"
) -> Iterator[ServedTruss]:
    """`python -m local_truss serve piper-streaming` (or `truss`) on a free port, as a
    user runs it; stopped when the fixture that yields from this ends."""
    server = ServedTruss(truss, log_path=log_dir / "server.log", extra_env=extra_env)
    try:
        server.start()
    except (RuntimeError, TimeoutError) as e:
        pytest.fail(str(e))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def piper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    yield from serve_piper(tmp_path_factory.mktemp("piper"))


@pytest.fixture(scope="session")
def piper_realtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    """piper's realtime Truss: the WebSocket protocol at ws://127.0.0.1:<port>/v1/websocket."""
    yield from serve_piper(tmp_path_factory.mktemp("piper-realtime"), truss="piper-realtime")


def ws_url(server: ServedTruss) -> str:
    return server.base_url.replace("http://", "ws://", 1) + "/v1/websocket"


def pcm_for(text: str, n_bytes: int) -> bytes:
    """Deterministic, text-dependent 'audio', so order and integrity are checkable."""
    out = bytearray()
    block = hashlib.sha256(text.encode()).digest()
    while len(out) < n_bytes:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:n_bytes])


@dataclass
class Record:
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    started: float
    ended: float | None = None
    sent: bytearray = field(default_factory=bytearray)
    disconnected_at: float | None = None


class FaultServer:
    """Routes (all POST; every request is recorded in `records`):

    /status/{code}          the contract's JSON error with that status
    /flaky/{code}/{n}       the first n requests fail with code, then /audio
    /cut_first/{n}          the first n requests get a 200 whose body is cut before
                            any audio, then /audio
    /audio                  deterministic PCM; query: chunks, chunk_bytes, gap_ms,
                            first_byte_ms, cut_after, stall_after, rate, ctype
    /proxy                  relays to piper, recording the relayed bytes

    GET /ws/{behaviour}     a WebSocket speaking the realtime protocol badly (`body`
                            records the client's messages): `close` closes at the
                            first input.done, before any audio; `close_after_audio`
                            sends some audio first; `error` answers session.config
                            with an `error` event; `cut_once` closes the first
                            socket after its first input.text, then answers every
                            flush with one unit of the text it was sent
    """

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.upstream: str | None = None
        self._flaky_count: dict[str, int] = {}
        self.app = web.Application()
        self.app.router.add_post("/status/{code}", self._status)
        self.app.router.add_post("/flaky/{code}/{n}", self._flaky)
        self.app.router.add_post("/cut_first/{n}", self._cut_first)
        self.app.router.add_post("/audio", self._audio)
        self.app.router.add_post("/proxy", self._proxy)
        self.app.router.add_get("/ws/{behaviour}", self._websocket)
        self.url = ""

    def requests_to(self, path: str) -> list[Record]:
        return [r for r in self.records if r.path == path]

    async def _record(self, request: web.Request) -> Record:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        rec = Record(
            path=request.path,
            query=dict(request.query),
            body=body,
            headers=dict(request.headers),
            started=time.monotonic(),
        )
        self.records.append(rec)
        return rec

    async def _status(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        code = int(request.match_info["code"])
        rec.ended = time.monotonic()
        return _error(code)

    async def _flaky(self, request: web.Request) -> web.StreamResponse:
        key = request.path
        seen = self._flaky_count.get(key, 0)
        self._flaky_count[key] = seen + 1
        if seen < int(request.match_info["n"]):
            rec = await self._record(request)
            rec.ended = time.monotonic()
            return _error(int(request.match_info["code"]))
        return await self._audio(request)

    async def _cut_first(self, request: web.Request) -> web.StreamResponse:
        seen = self._flaky_count.get(request.path, 0)
        self._flaky_count[request.path] = seen + 1
        return await self._audio(request, cut_at_once=seen < int(request.match_info["n"]))

    async def _audio(self, request: web.Request, cut_at_once: bool = False) -> web.StreamResponse:
        rec = await self._record(request)
        q = request.query
        chunks = int(q.get("chunks", "6"))
        chunk_bytes = int(q.get("chunk_bytes", "4801"))  # odd: samples straddle chunks
        gap = float(q.get("gap_ms", "0")) / 1000
        rate = q.get("rate", str(rec.body.get("sample_rate", 24000)))
        data = pcm_for(rec.body["text"], chunks * chunk_bytes)

        await asyncio.sleep(float(q.get("first_byte_ms", "0")) / 1000)
        resp = web.StreamResponse(
            headers={
                "Content-Type": q.get("ctype", f"audio/pcm;rate={rate}"),
                "X-Sample-Rate": rate,
            }
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(chunks):
            if ("cut_after" in q and i == int(q["cut_after"])) or cut_at_once:
                # What uvicorn does when synthesis fails mid-stream: drop the
                # connection without the terminating chunk.
                rec.ended = time.monotonic()
                request.transport.abort()
                return resp
            if "stall_after" in q and i == int(q["stall_after"]):
                while not request.transport.is_closing():  # silent until the client leaves
                    await asyncio.sleep(0.02)
                rec.disconnected_at = time.monotonic()
                return resp
            if not await _write(resp, request, rec, data[i * chunk_bytes : (i + 1) * chunk_bytes]):
                return resp
            if gap:
                await asyncio.sleep(gap)
        await resp.write_eof()
        rec.ended = time.monotonic()
        return resp

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        rec = Record(
            path=request.path, query={}, body=[], headers=dict(request.headers), started=time.monotonic()
        )
        self.records.append(rec)
        behaviour = request.match_info["behaviour"]
        first = self._flaky_count.get(request.path, 0) == 0
        self._flaky_count[request.path] = self._flaky_count.get(request.path, 0) + 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        text = ""
        async for msg in ws:
            event = json.loads(msg.data)
            rec.body.append(event)
            if behaviour == "cut_once":
                if first and event["type"] == "input.text":
                    await ws.close()
                elif event["type"] == "input.text":
                    text += event["text"]
                elif event["type"] == "input.done":
                    audio = pcm_for("ws", 4800)
                    await ws.send_json(
                        {"type": "audio.start", "sentence_index": 0, "sample_rate": 24000, "text": text}
                    )
                    await ws.send_bytes(audio)
                    rec.sent += audio
                    await ws.send_json({"type": "audio.done", "sentence_index": 0, "audio_seconds": 0.1})
                    await ws.send_json({"type": "session.done", "sentences": 1})
                    text = ""
            elif event["type"] == "session.config" and behaviour == "error":
                await ws.send_json(
                    {"type": "error", "message": "voice: unknown voice 'nobody'", "field": "voice"}
                )
            elif event["type"] == "input.done":
                if behaviour == "close_after_audio":
                    await ws.send_json({"type": "audio.start", "sentence_index": 0, "sample_rate": 24000})
                    audio = pcm_for("ws", 9600)
                    await ws.send_bytes(audio)
                    rec.sent += audio
                await ws.close()
        rec.ended = time.monotonic()
        return ws

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        assert self.upstream, "set FaultServer.upstream to piper's predict URL"
        rec = await self._record(request)
        try:
            return await self._relay(request, rec)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            # Say what went wrong upstream instead of aiohttp's bare 500 page.
            logger.exception("proxy: upstream failed")
            rec.ended = time.monotonic()
            return web.json_response({"error": f"proxy: upstream failed: {e!r}"}, status=502)

    async def _relay(self, request: web.Request, rec: Record) -> web.StreamResponse:
        async with aiohttp.ClientSession() as session:
            async with session.post(self.upstream, json=rec.body) as up:
                if up.status != 200:
                    rec.ended = time.monotonic()
                    return web.Response(status=up.status, body=await up.read(), content_type=up.content_type)
                resp = web.StreamResponse(
                    headers={
                        "Content-Type": up.headers["Content-Type"],
                        "X-Sample-Rate": up.headers["X-Sample-Rate"],
                    }
                )
                resp.enable_chunked_encoding()
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    if not await _write(resp, request, rec, chunk):
                        return resp  # leaving the block drops the upstream request too
                await resp.write_eof()
                rec.ended = time.monotonic()
                return resp


def _error(code: int) -> web.Response:
    message = f"injected {code}"
    headers = {"Retry-After": "1"} if code == 503 else None
    return web.json_response(
        {"error": message, "field": None, "errors": [{"field": "body", "message": message}]},
        status=code,
        headers=headers,
    )


async def _write(resp: web.StreamResponse, request: web.Request, rec: Record, data: bytes) -> bool:
    """Write a chunk; False (and the disconnect recorded) once the client has gone."""
    if request.transport is None or request.transport.is_closing():
        rec.disconnected_at = time.monotonic()
        return False
    try:
        await resp.write(data)
    except ConnectionError:
        rec.disconnected_at = time.monotonic()
        return False
    rec.sent += data
    return True


@pytest.fixture
async def fault_server():
    server = FaultServer()
    runner = web.AppRunner(server.app, shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def http_session():
    async with aiohttp.ClientSession() as session:
        yield session
