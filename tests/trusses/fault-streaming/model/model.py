"""Synthetic tone "model" with injectable faults, served through tts_common."""

import json
import os
import threading
import time
from typing import Iterator, Optional

import numpy as np
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tts_common.contract import StreamRequest
from tts_common.streaming import AudioStreamer, Synthesis

RATE = 16000


class FaultRequest(StreamRequest):
    chunks: int = Field(default=5, ge=1, le=10000)
    chunk_ms: int = Field(default=100, ge=1, le=1000)
    fail_after: Optional[int] = Field(default=None, ge=0)
    native: bool = False  # stream through truss's own generator handling instead


def _tone(index: int, chunk_ms: int) -> np.ndarray:
    n = RATE * chunk_ms // 1000
    t = (np.arange(n) + index * n) / RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


class Model:
    def __init__(self, **kwargs):
        self._secrets = kwargs.get("secrets")
        self._streamer = AudioStreamer.from_environment()
        self._events = os.environ.get("FAULT_EVENTS_PATH")

    def _log(self, **event) -> None:
        if self._events:
            with open(self._events, "a") as f:
                f.write(json.dumps({"t": time.time(), **event}) + "\n")

    def _chunks(self, req: FaultRequest, cancel: threading.Event) -> Iterator[np.ndarray]:
        produced = 0
        try:
            for i in range(req.chunks):
                if cancel.is_set():
                    return
                if req.fail_after is not None and i == req.fail_after:
                    raise RuntimeError(f"injected failure at chunk {i}")
                time.sleep(req.chunk_ms / 1000)
                yield _tone(i, req.chunk_ms)
                produced += 1
        finally:
            self._log(event="stopped", produced=produced, of=req.chunks, cancelled=cancel.is_set())

    async def predict(self, request: Request) -> Response:
        if request.url.query == "env":
            # Lets tests see config.yaml's environment_variables and secrets applied.
            return JSONResponse({
                "greeting": os.environ.get("FAULT_MODEL_GREETING"),
                "secret": self._secrets["fault_token"] if self._secrets else None,
            })
        body = json.loads(await request.body() or b"{}")
        if body.get("native"):
            req = FaultRequest.model_validate(body)
            never = threading.Event()
            return (
                (np.clip(c, -1, 1) * 32767).astype("<i2").tobytes()
                for c in self._chunks(req, never)
            )
        return await self._streamer.respond(
            request,
            FaultRequest,
            lambda req: Synthesis(RATE, lambda cancel: self._chunks(req, cancel)),
        )
