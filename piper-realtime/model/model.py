"""Piper (en_US-joe-medium) speaking the realtime WebSocket protocol, on CPU."""

from typing import Any

from pydantic import Field
from starlette.websockets import WebSocket

from piper_engine.engine import MAX_SENTENCE_CHARS, PiperEngine
from piper_engine.words import word_alignment
from tts_common.realtime_protocol import ProtocolError, SessionConfig, VoiceList, WordAlignment
from tts_common.realtime_session import RealtimeService, Utterance
from tts_common.settings import CpuSettings, PiperSettings

# What `language` may say: "Auto" (the LiveKit plugin's default) or English.
LANGUAGES = ("auto", "en", "en-us", "english")


class PiperSessionConfig(SessionConfig):
    speed: float = Field(default=1.0, ge=0.5, le=2.0)


class PiperRealtime:
    """The session's view of the engine (tts_common.realtime_session.RealtimeModel)."""

    config_model = PiperSessionConfig
    max_unit_chars = MAX_SENTENCE_CHARS

    def __init__(self, engine: PiperEngine):
        self._engine = engine

    def check(self, config: PiperSessionConfig) -> None:
        name = self._engine.settings.voice
        if config.voice not in (None, name):
            raise ProtocolError.of("voice", f"unknown voice {config.voice!r}; available: {name}", config.type)
        if config.language is not None and config.language.lower() not in LANGUAGES:
            raise ProtocolError.of(
                "language", f"unsupported language {config.language!r}; available: Auto, en", config.type
            )

    def voices(self) -> VoiceList:
        return VoiceList(voices=[self._engine.settings.voice])

    def utterance(self, text: str, config: PiperSessionConfig, in_hand_s: float) -> Utterance | None:
        engine = self._engine
        if not engine.phonemes(text):
            return None
        sentences: list[Any] = []  # each espeak sentence's phonemes, ids and frames per id

        def words() -> WordAlignment | None:
            return word_alignment(
                text,
                sentences,
                lambda word: [p for phonemes in engine.phonemes(word) for p in phonemes],
                engine.phoneme_id_map,
                engine.seconds_per_frame,
            )

        chunks = engine.stream(
            [text], config.speed, in_hand_s, on_sentence=lambda *sentence: sentences.append(sentence)
        )
        return Utterance(engine.sample_rate, chunks, words)


class Model:
    def __init__(self, **kwargs: Any) -> None:
        settings = PiperSettings.load(kwargs["config"].get("model_metadata") or {})
        self._engine = PiperEngine(settings, CpuSettings.from_env())
        # units admitted by CPU load, as piper-streaming's requests
        self._realtime = RealtimeService.for_truss(
            kwargs, PiperRealtime(self._engine), behind=self._engine.behind_s
        )

    def load(self) -> None:
        self._engine.load()

    def is_healthy(self) -> bool:
        return self._realtime.healthy()

    async def websocket(self, websocket: WebSocket) -> None:
        await self._realtime.serve(websocket)
