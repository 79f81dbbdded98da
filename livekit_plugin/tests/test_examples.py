"""The examples: basic_usage runs against piper; voice_agent is well-formed (it needs
a LiveKit server, so it is imported and inspected, not run)."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from livekit.agents import Agent, AgentServer, JobContext
from livekit.plugins import custom_tts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def basic_usage(text: str, out: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "basic_usage.py"), text, "--out", str(out), "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_basic_usage_writes_a_wav_from_piper(piper, tmp_path):
    out = tmp_path / "output.wav"
    run = basic_usage("Hello from the example.", out, piper.base_url)
    assert run.returncode == 0, run.stderr
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        assert 0.5 < w.getnframes() / 24000 < 5
    assert "wrote" in run.stderr


def test_basic_usage_reports_an_unreachable_server(tmp_path):
    from conftest import free_port

    out = tmp_path / "output.wav"
    run = basic_usage("Hi.", out, f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 1
    assert "synthesis failed" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()


@pytest.fixture
def voice_agent(monkeypatch):
    # LiveKit Inference STT/LLM read their credentials at construction; no call is made.
    monkeypatch.setenv("LIVEKIT_API_KEY", "test-key")
    monkeypatch.setenv("LIVEKIT_API_SECRET", "test-secret-that-is-long-enough-for-hs256")
    monkeypatch.setenv("CUSTOM_TTS_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("CUSTOM_TTS_VOICE", "joe")
    spec = importlib.util.spec_from_file_location("voice_agent", EXAMPLES / "voice_agent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # must not start the CLI
    return module


def test_voice_agent_entrypoint_is_registered_and_well_formed(voice_agent):
    assert isinstance(voice_agent.server, AgentServer)
    assert voice_agent.server._entrypoint_fnc is voice_agent.entrypoint
    assert inspect.iscoroutinefunction(voice_agent.entrypoint)
    params = list(inspect.signature(voice_agent.entrypoint).parameters.values())
    assert len(params) == 1 and params[0].annotation in (JobContext, "JobContext")
    assert issubclass(voice_agent.Assistant, Agent)


async def test_the_cluster_settings_build_either_plugin(voice_agent, monkeypatch):
    """deploy/kubernetes/agent's two workers: this plugin, and LiveKit's Baseten plugin,
    each against an in-cluster *-realtime Service over ws:// with a key."""
    from livekit.plugins import baseten

    monkeypatch.setenv("BASETEN_API_KEY", "k-cluster")
    monkeypatch.setenv("CUSTOM_TTS_URL", "ws://piper-realtime.tts.svc.cluster.local")
    with pytest.raises(ValueError, match="allow_insecure"):
        voice_agent.build_tts()
    monkeypatch.setenv("CUSTOM_TTS_ALLOW_INSECURE", "1")
    ours = voice_agent.build_tts()
    assert isinstance(ours, custom_tts.TTS) and ours.url.endswith("/v1/websocket")
    monkeypatch.setenv("TTS_PLUGIN", "baseten")
    theirs = voice_agent.build_tts()
    assert isinstance(theirs, baseten.TTS)
    await ours.aclose()
    await theirs.aclose()


async def test_voice_agent_session_uses_the_plugin(voice_agent, monkeypatch):
    monkeypatch.setenv("STT_MODEL", "deepgram/nova-3:en")
    monkeypatch.setenv("LLM_MODEL", "openai/gpt-4.1-mini")
    session = voice_agent.build_session()
    try:
        assert isinstance(session.tts, custom_tts.TTS)
        assert session.tts.options.voice == "joe"
        assert session.tts.url == "http://127.0.0.1:8080/v1/models/model:predict"
        assert session.stt.model == "deepgram/nova-3" and session.llm.model == "openai/gpt-4.1-mini"
    finally:
        await session.aclose()
