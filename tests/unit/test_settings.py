"""Settings from the environment and model_metadata: defaults, overrides, and
refusals that name the knob."""

import importlib.util
import os

import pytest
from conftest import REPO

from piper_engine.settings import PiperSettings
from tts_common.cpu_lanes import default_lanes
from tts_common.settings import CpuSettings, RealtimeSettings, ServingSettings
from xtts_engine.settings import XttsSettings


def _parler_settings():
    """parler-batch's settings module, loaded from its Truss (its package is `model`, as every Truss's)."""
    spec = importlib.util.spec_from_file_location("parler_settings", REPO / "parler-batch/model/settings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ParlerSettings


ParlerSettings = _parler_settings()


def test_defaults_without_environment():
    settings = ServingSettings.from_env({})
    assert settings == ServingSettings()
    assert settings.queue_timeout_s < 10  # under the LiveKit plugin's default read timeout


def test_environment_overrides():
    settings = ServingSettings.from_env(
        {"TTS_MAX_STREAMS": "4", "TTS_MAX_AHEAD_S": "2.5", "TTS_MAX_BODY_BYTES": " 1024 "}
    )
    assert (settings.max_streams, settings.max_ahead_s, settings.max_body_bytes) == (4, 2.5, 1024)


@pytest.mark.parametrize(
    "env, name",
    [
        ({"TTS_MAX_STREAMS": "two"}, "TTS_MAX_STREAMS"),
        ({"TTS_MAX_STREAMS": "1.5"}, "TTS_MAX_STREAMS"),
        ({"TTS_READ_TIMEOUT_S": "0"}, "TTS_READ_TIMEOUT_S"),
        ({"TTS_STALL_TIMEOUT_S": "-1"}, "TTS_STALL_TIMEOUT_S"),
    ],
)
def test_bad_values_name_the_variable(env, name):
    with pytest.raises(ValueError, match=name):
        ServingSettings.from_env(env)


def test_cpu_lanes_default_to_the_cores_and_spare_lanes_may_be_zero():
    assert CpuSettings.from_env({}) == CpuSettings(lanes=None, spare_lanes=1)
    assert CpuSettings.from_env({"TTS_CPU_LANES": "2", "TTS_CPU_SPARE_LANES": "0"}) == CpuSettings(
        lanes=2, spare_lanes=0
    )
    assert default_lanes(CpuSettings(lanes=3)) == 3
    assert default_lanes(CpuSettings()) == len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="TTS_CPU_LANES"):
        CpuSettings.from_env({"TTS_CPU_LANES": "0"})


def test_model_settings_read_metadata_and_environment():
    xtts = XttsSettings.load(
        {"default_voice": "Ana", "max_cloned_voices": 8},
        {"XTTS_HALF": "true", "XTTS_STREAM_DECODER": "Stock"},
    )
    assert (xtts.default_voice, xtts.max_cloned_voices, xtts.half, xtts.deepspeed) == ("Ana", 8, True, False)
    assert xtts.stream_decoder == "stock"
    parler = ParlerSettings.load({"max_batch_items": 4}, {"PARLER_COMPILE": "1", "PARLER_DTYPE": "float16"})
    assert (parler.max_batch_items, parler.max_generate_batch, parler.compile, parler.dtype) == (
        4,
        16,
        True,
        "float16",
    )
    assert PiperSettings.from_env({"PIPER_MAX_THREADS": "2"}).max_threads == 2
    assert PiperSettings.from_env({"PIPER_INT8": "1"}).int8 and not PiperSettings.from_env({}).int8


@pytest.mark.parametrize(
    "load, name",
    [
        (lambda: XttsSettings.load({}, {"XTTS_STREAM_DECODER": "fast"}), "XTTS_STREAM_DECODER"),
        (lambda: ParlerSettings.load({}, {"PARLER_DTYPE": "int8"}), "PARLER_DTYPE"),
        (lambda: ParlerSettings.load({"max_batch_items": "many"}, {}), "max_batch_items"),
    ],
    ids=["xtts-decoder", "parler-dtype", "parler-batch-items"],
)
def test_bad_model_settings_name_the_knob(load, name):
    with pytest.raises(ValueError, match=name):
        load()


def test_realtime_settings_defaults_match_the_plugins_expectations():
    settings = RealtimeSettings.from_env({})
    # livekit-plugins-baseten drops a socket unconfigured after 8 s and configured after 25 s,
    # "below" the server's 10 s and 30 s, and sends a keepalive every 15 s.
    assert (settings.config_timeout_s, settings.idle_timeout_s) == (10.0, 30.0)
    changed = RealtimeSettings.from_env({"TTS_WS_IDLE_TIMEOUT_S": "3", "TTS_WS_MAX_MESSAGE_BYTES": "65536"})
    assert (changed.idle_timeout_s, changed.max_message_bytes) == (3.0, 65536)
    with pytest.raises(ValueError, match="TTS_WS_CONFIG_TIMEOUT_S"):
        RealtimeSettings.from_env({"TTS_WS_CONFIG_TIMEOUT_S": "soon"})
