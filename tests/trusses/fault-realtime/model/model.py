"""Synthetic tone "model" with faults chosen by the text, served through the shared
realtime session."""

import threading
import time
from collections.abc import Generator
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from tts_common.realtime_protocol import SessionConfig, VoiceList
from tts_common.realtime_session import RealtimeService, Utterance

RATE = 16000
CHUNK_S = 0.1
HANG_S = 4.0  # past TTS_STALL_TIMEOUT_S


class FaultRealtime:
    config_model = SessionConfig
    max_unit_chars = 400

    def check(self, config: SessionConfig) -> None:
        pass

    def voices(self) -> VoiceList:
        return VoiceList(voices=["tone"])

    def utterance(self, text: str, config: SessionConfig, in_hand_s: float) -> Utterance | None:
        words = text.split()

        def chunks(cancel: threading.Event) -> Generator[np.ndarray, None, None]:
            n = int(RATE * CHUNK_S)
            for index in range(2 * len(words)):
                if index == 2 and "fail" in text:
                    raise RuntimeError("injected failure mid-unit")
                if index == 1 and "hang" in text:
                    time.sleep(HANG_S)  # ignores cancel: a wedged model
                if cancel.is_set():
                    return
                t = (np.arange(n) + index * n) / RATE
                yield (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)

        return Utterance(RATE, chunks)


class Model:
    def __init__(self, **kwargs: Any) -> None:
        self._realtime = RealtimeService.for_truss(kwargs, FaultRealtime())

    def is_healthy(self) -> bool:
        return self._realtime.healthy()

    async def websocket(self, websocket: WebSocket) -> None:
        await self._realtime.serve(websocket)
