"""Synthetic tone "model" with injectable faults, served through tts_common."""

import json
import os
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np
from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tts_common.contract import StreamRequest
from tts_common.streaming import AudioStreamer, contract_speech
from tts_common.synthesis import Synthesis
from tts_common.truss_context import TrussContext

RATE = 16000


class FaultRequest(StreamRequest):
    chunks: int = Field(default=5, ge=1, le=10000)
    chunk_ms: int = Field(default=100, ge=1, le=1000)
    fail_after: int | None = Field(default=None, ge=0)
    # Before chunk `hang_after`, block for `hang_s` seconds ignoring cancellation:
    # a wedged model, for the watchdog.
    hang_after: int | None = Field(default=None, ge=0)
    hang_s: float = Field(default=0.0, ge=0.0, le=60.0)
    fast: bool = False  # produce chunks without waiting their duration
    tag: str = ""  # names this request in the event log


def _tone(index: int, chunk_ms: int) -> np.ndarray:
    n = RATE * chunk_ms // 1000
    t = (np.arange(n) + index * n) / RATE
    tone: np.ndarray = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return tone


class Model:
    def __init__(self, **kwargs: Any) -> None:
        self._secrets = kwargs.get("secrets")
        truss = TrussContext.of(kwargs)
        self._streamer = AudioStreamer(truss.core(), truss.api_key)
        self._events = os.environ.get("FAULT_EVENTS_PATH")

    def _log(self, **event: Any) -> None:
        if self._events:
            with open(self._events, "a") as f:
                f.write(json.dumps({"t": time.time(), **event}) + "\n")

    def _chunks(self, req: FaultRequest, cancel: threading.Event) -> Generator[np.ndarray, None, None]:
        produced = 0
        self._log(event="started", tag=req.tag, of=req.chunks)
        try:
            for i in range(req.chunks):
                if cancel.is_set():
                    return
                if req.fail_after is not None and i == req.fail_after:
                    raise RuntimeError(f"injected failure at chunk {i}")
                if req.hang_after is not None and i == req.hang_after:
                    time.sleep(req.hang_s)
                if not req.fast:
                    time.sleep(req.chunk_ms / 1000)
                yield _tone(i, req.chunk_ms)
                produced += 1
        finally:
            self._log(
                event="stopped", tag=req.tag, produced=produced, of=req.chunks, cancelled=cancel.is_set()
            )

    def is_healthy(self) -> bool:
        return self._streamer.core.healthy()

    async def predict(self, request: Request) -> Response | Iterator[bytes]:
        if request.url.query == "env":
            # Lets tests see config.yaml's environment_variables and secrets applied.
            return JSONResponse(
                {
                    "greeting": os.environ.get("FAULT_MODEL_GREETING"),
                    "secret": self._secrets["fault_token"] if self._secrets else None,
                }
            )
        if request.url.query == "native":  # through truss's own generator handling instead
            req = FaultRequest.model_validate_json(await request.body())
            never = threading.Event()
            return ((np.clip(c, -1, 1) * 32767).astype("<i2").tobytes() for c in self._chunks(req, never))
        return await self._streamer.respond(
            request,
            contract_speech(
                FaultRequest, lambda req: Synthesis(RATE, lambda cancel: self._chunks(req, cancel))
            ),
        )
