"""Serving limits from the environment: defaults, overrides, and refusals that
name the variable."""

import pytest
from tts_common.settings import ServingSettings


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
    [({"TTS_MAX_STREAMS": "two"}, "TTS_MAX_STREAMS"), ({"TTS_MAX_STREAMS": "1.5"}, "TTS_MAX_STREAMS"),
     ({"TTS_READ_TIMEOUT_S": "0"}, "TTS_READ_TIMEOUT_S"), ({"TTS_STALL_TIMEOUT_S": "-1"}, "TTS_STALL_TIMEOUT_S")],
)
def test_bad_values_name_the_variable(env, name):
    with pytest.raises(ValueError, match=name):
        ServingSettings.from_env(env)
