"""Construction, options and packaging: no server needed."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from livekit.agents import Plugin
from livekit.agents import tts as agents_tts
from livekit.plugins import custom_tts
from livekit.plugins.custom_tts import models

PLUGIN_DIR = Path(__file__).resolve().parents[1]
REPO = PLUGIN_DIR.parent


def test_seed_example_constructs_as_written():
    tts = custom_tts.TTS(
        api_url="http://localhost:8080",
        options=custom_tts.TTSOptions(
            voice_description="A friendly, conversational voice.", sample_rate=24000
        ),
    )
    assert isinstance(tts, agents_tts.TTS)
    assert tts.url == "http://localhost:8080/v1/models/model:predict"
    assert tts.sample_rate == 24000 and tts.num_channels == 1
    assert tts.capabilities.streaming
    assert tts.model == "custom-tts" and tts.provider == "localhost"


@pytest.mark.parametrize(
    "given, expected",
    [
        ("http://localhost:8080", "http://localhost:8080/v1/models/model:predict"),
        ("http://localhost:8080/", "http://localhost:8080/v1/models/model:predict"),
        (
            "https://model-abc123.api.baseten.co/environments/production/predict",
            "https://model-abc123.api.baseten.co/environments/production/predict",
        ),
        ("http://10.0.0.5:9000/custom/route", "http://10.0.0.5:9000/custom/route"),
    ],
)
def test_predict_url(given, expected):
    assert custom_tts.predict_url(given) == expected


@pytest.mark.parametrize("bad", ["localhost:8080", "ftp://host/x", "http://", ""])
def test_predict_url_refuses_non_http(bad):
    with pytest.raises(ValueError):
        custom_tts.predict_url(bad)


@pytest.mark.parametrize(
    "given, expected",
    [
        ("ws://localhost:8080", "ws://localhost:8080/v1/websocket"),
        ("ws://localhost:8080/", "ws://localhost:8080/v1/websocket"),
        (
            "wss://model-abc123.api.baseten.co/environments/production/websocket",
            "wss://model-abc123.api.baseten.co/environments/production/websocket",
        ),
    ],
)
def test_websocket_url(given, expected):
    assert custom_tts.websocket_url(given) == expected
    tts = custom_tts.TTS(api_url=given, api_key="k")
    assert tts.url == expected
    assert tts.capabilities.streaming and not tts.capabilities.aligned_transcript


def test_word_timestamps_declare_aligned_transcript_and_need_a_websocket():
    tts = custom_tts.TTS(api_url="ws://localhost:8080", word_timestamps=True)
    assert tts.capabilities.aligned_transcript
    with pytest.raises(ValueError, match="ws://"):
        custom_tts.TTS(api_url="http://localhost:8080", word_timestamps=True)


@pytest.mark.parametrize("url", ["http://tts.internal:8080", "ws://10.0.0.7:8080"])
def test_a_key_is_refused_in_the_clear_to_another_host_unless_allowed(url):
    with pytest.raises(ValueError, match="allow_insecure"):
        custom_tts.TTS(api_url=url, api_key="k-secret")
    custom_tts.TTS(api_url=url, api_key="k-secret", allow_insecure=True)
    custom_tts.TTS(api_url=url)  # no key: nothing to leak
    for fine in ("http://localhost:8080", "ws://127.0.0.1:8080", "http://[::1]:8080", "https://tts.internal"):
        custom_tts.TTS(api_url=fine, api_key="k-secret")


def test_session_config_maps_options_like_the_http_body():
    opts = custom_tts.TTSOptions(
        voice="joe", voice_description="calm", sample_rate=16000, extra={"speed": 1.25}
    )
    assert opts.session_config(word_timestamps=True) == {
        "response_format": "pcm",
        "stream_audio": True,
        "language": "en",
        "sample_rate": 16000,
        "voice": "joe",
        "description": "calm",
        "timestamp_type": "word",
        "timestamp_transport_strategy": "sync",
        "speed": 1.25,
    }
    assert "timestamp_type" not in custom_tts.TTSOptions().session_config(word_timestamps=False)
    with pytest.raises(ValueError, match="stream_audio"):
        custom_tts.TTSOptions(extra={"stream_audio": False})


def test_api_key_falls_back_to_environment(monkeypatch):
    monkeypatch.setenv("BASETEN_API_KEY", "env-key-123")
    tts = custom_tts.TTS(api_url="https://model-x.api.baseten.co/environments/production/predict")
    assert tts._headers()["Authorization"] == "Api-Key env-key-123"
    explicit = custom_tts.TTS(api_url="http://localhost:8080", api_key="arg-key")
    assert explicit._headers()["Authorization"] == "Api-Key arg-key"


def test_baseten_url_without_key_is_refused_up_front(monkeypatch):
    monkeypatch.delenv("BASETEN_API_KEY", raising=False)
    with pytest.raises(ValueError, match="BASETEN_API_KEY"):
        custom_tts.TTS(api_url="https://model-x.api.baseten.co/environments/production/predict")
    # A local server needs none, and then no Authorization header is sent.
    assert "Authorization" not in custom_tts.TTS(api_url="http://localhost:8080")._headers()


def test_request_body_maps_options_to_contract_fields():
    opts = custom_tts.TTSOptions(
        voice="joe",
        language="en",
        voice_description="calm",
        sample_rate=16000,
        extra={"speed": 1.25},
    )
    assert opts.request_body("Hi.") == {
        "text": "Hi.",
        "voice": "joe",
        "language": "en",
        "description": "calm",
        "format": "pcm",
        "sample_rate": 16000,
        "speed": 1.25,
    }
    # Unset voice/description are left out, so the model's defaults apply.
    assert set(custom_tts.TTSOptions().request_body("Hi.")) == {
        "text",
        "language",
        "format",
        "sample_rate",
    }


@pytest.mark.parametrize("rate", [0, 23999, "24000", True, 96000])
def test_unsupported_sample_rate_is_refused(rate):
    with pytest.raises(ValueError, match="sample_rate"):
        custom_tts.TTSOptions(sample_rate=rate)


def test_extra_cannot_override_contract_fields():
    with pytest.raises(ValueError, match="format"):
        custom_tts.TTSOptions(extra={"format": "wav"})


def test_update_options_changes_later_requests_only():
    tts = custom_tts.TTS(api_url="http://localhost:8080")
    before = tts.options
    tts.update_options(voice="amy", extra={"speed": 0.8})
    assert tts.options.voice == "amy" and tts.options.extra == {"speed": 0.8}
    assert before.voice is None and before.extra == {}  # snapshots are copies
    with pytest.raises(ValueError):
        tts.update_options(extra={"text": "sneaky"})
    assert tts.options.extra == {"speed": 0.8}  # a refused update changes nothing


def test_sample_rates_match_the_shared_contract():
    # The contract needs pydantic and numpy alone, which this environment has too.
    sys.path.insert(0, str(REPO / "packages"))
    try:
        contract = importlib.import_module("tts_common.contract")
    finally:
        sys.path.remove(str(REPO / "packages"))
    assert models.SAMPLE_RATES == contract.SAMPLE_RATES
    assert models.DEFAULT_SAMPLE_RATE == contract.DEFAULT_SAMPLE_RATE
    assert set(models.AUDIO_FORMATS) <= {f.value for f in contract.AudioFormat}


def test_plugin_is_registered_like_official_plugins():
    packages = [p.package for p in Plugin.registered_plugins]
    assert "livekit.plugins.custom_tts" in packages
    plugin = next(p for p in Plugin.registered_plugins if p.package == "livekit.plugins.custom_tts")
    assert plugin.version == custom_tts.__version__


def test_namespace_package_layout():
    # livekit/ and livekit/plugins/ must stay namespace packages, or installing this
    # plugin would shadow livekit-agents and the other plugins.
    assert not (PLUGIN_DIR / "livekit" / "__init__.py").exists()
    assert not (PLUGIN_DIR / "livekit" / "plugins" / "__init__.py").exists()
    pkg = PLUGIN_DIR / "livekit" / "plugins" / "custom_tts"
    for name in ("__init__.py", "tts.py", "log.py", "version.py", "models.py", "py.typed"):
        assert (pkg / name).exists(), name


def test_dependencies_exclude_servers_and_models():
    text = (PLUGIN_DIR / "pyproject.toml").read_text()
    assert '"livekit-agents==1.8.9"' in text
    for forbidden in ("truss", "torch", "piper", "onnx", "tts_common"):
        assert (
            forbidden not in text.split("[project.optional-dependencies]")[0].split("dependencies = [")[1]
        ), forbidden
    # and the code imports none of them
    for path in (PLUGIN_DIR / "livekit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    assert name.split(".")[0] not in ("truss", "torch", "tts_common"), path


def test_servers_answer_busy_before_the_plugin_stops_waiting():
    """A request queued for a slot gets its 503 before the plugin's default read
    timeout, so the plugin sees "busy" (and retries) instead of timing out just
    before the answer. Server default: packages/tts_common/settings.py."""
    from livekit.agents import DEFAULT_API_CONNECT_OPTIONS

    read_timeout = DEFAULT_API_CONNECT_OPTIONS.timeout
    settings = (REPO / "packages/tts_common/settings.py").read_text()
    default = float(re.search(r"queue_timeout_s: float = Field\(([\d.]+)", settings).group(1))
    assert default + 1 <= read_timeout
    for truss in ("piper-streaming", "xtts-streaming"):
        config = (REPO / truss / "config.yaml").read_text()
        configured = re.search(r'TTS_QUEUE_TIMEOUT_S: "([\d.]+)"', config)
        assert configured, f"{truss} sets no TTS_QUEUE_TIMEOUT_S"
        assert float(configured.group(1)) + 1 <= read_timeout, truss
