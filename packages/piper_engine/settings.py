"""piper's own knobs, read as every setting is (tts_common.settings)."""

from typing import ClassVar

from pydantic import Field

from tts_common.settings import Settings


class PiperSettings(Settings):
    """The piper Trusses' own knobs."""

    # Most ONNX threads one run may use; None: one per CPU lane.
    max_threads: int | None = Field(None, ge=1)
    # The name requests may give as `voice`; the weights are always the bundled voice.
    voice: str = "en_US-joe-medium"
    # int8 flow and decoder stages (int8.py): less CPU, different audio; off by default.
    int8: bool = False

    _ENV: ClassVar[dict[str, str]] = {"max_threads": "PIPER_MAX_THREADS", "int8": "PIPER_INT8"}
    _METADATA: ClassVar[tuple[str, ...]] = ("voice",)
