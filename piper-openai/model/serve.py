"""Piper (en_US-joe-medium) behind OpenAI's speech API; config.yaml's docker_server runs it."""

from collections.abc import Callable
from pathlib import Path

from piper_engine.engine import PiperEngine, PiperOptions
from tts_common.openai_server import serve
from tts_common.openai_speech import OpenAISpeech
from tts_common.truss_context import TrussContext


def build(truss: TrussContext) -> tuple[OpenAISpeech, Callable[[], None]]:
    engine = PiperEngine.from_metadata(truss.metadata)
    speech = OpenAISpeech(
        engine,
        truss.core(engine.behind_s),  # admitted by CPU load, as on piper-streaming
        truss.api_key,
        truss.model_name,
        options=lambda speed: PiperOptions(speed=speed),
        voice_map=truss.metadata.get("openai_voices"),
    )
    return speech, engine.load


if __name__ == "__main__":
    serve(Path(__file__).resolve().parents[1], build)
