"""Coqui XTTS-v2 behind OpenAI's speech API; config.yaml's docker_server runs it."""

from collections.abc import Callable
from pathlib import Path

from tts_common.openai_server import serve
from tts_common.openai_speech import OpenAISpeech
from tts_common.truss_context import TrussContext
from xtts_engine.engine import Sampling, XttsEngine


def build(truss: TrussContext) -> tuple[OpenAISpeech, Callable[[], None]]:
    core = truss.core()
    engine = XttsEngine.for_truss(truss, on_voice_cache=core.metrics.voice_cache)
    speech = OpenAISpeech(
        engine,
        core,
        truss.api_key,
        truss.model_name,
        options=lambda speed: Sampling(speed=speed),
        voice_map=truss.metadata.get("openai_voices"),
    )
    return speech, lambda: engine.load(truss.serving.max_streams)


if __name__ == "__main__":
    serve(Path(__file__).resolve().parents[1], build)
