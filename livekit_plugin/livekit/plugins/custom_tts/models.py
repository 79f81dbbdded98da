from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# Mirrors packages/tts_common/contract.py (SAMPLE_RATES, DEFAULT_SAMPLE_RATE); a test
# keeps them equal. Copied, not imported: the plugin installs without the servers' code.
SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
DEFAULT_SAMPLE_RATE = 24000
# What the HTTP stream may carry, and the MIME type LiveKit's decoder reads it by.
AUDIO_FORMATS = {"pcm": "audio/pcm", "opus": "audio/ogg", "mp3": "audio/mpeg"}
AudioFormat = Literal["pcm", "opus", "mp3"]

# Fields the plugin itself sets (in an HTTP request or a WebSocket session.config);
# `extra` may not override them.
RESERVED_FIELDS = frozenset(
    {
        "text",
        "voice",
        "speaker",
        "language",
        "format",
        "sample_rate",
        "description",
        "type",
        "response_format",
        "stream_audio",
        "timestamp_type",
        "timestamp_transport_strategy",
    }
)


@dataclass
class TTSOptions:
    """What every request (HTTP) or session.config (WebSocket) carries besides the text.

    voice: a voice the model has (None: the model's default).
    language: a language the model supports.
    voice_description: a free-text voice description, sent as `description`
        (Parler); models without that field refuse it with a 422.
    sample_rate: output rate; the server resamples.
    audio_format: what the HTTP stream carries: "pcm", or "opus" (Ogg) or "mp3" for
        a thin link between agent and model (decoded here by LiveKit's own decoder;
        Opus takes 8, 16, 24 or 48 kHz). The WebSocket streams PCM only.
    extra: model-specific fields, e.g. {"speed": 1.2} for piper.
    """

    voice: str | None = None
    language: str = "en"
    voice_description: str | None = None
    sample_rate: int = DEFAULT_SAMPLE_RATE
    audio_format: AudioFormat = "pcm"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        # Fail at construction, not as a 422 on the first utterance of a call.
        if isinstance(self.sample_rate, bool) or self.sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}, got {self.sample_rate!r}")
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio_format must be one of {list(AUDIO_FORMATS)}, got {self.audio_format!r}")
        clash = RESERVED_FIELDS.intersection(self.extra)
        if clash:
            raise ValueError(f"extra may not set {sorted(clash)}: use the TTSOptions fields instead")

    def request_body(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "text": text,
            "language": self.language,
            "format": self.audio_format,
            "sample_rate": self.sample_rate,
        }
        if self.voice is not None:
            body["voice"] = self.voice
        if self.voice_description is not None:
            body["description"] = self.voice_description
        body.update(self.extra)
        return body

    def session_config(self, *, word_timestamps: bool) -> dict[str, Any]:
        """The WebSocket `session.config` fields (its `type` aside), as LiveKit's own
        Baseten plugin sends them, plus the contract's own fields."""
        config: dict[str, Any] = {
            "response_format": "pcm",
            "stream_audio": True,
            "language": self.language,
            "sample_rate": self.sample_rate,
        }
        if self.voice is not None:
            config["voice"] = self.voice
        if self.voice_description is not None:
            config["description"] = self.voice_description
        if word_timestamps:
            # "sync": a unit's word times come in its audio.done, after its audio, so
            # where that unit starts in the segment is known exactly.
            config["timestamp_type"] = "word"
            config["timestamp_transport_strategy"] = "sync"
        config.update(self.extra)
        return config
