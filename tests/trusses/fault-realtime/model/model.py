"""Synthetic tone "engine" with faults chosen by the text, served through the shared
realtime session."""

import threading
import time
from collections.abc import Generator
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from tts_common.realtime_protocol import SessionConfig
from tts_common.realtime_session import RealtimeService
from tts_common.settings import RealtimeSettings
from tts_common.synthesis import Synthesis
from tts_common.truss_context import TrussContext

RATE = 16000
CHUNK_S = 0.1
HANG_S = 4.0  # past TTS_STALL_TIMEOUT_S


class FaultEngine:
    """Two tone chunks a word; "fail" raises mid-unit, "hang" wedges the model."""

    sample_rate = RATE
    word_times = False

    def language(self, wanted: str | None) -> str:
        return "en"

    def check_voice(self, voice: str | None) -> None:
        pass

    def voice_names(self) -> list[str]:
        return ["tone"]

    def max_unit_chars(self, language: str) -> int:
        return 400

    def speakable(self, text: str) -> bool:
        return bool(text.split())

    def synthesis(
        self, units: list[str], language: str, voice: str | None, options: Any, in_hand_s: float = 0.0
    ) -> Synthesis:
        text = " ".join(units)
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

        return Synthesis(RATE, chunks)


class Model:
    def __init__(self, **kwargs: Any) -> None:
        truss = TrussContext.of(kwargs)
        self._realtime = RealtimeService(
            truss.core(), FaultEngine(), SessionConfig, RealtimeSettings.load(truss.metadata), truss.api_key
        )

    def is_healthy(self) -> bool:
        return self._realtime.core.healthy()

    async def websocket(self, websocket: WebSocket) -> None:
        await self._realtime.serve(websocket)
