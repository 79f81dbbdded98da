"""LiveKit's own Baseten plugin, unchanged, against the real xtts-realtime Truss on the
tiny random XTTS-v2 checkpoint (tests/fixtures/tiny_xtts.py): its voice helpers
(`register_voice`, `list_voices`) and a turn in the cloned voice."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from baseten_turns import speak
from conftest import REPO, ServedTruss, serve_piper, ws_url

from livekit.agents import APIConnectOptions
from livekit.plugins import baseten

# The tiny model is slow on a loaded 2-core machine; one try still (no retry hides errors).
PATIENT = APIConnectOptions(max_retry=0, retry_interval=0.05, timeout=120.0)


def tiny_checkpoint() -> Path:
    """The checkpoint the serving-side tests build, made with xtts-realtime's own environment."""
    prepare = [str(REPO / ".venv/bin/python"), "-m", "local_truss", "prepare", "xtts-realtime"]
    python = subprocess.run(prepare, cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()
    sys.path.insert(0, str(REPO))
    from local_truss.paths import cache_dir

    out = cache_dir() / "models" / "tiny-xtts"
    subprocess.run([python, str(REPO / "tests/fixtures/tiny_xtts.py"), str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def xtts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedTruss]:
    env = {"XTTS_MODEL_DIR": str(tiny_checkpoint()), "TTS_QUEUE_TIMEOUT_S": "300"}
    yield from serve_piper(Path(tmp_path_factory.mktemp("xtts-realtime")), env, truss="xtts-realtime")


async def test_a_registered_voice_speaks_through_the_plugin(xtts, http_session):
    url = ws_url(xtts)
    voice = await baseten.register_voice(
        model_endpoint=url,
        name="joe",
        ref_audio_path=str(REPO / "xtts-streaming/data/speakers/joe.wav"),
        api_key="unused-locally",
    )
    assert voice == {"name": "joe"}
    listed = await baseten.list_voices(model_endpoint=url, api_key="unused-locally")
    assert "joe" in listed["uploaded_voices"] and "Tiny Speaker A" in listed["voices"]

    tts = baseten.TTS(
        model="qwen3-tts",
        model_endpoint=url,
        voice="joe",
        api_key="unused-locally",
        http_session=http_session,
    )
    try:
        turn = await speak(tts, "Hello from a cloned voice.", conn_options=PATIENT)
    finally:
        await tts.aclose()
    assert turn.error is None, turn.error
    assert turn.rate == 24000 and turn.seconds > 0
    assert turn.words == []  # XTTS gives no word times


async def test_a_failed_registration_raises_with_the_servers_reason(xtts, tmp_path):
    short = tmp_path / "short.wav"
    short.write_bytes(b"RIFF\x00\x00\x00\x00WAVE")  # no audio in it
    with pytest.raises(RuntimeError, match="audio_data"):
        await baseten.register_voice(
            model_endpoint=ws_url(xtts), name="broken", ref_audio_path=str(short), api_key="unused-locally"
        )
