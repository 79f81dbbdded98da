"""What a model's engine offers every transport: one interface per model, used
unchanged by its HTTP Truss and its WebSocket Truss (and any transport after).

A transport resolves the request's language and voice through the engine (each
raises `contract.FieldError` naming the field, which the transport answers in its
own shape), plans the text into units, and asks the engine for a `Synthesis`
of them, which the serving core runs. The options are the engine's own pydantic
model (piper: speed; XTTS: sampling), which each transport's request type
subclasses, so their bounds live once.
"""

from __future__ import annotations

from typing import Any, Protocol

from .synthesis import Synthesis
from .text import plan_segments


class Engine(Protocol):
    @property
    def sample_rate(self) -> int: ...

    @property
    def word_times(self) -> bool:
        """Whether its syntheses give word times (`Synthesis.words`)."""

    def language(self, wanted: str | None) -> str:
        """The language to speak: `wanted`, or the engine's own for None or
        "auto"; FieldError("language") when it cannot speak it."""

    def check_voice(self, voice: str | None) -> None:
        """FieldError("voice") for a voice it does not have (None: its default)."""

    def voice_names(self) -> list[str]: ...

    def max_unit_chars(self, language: str) -> int:
        """A unit longer than this is split at its own punctuation."""

    def speakable(self, text: str) -> bool:
        """False for text it would say nothing for (punctuation alone, say)."""

    def synthesis(
        self, units: list[str], language: str, voice: str | None, options: Any, in_hand_s: float = 0.0
    ) -> Synthesis:
        """The audio of `units` in order. `in_hand_s`: audio the listener has
        before it needs this (a WebSocket session's later units)."""


def resolve(engine: Engine, language: str | None, voice: str | None) -> str:
    """The engine's checks of what a request or session asks for (FieldError naming
    the field), and the language it will speak."""
    spoken = engine.language(language)
    engine.check_voice(voice)
    return spoken


def plan(
    engine: Engine, text: str, language: str | None, voice: str | None, options: Any, **extra: Any
) -> Synthesis:
    """A whole text's synthesis: the engine's checks (FieldError), then the text
    plan (each sentence whole; only one over the engine's limit is split, at its
    own punctuation). `extra` goes to the engine (XTTS: a reference clip)."""
    spoken = resolve(engine, language, voice)
    units = plan_segments(text, max_chars=engine.max_unit_chars(spoken))
    return engine.synthesis(units, spoken, voice, options, **extra)
